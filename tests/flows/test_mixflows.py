"""MixFlows (Xu, Chen, Campbell, "MixFlows", ICML 2023; float64): the Hamiltonian map is exactly invertible with the
stated log-det, round trips T^{-N} T^N stay below 1e-10, q_N integrates to one (Monte Carlo, within standard errors),
the orbit and single-state ELBO estimators agree, and the ELBO bounds log Z."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.distributions import Banana
from genflow.flows import MixFlow, UncorrectedHamiltonianMap, laplace_cdf, laplace_icdf, tune_mixflow

from ._helpers import check_bijection

pytestmark = pytest.mark.usefixtures("x64_module")

TARGET = Banana(b=0.1, sigma=2.0)  # normalised: log Z = 0


def _mixflow(num_maps=20, step_size=0.2, num_leapfrog=5):
    return MixFlow(UncorrectedHamiltonianMap(TARGET, 2, step_size, num_leapfrog), num_maps=num_maps)


def test_laplace_cdf_and_its_inverse():
    r = jnp.linspace(-15.0, 15.0, 301)
    np.testing.assert_allclose(laplace_icdf(laplace_cdf(r)), r, atol=1e-9)
    np.testing.assert_allclose(jax.vmap(jax.grad(laplace_cdf))(r), 0.5 * jnp.exp(-jnp.abs(r)), rtol=1e-12)


def test_map_round_trip_log_det_and_long_orbits():
    mf = _mixflow()
    s = mf.sample_reference(jax.random.key(0), 16)
    check_bijection(mf.map, s)  # log|det| = sum log m(rho) - log m(rho') against the autodiff Jacobian
    n = 50

    @jax.jit
    def there_and_back(s):
        fwd = jax.lax.fori_loop(0, n, lambda i, v: jax.vmap(mf.map.transform)(v), s)
        return fwd, jax.lax.fori_loop(0, n, lambda i, v: jax.vmap(mf.map.inverse)(v), fwd)

    fwd, back = there_and_back(s)
    np.testing.assert_allclose(back, s, atol=1e-10)
    assert np.all((np.asarray(fwd[:, -1]) >= 0) & (np.asarray(fwd[:, -1]) < 1))
    assert np.max(np.abs(np.asarray(fwd - s))) > 1.0  # the orbit went somewhere


def test_mixture_density_integrates_to_one():
    mf = _mixflow()
    n = 20000
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    # A proposal wider than q_N in x and in rho: importance sampling then estimates the total mass of q_N.
    x = 3.0 * jax.random.normal(k1, (n, 2))
    rho = 2.0 * jax.random.laplace(k2, (n, 2))
    s = jnp.concatenate([x, rho, jax.random.uniform(k3, (n, 1))], axis=-1)
    log_r = jnp.sum(-0.5 * (x / 3) ** 2 - math.log(3 * math.sqrt(2 * math.pi)), -1)
    log_r = log_r + jnp.sum(-jnp.abs(rho) / 2 - math.log(4.0), -1)
    w = np.exp(np.asarray(mf.log_prob_extended(s) - log_r))
    se = w.std() / math.sqrt(n)
    assert abs(w.mean() - 1) < 4 * se, (w.mean(), se)
    assert se < 0.05


def test_two_unbiased_elbo_estimators_agree_and_bound_log_z():
    mf = _mixflow()
    n = 2000
    orbit = np.asarray(mf.elbo_orbit(jax.random.key(2), n))
    single = np.asarray(mf.elbo_single(jax.random.key(3), n))
    se = math.sqrt(orbit.var() / n + single.var() / n)
    assert abs(orbit.mean() - single.mean()) < 4 * se, (orbit.mean(), single.mean(), se)
    assert orbit.mean() < 4 * orbit.std() / math.sqrt(n)  # ELBO <= log Z = 0
    assert orbit.std() < single.std()  # averaging over the orbit reduces the variance


@pytest.mark.slow  # three ELBO evaluations, sampling and the loss: separate compiles
def test_tuning_picks_the_best_elbo_and_samples_have_the_target_shape():
    best, table = tune_mixflow(_mixflow(num_maps=10), jax.random.key(4), [0.02, 0.1, 0.3], [3], num_samples=128)
    assert len(table) == 3
    top = max(table, key=lambda r: r["elbo"])
    assert math.isclose(float(jnp.exp(best.map.log_step_size)), top["step_size"], rel_tol=1e-12)
    assert best.map.num_leapfrog == top["num_leapfrog"]
    x = best.sample(jax.random.key(5), 64)
    assert x.shape == (64, 2) and np.all(np.isfinite(np.asarray(x)))
    loss = eqx.filter_jit(best.loss)(jax.random.key(6), jnp.zeros((16, 2)))
    assert np.isfinite(float(loss))


def test_elbo_curve_from_one_orbit_equals_separate_flows():
    """An orbit of N maps holds every shorter one: column n of the curve is q_n's own orbit ELBO, same key."""
    mf = _mixflow(num_maps=7)
    key, ns = jax.random.key(7), (2, 7)
    curve = np.asarray(mf.elbo_orbit_curve(key, 16, ns))
    separate = np.stack([np.asarray(MixFlow(mf.map, n).elbo_orbit(key, 16)) for n in ns], axis=1)
    assert curve.shape == (16, 2) and np.ptp(separate, axis=1).max() > 1e-3  # the columns differ
    np.testing.assert_allclose(curve, separate, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="num_maps=7"):
        mf.elbo_orbit_curve(key, 16, (8,))


def test_refresh_stays_finite_when_the_laplace_cdf_saturates():
    """F(40) rounds to 1 in float64 and xi(x, u) = 0 at 2x + u = -pi/2, so the inverse refresh meets p = 0 exactly:
    the momentum must come out finite (it was -inf, which made q_N NaN far in the tails)."""
    assert np.isfinite(np.asarray(laplace_icdf(jnp.array([0.0, 1.0])))).all()
    mf = _mixflow(num_maps=3)
    s = jnp.array([-math.pi / 4, 0.3, 40.0, 0.5, math.pi / 16])  # u = 0 after undoing the shift
    assert float(mf.map._xi(s[0], 0.0)) == 0.0 and float(laplace_cdf(s[2])) == 1.0
    back, ld = mf.map.inverse_and_log_det(s)
    assert np.isfinite(np.asarray(back)).all() and np.isfinite(float(ld))
    assert np.isfinite(np.asarray(mf.log_prob_extended(s[None]))).all()
