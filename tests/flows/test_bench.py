"""The flows benchmark script runs and prints the JSON it promises (speed itself is measured there, not asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # trains an 8-layer spline flow for 500 steps: ~40 s on 2 loaded cores
def test_flows_bench_prints_json():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/bench/flows.py"), "--smoke"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result = json.loads(out.stdout)
    assert result["benchmark"] == "flows_rq_coupling_moons"
    assert result["train"]["steps_per_sec"] > 0 and result["train_steps"] == 500
    assert 0 < result["test_nll_10k"] < 5
    assert result["sample_10k"]["seconds"] > 0 and result["log_prob_10k"]["points_per_sec"] > 0
