"""scripts/figures/diffusion_samplers.py: its exact score (fast) and a QUICK run end to end (slow)."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.diffusion import VPSchedule

from ._scripts import load_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts/figures/diffusion_samplers.py"


def _load():
    return load_script(SCRIPT)


def test_exact_score_is_the_gradient_of_the_noised_log_density(x64):
    """The figure's 'exact score' panel is only as good as this: grad_x log p_t by autodiff of the mixture density."""
    ds = _load()
    p0, schedule = ds.target(), VPSchedule()
    x = jax.random.normal(jax.random.key(0), (5, 2)) * 2.0
    for t in (0.01, 0.3, 0.9):
        pt = p0.noised(schedule.alpha(t), schedule.sigma(t))
        auto = jax.vmap(jax.grad(lambda xi, pt=pt: pt.log_prob(xi)))(x)
        np.testing.assert_allclose(ds.exact_score(p0, schedule)(jnp.asarray(t), x), auto, rtol=1e-10, atol=1e-12)


@pytest.mark.slow  # trains a small MLP and runs every sampler twice: about a minute on 2 CPU cores
def test_quick_run_writes_figures_and_numbers(tmp_path):
    subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)], check=True, timeout=900)
    numbers = json.loads((tmp_path / "numbers.json").read_text())
    assert numbers["config"]["quick"] is True
    for src in ("exact_score", "trained_net"):
        assert set(numbers[src]) == {"ddpm_ancestral", "ddim", "reverse_sde_em", "pc_langevin", "pf_euler_t",
                                     "pf_heun_edm", "pf_tsit5"}  # fmt: skip
    ddim = numbers["exact_score"]["ddim"]  # on the exact score, 20 DDIM steps beat 5
    assert ddim[-1]["energy_distance"] < ddim[0]["energy_distance"]
    assert (tmp_path / "quality_vs_nfe.png").stat().st_size > 0 and (tmp_path / "samples.png").stat().st_size > 0
