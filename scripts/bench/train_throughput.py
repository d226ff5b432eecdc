"""Flow-matching throughput on 2D: training steps/s by chunk size, sampling time, and W2 after 2000 steps.

    python scripts/bench/train_throughput.py [--quick]

Prints one JSON object. Setup (issue #2): N(0, I) -> moons, FiLM MLP 3 x 64, batch 256, Adam 1e-3.
Compile time is measured separately from run time: every timing below is of an already-compiled call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax
import numpy as np

from genflow.data import Toy2D
from genflow.interpolants import FlowMatching
from genflow.metrics import w2_exact
from genflow.nn import MLP
from genflow.solvers import Euler
from genflow.train import Trainer, make_optimizer


def build(key):
    net = MLP(data_dim=2, width=64, depth=3, emb_dim=32, key=key)
    return FlowMatching(net, data_shape=(2,), sampler=Euler(num_steps=100))


def block(tree):
    return jax.block_until_ready(tree)


def time_chunks(model, data, steps_per_call: int, total_steps: int) -> dict:
    tr = Trainer(make_optimizer("adam", lr=1e-3), num_steps=total_steps, batch_size=256,
                 steps_per_call=steps_per_call, progress=False)
    state = tr.init(model, jax.random.key(1))
    t0 = time.perf_counter()
    state, losses, _ = block(tr.train_chunk(state, data))  # compiles
    compile_s = time.perf_counter() - t0
    calls = max(total_steps // steps_per_call, 1)
    t0 = time.perf_counter()
    for _ in range(calls):
        state, losses, _ = tr.train_chunk(state, data)
        np.asarray(losses)  # the trainer's one host sync per chunk
    run_s = time.perf_counter() - t0
    return {"steps_per_call": steps_per_call, "steps_per_sec": calls * steps_per_call / run_s,
            "first_call_s": compile_s, "timed_steps": calls * steps_per_call}


def main() -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="fewer timed steps")
    p.add_argument("--smoke", action="store_true", help="minimal timings and training (tests that the script runs)")
    args = p.parse_args()
    data, model = Toy2D("moons"), build(jax.random.key(0))
    budget = 1000 if args.smoke else 2000 if args.quick else 20000
    timed = {1: min(budget, 200 if args.smoke else 2000), 100: budget, 1000: budget}
    throughput = [time_chunks(model, data, spc, steps) for spc, steps in timed.items()]
    train_steps = 1000 if args.smoke else 2000

    tr = Trainer(make_optimizer("adam", lr=1e-3), num_steps=train_steps, batch_size=256, steps_per_call=1000,
                 progress=False)
    state = tr.fit(model, data, key=jax.random.key(2))
    trained = state.ema_model

    sample = lambda key: trained.sample(key, 10_000)
    t0 = time.perf_counter()
    block(sample(jax.random.key(3)))
    sample_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = block(sample(jax.random.key(4)))
    sample_s = time.perf_counter() - t0

    n = 2000
    ref, ref2 = data.sample(jax.random.key(5), n), data.sample(jax.random.key(6), n)
    result = {
        "benchmark": "flow_matching_2d_throughput",
        "setup": "N(0,I)->moons, MLP 3x64 FiLM, batch 256, Adam 1e-3, float32",
        "device": str(jax.devices()[0]),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "jax": jax.__version__,
        "train": throughput,
        "sample_10k_euler100": {"seconds": sample_s, "samples_per_sec": 10_000 / sample_s, "nfe": 100,
                                "first_call_s": sample_compile},
        "quality_after_2000_steps": {
            "train_steps": train_steps,
            "w2_exact_to_fresh_data": float(w2_exact(x[:n], ref)),
            "w2_exact_data_vs_data_floor": float(w2_exact(ref2, ref)),
            "num_samples": n,
        },
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
