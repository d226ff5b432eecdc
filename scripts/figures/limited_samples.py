"""Flow from limited samples (Cui, Krzakala, Vanden-Eijnden, Zdeborová, ICLR 2024): the generated mean's error is
Theta(1/n).

    python scripts/figures/limited_samples.py [--out scripts/figures/results/limited_samples] [--quick]

Setup, as in the paper and its official code:

- Target ``rho1 = 1/2 N(mu, sigma^2 I_d) + 1/2 N(-mu, sigma^2 I_d)`` with ``mu = (1, ..., 1)`` (``|mu|^2 / d = 1``),
  base ``x0 ~ N(0, I_d)``, linear interpolant ``x_t = (1 - t) x0 + t x1``.
- ``n`` training pairs ``(x0^m, x1^m)`` drawn once and reused at every time. At each of the ``K`` Euler times
  ``t_k = k / K`` an independent tied-weight DAE ``f_k(x) = c_k x + w_k sign(w_k . x / sqrt(d))`` minimises

      R_k(c_k, w_k) = 1/2 sum_m |f_k(x_{t_k}^m) - x1^m|^2 + lambda/2 |w_k|^2,

  full batch, by Adam (the paper's code: lr 0.04, lambda 0.1 on w only; here with a cosine decay of the learning
  rate, so that the weights converge rather than hover at the scale of lr). All ``K`` rows, all seeds, train at once:
  the rows are independent problems and Adam is elementwise, so this is ``K * seeds`` separate trainings.
- Samples: Euler with ``K`` steps on ``b(t_k, x) = (f_k(x) - x) / (1 - t_k)``, from fresh base draws.
- Metric (the paper's): ``mu_hat = mean_i sign(mu . X_i) X_i`` over the generated ``X_i``, and ``|mu_hat - mu|^2 / d``.
  Its finite-sample bias ``tr Cov / (N d)`` (``N`` generated points) is subtracted, so the number reported estimates
  the error of the generated mixture itself. The raw value is kept in numbers.json too.

Also reported: the same statistic for the sign-aligned empirical mean of the ``n`` training samples (``~ sigma^2/n``,
the order of the Bayes-optimal error), and the floor at ``n = infinity``: the same Euler sampler on the exact
velocity of the mixture. Writes error_vs_n.png, dae_parameters.png and numbers.json into --out.
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
import optax
from jaxtyping import Array, Float, PRNGKeyArray, Scalar
from omegaconf import OmegaConf

from experiments._common import instantiate_at
from experiments.compose import compose
from genflow.data._binary_gmm import binary_gmm
from genflow.interpolants import FlowMatching
from genflow.nn import TimeTabulatedDAE, VelocityOutput
from genflow.solvers import Euler

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# The settings: figure.* of configs/experiment/limited_samples.yaml (--quick: configs/debug/limited_samples.yaml);
# the DAE's nonlinearity is the experiment's net.activation.
EXPERIMENT = "limited_samples"


def settings(quick: bool = False) -> dict:
    """The run's settings as a dict (static under jit): ``figure.*`` and the activation function."""
    cfg = compose(EXPERIMENT, quick=quick)
    out = OmegaConf.to_container(cfg.figure, resolve=True)
    out["ns"] = tuple(out["ns"])
    num_generated = out.pop("num_generated")  # after the activation, as numbers.json has always listed them
    return {**out, "activation": instantiate_at(cfg, "net.activation"), "num_generated": num_generated}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=ROOT / "scripts/figures/results/limited_samples")
    p.add_argument("--quick", action="store_true", help="tiny settings, for the smoke test")
    args = p.parse_args(argv)
    cfg = settings(args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    mu = jnp.ones((cfg["dim"],))

    per_n, examples = [], {}
    for n in cfg["ns"]:
        t_n = time.perf_counter()
        keys = jax.random.split(jax.random.fold_in(jax.random.key(0), n), cfg["num_seeds"])
        res, nets = run_seeds(keys, mu, n, cfg)
        res = jax.tree_util.tree_map(np.asarray, res)
        examples[n] = jax.tree_util.tree_map(lambda a: np.asarray(a[0]), (nets.c, nets.w))
        per_n.append({"n": n, **_summary(res), "seconds": time.perf_counter() - t_n})
        print(f"n={n:5d}  error={per_n[-1]['error_mean']:.3e} +- {per_n[-1]['error_std']:.1e}", flush=True)

    floor = oracle_floor(jax.random.key(1), mu, cfg)
    fit = fit_slope([r["n"] for r in per_n], [r["error_mean"] for r in per_n])
    fit_raw = fit_slope([r["n"] for r in per_n], [r["error_raw_mean"] for r in per_n])
    fit_emp = fit_slope([r["n"] for r in per_n], [r["empirical_mean_error_mean"] for r in per_n])
    seed_slopes = [fit_slope(cfg["ns"], [r["error"][s] for r in per_n])["slope"] for s in range(cfg["num_seeds"])]
    numbers = {
        "paper": "Cui, Krzakala, Vanden-Eijnden, Zdeborova, ICLR 2024 (arXiv:2310.03575)",
        "config": {
            **cfg,
            "activation": cfg["activation"].__name__,
            "quick": args.quick,
            "mu": "ones(d)",
            "interpolant": "x_t = (1 - t) x0 + t x1",
        },
        "metric": "|mu_hat - mu|^2 / d, mu_hat = mean sign(mu.X) X over generated X, minus its sampling variance",
        "results": per_n,
        "fit_log_error_vs_log_n": fit,
        "fit_raw_error": fit_raw,
        "fit_per_seed_slopes": {
            "slopes": seed_slopes,
            "mean": float(np.mean(seed_slopes)),
            "sem": float(np.std(seed_slopes, ddof=1) / math.sqrt(len(seed_slopes))),
        },
        "fit_empirical_mean_of_training_samples": fit_emp,
        "oracle_floor_exact_velocity": floor,
        "wall_seconds": time.perf_counter() - t_start,
        "device": str(jax.devices()[0]),
    }
    plot_error(numbers, args.out / "error_vs_n.png")
    plot_parameters(examples, cfg, args.out / "dae_parameters.png")
    (args.out / "numbers.json").write_text(json.dumps(numbers, indent=2))
    print(json.dumps({k: numbers[k] for k in ("fit_log_error_vs_log_n", "wall_seconds")}, indent=2))
    return numbers


# ---------------------------------------------------------------------------------------------------------- training


def dae_risk_per_time(
    net: TimeTabulatedDAE, x0: Float[Array, "n d"], x1: Float[Array, "n d"], weight_decay: float
) -> Float[Array, " num_times"]:
    r"""The per-time empirical risks ``R_k``, computed without forming ``x_{t_k}``.

    With ``a = 1 - t_k``, ``b = t_k`` the residual is ``c a x0 + (c b - 1) x1 + z w`` with
    ``z = phi((a w.x0 + b w.x1) / sqrt(d))``, so its squared norm only needs the Gram terms ``|x0|^2, |x1|^2,
    x0.x1`` (summed once) and the projections ``X0 w, X1 w``: two ``(n, d) x (d, K)`` products per step instead
    of ``K`` copies of the data. :func:`dae_risk_direct` is the plain form; the tests check that they agree.
    """
    d = x0.shape[-1]
    a, b = 1 - net.times, net.times
    p0, p1 = x0 @ net.w.T, x1 @ net.w.T  # (n, K)
    z = net.activation((a * p0 + b * p1) / math.sqrt(d))
    s00, s11, s01 = jnp.sum(x0 * x0), jnp.sum(x1 * x1), jnp.sum(x0 * x1)
    c, ww = net.c, jnp.sum(net.w**2, axis=-1)
    cross = c * a * jnp.sum(z * p0, axis=0) + (c * b - 1) * jnp.sum(z * p1, axis=0)
    sq = (c * a) ** 2 * s00 + (c * b - 1) ** 2 * s11 + 2 * c * a * (c * b - 1) * s01 + ww * jnp.sum(z**2, axis=0)
    return 0.5 * (sq + 2 * cross) + 0.5 * weight_decay * ww


def dae_risk_direct(
    net: TimeTabulatedDAE, x0: Float[Array, "n d"], x1: Float[Array, "n d"], weight_decay: float
) -> Float[Array, " num_times"]:
    """``R_k = 1/2 sum_m |f_k(x_{t_k}^m) - x1^m|^2 + lambda/2 |w_k|^2`` through the network itself."""

    def risk_k(t):
        xt = (1 - t) * x0 + t * x1
        f = jax.vmap(net.denoise, in_axes=(None, 0))(t, xt)
        return 0.5 * jnp.sum((f - x1) ** 2) + 0.5 * weight_decay * jnp.sum(net.w[net.index(t)] ** 2)

    return jax.vmap(risk_k)(net.times)


def train_dae(key: PRNGKeyArray, x1: Float[Array, "n d"], cfg: dict) -> tuple[TimeTabulatedDAE, Array]:
    """Fit every row of the table on the ``n`` fixed pairs; one ``lax.scan`` over the Adam steps.

    Returns the network and the per-time risk (per sample and dimension, without the penalty) after training.
    """
    n, d = x1.shape
    k_net, k_x0 = jax.random.split(key)
    net = TimeTabulatedDAE(d, cfg["num_times"], cfg["activation"], VelocityOutput(), key=k_net)
    x0 = jax.random.normal(k_x0, (n, d))  # the paired base draws, the same at every time
    opt = optax.adam(optax.warmup_cosine_decay_schedule(0.0, cfg["lr"], warmup_steps=0, decay_steps=cfg["train_steps"]))
    loss = lambda m: jnp.sum(dae_risk_per_time(m, x0, x1, cfg["weight_decay"]))

    def step(carry, _):
        m, state = carry
        grads = jax.grad(loss)(m)
        updates, state = opt.update(grads, state, m)
        return (eqx.apply_updates(m, updates), state), None

    (net, _), _ = jax.lax.scan(step, (net, opt.init(net)), None, length=cfg["train_steps"])
    return net, dae_risk_per_time(net, x0, x1, 0.0) / (n * d)


# -------------------------------------------------------------------------------------------------------- evaluation


def mean_error(x: Float[Array, "N d"], mu: Float[Array, " d"]) -> tuple[Scalar, Scalar]:
    """``|mu_hat - mu|^2 / d`` with ``mu_hat`` the mean of the sign-aligned points, raw and bias-corrected.

    ``E|mu_hat - mu|^2 = |E mu_hat - mu|^2 + tr Cov(y) / N`` for the aligned points ``y``, so subtracting the
    unbiased ``tr Cov / N`` estimates the error of the distribution the points come from.
    """
    num, d = x.shape
    y = jnp.sign(x @ mu)[:, None] * x
    mu_hat = jnp.mean(y, axis=0)
    raw = jnp.sum((mu_hat - mu) ** 2) / d
    var = jnp.sum((y - mu_hat) ** 2) / (num - 1) / num / d
    return raw - var, raw


@eqx.filter_jit
def run_seeds(keys: PRNGKeyArray, mu: Float[Array, " d"], n: int, cfg: dict) -> tuple[dict, TimeTabulatedDAE]:
    """Train and evaluate one model per key (vmapped); ``n`` and ``cfg`` are static."""

    def one(key):
        k_data, k_train, k_gen = jax.random.split(key, 3)
        x1 = binary_gmm(mu, cfg["sigma"]).sample(k_data, n)
        net, per_time = train_dae(k_train, x1, cfg)
        model = FlowMatching(net, mu.shape, sampler=Euler(num_steps=cfg["num_times"]))
        err, raw = mean_error(model.sample(k_gen, cfg["num_generated"]), mu)
        _, emp = mean_error(x1, mu)  # raw: the error of the estimate itself
        out = {"error": err, "error_raw": raw, "empirical_mean_error": emp}
        return out | {"risk_per_time": per_time}, net

    return jax.vmap(one)(keys)


def exact_denoiser(t: Scalar, x: Float[Array, " d"], mu: Float[Array, " d"], sigma: float) -> Float[Array, " d"]:
    r"""``E[x1 | x_t = x] = (t sigma^2 / v) x + ((1 - t)^2 / v) mu tanh(t mu.x / v)``, ``v = (1-t)^2 + t^2 sigma^2``."""
    v = (1 - t) ** 2 + t**2 * sigma**2
    return (t * sigma**2 / v) * x + ((1 - t) ** 2 / v) * mu * jnp.tanh(t * jnp.dot(mu, x) / v)


def oracle_floor(key: PRNGKeyArray, mu: Float[Array, " d"], cfg: dict) -> dict:
    """The metric at ``n = infinity``: the same Euler grid on the exact velocity ``(E[x1|x] - x) / (1 - t)``."""
    sigma, num_times = cfg["sigma"], cfg["num_times"]
    velocity = lambda t, x: (exact_denoiser(t, x, mu, sigma) - x) / (1 - t)
    field = jax.jit(lambda t, x: jax.vmap(velocity, in_axes=(None, 0))(t, x))
    x0 = jax.random.normal(key, (4 * cfg["num_generated"], mu.shape[0]))
    err, raw = mean_error(Euler(num_steps=num_times).solve(field, x0, 0.0, 1.0).y, mu)
    return {"error": float(err), "error_raw": float(raw), "num_generated": int(x0.shape[0])}


def _summary(res: dict) -> dict:
    out = {}
    for name in ("error", "error_raw", "empirical_mean_error"):
        out[name] = res[name].tolist()
        out[f"{name}_mean"] = float(np.mean(res[name]))
        out[f"{name}_std"] = float(np.std(res[name], ddof=1)) if res[name].size > 1 else 0.0
    out["risk_per_time_seed_mean_at_t"] = {
        f"{t:.2f}": float(v) for t, v in zip(*_grid_samples(np.mean(res["risk_per_time"], axis=0)), strict=True)
    }
    return out


def _grid_samples(per_time: np.ndarray) -> tuple[list[float], list[float]]:
    """Five grid times spread over [0, 1) for the JSON, not the whole table."""
    num = per_time.shape[0]
    idx = sorted({0, num // 4, num // 2, 3 * num // 4, num - 1})
    return [i / num for i in idx], [per_time[i] for i in idx]


def fit_slope(ns, errors) -> dict:
    """Least squares ``log10 err = a + s log10 n``, with the standard error of ``s`` from the residuals."""
    x, y = np.log10(np.asarray(ns, float)), np.log10(np.asarray(errors, float))
    design = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    dof = max(len(x) - 2, 1)
    cov = np.sum(resid**2) / dof * np.linalg.inv(design.T @ design)
    return {"slope": float(coef[1]), "slope_stderr": float(np.sqrt(cov[1, 1])), "intercept_log10": float(coef[0])}


# ----------------------------------------------------------------------------------------------------------- figures


def plot_error(numbers: dict, path: Path) -> None:
    res, fit, sigma = numbers["results"], numbers["fit_log_error_vs_log_n"], numbers["config"]["sigma"]
    ns = np.array([r["n"] for r in res], float)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for key, label, colour in (
        ("error", "generated mixture (flow, DAE)", "C0"),
        ("empirical_mean_error", "empirical mean of the n samples", "C2"),
    ):
        mean = np.array([r[f"{key}_mean"] for r in res])
        std = np.array([r[f"{key}_std"] for r in res])
        ax.errorbar(ns, mean, yerr=std, fmt="o", capsize=3, color=colour, label=label)
    ax.plot(ns, 10 ** fit["intercept_log10"] * ns ** fit["slope"], "-", color="C0", alpha=0.7,
            label=f"fit: slope {fit['slope']:.2f} $\\pm$ {fit['slope_stderr']:.2f}")  # fmt: skip
    ax.plot(ns, sigma**2 / ns, "--", color="gray", label=r"$\sigma^2 / n$")
    floor = numbers["oracle_floor_exact_velocity"]["error"]
    if floor > 0:
        ax.axhline(floor, color="C3", ls=":", label="exact velocity, same Euler grid")
    cfg = numbers["config"]
    ax.set(xscale="log", yscale="log", xlabel="n (training samples)", ylabel=r"$|\hat\mu - \mu|^2 / d$")
    ax.set_title(f"d={cfg['dim']}, $\\sigma$={sigma}, {cfg['num_seeds']} seeds (mean $\\pm$ std)", fontsize=10)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_parameters(examples: dict, cfg: dict, path: Path) -> None:
    """Learned skip ``c_k`` and alignment ``w_k . mu / (|w_k||mu|)`` against the exact denoiser's, seed 0."""
    t = np.arange(cfg["num_times"]) / cfg["num_times"]
    v = (1 - t) ** 2 + t**2 * cfg["sigma"] ** 2
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for i, n in enumerate(sorted(examples)[:: max(1, len(examples) // 4)]):
        c, w = examples[n]
        cos = w @ np.ones(cfg["dim"]) / (np.linalg.norm(w, axis=1) * math.sqrt(cfg["dim"]))
        axes[0].plot(t, c, color=f"C{i}", label=f"n={n}")
        axes[1].plot(t, np.abs(cos), color=f"C{i}", label=f"n={n}")
    axes[0].plot(t, t * cfg["sigma"] ** 2 / v, "k--", label=r"exact $t\sigma^2/v$")
    axes[0].set(xlabel="t", ylabel="skip connection $c_t$")
    axes[1].set(xlabel="t", ylabel=r"$|\cos(w_t, \mu)|$")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
