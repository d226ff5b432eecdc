"""Flow matching from 8 Gaussians to moons (Lipman et al. 2023, Fig. of 2D transport; torchcfm's 2D example).

    python scripts/figures/flow_matching_2d.py [--out scripts/figures/results/flow_matching_2d]

Trains ``experiment=fm_8gaussians_moons`` through the command line, evaluates it against fresh data, samples it
with several ODE solvers (the experiment's ``figure.sweep``), and writes samples.png, trajectories.png,
nfe_sweep.png and numbers.json into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import matplotlib
import numpy as np

from experiments._common import build_data
from experiments.compose import compose
from genflow.metrics import energy_distance, w2_exact

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "fm_8gaussians_moons"  # its figure.* node holds the evaluation settings


def cli(script: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / script), *args],
        cwd=ROOT,
        # This checkout's experiments package, whatever the editable install points at.
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def main() -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=ROOT / "scripts/figures/results/flow_matching_2d")
    p.add_argument("--num-steps", type=int, help="training steps (default: the experiment's train.num_steps)")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = compose(EXPERIMENT, [] if args.num_steps is None else [f"train.num_steps={args.num_steps}"])
    fig, num = cfg.figure, str(cfg.figure.num_samples)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cli(
            "train.py",
            f"experiment={EXPERIMENT}",
            f"train.num_steps={cfg.train.num_steps}",
            "train.progress=false",
            f"hydra.run.dir={run}",
        )
        metrics = json.loads(cli("evaluate.py", str(run), "--num", num, "--nll-num", "0"))
        sweep = []
        for sampler, steps in ((s.sampler, s.steps) for s in fig.sweep):
            extra = ["--steps", str(steps)] if steps else []
            info = json.loads(cli("sample.py", str(run), "--num", num, "--sampler", sampler, *extra))
            sweep.append({"sampler": sampler, "steps": steps, "nfe": info["nfe"], **_score(run, cfg)})
        for name in ("samples.png", "trajectories.png"):
            shutil.copy(run / "figures" / name, args.out / name)
        log = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    floor_x, floor_ref = (_moons(cfg, seed, fig.num_scored) for seed in (fig.floor_seed, fig.ref_seed))
    floor = {
        "energy_distance": float(energy_distance(floor_x, floor_ref)),
        "w2_exact": float(w2_exact(floor_x, floor_ref)),
    }
    numbers = {
        "experiment": EXPERIMENT,
        "num_steps": cfg.train.num_steps,
        "eval_ema_euler100": metrics,
        "data_vs_data_floor_1000": floor,
        "nfe_sweep": sweep,
        "final_train_loss": log[-1]["loss"],
        "train_steps_per_sec_last_chunk": log[-1]["steps_per_sec"],
    }
    _plot_sweep(sweep, floor["w2_exact"], args.out / "nfe_sweep.png")
    (args.out / "numbers.json").write_text(json.dumps(numbers, indent=2))
    print(json.dumps(numbers, indent=2))
    return numbers


def _moons(cfg, seed: int, num: int) -> np.ndarray:
    """``num`` fresh points of the experiment's data (moons)."""
    return np.asarray(build_data(cfg).sample(jax.random.key(seed), num))


def _score(run: Path, cfg) -> dict:
    """Score the samples sample.py just wrote against fresh moons (the experiment's data)."""
    x = np.load(run / "samples" / "samples.npy")
    ref = _moons(cfg, cfg.figure.ref_seed, x.shape[0])
    n = cfg.figure.num_scored  # the same size as the data-vs-data floor: both statistics are biased in 1/n
    x, ref = x[:n], ref[:n]
    return {"energy_distance": float(energy_distance(x, ref)), "w2_exact": float(w2_exact(x, ref))}


def _plot_sweep(sweep: list[dict], floor: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    for name in sorted({s["sampler"] for s in sweep}):
        pts = sorted((s["nfe"], s["w2_exact"]) for s in sweep if s["sampler"] == name)
        ax.plot(*zip(*pts, strict=True), "o-", label=name)
    ax.axhline(floor, color="gray", ls="--", label="data vs data")
    ax.set(xscale="log", xlabel="NFE", ylabel="exact W2 to fresh data (1000 pts)", title="8 Gaussians -> moons")
    ax.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
