"""Normalizing-flow throughput: an RQ-spline coupling flow on 2D moons (FlowJAX's ``coupling_flow`` setup).

    python scripts/bench/flows.py [--smoke]

Prints JSON: training steps/s (maximum likelihood, batch 256, 8 layers, width 64, 8 knots on [-4, 4]), the test
NLL on fresh moons after a fixed number of steps, and the time to sample or evaluate 10k points. Compile time is
measured apart from run time. Layers run in one ``lax.scan``, so compile time does not grow with depth.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import budget_parser, machine, time_sampling, time_training  # noqa: E402

from genflow.data import Toy2D  # noqa: E402
from genflow.flows import Flow, RQSplineTransformer, coupling_flow  # noqa: E402
from genflow.train import Trainer  # noqa: E402


def build(key) -> Flow:
    bij = coupling_flow(2, RQSplineTransformer(8, 4.0), num_layers=8, width=64, depth=1, key=key)
    return Flow(bij)


def time_log_prob(model: Flow, x) -> dict:
    t0 = time.perf_counter()
    jax.block_until_ready(model.log_prob(x))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(model.log_prob(x + 1e-3))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "points_per_sec": x.shape[0] / seconds, "first_call_s": first}


def main() -> dict:
    args = budget_parser("make bench's budget: 1000 training steps").parse_args()
    data = Toy2D("moons")
    calls, train_steps = (2, 500) if args.smoke else (5, 1000) if args.quick else (20, 5000)
    model = build(jax.random.key(0))
    opt = optax.adam(optax.warmup_cosine_decay_schedule(0.0, 1e-3, warmup_steps=100, decay_steps=train_steps))
    trainer = Trainer(opt, num_steps=train_steps, batch_size=256, steps_per_call=100, progress=False)
    speed = time_training(trainer, model, data, calls)
    trained = trainer.fit(model, data, key=jax.random.key(2)).ema_model
    x_test = data.sample(jax.random.key(5), 10_000)
    nll = float(-jnp.mean(trained.log_prob(x_test)))
    sampling, _ = time_sampling(lambda k: trained.sample(k, 10_000), 10_000)
    result = {
        "benchmark": "flows_rq_coupling_moons",
        "setup": "RQ-spline coupling flow, 8 layers, MLP width 64 depth 1, 8 knots on [-4, 4], batch 256, Adam 1e-3 "
        "warmup-cosine, maximum likelihood, float32",
        **machine(),
        "train": speed,
        "train_steps": train_steps,
        "test_nll_10k": nll,
        "sample_10k": sampling,
        "log_prob_10k": time_log_prob(trained, x_test),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
