"""The FLOP limit: a score MLP trained at large batch, as a fraction of the machine's dense-matmul FLOP/s.

    python scripts/bench/flops.py [--quick | --smoke]

Prints one JSON object. In the same run it measures
- the peak: a jitted float32 ``(n, n) @ (n, n)`` matmul (``2 n^3`` FLOPs) for several ``n``, the median of several
  calls each, measured before and after the training runs; the best of all is the peak (so the fraction is a
  conservative one: a size that happens to suit the cache, or a quiet moment on a shared machine, raises the peak);
- training: a diffusion model (eps prediction, VP) with the FiLM MLP score network (width 1024, depth 3, embedding
  64) on 2D data, trained by the shared Trainer (``lax.scan`` chunks), at several batch sizes. Model FLOPs per step
  are ``6 B sum(weight sizes)`` (forward 2, backward 4 per multiply-add), checked against XLA's own count of one
  loss-and-gradient step;
- checks on what could keep the fraction low: the chunk traces once (no recompilation), its compiled HLO holds no
  float64, the optimizer/EMA/scan part of a step next to the bare loss-and-gradient time, and the per-step host
  round trip (one step per jit call) at the smallest batch.
``--smoke`` shrinks everything (checks that the script runs; its numbers mean nothing).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import budget_parser, machine, time_training  # noqa: E402

from genflow.data import Toy2D  # noqa: E402
from genflow.diffusion import DiffusionModel  # noqa: E402
from genflow.nn import MLP  # noqa: E402
from genflow.train import Trainer  # noqa: E402
from genflow.train._trainer import _train_chunk  # noqa: E402

BUDGETS = {
    # width, batches, steps per call, timed calls, peak matmul size
    "smoke": dict(width=64, batches=(256,), steps_per_call=2, calls=1, n=(128, 256)),
    "quick": dict(width=1024, batches=(256, 4096), steps_per_call=2, calls=2, n=(512, 1024, 2048)),
    "full": dict(width=1024, batches=(256, 1024, 4096, 8192), steps_per_call=4, calls=3, n=(512, 1024, 2048, 4096)),
}


class CountingData:
    """Wraps a data object and counts ``sample`` calls: one per trace of the training chunk, never one per step."""

    def __init__(self, data):
        self.data, self.traces = data, 0

    def sample(self, key, num):
        self.traces += 1
        return self.data.sample(key, num)


def median_seconds(fn, *args, reps: int = 5) -> float:
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def peak_matmul(sizes) -> dict[str, float]:
    """GFLOP/s of a float32 ``(n, n) @ (n, n)`` for each ``n``."""
    out = {}
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
        out[str(n)] = 2 * n**3 / median_seconds(jax.jit(jnp.matmul), a, b) / 1e9
    return out


def build(width: int, key) -> DiffusionModel:
    return DiffusionModel(MLP(2, width=width, depth=3, emb_dim=64, key=key), (2,))


def model_flops(model, batch: int) -> float:
    """``6 B sum(W.size)`` over every weight matrix: forward and backward of each per-example matmul."""
    weights = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return 6.0 * batch * sum(w.size for w in weights if w.ndim == 2)


def grad_step(model, batch: int):
    """XLA's FLOP count of one loss-and-gradient step, and its median time (no optimizer, no scan)."""
    x = Toy2D("moons").sample(jax.random.key(0), batch)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    fn = jax.jit(jax.value_and_grad(lambda p, k, x: eqx.combine(p, static).loss(k, x)))
    compiled = fn.lower(params, jax.random.key(1), x).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"]), median_seconds(compiled, params, jax.random.key(1), x, reps=3)


def train_at(model, batch: int, budget: dict) -> dict:
    opt = optax.adam(1e-4)
    spc, calls = budget["steps_per_call"], budget["calls"]
    trainer = Trainer(opt, spc * (calls + 1), batch, steps_per_call=spc, progress=False, mesh=None)
    data = CountingData(Toy2D("moons"))
    timing = time_training(trainer, model, data, calls)
    step_s = 1.0 / timing["steps_per_sec"]
    flops = model_flops(model, batch)
    xla_flops, grad_s = grad_step(model, batch)
    state = trainer.init(model, jax.random.key(1))
    hlo = _train_chunk.lower(Toy2D("moons"), state, opt, batch, spc, 0.999, True, 1, None).compile()
    hlo = hlo.compiled.as_text()
    return {
        "batch": batch,
        **timing,
        "step_seconds": step_s,
        "model_gflop_per_step": flops / 1e9,
        "xla_gflop_per_grad_step": xla_flops / 1e9,
        "achieved_gflops": flops / step_s / 1e9,
        "loss_and_grad_seconds": grad_s,
        "optimizer_ema_scan_share": max(step_s - grad_s, 0.0) / step_s,
        "chunk_traces": data.traces,
        "float64_in_hlo": "f64[" in hlo,
    }


def host_round_trip(model, batch: int) -> dict:
    """Steps/s with one step per jit call against a scanned chunk: the cost of a host sync every step."""
    opt = optax.adam(1e-4)
    out = {}
    for spc, calls in ((1, 8), (8, 1)):
        tr = Trainer(opt, spc * (calls + 1), batch, steps_per_call=spc, progress=False, mesh=None)
        out[f"steps_per_call_{spc}"] = time_training(tr, model, Toy2D("moons"), calls)["steps_per_sec"]
    return out


def main() -> dict:
    args = budget_parser("two batch sizes, fewer timed steps", "tiny sizes (checks that the script runs)").parse_args()
    name = "smoke" if args.smoke else "quick" if args.quick else "full"
    budget = BUDGETS[name]
    before = peak_matmul(budget["n"])
    model = build(budget["width"], jax.random.key(0))
    runs = [train_at(model, b, budget) for b in budget["batches"]]
    after = peak_matmul(budget["n"])
    peak = max(*before.values(), *after.values())
    for r in runs:  # against the higher of the two peak measurements
        r["fraction_of_peak"] = r["achieved_gflops"] / peak
    result = {
        "benchmark": "flops",
        "budget": name,
        "setup": f"DiffusionModel (eps, VP), FiLM MLP width {budget['width']} depth 3 emb 64 on 2D moons, Adam, "
        f"float32, Trainer chunks of {budget['steps_per_call']} steps, one device",
        **machine(),
        "peak_matmul_gflops": {"before_by_n": before, "after_by_n": after, "peak": peak},
        "train": runs,
        "host_round_trip_small_batch": {"batch": budget["batches"][0], **host_round_trip(model, budget["batches"][0])},
        "best_fraction_of_peak": max(r["fraction_of_peak"] for r in runs),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
