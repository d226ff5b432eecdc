"""The Gaussian-mixture adjusted potential of LightSB.

``v(x1) = sum_k alpha_k N(x1 | r_k, eps S_k)`` with ``S_k`` diagonal or full. ``S_k = L_k L_k^T`` is stored through
its Cholesky factor (positive diagonal through ``exp``), so every ``S_k`` is positive definite for any parameters.
The potential holds ``(log alpha, r, S)``; ``eps`` belongs to the bridge that uses it.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from genflow.bridges._linalg import matmul, sym
from genflow.distributions import AbstractDistribution


def _flatten(x: Array) -> Array:
    return x.reshape(x.shape[0], -1)


class MixturePotential(eqx.Module):
    r"""Gaussian-mixture potential ``v(x1) = sum_k alpha_k N(x1 | r_k, eps S_k)`` (LightSB's parametrisation).

    The network of a :class:`LightSB` model. ``log_alpha`` is unnormalised (the LightSB objective does not see a
    constant shift). The covariance factor is ``S_k = L_k L_k^T``: ``diagonal=True`` stores ``log diag S_k`` with
    shape ``(K, d)``; ``diagonal=False`` stores ``L_k`` lower-triangular with its diagonal as ``log L_kk``.

    Args:
        data_dim: dimension ``d``.
        num_components: ``K``.
        diagonal: diagonal or full ``S_k``.
        s_init: initial ``S_k = s_init I``.
        init_data: a distribution to draw the initial means ``r_k`` from (the target p1, as in the paper);
            ``None`` draws them from ``N(0, I)``.
        key: random key.

    References:
        Korotin, Gushchin, Burnaev. "Light Schrödinger Bridge". ICLR 2024.
    """

    log_alpha: Float[Array, " K"]
    r: Float[Array, "K d"]
    s_raw: Float[Array, "K d"] | Float[Array, "K d d"]
    diagonal: bool = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        num_components: int = 50,
        diagonal: bool = True,
        s_init: float = 1.0,
        init_data: AbstractDistribution | None = None,
        *,
        key: PRNGKeyArray,
    ):
        for name, value in (("data_dim", data_dim), ("num_components", num_components)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"MixturePotential: {name}={value!r} is invalid: must be a positive integer")
        if isinstance(s_init, bool) or not isinstance(s_init, (int, float)) or not s_init > 0:
            raise ValueError(f"MixturePotential: s_init={s_init!r} is invalid: must be a positive number")
        d, k = int(data_dim), int(num_components)
        if init_data is not None:
            if math.prod(init_data.event_shape) != d:
                raise ValueError(
                    f"MixturePotential: init_data has event_shape {init_data.event_shape}, which does not match "
                    f"data_dim={d}"
                )
            sample = init_data.sample(key, k)
            r = _flatten(sample["x"] if isinstance(sample, dict) else sample)
        else:
            r = jax.random.normal(key, (k, d))
        dtype = jnp.result_type(float)
        self.r = jnp.asarray(r, dtype)
        self.log_alpha = jnp.full((k,), -math.log(k), dtype)
        self.diagonal = bool(diagonal)
        log_s = jnp.full((k, d), math.log(s_init), dtype)
        # Full S = L L^T with L = sqrt(s_init) I: the diagonal of L is stored as its log.
        self.s_raw = log_s if self.diagonal else jax.vmap(jnp.diag)(0.5 * log_s)

    @classmethod
    def from_params(cls, log_alpha: ArrayLike, r: ArrayLike, s: ArrayLike, diagonal: bool = False) -> MixturePotential:
        """A potential with given parameters; ``s`` is ``(K, d)`` (diagonals) or ``(K, d, d)`` (SPD matrices)."""
        log_alpha, r, s = (jnp.asarray(v, jnp.result_type(float)) for v in (log_alpha, r, s))
        k, d = r.shape
        pot = cls(d, k, diagonal=diagonal, key=jax.random.key(0))
        if diagonal:
            s = jnp.diagonal(s, axis1=-2, axis2=-1) if s.ndim == 3 else s
            s_raw = jnp.log(s)
        else:
            s = s if s.ndim == 3 else jax.vmap(jnp.diag)(s)
            chol = jnp.linalg.cholesky(sym(s))
            diag = jnp.diagonal(chol, axis1=-2, axis2=-1)
            s_raw = jnp.tril(chol, -1) + jax.vmap(jnp.diag)(jnp.log(diag))
        return eqx.tree_at(lambda p: (p.log_alpha, p.r, p.s_raw), pot, (log_alpha, r, s_raw))

    @property
    def num_components(self) -> int:
        return self.r.shape[0]

    @property
    def data_dim(self) -> int:
        return self.r.shape[1]

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.data_dim,)

    # -- S_k and its factors ----------------------------------------------------------------------------------
    def chol(self) -> Float[Array, "K d"] | Float[Array, "K d d"]:
        """``L_k`` with ``S_k = L_k L_k^T``: ``sqrt(diag S_k)`` ``(K, d)`` when diagonal, else ``(K, d, d)``."""
        if self.diagonal:
            return jnp.exp(0.5 * self.s_raw)
        diag = jnp.exp(jnp.diagonal(self.s_raw, axis1=-2, axis2=-1))
        return jnp.tril(self.s_raw, -1) + jax.vmap(jnp.diag)(diag)

    def s_matrix(self) -> Float[Array, "K d d"]:
        """The matrices ``S_k`` (dense, also for diagonal S)."""
        if self.diagonal:
            return jax.vmap(jnp.diag)(jnp.exp(self.s_raw))
        chol = self.chol()
        return matmul(chol, jnp.swapaxes(chol, -1, -2))

    def log_det_s(self) -> Float[Array, " K"]:
        """``log det S_k``."""
        if self.diagonal:
            return jnp.sum(self.s_raw, axis=-1)
        return 2.0 * jnp.sum(jnp.diagonal(self.s_raw, axis1=-2, axis2=-1), axis=-1)

    def s_matvec(self, x: Float[Array, "n d"]) -> Float[Array, "n K d"]:
        """``S_k x`` for every example and component."""
        if self.diagonal:
            return x[:, None, :] * jnp.exp(self.s_raw)[None]
        chol = self.chol()
        lt_x = jnp.einsum("kji,nj->nki", chol, x, precision="highest")  # L_k^T x
        return jnp.einsum("kij,nkj->nki", chol, lt_x, precision="highest")

    def chol_matvec(self, z: Float[Array, "n K d"]) -> Float[Array, "n K d"]:
        """``L_k z_k``: turns standard normals into ``N(0, S_k)`` draws."""
        chol = self.chol()
        if self.diagonal:
            return z * chol[None]
        return jnp.einsum("kij,nkj->nki", chol, z, precision="highest")

    def eig(self) -> tuple[Float[Array, "K d"], Float[Array, "K d d"] | None]:
        """Eigenvalues ``lambda_k`` and eigenvectors ``U_k`` of ``S_k`` (``U_k = None``, meaning I, when diagonal)."""
        if self.diagonal:
            return jnp.exp(self.s_raw), None
        lam, u = jnp.linalg.eigh(sym(self.s_matrix()))
        return lam, u

    # -- densities --------------------------------------------------------------------------------------------
    def component_log_probs(self, x1: Float[Array, "n d"], eps: float) -> Float[Array, "n K"]:
        """``log N(x1 | r_k, eps S_k)`` for every example and component."""
        diff = x1[:, None, :] - self.r[None]  # (n, K, d)
        if self.diagonal:
            maha = jnp.sum(diff**2 / jnp.exp(self.s_raw)[None], axis=-1)
        else:
            # L_k^{-1} once per component, then a matmul: XLA:CPU runs batched triangular solves with many
            # right-hand sides (and their gradients) very slowly inside the training scan.
            eye = jnp.eye(self.data_dim, dtype=x1.dtype)
            chol_inv = jax.vmap(lambda c: solve_triangular(c, eye, lower=True))(self.chol())
            z = jnp.einsum("kij,nkj->nki", chol_inv, diff, precision="highest")
            maha = jnp.sum(z**2, axis=-1)
        d = self.data_dim
        return -0.5 * maha / eps - 0.5 * self.log_det_s()[None] - 0.5 * d * jnp.log(2 * jnp.pi * eps)

    def log_prob(self, x1: Float[Array, "n d"], eps: float) -> Float[Array, " n"]:
        """``log v(x1) = logsumexp_k [log alpha_k + log N(x1 | r_k, eps S_k)]``."""
        return jax.nn.logsumexp(self.log_alpha[None] + self.component_log_probs(x1, eps), axis=-1)
