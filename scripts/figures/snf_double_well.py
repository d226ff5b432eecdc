"""Stochastic normalizing flows on the tilted double well (Wu, Köhler, Noé, NeurIPS 2020): RealNVP against RealNVP
with Metropolis blocks, free energy along x1 with and without reweighting, bias and spread over seeds.

    python scripts/figures/snf_double_well.py [--out scripts/figures/results/snf_double_well] [--quick]

Setup:

- Target ``u(x) = x1^4 - 6 x1^2 - 0.5 x1 + x2^2 / 2`` (``TiltedDoubleWell``), prior ``N(0, I)``.
- RNVP: 3 blocks of 2 affine couplings (MLP width 64, depth 2). RNVP + MC: the same, each block followed by
  ``num_mc`` random-walk Metropolis steps on ``u_lambda = (1 - lambda) u_Z + lambda u_X``, ``lambda = 1/3, 2/3, 1``.
- Settings: the experiment config ``snf_double_well`` (``flow_snf_double_well`` on the tilted well, with
  ``optim=adam_cosine`` and the figure's settings under ``figure``); ``--quick`` adds ``configs/debug/snf_double_well``.
- Training by maximum likelihood on exact target samples (backward paths for the SNF), which covers both wells,
  or (``--objective reverse_kl``) by reverse KL from the energy alone, where the plain flow tends to under-fill
  the shallower well and the weights must correct it.
- Evaluation: ``num_eval`` samples with path weights ``log w = u_Z(z) - u_X(x) + sum Delta S``. Free energy along
  x1, ``F(x1) = -log p(x1)``, from histograms, plain or with self-normalised weights; the exact profile by
  quadrature. The headline number is the free-energy difference between the wells,
  ``Delta F = -log P(x1 < 0) / P(x1 > 0)``; bias = mean over seeds of the estimate minus the exact value, with its
  standard deviation over seeds. Also the profile's RMS error (bins with exact ``F < F_min + 6``, offsets
  aligned), the Kish ESS and log Z.

Writes free_energy.png, samples.png and numbers.json into --out.

References:
    Wu, Köhler, Noé, "Stochastic Normalizing Flows", NeurIPS 2020 (section 5 and its double-well notebook).
"""

from __future__ import annotations

import copy
import json
import math
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from _flows_common import figure_parser, save_figure, write_numbers
from omegaconf import DictConfig, OmegaConf

from experiments._common import build_data, build_net, build_trainer, instantiate_at
from experiments.compose import compose
from genflow.distributions import TiltedDoubleWell
from genflow.flows import StochasticNormalizingFlow, kish_ess, log_partition_estimate

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def settings(cfg: DictConfig, objective: str) -> dict:
    """The run's settings as numbers.json records them (``config``)."""
    net, fig = cfg.net, OmegaConf.to_container(cfg.figure, resolve=True)
    names = ("num_blocks", "layers_per_block", "width", "depth")
    return {name: net[name] for name in names} | {
        "mc_step_size": net.block.step_size,
        "num_mc": net.block.num_steps,
        "train_steps": cfg.train.num_steps,
        "batch": cfg.train.batch_size,
        "lr": cfg.optim._args_[1].learning_rate.peak_value,
        "seeds": fig["seeds"],
        "num_eval": fig["num_eval"],
        "bins": fig["bins"],
        "range": fig["range"],
        "profile_window": fig["profile_window"],
        "objective": objective,
    }


def model_config(cfg: DictConfig, name: str, objective: str) -> DictConfig:
    """``cfg`` with the block of ``figure.models[name]`` and the objective ``figure.objectives[objective]``."""
    cfg = copy.deepcopy(cfg)
    cfg.model.objective = cfg.figure.objectives[objective]
    cfg.net.block = cfg.figure.models[name]
    return cfg


def train(cfg: DictConfig, target, seed: int) -> StochasticNormalizingFlow:
    """The SNF of ``cfg`` (layers initialised from ``seed``), trained on ``target``; returns the EMA model."""
    model = instantiate_at(cfg, "model", net=build_net(cfg, jax.random.key(seed)), data_shape=target.event_shape)
    return build_trainer(cfg, None).fit(model, target, key=jax.random.key(1000 + seed)).ema_model


def exact_profile(target: TiltedDoubleWell, edges: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Bin probabilities of x1, the exact Delta F and log Z (x2's Gaussian factor included), by quadrature."""
    g = np.linspace(-6, 6, 600_001)
    h = g[1] - g[0]
    p = np.exp(-np.asarray(target.energy_x1(g), np.float64))
    z1 = p.sum() * h
    cdf = np.concatenate([[0.0], np.cumsum(p) * h]) / z1
    probs = np.diff(np.interp(edges, g, cdf[1:]))
    left = np.interp(0.0, g, cdf[1:])
    return probs, float(-math.log(left / (1 - left))), float(math.log(z1) + 0.5 * math.log(2 * math.pi))


def profile(x1, weights, edges) -> np.ndarray:
    hist, _ = np.histogram(x1, bins=edges, weights=weights)
    with np.errstate(divide="ignore"):
        return -np.log(hist / hist.sum())


def delta_f(x1, weights) -> float:
    w = np.ones_like(x1) if weights is None else weights
    return float(-math.log(np.sum(w * (x1 < 0)) / np.sum(w * (x1 >= 0))))


def profile_rmse(f_est: np.ndarray, f_true: np.ndarray, window: float) -> float:
    """RMS error over bins with exact ``F < min F + window``, after the best constant offset (F is defined up to
    one). Bins the estimate never reached count as the largest error seen (they are not silently dropped)."""
    mask = f_true < f_true.min() + window
    diff = f_est[mask] - f_true[mask]
    finite = np.isfinite(diff)
    diff = diff - np.mean(diff[finite])
    diff[~finite] = np.max(np.abs(diff[finite]))
    return float(np.sqrt(np.mean(diff**2)))


def evaluate(model, key, cfg: dict, edges, f_true, df_true) -> tuple[dict, dict]:
    x, log_w = model.sample_with_log_weights(key, cfg["num_eval"])
    x, log_w = np.asarray(x, np.float64), jnp.asarray(log_w)
    w = np.asarray(jax.nn.softmax(log_w), np.float64)
    x1 = x[:, 0]
    profiles = {"plain": profile(x1, None, edges), "reweighted": profile(x1, w, edges)}
    row = {
        "delta_f_plain": delta_f(x1, None),
        "delta_f_reweighted": delta_f(x1, w),
        "rmse_plain": profile_rmse(profiles["plain"], f_true, cfg["profile_window"]),
        "rmse_reweighted": profile_rmse(profiles["reweighted"], f_true, cfg["profile_window"]),
        "ess_fraction": float(kish_ess(log_w)) / x.shape[0],
        "log_z": float(log_partition_estimate(log_w)),
        "left_well_fraction": float(np.mean(x1 < 0)),
    }
    row["bias_plain"] = row["delta_f_plain"] - df_true
    row["bias_reweighted"] = row["delta_f_reweighted"] - df_true
    return row, profiles | {"samples": x[:2000]}


def summarise(rows: list[dict]) -> dict:
    out = {}
    for k in ("bias_plain", "bias_reweighted", "rmse_plain", "rmse_reweighted", "ess_fraction", "log_z"):
        v = np.array([r[k] for r in rows])
        out[k] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    return out


def plot_free_energy(path, centres, f_true, curves):
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, kind in zip(axes, ("plain", "reweighted"), strict=True):
        ax.plot(centres, f_true - f_true.min(), "k", lw=2, label="exact")
        for name, per_seed in curves.items():
            f = np.stack([c[kind] for c in per_seed])
            f = f - np.nanmin(np.where(np.isfinite(f), f, np.nan), axis=1, keepdims=True)
            mean, std = (
                np.nanmean(np.where(np.isfinite(f), f, np.nan), 0),
                np.nanstd(np.where(np.isfinite(f), f, np.nan), 0),
            )
            (line,) = ax.plot(centres, mean, label=name)
            ax.fill_between(centres, mean - std, mean + std, color=line.get_color(), alpha=0.25)
        ax.set_title(f"free energy along x1, {kind}")
        ax.set_xlabel("x1")
        ax.set_ylim(-0.5, 10)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("F(x1) - min F")
    save_figure(fig, path)


def plot_samples(path, reference, curves):
    fig, axes = plt.subplots(1, 1 + len(curves), figsize=(3.2 * (1 + len(curves)), 3.2), sharex=True, sharey=True)
    panels = [("exact", reference)] + [(name, per_seed[0]["samples"]) for name, per_seed in curves.items()]
    for ax, (name, x) in zip(axes, panels, strict=True):
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.3)
        ax.set_title(name)
        ax.set_xlim(-3, 3)
        ax.set_ylim(-4, 4)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    p = figure_parser("snf_double_well")
    p.add_argument("--objective", choices=("ml", "reverse_kl"), default="ml", help="ml: exact target samples")
    args = p.parse_args(argv)
    run_cfg = compose("snf_double_well", quick=args.quick)
    cfg = settings(run_cfg, args.objective)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    target: TiltedDoubleWell = build_data(run_cfg)
    edges = np.linspace(*cfg["range"], cfg["bins"] + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    probs, df_true, log_z_true = exact_profile(target, edges)
    f_true = -np.log(probs / probs.sum())

    rows, curves, seconds = {}, {}, {}
    for name in run_cfg.figure.models:
        rows[name], curves[name] = [], []
        t0 = time.perf_counter()
        for seed in cfg["seeds"]:
            model = train(model_config(run_cfg, name, args.objective), target, seed)
            row, prof = evaluate(model, jax.random.key(10_000 + seed), cfg, edges, f_true, df_true)
            rows[name].append({"seed": seed, **row})
            curves[name].append(prof)
            print(json.dumps({"model": name, **rows[name][-1]}), flush=True)
        seconds[name] = time.perf_counter() - t0

    plot_free_energy(args.out / "free_energy.png", centres, f_true, curves)
    plot_samples(args.out / "samples.png", np.asarray(target.sample(jax.random.key(7), 2000)), curves)
    numbers = {
        "config": cfg | {"quick": args.quick},
        "exact": {"delta_f": df_true, "log_z": log_z_true},
        "summary": {name: summarise(r) for name, r in rows.items()},
        "per_seed": rows,
        "paper_notebook_reweighted_bias": {"RNVP": 0.26, "RNVP + MC": 0.15},
        "seconds": {"train_and_eval": seconds, "total": time.perf_counter() - t_start},
    }
    return write_numbers(args.out, numbers)


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
