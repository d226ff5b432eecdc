"""Diffusion samplers on a 2D Gaussian mixture: sample quality against NFE, with the exact score and a trained net.

    python scripts/figures/diffusion_samplers.py [--out scripts/figures/results/diffusion_samplers] [--quick]

Target: the three-component, anisotropic 2D mixture of the diffusion oracle tests (weights 0.2, 0.3, 0.5). Forward
process: the continuous VP SDE (Song et al. 2021), ``x_t = alpha_t x0 + sigma_t eps``. Under it the mixture stays a
mixture, ``p_t = sum_k w_k N(alpha_t mu_k, alpha_t^2 S_k + sigma_t^2 I)``, so the exact score is known at every t
(:meth:`GaussianMixture.noised`). Every sampler runs twice: on that exact score (only discretisation error) and on
an eps-prediction MLP trained on the mixture (``experiment=diffusion_samplers``: diffusion_2d on this target; learning
error too).

Samplers (all with the same VP schedule): DDPM ancestral, DDIM (eta = 0), Euler–Maruyama on the reverse SDE,
predictor–corrector (Euler–Maruyama predictor plus one Langevin corrector step at snr 0.16), Euler on the
probability-flow ODE in t, Heun on the PF-ODE in EDM's variables and grid, and adaptive Tsit5 at several tolerances.
NFE is what each sampler reports (score evaluations, the final denoising step included).

Quality: the squared energy distance to fresh exact samples (the unbiased U-statistic: 0 in expectation for exact
samples, so it can dip below 0; the exact-vs-exact value at the same size is reported and drawn), mean and
standard error over seeds; and the cross-entropy gap
``mean_i -log p0(y_i) - H(p0)``, which uses the exact density and is far less noisy (0 for exact samples, > 0 when
samples spread into low-density regions, < 0 when they crowd the modes). Writes quality_vs_nfe.png (one panel per
score source), samples.png and numbers.json into --out.

References:
    Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
    Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021.
    Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021.
    Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS 2022.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from omegaconf import DictConfig, OmegaConf

from experiments._common import build_data, build_net, build_sampler, build_trainer, instantiate_at
from experiments.compose import compose
from genflow.diffusion import (
    DDIM,
    AbstractDiffusionSampler,
    AbstractSchedule,
    Ancestral,
    DiffusionModel,
    PredictorCorrector,
    ProbabilityFlow,
    ReverseSDE,
    TimeVariable,
    Uniform,
    VPSchedule,
)
from genflow.distributions import GaussianMixture
from genflow.metrics import energy_distance
from genflow.solvers import DiffraxODE, Euler, EulerMaruyama, Heun

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# Training: configs/experiment/diffusion_samplers.yaml (diffusion_2d on this target), built with experiments/train.py's
# builders; the sweeps: its figure.* node. --quick adds configs/debug/diffusion_samplers.yaml.
EXPERIMENT = "diffusion_samplers"


def settings(cfg: DictConfig) -> dict:
    """The run's settings as numbers.json records them: ``figure.*``, then the training run's."""
    adam = cfg.optim._args_[1]
    figure = {k: tuple(v) if isinstance(v, list) else v for k, v in OmegaConf.to_container(cfg.figure).items()}
    return figure | dict(train_steps=cfg.train.num_steps, batch=cfg.train.batch_size, width=cfg.net.width,
                         depth=cfg.net.depth, emb_dim=cfg.net.emb_dim, lr=adam.learning_rate.peak_value)  # fmt: skip


# name -> (builder: target NFE -> sampler, the NFE it reports for that target)
SAMPLERS: dict[str, Callable[[int], AbstractDiffusionSampler]] = {
    "ddpm_ancestral": lambda n: Ancestral(n),
    "ddim": lambda n: DDIM(n),
    "reverse_sde_em": lambda n: ReverseSDE(EulerMaruyama(max(n - 1, 1))),  # + the final denoising step
    "pc_langevin": lambda n: PredictorCorrector(max((n - 1) // 2, 1)),
    "pf_euler_t": lambda n: ProbabilityFlow(Euler(max(n - 1, 1)), grid=Uniform(), variable=TimeVariable()),
    "pf_heun_edm": lambda n: ProbabilityFlow(Heun(max(n // 2, 1))),
}
ADAPTIVE = "pf_tsit5"


def target(cfg: DictConfig | None = None) -> GaussianMixture:
    """The experiment's data (configs/data/gmm3_2d.yaml): a 3-component mixture with full covariances."""
    return build_data(compose(EXPERIMENT) if cfg is None else cfg)


def exact_score(p0: GaussianMixture, schedule: AbstractSchedule) -> Callable:
    """``score(t, x)`` of the noised mixture on a batch: ``grad log p_t`` in closed form."""
    return lambda t, x: p0.noised(schedule.alpha(t), schedule.sigma(t)).score(x)


@eqx.filter_jit
def run_sampler(sampler, score, schedule, key, num: int):
    """One compiled call per (sampler, score); new seeds do not recompile."""
    k_prior, k_sample = jax.random.split(key)
    x_T = schedule.prior_std() * jax.random.normal(k_prior, (num, 2))
    sol = sampler.sample(score, schedule, x_T, key=k_sample)
    return sol.y, jnp.asarray(sol.nfe)


def train(p0: GaussianMixture, cfg: DictConfig, key) -> tuple[DiffusionModel, float]:
    """The experiment's model and Trainer, built as experiments/train.py builds them, with the figure's own keys."""
    k_net, k_fit = jax.random.split(key)
    model = instantiate_at(cfg, "model", net=build_net(cfg, k_net), data_shape=(2,), sampler=build_sampler(cfg))
    t0 = time.perf_counter()
    state = build_trainer(cfg, run_dir=None).fit(model, p0, key=k_fit)
    jax.block_until_ready(state.ema_model)
    return state.ema_model, time.perf_counter() - t0


def quality(p0: GaussianMixture, y, ref, entropy: float) -> dict:
    y = jnp.where(jnp.isfinite(y), y, 1e6)  # a diverged sample counts as far away, not as a crash
    return {
        "energy_distance": float(energy_distance(y, ref, unbiased=True)),
        "ce_gap": float(-jnp.mean(p0.log_prob(y)) - entropy),
    }


def sweep(p0, score, schedule, cfg, key, entropy) -> tuple[dict, dict]:
    """Every sampler at every NFE (and Tsit5 at every tolerance), over seeds; also the scatter samples."""
    rows, scatter = {}, {}
    configs = {name: [(n, build(n)) for n in cfg["nfe"]] for name, build in SAMPLERS.items()}
    configs[ADAPTIVE] = [
        (tol, ProbabilityFlow(DiffraxODE(diffrax.Tsit5(), rtol=tol, atol=tol))) for tol in cfg["tolerances"]
    ]
    for name, entries in configs.items():
        rows[name] = []
        for setting, sampler in entries:
            runs = []
            for seed in range(cfg["seeds"]):
                k_run, k_ref = jax.random.split(jax.random.fold_in(key, seed))
                y, nfe = run_sampler(sampler, score, schedule, k_run, cfg["num_samples"])
                runs.append({"nfe": float(jnp.mean(nfe)), **quality(p0, y, p0.sample(k_ref, cfg["num_samples"]),
                                                                      entropy)})  # fmt: skip
                if seed == 0 and setting in cfg["scatter_nfe"]:
                    scatter[(name, setting)] = np.asarray(y)
            rows[name].append({"setting": setting, **summarise(runs)})
        print(name, [(r["nfe"], round(r["energy_distance"], 4)) for r in rows[name]], flush=True)
    return rows, scatter


def summarise(runs: list[dict]) -> dict:
    out = {}
    for k in runs[0]:
        v = np.array([r[k] for r in runs])
        out[k] = float(v.mean())
        out[f"{k}_se"] = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0
    return out


def floor(p0, cfg, key, entropy) -> dict:
    """Exact samples scored like the samplers: the metrics' noise floor."""
    runs = []
    for seed in range(cfg["seeds"]):
        ka, kb = jax.random.split(jax.random.fold_in(key, seed))
        runs.append(quality(p0, p0.sample(ka, cfg["num_samples"]), p0.sample(kb, cfg["num_samples"]), entropy))
    return summarise(runs)


def plot_quality(results: dict, fl: dict, path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    for col, source in enumerate(("exact_score", "trained_net")):
        for row, metric in enumerate(("energy_distance", "ce_gap")):
            ax = axes[row, col]
            for name, rows in results[source].items():
                nfe = [r["nfe"] for r in rows]
                val = [r[metric] for r in rows]
                err = [r[f"{metric}_se"] for r in rows]
                ax.errorbar(nfe, val, yerr=err, marker="o", ms=3, capsize=2, label=name)
            ax.axhline(fl[metric], color="k", ls=":", lw=1, label="exact samples")
            ax.set(xscale="log", title=f"{source.replace('_', ' ')}: {metric.replace('_', ' ')}")
            # symlog: the unbiased energy distance of good samplers scatters around 0, on both sides
            ax.set_yscale("symlog", linthresh=1e-3 if metric == "energy_distance" else 1e-2)
            ax.set_ylabel("cross-entropy gap (nats)" if metric == "ce_gap" else "energy distance$^2$ (unbiased)")
            if row == 1:
                ax.set_xlabel("NFE")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def plot_samples(scatter: dict, cfg: dict, ref: np.ndarray, path: Path) -> None:
    names = list(SAMPLERS)
    cols = [(src, n) for src in ("exact_score", "trained_net") for n in cfg["scatter_nfe"]]
    fig, axes = plt.subplots(len(names) + 1, len(cols), figsize=(2.4 * len(cols), 2.2 * (len(names) + 1)))
    for j, (src, n) in enumerate(cols):
        axes[0, j].scatter(ref[:, 0], ref[:, 1], s=1, alpha=0.4, color="k")
        axes[0, j].set_title(f"target | {src.replace('_', ' ')}, NFE~{n}", fontsize=7)
        for i, name in enumerate(names, start=1):
            y = scatter[src].get((name, n))
            if y is not None:
                axes[i, j].scatter(y[:, 0], y[:, 1], s=1, alpha=0.4)
            axes[i, j].set_title(name, fontsize=7)
    for ax in axes.flat:
        ax.set(xlim=(-5, 5), ylim=(-5, 5), xticks=[], yticks=[])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "scripts/figures/results/diffusion_samplers"))
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks that the script runs")
    args = parser.parse_args(argv)
    run_cfg = compose(EXPERIMENT, quick=args.quick)
    cfg = settings(run_cfg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    p0, schedule = target(run_cfg), VPSchedule()
    key = jax.random.key(0)
    entropy = float(-jnp.mean(p0.log_prob(p0.sample(jax.random.key(1), cfg["entropy_samples"]))))
    t0 = time.perf_counter()
    model, train_seconds = train(p0, run_cfg, jax.random.key(2))
    scores = {"exact_score": exact_score(p0, schedule), "trained_net": model.batched_score()}
    results, scatter = {}, {}
    for src, score in scores.items():
        results[src], scatter[src] = sweep(p0, score, schedule, cfg, jax.random.fold_in(key, 7), entropy)
    fl = floor(p0, cfg, jax.random.key(3), entropy)
    plot_quality(results, fl, out / "quality_vs_nfe.png")
    plot_samples(scatter, cfg, np.asarray(p0.sample(jax.random.key(4), cfg["num_samples"])), out / "samples.png")
    numbers = {
        "config": {**cfg, "quick": args.quick},
        "entropy_nats": entropy,
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - t0,
        "floor_exact_samples": fl,
        **results,
    }
    (out / "numbers.json").write_text(json.dumps(numbers, indent=2))
    return numbers


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
