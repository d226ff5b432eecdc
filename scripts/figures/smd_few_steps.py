"""Soft mixture denoising at few backward steps: sample quality against the number of steps T (Li et al. 2024,
Fig. 2 and 3 in spirit).

    python scripts/figures/smd_few_steps.py [--out scripts/figures/results/smd_few_steps] [--quick] [--only gmm]

Data: a 5x5 grid of isotropic Gaussians (spacing 1, std 0.1, equal weights) in 2D, and sklearn digits (flattened to
64-D, scaled to [-1, 1]). Forward process: the discrete linear-beta DDPM chain with N = 1000 steps; every model is
trained once on it and sampled with T in {1, 2, 5, 10, 20, 50, 100, 1000} DDPM ancestral steps (respacing).
Compared:
    ddpm            a FiLM MLP, Gaussian backward kernel;
    smd_regression  SMD with the official objective (one eta per example in the diffusion regression);
    smd_mixture     SMD with the mixture-likelihood objective (log-mean-exp over M eta draws);
    smd_eta0        the capacity-matched ablation: the SMD network with eta fixed to 0 (regression objective);
    oracle          (2D) ancestral sampling with the exact mixture kernel of the data.
All networks predict x0 (``DataPrediction()``): with eps prediction, x0_hat = (x - sigma eps_hat)/alpha amplifies the
network's error by 1/alpha (~160 at t = 1), which would swamp every model at few steps.

Quality: 2D, the squared energy distance to fresh exact samples (V-statistic; the exact-vs-exact floor at the same
size is reported) and the fraction of samples within 3 std of a grid mean; digits, the MMD^2 in the feature space of
the shipped digits classifier (nearly blind to pixel noise) and the pixel-space MMD^2, both against the held-out test
images. Mean and standard error over seeds. Diagnostics of what each objective does: the spread of x0_hat over eta
at t = 1 (relative to the data's std; 0 means the latent is ignored) and the M-draw bound on the backward kernel's
NLL at (t, s) = (1, 0.5) and (0.5, 0.1). Writes quality_vs_steps.png, samples_2d.png, samples_digits.png and
numbers.json into --out.

References:
    Li, van Breugel, van der Schaar, "Soft Mixture Denoising: Beyond the Expressive Bottleneck of Diffusion Models",
    ICLR 2024.
    Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from omegaconf import DictConfig

from experiments._common import build_data, build_net, build_sampler, build_trainer, instantiate_at
from experiments.compose import compose
from genflow.diffusion import Ancestral, DiscreteSchedule
from genflow.metrics import digits_feature_mmd, energy_distance, mmd
from genflow.smd import MixtureKernelOracle, SMDModel

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

GRID_SPACING, GRID_STD = 1.0, 0.1  # configs/data/gmm_grid.yaml holds the same mixture (a test checks that they agree)
METHODS = ("ddpm", "smd_regression", "smd_mixture", "smd_eta0")  # the keys of figure.methods, in plot order
# Models and training: configs/experiment/smd_few_steps.yaml (the experiment smd_gmm_grid with the figure's
# optimizer) composed with figure.methods.<method> and figure.datasets.<data>, built with experiments/train.py's
# builders; --quick adds configs/debug/smd_few_steps.yaml.
EXPERIMENT = "smd_few_steps"


def run_config(method: str, dataset: str, quick: bool = False) -> DictConfig:
    """The experiment composed with ``figure.methods.<method>`` and ``figure.datasets.<dataset>``."""
    figure = compose(EXPERIMENT, quick=quick).figure
    return compose(EXPERIMENT, [*figure.methods[method], *figure.datasets[dataset]], quick=quick)


def settings(cfg: DictConfig) -> dict:
    """One run's settings as numbers.json records them."""
    t, net, lr = cfg.train, cfg.net, cfg.optim._args_[1].learning_rate.peak_value
    fig = cfg.figure
    out = dict(train_steps=t.num_steps, batch=t.batch_size, seeds=fig.seeds, num_samples=fig.num_samples,
               width=net.width, depth=net.depth, emb=net.emb_dim, lr=lr)  # fmt: skip
    smd = ("eta_dim", "latent_dim", "latent_width", "latent_depth")
    return out | {k: net[k] for k in smd if k in net}


def grid_oracle() -> MixtureKernelOracle:
    """The 5x5 grid target and its exact backward kernel. Built here rather than from the data config, whose weights
    are normalised once less: the last bit of the weights would change the samples' mixture components."""
    g = GRID_SPACING * (np.arange(5) - 2.0)
    means = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    return MixtureKernelOracle(np.ones(25), means, GRID_STD)


def num_params(model) -> int:
    net = model.diffusion.net if isinstance(model, SMDModel) else model.net
    return int(sum(x.size for x in jax.tree_util.tree_leaves(net) if isinstance(x, jax.Array)))


def fit(cfg: DictConfig, data, key) -> tuple[object, float]:
    """Build the config's model (its net from ``fold_in(key, 7)``) and train it: ``(EMA model, training seconds)``."""
    t0 = time.time()
    net = build_net(cfg, jax.random.fold_in(key, 7))
    model = instantiate_at(cfg, "model", net=net, data_shape=tuple(data.event_shape), sampler=build_sampler(cfg))
    model = build_trainer(cfg, run_dir=None).fit(model, data, key=key).ema_model
    return model, time.time() - t0


def diagnostics(model, x0: jax.Array, key) -> dict:
    """eta-spread of x0_hat at t = 1 and the kernel NLL bounds (SMD models only)."""
    if not isinstance(model, SMDModel):
        return {}
    k_x, k_eta, k_nll = jax.random.split(key, 3)
    x_T = jax.random.normal(k_x, x0.shape)
    draws = model.x0_draws(k_eta, 1.0, x_T, 16)
    spread = float(jnp.mean(jnp.std(draws, axis=1)) / jnp.mean(jnp.std(x0, axis=0)))
    nll = {}
    for t, s in ((1.0, 0.5), (0.5, 0.1)):
        nll[f"t={t},s={s}"] = float(jnp.mean(model.kernel_nll(k_nll, x0, t, s, num_draws=64)))
    return {"eta_spread_t1": spread, "kernel_nll": nll}


def run_gmm(quick: bool, steps: tuple[int, ...]) -> dict:
    cfgs = {method: run_config(method, "gmm", quick) for method in METHODS}
    cfg = cfgs["ddpm"].figure
    oracle = grid_oracle()
    data = oracle.mixture
    means = np.asarray(oracle.means)
    out = {"per_seed": {m: [] for m in (*METHODS, "oracle")}, "floor": [], "params": {}, "diag": {}, "samples": {}}
    for seed in range(cfg["seeds"]):
        k_ref, k_ref2, k_train, k_sample, k_diag = jax.random.split(jax.random.key(100 + seed), 5)
        ref = data.sample(k_ref, cfg["num_samples"])
        out["floor"].append(float(energy_distance(data.sample(k_ref2, cfg["num_samples"]), ref)))

        def sweep(draw, label: str) -> dict:
            """Score ``draw(T)`` for every T; keep seed 0's samples at T = 1 and 5 for the figure."""
            row = {}
            for T in steps:
                y = draw(T)
                d = np.sqrt(np.min(np.sum((np.asarray(y)[:, None] - means) ** 2, -1), axis=1))
                row[T] = {"energy": float(energy_distance(y, ref)), "on_mode": float(np.mean(d < 3 * GRID_STD))}
                if seed == 0 and T in (1, 5):
                    out["samples"][f"{label}/T={T}"] = np.asarray(y)
            return row

        for method in METHODS:
            model, t_train = fit(cfgs[method], data, k_train)
            draw = lambda T, m=model: m.sample(k_sample, cfg["num_samples"], sampler=Ancestral(num_steps=T))  # noqa: E731
            row = sweep(draw, method)
            out["per_seed"][method].append(row)
            out["params"][method] = num_params(model)
            out["diag"].setdefault(method, []).append(diagnostics(model, ref, k_diag))
            print(f"gmm seed {seed} {method}: train {t_train:.0f}s, T=1 {row[steps[0]]}", flush=True)
        row = sweep(lambda T: oracle.sample(k_sample, cfg["num_samples"], data_schedule(), T).y, "oracle")
        out["per_seed"]["oracle"].append(row)
    return out


def data_schedule() -> DiscreteSchedule:
    return DiscreteSchedule(1000)


def run_digits(quick: bool, steps: tuple[int, ...]) -> dict:
    cfgs = {method: run_config(method, "digits", quick) for method in METHODS}
    cfg = cfgs["ddpm"].figure
    data = build_data(cfgs["ddpm"])
    ref = instantiate_at(cfgs["ddpm"], "data", split="test").images  # the held-out split
    out = {"per_seed": {m: [] for m in METHODS}, "params": {}, "diag": {}, "samples": {}}
    out["floor_pixel"] = float(mmd(data.images[: ref.shape[0]], ref))
    out["floor_feature"] = float(digits_feature_mmd(data.images[: ref.shape[0]].reshape(-1, 1, 8, 8), ref))
    for seed in range(cfg["seeds"]):
        k_train, k_sample, k_diag = jax.random.split(jax.random.key(200 + seed), 3)
        for method in METHODS:
            model, t_train = fit(cfgs[method], data, k_train)
            row = {}
            for T in steps:
                y = jnp.clip(model.sample(k_sample, cfg["num_samples"], sampler=Ancestral(num_steps=T)), -1, 1)
                row[T] = {
                    "feature_mmd": float(digits_feature_mmd(y.reshape(-1, 1, 8, 8), ref.reshape(-1, 1, 8, 8))),
                    "pixel_mmd": float(mmd(y, ref)),
                }
                if seed == 0 and T in (1, 5, 1000):
                    out["samples"][f"{method}/T={T}"] = np.asarray(y[:16])
            out["per_seed"][method].append(row)
            out["params"][method] = num_params(model)
            out["diag"].setdefault(method, []).append(diagnostics(model, ref, k_diag))
            print(f"digits seed {seed} {method}: train {t_train:.0f}s, T=1 {row[steps[0]]}", flush=True)
    return out


def summarise(per_seed: dict, metric: str, steps) -> dict:
    res = {}
    for method, rows in per_seed.items():
        vals = np.array([[r[T][metric] for T in steps] for r in rows])
        sem = vals.std(0, ddof=1) / np.sqrt(len(rows)) if len(rows) > 1 else np.zeros(len(steps))
        res[method] = {"mean": vals.mean(0).tolist(), "sem": sem.tolist()}
    return res


def plot_quality(path: Path, panels: list[tuple[str, dict, float | None, str]], steps) -> None:
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4))
    for ax, (title, summary, floor, ylabel) in zip(np.atleast_1d(axes), panels, strict=True):
        for method, s in summary.items():
            m, e = np.array(s["mean"]), np.array(s["sem"])
            ax.errorbar(steps, np.maximum(m, 1e-6), yerr=e, marker="o", ms=3, capsize=2, label=method)
        if floor is not None:
            ax.axhline(max(floor, 1e-6), color="gray", ls=":", label="exact vs exact")
        ax.set(xscale="log", yscale="log", xlabel="backward steps T", ylabel=ylabel, title=title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_samples_2d(path: Path, samples: dict) -> None:
    methods = sorted({k.split("/")[0] for k in samples})
    ts = sorted({k.split("/")[1] for k in samples})
    fig, axes = plt.subplots(len(ts), len(methods), figsize=(2.4 * len(methods), 2.5 * len(ts)), squeeze=False)
    for i, t in enumerate(ts):
        for j, m in enumerate(methods):
            ax, y = axes[i, j], samples[f"{m}/{t}"]
            ax.scatter(y[:, 0], y[:, 1], s=1, alpha=0.4)
            ax.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), xticks=[], yticks=[])
            ax.set_title(f"{m}, {t}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_samples_digits(path: Path, samples: dict) -> None:
    keys = sorted(samples)
    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 0.75 * len(keys) + 0.5))
    for ax, k in zip(np.atleast_1d(axes), keys, strict=True):
        imgs = samples[k].reshape(-1, 8, 8)
        ax.imshow(np.concatenate(list(imgs), axis=1), cmap="gray", vmin=-1, vmax=1)
        ax.set_axis_off()
        ax.set_title(k, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="scripts/figures/results/smd_few_steps")
    parser.add_argument("--quick", action="store_true", help="tiny nets and budgets (a smoke run)")
    parser.add_argument("--only", choices=("gmm", "digits"), default=None)
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = tuple(compose(EXPERIMENT, quick=args.quick).figure.steps)
    runs = {d: {m: settings(run_config(m, d, args.quick)) for m in METHODS} for d in ("gmm", "digits")}
    numbers: dict = {"steps": list(steps), "config": {"runs": runs, "grid_std": GRID_STD, "quick": args.quick}}
    panels = []
    t0 = time.time()
    if args.only in (None, "gmm"):
        g = run_gmm(args.quick, steps)
        numbers["gmm"] = {
            "energy": summarise(g["per_seed"], "energy", steps),
            "on_mode": summarise(g["per_seed"], "on_mode", steps),
            "floor": float(np.mean(g["floor"])),
            "params": g["params"],
            "diagnostics": g["diag"],
            "per_seed": g["per_seed"],
        }
        panels.append(("5x5 grid GMM", numbers["gmm"]["energy"], numbers["gmm"]["floor"], "energy distance$^2$"))
        plot_samples_2d(out_dir / "samples_2d.png", g["samples"])
        numbers["gmm"]["seconds"] = time.time() - t0
        (out_dir / "numbers.json").write_text(json.dumps(numbers, indent=1, default=str))
    if args.only in (None, "digits"):
        t1 = time.time()
        d = run_digits(args.quick, steps)
        numbers["digits"] = {
            "feature_mmd": summarise(d["per_seed"], "feature_mmd", steps),
            "pixel_mmd": summarise(d["per_seed"], "pixel_mmd", steps),
            "floor_feature": d["floor_feature"],
            "floor_pixel": d["floor_pixel"],
            "params": d["params"],
            "diagnostics": d["diag"],
            "per_seed": d["per_seed"],
            "seconds": time.time() - t1,
        }
        panels.append(("digits: classifier features", numbers["digits"]["feature_mmd"], None, "feature MMD$^2$"))
        panels.append(("digits: pixels", numbers["digits"]["pixel_mmd"], None, "pixel MMD$^2$"))
        plot_samples_digits(out_dir / "samples_digits.png", d["samples"])
    plot_quality(out_dir / "quality_vs_steps.png", panels, steps)
    (out_dir / "numbers.json").write_text(json.dumps(numbers, indent=1, default=str))
    print(f"wrote {out_dir} in {time.time() - t0:.0f}s")
    return numbers


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
