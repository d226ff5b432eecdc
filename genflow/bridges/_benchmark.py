"""EOT-benchmark-style pairs with a known Schrödinger bridge, and the BW-UVP / cBW-UVP metrics.

The construction follows Gushchin et al. (NeurIPS 2023): the input P0 is a Gaussian mixture, the potential
``phi(y) = sum_k p_k N(y | mu_k, Sigma_k)`` is a Gaussian mixture, and the ground-truth plan is
``pi*(y | x) ∝ N(y | x, eps I) phi(y)``, again a Gaussian mixture. The official parameter files cannot be
downloaded here, so instances are generated from a seed with the same construction: results are
"EOT-benchmark-style" and not comparable number-for-number with the published tables.

Convention: reference ``sqrt(eps) W`` on [0, 1]; t=0 the input P0, t=1 the target P1.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from genflow.bridges._gaussian import check_eps
from genflow.bridges._lightsb import LightSB
from genflow.bridges._linalg import sym
from genflow.bridges._potential import MixturePotential
from genflow.distributions import AbstractDistribution, GaussianMixture
from genflow.metrics import bures_wasserstein_sq, sample_mean_cov


def _random_spd(rng: np.random.Generator, d: int, low: float, high: float) -> np.ndarray:
    """``Q diag(lambda) Q^T`` with a Haar-random rotation ``Q`` and eigenvalues uniform in [low, high]."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q = q * np.sign(np.diag(r))
    return (q * rng.uniform(low, high, d)) @ q.T


class EOTBenchmark(eqx.Module):
    r"""A source/target pair whose entropic OT plan and Schrödinger bridge are known in closed form.

    Ground-truth plan, a Gaussian mixture in ``y`` for every ``x``:

    $$\pi^*(y | x) = \sum_k w_k(x) \mathcal N(y | P_k(\Sigma_k^{-1}\mu_k + x/\epsilon), P_k), \quad
    w_k(x) \propto p_k \mathcal N(x | \mu_k, \Sigma_k + \epsilon I), \quad P_k = (I/\epsilon + \Sigma_k^{-1})^{-1}.$$

    Target ``P1 = ∫ pi*(. | x) dP0(x)``; drift ``g*(x, t) = eps grad log sum_k p_k N(x | mu_k, Sigma_k + eps (1-t) I)``.

    Args:
        source: the input Gaussian mixture P0.
        weights, means, covs: the potential's ``p_k, mu_k, Sigma_k``.
        eps: the reference variance per unit time.

    References:
        Gushchin, Kolesov, Mokrov, Karpikova, Spiridonov, Burnaev, Korotin. "Building the Bridge of Schrödinger:
        A Continuous Entropic Optimal Transport Benchmark". NeurIPS 2023.
    """

    source: GaussianMixture
    weights: Float[Array, " K"]
    means: Float[Array, "K d"]
    covs: Float[Array, "K d d"]
    s: Float[Array, "K d d"]
    r: Float[Array, "K d"]
    plan_chols: Float[Array, "K d d"]
    weight_whiteners: Float[Array, "K d d"]
    eps: float = eqx.field(static=True)

    def __init__(self, source: GaussianMixture, weights, means, covs, eps: float):
        self.source = source
        self.weights = jnp.asarray(weights, jnp.result_type(float))
        self.weights = self.weights / jnp.sum(self.weights)
        self.means = jnp.asarray(means, jnp.result_type(float))
        self.covs = jnp.asarray(covs, jnp.result_type(float))
        self.eps = check_eps(eps, "EOTBenchmark")
        # Every factorisation once, here: sampling and the metrics then need matmuls only. Batched LAPACK calls
        # inside compiled loops are slow on XLA:CPU and have deadlocked its thread pool (jax 0.10).
        eye = jnp.eye(self.dim, dtype=self.covs.dtype)
        # S_k = (I + eps Sigma_k^{-1})^{-1} = Sigma_k (Sigma_k + eps I)^{-1} and r_k = (I - S_k) mu_k: the LightSB
        # parameters of this pair, and the plan's slopes and intercepts.
        self.s = sym(jax.vmap(lambda c: jnp.linalg.solve(c + self.eps * eye, c))(self.covs))
        self.r = self.means - jnp.einsum("kij,kj->ki", self.s, self.means)
        self.plan_chols = jnp.linalg.cholesky(self.eps * self.s)
        marg_chols = jnp.linalg.cholesky(self.covs + self.eps * eye)
        self.weight_whiteners = jax.vmap(lambda c: jax.scipy.linalg.solve_triangular(c, eye, lower=True))(marg_chols)

    @classmethod
    def generate(
        cls,
        dim: int,
        eps: float,
        seed: int = 0,
        num_source_components: int = 3,
        num_potential_components: int = 5,
    ) -> EOTBenchmark:
        """A benchmark pair, deterministic from ``(dim, seed)`` (the same potential for every ``eps``).

        Documented construction (numpy PCG64 from ``seed``): source weights uniform, means ``N(0, 4 I)``,
        covariances ``Q diag(U[0.5, 1.5]) Q^T``; potential weights ``Dirichlet(2)``, means ``N(0, 4 I)``,
        covariances ``Q diag(U[0.25, 1.0]) Q^T`` with Haar-random ``Q``.
        """
        for name, value in (("dim", dim), ("num_source_components", num_source_components)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"EOTBenchmark.generate: {name}={value!r} is invalid: must be a positive integer")
        if not isinstance(num_potential_components, int) or num_potential_components <= 0:
            raise ValueError(
                f"EOTBenchmark.generate: num_potential_components={num_potential_components!r} is invalid: must be "
                "a positive integer"
            )
        rng = np.random.default_rng(seed)
        k0, k = num_source_components, num_potential_components
        src_means = 2.0 * rng.standard_normal((k0, dim))
        src_covs = np.stack([_random_spd(rng, dim, 0.5, 1.5) for _ in range(k0)])
        source = GaussianMixture(np.full(k0, 1.0 / k0), src_means, src_covs)
        weights = rng.dirichlet(np.full(k, 2.0))
        means = 2.0 * rng.standard_normal((k, dim))
        covs = np.stack([_random_spd(rng, dim, 0.25, 1.0) for _ in range(k)])
        return cls(source, weights, means, covs, eps)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    # -- the ground-truth plan --------------------------------------------------------------------------------
    def _log_weight_terms(self, x: Float[Array, "n d"]) -> Float[Array, "n K"]:
        """``log p_k - (1/2) log det C_k - (1/2) (x - mu_k)^T C_k^{-1} (x - mu_k)``, ``C_k = Sigma_k + eps I``.

        From the whiteners ``L_k^{-1}`` (``C_k = L_k L_k^T``): the unnormalised ``log w_k(x)`` of the plan.
        """
        z = jnp.einsum("kij,nkj->nki", self.weight_whiteners, x[:, None, :] - self.means[None], precision="highest")
        log_det = jnp.sum(jnp.log(jnp.diagonal(self.weight_whiteners, axis1=-2, axis2=-1)), axis=-1)  # -1/2 log det
        return jnp.log(self.weights) + log_det - 0.5 * jnp.sum(z**2, -1)

    def conditional_params(
        self, x: Float[Array, "n d"]
    ) -> tuple[Float[Array, "n K"], Float[Array, "n K d"], Float[Array, "K d d"]]:
        """``(log w(x), means, covariances)`` of the mixture ``pi*(. | x)``."""
        log_w = jax.nn.log_softmax(self._log_weight_terms(x), axis=-1)
        means = self.r[None] + jnp.einsum("kij,nj->nki", self.s, x)
        return log_w, means, self.eps * self.s

    def conditional_moments(self, x: Float[Array, "n d"]) -> tuple[Float[Array, "n d"], Float[Array, "n d d"]]:
        """Exact mean and covariance of ``pi*(. | x)``."""
        log_w, means, covs = self.conditional_params(x)
        w = jnp.exp(log_w)
        mean = jnp.einsum("nk,nkd->nd", w, means)
        second = jnp.einsum("nk,kij->nij", w, covs) + jnp.einsum("nk,nki,nkj->nij", w, means, means)
        return mean, sym(second - mean[:, :, None] * mean[:, None, :])

    def sample_conditional(self, key: PRNGKeyArray, x: Float[Array, "n d"]) -> Float[Array, "n d"]:
        """One draw ``y ~ pi*(y | x)`` per row."""
        log_w, means, _ = self.conditional_params(x)
        k_idx, k_z = jax.random.split(key)
        idx = jax.random.categorical(k_idx, log_w, axis=-1)
        z = jax.random.normal(k_z, x.shape, x.dtype)
        noise = jnp.einsum("nij,nj->ni", self.plan_chols[idx], z)
        return jnp.take_along_axis(means, idx[:, None, None], axis=1)[:, 0] + noise

    def sample_plan(self, key: PRNGKeyArray, num: int) -> tuple[Float[Array, "num d"], Float[Array, "num d"]]:
        """``num`` pairs ``(x, y) ~ pi*``."""
        k0, k1 = jax.random.split(key)
        x = self.source.sample(k0, num)
        return x, self.sample_conditional(k1, x)

    def sample_target(self, key: PRNGKeyArray, num: int) -> Float[Array, "num d"]:
        """``num`` draws of P1."""
        return self.sample_plan(key, num)[1]

    @property
    def target(self) -> BenchmarkTarget:
        """P1 as a distribution (for :class:`genflow.data.Paired` and the trainer)."""
        return BenchmarkTarget(self)

    def target_moments(self, key: PRNGKeyArray, num: int = 100_000) -> tuple[Float[Array, " d"], Float[Array, "d d"]]:
        """Mean and covariance of P1 by the law of total covariance over ``num`` inputs (exact conditionals)."""
        x = self.source.sample(key, num)
        log_w, means, covs = self.conditional_params(x)
        w = jnp.exp(log_w)  # (num, K)
        mean = jnp.einsum("nk,nkd->d", w, means) / num
        # Over the mixture components directly: no (num, d, d) array (100k x 128 x 128 floats would be 6.5 GB).
        centred = means - mean
        second = jnp.einsum("nk,nki,nkj->ij", w, centred, centred, precision="highest")
        return mean, sym(jnp.einsum("k,kij->ij", jnp.sum(w, 0), covs) + second) / num

    # -- the ground-truth bridge ------------------------------------------------------------------------------
    def drift(self, t, x: Float[Array, "n d"]) -> Float[Array, "n d"]:
        """``g*(x, t) = eps grad log sum_k p_k N(x | mu_k, Sigma_k + eps (1 - t) I)``."""
        eye = jnp.eye(self.dim, dtype=self.covs.dtype)
        return self.eps * GaussianMixture(self.weights, self.means, self.covs + self.eps * (1 - t) * eye).score(x)

    def sample_marginal(self, key: PRNGKeyArray, t, num: int) -> Float[Array, "num d"]:
        """Exact draws of the bridge at time ``t``: a Brownian bridge between plan pairs."""
        k1, k2 = jax.random.split(key)
        x0, x1 = self.sample_plan(k1, num)
        return t * x1 + (1 - t) * x0 + jnp.sqrt(self.eps * t * (1 - t)) * jax.random.normal(k2, x0.shape, x0.dtype)

    def to_lightsb(self, **kwargs) -> LightSB:
        """The LightSB that represents this pair exactly.

        ``S_k = (I + eps Sigma_k^{-1})^{-1}``, ``r_k = (I - S_k) mu_k``, and from completing the square
        ``log alpha_k = log p_k - (1/2) log det(Sigma_k + eps I) - (1/2) mu_k^T (Sigma_k + eps I)^{-1} mu_k``.
        """
        log_alpha = self._log_weight_terms(jnp.zeros((1, self.dim), self.means.dtype))[0]  # the terms at x = 0
        pot = MixturePotential.from_params(log_alpha, self.r, self.s, diagonal=False)
        return LightSB(pot, eps=self.eps, base=self.source, **kwargs)


class BenchmarkTarget(AbstractDistribution):
    """The target P1 of an :class:`EOTBenchmark` as a sampler."""

    bench: EOTBenchmark

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self.bench.dim,)

    def sample(self, key, num):
        return self.bench.sample_target(key, num)


def eot_benchmark_source(dim: int, seed: int = 0) -> GaussianMixture:
    """The input P0 of ``EOTBenchmark.generate(dim, eps, seed)`` (the same for every eps); for configs."""
    return EOTBenchmark.generate(dim, 1.0, seed).source


class BenchmarkPairs(AbstractDistribution):
    """Batches ``{"x0": x0 ~ P0, "x": x1 ~ P1}`` of a benchmark pair (the trainer's data).

    Independent by default (what an unpaired method sees); ``coupled=True`` draws ``(x0, x1)`` from the ground-truth
    plan instead, the oracle coupling: bridge matching on it learns the bridge itself, which separates a network's
    error from a coupling's.
    """

    bench: EOTBenchmark
    coupled: bool = eqx.field(static=True, default=False)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self.bench.dim,)

    def sample(self, key, num):
        if self.coupled:
            x0, x1 = self.bench.sample_plan(key, num)
            return {"x0": x0, "x": x1}
        k0, k1 = jax.random.split(key)
        return {"x0": self.bench.source.sample(k0, num), "x": self.bench.sample_target(k1, num)}


def eot_benchmark_data(dim: int, eps: float, seed: int = 0, coupled: bool = False) -> BenchmarkPairs:
    """Source/target batches of ``EOTBenchmark.generate(dim, eps, seed)`` (independent unless ``coupled``)."""
    return BenchmarkPairs(EOTBenchmark.generate(dim, eps, seed), coupled)


# ----------------------------------------------------------------------------------------------------------------
# Metrics (BW-UVP itself is genflow.metrics.bw_uvp, with the benchmark's normalisation)
# ----------------------------------------------------------------------------------------------------------------


@eqx.filter_jit
def _mean_conditional_bw(sample_conditional, bench: EOTBenchmark, x_test: Array, key: PRNGKeyArray, num: int):
    keys = jax.random.split(key, x_test.shape[0])
    means, covs = bench.conditional_moments(x_test)  # exact, all inputs at once (the plan's factors once)

    def one(args):
        x, k, m, c = args
        y = sample_conditional(k, jnp.broadcast_to(x, (num, x.shape[0])))
        m_hat, c_hat = sample_mean_cov(y)
        return 0.5 * bures_wasserstein_sq(m_hat, c_hat, m, c)

    return jnp.mean(jax.lax.map(one, (x_test, keys, means, covs)))


def cbw_uvp(
    sample_conditional: Callable[[PRNGKeyArray, Array], Array],
    bench: EOTBenchmark,
    key: PRNGKeyArray,
    num_inputs: int = 100,
    num_samples: int = 1000,
    target_var: float | None = None,
) -> Scalar:
    r"""Conditional BW-UVP (%): the BW between model and true conditionals, averaged over test inputs.

    ``BW = W_2^2 / 2`` (cost ``|x - y|^2 / 2``), the same normalisation as :func:`genflow.metrics.bw_uvp`:

    $$\mathrm{cBW\text{-}UVP} = \frac{100}{\tfrac12 \operatorname{Var}(P_1)}
    \mathbb E_{x \sim P_0}\, \mathrm{BW}\big(\hat\pi(\cdot | x), \pi^*(\cdot | x)\big),$$

    with the model's moments estimated from ``num_samples`` draws of ``sample_conditional(key, x0_batch)`` for
    each of ``num_inputs`` inputs drawn from P0, and ``pi*(. | x)``'s exact mixture moments. ``Var(P1)`` is the
    trace of the target covariance (computed by :meth:`EOTBenchmark.target_moments` unless given).

    References:
        Gushchin et al. "Building the Bridge of Schrödinger". NeurIPS 2023.
    """
    k_x, k_s, k_v = jax.random.split(key, 3)
    if target_var is None:
        target_var = float(jnp.trace(bench.target_moments(k_v)[1]))
    x_test = bench.source.sample(k_x, num_inputs)
    return 100.0 * _mean_conditional_bw(sample_conditional, bench, x_test, k_s, num_samples) / (0.5 * target_var)


def drift_error(
    drift: Callable[[Array, Array], Array], bench: EOTBenchmark, key: PRNGKeyArray, num: int = 2000, num_times: int = 20
) -> Scalar:
    r"""``(1 / 2 eps) ∫_0^1 E_{x_t} |g*(x_t, t) - g(t, x_t)|^2 dt`` over the true bridge marginals.

    Midpoint rule on ``num_times`` times; ``drift(t, x)`` is batched over the rows of ``x``. This is the KL
    between the true and the model path measures started from the same point (Girsanov).
    """
    ts = (jnp.arange(num_times) + 0.5) / num_times
    keys = jax.random.split(key, num_times)

    def one(args):
        t, k = args
        xt = bench.sample_marginal(k, t, num)
        return jnp.mean(jnp.sum((bench.drift(t, xt) - drift(t, xt)) ** 2, -1))

    return jnp.mean(jax.lax.map(one, (ts, keys))) / (2 * bench.eps)
