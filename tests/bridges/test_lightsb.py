"""LightSB: closed forms against the Gaussian bridge and quadrature, samplers, training (float64 where exact)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genflow.bridges import (
    ExactConditional,
    ExactPaths,
    LightSB,
    LightSBKL,
    LightSBMatching,
    MixturePotential,
)
from genflow.data import Paired
from genflow.distributions import Gaussian
from genflow.solvers import EulerMaruyama
from genflow.train import Trainer

from ._gaussian import gaussian_bridge, spd


def _random_lightsb(diagonal, d=3, k=4, eps=0.5, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    s = np.stack([spd(rng, d, 0.5) for _ in range(k)])
    pot = MixturePotential.from_params(rng.standard_normal(k), 2 * rng.standard_normal((k, d)), s, diagonal=diagonal)
    return LightSB(pot, eps=eps, **kwargs)


@pytest.mark.parametrize("eps", [pytest.param(0.1, marks=pytest.mark.slow), 1.0])
def test_single_full_component_is_the_gaussian_bridge(x64, eps):
    gb = gaussian_bridge(eps=eps)
    sb = LightSB.from_gaussian_bridge(gb)
    x0 = jax.random.normal(jax.random.key(0), (5, 3))
    log_w, means, covs = sb.conditional_params(x0)
    mean_gb, cov_gb = gb.conditional(x0)
    np.testing.assert_allclose(log_w, 0.0, atol=1e-14)
    np.testing.assert_allclose(means[:, 0], mean_gb, atol=1e-11)
    np.testing.assert_allclose(covs[0], cov_gb, atol=1e-11)
    for t in (0.0, 0.3, 0.9):
        np.testing.assert_allclose(sb.drift(t, x0), gb.drift(t, x0), atol=1e-9)


@pytest.mark.parametrize("diagonal", [pytest.param(True, marks=pytest.mark.slow), False])
def test_posterior_at_time_zero_is_the_conditional_plan(x64, diagonal):
    sb = _random_lightsb(diagonal)
    x0 = jax.random.normal(jax.random.key(1), (6, 3))
    log_w, means, a, u = sb.posterior(0.0, x0)
    log_w0, means0, covs0 = sb.conditional_params(x0)
    np.testing.assert_allclose(log_w, log_w0, atol=1e-10)
    np.testing.assert_allclose(means, means0, atol=1e-10)
    inv_a = jax.vmap(lambda ak, uk: (uk / ak) @ uk.T)(a, u) if u is not None else jax.vmap(jnp.diag)(1 / a)
    np.testing.assert_allclose(inv_a, covs0, atol=1e-10)


def test_log_c_matches_quadrature_in_1d(x64):
    # c(x0) = int exp(x0 x1 / eps) v(x1) dx1, by the trapezoid rule on a fine grid.
    pot = MixturePotential.from_params(np.log([0.2, 0.5, 0.3]), [[-1.0], [0.5], [2.0]], [[0.3], [1.0], [0.2]], True)
    sb = LightSB(pot, eps=0.8)
    x1 = jnp.linspace(-30, 30, 200_001)
    v = jnp.exp(pot.log_prob(x1[:, None], sb.eps))
    for x0 in (-1.3, 0.0, 0.7):
        c = jnp.trapezoid(jnp.exp(x0 * x1 / sb.eps) * v, x1)
        np.testing.assert_allclose(sb.log_c(jnp.array([[x0]]))[0], jnp.log(c), rtol=1e-9)


@pytest.mark.parametrize("diagonal", [pytest.param(True, marks=pytest.mark.slow), False])
def test_drift_is_eps_grad_log_h(x64, diagonal):
    # g(t, x) = eps grad log h_t(x), h_t(x) = int N(x1 | x, eps (1-t) I) exp(|x1|^2 / (2 eps)) v(x1) dx1, which is
    # a Gaussian-mixture integral done here independently with dense matrices and autodiff.
    sb = _random_lightsb(diagonal, d=2, k=3, eps=0.6)
    eps, s_mats, r, log_alpha = sb.eps, sb.net.s_matrix(), sb.net.r, sb.net.log_alpha

    def log_h(t, x):
        def one(la, rk, sk):
            prec = jnp.eye(2) * t / (eps * (1 - t)) + jnp.linalg.inv(eps * sk)
            lin = x / (eps * (1 - t)) + jnp.linalg.solve(eps * sk, rk)
            quad = 0.5 * lin @ jnp.linalg.solve(prec, lin) - 0.5 * rk @ jnp.linalg.solve(eps * sk, rk)
            return la + quad - 0.5 * jnp.linalg.slogdet(prec)[1] - 0.5 * jnp.linalg.slogdet(sk)[1]

        return jax.nn.logsumexp(jax.vmap(one)(log_alpha, r, s_mats)) - x @ x / (2 * eps * (1 - t))

    x = jax.random.normal(jax.random.key(2), (4, 2))
    for t in (0.0, 0.4, 0.8):
        want = eps * jax.vmap(jax.grad(log_h, argnums=1), in_axes=(None, 0))(t, x)
        np.testing.assert_allclose(sb.drift(t, x), want, atol=1e-9)
        if not diagonal:
            np.testing.assert_allclose((sb.posterior_mean_dense(t, x) - x) / (1 - t), want, atol=1e-9)


@pytest.mark.slow  # statistical (tens of thousands of samples)
def test_exact_paths_have_the_exact_marginals(x64):
    gb = gaussian_bridge(d=2, eps=0.5)
    sb = LightSB.from_gaussian_bridge(gb, sampler=ExactPaths(num_steps=4))
    x0 = gb.sample_plan(jax.random.key(3), 40_000)[0]
    sol = sb.solve(jax.random.key(4), 40_000, x0=x0, save_trajectory=True)
    assert sol.ys.shape == (5, 40_000, 2) and sol.nfe == 4
    for i, t in enumerate(np.asarray(sol.ts)):
        mean, cov = gb.marginal(t)
        np.testing.assert_allclose(np.mean(np.asarray(sol.ys[i]), 0), mean, atol=0.03)
        np.testing.assert_allclose(np.cov(np.asarray(sol.ys[i]).T), cov, atol=0.06)


@pytest.mark.slow  # statistical (tens of thousands of samples)
def test_exact_marginal_sampler(x64):
    gb = gaussian_bridge(d=2, eps=0.5)
    sb = LightSB.from_gaussian_bridge(gb)
    x0 = gb.sample_plan(jax.random.key(5), 50_000)[0]
    xt = sb.sample_marginal(jax.random.key(6), 0.35, x0)
    mean, cov = gb.marginal(0.35)
    np.testing.assert_allclose(np.mean(np.asarray(xt), 0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(np.asarray(xt).T), cov, atol=0.05)


def test_euler_maruyama_converges_to_the_exact_marginal(x64):
    # Weak error of Euler–Maruyama is O(h): the endpoint covariance error must fall roughly like 1/n (measured:
    # 1.1, 0.31, 0.05 for n = 4, 16, 128, i.e. about 4.5/n) down to the sampling noise (~0.01 at 50k paths).
    gb = gaussian_bridge(d=2, eps=1.0, seed=3)
    sb = LightSB.from_gaussian_bridge(gb)
    x0 = gb.sample_plan(jax.random.key(7), 50_000)[0]
    errors = []
    for n in (4, 16, 128):
        y = sb.solve(jax.random.key(8), x0.shape[0], x0=x0, sampler=EulerMaruyama(num_steps=n)).y
        errors.append(float(np.abs(np.cov(np.asarray(y).T) - np.asarray(gb.B)).max()))
    assert errors[1] < errors[0] / 2 and errors[2] < errors[1] / 3, errors
    assert errors[2] < 10.0 / 128, errors


@pytest.mark.slow  # statistical (tens of thousands of samples)
def test_exact_conditional_sampler_moments(x64):
    sb = _random_lightsb(False, d=2, k=2, eps=0.3)
    x0 = jnp.tile(jnp.array([[0.4, -0.2]]), (100_000, 1))
    x1 = ExactConditional().solve(sb, jax.random.key(9), x0).y
    log_w, means, covs = sb.conditional_params(x0[:1])
    w = np.exp(np.asarray(log_w[0]))
    m = w @ np.asarray(means[0])
    second = np.einsum("k,kij->ij", w, np.asarray(covs) + np.einsum("ki,kj->kij", means[0], means[0]))
    np.testing.assert_allclose(np.mean(np.asarray(x1), 0), m, atol=0.02)
    np.testing.assert_allclose(np.cov(np.asarray(x1).T), second - np.outer(m, m), atol=0.03)


@pytest.mark.parametrize("objective", [LightSBKL(), pytest.param(LightSBMatching(), marks=pytest.mark.slow)])
def test_training_recovers_the_gaussian_conditional_covariance(objective):
    # N(a, A) -> N(b, B), eps = 1: K = 1 with full S trained with the shared Trainer must recover
    # eps A^{-1} C within 0.05 (entrywise) and the conditional mean map within 0.1.
    gb = gaussian_bridge(d=2, eps=1.0, seed=4)
    src, tgt = Gaussian(gb.a, gb.A), Gaussian(gb.b, gb.B)
    pot = MixturePotential(2, 1, diagonal=False, s_init=1.0, init_data=tgt, key=jax.random.key(0))
    model = LightSB(pot, eps=1.0, base=src, objective=objective)
    trainer = Trainer(optax.adam(1e-2), num_steps=3000, batch_size=512, steps_per_call=1500, progress=False)
    fitted = trainer.fit(model, Paired(src, tgt), key=jax.random.key(1)).ema_model
    _, means, covs = fitted.conditional_params(jnp.stack([gb.a, gb.a + 1.0]))
    mean_gb, cov_gb = gb.conditional(jnp.stack([gb.a, gb.a + 1.0]))
    np.testing.assert_allclose(covs[0], cov_gb, atol=0.05)
    np.testing.assert_allclose(means[:, 0], mean_gb, atol=0.1)


def test_bad_arguments_raise():
    pot = MixturePotential(2, 3, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"objective='ml' is invalid: pass LightSBKL\(\) or LightSBMatching"):
        LightSB(pot, objective="ml")
    with pytest.raises(ValueError, match=r"t_max=1\.0 is invalid: must lie in \(0, 1\)"):
        LightSBMatching(t_max=1.0)
    with pytest.raises(ValueError, match="eps=-1 is invalid"):
        LightSB(pot, eps=-1)
    with pytest.raises(ValueError, match="sampler=.*ODE solvers"):
        from genflow.solvers import Euler

        LightSB(pot, sampler=Euler())
    with pytest.raises(ValueError, match="num_components=0"):
        MixturePotential(2, 0, key=jax.random.key(0))
