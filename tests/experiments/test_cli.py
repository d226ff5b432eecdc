"""End-to-end command-line runs: train, sample, evaluate, multirun, bad config exit codes, kill and resume; diffusion
with every sampler kind swapped in by sample.py and the probability-flow NLL."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import evaluate

from .conftest import ROOT, TINY, cli_env, run_cli


def test_train_sample_evaluate(tmp_path):
    run = tmp_path / "run"
    r = run_cli("train.py", "experiment=fm_8gaussians_moons", "debug=default", f"hydra.run.dir={run}")
    assert r.returncode == 0, r.stderr[-3000:]
    for name in ("config.yaml", "metrics.jsonl", "checkpoints", "figures/samples.png", "figures/trajectories.png"):
        assert (run / name).exists(), name
    r = run_cli("sample.py", str(run), "--num", "100", "--sampler", "rk4", "--steps", "5")
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["nfe"] == 20 and np.load(run / "samples" / "samples.npy").shape == (100, 2)
    # In this process: a third subprocess would cost ~10 s of start-up and compiles (the slow 2-D diffusion test
    # runs evaluate.py as a command).
    evaluate.main([str(run), "--num", "200", "--nll-num", "0"])
    result = json.loads((run / "eval.json").read_text())
    assert {"energy_distance", "mmd", "sliced_w2", "w2_exact"} <= set(result)


def test_bad_config_exits_before_compiling(tmp_path):
    r = run_cli("train.py", *TINY, "train.batch_size=0", f"hydra.run.dir={tmp_path}")
    assert r.returncode == 2
    assert "train.batch_size=0 is invalid: must be a positive integer" in r.stderr
    r = run_cli("train.py", *TINY, "data=moonz", f"hydra.run.dir={tmp_path}")
    assert r.returncode != 0
    assert "data/moonz" in r.stderr and "moons" in r.stderr  # Hydra lists the available options
    r = run_cli("sample.py", str(tmp_path / "nowhere"))
    assert r.returncode != 0 and "not a genflow run directory" in r.stderr


@pytest.mark.slow  # two full CLI runs in subprocesses (~70 s on 2 loaded cores); the launcher config tests are fast
def test_multirun_sweep(tmp_path):
    r = run_cli("train.py", "-m", *TINY, "data=moons,checkerboard", "train.seed=0,1", f"hydra.sweep.dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and (p / "metrics.jsonl").exists())
    assert len(runs) == 4
    seeds_data = {(json.loads(json.dumps(_cfg(p)))["train"]["seed"], _cfg(p)["data"]["name"]) for p in runs}
    assert seeds_data == {(0, "moons"), (1, "moons"), (0, "checkerboard"), (1, "checkerboard")}


def _cfg(run):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(run / "config.yaml"))


def test_kill_and_resume_gives_identical_numbers(tmp_path):
    args = [
        "train.num_steps=1000",
        "train.steps_per_call=10",
        "train.checkpoint_every=100",
        "train.batch_size=32",
        "train.progress=false",
        "net.width=32",
        "eval.plot=false",
        "eval.num_samples=64",
    ]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run_cli("train.py", *args, f"hydra.run.dir={full}").returncode == 0

    cmd = [sys.executable, str(ROOT / "experiments" / "train.py"), *args, f"hydra.run.dir={cut}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(list((cut / "checkpoints").glob("ckpt_*.eqx"))) < 2:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(int(p.stem.split("_")[1]) for p in (cut / "checkpoints").glob("ckpt_*.eqx"))
    assert 0 < killed_at < 1000

    r = run_cli("train.py", *args, f"hydra.run.dir={cut}")
    assert r.returncode == 0, r.stderr[-3000:]
    final = "checkpoints/ckpt_000001000.eqx"
    assert (full / final).read_bytes() == (cut / final).read_bytes()
    losses = lambda d: [(r["step"], r["loss"]) for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]
    assert losses(full) == losses(cut)


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
