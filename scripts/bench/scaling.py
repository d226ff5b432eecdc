"""Scaling study: training time per step against batch size and data dimension, for the FiLM MLP and the UNet.

    python scripts/bench/scaling.py [--quick | --smoke] [--out DIR]

Flow matching (linear interpolant, N(0, I) data of the given shape: the cost of a step does not depend on the
data), Adam, the shared Trainer. MLP: width 256, depth 3, data dimension d on vectors; UNet: 16 base channels,
mults (1, 2), one residual block per level, on 1 x s x s images (d = s^2), one step per call, unrolled (XLA:CPU
runs convolutions in loops slowly, jax#12868). For each series the exponent ``k`` of ``time ~ size^k`` is fitted by
least squares on log-log axes over the larger sizes (the smallest ones are dominated by per-step overheads).
Prints JSON and writes ``scaling.png`` (and ``scaling.json``) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine, time_training  # noqa: E402

from genflow.distributions import StandardNormal  # noqa: E402
from genflow.interpolants import FlowMatching  # noqa: E402
from genflow.nn import MLP, UNet  # noqa: E402
from genflow.train import Trainer  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "scaling"
BUDGETS = {
    "smoke": dict(mlp_batch=(32, 64), mlp_dim=(2, 8), unet_batch=(4,), unet_size=(), fixed_batch=32, calls=1),
    "quick": dict(
        mlp_batch=(256, 1024, 4096), mlp_dim=(2, 256, 1024), unet_batch=(16, 64), unet_size=(8, 16),
        fixed_batch=256, calls=2,
    ),
    "full": dict(
        mlp_batch=(32, 64, 128, 256, 512, 1024, 2048, 4096, 8192), mlp_dim=(2, 8, 32, 128, 512, 1024, 2048),
        unet_batch=(4, 8, 16, 32, 64, 128), unet_size=(8, 16, 32), fixed_batch=256, calls=3,
    ),
}  # fmt: skip
UNET_FIXED_BATCH = 16


def mlp_model(dim: int) -> FlowMatching:
    return FlowMatching(MLP(dim, width=256, depth=3, emb_dim=64, key=jax.random.key(0)), (dim,))


def unet_model(size: int) -> FlowMatching:
    net = UNet(1, image_size=size, base_channels=16, channel_mults=(1, 2), num_res_blocks=1, emb_dim=64,
               key=jax.random.key(0))  # fmt: skip
    return FlowMatching(net, (1, size, size))


_MEMO: dict = {}


def seconds_per_step(model, shape, batch: int, calls: int, unet: bool) -> dict:
    """Time per step; a point shared by two sweeps (e.g. the UNet at 8x8 and the fixed batch) is measured once."""
    key = (unet, tuple(shape), batch)
    if key not in _MEMO:
        _MEMO[key] = _measure(model, shape, batch, calls, unet)
    return _MEMO[key]


def _measure(model, shape, batch: int, calls: int, unet: bool) -> dict:
    spc = 1 if unet else 10
    tr = Trainer(optax.adam(1e-4), spc * (calls + 1), batch, steps_per_call=spc, unroll=unet,
                 progress=False, mesh=None)  # fmt: skip
    t = time_training(tr, model, StandardNormal(shape), calls)
    return {"seconds_per_step": 1.0 / t["steps_per_sec"], "first_call_s": t["first_call_s"]}


def fit_exponent(sizes, seconds) -> float | None:
    """Slope of log(seconds) on log(size) over the upper half of the sizes (at least two points)."""
    sizes, seconds = np.asarray(sizes, float), np.asarray(seconds, float)
    if len(sizes) < 2:
        return None
    keep = slice(max(len(sizes) // 2 - 1, 0), None) if len(sizes) > 3 else slice(None)
    return float(np.polyfit(np.log(sizes[keep]), np.log(seconds[keep]), 1)[0])


def series(sizes, run) -> dict:
    points = [{"size": s, **run(s)} for s in sizes]
    return {"points": points, "exponent": fit_exponent(sizes, [p["seconds_per_step"] for p in points])}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = (("batch", "batch size"), ("dim", "data dimension d"))
    for ax, (kind, xlabel) in zip(axes, panels, strict=True):
        for net, marker in (("mlp", "o"), ("unet", "s")):
            s = result[f"{net}_{kind}"]
            x = [p["size"] if not (net == "unet" and kind == "dim") else p["size"] ** 2 for p in s["points"]]
            y = [p["seconds_per_step"] for p in s["points"]]
            k = "n/a" if s["exponent"] is None else f"{s['exponent']:.2f}"
            ax.loglog(x, y, marker=marker, label=f"{net.upper()}: time ~ size^{k}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds per training step")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    axes[0].set_title("batch sweep (MLP d=2; UNet 8x8)")
    axes[1].set_title(f"dimension sweep (MLP batch {result['fixed_batch']}; UNet batch {UNET_FIXED_BATCH})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="fewer sizes (make bench's budget)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (checks that the script runs)")
    p.add_argument("--out", type=Path, default=OUT, help="folder for scaling.png and scaling.json")
    args = p.parse_args()
    name = "smoke" if args.smoke else "quick" if args.quick else "full"
    b = BUDGETS[name]
    calls, fixed = b["calls"], b["fixed_batch"]
    result = {
        "benchmark": "scaling",
        "budget": name,
        "setup": "flow matching, Adam, float32; MLP width 256 depth 3 emb 64 (10 steps per call); UNet 16 channels, "
        "mults (1, 2), 1 res block, emb 64 (1 step per call); one device",
        **machine(),
        "fixed_batch": fixed,
        "mlp_batch": series(b["mlp_batch"], lambda n: seconds_per_step(mlp_model(2), (2,), n, calls, False)),
        "mlp_dim": series(b["mlp_dim"], lambda d: seconds_per_step(mlp_model(d), (d,), fixed, calls, False)),
        "unet_batch": series(b["unet_batch"], lambda n: seconds_per_step(unet_model(8), (1, 8, 8), n, calls, True)),
        "unet_dim": series(
            b["unet_size"], lambda s: seconds_per_step(unet_model(s), (1, s, s), UNET_FIXED_BATCH, calls, True)
        ),
    }
    if len(result["unet_dim"]["points"]) >= 2:  # the UNet's size axis is the side s; its dimension is s^2
        sides = [q["size"] for q in result["unet_dim"]["points"]]
        secs = [q["seconds_per_step"] for q in result["unet_dim"]["points"]]
        result["unet_dim"]["exponent"] = fit_exponent([s * s for s in sides], secs)
    args.out.mkdir(parents=True, exist_ok=True)
    plot(result, args.out / "scaling.png")
    (args.out / "scaling.json").write_text(json.dumps(result, indent=2))
    result["figure"] = str(args.out / "scaling.png")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
