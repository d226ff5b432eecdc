"""scripts/figures/ode_vs_sde.py: its likelihood helpers on the exact fields (fast), its agreement with the Hydra
experiment (fast and slow), and a QUICK run end to end (slow)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra.utils import instantiate

from experiments.compose import compose
from genflow.solvers import RK4, EulerMaruyama

from ._scripts import load_figure, run_quick

ovs = load_figure("ode_vs_sde")


def _compose(*overrides):
    return compose("ode_vs_sde", overrides)


def test_exact_fields_likelihoods_match_the_mixture(x64):
    """ODE likelihood on the exact fields = analytic log rho1 (RK4); the SDE estimator agrees within its error."""
    target = ovs.make_target()
    model = ovs.exact_model(target)
    x = target.sample(jax.random.key(0), 64)
    exact = target.log_prob(x)
    ode = ovs.log_likelihood(model, x, RK4(num_steps=50))
    assert ode.shape == (64, 1)
    np.testing.assert_allclose(ode[:, 0], exact, atol=1e-3)
    summary = ovs.likelihood_summary(ode, exact)
    assert abs(summary["nll_gap"]) < 1e-3 and summary["mc_se"] == 0.0

    sde = ovs.log_likelihood(model, x, EulerMaruyama(num_steps=100), eps=0.25, key=jax.random.key(1), num_paths=4)
    assert sde.shape == (64, 4) and bool(jnp.all(jnp.isfinite(sde)))
    summary = ovs.likelihood_summary(sde, exact)
    assert 0 < summary["mc_se"] <= summary["gap_se"] * 1.5
    # Euler–Maruyama's bias at 100 steps is a few hundredths (measured: 0.01-0.02 at 100-1600 steps, eps <= 0.5).
    assert abs(summary["nll_gap"]) < 4 * summary["gap_se"] + 0.05


def test_likelihood_summary_signs_and_standard_errors():
    exact = jnp.zeros(4)
    est = jnp.array([[1.0, 3.0], [1.0, 3.0], [2.0, 2.0], [2.0, 2.0]])  # every point's mean is 2: the model says more
    s = ovs.likelihood_summary(est, exact)
    assert s["nll_gap"] == -2.0 and s["gap_se"] == 0.0 and s["mean_log_prob"] == 2.0
    np.testing.assert_allclose(s["mc_se"], np.sqrt(np.mean([1.0, 1.0, 0.0, 0.0]) / 4))  # var(ddof=1)/paths = 1, 0


def test_data_config_is_the_scripts_target():
    data = instantiate(_compose().data, _convert_="all")
    target = ovs.make_target()
    np.testing.assert_allclose(data.weights, target.weights, rtol=1e-6)
    np.testing.assert_allclose(data.means, target.means, atol=1e-6)
    np.testing.assert_allclose(data.covs, target.covs, rtol=1e-6)


def test_experiment_config_has_the_scripts_training_settings():
    # The script reads its settings from the experiment (ovs.settings); these are the published run's.
    cfg, full = _compose(), ovs.settings(ovs.compose_config())
    published = {"train_steps": 4000, "batch": 256, "width": 128, "depth": 3, "emb_dim": 64}
    assert {k: full[k] for k in published} == published
    assert (full["lr"], full["final_lr_fraction"], full["grad_clip"], full["ema_decay"]) == (2e-3, 0.05, 1.0, 0.999)
    assert cfg.model._target_.endswith("StochasticInterpolant") and cfg.model.denoiser_net is not None
    assert cfg.model.interpolant.gamma._target_.endswith("SqrtGamma") and cfg.model.interpolant.gamma.a == 1.0
    assert cfg.model.t_min == ovs.T_MIN and cfg.model.base is None
    assert (cfg.net.width, cfg.net.depth, cfg.net.emb_dim) == (full["width"], full["depth"], full["emb_dim"])
    # the MLP defaults the script uses
    assert (cfg.net.activation.path, cfg.net.time_embedding._target_) == (
        "jax.nn.silu",
        "genflow.nn.SinusoidalEmbedding",
    )
    clip, adam = cfg.optim._args_
    lr = adam.learning_rate
    assert (adam._target_, lr.peak_value, lr.init_value, lr.warmup_steps) == ("optax.adam", full["lr"], full["lr"], 0)
    assert (clip.max_norm, lr.end_value) == (full["grad_clip"], full["final_lr_fraction"] * full["lr"])
    t = cfg.train
    assert (t.seed, t.num_steps, t.batch_size, t.ema_decay) == (0, full["train_steps"], full["batch"], 0.999)
    assert t.ema_warmup is True
    assert _compose("train.num_steps=20").train.num_steps % cfg.train.steps_per_call == 0


@pytest.mark.slow  # trains twice (script and CLI), 20 steps each: about half a minute on 2 CPU cores
def test_script_and_cli_train_the_same_model(tmp_path):
    from experiments.train import train as cli_train

    cfg = _compose("train.num_steps=20", "train.progress=false", "eval.num_samples=64", "eval.num_trajectories=8")
    state = cli_train(cfg, tmp_path)
    script_model, _ = ovs.train(ovs.compose_config(overrides=["train.num_steps=20"]), ovs.make_target())
    cli_leaves = jax.tree_util.tree_leaves(state.ema_model.velocity_net) + jax.tree_util.tree_leaves(
        state.ema_model.denoiser_net
    )
    script_leaves = jax.tree_util.tree_leaves(script_model.velocity_net) + jax.tree_util.tree_leaves(
        script_model.denoiser_net
    )
    assert len(cli_leaves) == len(script_leaves)
    for a, b in zip(cli_leaves, script_leaves, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # trains a tiny model and sweeps eps for both field sets: about a minute on 2 CPU cores
def test_quick_run_writes_numbers_and_figures(tmp_path):
    numbers = run_quick("ode_vs_sde", tmp_path, 900)
    cfg = ovs.settings(ovs.compose_config(quick=True))  # configs/debug/ode_vs_sde.yaml
    assert numbers["config"]["quick"] is True
    n_methods = 2 + sum(e > 0 for e in cfg["eps"])  # ODE Euler, ODE Heun, one SDE per eps > 0
    for table in ("quality", "likelihood"):
        rows = numbers[table]
        assert len(rows) == 2 * len(cfg["steps"]) * n_methods
        assert {r["fields"] for r in rows} == {"learned", "exact"}
        assert all(r["nfe"] <= r["steps"] for r in rows)
    exact_ode = [r for r in numbers["quality"] if r["fields"] == "exact" and r["method"] == "ode_euler"]
    assert all(r["energy_distance"] > 0 and r["w2_exact"] > 0 for r in exact_ode)
    assert all(len(r["w2_exact_draws"]) == cfg["quality_draws"] for r in numbers["quality"])
    floor = numbers["data_vs_data_floor"]
    assert floor["w2_exact"] > 0 and abs(floor["cross_entropy_gap"]) < 0.3  # target samples: 0 up to noise
    # The exact fields' converged ODE likelihood is the analytic one (float32, RK4 with QUICK's few steps).
    assert abs(numbers["ode_likelihood_reference"]["exact"]["nll_gap"]) < 0.05
    assert all(np.isfinite(r["nll_gap"]) for r in numbers["likelihood"] if r["fields"] == "exact")
    assert numbers["training"]["loss_gap"] > 0  # the exact fields minimise the loss
    assert numbers["seconds"]["total"] > 0
    for name in ("quality_vs_eps.png", "likelihood_vs_eps.png", "samples.png"):
        assert (tmp_path / name).stat().st_size > 0
