"""Flow matching from 8 Gaussians to moons (Lipman et al. 2023, Fig. of 2D transport; torchcfm's 2D example).

    python scripts/figures/flow_matching_2d.py [--out scripts/figures/results/flow_matching_2d]

Trains ``experiment=fm_8gaussians_moons`` through the command line, evaluates it against fresh data, samples it
with several ODE solvers, and writes samples.png, trajectories.png, nfe_sweep.png and numbers.json into --out.
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

from genflow.data import Toy2D
from genflow.metrics import energy_distance, w2_exact

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


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
    p.add_argument("--num-steps", type=int, default=4000)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cli(
            "train.py",
            "experiment=fm_8gaussians_moons",
            f"train.num_steps={args.num_steps}",
            "train.progress=false",
            f"hydra.run.dir={run}",
        )
        metrics = json.loads(cli("evaluate.py", str(run), "--num", "2000", "--nll-num", "0"))
        sweep = []
        for sampler, steps in [
            ("euler", 2),
            ("euler", 5),
            ("euler", 10),
            ("euler", 100),
            ("heun", 5),
            ("rk4", 5),
            ("tsit5", None),
        ]:
            extra = ["--steps", str(steps)] if steps else []
            info = json.loads(cli("sample.py", str(run), "--num", "2000", "--sampler", sampler, *extra))
            sweep.append({"sampler": sampler, "steps": steps, "nfe": info["nfe"], **_score(run)})
        for name in ("samples.png", "trajectories.png"):
            shutil.copy(run / "figures" / name, args.out / name)
        log = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    floor_x, floor_ref = (np.asarray(Toy2D("moons").sample(jax.random.key(k), 1000)) for k in (12, 11))
    floor = {
        "energy_distance": float(energy_distance(floor_x, floor_ref)),
        "w2_exact": float(w2_exact(floor_x, floor_ref)),
    }
    numbers = {
        "experiment": "fm_8gaussians_moons",
        "num_steps": args.num_steps,
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


def _score(run: Path) -> dict:
    """Score the samples sample.py just wrote against fresh moons."""
    x = np.load(run / "samples" / "samples.npy")
    ref = np.asarray(Toy2D("moons").sample(jax.random.key(11), x.shape[0]))
    x, ref = x[:1000], ref[:1000]  # the same size as the data-vs-data floor: both statistics are biased in 1/n
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
