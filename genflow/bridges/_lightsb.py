"""Light Schrödinger Bridge (LightSB) and its bridge-matching variant LightSB-M.

Convention: reference ``dX = sqrt(eps) dW`` on [0, 1], t=0 the source p0, t=1 the target p1; the static problem is
entropic OT with cost ``|x - y|^2 / 2`` and regulariser ``eps``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from genflow._base import AbstractSolvableModel, split_batch
from genflow.bridges._gaussian import GaussianBridge, check_eps
from genflow.bridges._potential import MixturePotential
from genflow.bridges._samplers import ExactConditional, check_bridge_sampler, solve_bridge
from genflow.distributions import AbstractDistribution, StandardNormal
from genflow.solvers import Solution

# The drift (E[X1 | x] - x) / (1 - t) is singular at t = 1; solvers that evaluate it there (Heun's corrector) see
# it at this time instead.
_T_MAX_DRIFT = 1.0 - 1e-4


class PosteriorSetup(eqx.Module):
    """What ``p(x1 | x_t)`` needs that does not depend on ``t``: the eigenbasis of every ``S_k``."""

    log_alpha: Float[Array, " K"]
    lam: Float[Array, "K d"]
    u: Float[Array, "K d d"] | None
    r_rot: Float[Array, "K d"]  # U_k^T r_k


def _rotate(u: Array | None, x: Array) -> Array:
    """``U_k^T x`` for every component: ``(n, d) -> (n, K, d)``; identity when ``u`` is None (diagonal S)."""
    if u is None:
        return x[:, None, :]
    return jnp.einsum("kji,nj->nki", u, x, precision="highest")


def _unrotate(u: Array | None, z: Array) -> Array:
    """``U_k z_k``: ``(n, K, d) -> (n, K, d)``."""
    if u is None:
        return z
    return jnp.einsum("kij,nkj->nki", u, z, precision="highest")


class AbstractLightSBObjective(eqx.Module):
    """A training objective of :class:`LightSB`, ``objective(model, key, x0, x1) -> scalar`` on a batch of pairs."""

    @abc.abstractmethod
    def __call__(self, model: LightSB, key: PRNGKeyArray, x0: Float[Array, "n d"], x1: Float[Array, "n d"]) -> Scalar:
        """The loss of ``model`` on source points ``x0`` and target points ``x1``."""


class LightSBKL(AbstractLightSBObjective):
    r"""LightSB's objective, $L = E_{p_0} \log c_\theta(x_0) - E_{p_1} \log v_\theta(x_1)$.

    It equals $\mathrm{KL}(\pi^* \| \pi_\theta)$ up to a constant; the pairs need not be coupled and nothing is
    simulated.

    References:
        Korotin, Gushchin, Burnaev. "Light Schrödinger Bridge". ICLR 2024.
    """

    def __call__(self, model: LightSB, key: PRNGKeyArray, x0: Float[Array, "n d"], x1: Float[Array, "n d"]) -> Scalar:
        del key
        return jnp.mean(model.log_c(x0)) - jnp.mean(model.log_potential(x1))


class LightSBMatching(AbstractLightSBObjective):
    r"""LightSB-M: bridge matching of the closed-form drift, $E |g_\theta(t, x_t) - (x_1 - x_t) / (1 - t)|^2$.

    On Brownian bridges between the batch's pairs, with $t \sim U[0, t_{\max}]$ (the target's variance grows like
    $\epsilon d / (1 - t)$); see :meth:`LightSB.matching_loss`.

    Args:
        t_max: upper end of the time distribution, in (0, 1).

    References:
        Gushchin, Kholkin, Burnaev, Korotin. "Light and Optimal Schrödinger Bridge Matching". ICML 2024.
    """

    t_max: float = eqx.field(static=True)

    def __init__(self, t_max: float = 0.99):
        if not 0.0 < t_max < 1.0:
            raise ValueError(f"LightSBMatching: t_max={t_max!r} is invalid: must lie in (0, 1)")
        self.t_max = float(t_max)

    def __call__(self, model: LightSB, key: PRNGKeyArray, x0: Float[Array, "n d"], x1: Float[Array, "n d"]) -> Scalar:
        return model.matching_loss(key, x0, x1, self.t_max)


class LightSB(AbstractSolvableModel):
    r"""Light Schrödinger Bridge: a Gaussian-mixture adjusted potential with a closed-form conditional plan.

    With ``v(x1) = sum_k alpha_k N(x1 | r_k, eps S_k)`` (a :class:`MixturePotential`) the plan is

    $$\pi_\theta(x_1 | x_0) = \sum_k w_k(x_0)\, \mathcal N(x_1 | r_k + S_k x_0, \epsilon S_k), \qquad
    w(x_0) = \operatorname{softmax}_k\Big[\log\alpha_k + \frac{x_0^\top S_k x_0 + 2 r_k^\top x_0}{2\epsilon}\Big],$$

    and ``log c(x0)`` is the logsumexp of the same logits. Objectives (``objective``):

    - ``LightSBKL()`` (LightSB): ``L = E_{p0} log c(x0) - E_{p1} log v(x1)``, which equals ``KL(pi* || pi_theta)`` up
      to a constant; independent minibatches, no simulation.
    - ``LightSBMatching(t_max)`` (LightSB-M): bridge matching of the closed-form drift on Brownian bridges between
      the batch's pairs ``(x0, x1)`` (the independent coupling by default, or any ``genflow.couplings`` coupling),
      ``E |g_theta(t, x_t) - (x1 - x_t)/(1 - t)|^2`` with ``t ~ U[0, t_max]`` (the target's variance grows
      like ``eps d / (1 - t)``) and ``x_t = t x1 + (1-t) x0 + sqrt(eps t (1-t)) xi``.

    The drift needs no autodiff: ``g(t, x) = (E[X1 | X_t = x] - x) / (1 - t)`` with the exact posterior
    ``p(x1 | x_t) = sum_k w_k N(A_k^{-1} h_k, A_k^{-1})``, ``A_k = t/(eps(1-t)) I + (eps S_k)^{-1}``,
    ``h_k = x/(eps(1-t)) + (eps S_k)^{-1} r_k`` and
    ``log w_k = log alpha_k - (1/2) log det S_k - (1/2) log det A_k - (1/2) r_k^T (eps S_k)^{-1} r_k
    + (1/2) h_k^T A_k^{-1} h_k`` (computed in the eigenbasis of ``S_k``, found once per solve).

    A batch is the target data (an array, or ``{"x": x1}``), with source points under ``"x0"`` (e.g. from
    :class:`genflow.data.Paired`); without them, x0 is drawn from ``base``.

    Args:
        net: the :class:`MixturePotential` (named ``net`` so the shared configs build it like any network).
        data_shape: shape of one example (vectors only: ``(d,)``).
        eps: the reference variance per unit time.
        base: the source p0 (``N(0, I)`` by default).
        sampler: ``ExactConditional()`` (default), ``ExactPaths(n)`` or an SDE solver such as ``EulerMaruyama``.
        objective: ``LightSBKL()`` (default) or ``LightSBMatching(t_max)``.
        coupling: optional ``genflow.couplings`` coupling applied to the batch by the matching objective.

    References:
        Korotin, Gushchin, Burnaev. "Light Schrödinger Bridge". ICLR 2024.
        Gushchin, Kholkin, Burnaev, Korotin. "Light and Optimal Schrödinger Bridge Matching". ICML 2024.
    """

    net: MixturePotential
    base: AbstractDistribution
    sampler: Any
    coupling: Callable | None
    eps: float = eqx.field(static=True)
    data_shape: tuple[int, ...] = eqx.field(static=True)
    objective: AbstractLightSBObjective
    frozen_fields: ClassVar[tuple[str, ...]] = ("base", "coupling")

    def __init__(
        self,
        net: MixturePotential,
        data_shape: Any = None,
        eps: float = 1.0,
        base: AbstractDistribution | None = None,
        sampler: Any = None,
        objective: AbstractLightSBObjective | None = None,
        coupling: Callable | None = None,
    ):
        self.net = net
        self.eps = check_eps(eps, "LightSB")
        shape = net.data_shape if data_shape is None else tuple(int(s) for s in data_shape)
        if shape != net.data_shape:
            raise ValueError(f"LightSB: data_shape={shape} does not match the potential's {net.data_shape}")
        self.data_shape = shape
        self.base = StandardNormal(shape) if base is None else base
        if tuple(self.base.event_shape) != shape:
            raise ValueError(f"LightSB: base event_shape {self.base.event_shape} does not match data_shape {shape}")
        self.sampler = ExactConditional() if sampler is None else sampler
        check_bridge_sampler(self.sampler, "LightSB")
        self.objective = LightSBKL() if objective is None else objective
        if not isinstance(self.objective, AbstractLightSBObjective):
            raise ValueError(f"LightSB: objective={objective!r} is invalid: pass LightSBKL() or LightSBMatching(t_max)")
        self.coupling = coupling

    @classmethod
    def from_gaussian_bridge(cls, bridge: GaussianBridge, **kwargs: Any) -> LightSB:
        """The exact LightSB of a Gaussian bridge: ``K = 1``, full ``S = A^{-1} C``, ``r = b - S a``."""
        s = bridge.conditional_map()
        r = bridge.b - s @ bridge.a
        pot = MixturePotential.from_params(jnp.zeros(1), r[None], s[None], diagonal=False)
        return cls(pot, eps=bridge.eps, **kwargs)

    # -- the conditional plan ---------------------------------------------------------------------------------
    def logits(self, x0: Float[Array, "n d"]) -> Float[Array, "n K"]:
        """``log alpha_k + (x0^T S_k x0 + 2 r_k^T x0) / (2 eps)``."""
        sx = self.net.s_matvec(x0)
        quad = jnp.einsum("nd,nkd->nk", x0, sx) + 2.0 * x0 @ self.net.r.T
        return self.net.log_alpha[None] + quad / (2.0 * self.eps)

    def log_c(self, x0: Float[Array, "n d"]) -> Float[Array, " n"]:
        """``log c_theta(x0) = log int exp(x0^T x1 / eps) v(x1) dx1``."""
        return jax.nn.logsumexp(self.logits(x0), axis=-1)

    def log_potential(self, x1: Float[Array, "n d"]) -> Float[Array, " n"]:
        """``log v_theta(x1)``."""
        return self.net.log_prob(x1, self.eps)

    def conditional_params(
        self, x0: Float[Array, "n d"]
    ) -> tuple[Float[Array, "n K"], Float[Array, "n K d"], Float[Array, "K d d"]]:
        """``(log w(x0), means r_k + S_k x0, covariances eps S_k)`` of the mixture ``pi_theta(. | x0)``."""
        log_w = jax.nn.log_softmax(self.logits(x0), axis=-1)
        return log_w, self.net.r[None] + self.net.s_matvec(x0), self.eps * self.net.s_matrix()

    def sample_conditional(self, key: PRNGKeyArray, x0: Float[Array, "n d"]) -> Float[Array, "n d"]:
        """One exact draw ``x1 ~ pi_theta(x1 | x0)`` per row."""
        k_idx, k_z = jax.random.split(key)
        idx = jax.random.categorical(k_idx, self.logits(x0), axis=-1)
        z = jax.random.normal(k_z, x0.shape, x0.dtype)
        mean = self.net.r[idx] + jnp.take_along_axis(self.net.s_matvec(x0), idx[:, None, None], axis=1)[:, 0]
        noise = self._chol_pick(idx, z)
        return mean + jnp.sqrt(self.eps) * noise

    def _chol_pick(self, idx: Array, z: Array) -> Array:
        chol = self.net.chol()
        if self.net.diagonal:
            return chol[idx] * z
        return jnp.einsum("nij,nj->ni", chol[idx], z, precision="highest")

    def sample_marginal(self, key: PRNGKeyArray, t: Any, x0: Float[Array, "n d"]) -> Float[Array, "n d"]:
        """Exact ``X_t`` from ``x0``: ``x_t = t x1 + (1 - t) x0 + sqrt(t (1 - t) eps) xi``, ``x1 ~ pi(. | x0)``."""
        k1, k2 = jax.random.split(key)
        x1 = self.sample_conditional(k1, x0)
        xi = jax.random.normal(k2, x0.shape, x0.dtype)
        return t * x1 + (1 - t) * x0 + jnp.sqrt(t * (1 - t) * self.eps) * xi

    # -- the posterior p(x1 | x_t) and the drift --------------------------------------------------------------
    def posterior_setup(self) -> PosteriorSetup:
        """The eigenbasis of every ``S_k`` (one ``eigh`` per component; trivial for diagonal S)."""
        lam, u = self.net.eig()
        r_rot = self.net.r if u is None else jnp.einsum("kji,kj->ki", u, self.net.r, precision="highest")
        return PosteriorSetup(self.net.log_alpha, lam, u, r_rot)

    def posterior(
        self, t: Any, x: Float[Array, "n d"], setup: PosteriorSetup | None = None
    ) -> tuple[Float[Array, "n K"], Float[Array, "n K d"], Float[Array, "K d"], Float[Array, "K d d"] | None]:
        """``p(x1 | X_t = x) = sum_k w_k N(A_k^{-1} h_k, A_k^{-1})`` for ``t < 1``.

        Returns ``(log w, means, a, U)``: ``A_k = U_k diag(a_k) U_k^T`` (``U = None`` means the identity).
        """
        s = self.posterior_setup() if setup is None else setup
        eps = self.eps
        c = t / (eps * (1 - t))
        a = c + 1.0 / (eps * s.lam)  # eigenvalues of A_k, (K, d)
        h_rot = _rotate(s.u, x) / (eps * (1 - t)) + (s.r_rot / (eps * s.lam))[None]  # U_k^T h_k, (n, K, d)
        m_rot = h_rot / a[None]
        log_w = (
            s.log_alpha
            - 0.5 * jnp.sum(jnp.log(s.lam), -1)
            - 0.5 * jnp.sum(jnp.log(a), -1)
            - 0.5 * jnp.sum(s.r_rot**2 / (eps * s.lam), -1)
        )[None] + 0.5 * jnp.sum(h_rot * m_rot, -1)
        return jax.nn.log_softmax(log_w, axis=-1), _unrotate(s.u, m_rot), a, s.u

    def posterior_mean(self, t: Any, x: Float[Array, "n d"], setup: PosteriorSetup | None = None) -> Array:
        """``E[X1 | X_t = x]``."""
        log_w, means, _, _ = self.posterior(t, x, setup)
        return jnp.einsum("nk,nkd->nd", jnp.exp(log_w), means)

    def posterior_mean_dense(self, t: Any, x: Float[Array, "n d"]) -> Array:
        """``E[X1 | X_t = x]`` from Cholesky factorisations of ``A_k``, without an eigendecomposition.

        Used to train full ``S`` by matching: ``eigh`` has no usable gradient at repeated eigenvalues (``S = s I``
        at initialisation). Costs ``O(K d^3)`` per call.
        """
        eps, chol = self.eps, self.net.chol()
        eye = jnp.eye(self.net.data_dim, dtype=x.dtype)

        def one(log_alpha, r, lk):
            s_inv = jax.scipy.linalg.cho_solve((lk, True), eye) / eps  # (eps S_k)^{-1}
            a_chol = jnp.linalg.cholesky(t / (eps * (1 - t)) * eye + s_inv)
            s_inv_r = s_inv @ r
            h = x / (eps * (1 - t)) + s_inv_r[None]
            m = jax.scipy.linalg.cho_solve((a_chol, True), h.T).T
            log_w = (
                log_alpha
                - jnp.sum(jnp.log(jnp.diagonal(lk)))
                - jnp.sum(jnp.log(jnp.diagonal(a_chol)))
                - 0.5 * r @ s_inv_r
                + 0.5 * jnp.sum(h * m, -1)
            )
            return log_w, m

        log_w, means = jax.vmap(one, out_axes=(1, 1))(self.net.log_alpha, self.net.r, chol)
        return jnp.einsum("nk,nkd->nd", jax.nn.softmax(log_w, axis=-1), means)

    def sample_posterior(self, key: PRNGKeyArray, t: Any, x: Array, setup: PosteriorSetup | None = None) -> Array:
        """One draw ``x1 ~ p(x1 | X_t = x)`` per row."""
        log_w, means, a, u = self.posterior(t, x, setup)
        k_idx, k_z = jax.random.split(key)
        idx = jax.random.categorical(k_idx, log_w, axis=-1)
        z = jax.random.normal(k_z, x.shape, x.dtype) / jnp.sqrt(a[idx])
        if u is not None:
            z = jnp.einsum("nij,nj->ni", u[idx], z, precision="highest")
        return jnp.take_along_axis(means, idx[:, None, None], axis=1)[:, 0] + z

    def drift(self, t: Any, x: Float[Array, "n d"], setup: PosteriorSetup | None = None) -> Float[Array, "n d"]:
        """Autodiff-free drift ``g(t, x) = (E[X1 | X_t = x] - x) / (1 - t)`` (batched over rows of ``x``)."""
        t = jnp.minimum(t, _T_MAX_DRIFT)
        return (self.posterior_mean(t, x, setup) - x) / (1 - t)

    def drift_fn(self) -> Callable[[Any, Array], Array]:
        """The drift as ``(t, x) -> g``, with the t-independent eigendecompositions done once, here."""
        setup = self.posterior_setup()
        return lambda t, x: self.drift(t, x, setup)

    # -- training ---------------------------------------------------------------------------------------------
    def _pairs(self, key: PRNGKeyArray, batch: Any) -> tuple[Array, Array]:
        x1, _ = split_batch(batch)
        x1 = x1.reshape(x1.shape[0], -1)
        if isinstance(batch, dict) and "x0" in batch:
            x0 = batch["x0"].reshape(x1.shape[0], -1)
        else:
            x0 = self.base.sample(key, x1.shape[0]).reshape(x1.shape[0], -1)
        return x0, x1

    def loss(self, key: PRNGKeyArray, batch: Any) -> Scalar:
        k0, k1 = jax.random.split(key)
        x0, x1 = self._pairs(k0, batch)
        return self.objective(self, k1, x0, x1)

    def matching_loss(
        self, key: PRNGKeyArray, x0: Float[Array, "n d"], x1: Float[Array, "n d"], t_max: float = 0.99
    ) -> Scalar:
        """LightSB-M: ``E |g_theta(t, x_t) - (x1 - x_t) / (1 - t)|^2`` on Brownian bridges between the pairs.

        ``t ~ U[0, t_max]``; ``x_t = t x1 + (1 - t) x0 + sqrt(eps t (1 - t)) xi`` after the optional ``coupling``.
        """
        k_c, k_t, k_xi = jax.random.split(key, 3)
        if self.coupling is not None:
            x0, x1, _ = self.coupling(k_c, x0, x1)
        n = x0.shape[0]
        t = jax.random.uniform(k_t, (n, 1), x0.dtype, 0.0, t_max)
        xt = t * x1 + (1 - t) * x0 + jnp.sqrt(self.eps * t * (1 - t)) * jax.random.normal(k_xi, x0.shape, x0.dtype)
        if self.net.diagonal:
            setup = self.posterior_setup()
            mean_x1 = jax.vmap(lambda ti, xi: self.posterior_mean(ti, xi[None], setup)[0])(t[:, 0], xt)
        else:
            mean_x1 = jax.vmap(lambda ti, xi: self.posterior_mean_dense(ti, xi[None])[0])(t[:, 0], xt)
        pred = (mean_x1 - xt) / (1 - t)
        return jnp.mean(jnp.sum((pred - (x1 - xt) / (1 - t)) ** 2, axis=-1))

    # -- sampling ---------------------------------------------------------------------------------------------
    @eqx.filter_jit
    def solve(
        self,
        key: PRNGKeyArray,
        num: int,
        *,
        x0: Array | None = None,
        sampler: Any = None,
        save_trajectory: bool = False,
    ) -> Solution:
        """Draw ``x0 ~ base`` (or take ``x0``) and run the sampler; returns the :class:`Solution`."""
        k0, k1 = jax.random.split(key)
        x0 = self.base.sample(k0, num).reshape(num, -1) if x0 is None else x0
        sampler = self.sampler if sampler is None else sampler
        return solve_bridge(sampler, self, k1, x0, save_trajectory)
