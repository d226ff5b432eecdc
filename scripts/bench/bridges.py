"""LightSB on EOT-benchmark-style pairs: training time to convergence and cBW-UVP, D in {16, 64}, eps = 1.

    python scripts/bench/bridges.py [--quick] [--smoke]

Prints JSON. Settings are the paper's benchmark notebook's (K=50, diagonal S, S init 1, Adam lr 3e-3, batch 128,
10k steps). Training runs in chunks of 500 steps (one jit call each); after every chunk cBW-UVP is measured
(100 test inputs x 1000 conditional samples). "Time to convergence" is the training time (compilation excluded)
until cBW-UVP first comes within 10% (relative) of its final value. Pairs are generated from seeds with the
benchmark's construction (EOT-benchmark-style), so numbers are not comparable with the published table.
``--quick`` (make bench's budget) trains 3000 steps and measures cBW-UVP on 50 inputs x 500 samples.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import budget_parser, machine  # noqa: E402

from genflow.bridges import EOTBenchmark, LightSB, MixturePotential, cbw_uvp, eot_benchmark_data  # noqa: E402
from genflow.train import Trainer  # noqa: E402


def run(dim: int, eps: float, steps: int, chunk: int, num_inputs: int, num_samples: int, seed: int = 0) -> dict:
    bench = EOTBenchmark.generate(dim, eps, seed)
    data = eot_benchmark_data(dim, eps, seed)
    pot = MixturePotential(dim, 50, diagonal=True, s_init=1.0, init_data=bench.target, key=jax.random.key(seed))
    model = LightSB(pot, eps=eps, base=bench.source)
    trainer = Trainer(optax.adam(3e-3), num_steps=steps, batch_size=128, steps_per_call=chunk, progress=False)
    state = trainer.init(model, jax.random.key(seed + 1))
    var = float(jnp.trace(bench.target_moments(jax.random.key(7))[1]))
    t0 = time.perf_counter()
    state, losses, _ = jax.block_until_ready(trainer.train_chunk(state, data))
    first_call = time.perf_counter() - t0
    # The first chunk's time includes compilation: re-time one chunk to charge the first chunk with run time only.
    t0 = time.perf_counter()
    jax.block_until_ready(trainer.train_chunk(state, data))
    per_chunk = time.perf_counter() - t0
    elapsed, curve = per_chunk, []
    key = jax.random.key(100)
    while True:
        m = state.model
        uvp = float(cbw_uvp(m.sample_conditional, bench, key, num_inputs, num_samples, target_var=var))
        curve.append({"step": int(state.step), "train_s": elapsed, "loss": float(np.mean(losses)), "cbw_uvp": uvp})
        if int(state.step) >= steps:
            break
        t0 = time.perf_counter()
        state, losses, _ = trainer.train_chunk(state, data)
        losses = np.asarray(losses)
        elapsed += time.perf_counter() - t0
    final = curve[-1]["cbw_uvp"]
    conv = next(c for c in curve if c["cbw_uvp"] <= 1.1 * final + 1e-12)
    return {
        "dim": dim,
        "eps": eps,
        "cbw_uvp_final_pct": final,
        "train_s_total": elapsed,
        "train_s_to_convergence": conv["train_s"],
        "steps_to_convergence": conv["step"],
        "first_call_s": first_call,
        "steps_per_sec": chunk / per_chunk,
        "curve": curve,
    }


def main() -> dict:
    args = budget_parser("make bench's budget (see above)").parse_args()
    dims, steps, chunk = ((2,), 200, 100) if args.smoke else ((16, 64), 3000 if args.quick else 10_000, 500)
    n_in, n_s = (50, 500) if args.quick or args.smoke else (100, 1000)
    result = {
        "benchmark": "lightsb_eot_benchmark_style",
        "label": "EOT-benchmark-style (pairs generated from seeds; not the official parameter files)",
        "settings": {
            "K": 50,
            "diagonal_S": True,
            "lr": 3e-3,
            "batch": 128,
            "steps": steps,
            "eps": 1.0,
            "cbw_uvp_inputs_x_samples": [n_in, n_s],
        },
        "runs": [run(d, 1.0, steps, chunk, n_in, n_s) for d in dims],
        "machine": machine(),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
