"""Smooth normalizing flows on the torus (Köhler, Krämer, Noé, NeurIPS 2021): spline against smooth flows, each
trained by likelihood alone and by likelihood plus force matching.

    python scripts/figures/smooth_flows_torus.py [--out scripts/figures/results/smooth_flows_torus] [--quick]

Setup (the experiment config ``flow_smooth_torus``):

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

import argparse
import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax

from genflow.distributions import TorusVonMisesMixture
from genflow.flows import (
    Circular,
    Flow,
    ForceMatching,
    MaximumLikelihood,
    ReversePermutation,
    RQSplineTransformer,
    SmoothMixtureTransformer,
    Uniform,
    WithForces,
    coupling_flow,
)
from genflow.train import Trainer

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FULL = {
    "num_layers": 4,
    "width": 64,
    "depth": 2,
    "knots": 8,
    "train_steps": 3000,
    "batch": 256,
    "lr": 1e-3,
    "force_weight": 0.1,
    "num_test": 20_000,
    "grid": 100,
    "quiver_grid": 16,
    "slice_points": 2000,
}
QUICK = FULL | {"num_layers": 2, "width": 16, "depth": 1, "train_steps": 40, "num_test": 512, "grid": 24}
QUICK |= {"quiver_grid": 6, "slice_points": 200}
TORUS = (-math.pi, math.pi)
TRANSFORMERS = {
    "spline": lambda knots: RQSplineTransformer(knots, TORUS, boundary=Circular()),
    "smooth": lambda knots: SmoothMixtureTransformer(knots, TORUS, circular=True),
}


def make_target() -> TorusVonMisesMixture:
    """The experiment config's Ramachandran-like mixture (configs/experiment/flow_smooth_torus.yaml)."""
    return TorusVonMisesMixture(
        locs=[[-1.5, 2.5], [-1.2, -0.7], [1.0, 0.5]],
        concentrations=[[4.0, 3.0], [5.0, 5.0], [3.0, 6.0]],
        weights=[0.5, 0.35, 0.15],
    )


def build(cfg: dict, kind: str, force_weight: float, key) -> Flow:
    bij = coupling_flow(
        2,
        TRANSFORMERS[kind](cfg["knots"]),
        num_layers=cfg["num_layers"],
        width=cfg["width"],
        depth=cfg["depth"],
        activation=jax.nn.silu,
        permutation=ReversePermutation(),
        invert=True,
        key=key,
    )
    objective = ForceMatching(1.0, force_weight) if force_weight > 0 else MaximumLikelihood()
    return Flow(bij, base=Uniform((2,)), objective=objective)


def train(cfg: dict, model: Flow, data: WithForces, seed: int = 0) -> Flow:
    steps = cfg["train_steps"]
    opt = optax.chain(
        optax.clip_by_global_norm(10.0),
        optax.adam(optax.warmup_cosine_decay_schedule(0.0, cfg["lr"], 0, decay_steps=steps)),
    )
    per_call = math.gcd(steps, 100)
    trainer = Trainer(opt, steps, cfg["batch"], steps_per_call=per_call, ema_decay=0.99, progress=False)
    return trainer.fit(model, data, key=jax.random.key(seed)).ema_model


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


def plot_densities(path, target, models, n):
    xx, yy, pts = grid(n)
    panels = [("target", target.log_prob(pts))] + [(name, m.log_prob(pts)) for name, m in models.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8))
    vmax = float(jnp.max(jnp.exp(panels[0][1])))
    for ax, (name, lp) in zip(axes, panels, strict=True):
        ax.pcolormesh(xx, yy, np.exp(np.asarray(lp)).reshape(n, n), vmin=0, vmax=vmax, cmap="viridis")
        ax.set_title(name, fontsize=8)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_forces(path, target, models, n):
    xx, yy, pts = grid(n)
    panels = [("target", target.score(pts))] + [(name, forces(m, pts)) for name, m in models.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8))
    for ax, (name, f) in zip(axes, panels, strict=True):
        f = np.asarray(f)
        ax.quiver(np.asarray(xx), np.asarray(yy), f[:, 0].reshape(n, n), f[:, 1].reshape(n, n), scale=150, width=0.006)
        ax.set_title(name, fontsize=8)
        ax.set_aspect("equal")
        ax.set_xlim(-math.pi, math.pi)
        ax.set_ylim(-math.pi, math.pi)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_slice(path, target, models, slice_x):
    fig, ax = plt.subplots(figsize=(6, 3))
    x1 = np.asarray(slice_x[:, 0])
    ax.plot(x1, np.asarray(target.score(slice_x)[:, 0]), "k", lw=2, label="target")
    for name, m in models.items():
        ax.plot(x1, np.asarray(forces(m, slice_x)[:, 0]), lw=1, label=name)
    ax.set_xlabel(f"x1 (x2 = {float(slice_x[0, 1]):.2f})")
    ax.set_ylabel("force F1 = d log q / dx1")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=ROOT / "scripts/figures/results/smooth_flows_torus")
    p.add_argument("--quick", action="store_true", help="tiny settings, for the smoke test")
    args = p.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    target = make_target()
    data = WithForces(target)
    x_test = target.sample(jax.random.key(123), cfg["num_test"])
    # A line through the two heavy modes' x2 range: the spline's forces jump wherever it crosses a knot.
    x1 = jnp.linspace(-math.pi, math.pi, cfg["slice_points"], endpoint=False)
    slice_x = jnp.stack([x1, jnp.full_like(x1, -0.7)], axis=-1)

    models, results, seconds = {}, [], {}
    for kind in TRANSFORMERS:
        for fw in (0.0, cfg["force_weight"]):
            name = f"{kind} ({'NLL + FM' if fw > 0 else 'NLL'})"
            t0 = time.perf_counter()
            models[name] = train(cfg, build(cfg, kind, fw, jax.random.key(0)), data)
            seconds[name] = time.perf_counter() - t0
            results.append({"flow": kind, "force_weight": fw, **evaluate(models[name], target, x_test, slice_x)})
            print(json.dumps(results[-1]), flush=True)

    log_p = target.log_prob(x_test)
    plot_densities(args.out / "densities.png", target, models, cfg["grid"])
    plot_forces(args.out / "forces.png", target, models, cfg["quiver_grid"])
    plot_slice(args.out / "force_slice.png", target, models, slice_x)
    numbers = {
        "config": cfg | {"quick": args.quick},
        "target_entropy": float(-jnp.mean(log_p)),  # the NLL floor, E_p[-log p]
        "target_entropy_se": float(jnp.std(log_p) / math.sqrt(x_test.shape[0])),
        "target_max_force_jump_on_slice": float(jnp.max(jnp.abs(jnp.diff(target.score(slice_x)[:, 0])))),
        "results": results,
        "seconds": {"train": seconds, "total": time.perf_counter() - t_start},
    }
    (args.out / "numbers.json").write_text(json.dumps(numbers, indent=2))
    return numbers


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
