"""The benchmark script runs and prints the JSON it promises (speed itself is measured there, not asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_smoke(script: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/bench" / script), "--smoke", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout)


@pytest.mark.slow  # a bench smoke run (plumbing): every bench script has one, all in the slow suite
def test_train_throughput_prints_json():
    result = run_smoke("train_throughput.py")
    assert [r["steps_per_call"] for r in result["train"]] == [1, 100, 1000]
    assert all(r["steps_per_sec"] > 0 for r in result["train"])
    assert result["sample_10k_euler100"]["nfe"] == 100
    assert result["quality_after_2000_steps"]["w2_exact_to_fresh_data"] > 0


@pytest.mark.slow  # trains and samples three models (one per coupling), minutes on 2 CPU cores
def test_interpolants_bench_prints_json():
    result = run_smoke("interpolants.py")
    assert set(result["couplings"]) == {"independent", "ot_exact", "ot_sinkhorn"}
    assert all(c["train"]["steps_per_sec"] > 0 and c["w2_exact_ode"] > 0 for c in result["couplings"].values())
    assert result["sample_10k"]["sde_euler_maruyama100"]["seconds"] > 0
