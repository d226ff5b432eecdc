"""Stochastic interpolants on a 2D Gaussian mixture: sample quality and likelihood against the diffusion eps.

    python scripts/figures/ode_vs_sde.py [--out scripts/figures/results/ode_vs_sde] [--quick]

Setup (Albergo, Boffi, Vanden-Eijnden 2023): base ``x0 ~ N(0, I)``, target a 6-component 2D Gaussian mixture with
unequal weights and widths (the same as ``configs/data/gmm2d.yaml``), ``x_t = (1 - t) x0 + t x1 + sqrt(t (1 - t)) z``.
One :class:`StochasticInterpolant` (velocity MLP ``b`` and denoiser MLP ``eta``, trained exactly as
``python experiments/train.py experiment=ode_vs_sde``) is compared with the same model built on the exact fields
(:class:`GaussianMixtureFields`, no training): their difference is the learning error, and the exact model's
distance to the target the discretisation error. For every ``eps`` and step count:

- sample quality: the ODE ``dX = b dt`` (eps = 0: Euler, and Heun at the same NFE) or the forward SDE
  ``dX = (b + eps s) dt + sqrt(2 eps) dW`` (Euler–Maruyama), scored by the energy distance and the exact W2 to
  fresh target samples, with the data-vs-data floor at the same size, and by the cross-entropy gap
  ``E_rho1[log rho1] - mean_i log rho1(y_i)``, which uses the exact density (0 for target samples; positive when
  samples spread into low-density regions, negative when they crowd the modes) and is far less noisy;
- likelihood of held-out target points: ``log_prob`` (ODE, eps = 0) or ``log_prob_sde`` (backward-SDE estimator,
  averaged over several paths per point), against the exact ``GaussianMixture.log_prob``.
  ``nll_gap = mean(-log rho_hat) - mean(-log rho1)``; its ``gap_se`` is the standard error over held-out points of
  the per-point error (both Monte Carlo and point sampling), ``mc_se`` the part from the SDE paths alone.

In the sample-quality sweep every row shares the base draws and Brownian increments (common random numbers), so
differences between eps are paired and far more precise than the draw-to-draw error bars; the likelihood rows use
independent paths, so their error bars are independent (the learned and the exact row of one (eps, steps) share
theirs, a paired comparison of the two). NFE counts drift evaluations; an SDE step evaluates both
``b`` and ``eta``. Writes quality_vs_eps.png, likelihood_vs_eps.png,
samples.png and numbers.json into --out.

References:
    Albergo, Boffi, Vanden-Eijnden, "Stochastic Interpolants: A Unifying Framework for Flows and Diffusions", 2023.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray
from omegaconf import DictConfig, OmegaConf

from experiments._common import build_model, build_trainer
from experiments.compose import compose
from genflow.distributions import GaussianMixture
from genflow.interpolants import GaussianMixtureFields, LinearInterpolant, SqrtGamma, StochasticInterpolant
from genflow.metrics import energy_distance, w2_exact
from genflow.solvers import RK4, AbstractODESolver, AbstractSDESolver, Euler, EulerMaruyama, Heun

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

# The target; configs/data/gmm2d.yaml holds the same numbers (a test checks that they agree).
WEIGHTS = (0.3, 0.2, 0.15, 0.15, 0.1, 0.1)
ANGLES_DEG = (0, 60, 120, 180, 240, 300)
RADIUS = 3.0
STDS = (0.3, 0.5, 0.35, 0.45, 0.4, 0.3)
T_MIN = 1e-3  # the model's default: the SDEs run on [t_min, 1 - t_min], where s = -eta / gamma is finite

# Training: configs/experiment/ode_vs_sde.yaml, built as experiments/train.py builds it; the sweeps: its figure.*
# node. --quick adds configs/debug/ode_vs_sde.yaml.
EXPERIMENT = "ode_vs_sde"


def compose_config(quick: bool = False, overrides: list[str] = ()) -> DictConfig:
    return compose(EXPERIMENT, ["train.progress=false", *overrides], quick=quick)  # a batch job: no progress bar


def settings(cfg: DictConfig) -> dict:
    """The run's settings as numbers.json records them: the training run's, then ``figure.*``."""
    t, net = cfg.train, cfg.net
    clip, adam = cfg.optim._args_
    lr = adam.learning_rate.peak_value
    training = dict(seed=t.seed, train_steps=t.num_steps, batch=t.batch_size, width=net.width, depth=net.depth,
                    emb_dim=net.emb_dim, lr=lr, final_lr_fraction=round(adam.learning_rate.end_value / lr, 12),
                    grad_clip=clip.max_norm, ema_decay=t.ema_decay)  # fmt: skip
    figure = OmegaConf.to_container(cfg.figure, resolve=True)
    return training | {k: tuple(v) if isinstance(v, list) else v for k, v in figure.items()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=ROOT / "scripts/figures/results/ode_vs_sde")
    p.add_argument("--quick", action="store_true", help="tiny settings, for the smoke test")
    p.add_argument("--train-steps", type=int)
    args = p.parse_args(argv)
    steps = [] if args.train_steps is None else [f"train.num_steps={args.train_steps}"]
    run_cfg = compose_config(args.quick, steps)
    cfg = settings(run_cfg) | {"quick": args.quick}
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    target = make_target()
    learned, training = train(run_cfg, target)
    models = {"learned": learned, "exact": exact_model(target)}
    training["loss_exact_fields"] = eval_loss(models["exact"], target, cfg["loss_batch"])
    # L(b_hat, eta_hat) - L(b, eta) = E|b_hat - b|^2 / 2 + E|eta_hat - eta|^2 / 2: the learning error, in one number.
    training["loss_gap"] = training["loss_ema"] - training["loss_exact_fields"]

    k_ref, k_floor, k_held, k_entropy = jax.random.split(jax.random.key(cfg["seed"] + 100), 4)
    ref = target.sample(k_ref, cfg["n_eval"])
    x_like = target.sample(k_held, cfg["n_like"])
    exact_lp = target.log_prob(x_like)
    # E_rho1[log rho1] (minus the entropy) from many target samples: its Monte Carlo error is ~0.002.
    neg_entropy = float(jnp.mean(target.log_prob(target.sample(k_entropy, 200_000))))
    score = lambda y: score_draws(y, ref, target, neg_entropy, cfg)
    floor = score(target.sample(k_floor, cfg["n_eval"] * cfg["quality_draws"]))

    quality, likelihood, ode_reference, scatter, seconds = [], [], {}, {}, {"train": training.pop("seconds")}
    for name, model in models.items():
        t0 = time.perf_counter()
        rows, scatter[name] = sample_quality(model, score, cfg)
        quality += [{"fields": name, **r} for r in rows]
        seconds[f"quality_{name}"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        likelihood += [{"fields": name, **r} for r in likelihood_sweep(model, x_like, exact_lp, cfg)]
        ref_lp = log_likelihood(model, x_like, RK4(num_steps=cfg["ref_steps"]))
        ode_reference[name] = {"solver": f"RK4({cfg['ref_steps']})", **likelihood_summary(ref_lp, exact_lp)}
        seconds[f"likelihood_{name}"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    plot_quality(quality, floor, cfg, args.out / "quality_vs_eps.png")
    plot_likelihood(likelihood, ode_reference, cfg, args.out / "likelihood_vs_eps.png")
    plot_samples(scatter, np.asarray(ref[: cfg["n_plot"]]), cfg, args.out / "samples.png")
    seconds["plots"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start

    numbers = {
        "config": cfg,
        "target": {"weights": WEIGHTS, "angles_deg": ANGLES_DEG, "radius": RADIUS, "stds": STDS},
        "interpolant": "LinearInterpolant(SqrtGamma(1.0)): x_t = (1 - t) x0 + t x1 + sqrt(t (1 - t)) z",
        "t_min": T_MIN,
        "training": training,
        "data_vs_data_floor": floor,
        "exact_mean_log_prob": float(jnp.mean(exact_lp)),
        "target_neg_entropy_mc": neg_entropy,
        "ode_likelihood_reference": ode_reference,
        "quality": quality,
        "likelihood": likelihood,
        "seconds": seconds,
        "devices": [str(d) for d in jax.devices()],
    }
    numbers = _finite_or_none(numbers)
    (args.out / "numbers.json").write_text(json.dumps(numbers, indent=2))
    print(json.dumps({"seconds": seconds, "training": training, "floor": floor}, indent=2))
    return numbers


# -- models ------------------------------------------------------------------------------------------------------
def make_target() -> GaussianMixture:
    """The 2D target mixture (in the current default float dtype)."""
    angles = np.deg2rad(np.asarray(ANGLES_DEG, dtype=float))
    means = RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    return GaussianMixture.isotropic(WEIGHTS, means, STDS)


def make_interpolant() -> LinearInterpolant:
    return LinearInterpolant(SqrtGamma(1.0))


def exact_fields(target: GaussianMixture) -> GaussianMixtureFields:
    base = GaussianMixture(jnp.ones(1), jnp.zeros((1, 2)), jnp.eye(2)[None])
    return GaussianMixtureFields(make_interpolant(), base, target)


def exact_model(target: GaussianMixture) -> StochasticInterpolant:
    """The model on the closed-form fields between N(0, I) and ``target``: no learning error, only discretisation."""
    fields = exact_fields(target)
    # Bound methods of an equinox module are pytrees: the fields' arrays are traced, not baked in as constants.
    return StochasticInterpolant(
        fields.velocity, (2,), denoiser_net=fields.denoiser, interpolant=make_interpolant(), t_min=T_MIN
    )


def train(cfg: DictConfig, target: GaussianMixture) -> tuple[StochasticInterpolant, dict]:
    """Train b and eta as experiments/train.py does (its builders and keys): the CLI run of the experiment is the
    same model."""
    k_model, k_train = jax.random.split(jax.random.key(cfg.train.seed))
    model = build_model(cfg, tuple(target.event_shape), k_model)
    trainer = build_trainer(cfg, run_dir=None)
    t0 = time.perf_counter()
    state = trainer.fit(model, target, key=k_train)
    jax.block_until_ready(state.ema_model)
    seconds = time.perf_counter() - t0
    loss_batch = cfg.figure.loss_batch
    return state.ema_model, {"loss_ema": eval_loss(state.ema_model, target, loss_batch), "seconds": seconds}


def eval_loss(model: StochasticInterpolant, target: GaussianMixture, num: int = 4096, num_keys: int = 8) -> float:
    """L_b + L_eta on fresh batches, with the same keys for every model so that differences are low-noise."""
    keys = jax.random.split(jax.random.key(7), num_keys)
    loss = eqx.filter_jit(lambda m, k: m.loss(k, target.sample(jax.random.fold_in(k, 1), num)))
    return float(jnp.mean(jnp.stack([loss(model, k) for k in keys])))


# -- sample quality ----------------------------------------------------------------------------------------------
def samplers(steps: int, eps_grid) -> list[tuple[str, float, AbstractODESolver | AbstractSDESolver]]:
    """(method, eps, solver) at ``steps`` drift evaluations: ODE Euler and Heun at eps = 0, Euler–Maruyama above."""
    out = [("ode_euler", 0.0, Euler(num_steps=steps)), ("ode_heun", 0.0, Heun(num_steps=max(steps // 2, 1)))]
    return out + [("sde_em", float(e), EulerMaruyama(num_steps=steps)) for e in eps_grid if e > 0]


def score_draws(y: Float[Array, "num 2"], ref: Array, target: GaussianMixture, neg_entropy: float, cfg: dict) -> dict:
    """Energy distance and W2 to ``ref`` and the cross-entropy gap of each of ``quality_draws`` sample sets: mean,
    standard error and the values."""
    out = {}
    draws = y.reshape(cfg["quality_draws"], cfg["n_eval"], -1)
    finite = bool(jnp.all(jnp.isfinite(y)))
    metrics = {
        "energy_distance": lambda a: float(energy_distance(a, ref)),
        "w2_exact": lambda a: w2_exact(a, ref),
        "cross_entropy_gap": lambda a: neg_entropy - float(jnp.mean(target.log_prob(a))),
    }
    for name, metric in metrics.items():
        values = np.array([metric(d) if finite else np.nan for d in draws])
        out[name] = float(values.mean())
        out[f"{name}_se"] = float(values.std(ddof=1) / math.sqrt(len(values)))
        out[f"{name}_draws"] = values.tolist()
    return out


def sample_quality(model: StochasticInterpolant, score, cfg: dict) -> tuple[list[dict], dict]:
    """``score`` (see :func:`score_draws`) of samples for every (method, eps, steps); also the samples to plot."""
    rows, scatter = [], {}
    key = jax.random.key(cfg["seed"] + 200)  # one key for every row: common random numbers across eps
    for steps in cfg["steps"]:
        for method, eps, solver in samplers(steps, cfg["eps"]):
            t0 = time.perf_counter()
            # eps as an array is traced: one compilation per solver, not one per eps.
            y = model.sample(key, cfg["n_eval"] * cfg["quality_draws"], sampler=solver, eps=jnp.asarray(eps))
            nfe = int(solver.num_steps * solver.stages)
            rows.append({"method": method, "eps": eps, "steps": steps, "solver_steps": solver.num_steps, "nfe": nfe})
            rows[-1] |= score(y)
            rows[-1] |= {"num_nonfinite": int(jnp.sum(~jnp.isfinite(y))), "seconds": time.perf_counter() - t0}
            if steps in cfg["scatter_steps"] and method != "ode_heun" and eps in cfg["scatter_eps"]:
                scatter[steps, eps] = np.asarray(y[: cfg["n_plot"]])
    return rows, scatter


# -- likelihood --------------------------------------------------------------------------------------------------
def log_likelihood(
    model: StochasticInterpolant,
    x: Float[Array, "n 2"],
    solver: AbstractODESolver | AbstractSDESolver,
    *,
    eps: float = 0.0,
    key: PRNGKeyArray | None = None,
    num_paths: int = 1,
) -> Float[Array, "n paths"]:
    """Per-point estimates of ``log rho1(x)``: the ODE likelihood for an ODE solver (one deterministic "path"), or
    ``num_paths`` independent backward-SDE paths per point for an SDE solver."""
    if isinstance(solver, AbstractODESolver):
        return model.log_prob(x, solver=solver)[:, None]
    # One call on the points repeated: every row draws its own Brownian path.
    lp = model.log_prob_sde(jnp.repeat(x, num_paths, axis=0), key=key, solver=solver, eps=jnp.asarray(eps))
    return lp.reshape(x.shape[0], num_paths)


def likelihood_summary(estimates: Float[Array, "n paths"], exact_lp: Float[Array, " n"]) -> dict:
    """Mean estimate, NLL gap to the exact log-density and its standard errors (see the module docstring)."""
    estimates, exact_lp = np.asarray(estimates, np.float64), np.asarray(exact_lp, np.float64)  # small: host math
    n, paths = estimates.shape
    err = estimates.mean(axis=1) - exact_lp
    mc_var = estimates.var(axis=1, ddof=1) / paths if paths > 1 else np.zeros(n)
    return {
        "mean_log_prob": float(estimates.mean()),
        "nll_gap": float(-err.mean()),
        "gap_se": float(err.std(ddof=1) / math.sqrt(n)),
        "mc_se": float(np.sqrt(mc_var.mean() / n)),
        "num_nonfinite": int(np.sum(~np.isfinite(estimates))),
    }


def likelihood_sweep(model: StochasticInterpolant, x: Array, exact_lp: Array, cfg: dict) -> list[dict]:
    rows = []
    keys = iter(jax.random.split(jax.random.key(cfg["seed"] + 300), 1000))  # independent paths for every row
    for steps in cfg["steps"]:
        for method, eps, solver in samplers(steps, cfg["eps"]):
            t0 = time.perf_counter()
            est = log_likelihood(model, x, solver, eps=eps, key=next(keys), num_paths=cfg["like_paths"])
            summary = likelihood_summary(est, exact_lp)
            nfe = int(solver.num_steps * solver.stages)
            rows.append({"method": method, "eps": eps, "steps": steps, "solver_steps": solver.num_steps, "nfe": nfe})
            rows[-1].update(summary)
            rows[-1]["seconds"] = time.perf_counter() - t0
    return rows


# -- figures -----------------------------------------------------------------------------------------------------
def _eps_axis(ax, cfg: dict) -> None:
    # symlog keeps eps = 0 (the ODE) on the same axis as the log-spaced eps > 0.
    ax.set_xscale("symlog", linthresh=min(e for e in cfg["eps"] if e > 0), linscale=0.6)
    ax.set_xticks(cfg["eps"], [f"{e:g}" for e in cfg["eps"]], fontsize=7)
    ax.set_xlabel("eps (0: ODE)")


def _curve(rows: list[dict], fields: str, steps: int, key: str) -> tuple[list, list]:
    """The eps curve at ``steps``: ODE Euler at eps = 0, Euler–Maruyama above."""
    pts = [
        (r["eps"], r[key]) for r in rows if r["fields"] == fields and r["steps"] == steps and r["method"] != "ode_heun"
    ]
    pts = sorted((e, np.nan if v is None else v) for e, v in pts)
    return [e for e, _ in pts], [v for _, v in pts]


def _heun(rows: list[dict], fields: str, steps: int, key: str) -> float:
    """Heun's value in the ``steps`` group (``steps // 2`` Heun steps: the same NFE for even ``steps``)."""
    return next(r[key] for r in rows if r["fields"] == fields and r["method"] == "ode_heun" and r["steps"] == steps)


QUALITY_METRICS = (
    ("energy_distance", "energy distance", "log"),
    ("w2_exact", "exact W2", "log"),
    ("cross_entropy_gap", "cross-entropy gap E[log rho1] - mean log rho1(y)", "linear"),
)


def plot_quality(rows: list[dict], floor: dict, cfg: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for ax, (key, label, yscale) in zip(axes, QUALITY_METRICS, strict=True):
        for i, steps in enumerate(cfg["steps"]):
            for fields, ls, marker in (("learned", "-", "o"), ("exact", "--", "s")):
                eps, value = _curve(rows, fields, steps, key)
                _, se = _curve(rows, fields, steps, f"{key}_se")
                label_i = f"{fields}, {steps} steps"
                ax.errorbar(eps, value, yerr=se, ls=ls, marker=marker, ms=4, capsize=2, color=f"C{i}", label=label_i)
                heun = _heun(rows, fields, steps, key)
                ax.plot([0.0], [heun], marker="*", ms=11, color=f"C{i}", mfc="none" if fields == "exact" else f"C{i}")
        lo, hi = floor[key] - floor[f"{key}_se"], floor[key] + floor[f"{key}_se"]
        ax.axhspan(lo, hi, color="gray", alpha=0.3, label="target samples (+-1 se)")
        ax.set_yscale(yscale)
        ax.set_title(label, fontsize=9)
        _eps_axis(ax, cfg)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(
        f"Sample quality against eps ({cfg['quality_draws']} draws of {cfg['n_eval']} samples against "
        f"{cfg['n_eval']} fresh target samples): ODE at eps = 0 (Euler), Euler–Maruyama SDE above; solid: learned b, "
        "eta; dashed: exact fields;\nstars: Heun at the same NFE (filled: learned, hollow: exact); bars: one standard "
        "error over draws (the rows share their random numbers, so differences between eps are more precise)",
        fontsize=9,
        y=1.05,
    )
    _save(fig, path)


def plot_likelihood(rows: list[dict], reference: dict, cfg: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, fields in zip(axes, ("learned", "exact"), strict=True):
        for i, steps in enumerate(cfg["steps"]):
            eps, gap = _curve(rows, fields, steps, "nll_gap")
            _, se = _curve(rows, fields, steps, "gap_se")
            ax.errorbar(eps, gap, yerr=se, marker="o", ms=4, capsize=2, color=f"C{i}", label=f"{steps} steps")
            ax.plot([0.0], [_heun(rows, fields, steps, "nll_gap")], marker="*", ms=11, color=f"C{i}")
        ref = reference[fields]
        ax.axhline(ref["nll_gap"], color="k", ls="--", lw=1, label=f"ODE likelihood, {ref['solver']}")
        ax.axhline(0.0, color="gray", ls=":", lw=1)
        ax.set(title=f"{fields} fields", ylabel="NLL gap: mean(-log rho_hat) - mean(-log rho1)")
        ax.set_yscale("symlog", linthresh=0.01)
        _eps_axis(ax, cfg)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"Likelihood of {cfg['n_like']} held-out points: ODE (eps = 0, Euler; stars: Heun at the same NFE) and the "
        f"backward-SDE estimator ({cfg['like_paths']} independent paths per point); bars: one standard error",
        fontsize=9,
    )
    _save(fig, path)


def plot_samples(scatter: dict, ref: np.ndarray, cfg: dict, path: Path) -> None:
    eps_list = cfg["scatter_eps"]
    groups = [(f, n) for n in cfg["scatter_steps"] for f in ("learned", "exact")]
    fig, axes = plt.subplots(len(groups), len(eps_list) + 1, figsize=(2.3 * (len(eps_list) + 1), 2.4 * len(groups)))
    for row, (fields, steps) in enumerate(groups):
        panels = [("target", ref)]
        panels += [(f"eps = {e:g}" + (" (ODE)" if e == 0 else ""), scatter[fields][steps, e]) for e in eps_list]
        for ax, (title, y) in zip(axes[row], panels, strict=True):
            ax.scatter(y[:, 0], y[:, 1], s=1.5, alpha=0.5, linewidths=0, color="k" if title == "target" else "C0")
            ax.set(xlim=(-4.8, 4.8), ylim=(-4.8, 4.8), aspect="equal", xticks=[], yticks=[])
            ax.set_title(title, fontsize=9)
        axes[row, 0].set_ylabel(f"{fields}, {steps} steps", fontsize=9)
    fig.suptitle("Samples (Euler ODE at eps = 0, Euler–Maruyama SDE above)", fontsize=10)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _finite_or_none(obj):
    """NaN and inf become null: json.dumps would write them as bare NaN/Infinity, which is not JSON."""
    if isinstance(obj, dict):
        return {str(k): _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
