"""Diffusion benchmark: training throughput (2D MLP, digits UNet), sampling time, and NLL on digits.

    python scripts/bench/diffusion.py [--smoke]

Prints one JSON object:
- training steps/s: eps prediction; 2D 8 Gaussians with a FiLM MLP 3 x 128, batch 256, continuous VP; sklearn
  digits with the small UNet (32 channels, mults 1, 2), batch 128, DDPM's discrete linear chain;
- sampling 10k 2D points: DDPM ancestral, 1000 steps, and Heun on EDM's grid, 50 steps (probability-flow ODE);
- NLL of 64 held-out digits after 3000 training steps: the probability-flow bits/dim with uniform dequantization
  (bin width 1/8, Hutchinson divergence, adaptive Tsit5), beside the discrete DDPM bound with the discretized decoder
  (its 999 KL terms estimated from 50, stratified).
``--quick`` (make bench's budget) trains 2000 2D steps and 50 UNet steps (5 unrolled per call) and scores 8 digits
with rtol 1e-3.
``--smoke`` shrinks every budget and the UNet, and uses a 4-step Heun for the likelihood: it checks that the script
runs, and its numbers mean nothing.
Compile time is measured apart from run time: every timing is of an already-compiled call.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

import diffrax
from _timing import budget_parser, machine, time_sampling, time_training  # noqa: E402

from genflow.data import Digits, Toy2D  # noqa: E402
from genflow.diffusion import (  # noqa: E402
    Ancestral,
    DiffusionModel,
    DiscreteSchedule,
    DiscretizedDecoder,
    ProbabilityFlow,
)
from genflow.metrics import energy_distance, nll_bits_per_dim  # noqa: E402
from genflow.nn import MLP, UNet  # noqa: E402
from genflow.solvers import DiffraxODE, Heun, Hutchinson  # noqa: E402
from genflow.train import Trainer  # noqa: E402

DIGITS_BIN = 1 / 8  # sklearn digits take values p/8 - 1, p = 0..16


def mlp_model(key):
    return DiffusionModel(MLP(2, width=128, depth=3, emb_dim=64, key=key), (2,))


def unet_model(key, smoke=False):
    size = dict(base_channels=32, channel_mults=(1, 2), emb_dim=128)
    if smoke:
        size = dict(base_channels=8, channel_mults=(1,), emb_dim=16)
    net = UNet(in_channels=1, image_size=8, num_res_blocks=1, key=key, **size)
    return DiffusionModel(net, (1, 8, 8), schedule=DiscreteSchedule(1000))


def trainer(num_steps, batch_size, steps_per_call, unroll=1, lr=2e-3):
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, lr, warmup_steps=min(100, num_steps // 10), decay_steps=num_steps
    )
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
    return Trainer(opt, num_steps, batch_size, steps_per_call=steps_per_call, unroll=unroll, progress=False)


def digits_nll(model, key, num: int, smoke: bool, rtol: float = 1e-5) -> dict:
    """Probability-flow bits/dim (dequantized, Hutchinson) and the DDPM bound (discretized decoder) on test digits."""
    x = Digits(split="test").images[:num]
    k_pf, k_vlb = jax.random.split(key)
    solver = Heun(num_steps=4) if smoke else DiffraxODE(diffrax.Tsit5(), rtol=rtol, atol=rtol)
    t0 = time.perf_counter()
    bpd = model.bits_per_dim(x, key=k_pf, bin_width=DIGITS_BIN, solver=solver, divergence=Hutchinson())
    bpd = float(jnp.mean(jax.block_until_ready(bpd)))
    pf_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    # 50 of the 999 KL terms, stratified (unbiased): one vectorised call, no loop (XLA:CPU convs in loops are slow)
    vlb = model.vlb(x, key=k_vlb, decoder=DiscretizedDecoder(bin_width=DIGITS_BIN), num_terms=50)
    vlb_bpd = float(jnp.mean(nll_bits_per_dim(-jax.block_until_ready(vlb.total), math.prod(x.shape[1:]))))
    return {
        "num_test_images": num,
        "pf_ode_bits_per_dim": bpd,
        "pf_ode_seconds_incl_compile": pf_seconds,
        "ddpm_vlb_bits_per_dim": vlb_bpd,
        "ddpm_vlb_estimator": "prior + decoder + stratified 50-term estimate of the 999 KL terms",
        "ddpm_vlb_terms_bits_per_dim": {
            name: float(jnp.mean(getattr(vlb, name))) / (64 * math.log(2)) for name in ("prior", "diffusion", "decoder")
        },
        "ddpm_vlb_seconds_incl_compile": time.perf_counter() - t0,
    }


def log(result: dict, section: str) -> None:
    """Each finished section goes to stderr at once, so a long run that dies still leaves its numbers."""
    print(json.dumps({section: result[section]}, default=lambda o: float(np.asarray(o))), file=sys.stderr, flush=True)


def main() -> dict:
    args = budget_parser("make bench's budget (see above)").parse_args()
    smoke, quick = args.smoke, args.quick and not args.smoke
    result = {"benchmark": "diffusion", **machine()}

    # -- training throughput (each trainer is reused below, so its compiled chunk is too) ----------------------
    toy, digits = Toy2D("8gaussians"), Digits()
    steps_2d, steps_digits = (400, 40) if smoke else (2000, 50) if quick else (4000, 3000)
    mlp_trainer = trainer(steps_2d, 256, 200 if smoke else 1000)
    result["train_2d_mlp"] = time_training(mlp_trainer, mlp_model(jax.random.key(0)), toy, 2 if smoke else 4)
    log(result, "train_2d_mlp")
    # XLA:CPU runs kernel-gradient convolutions inside a loop body 10-50x slower, so the UNet's chunks are
    # unrolled (jax#12868); its samplers and ODE solves run channels-last convolutions at full speed in loops.
    unet_trainer = trainer(steps_digits, 128, 5 if quick else 10, unroll=True)
    unet = unet_model(jax.random.key(1), smoke)
    result["train_digits_unet"] = time_training(unet_trainer, unet, digits, 2 if smoke or quick else 20)
    log(result, "train_digits_unet")

    # -- sampling 10k 2D points (a briefly trained MLP) ---------------------------------------------------------
    model_2d = mlp_trainer.fit(mlp_model(jax.random.key(2)), toy, key=jax.random.key(3)).ema_model
    n = 1000 if smoke else 10_000
    samplers = {"ddpm_ancestral_1000": Ancestral(1000), "pf_heun_edm_50": ProbabilityFlow(Heun(50))}
    ref = toy.sample(jax.random.key(4), 2000)
    result["sample_2d"] = {"num": n, "train_steps": steps_2d}
    for name, sampler in samplers.items():
        timing, x = time_sampling(lambda k, s=sampler: model_2d.sample(k, n, sampler=s), n)
        nfe = int(model_2d.solve(jax.random.key(0), 2, sampler=sampler).nfe)
        ed = float(energy_distance(x[:2000], ref))
        result["sample_2d"][name] = {**timing, "nfe": nfe, "energy_distance_2000": ed}
    result["sample_2d"]["energy_distance_data_floor_2000"] = float(
        energy_distance(toy.sample(jax.random.key(5), 2000), ref)
    )
    log(result, "sample_2d")

    # -- NLL on digits after a short run ------------------------------------------------------------------------
    state = unet_trainer.fit(unet, digits, key=jax.random.key(7))
    nll = digits_nll(
        state.ema_model, jax.random.key(8), 4 if smoke else 8 if quick else 64, smoke, 1e-3 if quick else 1e-5
    )
    result["nll_digits"] = {"train_steps": steps_digits, **nll}
    print(json.dumps(result, indent=2, default=lambda o: float(np.asarray(o))))
    return result


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
