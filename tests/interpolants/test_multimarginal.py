"""Multimarginal interpolants against the Gaussian oracle (Albergo, Boffi, Lindsey,
Vanden-Eijnden, "Multimarginal generative modeling with stochastic interpolants", ICLR 2024).

With independent x_k ~ N(mu_k, C_k), x(a) = sum_k a_k x_k ~ N(m(a), S(a)) with m = sum_k a_k mu_k and
S = sum_k a_k^2 C_k, and the exact fields are g_k(a, x) = mu_k + a_k C_k S^{-1} (x - m). Marginal 0 is N(0, I).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from genflow.distributions import Gaussian, GaussianMixture
from genflow.interpolants._multimarginal import (
    EdgePath,
    FourierPath,
    MultimarginalInterpolant,
    optimize_path,
)
from genflow.metrics import bures_wasserstein_sq
from genflow.nn import multimarginal_net
from genflow.solvers import RK4
from genflow.train import Trainer

MUS = np.array([[0.0, 0.0], [-1.5, 0.5], [1.5, -0.5]])
COVS = np.array([np.eye(2), [[0.3, 0.1], [0.1, 0.2]], [[0.5, -0.2], [-0.2, 0.4]]])


def exact_fields(mus, covs):
    mus, covs = jnp.asarray(mus), jnp.asarray(covs)

    def g(a, x):
        S = jnp.einsum("k,kij->ij", a**2, covs)
        r = jnp.linalg.solve(S, x - a @ mus)
        return mus + a[:, None] * jnp.einsum("kij,j->ki", covs, r)

    return g


def gaussian_model(mus=MUS, covs=COVS, g=None, **kwargs):
    marginals = [Gaussian(mu, c) for mu, c in zip(mus[1:], covs[1:], strict=True)]
    return MultimarginalInterpolant(exact_fields(mus, covs) if g is None else g, marginals, (2,), **kwargs)


def exact_cost(path, mus, covs, num_times=4000):
    """C[a] = ∫ |m'|^2 + tr(A S^{-1} A^T) dt with A = sum_k a_k a_k' C_k: E|v|^2 under N(m, S), v affine in x."""

    def at(t):
        a, da = path.value_and_derivative(t)
        S = jnp.einsum("k,kij->ij", a**2, covs)
        A = jnp.einsum("k,kij->ij", a * da, covs)
        dm = da @ mus
        return dm @ dm + jnp.trace(A @ jnp.linalg.solve(S, A.T))

    return float(jnp.mean(jax.vmap(at)((jnp.arange(num_times) + 0.5) / num_times)))


def test_exact_fields_identity_and_score(x64):
    model = gaussian_model()
    ka, kx = jax.random.split(jax.random.key(0))
    a = jax.random.dirichlet(ka, jnp.ones(3), (64,))
    x = 2 * jax.random.normal(kx, (64, 2))
    g = jax.vmap(model.fields)(a, x)
    np.testing.assert_allclose(jnp.einsum("nk,nkd->nd", a, g), x, atol=1e-10)
    m = a @ MUS
    S = jnp.einsum("nk,kij->nij", a**2, COVS)
    expected = jax.vmap(lambda mi, Si, xi: Gaussian(mi, Si).score(xi))(m, S, x)
    np.testing.assert_allclose(jax.vmap(model.score)(a, x), expected, rtol=1e-10, atol=1e-10)


def test_loss_gap_equals_squared_perturbation(x64):
    """L(g + delta) - L(g) = sum_k |delta_k|^2 for a constant delta (the cross term has mean zero at the exact g)."""
    delta = jnp.array([[0.3, -0.2], [0.1, 0.4], [-0.25, 0.05]])
    exact = exact_fields(MUS, COVS)
    # Part of a on the edges: the identity holds for any law of a, so both branches of sample_simplex are covered.
    model = gaussian_model(edge_fraction=0.3)
    perturbed = gaussian_model(g=lambda a, x: exact(a, x) + delta, edge_fraction=0.3)
    keys = jax.random.split(jax.random.key(1), 16)
    # Common random numbers: both losses see the same samples, so only the cross term is noise.
    gaps = jax.vmap(lambda k: perturbed.loss(k, jnp.zeros((2000, 2))) - model.loss(k, jnp.zeros((2000, 2))))(keys)
    se = float(jnp.std(gaps) / jnp.sqrt(len(gaps)))
    assert abs(float(jnp.mean(gaps)) - float(jnp.sum(delta**2))) < 4 * se
    assert 0 < se < 0.02


def test_simplex_samples():
    model = gaussian_model(edge_fraction=0.5)
    a = model.sample_simplex(jax.random.key(13), 4000)
    assert a.shape == (4000, 3) and jnp.all(a >= 0)
    np.testing.assert_allclose(a.sum(-1), 1, atol=1e-6)
    on_edge = jnp.sum(a > 0, axis=-1) <= 2
    assert abs(float(on_edge.mean()) - 0.5) < 4 * np.sqrt(0.25 / 4000)
    # Uniform over the unordered pairs of vertices: each vertex is missing from a third of the edge points.
    missing = np.asarray(jnp.mean(a[on_edge] == 0, axis=0))
    np.testing.assert_allclose(missing, 1 / 3, atol=0.05)


def test_loss_uses_given_samples(x64):
    model = gaussian_model()
    xs = model.sample_marginals(jax.random.key(2), 100)
    a = model.sample_simplex(jax.random.split(jax.random.key(3))[1], 100)
    g = jax.vmap(model.fields)(a, jnp.einsum("nk,knd->nd", a, xs))
    by_hand = jnp.mean(jnp.sum(g**2 - 2 * jnp.swapaxes(xs, 0, 1) * g, axis=(1, 2)))
    np.testing.assert_allclose(model.loss(jax.random.key(3), tuple(xs)), by_hand, rtol=1e-12)
    with pytest.raises(ValueError, match="needs 3 arrays"):
        model.loss(jax.random.key(3), tuple(xs[:2]))


def test_edge_transport_is_the_exact_affine_map(x64):
    """The exact field is affine in x, so the flow map is affine: its image of mu_i and its Jacobian J give the
    pushforward N(J mu_i + b, J C_i J^T) exactly, which must be N(mu_j, C_j) up to the RK4 error."""
    model = gaussian_model(sampler=RK4(num_steps=50))
    for i, j in [(1, 2), (2, 0), (0, 1)]:
        flow = lambda x: model.transport(x[None], i, j).y[0]
        J = jax.jacfwd(flow)(jnp.asarray(MUS[i]))
        np.testing.assert_allclose(flow(jnp.asarray(MUS[i])), MUS[j], atol=1e-7)
        np.testing.assert_allclose(J @ COVS[i] @ J.T, COVS[j], atol=1e-7)
    # And on samples: the sample mean of the images is within 4 standard errors of mu_j.
    n = 4000
    y = model.transport(model.distributions[1].sample(jax.random.key(4), n), 1, 2).y
    assert np.all(np.abs(np.asarray(y.mean(0)) - MUS[2]) < 4 * np.sqrt(np.diag(COVS[2]) / n))


def test_sample_and_all_pairs(x64):
    model = gaussian_model()
    x = model.sample(jax.random.key(5), 4000, marginal=2)
    se = np.sqrt(np.diag(COVS[2]) / 4000)
    assert np.all(np.abs(np.asarray(x.mean(0)) - MUS[2]) < 4 * se)
    xs = model.sample_marginals(jax.random.key(6), 8)
    pairs = model.all_pairs(tuple(xs))
    assert pairs.shape == (3, 3, 8, 2)
    np.testing.assert_array_equal(pairs[1, 1], xs[1])
    np.testing.assert_allclose(pairs[1, 2], model.transport(xs[1], 1, 2).y)


def test_transport_compiles_once_for_all_pairs():
    traces = []

    def counting_field(a, x):
        traces.append(None)  # runs only while tracing
        return exact_fields(MUS, COVS)(a, x)

    model = gaussian_model(g=counting_field)
    model.transport(jnp.zeros((16, 2)), 1, 2)
    first = len(traces)
    for seed, (i, j) in enumerate([(0, 1), (2, 1), (1, 0), (1, 2)]):
        model.transport(jax.random.normal(jax.random.key(seed), (16, 2)), i, j)
    assert len(traces) == first


def test_paths_stay_in_the_simplex_with_exact_endpoints(x64):
    path = FourierPath(1, 3, 4, num_modes=3)
    path = eqx.tree_at(lambda p: p.theta, path, 2 * jax.random.normal(jax.random.key(7), path.theta.shape))
    a = jax.vmap(path)(jnp.linspace(0, 1, 101))
    assert jnp.all(a >= 0) and np.allclose(a.sum(-1), 1, atol=1e-14)
    np.testing.assert_array_equal(a[0], [0, 1, 0, 0])
    np.testing.assert_array_equal(a[-1], [0, 0, 0, 1])
    np.testing.assert_allclose(path.derivative(0.3), jax.jacfwd(path)(0.3), rtol=1e-12)
    np.testing.assert_allclose(EdgePath(0, 2, 3).derivative(0.7), [-1, 0, 1])
    with pytest.raises(ValueError, match="two different vertices"):
        EdgePath(1, 1, 3)
    with pytest.raises(ValueError, match="two different vertices"):
        FourierPath(0, 3, 3)
    with pytest.raises(ValueError, match="transport was asked"):
        gaussian_model().transport(jnp.zeros((2, 2)), 1, 2, path=EdgePath(2, 1, 3))


def test_transport_cost_estimate_matches_closed_form(x64):
    model, path = gaussian_model(), EdgePath(1, 2, 3)
    keys = jax.random.split(jax.random.key(8), 8)
    estimates = jax.vmap(lambda k: model.transport_cost(path, model.sample_marginals(k, 1000), num_times=64))(keys)
    se = float(jnp.std(estimates) / jnp.sqrt(len(keys)))
    assert abs(float(jnp.mean(estimates)) - exact_cost(path, MUS, COVS)) < 4 * se + 1e-4  # + midpoint-rule error


def test_path_optimisation_lowers_the_transport_cost(x64):
    """A narrow marginal to a wide one: the straight edge is not constant speed in W2; the optimised path gets
    closer to the Benamou-Brenier bound W2^2 (a lower bound for every path)."""
    mus = np.array([[0.0, 0.0], [-0.3, 0.0], [0.3, 0.1]])
    covs = np.array([np.eye(2), [[0.04, 0.01], [0.01, 0.03]], [[1.0, 0.2], [0.2, 0.8]]])
    model = gaussian_model(mus, covs)
    edge = exact_cost(EdgePath(1, 2, 3), mus, covs)
    steps = 300
    opt = optax.adam(optax.cosine_decay_schedule(0.05, steps))
    path, costs = optimize_path(model, FourierPath(1, 2, 3, num_modes=2), jax.random.key(9), steps, optimizer=opt)
    assert costs.shape == (steps,) and bool(jnp.all(jnp.isfinite(costs)))
    optimised = exact_cost(path, mus, covs)
    w2_sq = float(bures_wasserstein_sq(mus[1], covs[1], mus[2], covs[2]))
    assert w2_sq <= optimised < edge - 0.03, (w2_sq, optimised, edge)
    a = jax.vmap(path)(jnp.linspace(0, 1, 11))
    np.testing.assert_array_equal(a[0], [0, 1, 0])
    np.testing.assert_array_equal(a[-1], [0, 0, 1])
    assert jnp.all(a >= 0)


@pytest.mark.slow  # a training run (~13 s); the loss-gap identity is checked exactly in the fast suite
def test_training_closes_the_gap_to_the_exact_fields():
    """Loss gap L(g_hat) - L(g) = sum_k E|g_hat_k - g_k|^2: a few hundred steps must shrink it well below its
    initial value; the marginals' parameters are frozen."""
    marginals = [Gaussian(mu, c) for mu, c in zip(MUS[1:], COVS[1:], strict=True)]
    net = multimarginal_net(2, 3, width=64, depth=2, key=jax.random.key(10))
    model = MultimarginalInterpolant(net, marginals, (2,))
    exact = MultimarginalInterpolant(exact_fields(MUS, COVS), marginals, (2,))
    keys = jax.random.split(jax.random.key(11), 4)

    def gap(m):
        batch = jnp.zeros((4000, 2))
        return float(jnp.mean(jnp.stack([m.loss(k, batch) - exact.loss(k, batch) for k in keys])))

    trainer = Trainer(optax.adam(3e-3), num_steps=300, batch_size=256, steps_per_call=300, progress=False)
    state = trainer.fit(model, model.base, key=jax.random.key(12))
    before, after = gap(model), gap(state.model)
    assert np.isfinite(after) and after < 0.03 * before, (before, after)
    np.testing.assert_array_equal(state.model.marginals[0].cov, marginals[0].cov)


def test_bad_arguments_are_rejected():
    g = exact_fields(MUS, COVS)
    with pytest.raises(ValueError, match="dirichlet_alpha"):
        MultimarginalInterpolant(g, [Gaussian(MUS[1], COVS[1])], (2,), dirichlet_alpha=0.0)
    with pytest.raises(ValueError, match="event_shape"):
        MultimarginalInterpolant(g, [GaussianMixture([1.0], np.zeros((1, 3)), np.eye(3)[None])], (2,))
    with pytest.raises(ValueError, match="empty"):
        MultimarginalInterpolant(g, [], (2,))
    with pytest.raises(ValueError, match="edge_fraction"):
        MultimarginalInterpolant(g, [Gaussian(MUS[1], COVS[1])], (2,), edge_fraction=1.5)
