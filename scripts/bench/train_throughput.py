"""Flow-matching throughput on 2D: training steps/s by chunk size, sampling time, and W2 after 2000 steps.

    python scripts/bench/train_throughput.py [--quick]

Prints one JSON object. Setup (issue #2): N(0, I) -> moons, FiLM MLP 3 x 64, batch 256, Adam 1e-3.
Compile time is measured separately from run time: every timing below is of an already-compiled call.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import budget_parser, machine, time_sampling, time_training  # noqa: E402

from genflow.data import Toy2D  # noqa: E402
from genflow.interpolants import FlowMatching  # noqa: E402
from genflow.metrics import w2_exact  # noqa: E402
from genflow.nn import MLP  # noqa: E402
from genflow.solvers import Euler  # noqa: E402
from genflow.train import Trainer  # noqa: E402


def build(key):
    net = MLP(data_dim=2, width=64, depth=3, emb_dim=32, key=key)
    return FlowMatching(net, data_shape=(2,), sampler=Euler(num_steps=100))


def time_chunks(model, data, steps_per_call: int, total_steps: int) -> dict:
    tr = Trainer(
        optax.adam(1e-3),
        num_steps=total_steps,
        batch_size=256,
        steps_per_call=steps_per_call,
        progress=False,
    )
    return time_training(tr, model, data, max(total_steps // steps_per_call, 1))


def main() -> dict:
    args = budget_parser("fewer timed steps", "minimal timings and training (tests that the script runs)").parse_args()
    data, model = Toy2D("moons"), build(jax.random.key(0))
    budget = 1000 if args.smoke else 2000 if args.quick else 20000
    timed = {1: min(budget, 200 if args.smoke else 2000), 100: budget, 1000: budget}
    throughput = [time_chunks(model, data, spc, steps) for spc, steps in timed.items()]
    train_steps = 1000 if args.smoke else 2000

    tr = Trainer(optax.adam(1e-3), num_steps=train_steps, batch_size=256, steps_per_call=1000, progress=False)
    state = tr.fit(model, data, key=jax.random.key(2))
    trained = state.ema_model

    sampling, x = time_sampling(lambda key: trained.sample(key, 10_000), 10_000)

    n = 2000
    ref, ref2 = data.sample(jax.random.key(5), n), data.sample(jax.random.key(6), n)
    result = {
        "benchmark": "flow_matching_2d_throughput",
        "setup": "N(0,I)->moons, MLP 3x64 FiLM, batch 256, Adam 1e-3, float32",
        **machine(),
        "train": throughput,
        "sample_10k_euler100": {**sampling, "nfe": 100},
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
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
