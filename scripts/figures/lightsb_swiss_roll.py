"""LightSB from N(0, I) to the Swiss roll for several eps (Korotin et al., ICLR 2024, Fig. 3 style).

    python scripts/figures/lightsb_swiss_roll.py [--out scripts/figures/results/lightsb_swiss_roll] [--quick]

Paper settings, from the experiment config ``lightsb_swiss_roll`` (``--quick``: ``configs/debug/lightsb_swiss_roll``):
K=500, S init 0.1, Adam lr 1e-3, batch 128, 20k steps (``--steps`` overrides ``train.num_steps``; about 25 s per
eps on two CPU cores); the eps list is ``figure.eps``. For each eps the figure shows unconditional samples against
the data, exact conditional samples ``x1 ~ pi(x1 | x0)`` from three fixed inputs, and discretisation-free
trajectories (``ExactPaths``, exact posterior p(x1 | x_t)). numbers.json holds, per eps, the training time, the
energy distance and sliced W2 of 2000 samples to fresh data (with the data-vs-data floor) and the spread of each
conditional.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
from omegaconf import DictConfig

from experiments._common import build_data, build_net, build_trainer, instantiate_at
from experiments.compose import compose
from genflow.bridges import ExactPaths
from genflow.data import Paired
from genflow.metrics import energy_distance, sliced_w2

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

X0 = jnp.array([[-1.0, -1.0], [0.0, 1.0], [1.2, -0.3]])
RUN = ["train.progress=false", "train.checkpoint_every=0"]  # a figure run: no progress bar, no run directory


def train(cfg: DictConfig, target):
    """LightSB of ``cfg`` trained on independent (source, target) pairs; returns it and its training time (s)."""
    seed = cfg.train.seed
    model = instantiate_at(cfg, "model", net=build_net(cfg, jax.random.key(seed)))
    trainer = build_trainer(cfg, None)
    t0 = time.perf_counter()
    fitted = jax.block_until_ready(trainer.fit(model, Paired(model.base, target), key=jax.random.key(seed + 1)).model)
    return fitted, time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="scripts/figures/results/lightsb_swiss_roll")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--steps", type=int, help="train.num_steps (the experiment's 20000 by default)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    steps_override = [] if args.steps is None else [f"train.num_steps={args.steps}"]
    cfg = compose("lightsb_swiss_roll", [*RUN, *steps_override], quick=args.quick)
    steps, epss = cfg.train.num_steps, list(cfg.figure.eps)
    tgt = build_data(cfg)
    ref, ref2 = tgt.sample(jax.random.key(10), 2000), tgt.sample(jax.random.key(11), 2000)
    floor = {
        "energy_distance": float(energy_distance(ref, ref2)),
        "sliced_w2": float(sliced_w2(jax.random.key(0), ref, ref2)),
    }
    fig, axes = plt.subplots(3, len(epss), figsize=(3.4 * len(epss), 10))
    numbers = {"steps": steps, "K": cfg.net.num_components, "s_init": cfg.net.s_init,
               "lr": cfg.optim.learning_rate.value, "data_floor": floor, "runs": []}  # fmt: skip
    for j, eps in enumerate(epss):
        model, secs = train(compose("lightsb_swiss_roll", [*RUN, *steps_override, f"model.eps={eps}"], args.quick), tgt)
        x = model.sample(jax.random.key(1), 2000)
        conds = [model.sample_conditional(jax.random.key(2 + i), jnp.tile(X0[i], (300, 1))) for i in range(3)]
        paths = model.solve(jax.random.key(5), 12, sampler=ExactPaths(50), save_trajectory=True).ys
        numbers["runs"].append(
            {
                "eps": eps,
                "train_s": secs,
                "energy_distance": float(energy_distance(x, ref)),
                "sliced_w2": float(sliced_w2(jax.random.key(0), x, ref)),
                "conditional_std": [float(jnp.mean(jnp.std(c, 0))) for c in conds],
            }
        )
        ax = axes[0, j]
        ax.scatter(*ref.T, s=2, c="0.7", label="data")
        ax.scatter(*x.T, s=2, c="C0", label="LightSB")
        ax.set_title(f"eps = {eps}: samples")
        ax = axes[1, j]
        ax.scatter(*ref.T, s=2, c="0.85")
        for i, c in enumerate(conds):
            ax.scatter(*c.T, s=3, c=f"C{i + 1}")
            ax.scatter(*X0[i], marker="*", s=150, c=f"C{i + 1}", edgecolors="k")
        ax.set_title("x1 ~ pi(x1 | x0) from fixed x0 (stars)")
        ax = axes[2, j]
        ax.scatter(*ref.T, s=2, c="0.85")
        for k in range(paths.shape[1]):
            ax.plot(paths[:, k, 0], paths[:, k, 1], lw=0.8)
        ax.scatter(*paths[0].T, s=8, c="k")
        ax.set_title("exact paths (posterior p(x1 | x_t))")
        for ax in axes[:, j]:
            ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal")
        print(json.dumps(numbers["runs"][-1]), flush=True)
    fig.tight_layout()
    fig.savefig(out / "lightsb_swiss_roll.png", dpi=110)
    (out / "numbers.json").write_text(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
