"""MixFlows: variational mixtures of the pushforwards of a reference under repeated applications of one map.

With a measure-preserving-in-the-limit map ``T`` on an extended space and a reference ``q0``,

    q_N = (1/N) sum_{n<N} (T^n)_# q0,
    q_N(s) = (1/N) sum_{n<N} q0(T^{-n} s) prod_{j<n} |det grad T^{-1}(T^{-j} s)|   (O(N), by logsumexp).

Sampling draws ``K`` uniformly from ``{0, ..., N-1}`` and returns ``T^K s0``. The map here is uncorrected
Hamiltonian dynamics on ``s = (x, rho, u)`` with ``u`` in ``[0, 1)``, Laplace momentum ``m(rho) ∝ exp(-|rho|)``
and a deterministic momentum refresh:

    L leapfrog steps of size eps on H(x, rho) = -log p~(x) + sum_i |rho_i|,
    rho_i' = F^{-1}((F(rho_i) + xi(x_i, u)) mod 1),   xi(x, u) = (sin(2x + u) + 1) / 2,   F the Laplace CDF,
    u' = (u + pi/16) mod 1,

with ``log|det grad T| = sum_i [log m(rho_i) - log m(rho_i')]`` (leapfrog shears preserve volume). The extended
target is ``p~(x) prod_i m(rho_i)`` on ``u`` in ``[0, 1)``, and the extended reference ``q0(x) prod_i m(rho_i)``.

The ELBO ``E_{q_N}[log p~ - log q_N]`` has two unbiased estimators: one state ``T^K s0`` with ``K`` uniform, or
the average over the whole orbit ``T^n s0, n < N``, whose ``N`` densities share one trajectory of ``2N - 1``
states (``O(N)`` map evaluations).

References:
    Xu, Chen, Campbell, "MixFlows: principled variational inference via mixed flows", ICML 2023.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from genflow._base import AbstractGenerativeModel
from genflow._checks import as_shape, check_positive
from genflow.distributions import AbstractDistribution, StandardNormal
from genflow.flows._bijections import AbstractBijection

_U_SHIFT = math.pi / 16


def laplace_cdf(r: Array) -> Array:
    """``F(r) = e^r / 2`` for ``r < 0``, ``1 - e^{-r} / 2`` otherwise."""
    e = 0.5 * jnp.exp(-jnp.abs(r))
    return jnp.where(r < 0, e, 1 - e)


def laplace_icdf(p: Array) -> Array:
    """``F^{-1}(p) = log 2p`` for ``p < 1/2``, ``-log 2(1 - p)`` otherwise; finite at ``p = 0`` and ``p = 1``.

    ``F(r)`` rounds to exactly 1 for ``r`` beyond ~17 (float32) or ~37 (float64), and the refresh's ``mod 1`` can
    then return exactly 0 (or 1): the tails are clamped at the smallest normal number, ``|r| <= -log(2 tiny)``
    (~87 or ~708), rather than giving an infinite momentum whose ``inf - inf`` turns densities into NaN.
    """
    tiny = jnp.finfo(jnp.result_type(p, float)).tiny
    lower = p < 0.5
    # Each branch is evaluated at a safe argument, so neither makes a NaN for the gradient of the other.
    lo = jnp.log(2 * jnp.maximum(jnp.where(lower, p, 0.25), tiny))
    return jnp.where(lower, lo, -jnp.log(2 * jnp.maximum(jnp.where(lower, 0.75, 1 - p), tiny)))


def laplace_log_density(r: Array) -> Array:
    """``log m(r) = -|r| - log 2`` (unit-scale Laplace)."""
    return -jnp.abs(r) - math.log(2.0)


class UncorrectedHamiltonianMap(AbstractBijection):
    """MixFlows' map on ``s = concat(x, rho, [u])`` (shape ``(2 d + 1,)``), exactly invertible.

    Args:
        target: the unnormalised target ``p~`` (batched ``log_prob``; its gradient drives the leapfrog).
        dim: ``d``, the size of ``x``.
        step_size: leapfrog step ``eps`` (stored as a log, a trainable leaf).
        num_leapfrog: ``L``.
        key: unused; accepted so that Hydra's ``net`` group can build the map like a network.

    References:
        Xu, Chen, Campbell, "MixFlows: principled variational inference via mixed flows", ICML 2023.
    """

    target: Any
    log_step_size: Float[Array, ""]
    dim: int = eqx.field(static=True)
    num_leapfrog: int = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)
    frozen_fields: ClassVar[tuple[str, ...]] = ("target",)

    def __init__(self, target: Any, dim: int, step_size: float = 0.1, num_leapfrog: int = 10, *, key: Any = None):
        del key
        check_positive("dim", dim)
        check_positive("num_leapfrog", num_leapfrog)
        if not step_size > 0:
            raise ValueError(f"step_size={step_size!r} is invalid: must be > 0")
        self.target, self.dim, self.num_leapfrog = target, int(dim), int(num_leapfrog)
        self.log_step_size = jnp.asarray(math.log(step_size), jnp.result_type(float))
        self.shape, self.cond_shape = (2 * self.dim + 1,), None

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def _split(self, s):
        return s[: self.dim], s[self.dim : 2 * self.dim], s[2 * self.dim]

    def _grad_u(self, x):
        return -jax.grad(lambda v: self.target.log_prob(v[None])[0])(x)

    def _leapfrog(self, x, rho, sign: float):
        # sign=+1 runs the dynamics forwards; sign=-1 undoes it step by step (each shear inverts exactly).
        e = sign * jnp.exp(self.log_step_size)

        def step(_, xr):
            x, rho = xr
            rho = rho - 0.5 * e * self._grad_u(x)
            x = x + e * jnp.sign(rho)
            return x, rho - 0.5 * e * self._grad_u(x)

        return jax.lax.fori_loop(0, self.num_leapfrog, step, (x, rho))

    @staticmethod
    def _xi(x, u):
        return 0.5 * (jnp.sin(2 * x + u) + 1)

    def transform_and_log_det(self, s, cond=None):
        x, rho, u = self._split(s)
        x, rho = self._leapfrog(x, rho, 1.0)
        rho_new = laplace_icdf(jnp.mod(laplace_cdf(rho) + self._xi(x, u), 1.0))
        ld = jnp.sum(laplace_log_density(rho) - laplace_log_density(rho_new))
        return jnp.concatenate([x, rho_new, jnp.mod(u + _U_SHIFT, 1.0)[None]]), ld

    def inverse_and_log_det(self, s, cond=None):
        x, rho_new, u_new = self._split(s)
        u = jnp.mod(u_new - _U_SHIFT, 1.0)
        rho = laplace_icdf(jnp.mod(laplace_cdf(rho_new) - self._xi(x, u), 1.0))
        ld = jnp.sum(laplace_log_density(rho_new) - laplace_log_density(rho))
        x, rho = self._leapfrog(x, rho, -1.0)
        return jnp.concatenate([x, rho, u[None]]), ld


class MixFlow(AbstractGenerativeModel):
    """A MixFlow ``q_N`` with the uncorrected Hamiltonian map.

    Args:
        map: an :class:`UncorrectedHamiltonianMap` (it carries the target).
        num_maps: ``N``.
        reference: ``q0`` on ``x`` (``N(0, I)`` by default); the momentum reference is Laplace, ``u`` uniform.
        num_elbo_samples: orbits per loss evaluation (the loss is ``-ELBO``, a function of the step size); default:
            the batch size.

    References:
        Xu, Chen, Campbell, "MixFlows: principled variational inference via mixed flows", ICML 2023.
    """

    map: UncorrectedHamiltonianMap
    reference: AbstractDistribution
    num_maps: int = eqx.field(static=True)
    num_elbo_samples: int | None = eqx.field(static=True)
    frozen_fields: ClassVar[tuple[str, ...]] = ("reference",)

    def __init__(
        self,
        map: UncorrectedHamiltonianMap,
        num_maps: int = 100,
        reference: AbstractDistribution | None = None,
        num_elbo_samples: int | None = None,
    ):
        check_positive("num_maps", num_maps)
        self.map, self.num_maps, self.num_elbo_samples = map, int(num_maps), num_elbo_samples
        self.reference = StandardNormal((map.dim,)) if reference is None else reference
        if tuple(self.reference.event_shape) != (map.dim,):
            raise ValueError(f"reference event_shape {self.reference.event_shape} does not match ({map.dim},)")

    @classmethod
    def from_net(cls, net: UncorrectedHamiltonianMap, data_shape: Any, sampler: Any = None, **kwargs) -> MixFlow:
        """Hydra entry point: the ``net`` group holds the map."""
        del sampler
        if as_shape(data_shape) != (net.dim,):
            raise ValueError(f"the map acts on x of shape ({net.dim},) but data_shape is {as_shape(data_shape)}")
        return cls(net, **kwargs)

    @property
    def data_shape(self) -> tuple[int, ...]:
        return (self.map.dim,)

    # -- the extended space ---------------------------------------------------------------------------------
    def sample_reference(self, key: PRNGKeyArray, num: int) -> Float[Array, "num s"]:
        """``s0 = (x, rho, u)`` with ``x ~ q0``, ``rho ~ Laplace``, ``u ~ U[0, 1)``."""
        kx, kr, ku = jax.random.split(key, 3)
        x = self.reference.sample(kx, num)
        rho = jax.random.laplace(kr, (num, self.map.dim), x.dtype)
        return jnp.concatenate([x, rho, jax.random.uniform(ku, (num, 1), x.dtype)], axis=-1)

    def _log_reference(self, s: Array) -> Scalar:
        x, rho, u = self.map._split(s)
        inside = (u >= 0) & (u < 1)
        lp = self.reference.log_prob(x[None])[0] + jnp.sum(laplace_log_density(rho))
        return jnp.where(inside, lp, -jnp.inf)

    def log_target_extended(self, s: Array) -> Scalar:
        """``log p~(x) + sum log m(rho)`` for one state (``u`` in ``[0, 1)``)."""
        x, rho, _ = self.map._split(s)
        return self.map.target.log_prob(x[None])[0] + jnp.sum(laplace_log_density(rho))

    def _log_density_one(self, s: Array) -> Scalar:
        def step(carry, _):
            s, cum = carry
            term = self._log_reference(s) + cum
            s_prev, ld = self.map.inverse_and_log_det(s)
            return (s_prev, cum + ld), term

        _, terms = jax.lax.scan(step, (s, jnp.zeros((), s.dtype)), None, length=self.num_maps)
        return logsumexp(terms) - math.log(self.num_maps)

    @eqx.filter_jit
    def log_prob_extended(self, s: Float[Array, "num s"]) -> Float[Array, " num"]:
        """``log q_N(s)`` on the extended space: ``N - 1`` inverse steps per state."""
        return jax.vmap(self._log_density_one)(s)

    def _orbit(self, s0: Array) -> tuple[Array, Array]:
        """States ``T^m s0`` and ``ell(m) = log|det d(T^m s0)/d s0|`` for ``m = -(N-1), ..., N-1``."""
        n = self.num_maps

        def run(method):
            def step(carry, _):
                s, cum = carry
                s_next, ld = getattr(self.map, method)(s)
                return (s_next, cum + ld), (s_next, cum + ld)

            _, (states, cums) = jax.lax.scan(step, (s0, jnp.zeros((), s0.dtype)), None, length=n - 1)
            return states, cums

        fwd, ell_fwd = run("transform_and_log_det")
        bwd, ell_bwd = run("inverse_and_log_det")
        states = jnp.concatenate([bwd[::-1], s0[None], fwd])
        ell = jnp.concatenate([ell_bwd[::-1], jnp.zeros((1,), s0.dtype), ell_fwd])
        return states, ell

    def _orbit_terms(self, s0: Array) -> tuple[Array, Array, Array]:
        """``a(m) = log q0(T^m s0) + ell(m)`` and ``ell(m)`` for ``|m| < N``, and ``log p~(T^n s0)`` for ``n < N``."""
        states, ell = self._orbit(s0)
        a = jax.vmap(self._log_reference)(states) + ell  # index m + N - 1 holds T^m s0
        return a, ell, jax.vmap(self.log_target_extended)(states[self.num_maps - 1 :])

    def _orbit_elbo_from_terms(self, a: Array, ell: Array, log_p: Array, n: int) -> Scalar:
        """The orbit ELBO of ``q_n`` (``n <= N``) from the terms of an orbit of ``N``: it holds every shorter one."""
        c = self.num_maps - 1  # index of s0
        # log q_n(T^j s0) = -ell(j) + logsumexp_{k<n}(a[j - k]) - log n for j = 0..n-1: a sliding window.
        idx = c + jnp.arange(n)[:, None] - jnp.arange(n)[None, :]
        log_q = -ell[c : c + n] + logsumexp(a[idx], axis=1) - math.log(n)
        return jnp.mean(log_p[:n] - log_q)

    def _orbit_elbo(self, s0: Array) -> Scalar:
        return self._orbit_elbo_from_terms(*self._orbit_terms(s0), self.num_maps)

    @eqx.filter_jit
    def elbo_orbit(self, key: PRNGKeyArray, num: int) -> Float[Array, " num"]:
        """Per-orbit unbiased ELBO estimates: the average of ``log p~ - log q_N`` over ``T^n s0``, ``n < N``."""
        return jax.vmap(self._orbit_elbo)(self.sample_reference(key, num))

    @eqx.filter_jit
    def elbo_orbit_curve(self, key: PRNGKeyArray, num: int, ns: tuple[int, ...]) -> Float[Array, "num k"]:
        """Orbit ELBO estimates of ``q_n`` for every ``n`` in ``ns`` (each ``<= N``) from the same ``num`` orbits
        of ``N`` maps: column ``i`` equals ``MixFlow(map, ns[i]).elbo_orbit(key, num)``, in one compile and one
        trajectory per orbit instead of one of each per ``n`` (and paired across ``n``)."""
        ns = tuple(int(n) for n in ns)
        if not ns or not all(1 <= n <= self.num_maps for n in ns):
            raise ValueError(f"ns={ns!r} is invalid: needs 1 <= n <= num_maps={self.num_maps} for every n")

        def one(s0):
            terms = self._orbit_terms(s0)
            return jnp.stack([self._orbit_elbo_from_terms(*terms, n) for n in ns])

        return jax.vmap(one)(self.sample_reference(key, num))

    @eqx.filter_jit
    def elbo_single(self, key: PRNGKeyArray, num: int) -> Float[Array, " num"]:
        """Per-sample unbiased ELBO estimates ``log p~(s) - log q_N(s)`` at ``s = T^K s0``, ``K`` uniform."""
        s = self.sample_extended(key, num)
        return jax.vmap(self.log_target_extended)(s) - self.log_prob_extended(s)

    @eqx.filter_jit
    def sample_extended(self, key: PRNGKeyArray, num: int) -> Float[Array, "num s"]:
        """``T^K s0`` with ``s0`` from the reference and ``K`` uniform on ``{0, ..., N-1}``, one ``K`` per sample."""
        k_ref, k_idx = jax.random.split(key)
        s0 = self.sample_reference(k_ref, num)
        ks = jax.random.randint(k_idx, (num,), 0, self.num_maps)

        def one(s, k):
            def step(carry, n):
                s, out = carry
                out = jnp.where(n == k, s, out)
                return (self.map.transform(s), out), None

            (_, out), _ = jax.lax.scan(step, (s, s), jnp.arange(self.num_maps))
            return out

        return jax.vmap(one)(s0, ks)

    def sample(self, key: PRNGKeyArray, num: int, **opts: Any) -> Float[Array, "num d"]:
        """Samples of ``x`` (the first ``d`` coordinates of the extended state)."""
        return self.sample_extended(key, num)[:, : self.map.dim]

    def loss(self, key: PRNGKeyArray, batch: Any) -> Scalar:
        """``-ELBO`` from the orbit estimator (gradients reach the step size through the maps)."""
        n = self.num_elbo_samples if self.num_elbo_samples is not None else jax.tree_util.tree_leaves(batch)[0].shape[0]
        return -jnp.mean(self.elbo_orbit(key, n))


def tune_mixflow(
    mixflow: MixFlow,
    key: PRNGKeyArray,
    step_sizes: Sequence[float],
    leapfrog_steps: Sequence[int],
    num_samples: int = 256,
) -> tuple[MixFlow, list[dict[str, float]]]:
    """Grid search of the step size and the number of leapfrog steps by the orbit ELBO estimate (same key for
    every candidate, so the comparison is paired). Returns the best MixFlow and the table of results."""
    table = []
    best, best_elbo = mixflow, -jnp.inf
    for num_leapfrog in leapfrog_steps:
        for step_size in step_sizes:
            m = UncorrectedHamiltonianMap(mixflow.map.target, mixflow.map.dim, step_size, num_leapfrog)
            candidate = MixFlow(m, mixflow.num_maps, mixflow.reference, mixflow.num_elbo_samples)
            elbo = float(jnp.mean(candidate.elbo_orbit(key, num_samples)))
            table.append({"step_size": float(step_size), "num_leapfrog": int(num_leapfrog), "elbo": elbo})
            if elbo > best_elbo:
                best, best_elbo = candidate, elbo
    return best, table
