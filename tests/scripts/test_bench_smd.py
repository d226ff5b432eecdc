"""The SMD benchmark runs and prints the JSON it promises (speed is measured there, not asserted)."""

import pytest

from .test_bench import run_smoke


@pytest.mark.slow  # compiles a 2D MLP three ways and a UNet twice: ~70 s of CPU, over the family's fast budget
def test_smd_bench_prints_json():
    result = run_smoke("smd.py")
    train = result["train_2d_mlp"]
    assert set(train) == {"ddpm", "smd_regression", "smd_mixture"}
    assert train["ddpm"]["relative_to_ddpm"] == 1.0 and train["smd_mixture"]["steps_per_sec"] > 0
    assert set(result["sample_2d_10k"]["ddpm_ancestral_10"]) == {"ddpm", "smd_regression"}
    assert result["train_digits_unet"]["smd_regression"]["steps_per_sec"] > 0
