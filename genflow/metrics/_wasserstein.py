"""Wasserstein-2 distances between empirical measures: exact (network simplex) and sliced."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import ot
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Scalar
from scipy.spatial.distance import cdist

from genflow.metrics._utils import flatten_samples, safe_sqrt


def _as_weights(w: ArrayLike | None, n: int) -> np.ndarray:
    if w is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(w, dtype=np.float64).reshape(n)
    return w / w.sum()


def w2_exact(
    x: Float[ArrayLike, "n ..."],
    y: Float[ArrayLike, "m ..."],
    a: Float[ArrayLike, " n"] | None = None,
    b: Float[ArrayLike, " m"] | None = None,
    squared: bool = False,
    num_itermax: int = 10_000_000,
) -> float:
    r"""Exact 2-Wasserstein distance between two discrete measures.

    $$W_2^2(\mu, \nu) = \min_{\pi \in \Pi(a, b)} \sum_{ij} \pi_{ij}\, |x_i - y_j|^2,
    \qquad \mu = \sum_i a_i \delta_{x_i},\ \nu = \sum_j b_j \delta_{y_j}.$$

    Solved with POT's network-simplex ``ot.emd2`` on a float64 cost matrix, so sizes may differ. This runs
    on the host in NumPy: it is **not** jit-able or differentiable, and it costs ``O(n m)`` memory and roughly
    cubic time, so keep sample sets to a few thousand points. Accepts JAX or NumPy arrays; examples with more
    than one axis are flattened.

    Args:
        x: support of the first measure, shape ``(n, ...)``.
        y: support of the second measure, shape ``(m, ...)``.
        a: weights of ``x`` (normalised to sum to 1); uniform if None.
        b: weights of ``y`` (normalised to sum to 1); uniform if None.
        squared: return ``W2^2`` instead of ``W2``.
        num_itermax: iteration cap of the network simplex.

    Returns:
        ``W2`` (or ``W2^2``) as a Python float.

    References:
        Bonneel, van de Panne, Paris, Heidrich. "Displacement Interpolation Using Lagrangian Mass Transport".
        SIGGRAPH Asia 2011. Flamary et al. "POT: Python Optimal Transport". JMLR 2021.
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    cost = cdist(x, y, metric="sqeuclidean")
    a, b = _as_weights(a, len(x)), _as_weights(b, len(y))
    w2_sq = max(float(ot.emd2(a, b, cost, numItermax=num_itermax)), 0.0)
    return w2_sq if squared else float(np.sqrt(w2_sq))


def _quantile_grid(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and weights that integrate ``(F^{-1}(t) - G^{-1}(t))^2`` over ``t`` exactly.

    Both empirical quantile functions are step functions with jumps at ``i/n`` and ``j/m``; on each cell of
    the merged grid of jump levels they are constant. Cell ``k`` ends at the ``k``-th smallest level, its
    ``x`` index is the number of ``x`` levels before it, and its weight is its length. Built in NumPy at trace
    time, since it depends only on the static sizes.
    """
    levels = np.concatenate([np.arange(1, n + 1) / n, np.arange(1, m + 1) / m])
    from_x = np.concatenate([np.ones(n, bool), np.zeros(m, bool)])
    order = np.argsort(levels, kind="stable")
    levels, from_x = levels[order], from_x[order]
    ix = np.minimum(np.cumsum(from_x) - from_x, n - 1)
    iy = np.minimum(np.cumsum(~from_x) - ~from_x, m - 1)
    return ix, iy, np.diff(levels, prepend=0.0)


def _w2_sq_1d(xs: Float[Array, "n p"], ys: Float[Array, "m p"]) -> Float[Array, " p"]:
    """Squared 1D W2 between empirical measures, column by column, from sorted samples."""
    n, m = xs.shape[0], ys.shape[0]
    if n == m:
        return jnp.mean((xs - ys) ** 2, axis=0)
    ix, iy, w = _quantile_grid(n, m)
    return jnp.matmul(jnp.asarray(w, xs.dtype), (xs[ix] - ys[iy]) ** 2, precision=jax.lax.Precision.HIGHEST)


@functools.partial(jax.jit, static_argnames=("num_projections", "squared"))
def sliced_w2(
    key: PRNGKeyArray,
    x: Float[Array, "n ..."],
    y: Float[Array, "m ..."],
    num_projections: int = 128,
    squared: bool = False,
) -> Scalar:
    r"""Monte Carlo sliced 2-Wasserstein distance between two empirical measures.

    $$SW_2^2(\mu, \nu) = \mathbb{E}_{\theta \sim U(S^{d-1})}\, W_2^2(\theta_\# \mu, \theta_\# \nu)
    \approx \frac{1}{L} \sum_{l=1}^{L} W_2^2(\theta_{l\#} \mu, \theta_{l\#} \nu),$$

    where the 1D distance is $\int_0^1 (F^{-1}(t) - G^{-1}(t))^2\,dt$. For equal sizes this is the mean
    squared difference of the sorted projections; for unequal sizes both quantile functions are compared on
    the merged grid of their jump levels ``i/n`` and ``j/m``, which is exact. Uniform weights; examples with
    more than one axis are flattened. Jit-compiled, with ``num_projections`` and ``squared`` static.

    Args:
        key: PRNG key for the directions.
        x: samples of shape ``(n, ...)``.
        y: samples of shape ``(m, ...)``.
        num_projections: number ``L`` of random directions.
        squared: return ``SW2^2`` instead of ``SW2``.

    Returns:
        ``SW2 = sqrt(mean_l W2^2)`` (or its square).

    References:
        Bonneel, Rabin, Peyré, Pfister. "Sliced and Radon Wasserstein Barycenters of Measures". JMIV 2015.
    """
    x, y = flatten_samples(x), flatten_samples(y)
    theta = jax.random.normal(key, (num_projections, x.shape[1]), x.dtype)
    theta = theta / jnp.linalg.norm(theta, axis=1, keepdims=True)
    # Full precision: TF32 matmuls on GPUs would perturb the projections at the 1e-3 level.
    xp = jnp.matmul(x, theta.T, precision=jax.lax.Precision.HIGHEST)
    yp = jnp.matmul(y, theta.T, precision=jax.lax.Precision.HIGHEST)
    xs, ys = jnp.sort(xp, axis=0), jnp.sort(yp, axis=0)
    sw2_sq = jnp.mean(_w2_sq_1d(xs, ys))
    return sw2_sq if squared else safe_sqrt(sw2_sq)
