"""The Schrödinger bridge between two Gaussians, in closed form.

Convention (every module of ``genflow.bridges``): the reference process is ``dX = sqrt(eps) dW`` on [0, 1]; t=0 is
the source p0, t=1 is the target p1. The static bridge is entropic OT with cost ``|x - y|^2 / 2`` and regulariser
``eps`` (POT and torchcfm write the same problem with ``reg = 2 eps``; Bunne et al. and Janati et al. with
``sigma^2 = eps``).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from genflow.bridges._linalg import matmul, sym, sym_power, sym_sqrt


def check_eps(eps: float, where: str) -> float:
    """``eps`` must be a positive number; returns it as a float."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"{where}: eps={eps!r} is invalid: must be a positive number")
    return float(eps)


def _as_float(x: ArrayLike) -> Array:
    return jnp.asarray(x, dtype=jnp.result_type(float))


class GaussianBridge(eqx.Module):
    r"""Closed-form Schrödinger bridge from ``N(a, A)`` to ``N(b, B)`` with reference ``sqrt(eps) W``.

    Static plan (Janati et al. 2020; Bunne et al. 2023, with ``sigma^2 = eps``):

    $$D = (A^{1/2} B A^{1/2} + \tfrac{\epsilon^2}{4} I)^{1/2}, \qquad
    C = A^{1/2} D A^{-1/2} - \tfrac{\epsilon}{2} I, \qquad
    \pi^* = \mathcal N\Big(\begin{bmatrix} a \\ b\end{bmatrix},
    \begin{bmatrix} A & C \\ C^\top & B\end{bmatrix}\Big).$$

    Conditional: ``X1 | x ~ N(b + C^T A^{-1}(x - a), eps A^{-1} C)``. Time marginals of the bridge:
    ``mu_t = (1-t) a + t b``, ``Sigma_t = (1-t)^2 A + t^2 B + t(1-t)(C + C^T) + eps t(1-t) I``. The bridge is
    Markov with the linear drift ``g(t, x) = (E[X1 | X_t = x] - x) / (1 - t)``, where
    ``E[X1 | X_t = x] = b + (t B + (1-t) C^T) Sigma_t^{-1} (x - mu_t)``; it solves the Lyapunov equation
    ``dSigma_t/dt = M_t Sigma_t + Sigma_t M_t^T + eps I`` with ``M_t = dg/dx`` (checked in the tests).

    Args:
        a, A: source mean ``(d,)`` and covariance ``(d, d)`` (positive definite).
        b, B: target mean and covariance.
        eps: the reference process's variance per unit time (the entropic regulariser), ``> 0``.

    References:
        Janati, Muzellec, Peyré, Cuturi. "Entropic optimal transport between (unbalanced) Gaussian measures has a
        closed form". NeurIPS 2020. Bunne, Hsieh, Cuturi, Krause. "The Schrödinger bridge between Gaussian measures
        has a closed form". AISTATS 2023.
    """

    a: Float[Array, " d"]
    A: Float[Array, "d d"]
    b: Float[Array, " d"]
    B: Float[Array, "d d"]
    eps: float = eqx.field(static=True)

    def __init__(self, a: ArrayLike, A: ArrayLike, b: ArrayLike, B: ArrayLike, eps: float):
        self.a, self.A, self.b, self.B = (_as_float(v) for v in (a, A, b, B))
        d = self.a.shape[0] if self.a.ndim == 1 else -1
        for name, v, shape in (("a", self.a, (d,)), ("A", self.A, (d, d)), ("b", self.b, (d,)), ("B", self.B, (d, d))):
            if v.shape != shape:
                raise ValueError(f"GaussianBridge: {name} has shape {v.shape}, expected {shape} (a has shape (d,))")
        self.eps = check_eps(eps, "GaussianBridge")

    @property
    def dim(self) -> int:
        return self.a.shape[0]

    # -- the static plan --------------------------------------------------------------------------------------
    def cross_cov(self) -> Float[Array, "d d"]:
        """``C = Cov(X0, X1)`` under the entropic plan."""
        a_half, a_mhalf = sym_sqrt(self.A), sym_power(self.A, -0.5)
        eye = jnp.eye(self.dim, dtype=self.A.dtype)
        d_mat = sym_sqrt(sym(matmul(matmul(a_half, self.B), a_half)) + 0.25 * self.eps**2 * eye)
        return matmul(matmul(a_half, d_mat), a_mhalf) - 0.5 * self.eps * eye

    def joint_cov(self) -> Float[Array, "2d 2d"]:
        """Covariance of ``(X0, X1)`` under the plan: ``[[A, C], [C^T, B]]``."""
        c = self.cross_cov()
        return jnp.block([[self.A, c], [c.T, self.B]])

    def conditional_map(self) -> Float[Array, "d d"]:
        """``S = A^{-1} C`` (symmetric): the conditional mean is ``b + S (x - a)``, its covariance ``eps S``."""
        return sym(jnp.linalg.solve(self.A, self.cross_cov()))

    def conditional(self, x0: Float[Array, "*batch d"]) -> tuple[Float[Array, "*batch d"], Float[Array, "d d"]]:
        """Mean and covariance of ``X1 | X0 = x0``: ``(b + S (x0 - a), eps S)`` with ``S = A^{-1} C``."""
        s = self.conditional_map()
        return self.b + (x0 - self.a) @ s.T, self.eps * s

    def sample_conditional(self, key: PRNGKeyArray, x0: Float[Array, "n d"]) -> Float[Array, "n d"]:
        """One draw of ``X1 | X0 = x0`` per row of ``x0``."""
        mean, cov = self.conditional(x0)
        return mean + jax.random.normal(key, x0.shape, x0.dtype) @ jnp.linalg.cholesky(cov).T

    def sample_plan(self, key: PRNGKeyArray, num: int) -> tuple[Float[Array, "num d"], Float[Array, "num d"]]:
        """``num`` pairs ``(x0, x1) ~ pi*``."""
        k0, k1 = jax.random.split(key)
        x0 = self.a + jax.random.normal(k0, (num, self.dim), self.a.dtype) @ jnp.linalg.cholesky(self.A).T
        return x0, self.sample_conditional(k1, x0)

    # -- the dynamic bridge -----------------------------------------------------------------------------------
    def marginal(self, t: ArrayLike) -> tuple[Float[Array, " d"], Float[Array, "d d"]]:
        """Mean and covariance of ``X_t``."""
        c = self.cross_cov()
        eye = jnp.eye(self.dim, dtype=self.A.dtype)
        mean = (1 - t) * self.a + t * self.b
        cov = (1 - t) ** 2 * self.A + t**2 * self.B + t * (1 - t) * (c + c.T + self.eps * eye)
        return mean, sym(cov)

    def sample_marginal(self, key: PRNGKeyArray, t: ArrayLike, num: int) -> Float[Array, "num d"]:
        """``num`` draws of ``X_t``."""
        mean, cov = self.marginal(t)
        return mean + jax.random.normal(key, (num, self.dim), self.a.dtype) @ jnp.linalg.cholesky(cov).T

    def drift_matrix(self, t: ArrayLike) -> tuple[Float[Array, "d d"], Float[Array, " d"]]:
        """``(M_t, mu_t)`` with ``g(t, x) = (b - a) + M_t (x - mu_t)``; valid for ``t < 1``."""
        mean, cov = self.marginal(t)
        cross = t * self.B + (1 - t) * self.cross_cov().T  # Cov(X1, X_t)
        eye = jnp.eye(self.dim, dtype=self.A.dtype)
        gain = jnp.linalg.solve(cov, cross.T).T  # Cov(X1, X_t) Sigma_t^{-1}
        return (gain - eye) / (1 - t), mean

    def drift(self, t: ArrayLike, x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
        """Markov drift ``g(t, x) = (E[X1 | X_t = x] - x) / (1 - t)`` of the bridge SDE ``dX = g dt + sqrt(eps) dW``.

        Since ``E[X1 - X_t | X_t]`` has mean ``b - mu_t``, ``g = (b - a) + M_t (x - mu_t)``.
        """
        m, mean = self.drift_matrix(t)
        return (self.b - self.a) + (x - mean) @ m.T


def monge_map_matrix(A: Float[Array, "d d"], B: Float[Array, "d d"]) -> Float[Array, "d d"]:
    r"""The unregularised (eps = 0) OT map between centred Gaussians, ``T(x) = b + M (x - a)``.

    $$M = A^{-1/2} (A^{1/2} B A^{1/2})^{1/2} A^{-1/2}.$$

    References:
        Peyré & Cuturi, "Computational Optimal Transport", 2019, Remark 2.31.
    """
    a_half, a_mhalf = sym_sqrt(A), sym_power(A, -0.5)
    return sym(matmul(matmul(a_mhalf, sym_sqrt(sym(matmul(matmul(a_half, B), a_half)))), a_mhalf))
