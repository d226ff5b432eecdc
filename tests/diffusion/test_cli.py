"""Diffusion from the command line: train, swap samplers in sample.py, evaluate with the probability-flow NLL."""

import json

import numpy as np
import pytest

from tests.experiments.conftest import TINY, run_cli


def _sample(run, sampler, steps, num=50):
    r = run_cli("sample.py", str(run), "--num", str(num), "--sampler", sampler, "--steps", str(steps))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # three subprocesses, each compiling from scratch
def test_2d_train_sample_with_every_sampler_kind_and_evaluate(tmp_path):
    run = tmp_path / "run"
    r = run_cli("train.py", *TINY, "experiment=diffusion_2d", f"hydra.run.dir={run}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run / "figures" / "trajectories.png").exists()
    # diffusion samplers, and plain ODE / SDE solvers (probability flow, reverse SDE); final denoising adds one NFE
    for sampler, steps, nfe in (("ddim", 10, 10), ("pf_heun", 5, 11), ("euler", 5, 6), ("euler_maruyama", 5, 6)):
        assert _sample(run, sampler, steps)["nfe"] == nfe, sampler
    assert np.load(run / "samples" / "samples.npy").shape == (50, 2)
    r = run_cli("evaluate.py", str(run), "--num", "200", "--nll-num", "20")
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((run / "eval.json").read_text())
    assert np.isfinite(result["nll"]) and result["energy_distance"] > 0


@pytest.mark.slow  # the UNet compiles slowly on CPU
def test_digits_train_and_sample(tmp_path):
    run = tmp_path / "run"
    r = run_cli("train.py", *TINY, "experiment=diffusion_digits_cfg", f"hydra.run.dir={run}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert _sample(run, "ddpm", 5, num=16)["nfe"] == 5
    assert np.load(run / "samples" / "samples.npy").shape == (16, 1, 8, 8)
