"""Smooth normalizing flows on the torus (Köhler, Krämer, Noé, NeurIPS 2021): spline against smooth flows, each
trained by likelihood alone and by likelihood plus force matching.

    python scripts/figures/smooth_flows_torus.py [--out scripts/figures/results/smooth_flows_torus] [--quick]

Setup (the experiment config ``smooth_flows_torus``, ``flow_smooth_torus`` with the script's optimizer and the
settings under ``figure``; ``--quick`` adds ``configs/debug/smooth_flows_torus.yaml``):

- Target: a Ramachandran-like mixture of three products of von Mises densities on ``[-pi, pi)^2`` with exact
  samples and analytic forces ``F = grad log p``.
- Flows: 4 coupling layers on the torus with a uniform base, conditioners see ``cos x, sin x`` (SiLU MLPs, width
  64, depth 2). The transformer is a circular rational-quadratic spline (8 bins) or a circular smooth-step mixture
  (8 components). Both are inverted (``invert=True``) so that density evaluation is the analytic direction.
- Objectives: ``L = E[-log q] + w_f E||grad_x log q - F||^2`` with ``w_f = 0`` (likelihood only) or ``w_f > 0``.
- Metrics on fresh target samples: NLL ``E_p[-log q]`` (the entropy of ``p`` is its floor), the force MSE
  ``E_p||grad log q - F||^2``, and the largest jump of the force along a fine line (spline forces jump at knots).

Writes densities.png, forces.png, force_slice.png and numbers.json into --out.

References:
    Köhler, Krämer, Noé, "Smooth Normalizing Flows", NeurIPS 2021.
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
from genflow.distributions import TorusVonMisesMixture
from genflow.flows import Flow, WithForces

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def settings(cfg: DictConfig) -> dict:
    """The run's settings as numbers.json records them (``config``)."""
    adam = cfg.optim._args_[1].learning_rate
    names = ("num_test", "grid", "quiver_grid", "slice_points")
    return {
        "num_layers": cfg.net.num_layers,
        "width": cfg.net.width,
        "depth": cfg.net.depth,
        "knots": cfg.figure.knots,
        "train_steps": cfg.train.num_steps,
        "batch": cfg.train.batch_size,
        "lr": adam.peak_value,
        "force_weight": cfg.model.objective.force_weight,
    } | {name: cfg.figure[name] for name in names}


def flow_config(cfg: DictConfig, kind: str, force_weight: float) -> DictConfig:
    """``cfg`` with the transformer ``figure.transformers[kind]`` and the objective of ``force_weight``."""
    cfg = copy.deepcopy(cfg)
    cfg.net.transformer = cfg.figure.transformers[kind]
    if force_weight > 0:
        cfg.model.objective.force_weight = force_weight
    else:
        cfg.model.objective = cfg.figure.likelihood_objective
    return cfg


def train(cfg: DictConfig, data: WithForces, key) -> Flow:
    """The flow of ``cfg`` (its bijection initialised from ``key``), trained on ``data``; returns the EMA model."""
    model = instantiate_at(cfg, "model", net=build_net(cfg, key), data_shape=tuple(data.event_shape))
    return build_trainer(cfg, None).fit(model, data, key=jax.random.key(cfg.train.seed)).ema_model


def forces(model: Flow, x: jax.Array) -> jax.Array:
    """``grad_x log q(x)`` for a batch."""
    return jax.vmap(jax.grad(lambda xi: model.log_prob(xi[None])[0]))(x)


def evaluate(model: Flow, target: TorusVonMisesMixture, x_test, slice_x) -> dict:
    log_q = model.log_prob(x_test)
    err = jnp.sum((forces(model, x_test) - target.score(x_test)) ** 2, axis=-1)
    slice_f = forces(model, slice_x)[:, 0]
    return {
        "nll": float(-jnp.mean(log_q)),
        "nll_se": float(jnp.std(log_q) / math.sqrt(x_test.shape[0])),
        "force_mse": float(jnp.mean(err)),
        "force_mse_se": float(jnp.std(err) / math.sqrt(x_test.shape[0])),
        "max_force_jump_on_slice": float(jnp.max(jnp.abs(jnp.diff(slice_f)))),
    }


def grid(n: int):
    g = jnp.linspace(-math.pi, math.pi, n, endpoint=False) + math.pi / n
    xx, yy = jnp.meshgrid(g, g, indexing="xy")
    return xx, yy, jnp.stack([xx.ravel(), yy.ravel()], axis=-1)


def _torus_panel(ax, name: str) -> None:
    ax.set_title(name, fontsize=8)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig, path) -> None:
    save_figure(fig, path)


def plot_densities(path, target, models, n):
    xx, yy, pts = grid(n)
    panels = [("target", target.log_prob(pts))] + [(name, m.log_prob(pts)) for name, m in models.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8))
    vmax = float(jnp.max(jnp.exp(panels[0][1])))
    for ax, (name, lp) in zip(axes, panels, strict=True):
        ax.pcolormesh(xx, yy, np.exp(np.asarray(lp)).reshape(n, n), vmin=0, vmax=vmax, cmap="viridis")
        _torus_panel(ax, name)
    save_figure(fig, path)


def plot_forces(path, target, models, n):
    xx, yy, pts = grid(n)
    panels = [("target", target.score(pts))] + [(name, forces(m, pts)) for name, m in models.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8))
    for ax, (name, f) in zip(axes, panels, strict=True):
        f = np.asarray(f)
        ax.quiver(np.asarray(xx), np.asarray(yy), f[:, 0].reshape(n, n), f[:, 1].reshape(n, n), scale=150, width=0.006)
        ax.set_xlim(-math.pi, math.pi)
        ax.set_ylim(-math.pi, math.pi)
        _torus_panel(ax, name)
    save_figure(fig, path)


def plot_slice(path, target, models, slice_x):
    fig, ax = plt.subplots(figsize=(6, 3))
    x1 = np.asarray(slice_x[:, 0])
    ax.plot(x1, np.asarray(target.score(slice_x)[:, 0]), "k", lw=2, label="target")
    for name, m in models.items():
        ax.plot(x1, np.asarray(forces(m, slice_x)[:, 0]), lw=1, label=name)
    ax.set(xlabel=f"x1 (x2 = {float(slice_x[0, 1]):.2f})", ylabel="force F1 = d log q / dx1")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    p = figure_parser("smooth_flows_torus")
    args = p.parse_args(argv)
    cfg = compose("smooth_flows_torus", quick=args.quick)
    fig_cfg = cfg.figure
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    data = build_data(cfg)
    target: TorusVonMisesMixture = data.distribution
    x_test = target.sample(jax.random.key(123), fig_cfg.num_test)
    # A line through the two heavy modes' x2 range: the spline's forces jump wherever it crosses a knot.
    x1 = jnp.linspace(-math.pi, math.pi, fig_cfg.slice_points, endpoint=False)
    slice_x = jnp.stack([x1, jnp.full_like(x1, -0.7)], axis=-1)

    models, results, seconds = {}, [], {}
    for kind in fig_cfg.transformers:
        for fw in OmegaConf.to_container(fig_cfg.force_weights, resolve=True):
            name = f"{kind} ({'NLL + FM' if fw > 0 else 'NLL'})"
            t0 = time.perf_counter()
            models[name] = train(flow_config(cfg, kind, fw), data, jax.random.key(0))
            seconds[name] = time.perf_counter() - t0
            results.append({"flow": kind, "force_weight": fw, **evaluate(models[name], target, x_test, slice_x)})
            print(json.dumps(results[-1]), flush=True)

    log_p = target.log_prob(x_test)
    plot_densities(args.out / "densities.png", target, models, fig_cfg.grid)
    plot_forces(args.out / "forces.png", target, models, fig_cfg.quiver_grid)
    plot_slice(args.out / "force_slice.png", target, models, slice_x)
    numbers = {
        "config": settings(cfg) | {"quick": args.quick},
        "target_entropy": float(-jnp.mean(log_p)),  # the NLL floor, E_p[-log p]
        "target_entropy_se": float(jnp.std(log_p) / math.sqrt(x_test.shape[0])),
        "target_max_force_jump_on_slice": float(jnp.max(jnp.abs(jnp.diff(target.score(slice_x)[:, 0])))),
        "results": results,
        "seconds": {"train": seconds, "total": time.perf_counter() - t_start},
    }
    return write_numbers(args.out, numbers)


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
