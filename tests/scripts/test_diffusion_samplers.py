"""scripts/figures/diffusion_samplers.py: its exact score and its settings from the experiment diffusion_samplers
(fast), and a QUICK run end to end (slow)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.diffusion import VPSchedule

from ._scripts import load_figure, run_quick


def _load():
    return load_figure("diffusion_samplers")


def test_exact_score_is_the_gradient_of_the_noised_log_density(x64):
    """The figure's 'exact score' panel is only as good as this: grad_x log p_t by autodiff of the mixture density."""
    ds = _load()
    p0, schedule = ds.target(), VPSchedule()
    x = jax.random.normal(jax.random.key(0), (5, 2)) * 2.0
    for t in (0.01, 0.3, 0.9):
        pt = p0.noised(schedule.alpha(t), schedule.sigma(t))
        auto = jax.vmap(jax.grad(lambda xi, pt=pt: pt.log_prob(xi)))(x)
        np.testing.assert_allclose(ds.exact_score(p0, schedule)(jnp.asarray(t), x), auto, rtol=1e-10, atol=1e-12)


def test_experiment_config_has_the_scripts_settings():
    ds = _load()
    full = ds.settings(ds.compose(ds.EXPERIMENT))
    assert full == {"nfe": (5, 10, 20, 50, 100, 200, 500, 1000), "tolerances": (1e-1, 1e-2, 1e-3, 1e-4, 1e-5),
                    "seeds": 3, "num_samples": 2000, "entropy_samples": 200_000, "train_steps": 6000, "batch": 256,
                    "width": 128, "depth": 3, "emb_dim": 64, "lr": 2e-3, "scatter_nfe": (10, 100)}  # fmt: skip
    quick = ds.settings(ds.compose(ds.EXPERIMENT, quick=True))
    assert quick == full | {"nfe": (5, 20), "tolerances": (1e-2,), "seeds": 1, "num_samples": 400,
                            "entropy_samples": 20_000, "train_steps": 300, "scatter_nfe": (5, 20)}  # fmt: skip
    p0 = ds.target()
    np.testing.assert_allclose(p0.weights, [0.2, 0.3, 0.5], rtol=1e-6)
    np.testing.assert_allclose(p0.means, [[-2.5, 0.0], [2.0, 2.0], [1.5, -2.0]])


@pytest.mark.slow  # trains a small MLP and runs every sampler twice: about a minute on 2 CPU cores
def test_quick_run_writes_figures_and_numbers(tmp_path):
    numbers = run_quick("diffusion_samplers", tmp_path, timeout=900)
    assert numbers["config"]["quick"] is True
    for src in ("exact_score", "trained_net"):
        assert set(numbers[src]) == {"ddpm_ancestral", "ddim", "reverse_sde_em", "pc_langevin", "pf_euler_t",
                                     "pf_heun_edm", "pf_tsit5"}  # fmt: skip
    ddim = numbers["exact_score"]["ddim"]  # on the exact score, 20 DDIM steps beat 5
    assert ddim[-1]["energy_distance"] < ddim[0]["energy_distance"]
    assert (tmp_path / "quality_vs_nfe.png").stat().st_size > 0 and (tmp_path / "samples.png").stat().st_size > 0
