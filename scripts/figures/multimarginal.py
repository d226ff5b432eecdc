"""Multimarginal stochastic interpolants on 2D toys (Albergo, Boffi, Lindsey, Vanden-Eijnden, ICLR 2024).

    python scripts/figures/multimarginal.py [--out scripts/figures/results/multimarginal] [--quick]

One network g(a, x) with K + 1 heads is trained on the base N(0, I) and three 2D toys (moons, checkerboard,
8 Gaussians; ``--marginals`` changes them), with half of the loss's simplex points on the edges, which carry the
pairwise transports. The script then writes into --out:

- all_pairs.png: samples of every marginal (rows) carried along the edge to every other marginal (columns).
- correspondences.png: the same base points pushed to every marginal, coloured by their base position.
- paths.png: straight edges against optimised paths a(t) (g frozen) for every pair of data marginals. Each path is
  optimised from two starts (near the edge, and through the interior) and the better one is kept.
- numbers.json: sample quality, and the transport cost before and after path optimisation.

The transport cost is C[a] = ∫ E|sum_k a_k' g_k(a, x(a))|^2 dt, estimated on held-out samples with the midpoint rule
(the same samples for both paths). Also reported: the displacement E|T(x) - x|^2 of the ODE map along each path and
the exact OT cost W2^2 between the held-out samples, a lower bound (up to sampling error) for both.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from omegaconf import DictConfig, OmegaConf

from experiments._common import build_net, build_sampler, build_trainer, instantiate_at
from experiments.compose import compose
from genflow.interpolants._multimarginal import (
    EdgePath,
    FourierPath,
    MultimarginalInterpolant,
    optimize_path,
)
from genflow.metrics import energy_distance, w2_exact

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BASE = "gaussian"  # vertex 0 is the N(0, I) base
# Model and training: configs/experiment/multimarginal_figure.yaml (the experiment multimarginal with the figure's
# optimizer), built with experiments/train.py's builders; path optimisation and evaluation sizes: its figure.* node.
# --quick adds configs/debug/multimarginal.yaml.
EXPERIMENT = "multimarginal_figure"


def compose_config(quick: bool = False, overrides: Sequence[str] = ()) -> DictConfig:
    return compose(EXPERIMENT, overrides, quick=quick, debug="multimarginal")


def cli_overrides(args: argparse.Namespace) -> list[str]:
    """The command line's edits as Hydra overrides of the experiment."""
    out = []
    if args.alpha is not None:
        out.append(f"model.dirichlet_alpha={args.alpha}")
    if args.edge_fraction is not None:
        out.append(f"model.edge_fraction={args.edge_fraction}")
    if args.train_steps is not None:  # the warm-up stays 5 % of the run, the chunks at most 1000 steps
        steps = args.train_steps
        out += [f"train.num_steps={steps}", f"train.steps_per_call={min(steps, 1000)}"]
        out.append(f"optim._args_.0.learning_rate.warmup_steps={steps // 20}")
    if args.marginals is not None:
        toys = ",".join(f"{{_target_:genflow.data.Toy2D,name:{name}}}" for name in args.marginals)
        out += [f"model.marginals=[{toys}]", f"net.num_marginals={len(args.marginals) + 1}"]
    return out


def settings(cfg: DictConfig) -> dict:
    """The run's settings as numbers.json records them."""
    adam = cfg.optim._args_[0]
    return {
        "marginals": tuple(m.name for m in cfg.model.marginals),
        "train_steps": cfg.train.num_steps,
        "batch": cfg.train.batch_size,
        "width": cfg.net.width,
        "depth": cfg.net.depth,
        "alpha": cfg.model.dirichlet_alpha,
        "edge_fraction": cfg.model.edge_fraction,
        "ode_steps": cfg.sampler.num_steps,
        "lr": adam.learning_rate.peak_value,
        "warmup_steps": adam.learning_rate.warmup_steps,
        **OmegaConf.to_container(cfg.figure, resolve=True),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=ROOT / "scripts/figures/results/multimarginal")
    p.add_argument("--quick", action="store_true", help="tiny settings, for the smoke test")
    p.add_argument("--alpha", type=float, help="Dirichlet concentration of a in the loss")
    p.add_argument("--edge-fraction", type=float, help="fraction of a drawn on the edges in the loss")
    p.add_argument("--train-steps", type=int)
    p.add_argument("--marginals", type=lambda s: tuple(s.split(",")), help="comma-separated Toy2D names")
    args = p.parse_args(argv)
    run_cfg = compose_config(args.quick, cli_overrides(args))
    cfg = settings(run_cfg) | {"quick": args.quick}
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    model, final_loss = train(run_cfg)
    t_train = time.perf_counter() - t_start
    quality = sample_quality(model, cfg["n_eval"])
    quality["identity_residual"] = identity_residual(model, cfg["n_eval"])
    plot_all_pairs(model, cfg["n_plot"], args.out / "all_pairs.png")
    plot_correspondences(model, cfg["n_plot"], args.out / "correspondences.png")
    # Every pair of data marginals (the first three pairs when there are more).
    pairs = [(i, j) for i in range(1, model.num_marginals) for j in range(i + 1, model.num_marginals)][:3]
    paths = [path_experiment(model, i, j, cfg) for i, j in pairs]
    plot_paths(paths, args.out / "paths.png")

    numbers = {
        "config": cfg,
        "eval_loss_ema": final_loss,
        "train_seconds": t_train,
        "sample_quality": quality,
        "path_optimisation": [{k: v for k, v in r.items() if not k.startswith("_")} for r in paths],
        "total_seconds": time.perf_counter() - t_start,
    }
    (args.out / "numbers.json").write_text(json.dumps(numbers, indent=2))
    print(json.dumps(numbers, indent=2))
    return numbers


def train(cfg: DictConfig) -> tuple[MultimarginalInterpolant, float]:
    """The experiment's model and Trainer, built as experiments/train.py builds them, with the figure's own keys."""
    net = build_net(cfg, jax.random.key(0))
    model = instantiate_at(cfg, "model", net=net, data_shape=(2,), sampler=build_sampler(cfg))
    # The loss draws its own marginals; the trainer's batch (from the base) only sets the sample count.
    state = build_trainer(cfg, run_dir=None).fit(model, model.base, key=jax.random.key(1))
    keys = jax.random.split(jax.random.key(6), 8)
    loss = jnp.mean(jnp.stack([state.ema_model.loss(k, jnp.zeros((4096, 2))) for k in keys]))
    return state.ema_model, float(loss)


def sample_quality(model: MultimarginalInterpolant, n: int) -> dict:
    """Energy distance of base -> marginal samples and of marginal i -> j transports to fresh data, with the
    data-vs-data floor at the same size (both statistics are biased in 1/n)."""
    names = _names(model)
    xs = model.sample_marginals(jax.random.key(2), n)
    fresh = model.sample_marginals(jax.random.key(3), n)
    out = {}
    for j in range(1, model.num_marginals):
        floor = float(energy_distance(xs[j], fresh[j]))
        for i in range(model.num_marginals):
            if i != j:
                y = model.transport(xs[i], i, j).y
                out[f"{names[i]}->{names[j]}"] = float(energy_distance(y, fresh[j]))
        out[f"floor_{names[j]}"] = floor
    return {"energy_distance": out, "n": n}


def identity_residual(model: MultimarginalInterpolant, n: int) -> dict:
    """Relative error of the identity sum_k a_k g_k(a, x) = x, for a uniform on the simplex and for a on the edges
    (where transport evaluates g): a check of the learned fields that needs no reference."""
    k_x, k_a, k_e, k_t = jax.random.split(jax.random.key(8), 4)
    m = model.num_marginals
    xs = model.sample_marginals(k_x, n)
    uniform = jax.random.dirichlet(k_a, jnp.ones(m), (n,))
    ends = jax.vmap(lambda k: jax.random.choice(k, m, (2,), replace=False))(jax.random.split(k_e, n))
    t = jax.random.uniform(k_t, (n, 1))
    edge = (1 - t) * jax.nn.one_hot(ends[:, 0], m) + t * jax.nn.one_hot(ends[:, 1], m)

    def residual(a):
        x = model.interpolate(a, xs)
        g = jax.vmap(model.fields)(a, x)
        return float(jnp.mean(jnp.sum((jnp.einsum("nk,nkd->nd", a, g) - x) ** 2, -1)) / jnp.mean(jnp.sum(x**2, -1)))

    return {"simplex": residual(uniform), "edges": residual(edge)}


def plot_all_pairs(model: MultimarginalInterpolant, n: int, path: Path) -> None:
    names = _names(model)
    xs = model.sample_marginals(jax.random.key(4), n)
    images = np.asarray(model.all_pairs(tuple(xs)))
    m = model.num_marginals
    fig, axes = plt.subplots(m, m, figsize=(2.2 * m, 2.2 * m))
    for i in range(m):
        colour = _colour(np.asarray(xs[i]))
        for j in range(m):
            ax = axes[i, j]
            ax.scatter(images[i, j, :, 0], images[i, j, :, 1], s=1.5, c=colour, alpha=0.7, linewidths=0)
            ax.set(xlim=(-4.5, 4.5), ylim=(-4.5, 4.5), aspect="equal", xticks=[], yticks=[])
            if i == 0:
                ax.set_title(f"to {names[j]}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"from {names[i]}", fontsize=9)
    fig.suptitle("One model, every pair: row i carried along the edge e_i -> e_j (colour: source position)")
    _save(fig, path)


def plot_correspondences(model: MultimarginalInterpolant, n: int, path: Path) -> None:
    names = _names(model)
    x0 = model.base.sample(jax.random.key(5), n)
    colour = _colour(np.asarray(x0))
    m = model.num_marginals
    fig, axes = plt.subplots(1, m, figsize=(2.6 * m, 2.8))
    for k, ax in enumerate(axes):
        y = np.asarray(x0 if k == 0 else model.transport(x0, 0, k).y)
        ax.scatter(y[:, 0], y[:, 1], s=2, c=colour, alpha=0.8, linewidths=0)
        ax.set(title=names[k], xlim=(-4.5, 4.5), ylim=(-4.5, 4.5), aspect="equal", xticks=[], yticks=[])
    fig.suptitle("Correspondences: the same base points pushed to every marginal")
    _save(fig, path)


def path_experiment(model: MultimarginalInterpolant, i: int, j: int, cfg: dict) -> dict:
    """Optimise a path e_i -> e_j with g frozen, from near the edge and from a start through the interior, and
    compare costs on held-out samples."""
    names = _names(model)
    held_out = model.sample_marginals(jax.random.key(100 + 10 * i + j), cfg["n_eval"])
    cost = lambda path: float(model.transport_cost(path, held_out, num_times=64))
    edge = EdgePath(i, j, model.num_marginals)
    steps = cfg["path_steps"]
    # One optimizer object for every run: a new one would be a new static argument, hence a recompilation.
    opt = _path_optimizer(steps)
    runs = {}
    for name, bias in (("near_edge", -4.0), ("interior", -1.0)):
        start = FourierPath(i, j, model.num_marginals, num_modes=3, init_bias=bias)
        path, _ = optimize_path(model, start, jax.random.key(7), steps, optimizer=opt, batch_size=128, num_times=8)
        runs[name] = {"start": start, "path": path, "cost_start": cost(start), "cost": cost(path)}
    best = min(runs, key=lambda r: runs[r]["cost"])
    x = held_out[i]
    displacement = lambda path: float(jnp.mean(jnp.sum((model.transport(x, i, j, path=path).y - x) ** 2, -1)))
    best_path = runs[best]["path"]
    n_ot = min(2000, cfg["n_eval"])
    return {
        "pair": f"{names[i]}->{names[j]}",
        "cost_edge": cost(edge),
        "cost_optimised": runs[best]["cost"],
        "relative_reduction": 1 - runs[best]["cost"] / cost(edge),
        "best_start": best,
        "cost_by_start": {r: {"start": v["cost_start"], "optimised": v["cost"]} for r, v in runs.items()},
        "displacement_edge": displacement(edge),
        "displacement_optimised": displacement(best_path),
        "w2_sq_samples": w2_exact(held_out[i][:n_ot], held_out[j][:n_ot], squared=True),
        "_names": names,
        "_edge": edge,
        "_path": best_path,
    }


@functools.cache
def _path_optimizer(steps: int) -> optax.GradientTransformation:
    return optax.adam(optax.cosine_decay_schedule(0.03, steps))


def plot_paths(results: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.4), squeeze=False)
    t = jnp.linspace(0, 1, 101)
    for ax, r in zip(axes[0], results, strict=True):
        a_edge, a_opt = np.asarray(jax.vmap(r["_edge"])(t)), np.asarray(jax.vmap(r["_path"])(t))
        for k in range(a_opt.shape[1]):
            ax.plot(t, a_opt[:, k], color=f"C{k}", label=r["_names"][k])
            ax.plot(t, a_edge[:, k], color=f"C{k}", ls=":", lw=1)
        ax.set(
            xlabel="t",
            ylabel="a_k(t)",
            title=f"{r['pair']}\ntransport cost {r['cost_edge']:.3f} (edge) -> {r['cost_optimised']:.3f}",
        )
        ax.title.set_fontsize(9)
    axes[0, -1].legend(fontsize=7, loc="center right")
    fig.suptitle("Path optimisation with g frozen: optimised a(t) (solid) against the edge (dotted)", y=1.06)
    _save(fig, path)


def _names(model: MultimarginalInterpolant) -> tuple[str, ...]:
    return (BASE, *(dist.name for dist in model.marginals))


def _colour(x: np.ndarray) -> np.ndarray:
    """Colour points by their angle and radius, so a correspondence is visible as a matching colour."""
    angle = (np.arctan2(x[:, 1], x[:, 0]) / (2 * np.pi)) % 1.0
    radius = np.linalg.norm(x, axis=-1)
    value = 0.45 + 0.55 * np.clip(radius / np.quantile(radius, 0.98), 0, 1)
    return matplotlib.colors.hsv_to_rgb(np.stack([angle, np.full_like(angle, 0.85), value], -1))


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
