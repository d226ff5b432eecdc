"""Stochastic interpolants against the closed-form GMM fields (float64, no training).

References: Albergo, Boffi, Vanden-Eijnden, "Stochastic Interpolants: A Unifying Framework for Flows and
Diffusions", 2023."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from genflow.couplings import ExactOTCoupling
from genflow.distributions import GaussianMixture
from genflow.interpolants import (
    EncoderDecoderInterpolant,
    GVPInterpolant,
    LinearEps,
    LinearInterpolant,
    MirrorInterpolant,
    OneSidedInterpolant,
    QuadraticGamma,
    SinSquaredGamma,
    SqrtGamma,
    StochasticInterpolant,
    TrigInterpolant,
    VelocityDenoiser,
    VelocityScore,
)
from genflow.interpolants._oracles import GaussianMixtureFields, gaussian_fields
from genflow.solvers import RK4, DiffraxODE, EulerMaruyama, Heun

INTERPOLANTS = [
    LinearInterpolant(),
    LinearInterpolant(SqrtGamma(1.0)),
    LinearInterpolant(QuadraticGamma(2.0)),
    GVPInterpolant(),
    TrigInterpolant(SqrtGamma(1.0)),
    TrigInterpolant(SinSquaredGamma()),
    EncoderDecoderInterpolant(),
    OneSidedInterpolant(schedule=GVPInterpolant()),
]


def rho0():
    return GaussianMixture(
        np.array([0.5, 0.5]), np.array([[-1.0, 0.0], [1.0, 0.5]]), 0.3 * np.eye(2)[None].repeat(2, 0)
    )


def rho1():
    covs = np.array([[[0.3, 0.1], [0.1, 0.2]], [[0.5, -0.2], [-0.2, 0.4]]])
    return GaussianMixture(np.array([0.3, 0.7]), np.array([[-2.0, 1.0], [2.0, -1.0]]), covs)


@pytest.mark.parametrize("itp", INTERPOLANTS, ids=lambda i: f"{type(i).__name__}-{type(i.gamma).__name__}")
def test_schedule_boundaries_and_closed_form_derivatives(x64, itp):
    assert float(itp.alpha(0.0)) == pytest.approx(1.0) and float(itp.beta(1.0)) == pytest.approx(1.0)
    assert abs(float(itp.alpha(1.0))) < 1e-12 and abs(float(itp.beta(0.0))) < 1e-12
    assert abs(float(itp.gamma(0.0))) < 1e-12 and abs(float(itp.gamma(1.0))) < 1e-12
    for t in np.linspace(0.05, 0.95, 7):
        if isinstance(itp, EncoderDecoderInterpolant) and abs(t - 0.5) < 1e-9:
            continue
        t = jnp.asarray(t)
        np.testing.assert_allclose(itp.dalpha(t), jax.grad(itp.alpha)(t), atol=1e-10)
        np.testing.assert_allclose(itp.dbeta(t), jax.grad(itp.beta)(t), atol=1e-10)
        np.testing.assert_allclose(itp.gamma_dgamma(t), itp.gamma(t) * jax.grad(itp.gamma)(t), atol=1e-10)
        np.testing.assert_allclose(itp.dgamma(t), jax.grad(itp.gamma)(t), atol=1e-8)
    assert np.isfinite(float(itp.gamma_dgamma(0.0))) and np.isfinite(float(itp.gamma_dgamma(1.0)))


def test_trig_is_variance_preserving_and_mirror_stays_on_data(x64):
    itp = TrigInterpolant(SqrtGamma(2.0))
    t = jnp.linspace(0, 1, 11)
    np.testing.assert_allclose(itp.alpha(t) ** 2 + itp.beta(t) ** 2 + itp.gamma(t) ** 2, 1.0, atol=1e-12)
    m = MirrorInterpolant()
    x1, z = jnp.ones(3), jnp.arange(3.0)
    np.testing.assert_allclose(m.interpolate(0.25, x1 * 7, x1, z), x1 + m.gamma(0.25) * z)
    with pytest.raises(ValueError, match=r"schedule=.*invalid.*deterministic interpolant"):
        OneSidedInterpolant(schedule=LinearInterpolant(SqrtGamma(1.0)))


def exact_model(itp=None, **kw):
    fields = GaussianMixtureFields(itp or LinearInterpolant(SqrtGamma(1.0)), rho0(), rho1())
    return StochasticInterpolant(
        fields.velocity, (2,), denoiser_net=fields.denoiser, interpolant=fields.interpolant, base=rho0(), **kw
    ), fields


@pytest.mark.parametrize("itp", [LinearInterpolant(SqrtGamma(1.0)), TrigInterpolant(SinSquaredGamma())])
def test_ode_likelihood_equals_target_density(x64, itp):
    model, _ = exact_model(itp, likelihood_solver=DiffraxODE(diffrax.Dopri5(), rtol=1e-10, atol=1e-10))
    x = rho1().sample(jax.random.key(0), 16)
    np.testing.assert_allclose(model.log_prob(x), rho1().log_prob(x), atol=1e-6)


def test_marginal_at_one_is_the_target(x64):
    _, fields = exact_model()
    x = rho1().sample(jax.random.key(1), 8)
    np.testing.assert_allclose(fields.marginal(1.0).log_prob(x), rho1().log_prob(x), atol=1e-12)
    np.testing.assert_allclose(fields.marginal(0.0).log_prob(x), rho0().log_prob(x), atol=1e-12)


def test_oracle_score_is_the_gradient_of_the_log_marginal(x64):
    # An independent check of the closed form: s(t, x) = grad log rho_t(x), with rho_t from GaussianMixture.log_prob.
    _, fields = exact_model(TrigInterpolant(SqrtGamma(1.0)))
    x = 1.5 * jax.random.normal(jax.random.key(0), (16, 2))
    for t in (0.05, 0.5, 0.95):
        grad = jax.vmap(jax.grad(fields.marginal(t).log_prob))(x)
        np.testing.assert_allclose(jax.vmap(lambda xi: fields.score(t, xi))(x), grad, rtol=1e-9, atol=1e-9)


def _ks_ok(x, ref):
    return all(scipy.stats.ks_2samp(np.asarray(x)[:, d], np.asarray(ref)[:, d]).pvalue > 1e-3 for d in range(2))


def test_ode_and_sde_samples_reproduce_the_target(x64):
    model, _ = exact_model(eps=0.5, t_min=1e-3)
    ref = rho1().sample(jax.random.key(9), 3000)
    x_ode = model.sample(jax.random.key(2), 3000, sampler=RK4(num_steps=100))
    x_sde = model.sample(jax.random.key(3), 3000, sampler=EulerMaruyama(num_steps=400))
    x_sched = model.sample(jax.random.key(4), 3000, sampler=EulerMaruyama(num_steps=400), eps=LinearEps(1.0, 0.1))
    assert _ks_ok(x_ode, ref) and _ks_ok(x_sde, ref) and _ks_ok(x_sched, ref)
    # The SDE's log-likelihood of its samples under rho1 matches that of true samples (mean over 3000 points).
    lp, lp_ref = rho1().log_prob(x_sde), rho1().log_prob(ref)
    assert abs(float(lp.mean() - lp_ref.mean())) < 4 * float(jnp.sqrt(lp.var() / 3000 + lp_ref.var() / 3000))


def test_gaussian_endpoint_map_and_divergence_integral(x64):
    # N(0, I) -> N(mu, Sigma): the flow is x -> mu + Sigma^{1/2} x and  ∫_0^1 div b dt = 1/2 log det Sigma.
    mu, L = np.array([1.0, -2.0]), np.array([[1.5, 0.0], [0.8, 0.5]])
    sigma = L @ L.T
    fields = gaussian_fields(LinearInterpolant(SqrtGamma(1.0)), np.zeros(2), np.eye(2), mu, sigma)
    model = StochasticInterpolant(fields.velocity, (2,), interpolant=fields.interpolant, sampler=RK4(num_steps=200))
    x0 = jax.random.normal(jax.random.key(4), (32, 2))
    w, V = np.linalg.eigh(sigma)
    np.testing.assert_allclose(model.sample(jax.random.key(0), 32, x0=x0), mu + x0 @ (V * np.sqrt(w)) @ V.T, atol=1e-7)
    from genflow.solvers import ode_log_prob

    x = mu + x0 @ L.T
    logp, prior, _ = ode_log_prob(fields.velocity, model.base.log_prob, x, RK4(num_steps=200))
    np.testing.assert_allclose(prior - logp, 0.5 * np.linalg.slogdet(sigma)[1], atol=1e-8)


def test_encode_inverts_the_gaussian_map_and_the_backward_sde_reaches_the_base(x64):
    mu, L = np.array([1.0, -2.0]), np.array([[1.5, 0.0], [0.8, 0.5]])
    sigma = L @ L.T
    fields = gaussian_fields(LinearInterpolant(SqrtGamma(1.0)), np.zeros(2), np.eye(2), mu, sigma)
    model = StochasticInterpolant(fields.velocity, (2,), denoiser_net=fields.denoiser, interpolant=fields.interpolant)
    w, V = np.linalg.eigh(sigma)
    z = jax.random.normal(jax.random.key(4), (2000, 2))
    x = mu + z @ (V * np.sqrt(w)) @ V.T  # the exact flow map's image of z
    np.testing.assert_allclose(model.encode(jax.random.key(0), x[:32], sampler=RK4(num_steps=200)).y, z[:32], atol=1e-7)
    y = model.encode(jax.random.key(1), x, sampler=EulerMaruyama(num_steps=400), eps=LinearEps(0.5, 1.0)).y
    assert _ks_ok(y, jax.random.normal(jax.random.key(2), (2000, 2)))


def v_and_score(fields):
    """The exact fields of the VelocityScore parametrisation: v = b + gamma gamma' s, and s."""
    v = lambda t, x, c=None: fields.velocity(t, x) + fields.interpolant.gamma_dgamma(t) * fields.score(t, x)
    return v, lambda t, x, c=None: fields.score(t, x)


def test_v_score_parametrisation_gives_the_exact_velocity_score_and_denoiser(x64):
    _, fields = exact_model()
    v, s = v_and_score(fields)
    model = StochasticInterpolant(
        v, (2,), denoiser_net=s, interpolant=fields.interpolant, base=rho0(), parametrization=VelocityScore()
    )
    x = jnp.array([0.7, -0.3])
    for t in (0.2, 0.5, 0.9):
        np.testing.assert_allclose(model.velocity(t, x), fields.velocity(t, x), atol=1e-12)
        np.testing.assert_allclose(model.score(t, x), fields.score(t, x), atol=1e-12)
        np.testing.assert_allclose(model.denoiser(t, x), fields.denoiser(t, x), atol=1e-12)
    with pytest.raises(ValueError, match="VelocityScore"):
        StochasticInterpolant(v, (2,), interpolant=fields.interpolant, parametrization=VelocityScore())
    with pytest.raises(ValueError, match="parametrization"):
        StochasticInterpolant(v, (2,), parametrization="eps")


@pytest.mark.parametrize(
    "param,field",
    [
        (VelocityDenoiser(), "net"),
        (VelocityDenoiser(), "denoiser_net"),
        (VelocityScore(), "net"),
        (VelocityScore(), "denoiser_net"),
    ],
)
def test_loss_gap_identity(x64, param, field):
    # L(f + delta) - L(f) = |delta|^2 / 2 for a constant delta, at the exact field (common random numbers). For
    # v_score this covers L_v and L_s, whose z . s / gamma term is only finite thanks to the antithetic pair.
    _, fields = exact_model()
    delta = jnp.array([0.3, -0.4])
    v_score = isinstance(param, VelocityScore)
    nets = dict(zip(("net", "denoiser_net"), v_and_score(fields), strict=True)) if v_score else {}
    nets = nets or {"net": fields.velocity, "denoiser_net": fields.denoiser}
    common = dict(data_shape=(2,), interpolant=fields.interpolant, base=rho0(), parametrization=param)
    exact = StochasticInterpolant(**common, **nets)
    f = nets[field]
    nets[field] = lambda t, x, c=None: f(t, x) + delta
    perturbed = StochasticInterpolant(**common, **nets)
    keys = jax.random.split(jax.random.key(5), 100)
    data_keys = jax.random.split(jax.random.key(6), 100)
    # lax.map, not vmap: a 100-wide vmap of the batched mixture solves has deadlocked XLA:CPU in the full suite.
    gap = lambda kk: perturbed.loss(kk[0], rho1().sample(kk[1], 256)) - exact.loss(kk[0], rho1().sample(kk[1], 256))
    gaps = jax.jit(lambda k, dk: jax.lax.map(gap, (k, dk)))(keys, data_keys)
    half = float(delta @ delta) / 2
    assert abs(float(gaps.mean()) - half) < 4 * float(gaps.std()) / np.sqrt(len(gaps)) + 1e-3


def test_sde_likelihood_estimator(x64):
    model, _ = exact_model(eps=0.5, t_min=1e-3)
    x = jnp.tile(jnp.array([[2.0, -1.0]]), (400, 1))
    est = model.log_prob_sde(x, key=jax.random.key(7), solver=EulerMaruyama(num_steps=400))
    exact = float(rho1().log_prob(x[0]))
    # Unbiased up to O(dt) and the t_min cut; one path per row, so 400 independent estimates.
    assert abs(float(est.mean()) - exact) < 4 * float(est.std()) / np.sqrt(len(est)) + 0.05


def test_score_needs_a_denoiser_and_bad_arguments():
    m = StochasticInterpolant(lambda t, x: x, (2,))
    with pytest.raises(ValueError, match="no denoiser_net"):
        m.score(0.5, jnp.ones(2))
    with pytest.raises(ValueError, match="t_min"):
        StochasticInterpolant(lambda t, x: x, (2,), t_min=0.7)


def test_training_step_with_minibatch_ot_coupling():
    import optax

    from genflow.data import Toy2D
    from genflow.nn import MLP
    from genflow.train import Trainer

    k1, k2 = jax.random.split(jax.random.key(0))
    model = StochasticInterpolant(
        MLP(2, width=32, depth=2, key=k1),
        (2,),
        denoiser_net=MLP(2, width=32, depth=2, key=k2),
        coupling=ExactOTCoupling(),
        base=Toy2D("8gaussians"),
        sampler=Heun(num_steps=10),
    )
    state = Trainer(optax.adam(1e-3), num_steps=40, batch_size=64, steps_per_call=20, progress=False).fit(
        model, Toy2D("moons"), key=jax.random.key(1)
    )
    x = state.ema_model.sample(jax.random.key(2), 16)
    assert x.shape == (16, 2) and np.all(np.isfinite(np.asarray(x)))
    x_sde = state.ema_model.sample(jax.random.key(3), 16, sampler=EulerMaruyama(num_steps=10))
    assert np.all(np.isfinite(np.asarray(x_sde)))
