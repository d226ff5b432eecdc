"""Couplings: how a batch of base samples x0 is paired with a batch of data x1 before interpolating.

An interpolant or flow-matching loss only sees pairs ``(x0, x1)`` drawn from a coupling ``rho(x0, x1)`` whose
marginals are rho0 and rho1. The independent coupling ``rho0 x rho1`` is the default; a better coupling makes the
paths straighter and the learned transport cheaper. Couplings act on a whole minibatch, inside the jit-compiled
training step:

    x0, x1, cond = coupling(key, x0, x1, cond)

``cond`` is an optional batch-aligned pytree (labels, ...); a coupling that reorders or resamples x1 reorders
``cond`` with it, so that ``cond[k]`` always belongs to the returned ``x1[k]``.

Convention: t=0 is the base x0, t=1 is the data x1.

References:
    Tong, Fatras, Malkin, Huguet, Zhang, Rector-Brooks, Wolf, Bengio, "Improving and generalizing flow-based
    generative models with minibatch optimal transport", TMLR 2024.
    Pooladian, Ben-Hamu, Domingo-Enrich, Amos, Lipman, Chen, "Multisample Flow Matching: Straightening Flows with
    Minibatch Couplings", ICML 2023.
    Albergo, Goldstein, Boffi, Ranganath, Vanden-Eijnden, "Stochastic interpolants with data-dependent couplings",
    ICML 2024.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import ot
from jaxtyping import Array, Float, Int, PRNGKeyArray, PyTree

_OT_METHODS = ("exact", "sinkhorn")
_OT_COSTS = ("sqeuclidean", "euclidean")
# POT's default network-simplex budget (1e5 pivots) stops short on batches of a few hundred points; the plan would
# then not be optimal, so allow enough pivots for the batch sizes used in training.
_EMD_MAX_ITER = 10_000_000


class AbstractCoupling(eqx.Module):
    """A batch-level coupling of base samples and data.

    ``__call__(key, x0, x1, cond)`` returns a paired batch ``(x0, x1, cond)``; ``cond`` stays aligned with ``x1``.
    """

    @abc.abstractmethod
    def __call__(
        self,
        key: PRNGKeyArray,
        x0: Float[Array, "n0 ..."],
        x1: Float[Array, "n ..."],
        cond: PyTree | None = None,
    ) -> tuple[Float[Array, "n ..."], Float[Array, "n ..."], PyTree | None]:
        """Pair the batch ``x0`` (from the base) with the batch ``x1`` (data) and its condition ``cond``."""

    def sampling_pair(
        self, key: PRNGKeyArray, x0: Float[Array, "n ..."], x1: Float[Array, "n ..."], cond: PyTree | None = None
    ) -> tuple[Float[Array, "n ..."], PyTree | None]:
        """The starting points and conditions for generating samples that correspond to the data batch ``x1``.

        Couplings of the base with the data alone (independent, OT) start from the base samples ``x0`` and keep
        ``cond``; data-dependent couplings start from ``x0 ~ rho0(. | x1)`` and return their condition ``xi``.
        """
        del key, x1
        return x0, cond

    def constrain(self, v: Array, cond: PyTree | None) -> Array:
        """Restrict a per-example velocity (or noise amplitude) to the coordinates the coupling leaves free."""
        del cond
        return v


class IndependentCoupling(AbstractCoupling):
    """The product coupling ``rho(x0, x1) = rho0(x0) rho1(x1)``: the inputs are returned unchanged.

    References:
        Albergo & Vanden-Eijnden, "Building Normalizing Flows with Stochastic Interpolants", ICLR 2023.
    """

    def __call__(self, key, x0, x1, cond=None):
        del key
        return x0, x1, cond


# ----------------------------------------------------------------------------------------------------------------
# Minibatch optimal transport
# ----------------------------------------------------------------------------------------------------------------


def pairwise_cost(
    x0: Float[Array, "n0 ..."], x1: Float[Array, "n1 ..."], cost: str = "sqeuclidean"
) -> Float[Array, "n0 n1"]:
    """Cost matrix ``C_ij = |x0_i - x1_j|^2`` (or ``|x0_i - x1_j|``) between flattened examples."""
    a = x0.reshape(x0.shape[0], -1)
    b = x1.reshape(x1.shape[0], -1)
    # The expanded form avoids an (n0, n1, d) intermediate; rounding can make it slightly negative.
    sq = jnp.sum(a**2, -1)[:, None] + jnp.sum(b**2, -1)[None, :] - 2.0 * a @ b.T
    sq = jnp.maximum(sq, 0.0)
    return sq if cost == "sqeuclidean" else jnp.sqrt(sq)


def _emd_host(cost: np.ndarray) -> np.ndarray:
    n0, n1 = cost.shape
    a = np.full(n0, 1.0 / n0)
    b = np.full(n1, 1.0 / n1)
    plan = ot.emd(a, b, np.asarray(cost, np.float64), numItermax=_EMD_MAX_ITER)
    return plan.astype(cost.dtype)


def exact_ot_plan(cost: Float[Array, "n0 n1"]) -> Float[Array, "n0 n1"]:
    """Exact OT plan between uniform weights, by POT's network simplex (``ot.emd``) on the host.

    ``pi = argmin_{pi in Pi(1/n0, 1/n1)} <pi, C>``; for ``n0 == n1`` it is a permutation matrix divided by n.
    """
    shape = jax.ShapeDtypeStruct(cost.shape, cost.dtype)
    return jax.pure_callback(_emd_host, shape, cost, vmap_method="sequential")


def sinkhorn_plan(
    cost: Float[Array, "n0 n1"], reg: float, threshold: float = 1e-3, max_iterations: int = 2000
) -> Float[Array, "n0 n1"]:
    """Entropic OT plan ``argmin <pi, C> - reg H(pi)`` between uniform weights, by ott-jax's log-domain Sinkhorn."""
    # Imported here: ott pulls in jaxopt, which warns on import, and only this path needs it.
    from ott.geometry import geometry
    from ott.problems.linear import linear_problem
    from ott.solvers.linear import sinkhorn

    geom = geometry.Geometry(cost_matrix=cost, epsilon=reg)
    solver = sinkhorn.Sinkhorn(threshold=threshold, max_iterations=max_iterations)
    return solver(linear_problem.LinearProblem(geom)).matrix


def _sample_categorical(key: PRNGKeyArray, weights: Float[Array, " m"], num: int) -> Int[Array, " num"]:
    """``num`` i.i.d. draws from the categorical with (unnormalised, non-negative) ``weights``, by inverse CDF.

    Equivalent in law to ``jax.random.categorical`` but draws ``num`` uniforms instead of ``num * m`` Gumbels,
    which for a 256 x 256 plan is the difference between ~4 and ~400 training steps/s on CPU.
    """
    cdf = jnp.cumsum(jnp.maximum(weights, 0.0))
    u = jax.random.uniform(key, (num,), cdf.dtype) * cdf[-1]
    return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), weights.shape[0] - 1)


class MinibatchOTCoupling(AbstractCoupling):
    """Minibatch optimal-transport coupling.

    Solves OT between the uniform empirical measures of the batch,

        pi = argmin_{pi in Pi(1/n0, 1/n1)} sum_ij pi_ij C_ij  (- reg H(pi) for Sinkhorn),
        C_ij = |x0_i - x1_j|^2  (divided by max_ij C_ij when ``normalize_cost``, so ``reg`` is scale free),

    and pairs the batch according to pi:

    - ``replace=True``: draws n = len(x1) index pairs ``(i, j) ~ pi`` (categorical over the flattened plan, with
      replacement) and returns ``x0[i], x1[j], cond[j]``.
    - ``replace=False``: keeps ``x1`` and ``cond`` as they are and draws, for each ``k``, a partner
      ``i ~ pi[:, k] / sum_i pi[i, k]``. For ``method="exact"`` with equal batch sizes the plan is a permutation,
      so this is the optimal assignment itself, with no sampling noise.

    The exact plan comes from POT's network simplex (``ot.emd``) through ``jax.pure_callback`` (the host round trip
    is a small cost next to a training step for batches of a few hundred); the Sinkhorn plan from ott-jax, in JAX.
    The plan is a discrete choice, so no gradient flows through it.

    Args:
        method: ``"exact"`` or ``"sinkhorn"``.
        reg: entropic regularisation for ``"sinkhorn"`` (relative to the max cost when ``normalize_cost``).
        cost: ``"sqeuclidean"`` (W2, the one that straightens linear-interpolant paths) or ``"euclidean"``.
        replace: sample pairs from the plan with replacement (see above).
        normalize_cost: divide the cost matrix by its maximum.
        threshold: Sinkhorn stopping tolerance on the marginal error.
        max_iterations: Sinkhorn iteration cap.

    References:
        Tong et al., "Improving and generalizing flow-based generative models with minibatch optimal transport",
        TMLR 2024. Pooladian et al., "Multisample Flow Matching", ICML 2023.
    """

    method: str = eqx.field(static=True)
    reg: float = eqx.field(static=True)
    cost: str = eqx.field(static=True)
    replace: bool = eqx.field(static=True)
    normalize_cost: bool = eqx.field(static=True)
    threshold: float = eqx.field(static=True)
    max_iterations: int = eqx.field(static=True)

    def __init__(
        self,
        method: str = "exact",
        reg: float = 0.05,
        cost: str = "sqeuclidean",
        replace: bool = True,
        normalize_cost: bool = True,
        threshold: float = 1e-3,
        max_iterations: int = 2000,
    ):
        if method not in _OT_METHODS:
            raise ValueError(f"MinibatchOTCoupling: method={method!r} is not one of {_OT_METHODS}")
        if cost not in _OT_COSTS:
            raise ValueError(f"MinibatchOTCoupling: cost={cost!r} is not one of {_OT_COSTS}")
        if not reg > 0:
            raise ValueError(f"MinibatchOTCoupling: reg={reg!r} must be > 0")
        self.method = method
        self.reg = float(reg)
        self.cost = cost
        self.replace = bool(replace)
        self.normalize_cost = bool(normalize_cost)
        self.threshold = float(threshold)
        self.max_iterations = int(max_iterations)

    def plan(self, x0: Float[Array, "n0 ..."], x1: Float[Array, "n1 ..."]) -> Float[Array, "n0 n1"]:
        """The OT plan pi between the two batches (entries sum to 1)."""
        c = jax.lax.stop_gradient(pairwise_cost(x0, x1, self.cost))
        if self.normalize_cost:
            cmax = jnp.max(c)
            c = c / jnp.where(cmax > 0, cmax, 1.0)
        if self.method == "exact":
            return exact_ot_plan(c)
        return sinkhorn_plan(c, self.reg, self.threshold, self.max_iterations)

    def sample_indices(
        self, key: PRNGKeyArray, pi: Float[Array, "n0 n1"]
    ) -> tuple[Int[Array, " n1"], Int[Array, " n1"]]:
        """Index pairs ``(i, j)`` drawn from the plan, as described in the class docstring."""
        n1 = pi.shape[1]
        if self.replace:
            flat = _sample_categorical(key, pi.reshape(-1), n1)
            return flat // n1, flat % n1
        # Zero entries of the plan become -inf logits, so they are never drawn.
        logits = jnp.log(jnp.maximum(pi, 0.0))
        return jax.random.categorical(key, logits.T, axis=-1), jnp.arange(n1)

    def __call__(self, key, x0, x1, cond=None):
        # numpy inputs closed over by a traced function cannot be indexed with traced indices.
        x0, x1 = jnp.asarray(x0), jnp.asarray(x1)
        i, j = self.sample_indices(key, self.plan(x0, x1))
        if self.replace:
            x1 = x1[j]
            cond = jax.tree_util.tree_map(lambda c: jnp.asarray(c)[j], cond)
        return x0[i], x1, cond


# ----------------------------------------------------------------------------------------------------------------
# Data-dependent couplings
# ----------------------------------------------------------------------------------------------------------------


class AbstractDataDependentCoupling(AbstractCoupling):
    """A data-dependent coupling ``rho(x0, x1) = rho1(x1) rho0(x0 | x1)`` with

        x0 = m(x1, xi) + s(xi) ∘ zeta,    zeta ~ N(0, I),

    where ``xi`` is the conditioning information (a mask, a low-resolution image). The incoming base batch ``x0`` is
    ignored, and the returned ``cond`` is ``xi``: every field learned on these pairs is conditional, ``b(t, x, xi)``,
    and at sampling time the same ``xi`` is passed as ``cond``. A condition that came with the data (e.g. a label) is
    replaced by ``xi``; to condition on both, fold the label into ``xi`` with a coupling of your own.

    Subclasses give ``mean_and_condition`` (draws xi and computes m), ``noise_scale`` (s) and the flag ``coupled``.
    With ``coupled=False`` the pairs are independent, ``x0 ~ rho0`` (the model's base), but the fields still see
    ``xi``: the uncoupled baseline of the paper, conditioned on the same information.

    References:
        Albergo, Goldstein, Boffi, Ranganath, Vanden-Eijnden, "Stochastic interpolants with data-dependent
        couplings", ICML 2024.
    """

    coupled: eqx.AbstractVar[bool]

    @abc.abstractmethod
    def mean_and_condition(self, key: PRNGKeyArray, x1: Float[Array, "n ..."]) -> tuple[Float[Array, "n ..."], PyTree]:
        """The batch of conditional means ``m(x1, xi)`` and the batch of conditions ``xi``."""

    @abc.abstractmethod
    def noise_scale(self, xi: PyTree) -> Array | float:
        """The noise scale ``s(xi)``, broadcastable against x1."""

    def __call__(self, key, x0, x1, cond=None):
        del cond
        x1 = jnp.asarray(x1)
        kxi, kzeta = jax.random.split(key)
        m, xi = self.mean_and_condition(kxi, x1)
        if not self.coupled:
            return x0, x1, xi
        zeta = jax.random.normal(kzeta, x1.shape, x1.dtype)
        return m + self.noise_scale(xi) * zeta, x1, xi

    def sampling_pair(self, key, x0, x1, cond=None):
        x0, _, xi = self(key, x0, x1, cond)
        return x0, xi


class DataDependentCoupling(AbstractDataDependentCoupling):
    """A data-dependent coupling from a user function: ``m, xi = mean_fn(key, x1)`` and ``x0 = m + sigma zeta``.

    ``mean_fn`` acts on the whole batch and returns the batch of means and the batch of conditions. See
    :class:`AbstractDataDependentCoupling`.

    References:
        Albergo, Goldstein, Boffi, Ranganath, Vanden-Eijnden, "Stochastic interpolants with data-dependent
        couplings", ICML 2024.
    """

    mean_fn: Callable[[PRNGKeyArray, Array], tuple[Array, PyTree]] = eqx.field(static=True)
    sigma: float = eqx.field(static=True)
    coupled: bool = eqx.field(static=True)

    def __init__(
        self, mean_fn: Callable[[PRNGKeyArray, Array], tuple[Array, PyTree]], sigma: float = 1.0, coupled: bool = True
    ):
        self.mean_fn = mean_fn
        self.sigma = float(sigma)
        self.coupled = bool(coupled)

    def mean_and_condition(self, key, x1):
        return self.mean_fn(key, x1)

    def noise_scale(self, xi):
        return self.sigma


def _check_images(name: str, x1: Array, factor: int) -> None:
    if x1.ndim != 4:
        raise ValueError(f"{name}: expects a batch of channels-first images (n, C, H, W), got shape {x1.shape}")
    if factor and (x1.shape[2] % factor or x1.shape[3] % factor):
        raise ValueError(f"{name}: image size {x1.shape[2:]} is not divisible by factor={factor}")


def _tile_up(x: Float[Array, "n c h w"], factor: int) -> Float[Array, "n c h*factor w*factor"]:
    """Nearest-neighbour upsampling: every pixel becomes a factor x factor block."""
    return jnp.repeat(jnp.repeat(x, factor, axis=2), factor, axis=3)


def block_mean(x: Float[Array, "n c h w"], factor: int) -> Float[Array, "n c h/factor w/factor"]:
    """Average pooling over non-overlapping factor x factor blocks."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // factor, factor, w // factor, factor).mean(axis=(3, 5))


def masked_velocity(v: Float[Array, "*shape"], mask: Float[Array, "*mask_shape"]) -> Float[Array, "*shape"]:
    """``(1 - mask) ∘ v``: zero the velocity on known pixels, so in-painting keeps them fixed along the flow.

    Works per example or per batch; ``mask`` (e.g. ``(1, H, W)``) broadcasts over channels.
    """
    return (1.0 - mask) * v


class InpaintingCoupling(AbstractDataDependentCoupling):
    """In-painting coupling for channels-first images ``(C, H, W)``.

        xi ~ mask of tile x tile blocks, each kept (xi = 1) with probability keep_prob, per example,
        x0 = xi ∘ x1 + sigma (1 - xi) ∘ zeta,    cond = xi   (shape (1, H, W) per example, float),

    so the known pixels start at their data values and only the missing ones start from noise. A UNet with
    ``cond_channels=1`` takes the mask. The model keeps the known pixels fixed along the flow through
    :meth:`constrain` (:func:`masked_velocity`); ``model.solve_like(key, images)`` starts from
    ``xi ∘ x_known + sigma (1 - xi) ∘ zeta``.

    With ``with_image=True`` the condition is ``[xi, xi ∘ x1]`` (``1 + C`` channels): the uncoupled baseline
    (``coupled=False``, x0 from the base) needs the known pixels as a condition, since its x0 does not carry them.

    Args:
        tile: side of the square blocks the mask is made of (the last row/column of blocks is cropped when it does
            not divide H or W).
        keep_prob: probability that a block is known.
        sigma: noise scale on the missing pixels (1 in the paper).
        coupled: the data-dependent coupling (True) or the independent baseline with the same condition (False).
        with_image: append the masked image to the condition.

    References:
        Albergo, Goldstein, Boffi, Ranganath, Vanden-Eijnden, "Stochastic interpolants with data-dependent
        couplings", ICML 2024, Section 4.1.
    """

    tile: int = eqx.field(static=True)
    keep_prob: float = eqx.field(static=True)
    sigma: float = eqx.field(static=True)
    coupled: bool = eqx.field(static=True)
    with_image: bool = eqx.field(static=True)

    def __init__(
        self, tile: int = 2, keep_prob: float = 0.5, sigma: float = 1.0, coupled: bool = True, with_image: bool = False
    ):
        if int(tile) < 1:
            raise ValueError(f"InpaintingCoupling: tile={tile!r} must be a positive integer")
        if not 0.0 <= keep_prob <= 1.0:
            raise ValueError(f"InpaintingCoupling: keep_prob={keep_prob!r} must be in [0, 1]")
        self.tile = int(tile)
        self.keep_prob = float(keep_prob)
        self.sigma = float(sigma)
        self.coupled, self.with_image = bool(coupled), bool(with_image)

    def mask(self, key: PRNGKeyArray, x1: Float[Array, "n c h w"]) -> Float[Array, "n 1 h w"]:
        """A random tile mask per example: 1 on known pixels, 0 on missing ones."""
        _check_images("InpaintingCoupling", x1, 0)
        n, _, h, w = x1.shape
        grid = (n, 1, -(-h // self.tile), -(-w // self.tile))
        keep = jax.random.bernoulli(key, self.keep_prob, grid).astype(x1.dtype)
        return _tile_up(keep, self.tile)[:, :, :h, :w]

    def mean_and_condition(self, key, x1):
        xi = self.mask(key, x1)
        return xi * x1, jnp.concatenate([xi, xi * x1], axis=1) if self.with_image else xi

    def noise_scale(self, xi):
        return self.sigma * (1.0 - xi[:, :1])

    def constrain(self, v, cond):
        # Known pixels (mask 1) stay at their values along the whole path; the uncoupled baseline starts them from
        # noise, so it must move them.
        return v if cond is None or not self.coupled else masked_velocity(v, cond[:1])


class SuperResolutionCoupling(AbstractDataDependentCoupling):
    """Super-resolution coupling for channels-first images ``(C, H, W)``.

        xi = U(D(x1)),    x0 = xi + sigma zeta,    cond = xi   (same shape as x1),

    with D the average pooling over factor x factor blocks and U nearest-neighbour upsampling, so ``xi`` is the
    low-resolution image at full size. A UNet with ``cond_channels=C`` takes it. On 8x8 digits ``factor=2`` is
    4x4 -> 8x8.

    Args:
        factor: down-sampling factor; must divide H and W.
        sigma: noise scale added to the upsampled image.
        coupled: the data-dependent coupling (True) or the independent baseline with the same condition (False).

    References:
        Albergo, Goldstein, Boffi, Ranganath, Vanden-Eijnden, "Stochastic interpolants with data-dependent
        couplings", ICML 2024, Section 4.2.
    """

    factor: int = eqx.field(static=True)
    sigma: float = eqx.field(static=True)
    coupled: bool = eqx.field(static=True)

    def __init__(self, factor: int = 2, sigma: float = 0.1, coupled: bool = True):
        if int(factor) < 1:
            raise ValueError(f"SuperResolutionCoupling: factor={factor!r} must be a positive integer")
        self.factor = int(factor)
        self.sigma = float(sigma)
        self.coupled = bool(coupled)

    def low_resolution(self, x1: Float[Array, "n c h w"]) -> Float[Array, "n c h w"]:
        """``U(D(x1))``: the block means of x1, upsampled back to full size."""
        _check_images("SuperResolutionCoupling", x1, self.factor)
        return _tile_up(block_mean(x1, self.factor), self.factor)

    def mean_and_condition(self, key, x1):
        del key
        xi = self.low_resolution(x1)
        return xi, xi

    def noise_scale(self, xi):
        return self.sigma
