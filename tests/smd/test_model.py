"""SMDModel and MixtureDenoiser: the kernel likelihood against the exact kernel, fresh eta per step, the eta=0
ablation, what each objective does to the latent in a short training run, and argument checks."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genflow.diffusion import (
    DDIM,
    AbstractSchedule,
    Ancestral,
    DataPrediction,
    DiscreteSchedule,
    VPSchedule,
    gaussian_posterior,
)
from genflow.nn import MLP, UNet, mixture_denoiser
from genflow.smd import (
    GaussianLatent,
    MixtureKernelOracle,
    MixtureObjective,
    RegressionObjective,
    SMDModel,
    ZeroLatent,
)
from genflow.train import Trainer


class PosteriorDraw(eqx.Module):
    """x0-prediction for standard normal data: ``E[x0 | x_t] + sd(x0 | x_t) * eta`` (``spread=1``) is an exact draw
    from p(x0 | x_t), so the SMD kernel is the true reverse kernel; ``spread=0`` is the Gaussian (DDPM) kernel."""

    schedule: AbstractSchedule
    spread: float = eqx.field(static=True)
    eta_dim: int = eqx.field(static=True, default=1)

    def __call__(self, t, x, eta):
        a, s = self.schedule.alpha(t), self.schedule.sigma(t)
        return a * x / (a**2 + s**2) + self.spread * s / jnp.sqrt(a**2 + s**2) * eta[: x.shape[0]]


def _toy_model(spread, latent=GaussianLatent(), schedule=None):
    schedule = VPSchedule() if schedule is None else schedule
    return SMDModel(PosteriorDraw(schedule, spread), (1,), schedule, parametrization=DataPrediction(), latent=latent)


def test_kernel_likelihood_matches_the_exact_kernel(x64):
    """With exact posterior draws the M-draw bound decreases in M to the true kernel NLL (the oracle's, for one
    unit Gaussian); the Gaussian kernel (eta ignored, variance v) exceeds it by KL = (R - 1 - log R) / 2,
    R = the true kernel variance / v."""
    schedule = VPSchedule()
    oracle = MixtureKernelOracle([1.0], [[0.0]], 1.0)
    x0 = jax.random.normal(jax.random.key(0), (4000, 1))
    t, s = 0.8, 0.2
    # The same key gives the same (x_t, x_s) pairs for every model and M.
    key = jax.random.key(1)
    k_eps, k_xs, _ = jax.random.split(key, 3)
    x_t = schedule.alpha(t) * x0 + schedule.sigma(t) * jax.random.normal(k_eps, x0.shape)
    _, m, var = oracle.kernel(schedule, t, s, x_t)
    mean, v = gaussian_posterior(schedule, t, s, x_t, x0)
    x_s = mean + jnp.sqrt(v) * jax.random.normal(k_xs, x0.shape)
    true_nll = 0.5 * (x_s - m[:, 0]) ** 2 / var[0] + 0.5 * jnp.log(2 * jnp.pi * var[0])
    true = float(jnp.mean(true_nll))
    exact = _toy_model(1.0)
    bounds = [float(jnp.mean(exact.kernel_nll(key, x0, t, s, num_draws=m))) for m in (1, 16, 512)]
    assert bounds[0] > bounds[1] > bounds[2] > true - 0.02
    assert bounds[2] - true < 0.03
    gaussian = float(jnp.mean(_toy_model(0.0).kernel_nll(key, x0, t, s, num_draws=16)))
    ratio = float(var[0] / v)
    np.testing.assert_allclose(gaussian - true, 0.5 * (ratio - 1 - np.log(ratio)), atol=0.03)


def test_one_step_sampling_with_exact_draws_reproduces_the_data():
    """T = 1 (DDPM and DDIM): the mixture kernel returns fresh posterior draws, the data's unit spread; the same
    model with eta = 0 returns E[x0 | x_T], which has almost none (alpha_1 ~ 0.0067)."""
    x_T = jnp.broadcast_to(jax.random.normal(jax.random.key(0), (1, 1)), (4000, 1))  # one start for all
    for sampler in (Ancestral(num_steps=1), DDIM(num_steps=1)):
        y = _toy_model(1.0).sample(jax.random.key(1), 4000, sampler=sampler, x_T=x_T)
        assert abs(float(jnp.std(y)) - 1.0) < 0.05
        y0 = _toy_model(1.0, latent=ZeroLatent()).sample(jax.random.key(1), 4000, sampler=sampler, x_T=x_T)
        assert float(jnp.max(y0) - jnp.min(y0)) == 0.0


def test_fresh_eta_at_every_step_and_reproducible():
    """Exact posterior draws make the DDPM kernel exact at every step, so 4 respaced ancestral steps from x_T = 0
    give the data's unit spread; deterministic DDIM from one start varies only through eta (drawn at each step),
    and the same key gives the same samples."""
    model = _toy_model(1.0, schedule=DiscreteSchedule(1000))
    x_T = jnp.zeros((4000, 1))
    y = model.sample(jax.random.key(2), 4000, sampler=Ancestral(num_steps=4), x_T=x_T)
    assert abs(float(jnp.std(y)) - 1.0) < 0.05
    y = model.sample(jax.random.key(2), 4000, sampler=DDIM(num_steps=4), x_T=x_T)
    assert float(jnp.std(y)) > 0.5
    np.testing.assert_array_equal(y, model.sample(jax.random.key(2), 4000, sampler=DDIM(num_steps=4), x_T=x_T))
    sol = model.solve(jax.random.key(3), 3, sampler=DDIM(num_steps=4), save_trajectory=True)
    assert sol.ys.shape == (5, 3, 1) and sol.nfe == 4


def test_zero_latent_is_the_same_network_without_randomness():
    net = mixture_denoiser(MLP, data_dim=2, width=16, depth=1, emb_dim=8, eta_dim=3, latent_dim=4,
                           latent_width=8, latent_depth=1, key=jax.random.key(0))  # fmt: skip
    x = jax.random.normal(jax.random.key(1), (5, 2))
    rand = SMDModel(net, (2,), DiscreteSchedule(100))
    zero = SMDModel(net, (2,), DiscreteSchedule(100), latent=ZeroLatent())
    assert float(jnp.std(rand.x0_draws(jax.random.key(2), 0.5, x, 4), axis=1).max()) > 1e-4
    assert float(jnp.std(zero.x0_draws(jax.random.key(2), 0.5, x, 4), axis=1).max()) == 0.0
    np.testing.assert_allclose(
        zero.predict(0.5, x[0], jnp.zeros(3))[0], zero.x0_draws(jax.random.key(3), 0.5, x, 2)[0, 1], rtol=1e-6
    )


def test_mixture_denoiser_on_the_unet_depends_on_eta():
    net = mixture_denoiser(UNet, in_channels=1, image_size=8, base_channels=8, channel_mults=(1,), emb_dim=8,
                           eta_dim=2, latent_dim=4, latent_width=8, latent_depth=1, key=jax.random.key(0))  # fmt: skip
    x = jax.random.normal(jax.random.key(1), (1, 8, 8))
    a, b = net(0.5, x, jnp.zeros(2)), net(0.5, x, jnp.ones(2))
    assert a.shape == (1, 8, 8) and float(jnp.max(jnp.abs(a - b))) > 1e-5
    assert net.data_shape == (1, 8, 8) and net.eta_dim == 2


@pytest.mark.slow  # a 300-step training run per objective (~20 s); the objectives' oracles are fast
def test_objectives_in_a_short_training_run():
    """Bimodal 1D data (+-1, std 0.1), 300 steps: the regression objective drives the eta-spread of x0_hat at t = 1
    down (its loss penalises Var_eta, the minimiser ignores eta), the mixture objective drives it up towards the
    data's (the posterior p(x0 | x_1) is nearly p0, std ~1). Measured spreads about 0.02 and 0.7."""
    from genflow.distributions import GaussianMixture

    data = GaussianMixture.isotropic([0.5, 0.5], [[-1.0], [1.0]], 0.1)
    spreads = {}
    for name, objective in (("regression", RegressionObjective()), ("mixture", MixtureObjective(num_latent_draws=8))):
        net = mixture_denoiser(MLP, data_dim=1, width=32, depth=2, emb_dim=16, eta_dim=2, latent_dim=8,
                               latent_width=16, latent_depth=1, key=jax.random.key(0))  # fmt: skip
        model = SMDModel(net, (1,), DiscreteSchedule(100), parametrization=DataPrediction(), objective=objective)
        opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-3))
        state = Trainer(opt, 300, 64, steps_per_call=300, progress=False, ema_decay=0.9).fit(
            model, data, key=jax.random.key(1)
        )
        x_T = jax.random.normal(jax.random.key(2), (256, 1))
        spreads[name] = float(jnp.mean(jnp.std(state.model.x0_draws(jax.random.key(3), 1.0, x_T, 16), axis=1)))
    assert spreads["mixture"] > 0.3
    assert spreads["regression"] < 0.3 * spreads["mixture"]


def test_bad_arguments_raise():
    net = mixture_denoiser(MLP, data_dim=2, width=8, depth=1, emb_dim=8, eta_dim=2, latent_dim=4, latent_width=8,
                           latent_depth=1, key=jax.random.key(0))  # fmt: skip
    with pytest.raises(ValueError, match="objective='elbo' is invalid; allowed: RegressionObjective()"):
        SMDModel(net, (2,), objective="elbo")
    with pytest.raises(ValueError, match="latent='fixed' is invalid; allowed: GaussianLatent()"):
        SMDModel(net, (2,), latent="fixed")
    with pytest.raises(ValueError, match="num_latent_draws"):
        SMDModel(net, (2,), objective=MixtureObjective(num_latent_draws=0))
    with pytest.raises(ValueError, match="eta_dim"):
        SMDModel(lambda t, x, c: x, (2,))
    with pytest.raises(ValueError, match=r"denoiser='transformer' is not allowed: pass a callable, a network class"):
        mixture_denoiser("transformer", key=jax.random.key(0))
    with pytest.raises(ValueError, match="condition slot"):
        mixture_denoiser(MLP, data_dim=2, num_classes=3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="eta must have shape"):
        net(0.5, jnp.zeros(2), jnp.zeros(3))
    with pytest.raises(ValueError, match="unconditional"):
        SMDModel(net, (2,)).loss(jax.random.key(0), {"x": jnp.zeros((4, 2)), "cond": jnp.zeros(4, jnp.int32)})
    with pytest.raises(ValueError, match="at least 2 steps"):
        SMDModel(net, (2,), DiscreteSchedule(1), objective=MixtureObjective()).loss(
            jax.random.key(0), jnp.zeros((4, 2))
        )
