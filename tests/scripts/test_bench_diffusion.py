"""The diffusion benchmark runs and prints the JSON it promises (speed is measured there, not asserted)."""

import pytest

from .test_bench import run_smoke


@pytest.mark.slow  # trains a 2D MLP and a small UNet, samples, and integrates likelihoods: minutes on 2 CPU cores
def test_diffusion_bench_prints_json():
    result = run_smoke("diffusion.py")
    assert result["train_2d_mlp"]["steps_per_sec"] > 0 and result["train_digits_unet"]["steps_per_sec"] > 0
    sampling = result["sample_2d"]
    assert sampling["ddpm_ancestral_1000"]["nfe"] == 1000
    assert sampling["pf_heun_edm_50"]["nfe"] == 101  # 50 Heun steps and the final denoising step
    nll = result["nll_digits"]
    assert nll["pf_ode_bits_per_dim"] > 0 and nll["ddpm_vlb_bits_per_dim"] > 0
