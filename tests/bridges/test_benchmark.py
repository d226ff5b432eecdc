"""EOT-benchmark-style pairs: ground truth against independent computations, and the exact LightSB (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.bridges import EOTBenchmark, cbw_uvp, drift_error, eot_benchmark_data
from genflow.metrics import bw_uvp


def test_generation_is_deterministic_and_eps_independent(x64):
    a, b = EOTBenchmark.generate(4, 1.0, seed=3), EOTBenchmark.generate(4, 1.0, seed=3)
    c = EOTBenchmark.generate(4, 0.1, seed=3)
    for x, y in ((a.means, b.means), (a.covs, b.covs), (a.source.means, b.source.means), (a.means, c.means)):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(EOTBenchmark.generate(4, 1.0, seed=4).means, a.means)


def test_plan_is_the_normalised_product_of_heat_kernel_and_potential(x64):
    # pi*(y | x) ∝ N(y | x, eps I) phi(y) in 1D, by quadrature, against the closed-form mixture moments.
    bench = EOTBenchmark.generate(1, 0.7, seed=0)
    y = jnp.linspace(-25, 25, 200_001)
    phi = sum(
        w * jnp.exp(-0.5 * (y - m[0]) ** 2 / c[0, 0]) / jnp.sqrt(2 * jnp.pi * c[0, 0])
        for w, m, c in zip(bench.weights, bench.means, bench.covs, strict=True)
    )
    for x in (-2.0, 0.3, 1.5):
        dens = jnp.exp(-0.5 * (y - x) ** 2 / bench.eps) * phi
        z = jnp.trapezoid(dens, y)
        mean = jnp.trapezoid(y * dens, y) / z
        var = jnp.trapezoid((y - mean) ** 2 * dens, y) / z
        m, c = bench.conditional_moments(jnp.array([[x]]))
        np.testing.assert_allclose(m[0, 0], mean, rtol=1e-8)
        np.testing.assert_allclose(c[0, 0, 0], var, rtol=1e-8)


@pytest.mark.parametrize(
    "eps", [pytest.param(0.1, marks=pytest.mark.slow), 1.0, pytest.param(10.0, marks=pytest.mark.slow)]
)
def test_constructed_lightsb_is_the_benchmark(x64, eps):
    bench = EOTBenchmark.generate(3, eps, seed=1)
    sb = bench.to_lightsb()
    x = bench.source.sample(jax.random.key(0), 7)
    for got, want in zip(sb.conditional_params(x), bench.conditional_params(x), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-9)
    for t in (0.0, 0.5, 0.9):
        np.testing.assert_allclose(sb.drift(t, x), bench.drift(t, x), atol=1e-8 * max(1.0, eps))


def test_cbw_uvp_of_the_exact_lightsb_is_about_zero_and_of_a_wrong_model_is_not(x64):
    bench = EOTBenchmark.generate(4, 1.0, seed=2)
    sb = bench.to_lightsb()
    key = jax.random.key(1)
    var = float(jnp.trace(bench.target_moments(jax.random.key(2), 20_000)[1]))
    exact = float(cbw_uvp(sb.sample_conditional, bench, key, num_inputs=20, num_samples=4000, target_var=var))
    # Sampling noise alone: E BW ~ (tr C)(1 + d/4) / (2n) per input, i.e. ~0.1% of Var/2 at n = 4000.
    assert exact < 0.2, exact
    wrong = EOTBenchmark.generate(4, 2.0, seed=2).to_lightsb()
    off = float(cbw_uvp(wrong.sample_conditional, bench, key, num_inputs=20, num_samples=4000, target_var=var))
    assert off > 10 * max(exact, 0.05), (exact, off)
    # BW-UVP of the target marginal from the exact model.
    y = sb.sample(jax.random.key(3), 50_000)
    mean, cov = bench.target_moments(jax.random.key(4), 50_000)
    assert float(bw_uvp(y, mean, cov)) < 0.2


@pytest.mark.slow
def test_drift_error_is_zero_for_the_truth_and_positive_otherwise(x64):
    bench = EOTBenchmark.generate(2, 0.5, seed=0)
    key = jax.random.key(0)
    assert float(drift_error(bench.drift, bench, key, num=500, num_times=5)) == 0.0
    np.testing.assert_allclose(drift_error(bench.to_lightsb().drift, bench, key, num=500, num_times=5), 0.0, atol=1e-12)
    assert float(drift_error(lambda t, x: jnp.zeros_like(x), bench, key, num=500, num_times=5)) > 0.1


def test_benchmark_pairs_are_independent_or_drawn_from_the_plan():
    bench = EOTBenchmark.generate(2, 1.0, 0)
    key = jax.random.key(3)
    x0, x1 = bench.sample_plan(key, 64)
    coupled = eot_benchmark_data(2, 1.0, 0, coupled=True).sample(key, 64)
    np.testing.assert_array_equal(coupled["x0"], x0)
    np.testing.assert_array_equal(coupled["x"], x1)
    # Independent batches: the source half is P0's own sample, not the plan's first marginal draw.
    free = eot_benchmark_data(2, 1.0, 0).sample(key, 64)
    k0, k1 = jax.random.split(key)
    np.testing.assert_array_equal(free["x0"], bench.source.sample(k0, 64))
    np.testing.assert_array_equal(free["x"], bench.sample_target(k1, 64))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="dim=0 is invalid"):
        EOTBenchmark.generate(0, 1.0)
    with pytest.raises(ValueError, match="eps=0 is invalid"):
        EOTBenchmark.generate(2, 0)
