"""Draw samples from a trained run and write them with a figure.

    python experiments/sample.py RUN_DIR [--num 2000] [--sampler heun --steps 50] [--seed 0] [--no-ema]

Writes RUN_DIR/samples/samples.npy, samples.png and (for 2D flows) trajectories.png, plus info.json with the NFE.
Any config in configs/sampler/ can be swapped in without retraining.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import numpy as np
from hydra.utils import instantiate
from omegaconf import OmegaConf

from experiments._common import CONFIG_DIR, load_run
from genflow._blas import single_threaded_lapack
from genflow.train import plot_trajectories_2d, sample_with_reference, write_sample_figure


def load_sampler(name: str, steps: int | None):
    path = CONFIG_DIR / "sampler" / f"{name}.yaml"
    if not path.exists():
        allowed = sorted(p.stem for p in (CONFIG_DIR / "sampler").glob("*.yaml"))
        raise SystemExit(f"genflow: --sampler={name!r} is not known; allowed: {allowed}")
    node = OmegaConf.load(path)
    if steps is not None:
        if "num_steps" not in node:
            raise SystemExit(f"genflow: --steps does not apply to sampler {name!r} (adaptive)")
        node.num_steps = steps
    return instantiate(node, _convert_="all")


def main(argv=None) -> dict:
    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--num", type=int, default=2000)
    p.add_argument("--sampler", default=None, help="a config name in configs/sampler (default: the run's)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument("--no-ema", action="store_true", help="use the raw parameters instead of the EMA")
    args = p.parse_args(argv)
    if args.steps is not None and args.sampler is None:
        raise SystemExit("genflow: --steps needs --sampler (the name of a config in configs/sampler)")
    if args.num <= 0:
        raise SystemExit(f"genflow: --num={args.num} must be a positive integer")

    cfg, state, data = load_run(args.run_dir, args.step)
    model = state.model if args.no_ema else state.ema_model
    sampler = load_sampler(args.sampler, args.steps) if args.sampler else model.sampler
    k_sample, k_traj = jax.random.split(jax.random.key(args.seed))
    out = args.run_dir / "samples"
    out.mkdir(parents=True, exist_ok=True)
    samples, ref, nfe = sample_with_reference(model, k_sample, data, args.num, sampler=sampler)
    samples = np.asarray(samples)
    np.save(out / "samples.npy", samples)
    write_sample_figure(out / "samples.png", samples, ref, f"{type(sampler).__name__}, NFE {int(nfe)}")
    if samples.ndim == 2 and samples.shape[1] == 2:
        traj = model.solve(k_traj, min(args.num, 300), sampler=sampler, save_trajectory=True).ys
        plot_trajectories_2d(out / "trajectories.png", traj)
    info = {"num": args.num, "sampler": repr(sampler), "nfe": int(nfe), "step": int(state.step)}
    (out / "info.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info))
    return info


if __name__ == "__main__":
    main()
