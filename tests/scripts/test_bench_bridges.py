"""The bridges benchmark runs and prints the JSON it promises."""

import pytest

from .test_bench import run_smoke


@pytest.mark.slow  # a bench smoke run (plumbing): every bench script has one, all in the slow suite
def test_bridges_bench_prints_json():
    result = run_smoke("bridges.py")
    (run,) = result["runs"]
    assert run["dim"] == 2 and run["steps_per_sec"] > 0 and run["cbw_uvp_final_pct"] >= 0
    assert "EOT-benchmark-style" in result["label"]
