"""scripts/bench/_run_all.py (make bench): discovery, a failing or hanging script is recorded, the Markdown table."""

import json

import pytest

from ._scripts import load_script
from .test_bench import ROOT, run_smoke


def _load():
    return load_script(ROOT / "scripts/bench/_run_all.py", "run_all")


run_all = _load()


def test_discovers_every_benchmark_and_skips_helpers():
    names = [p.stem for p in run_all.discover(None)]
    assert {"train_throughput", "flops", "scaling", "diffusion"} <= set(names)
    assert not any(n.startswith("_") for n in names)


def test_failures_and_timeouts_are_recorded_not_raised(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import sys\nprint('boom', file=sys.stderr)\nsys.exit(2)\n")
    slow = tmp_path / "slow.py"
    slow.write_text("import time  # accepts --quick\nimport sys\ntime.sleep(30)\n")
    good = tmp_path / "good.py"
    good.write_text("import json\nprint(json.dumps({'train': {'steps_per_sec': 5.0, 'first_call_s': 1.0}}))\n")
    assert run_all.run_one(bad, 20)["error"] == "exit code 2: boom"
    hung = run_all.run_one(slow, 1)
    assert hung["error"] == "timed out after 1 s" and hung["budget"] == "--quick"
    ok = run_all.run_one(good, 20)
    assert ok["budget"] == "full" and ok["result"]["train"]["steps_per_sec"] == 5.0


def test_markdown_lists_timings_quality_and_errors():
    results = {
        "machine": {"cpu_count": 2, "machine": "x86_64", "device": "cpu:0", "jax": "0.10.2"},
        "load_avg_start": [3.0, 2.0, 1.0],
        "load_avg_end": [4.0, 2.0, 1.0],
        "wall_s": 12.0,
        "scripts": {
            "a": {"budget": "--quick", "seconds": 5.0, "result": {
                "train": [{"steps_per_call": 100, "steps_per_sec": 1234.5, "first_call_s": 2.0}],
                "sample": {"samples_per_sec": 5e4, "seconds": 0.2}, "w2_exact_ode": 0.129}},
            "b": {"budget": "full", "seconds": 1.0, "error": "exit code 1: ValueError | bad"},
        },
    }  # fmt: skip
    md = run_all.markdown(results)
    assert "| a | train.steps_per_call=100 | 1,234 | - | 2 |" in md
    assert "| a | sample | - | 50,000 | - |" in md
    assert "| a | w2_exact_ode | 0.129 |" in md
    assert "| b | full | 1 | exit code 1: ValueError / bad |" in md
    assert "load average at start 3.0" in md


@pytest.mark.slow  # compiles a UNet and several MLPs: minutes on a busy 2-core machine
def test_scaling_smoke(tmp_path):
    result = run_smoke("scaling.py", "--out", str(tmp_path))
    assert result["mlp_batch"]["exponent"] is not None and result["unet_batch"]["points"]
    assert (tmp_path / "scaling.png").stat().st_size > 0
    assert json.loads((tmp_path / "scaling.json").read_text())["budget"] == "smoke"


@pytest.mark.slow  # a bench smoke run: compiles a width-1024 MLP step (the oracle-free plumbing of make bench)
def test_flops_smoke():
    result = run_smoke("flops.py")
    run = result["train"][0]
    assert run["chunk_traces"] == 1 and not run["float64_in_hlo"]
    assert 0 < run["fraction_of_peak"] and result["peak_matmul_gflops"]["peak"] > 0
    # The analytic 6 B sum(W) count agrees with XLA's count of the same step (which adds the elementwise ops).
    assert run["model_gflop_per_step"] == pytest.approx(run["xla_gflop_per_grad_step"], rel=0.05)
