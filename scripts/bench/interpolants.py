"""Stochastic-interpolant throughput on the torchcfm 2D setup: 8 Gaussians -> moons, MLP 3 x 64, batch 256.

    python scripts/bench/interpolants.py [--smoke]

Prints JSON: training steps/s with the independent, exact minibatch-OT and Sinkhorn couplings; sampling time for
10k points (Euler ODE, 100 steps, and Euler-Maruyama SDE, 100 steps); exact W2 to fresh data after a fixed
number of training steps for each coupling, beside the data-vs-data floor.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import budget_parser, machine, time_sampling, time_training  # noqa: E402

from genflow.couplings import ExactOTCoupling, IndependentCoupling, SinkhornCoupling  # noqa: E402
from genflow.data import Toy2D  # noqa: E402
from genflow.interpolants import LinearInterpolant, SqrtGamma, StochasticInterpolant  # noqa: E402
from genflow.metrics import w2_exact  # noqa: E402
from genflow.nn import MLP  # noqa: E402
from genflow.solvers import Euler, EulerMaruyama  # noqa: E402
from genflow.train import Trainer  # noqa: E402

COUPLINGS = {
    "independent": IndependentCoupling(),
    "ot_exact": ExactOTCoupling(),
    "ot_sinkhorn": SinkhornCoupling(reg=0.05),
}


def build(coupling, key):
    k1, k2 = jax.random.split(key)
    net = lambda k: MLP(data_dim=2, width=64, depth=3, emb_dim=32, key=k)
    return StochasticInterpolant(
        net(k1),
        (2,),
        denoiser_net=net(k2),
        interpolant=LinearInterpolant(SqrtGamma(0.1)),
        base=Toy2D("8gaussians"),
        coupling=coupling,
        sampler=Euler(num_steps=100),
        eps=0.1,
    )


def main() -> dict:
    args = budget_parser("make bench's budget: 1000 training steps, 1000 samples").parse_args()
    data = Toy2D("moons")
    calls, train_steps, n = (2, 200, 500) if args.smoke else (5, 1000, 1000) if args.quick else (10, 3000, 2000)
    result = {
        "benchmark": "interpolants_2d",
        "setup": "8gaussians->moons, MLP 3x64 (b and eta), batch 256, gamma=sqrt(0.1 t(1-t)), Adam 1e-3",
        **machine(),
        "couplings": {},
    }
    ref, ref2 = data.sample(jax.random.key(5), n), data.sample(jax.random.key(6), n)
    for name, coupling in COUPLINGS.items():
        model = build(coupling, jax.random.key(0))
        trainer = Trainer(optax.adam(1e-3), num_steps=train_steps, batch_size=256, steps_per_call=100, progress=False)
        speed = time_training(trainer, model, data, calls)
        trained = trainer.fit(model, data, key=jax.random.key(2)).ema_model
        x = trained.sample(jax.random.key(7), n)
        result["couplings"][name] = {
            "train": speed,
            "train_steps": train_steps,
            "w2_exact_ode": float(w2_exact(x, ref)),
        }
    result["w2_exact_data_vs_data_floor"] = float(w2_exact(ref2, ref))
    ode, _ = time_sampling(lambda k: trained.sample(k, 10_000), 10_000)
    sde, _ = time_sampling(lambda k: trained.sample(k, 10_000, sampler=EulerMaruyama(num_steps=100)), 10_000)
    result["sample_10k"] = {"ode_euler100": ode, "sde_euler_maruyama100": sde}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
