"""Exact interpolant fields between Gaussian mixtures: the closed-form oracle of the tests, usable as a model.

For rho0 = sum_i p_i N(mu0_i, C0_i), rho1 = sum_j q_j N(mu1_j, C1_j), the independent coupling and
x_t = a x0 + b x1 + g z (a, b, g functions of t):

    rho_t = sum_ij p_i q_j N(m_ij, S_ij),   m_ij = a mu0_i + b mu1_j,   S_ij = a^2 C0_i + b^2 C1_j + g^2 I,
    b(t, x) = sum_ij w_ij(x) [a' mu0_i + b' mu1_j + K_ij S_ij^{-1} (x - m_ij)],   K_ij = a a' C0_i + b b' C1_j + g g' I,
    s(t, x) = -sum_ij w_ij(x) S_ij^{-1} (x - m_ij),     eta(t, x) = E[z | x_t = x] = -g s(t, x),

with w_ij the posterior weights of the components of rho_t. ``g g'`` enters only through its closed form.

References:
    Albergo, Boffi, Vanden-Eijnden, "Stochastic Interpolants: A Unifying Framework for Flows and Diffusions", 2023.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from genflow.distributions import GaussianMixture
from genflow.interpolants._interpolants import AbstractInterpolant


class GaussianMixtureFields(eqx.Module):
    """Exact ``b``, ``s`` and ``eta`` of an interpolant between two Gaussian mixtures (per example)."""

    interpolant: AbstractInterpolant
    rho0: GaussianMixture
    rho1: GaussianMixture

    def _pairs(self, t):
        itp, r0, r1 = self.interpolant, self.rho0, self.rho1
        a, b, g = itp.alpha(t), itp.beta(t), itp.gamma(t)
        da, db, ggd = itp.dalpha(t), itp.dbeta(t), itp.gamma_dgamma(t)
        eye = jnp.eye(r0.means.shape[-1])
        C0, C1 = r0.covs[:, None], r1.covs[None, :]
        m = a * r0.means[:, None] + b * r1.means[None, :]
        S = a**2 * C0 + b**2 * C1 + g**2 * eye
        K = a * da * C0 + b * db * C1 + ggd * eye
        dm = da * r0.means[:, None] + db * r1.means[None, :]
        w = r0.weights[:, None] * r1.weights[None, :]
        flat = lambda x: x.reshape((-1, *x.shape[2:]))
        return flat(w), flat(m), flat(S), flat(K), flat(dm)

    def marginal(self, t) -> GaussianMixture:
        """``rho_t`` as a mixture of ``K0 * K1`` Gaussians."""
        w, m, S, _, _ = self._pairs(t)
        return GaussianMixture(w, m, S)

    def _posterior(self, t, x):
        w, m, S, K, dm = self._pairs(t)
        # S^{-1} and log det S depend on t only. Forming them here, not solving per example, keeps them out of a
        # vmap over x: batched per-example solves ran ~400x slower on CPU.
        S_inv = jnp.linalg.inv(S)
        resid = jnp.einsum("kab,kb->ka", S_inv, x - m)  # S_ij^{-1} (x - m_ij)
        log_c = jnp.log(w) - 0.5 * jnp.linalg.slogdet(S)[1]  # the (2 pi)^(-d/2) factor cancels in the posterior
        post = jax.nn.softmax(log_c - 0.5 * jnp.sum((x - m) * resid, axis=-1))
        return post, resid, K, dm

    def velocity(self, t, x: Float[Array, " d"], cond=None) -> Float[Array, " d"]:
        post, resid, K, dm = self._posterior(t, x)
        return post @ (dm + jnp.einsum("kab,kb->ka", K, resid))

    def score(self, t, x: Float[Array, " d"], cond=None) -> Float[Array, " d"]:
        post, resid, _, _ = self._posterior(t, x)
        return -post @ resid

    def denoiser(self, t, x: Float[Array, " d"], cond=None) -> Float[Array, " d"]:
        return -self.interpolant.gamma(t) * self.score(t, x)


def gaussian_fields(interpolant, mean0, cov0, mean1, cov1) -> GaussianMixtureFields:
    """Fields between two single Gaussians (a one-component mixture each)."""
    as_mix = lambda m, c: GaussianMixture(jnp.ones(1), jnp.asarray(m)[None], jnp.asarray(c)[None])
    return GaussianMixtureFields(interpolant, as_mix(mean0, cov0), as_mix(mean1, cov1))
