"""Full-covariance Gaussians and Gaussian mixtures with exact log-density, score and moments.

These are the closed-form oracles of the test suite: a Gaussian mixture stays a Gaussian mixture under the
affine noising of diffusions and interpolants (see ``noised``), so its noised score is known exactly at every
time.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from genflow.distributions._base import AbstractDensity


def _as_float(x: ArrayLike) -> Array:
    """Convert lists (as Hydra passes them) and arrays to the default float dtype."""
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _whiten(
    x: Float[Array, "n d"], means: Float[Array, "K d"], chols: Float[Array, "K d d"]
) -> tuple[Float[Array, "K n d"], Float[Array, "K n d"]]:
    """Return ``z_k = L_k^{-1}(x - mu_k)`` and ``C_k^{-1}(x - mu_k) = L_k^{-T} z_k`` for every component."""
    diff = x[None, :, :] - means[:, None, :]

    def one(chol, r):
        z = solve_triangular(chol, r.T, lower=True)
        # Two triangular solves rather than an explicit inverse: backward stable for ill-conditioned C_k.
        return z.T, solve_triangular(chol, z, lower=True, trans="T").T

    return jax.vmap(one)(chols, diff)


def _component_log_probs(z: Float[Array, "K n d"], chols: Float[Array, "K d d"]) -> Float[Array, "n K"]:
    """``log N(x; mu_k, C_k) = -0.5 |z_k|^2 - sum log diag L_k - 0.5 d log 2 pi``."""
    d = z.shape[-1]
    half_logdet = jnp.sum(jnp.log(jnp.diagonal(chols, axis1=-2, axis2=-1)), axis=-1)
    lp = -0.5 * jnp.sum(z**2, axis=-1) - half_logdet[:, None] - 0.5 * d * math.log(2 * math.pi)
    return lp.T


class GaussianMixture(AbstractDensity):
    r"""Mixture of ``K`` full-covariance Gaussians in ``R^d``.

    $$p(x) = \sum_k w_k \mathcal N(x; \mu_k, C_k), \qquad
    \nabla_x \log p(x) = -\sum_k r_k(x) C_k^{-1}(x - \mu_k), \quad
    r_k(x) = \frac{w_k \mathcal N(x; \mu_k, C_k)}{p(x)}.$$

    Everything is computed from the Cholesky factors ``C_k = L_k L_k^T`` and in log space (logsumexp), so the
    log-density is exact far in the tails. ``log_prob`` and ``score`` are batched over the leading axes of
    ``x``. The log-density is normalised.

    Args:
        weights: mixture weights ``(K,)``; normalised to sum to one.
        means: component means ``(K, d)``.
        covs: component covariances ``(K, d, d)``, symmetric positive definite.

    References:
        Bishop, *Pattern Recognition and Machine Learning*, 2006, section 9.2.
    """

    weights: Float[Array, " K"]
    means: Float[Array, "K d"]
    covs: Float[Array, "K d d"]
    chols: Float[Array, "K d d"]

    def __init__(self, weights: ArrayLike, means: ArrayLike, covs: ArrayLike):
        weights, means, covs = _as_float(weights), _as_float(means), _as_float(covs)
        if means.ndim != 2:
            raise ValueError(f"GaussianMixture: means must have shape (K, d), got {means.shape}")
        k, d = means.shape
        if weights.shape != (k,) or covs.shape != (k, d, d):
            raise ValueError(
                f"GaussianMixture: expected weights (K,)=({k},) and covs (K, d, d)=({k}, {d}, {d}), "
                f"got weights {weights.shape} and covs {covs.shape}"
            )
        self.weights = weights / jnp.sum(weights)
        self.means = means
        self.covs = covs
        # Lower Cholesky factors C_k = L_k L_k^T, once here rather than in every jitted sample/log_prob: batched
        # LAPACK calls inside compiled loops are slow on XLA:CPU and have deadlocked its thread pool (jax 0.10).
        self.chols = jnp.linalg.cholesky(covs)

    @classmethod
    def isotropic(cls, weights: ArrayLike, means: ArrayLike, std: ArrayLike) -> GaussianMixture:
        """Mixture with covariances ``std_k^2 I``; ``std`` is a scalar or one value per component."""
        means = _as_float(means)
        k, d = means.shape
        std = jnp.broadcast_to(_as_float(std), (k,))
        return cls(weights, means, std[:, None, None] ** 2 * jnp.eye(d, dtype=means.dtype))

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self.means.shape[1],)

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def mean(self) -> Float[Array, " d"]:
        r"""Mixture mean $\sum_k w_k \mu_k$."""
        return self.weights @ self.means

    @property
    def covariance(self) -> Float[Array, "d d"]:
        r"""Mixture covariance $\sum_k w_k (C_k + \mu_k \mu_k^T) - \bar\mu \bar\mu^T$."""
        outer = self.means[:, :, None] * self.means[:, None, :]
        second = jnp.einsum("k,kij->ij", self.weights, self.covs + outer)
        m = self.mean
        return second - jnp.outer(m, m)

    def _terms(self, x: Float[Array, "*batch d"]) -> tuple[Float[Array, "n K"], Float[Array, "K n d"]]:
        """Joint log-terms ``log w_k + log N_k(x)`` and ``C_k^{-1}(x - mu_k)`` on the flattened batch."""
        chols = self.chols
        z, prec_diff = _whiten(x.reshape(-1, x.shape[-1]), self.means, chols)
        return jnp.log(self.weights) + _component_log_probs(z, chols), prec_diff

    def log_prob(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch"]:
        joint, _ = self._terms(x)
        return logsumexp(joint, axis=-1).reshape(x.shape[:-1])

    def responsibilities(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch K"]:
        """Posterior component probabilities ``r_k(x)``."""
        joint, _ = self._terms(x)
        return jax.nn.softmax(joint, axis=-1).reshape(*x.shape[:-1], self.num_components)

    def score(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
        joint, prec_diff = self._terms(x)
        resp = jax.nn.softmax(joint, axis=-1)
        return -jnp.einsum("nk,knd->nd", resp, prec_diff).reshape(x.shape)

    def sample(self, key: PRNGKeyArray, num: int) -> Float[Array, "num d"]:
        k_idx, k_eps = jax.random.split(key)
        idx = jax.random.categorical(k_idx, jnp.log(self.weights), shape=(num,))
        eps = jax.random.normal(k_eps, (num, self.event_shape[0]), dtype=self.means.dtype)
        # Transform eps by every factor, then pick: K*num*d memory instead of num*d*d for gathered factors.
        y = jnp.einsum("kij,nj->nki", self.chols, eps)
        return self.means[idx] + jnp.take_along_axis(y, idx[:, None, None], axis=1)[:, 0]

    def noised(self, alpha: ArrayLike, sigma: ArrayLike) -> GaussianMixture:
        r"""Law of ``alpha x + sigma eps`` with ``x ~ p`` and ``eps ~ N(0, I)``.

        $$\sum_k w_k \mathcal N(\alpha \mu_k, \alpha^2 C_k + \sigma^2 I).$$

        This is the marginal of a Gaussian diffusion or interpolant at one time; ``alpha`` and ``sigma`` may
        be traced, so it can be called inside jit.
        """
        d = self.event_shape[0]
        eye = jnp.eye(d, dtype=self.means.dtype)
        return GaussianMixture(self.weights, alpha * self.means, alpha**2 * self.covs + sigma**2 * eye)


class Gaussian(AbstractDensity):
    r"""Full-covariance Gaussian $\mathcal N(\mu, C)$ in ``R^d``.

    $$\log p(x) = -\tfrac12 (x-\mu)^T C^{-1} (x-\mu) - \tfrac12 \log\det(2\pi C), \qquad
    \nabla_x \log p(x) = -C^{-1}(x - \mu).$$

    Computed from the Cholesky factor of ``C``; batched over the leading axes of ``x``; normalised.

    Args:
        mean: mean ``(d,)``.
        cov: covariance ``(d, d)``, symmetric positive definite.

    References:
        Bishop, *Pattern Recognition and Machine Learning*, 2006, section 2.3.
    """

    mean: Float[Array, " d"]
    cov: Float[Array, "d d"]

    def __init__(self, mean: ArrayLike, cov: ArrayLike):
        mean, cov = _as_float(mean), _as_float(cov)
        if mean.ndim != 1 or cov.shape != (mean.shape[0], mean.shape[0]):
            raise ValueError(f"Gaussian: expected mean (d,) and cov (d, d), got {mean.shape} and {cov.shape}")
        self.mean = mean
        self.cov = cov

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.mean.shape

    @property
    def covariance(self) -> Float[Array, "d d"]:
        return self.cov

    @property
    def chol(self) -> Float[Array, "d d"]:
        """Lower Cholesky factor ``L`` with ``C = L L^T``."""
        return jnp.linalg.cholesky(self.cov)

    def _terms(self, x: Float[Array, "*batch d"]) -> tuple[Float[Array, " n"], Float[Array, "n d"]]:
        chol = self.chol[None]
        z, prec_diff = _whiten(x.reshape(-1, x.shape[-1]), self.mean[None], chol)
        return _component_log_probs(z, chol)[:, 0], prec_diff[0]

    def log_prob(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch"]:
        return self._terms(x)[0].reshape(x.shape[:-1])

    def score(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
        return -self._terms(x)[1].reshape(x.shape)

    def sample(self, key: PRNGKeyArray, num: int) -> Float[Array, "num d"]:
        eps = jax.random.normal(key, (num, self.event_shape[0]), dtype=self.mean.dtype)
        return self.mean + eps @ self.chol.T

    def noised(self, alpha: ArrayLike, sigma: ArrayLike) -> Gaussian:
        r"""Law of ``alpha x + sigma eps``: $\mathcal N(\alpha\mu, \alpha^2 C + \sigma^2 I)$ (traceable)."""
        eye = jnp.eye(self.event_shape[0], dtype=self.mean.dtype)
        return Gaussian(alpha * self.mean, alpha**2 * self.cov + sigma**2 * eye)
