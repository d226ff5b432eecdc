"""Bijections: invertible maps with tractable log-Jacobian determinants, acting on one example.

Convention: ``transform`` is the sampling direction (base -> data), ``inverse`` the density direction
(data -> base). Both return the log-absolute-determinant of their own Jacobian, so for any bijection

    transform_and_log_det(x) = (y, log|det dy/dx|),   inverse_and_log_det(y) = (x, log|det dx/dy|),

and the two log-determinants of a round trip sum to zero. Every bijection acts on a single example of shape
``shape`` with an optional condition of shape ``cond_shape``; callers batch with ``jax.vmap``.

References:
    Papamakarios, Nalisnick, Rezende, Mohamed, Lakshminarayanan, "Normalizing Flows for Probabilistic Modeling
    and Inference", JMLR 2021.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Scalar

from genflow._checks import as_shape


def as_cond_shape(cond_shape: Any) -> tuple[int, ...] | None:
    """``None``/0 (unconditional) or a shape tuple."""
    if cond_shape is None or (not hasattr(cond_shape, "__len__") and int(cond_shape) == 0):
        return None
    return as_shape(cond_shape)


class AbstractBijection(eqx.Module):
    """An invertible map on one example, with the log-determinants of both directions.

    Subclasses implement ``transform_and_log_det`` and ``inverse_and_log_det`` and declare ``shape`` (the shape
    of one example) and ``cond_shape`` (the shape of one condition, or ``None`` when unconditional).
    """

    shape: eqx.AbstractVar[tuple[int, ...]]
    cond_shape: eqx.AbstractVar[tuple[int, ...] | None]

    @abc.abstractmethod
    def transform_and_log_det(self, x: Array, cond: Array | None = None) -> tuple[Array, Scalar]:
        """``(y, log|det dy/dx|)`` with ``y = f(x)``."""

    @abc.abstractmethod
    def inverse_and_log_det(self, y: Array, cond: Array | None = None) -> tuple[Array, Scalar]:
        """``(x, log|det dx/dy|)`` with ``x = f^{-1}(y)``."""

    def transform(self, x: Array, cond: Array | None = None) -> Array:
        """``f(x)``."""
        return self.transform_and_log_det(x, cond)[0]

    def inverse(self, y: Array, cond: Array | None = None) -> Array:
        """``f^{-1}(y)``."""
        return self.inverse_and_log_det(y, cond)[0]


def _check_compatible(bijections: Sequence[AbstractBijection]) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    shapes = {b.shape for b in bijections}
    if len(shapes) != 1:
        raise ValueError(f"bijections act on different shapes {sorted(shapes)}; a chain needs one shape")
    conds = {b.cond_shape for b in bijections} - {None}
    if len(conds) > 1:
        raise ValueError(f"bijections take different condition shapes {sorted(conds)}")
    return shapes.pop(), (conds.pop() if conds else None)


def _cond_for(bijection: AbstractBijection, cond: Array | None) -> Array | None:
    # Unconditional layers of a conditional chain must not receive the condition.
    return None if bijection.cond_shape is None else cond


class Identity(AbstractBijection):
    """``f(x) = x`` with log-determinant 0."""

    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True, default=None)

    def __init__(self, shape, cond_shape=None):
        self.shape, self.cond_shape = as_shape(shape), as_cond_shape(cond_shape)

    def transform_and_log_det(self, x, cond=None):
        return x, jnp.zeros((), x.dtype)

    def inverse_and_log_det(self, y, cond=None):
        return y, jnp.zeros((), y.dtype)


class Chain(AbstractBijection):
    r"""Composition $f = f_K \circ \dots \circ f_1$; log-determinants add.

    The layers are applied in Python order, which unrolls them in the compiled program. For many identical
    layers, :class:`Scan` compiles one layer and loops over stacked parameters instead.
    """

    bijections: tuple[AbstractBijection, ...]
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, bijections: Sequence[AbstractBijection]):
        self.bijections = tuple(bijections)
        if not self.bijections:
            raise ValueError("Chain needs at least one bijection")
        self.shape, self.cond_shape = _check_compatible(self.bijections)

    def transform_and_log_det(self, x, cond=None):
        total = jnp.zeros((), x.dtype)
        for b in self.bijections:
            x, ld = b.transform_and_log_det(x, _cond_for(b, cond))
            total = total + ld
        return x, total

    def inverse_and_log_det(self, y, cond=None):
        total = jnp.zeros((), y.dtype)
        for b in reversed(self.bijections):
            y, ld = b.inverse_and_log_det(y, _cond_for(b, cond))
            total = total + ld
        return y, total


class Scan(AbstractBijection):
    """A chain of ``num_layers`` structurally identical layers stored with stacked parameters.

    ``layers`` is one bijection whose array leaves carry a leading axis of size ``num_layers`` (build it with
    :meth:`from_keys`). The layers run in a ``lax.scan``, so compile time does not grow with the depth.
    """

    layers: AbstractBijection
    num_layers: int = eqx.field(static=True)
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, layers: AbstractBijection, num_layers: int):
        self.layers, self.num_layers = layers, int(num_layers)
        self.shape, self.cond_shape = layers.shape, layers.cond_shape

    @classmethod
    def from_keys(cls, make_layer: Callable[[PRNGKeyArray], AbstractBijection], keys: PRNGKeyArray) -> Scan:
        """Stack ``make_layer(key)`` over ``keys`` (one layer per key)."""
        # One compiled program builds all layers: eager initialisation dispatches (and on a cold cache compiles)
        # every primitive separately, about twice the CPU time.
        return cls(eqx.filter_jit(eqx.filter_vmap(make_layer))(keys), keys.shape[0])

    def _run(self, x, cond, method: str, reverse: bool):
        params, static = eqx.partition(self.layers, eqx.is_array)

        def step(carry, p):
            y, ld = getattr(eqx.combine(p, static), method)(carry, cond)
            return y, ld

        y, lds = jax.lax.scan(step, x, params, reverse=reverse)
        return y, jnp.sum(lds)

    def transform_and_log_det(self, x, cond=None):
        return self._run(x, cond, "transform_and_log_det", reverse=False)

    def inverse_and_log_det(self, y, cond=None):
        return self._run(y, cond, "inverse_and_log_det", reverse=True)


class Invert(AbstractBijection):
    """Swap the directions of a bijection: ``transform`` is the inner ``inverse`` and vice versa.

    A masked autoregressive layer is parallel in one direction and sequential in the other; inverting it picks
    which of density evaluation (MAF) and sampling (IAF) is the fast one.
    """

    bijection: AbstractBijection
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True)

    def __init__(self, bijection: AbstractBijection):
        self.bijection = bijection
        self.shape, self.cond_shape = bijection.shape, bijection.cond_shape

    def transform_and_log_det(self, x, cond=None):
        return self.bijection.inverse_and_log_det(x, cond)

    def inverse_and_log_det(self, y, cond=None):
        return self.bijection.transform_and_log_det(y, cond)


class Permutation(AbstractBijection):
    """``y = x[perm]``: a volume-preserving reordering of the coordinates of a vector.

    The permutation is an integer array leaf (never trained), so layers with different permutations can be
    stacked in a :class:`Scan`.
    """

    perm: Int[Array, " dim"]
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True, default=None)

    def __init__(self, perm: ArrayLike):
        self.perm = jnp.asarray(perm, jnp.int32)
        if self.perm.ndim != 1:
            raise ValueError(f"Permutation: perm must be 1D, got shape {self.perm.shape}")
        self.shape, self.cond_shape = (self.perm.shape[0],), None

    @classmethod
    def reverse(cls, dim: int) -> Permutation:
        """Reverse the order of the coordinates."""
        return cls(jnp.arange(int(dim))[::-1])

    @classmethod
    def random(cls, key: PRNGKeyArray, dim: int) -> Permutation:
        """A uniformly random permutation."""
        return cls(jax.random.permutation(key, int(dim)))

    def transform_and_log_det(self, x, cond=None):
        return x[self.perm], jnp.zeros((), x.dtype)

    def inverse_and_log_det(self, y, cond=None):
        return y[jnp.argsort(self.perm)], jnp.zeros((), y.dtype)


class Affine(AbstractBijection):
    r"""Elementwise affine map $y = \mu + e^{s} \odot x$, $\log|\det| = \sum_i s_i$ (identity at init).

    With :meth:`from_data` this is Glow's ActNorm: parameters chosen so that the density direction maps a batch
    to zero mean and unit variance per coordinate.

    References:
        Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS 2018.
    """

    loc: Float[Array, " dim"]
    log_scale: Float[Array, " dim"]
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True, default=None)

    def __init__(self, loc: ArrayLike, log_scale: ArrayLike | None = None):
        dtype = jnp.result_type(float)
        self.loc = jnp.asarray(loc, dtype)
        self.log_scale = jnp.zeros_like(self.loc) if log_scale is None else jnp.asarray(log_scale, dtype)
        self.loc, self.log_scale = jnp.broadcast_arrays(self.loc, self.log_scale)
        self.shape, self.cond_shape = self.loc.shape, None

    @classmethod
    def identity(cls, dim: int) -> Affine:
        return cls(jnp.zeros((int(dim),)))

    @classmethod
    def from_data(cls, x: Float[Array, "num dim"]) -> Affine:
        """ActNorm's data-dependent initialisation: the inverse standardises the batch ``x``."""
        return cls(jnp.mean(x, axis=0), jnp.log(jnp.std(x, axis=0)))

    def transform_and_log_det(self, x, cond=None):
        return self.loc + jnp.exp(self.log_scale) * x, jnp.sum(self.log_scale)

    def inverse_and_log_det(self, y, cond=None):
        return (y - self.loc) * jnp.exp(-self.log_scale), -jnp.sum(self.log_scale)


class LULinear(AbstractBijection):
    r"""Invertible linear map $y = W x + b$ with $W = L U$ in LU form.

    $L$ is unit lower triangular and $U$ upper triangular with diagonal $e^{s}$, so

    $$\log|\det W| = \sum_i s_i,$$

    and the inverse is two triangular solves. Initialised at the identity. (Glow's ``P L U`` with a fixed
    permutation ``P``; compose with :class:`Permutation` for it.)

    References:
        Kingma & Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS 2018.
    """

    lower: Float[Array, "dim dim"]
    upper: Float[Array, "dim dim"]
    log_diag: Float[Array, " dim"]
    bias: Float[Array, " dim"]
    shape: tuple[int, ...] = eqx.field(static=True)
    cond_shape: tuple[int, ...] | None = eqx.field(static=True, default=None)

    def __init__(self, dim: int, *, key: PRNGKeyArray | None = None, init_scale: float = 0.0):
        """Identity at init; with ``key`` and ``init_scale > 0`` the triangular parts start random (for tests)."""
        dim = int(dim)
        dtype = jnp.result_type(float)
        zeros = jnp.zeros((dim, dim), dtype)
        if key is None or init_scale == 0.0:
            lo, up, ld = zeros, zeros, jnp.zeros((dim,), dtype)
        else:
            k1, k2, k3 = jax.random.split(key, 3)
            lo, up = (init_scale * jax.random.normal(k, (dim, dim), dtype) for k in (k1, k2))
            ld = init_scale * jax.random.normal(k3, (dim,), dtype)
        self.lower, self.upper, self.log_diag = lo, up, ld
        self.bias = jnp.zeros((dim,), dtype)
        self.shape, self.cond_shape = (dim,), None

    def _factors(self):
        eye = jnp.eye(self.shape[0], dtype=self.lower.dtype)
        lower = jnp.tril(self.lower, -1) + eye
        upper = jnp.triu(self.upper, 1) + jnp.diag(jnp.exp(self.log_diag))
        return lower, upper

    @property
    def weight(self) -> Float[Array, "dim dim"]:
        lower, upper = self._factors()
        return lower @ upper

    def transform_and_log_det(self, x, cond=None):
        lower, upper = self._factors()
        return lower @ (upper @ x) + self.bias, jnp.sum(self.log_diag)

    def inverse_and_log_det(self, y, cond=None):
        lower, upper = self._factors()
        z = solve_triangular(lower, y - self.bias, lower=True, unit_diagonal=True)
        return solve_triangular(upper, z, lower=False), -jnp.sum(self.log_diag)
