"""Solvers against closed forms: convergence orders, OU moments, divergence and the change of variables."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.solvers import (
    RK4,
    DiffraxODE,
    DiffraxSDE,
    Euler,
    EulerMaruyama,
    Heun,
    Hutchinson,
    Midpoint,
    StochasticHeun,
    divergence_exact,
    divergence_hutchinson,
    ode_log_prob,
)

A = np.array([[-1.0, 2.0], [-2.0, -0.5]])  # numpy, so it follows the x64 setting of each test


def _linear(t, y):
    return (A * (1.0 + 0.5 * jnp.sin(t))) @ y


def _linear_exact(y0, t):
    # d/dt y = (1 + sin(t)/2) A y  =>  y(t) = expm(A (t - cos(t)/2 + 1/2)) y0
    return jax.scipy.linalg.expm(A * (t - 0.5 * jnp.cos(t) + 0.5)) @ y0


@pytest.mark.parametrize(("cls", "order"), [(Euler, 1), (Midpoint, 2), (Heun, 2), (RK4, 4)])
def test_convergence_order(x64, cls, order):
    y0 = jnp.array([1.0, 0.5])
    exact = _linear_exact(y0, 1.0)
    steps = np.array([8, 16, 32, 64])
    errs = [float(jnp.linalg.norm(cls(num_steps=int(n)).solve(_linear, y0, 0.0, 1.0).y - exact)) for n in steps]
    slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.25, (errs, slope)


def test_backward_and_pytree_state(x64):
    y0 = jnp.array([1.0, 0.5])
    y1 = _linear_exact(y0, 1.0)
    sol = RK4(num_steps=400).solve(lambda t, s: {"a": _linear(t, s["a"])}, {"a": y1}, 1.0, 0.0)
    np.testing.assert_allclose(sol.y["a"], y0, rtol=1e-7)


def test_trajectory_and_nfe():
    sol = Heun(num_steps=10).solve(lambda t, y: -y, jnp.ones((5, 2)), save_trajectory=True)
    assert sol.ys.shape == (11, 5, 2)
    assert int(sol.nfe) == 20
    np.testing.assert_allclose(sol.ys[0], 1.0)
    np.testing.assert_allclose(sol.ys[-1], sol.y)


def test_diffrax_matches_closed_form(x64):
    y0 = jnp.array([1.0, 0.5])
    sol = DiffraxODE(diffrax.Tsit5(), rtol=1e-10, atol=1e-10).solve(_linear, y0, 0.0, 1.0)
    np.testing.assert_allclose(sol.y, _linear_exact(y0, 1.0), rtol=1e-8)
    assert int(sol.nfe) > 0


def test_diffrax_rejects_a_solver_name():
    with pytest.raises(ValueError, match="allowed"):
        DiffraxODE("rk45")


@pytest.mark.parametrize("cls", [EulerMaruyama, StochasticHeun])
def test_ou_process_moments(x64, cls):
    # dX = -theta X dt + s dW from X0 = 2:  E X_1 = 2 e^{-theta},  Var X_1 = s^2 (1 - e^{-2 theta}) / (2 theta).
    theta, s, n = 1.5, 0.7, 40000
    solver = cls(num_steps=200)
    sol = solver.solve(lambda t, y: -theta * y, lambda t, y: s, jnp.full((n,), 2.0), key=jax.random.key(0))
    mean, var = 2 * np.exp(-theta), s**2 * (1 - np.exp(-2 * theta)) / (2 * theta)
    se_mean, se_var = np.sqrt(var / n), var * np.sqrt(2 / n)
    assert abs(float(sol.y.mean()) - mean) < 4 * se_mean + 5e-3
    assert abs(float(sol.y.var()) - var) < 4 * se_var + 5e-3


def test_sde_same_key_same_path():
    em = EulerMaruyama(num_steps=10)
    run = lambda k: em.solve(lambda t, y: -y, lambda t, y: 1.0, jnp.zeros(3), key=k).y
    np.testing.assert_array_equal(run(jax.random.key(1)), run(jax.random.key(1)))
    assert not np.allclose(run(jax.random.key(1)), run(jax.random.key(2)))


def test_divergence_exact_and_hutchinson_unbiased(x64):
    M = jax.random.normal(jax.random.key(0), (4, 4))
    f = lambda t, x: M @ jnp.tanh(x) + t
    x = jnp.array([0.3, -0.2, 0.5, 1.0])
    exact = divergence_exact(f, 0.1, x)
    np.testing.assert_allclose(exact, jnp.sum(jnp.diag(M) * (1 - jnp.tanh(x) ** 2)), rtol=1e-12)
    probes = jax.random.rademacher(jax.random.key(1), (20000, 4), dtype=x.dtype)
    est = jax.vmap(lambda e: divergence_hutchinson(f, 0.1, x, e))(probes)
    assert abs(float(est.mean()) - float(exact)) < 4 * float(est.std()) / np.sqrt(len(est))


def test_ode_log_prob_linear_flow(x64):
    # f(t, x) = B x maps N(0, I) at t=0 to N(0, e^B e^B^T) at t=1; check the closed-form log-density.
    B = jnp.array([[0.3, 0.4], [-0.1, -0.2]])
    f = lambda t, x: B @ x
    base = lambda z: -0.5 * jnp.sum(z**2) - jnp.log(2 * jnp.pi)
    x = jax.random.normal(jax.random.key(0), (7, 2))
    logp, prior, nfe = ode_log_prob(f, base, x, RK4(num_steps=40))
    cov = jax.scipy.linalg.expm(B) @ jax.scipy.linalg.expm(B).T
    want = jax.scipy.stats.multivariate_normal.logpdf(x, jnp.zeros(2), cov)
    np.testing.assert_allclose(logp, want, atol=1e-7)
    assert int(nfe) == 160
    logp_h, _, _ = ode_log_prob(f, base, x, RK4(num_steps=40), divergence=Hutchinson(), key=jax.random.key(3))
    # For a linear field the probe estimate is exact only in expectation; the prior term is shared.
    assert np.all(np.isfinite(np.asarray(logp_h)))
    with pytest.raises(ValueError, match="needs a key"):
        ode_log_prob(f, base, x, RK4(num_steps=4), divergence=Hutchinson())
    with pytest.raises(ValueError, match="divergence='hutchinson' is invalid"):
        ode_log_prob(f, base, x, RK4(num_steps=4), divergence="hutchinson")


def test_no_recompilation():
    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def run(y):
        return Heun(num_steps=20).solve(lambda t, z: -z, y).y

    for i in range(3):
        run(jnp.full((4, 2), float(i)))


def test_diffrax_fixed_initial_step_integrates_backwards():
    sol = DiffraxODE(diffrax.Tsit5(), dt0=0.01).solve(lambda t, y: -y, jnp.ones(2), 1.0, 0.0)
    np.testing.assert_allclose(sol.y, np.e, rtol=1e-4)


@pytest.mark.parametrize(
    "solver",
    [
        DiffraxSDE(diffrax.Euler(), num_steps=100, brownian_tol=1e-3),
        DiffraxSDE(diffrax.ShARK(), num_steps=20, rtol=1e-3, atol=1e-3, brownian_tol=1e-3),
    ],
    ids=["euler-fixed", "shark-adaptive"],
)
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "backward"])
def test_diffrax_sde_ou_moments(solver, backward):
    # Forward: dX = -theta X dt + s dW on [0, 1] from 2.  Backward (t from 1 to 0) runs s = -t, where the same
    # equation reads dX = +theta X ds + s dW:  mean 2 e^{theta}, variance s^2 (e^{2 theta} - 1) / (2 theta).
    theta, s, n = 1.5, 0.7, 2000
    t0, t1 = (1.0, 0.0) if backward else (0.0, 1.0)
    keys = jax.random.split(jax.random.key(0), n)
    one = lambda k: solver.solve(lambda t, y: -theta * y, lambda t, y: s, jnp.full((1,), 2.0), t0, t1, key=k).y[0]
    y = jax.jit(jax.vmap(one))(keys)
    e = np.exp(theta if backward else -theta)
    mean = 2 * e
    var = s**2 * abs(e**2 - 1) / (2 * theta)
    assert abs(float(y.mean()) - mean) < 4 * np.sqrt(var / n) + 1e-2
    assert abs(float(y.var()) - var) < 4 * var * np.sqrt(2 / n) + 1e-2


def test_diffrax_sde_validation_and_nfe():
    with pytest.raises(ValueError, match="allowed"):
        DiffraxSDE("milstein")
    with pytest.raises(ValueError, match="no error estimate"):
        DiffraxSDE(diffrax.Euler(), rtol=1e-3, atol=1e-3)
    sol = DiffraxSDE(diffrax.Heun(), num_steps=10).solve(
        lambda t, y: -y, lambda t, y: 0.1, jnp.ones(2), key=jax.random.key(0)
    )
    assert int(sol.nfe) == 20


@pytest.mark.parametrize("solver_cls", [Euler, Heun, RK4])
def test_unrolled_step_loop_gives_the_same_solution(solver_cls):
    f = lambda t, y: -y * jnp.cos(t)
    y0 = jnp.array([1.0, -2.0])
    rolled = solver_cls(num_steps=7).solve(f, y0, 0.0, 1.0)
    unrolled = solver_cls(num_steps=7, unroll=True).solve(f, y0, 0.0, 1.0)
    np.testing.assert_allclose(unrolled.y, rolled.y, rtol=1e-6)
    drift, noise = (lambda t, y: -y), (lambda t, y: 0.5)
    a = EulerMaruyama(num_steps=7).solve(drift, noise, y0, 0.0, 1.0, key=jax.random.key(0))
    b = EulerMaruyama(num_steps=7, unroll=True).solve(drift, noise, y0, 0.0, 1.0, key=jax.random.key(0))
    np.testing.assert_allclose(a.y, b.y, rtol=1e-6)
