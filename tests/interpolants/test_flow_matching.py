"""Flow matching against the closed-form velocity of the linear interpolant between Gaussians (Lipman et al., ICLR 2023;
Albergo & Vanden-Eijnden, ICLR 2023).

For x0 ~ N(0, I) independent of x1 ~ N(mu, C) and x_t = (1 - t) x0 + t x1:
    S_t = (1 - t)^2 I + t^2 C,   K_t = -(1 - t) I + t C,   b(t, x) = mu + K_t S_t^{-1} (x - t mu).
"""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.interpolants import FlowMatching, LinearInterpolant
from genflow.solvers import RK4, DiffraxODE, Euler, Heun, Hutchinson

MU = np.array([1.0, -2.0])
L = np.array([[1.5, 0.0], [0.8, 0.5]])
C = L @ L.T


def exact_velocity(t, x, cond=None):
    eye = jnp.eye(2)
    S = (1 - t) ** 2 * eye + t**2 * C
    K = -(1 - t) * eye + t * C
    return MU + K @ jnp.linalg.solve(S, x - t * MU)


def target_log_prob(x):
    return jax.scipy.stats.multivariate_normal.logpdf(x, MU, C)


def model(**kw):
    return FlowMatching(exact_velocity, data_shape=(2,), **kw)


def test_rk4_reproduces_target_endpoint_map(x64):
    # Gaussian-to-Gaussian endpoint map is x1 = mu + C^{1/2} x0 for the symmetric root (the linear-path flow).
    x0 = jax.random.normal(jax.random.key(0), (64, 2))
    x1 = model(sampler=RK4(num_steps=100)).sample(jax.random.key(1), 64, x0=x0)
    w, V = np.linalg.eigh(C)
    root = V @ np.diag(np.sqrt(w)) @ V.T
    np.testing.assert_allclose(x1, MU + x0 @ root.T, atol=1e-6)


def test_samples_match_target_moments(x64):
    n = 20000
    x = model(sampler=Heun(num_steps=50)).sample(jax.random.key(2), n)
    se = np.sqrt(np.diag(C) / n)
    assert np.all(np.abs(np.asarray(x.mean(0)) - MU) < 4 * se)
    np.testing.assert_allclose(np.cov(np.asarray(x).T), C, atol=0.06)


def test_ode_log_prob_matches_analytic(x64):
    x = jax.random.multivariate_normal(jax.random.key(3), MU, C, (16,))
    m = model(likelihood_solver=DiffraxODE(diffrax.Tsit5(), rtol=1e-10, atol=1e-10))
    np.testing.assert_allclose(m.log_prob(x), target_log_prob(x), atol=1e-6)
    # The sign of the divergence term matters by ~ |log det C| / 2 per point: a flipped sign fails loudly.
    wrong = m.log_prob(x) - 2 * (m.log_prob(x) - jax.vmap(m.base.log_prob)(x))
    assert np.max(np.abs(np.asarray(wrong - target_log_prob(x)))) > 0.5


def test_hutchinson_log_prob_is_unbiased(x64):
    x = jnp.tile(jnp.array([[1.2, -1.0]]), (4000, 1))
    m = model(likelihood_solver=RK4(num_steps=40))
    est = m.log_prob(x, key=jax.random.key(4), divergence=Hutchinson())
    exact = float(target_log_prob(x[0]))
    assert abs(float(est.mean()) - exact) < 4 * float(est.std()) / np.sqrt(len(est)) + 1e-6


def test_loss_gap_is_squared_perturbation(x64):
    # L(b + delta) - L(b) = |delta|^2 (this loss is not halved), for a constant delta; common random numbers.
    delta = jnp.array([0.3, -0.4])
    perturbed = FlowMatching(lambda t, x, c=None: exact_velocity(t, x) + delta, data_shape=(2,))
    keys = jax.random.split(jax.random.key(5), 200)
    batch = jax.random.multivariate_normal(jax.random.key(6), MU, C, (200, 512))
    gaps = jax.vmap(lambda k, b: perturbed.loss(k, b) - model().loss(k, b))(keys, batch)
    assert abs(float(gaps.mean()) - float(delta @ delta)) < 4 * float(gaps.std()) / np.sqrt(len(gaps))


def test_linear_interpolant_endpoints():
    itp = LinearInterpolant()
    x0, x1 = jnp.ones(3), 2 * jnp.ones(3)
    np.testing.assert_allclose(itp.interpolate(0.0, x0, x1), x0)
    np.testing.assert_allclose(itp.interpolate(1.0, x0, x1), x1)
    np.testing.assert_allclose(itp.velocity_target(0.3, x0, x1), x1 - x0)


def test_sampler_swap_and_no_recompilation():
    m = model(sampler=Euler(num_steps=10))
    sol = m.solve(jax.random.key(0), 8, save_trajectory=True)
    assert sol.ys.shape == (11, 8, 2) and int(sol.nfe) == 10
    assert int(m.solve(jax.random.key(0), 8, sampler=Heun(num_steps=10)).nfe) == 20

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def draw(m, key):
        return m.sample(key, 8)

    for i in range(3):
        draw(m, jax.random.key(i))


def test_base_shape_mismatch_is_rejected():
    from genflow.distributions import StandardNormal

    with pytest.raises(ValueError, match="does not match"):
        FlowMatching(exact_velocity, data_shape=(2,), base=StandardNormal((3,)))


def test_conditional_model_uses_its_condition(x64):
    # Target N(c, I) given condition c, base N(0, I): S_t = (1-t)^2 + t^2, K_t = 2t - 1, b = c + K_t/S_t (x - t c).
    # The endpoint map is x0 -> c + x0, and the exact log-density is that of N(c, I).
    def vel(t, x, c):
        S = (1 - t) ** 2 + t**2
        return c + (-(1 - t) + t) / S * (x - t * c)

    m = FlowMatching(vel, data_shape=(2,), likelihood_solver=RK4(num_steps=60))
    conds = jnp.array([[3.0, 0.0], [-3.0, 1.0]])
    x = m.sample(jax.random.key(0), 2, cond=conds, x0=jnp.zeros((2, 2)))
    np.testing.assert_allclose(x, conds, atol=1e-6)
    pts = conds + 0.5
    want = jax.scipy.stats.multivariate_normal.logpdf(pts, conds, jnp.eye(2))
    np.testing.assert_allclose(m.log_prob(pts, cond=conds), want, atol=1e-6)
    est = m.log_prob(pts, cond=conds, key=jax.random.key(1), divergence=Hutchinson())
    assert est.shape == (2,) and np.all(np.isfinite(np.asarray(est)))
