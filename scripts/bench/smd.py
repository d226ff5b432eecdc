"""SMD benchmark: training and sampling cost of soft mixture denoising relative to DDPM.

    python scripts/bench/smd.py [--smoke]

Prints one JSON object. 2D, FiLM MLP 3 x 128 (emb 64), batch 256, DDPM's discrete chain (N = 1000), x0 prediction:
- training steps/s of DDPM, SMD with the regression objective (one eta per example: the denoiser plus the latent
  encoder g_xi, an MLP 2 x 128, per example) and SMD with the mixture objective (M = 8 eta draws per example: M
  network passes per example), and the ratios to DDPM;
- sampling 10k points with DDPM ancestral steps, T = 1000 and T = 10: the extra latent-encoder pass per step.
Digits (1 x 8 x 8), small UNet (32 channels, mults 1, 2), batch 64, unrolled chunks of 5 steps: DDPM against SMD with
the regression objective; the latent encoder sees the flattened image.
``--smoke`` shrinks every budget and the nets: it checks that the script runs, and its numbers mean nothing.
Compile time is measured apart from run time: every timing is of an already-compiled call.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine, time_sampling, time_training  # noqa: E402

from genflow.data import Digits  # noqa: E402
from genflow.diffusion import Ancestral, DataPrediction, DiffusionModel, DiscreteSchedule  # noqa: E402
from genflow.distributions import GaussianMixture  # noqa: E402
from genflow.nn import MLP, UNet, mixture_denoiser  # noqa: E402
from genflow.smd import MixtureObjective, SMDModel  # noqa: E402
from genflow.train import Trainer  # noqa: E402

SMD_ARGS = dict(eta_dim=8, latent_dim=32, latent_width=128, latent_depth=2)


def models_2d(size: dict, key) -> dict:
    sched = DiscreteSchedule(1000)
    ddpm = DiffusionModel(MLP(2, key=key, **size), (2,), sched, parametrization=DataPrediction())
    net = mixture_denoiser(MLP, data_dim=2, key=key, **size, **SMD_ARGS)
    return {
        "ddpm": ddpm,
        "smd_regression": SMDModel(net, (2,), sched, parametrization=DataPrediction()),
        "smd_mixture": SMDModel(
            net, (2,), sched, parametrization=DataPrediction(), objective=MixtureObjective(num_latent_draws=8)
        ),
    }


def models_digits(size: dict, key) -> dict:
    sched = DiscreteSchedule(1000)
    ddpm = DiffusionModel(UNet(1, image_size=8, key=key, **size), (1, 8, 8), sched, parametrization=DataPrediction())
    net = mixture_denoiser(UNet, in_channels=1, image_size=8, key=key, **size, **SMD_ARGS)
    return {"ddpm": ddpm, "smd_regression": SMDModel(net, (1, 8, 8), sched, parametrization=DataPrediction())}


def with_ratios(timings: dict, key: str) -> dict:
    base = timings["ddpm"][key]
    for t in timings.values():
        t["relative_to_ddpm"] = t[key] / base
    return timings


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    smoke = args.smoke
    size_2d = dict(width=16, depth=1, emb_dim=8) if smoke else dict(width=128, depth=3, emb_dim=64)
    size_unet = (
        dict(base_channels=8, channel_mults=(1,), emb_dim=16)
        if smoke
        else dict(base_channels=32, channel_mults=(1, 2), emb_dim=128)
    )
    calls, chunk = (1, 10) if smoke else (3, 200)
    data_2d = GaussianMixture.isotropic([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], 0.1)
    opt = optax.adam(1e-3)
    result = {"machine": machine(), "smoke": smoke}

    key = jax.random.key(0)
    train_2d, sample_2d = {}, {}
    for name, model in models_2d(size_2d, key).items():
        trainer = Trainer(opt, chunk * (calls + 1), 256, steps_per_call=chunk, progress=False)
        train_2d[name] = time_training(trainer, model, data_2d, calls)
        if name == "smd_mixture":
            continue  # sampling does not depend on the objective
        for steps in (10,) if smoke else (10, 1000):
            sampler = Ancestral(num_steps=steps)
            num = 100 if smoke else 10000
            timing, _ = time_sampling(lambda k, m=model, s=sampler, n=num: m.sample(k, n, sampler=s), num)
            sample_2d.setdefault(f"ddpm_ancestral_{steps}", {})[name] = timing
    result["train_2d_mlp"] = with_ratios(train_2d, "steps_per_sec")
    result["sample_2d_10k"] = {k: with_ratios(v, "seconds") for k, v in sample_2d.items()}

    digits = Digits()
    train_digits = {}
    for name, model in models_digits(size_unet, key).items():
        trainer = Trainer(opt, 5 * (calls + 1), 64, steps_per_call=5, unroll=True, progress=False)
        train_digits[name] = time_training(trainer, model, digits, calls)
    result["train_digits_unet"] = with_ratios(train_digits, "steps_per_sec")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
