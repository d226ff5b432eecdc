r"""Multimarginal stochastic interpolants: one learned field that transports between all of K + 1 marginals.

Convention: marginal 0 is the base $x_0 \sim \rho_0$ (``N(0, I)`` by default) and marginals $1, \dots, K$ are the
data. The $x_k$ are independent, and a point $a$ of the simplex $\Delta^K$ ($a_k \ge 0$, $\sum_k a_k = 1$) picks

$$x(a) = \sum_{k=0}^K a_k x_k, \qquad g_k(a, x) = \mathbb E[x_k \mid x(a) = x],$$

so the vertex $e_k$ is marginal $k$. The fields minimise, with $a$ from any law on the simplex that covers the points
of interest (a Dirichlet law, optionally mixed with points on the edges),

$$L(\hat g) = \mathbb E_a \mathbb E \sum_k \big[|\hat g_k(a, x(a))|^2 - 2\, x_k \cdot \hat g_k(a, x(a))\big],$$

and satisfy $\sum_k a_k g_k(a, x) = x$. Along any path $a(t)$ in the simplex, the density $\rho_{a(t)}$ of
$x(a(t))$ solves the continuity equation with velocity $v(t, x) = \sum_k a_k'(t)\, g_k(a(t), x)$, so
$dX/dt = v(t, X)$ carries marginal $i$ to marginal $j$ along any path from $e_i$ to $e_j$; on the edge
$a(t) = (1 - t) e_i + t e_j$ this is $g_j - g_i$. One network therefore serves every pair.

When $x_0 \sim N(0, I)$ is independent of the rest, $\rho_a$ is $\rho$ of the other terms convolved with
$N(0, a_0^2 I)$, so its score is $\nabla \log \rho_a(x) = -\mathbb E[a_0 x_0 \mid x(a) = x] / a_0^2 = -g_0(a, x) / a_0$
wherever $a_0 > 0$.

The transport cost of a path is $C[a] = \int_0^1 \mathbb E\, |v(t, x(a(t)))|^2\, dt \ge W_2^2(\rho_i, \rho_j)$; it is
an expectation over the interpolant itself, so it needs no ODE solve, and it can be minimised over the path with $g$
frozen (:func:`optimize_path`).

References:
    Albergo, Boffi, Lindsey, Vanden-Eijnden, "Multimarginal generative modeling with stochastic interpolants",
    ICLR 2024.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Scalar

from genflow._base import AbstractGenerativeModel
from genflow._checks import as_shape
from genflow.distributions import AbstractDistribution, StandardNormal
from genflow.solvers import RK4, AbstractODESolver, Solution
from genflow.train import Trainer

# ---------------------------------------------------------------------------------------------------------------------
# Paths on the simplex


def _vertex_indices(i: ArrayLike, j: ArrayLike, num_marginals: int) -> tuple[Int[Array, ""], Int[Array, ""]]:
    """Endpoints as int arrays: a path is then traced, not static, so every pair shares one compiled program."""
    if not isinstance(i, jax.core.Tracer) and not isinstance(j, jax.core.Tracer):
        ii, jj = int(i), int(j)
        if not (0 <= ii < num_marginals and 0 <= jj < num_marginals) or ii == jj:
            raise ValueError(
                f"path endpoints i={ii}, j={jj} are invalid: need two different vertices in 0..{num_marginals - 1}"
            )
    return jnp.asarray(i, jnp.int32), jnp.asarray(j, jnp.int32)


def _as_time(t: ArrayLike) -> Float[Array, ""]:
    return jnp.asarray(t, dtype=jnp.result_type(float))


class AbstractSimplexPath(eqx.Module):
    r"""A path $a: [0, 1] \to \Delta^K$ with $a(0) = e_i$ and $a(1) = e_j$; its derivative comes from ``jax.jvp``."""

    i: eqx.AbstractVar[Int[Array, ""]]
    j: eqx.AbstractVar[Int[Array, ""]]
    num_marginals: eqx.AbstractVar[int]

    @abc.abstractmethod
    def __call__(self, t: Float[ArrayLike, ""]) -> Float[Array, " num_marginals"]:
        """The point $a(t)$ of the simplex."""

    def value_and_derivative(self, t: Float[ArrayLike, ""]) -> tuple[Float[Array, " m"], Float[Array, " m"]]:
        """$(a(t), a'(t))$ by forward-mode differentiation."""
        t = _as_time(t)
        return jax.jvp(self.__call__, (t,), (jnp.ones_like(t),))

    def derivative(self, t: Float[ArrayLike, ""]) -> Float[Array, " num_marginals"]:
        """$a'(t)$."""
        return self.value_and_derivative(t)[1]


class EdgePath(AbstractSimplexPath):
    r"""The straight edge $a(t) = (1 - t) e_i + t e_j$, whose transport velocity is $g_j - g_i$.

    Args:
        i: source vertex (marginal index, 0 is the base).
        j: target vertex.
        num_marginals: $K + 1$, the number of vertices.
    """

    i: Int[Array, ""]
    j: Int[Array, ""]
    num_marginals: int = eqx.field(static=True)

    def __init__(self, i: int, j: int, num_marginals: int):
        self.num_marginals = int(num_marginals)
        self.i, self.j = _vertex_indices(i, j, self.num_marginals)

    def __call__(self, t: Float[ArrayLike, ""]) -> Float[Array, " num_marginals"]:
        t = _as_time(t)
        e_i = jax.nn.one_hot(self.i, self.num_marginals, dtype=t.dtype)
        e_j = jax.nn.one_hot(self.j, self.num_marginals, dtype=t.dtype)
        return (1 - t) * e_i + t * e_j


class FourierPath(AbstractSimplexPath):
    r"""A learnable path through the interior of the simplex.

    $$w_k(t) = (1 - t)\,\delta_{ki} + t\,\delta_{kj}
    + 4t(1 - t)\,\mathrm{softplus}\Big(\theta_{0k} + \sum_{m=1}^M \theta_{mk} \cos(\pi m t)\Big),
    \qquad a(t) = \frac{w(t)}{\sum_k w_k(t)}.$$

    Every $w_k \ge 0$ and $\sum_k w_k \ge 1$, so $a(t)$ lies in the simplex for all $\theta$, and the bump
    $4t(1-t)$ vanishes exactly at both ends, so $a(0) = e_i$ and $a(1) = e_j$ exactly (a $\sin \pi t$ bump would
    leave a rounding error at $t = 1$). The bump acts on every vertex, $i$ and $j$ included: it can leave the edge
    (through the base or another marginal) and also change the speed along it.

    Args:
        i: source vertex.
        j: target vertex.
        num_marginals: $K + 1$.
        num_modes: $M$, the number of cosine modes.
        init_bias: initial $\theta_{0k}$; the default $-4$ starts within about $2\%$ of the straight edge
            (a bias of $-\infty$ would be the edge itself, where the gradient vanishes).
    """

    theta: Float[Array, "num_modes_plus_1 num_marginals"]
    i: Int[Array, ""]
    j: Int[Array, ""]
    num_marginals: int = eqx.field(static=True)
    num_modes: int = eqx.field(static=True)

    def __init__(self, i: int, j: int, num_marginals: int, num_modes: int = 4, init_bias: float = -4.0):
        if int(num_modes) < 0:
            raise ValueError(f"num_modes={num_modes} is invalid: must be a non-negative integer")
        self.num_marginals, self.num_modes = int(num_marginals), int(num_modes)
        self.i, self.j = _vertex_indices(i, j, self.num_marginals)
        theta = jnp.zeros((self.num_modes + 1, self.num_marginals), jnp.result_type(float))
        self.theta = theta.at[0].set(init_bias)

    def __call__(self, t: Float[ArrayLike, ""]) -> Float[Array, " num_marginals"]:
        t = _as_time(t)
        basis = jnp.cos(jnp.pi * jnp.arange(self.num_modes + 1, dtype=t.dtype) * t)
        bump = 4 * t * (1 - t) * jax.nn.softplus(basis @ self.theta)
        e_i = jax.nn.one_hot(self.i, self.num_marginals, dtype=t.dtype)
        e_j = jax.nn.one_hot(self.j, self.num_marginals, dtype=t.dtype)
        w = (1 - t) * e_i + t * e_j + bump
        return w / jnp.sum(w)


# ---------------------------------------------------------------------------------------------------------------------
# The model


class MultimarginalInterpolant(AbstractGenerativeModel):
    r"""Multimarginal stochastic interpolant: fields $g_k(a, x) = \mathbb E[x_k \mid x(a) = x]$, $k = 0..K$.

    Args:
        net: per-example field ``net(a, x) -> (K + 1, *data_shape)`` (see :func:`genflow.nn.multimarginal_net`), or
            any callable with that signature: an analytic field works too, which is what the oracle tests use.
        marginals: the $K$ data distributions $x_1, \dots, x_K$ (anything with ``sample(key, num)``).
        data_shape: shape of one example.
        base: $x_0$, ``N(0, I)`` by default. ``score`` assumes it is ``N(0, I)``.
        dirichlet_alpha: concentration of the symmetric Dirichlet law of $a$ in the loss (1: uniform on the simplex).
        edge_fraction: fraction of the loss's $a$ drawn uniformly on the edges instead (a random pair of vertices and
            $t \sim U[0, 1]$). Edges have no mass under a Dirichlet law, yet they carry the pairwise transports; any
            law with full support on the simplex has the same minimiser.
        sampler: default ODE solver of ``transport`` and ``sample`` (``RK4(50)``).
        num_samples: samples per marginal drawn by ``loss`` when ``batch`` is None.

    Training: the loss samples its own marginals, so ``Trainer.fit(model, model.base, ...)`` works (the batch only
    sets the sample count); or pass a tuple of $K + 1$ arrays $(x_0, \dots, x_K)$ to use given samples.

    References:
        Albergo, Boffi, Lindsey, Vanden-Eijnden, "Multimarginal generative modeling with stochastic interpolants",
        ICLR 2024.
    """

    net: Callable
    marginals: tuple[AbstractDistribution, ...]
    base: AbstractDistribution
    sampler: AbstractODESolver
    data_shape: tuple[int, ...] = eqx.field(static=True)
    dirichlet_alpha: float = eqx.field(static=True)
    edge_fraction: float = eqx.field(static=True)
    num_samples: int = eqx.field(static=True)
    # The distributions are fixed targets; their samples are reparameterised, so they would otherwise get gradients.
    frozen_fields: ClassVar[tuple[str, ...]] = ("marginals", "base")

    def __init__(
        self,
        net: Callable,
        marginals: Sequence[AbstractDistribution],
        data_shape,
        base: AbstractDistribution | None = None,
        dirichlet_alpha: float = 1.0,
        sampler: AbstractODESolver | None = None,
        num_samples: int = 256,
        edge_fraction: float = 0.0,
    ):
        self.net = net
        self.marginals = tuple(marginals)
        self.data_shape = as_shape(data_shape)
        self.base = StandardNormal(self.data_shape) if base is None else base
        self.dirichlet_alpha = float(dirichlet_alpha)
        self.sampler = RK4(num_steps=50) if sampler is None else sampler
        self.num_samples = int(num_samples)
        self.edge_fraction = float(edge_fraction)
        if not self.marginals:
            raise ValueError("marginals is empty: a multimarginal interpolant needs at least one data marginal")
        if not self.dirichlet_alpha > 0:
            raise ValueError(f"dirichlet_alpha={dirichlet_alpha} is invalid: must be positive")
        if not 0.0 <= self.edge_fraction <= 1.0:
            raise ValueError(f"edge_fraction={edge_fraction} is invalid: must be in [0, 1]")
        for k, dist in enumerate(self.distributions):
            if tuple(dist.event_shape) != self.data_shape:
                raise ValueError(f"marginal {k} has event_shape {dist.event_shape}, not data_shape {self.data_shape}")

    @property
    def num_marginals(self) -> int:
        """$K + 1$: the base and the $K$ data marginals."""
        return len(self.marginals) + 1

    @property
    def distributions(self) -> tuple[AbstractDistribution, ...]:
        """$(x_0, x_1, \\dots, x_K)$: the base first."""
        return (self.base, *self.marginals)

    # -- fields -----------------------------------------------------------------------------------------------
    def fields(
        self, a: Float[Array, " num_marginals"], x: Float[Array, "*event"]
    ) -> Float[Array, " num_marginals *event"]:
        """$g(a, x)$, one row per marginal, for one example."""
        return self.net(a, x)

    def score(self, a: Float[Array, " num_marginals"], x: Float[Array, "*event"]) -> Float[Array, "*event"]:
        r"""$\nabla \log \rho_a(x) = -g_0(a, x) / a_0$ for one example; needs $x_0 \sim N(0, I)$ and $a_0 > 0$."""
        return -self.fields(a, x)[0] / a[0]

    def velocity(
        self, path: AbstractSimplexPath, t: Float[ArrayLike, ""], x: Float[Array, "*event"]
    ) -> Float[Array, "*event"]:
        r"""$v(t, x) = \sum_k a_k'(t)\, g_k(a(t), x)$ for one example."""
        a, da = path.value_and_derivative(t)
        return jnp.tensordot(da, self.fields(a, x), axes=1)

    # -- samples of the interpolant ---------------------------------------------------------------------------
    def sample_marginals(self, key: PRNGKeyArray, num: int) -> Float[Array, "num_marginals num ..."]:
        """Independent samples of every marginal, stacked: row $k$ holds $x_k$."""
        keys = jax.random.split(key, self.num_marginals)
        return jnp.stack([dist.sample(k, num) for dist, k in zip(self.distributions, keys, strict=True)])

    def sample_simplex(self, key: PRNGKeyArray, num: int, dtype=None) -> Float[Array, "num num_marginals"]:
        r"""Points $a$ of the loss: $\mathrm{Dirichlet}(\alpha)$, a fraction ``edge_fraction`` of them on the edges."""
        k_dir, k_i, k_j, k_t, k_mix = jax.random.split(key, 5)
        m, dtype = self.num_marginals, jnp.result_type(float) if dtype is None else dtype
        a = jax.random.dirichlet(k_dir, jnp.full((m,), self.dirichlet_alpha, dtype), (num,), dtype=dtype)
        if self.edge_fraction == 0:
            return a
        i = jax.random.randint(k_i, (num,), 0, m)
        j = (i + jax.random.randint(k_j, (num,), 1, m)) % m  # uniform over the vertices other than i
        t = jax.random.uniform(k_t, (num, 1), dtype)
        edge = (1 - t) * jax.nn.one_hot(i, m, dtype=dtype) + t * jax.nn.one_hot(j, m, dtype=dtype)
        return jnp.where(jax.random.bernoulli(k_mix, self.edge_fraction, (num, 1)), edge, a)

    @staticmethod
    def interpolate(
        a: Float[Array, "*batch num_marginals"], xs: Float[Array, "num_marginals *batch ..."]
    ) -> Float[Array, "*batch ..."]:
        r"""$x(a) = \sum_k a_k x_k$, with $a$ per example (leading axes) or one $a$ shared by all."""
        a = jnp.moveaxis(a, -1, 0)
        a = a.reshape(a.shape + (1,) * (xs.ndim - a.ndim))
        return jnp.sum(a * xs, axis=0)

    def _loss_samples(self, key: PRNGKeyArray, batch: Any) -> Float[Array, "num_marginals n ..."]:
        if isinstance(batch, (tuple, list)):
            if len(batch) != self.num_marginals:
                raise ValueError(f"a batch of samples needs {self.num_marginals} arrays (x_0..x_K), got {len(batch)}")
            return jnp.stack([jnp.asarray(x) for x in batch])
        num = self.num_samples if batch is None else jax.tree_util.tree_leaves(batch)[0].shape[0]
        return self.sample_marginals(key, num)

    def loss(self, key: PRNGKeyArray, batch: Any = None) -> Scalar:
        r"""$\sum_k \mathbb E[|\hat g_k(a, x(a))|^2 - 2 x_k \cdot \hat g_k(a, x(a))]$, $a$ from :meth:`sample_simplex`.

        ``batch``: None (draw ``num_samples`` per marginal), an array or pytree whose leading axis sets the number
        of samples (its values are not used), or a tuple of $K + 1$ arrays used as the samples $x_0, \dots, x_K$.
        """
        k_x, k_a = jax.random.split(key)
        xs = self._loss_samples(k_x, batch)
        n = xs.shape[1]
        a = self.sample_simplex(k_a, n, xs.dtype)
        g = jax.vmap(self.fields)(a, self.interpolate(a, xs))
        x_by_example = jnp.moveaxis(xs, 0, 1)
        per_example = jnp.sum((g**2 - 2 * x_by_example * g).reshape(n, -1), axis=-1)
        return jnp.mean(per_example)

    # -- transport --------------------------------------------------------------------------------------------
    def transport(
        self,
        x: Float[Array, "num ..."],
        i: int,
        j: int,
        *,
        path: AbstractSimplexPath | None = None,
        solver: AbstractODESolver | None = None,
        save_trajectory: bool = False,
    ) -> Solution:
        r"""Carry samples ``x`` of marginal $i$ to marginal $j$: $dX/dt = \sum_k a_k'(t) g_k(a(t), X)$, $t: 0 \to 1$.

        Args:
            x: samples of marginal ``i``.
            i: source vertex (0 is the base).
            j: target vertex.
            path: a path from $e_i$ to $e_j$; the straight edge (velocity $g_j - g_i$) by default.
            solver: ODE solver; the model's ``sampler`` by default.
            save_trajectory: keep the whole trajectory in the returned ``Solution``.

        Returns:
            A ``Solution`` with the images ``y`` and the ``nfe``. All pairs share one compiled program, as the
            endpoints are traced.
        """
        path = EdgePath(i, j, self.num_marginals) if path is None else path
        _check_path(path, i, j, self.num_marginals)
        solver = self.sampler if solver is None else solver
        return _transport(self, x, path, solver, save_trajectory)

    def solve(
        self,
        key: PRNGKeyArray,
        num: int,
        *,
        marginal: int = 1,
        sampler: AbstractODESolver | None = None,
        save_trajectory: bool = False,
    ) -> Solution:
        """Base samples pushed to ``marginal`` (1..K) along the edge $e_0 \\to e_k$, as a :class:`Solution`."""
        return self.transport(self.base.sample(key, num), 0, marginal, solver=sampler, save_trajectory=save_trajectory)

    def sample(
        self, key: PRNGKeyArray, num: int, *, marginal: int = 1, sampler: AbstractODESolver | None = None
    ) -> Float[Array, "num ..."]:
        """Samples of ``marginal`` (1..K), pushed from the base along the edge $e_0 \\to e_k$."""
        return self.solve(key, num, marginal=marginal, sampler=sampler).y

    def all_pairs(
        self, xs: Sequence[Float[Array, "num ..."]], *, solver: AbstractODESolver | None = None
    ) -> Float[Array, "num_marginals num_marginals num ..."]:
        """``out[i, j]`` is ``xs[i]`` carried from marginal $i$ to $j$ along the edge (``out[i, i] = xs[i]``)."""
        if len(xs) != self.num_marginals:
            raise ValueError(f"all_pairs needs {self.num_marginals} sample arrays (x_0..x_K), got {len(xs)}")
        rows = []
        for i, x in enumerate(xs):
            rows.append(
                jnp.stack(
                    [x if i == j else self.transport(x, i, j, solver=solver).y for j in range(self.num_marginals)]
                )
            )
        return jnp.stack(rows)

    # -- transport cost ---------------------------------------------------------------------------------------
    def transport_cost(
        self,
        path: AbstractSimplexPath,
        xs: Float[Array, "num_marginals num ..."],
        *,
        num_times: int = 32,
        key: PRNGKeyArray | None = None,
    ) -> Scalar:
        r"""Monte Carlo estimate of $C[a] = \int_0^1 \mathbb E\,|\sum_k a_k'(t)\, g_k(a(t), x(a(t)))|^2\, dt$.

        The expectation is over the interpolant $x(a(t)) = \sum_k a_k(t) x_k$ built from the independent samples
        ``xs`` (from :meth:`sample_marginals`), so no ODE is solved; with the exact $g$ this equals the kinetic
        energy of the transport along the path. The time integral is the midpoint rule on ``num_times`` cells, or,
        given ``key``, one uniform time per cell (stratified, unbiased).
        """
        offset = 0.5 if key is None else jax.random.uniform(key, (num_times,), xs.dtype)
        ts = (jnp.arange(num_times, dtype=xs.dtype) + offset) / num_times

        def mean_sq_speed(t):
            a, da = path.value_and_derivative(t)
            g = jax.vmap(self.fields, in_axes=(None, 0))(a, self.interpolate(a, xs))
            v = jnp.tensordot(g, da, axes=((1,), (0,)))
            return jnp.mean(jnp.sum(v.reshape(v.shape[0], -1) ** 2, axis=-1))

        return jnp.mean(jax.vmap(mean_sq_speed)(ts))


def _check_path(path: AbstractSimplexPath, i: int, j: int, num_marginals: int) -> None:
    if path.num_marginals != num_marginals:
        raise ValueError(f"path has num_marginals={path.num_marginals}, the model has {num_marginals}")
    concrete = not any(isinstance(v, jax.core.Tracer) for v in (path.i, path.j, i, j))
    if concrete and (int(path.i), int(path.j)) != (int(i), int(j)):
        raise ValueError(f"path runs from {int(path.i)} to {int(path.j)}, but transport was asked for {i} -> {j}")


@eqx.filter_jit
def _transport(
    model: MultimarginalInterpolant,
    x: Array,
    path: AbstractSimplexPath,
    solver: AbstractODESolver,
    save_trajectory: bool,
) -> Solution:
    field = lambda t, y: jax.vmap(model.velocity, in_axes=(None, None, 0))(path, t, y)
    return solver.solve(field, x, 0.0, 1.0, save_trajectory=save_trajectory)


def optimize_path(
    model: MultimarginalInterpolant,
    path: AbstractSimplexPath,
    key: PRNGKeyArray,
    num_steps: int,
    lr: float = 1e-2,
    *,
    batch_size: int = 256,
    num_times: int = 16,
    optimizer: optax.GradientTransformation | None = None,
) -> tuple[AbstractSimplexPath, Float[Array, " num_steps"]]:
    r"""Minimise the transport cost $C[a]$ over the path's parameters with the fields $g$ frozen.

    Each step draws fresh marginal samples and stratified times, so the objective is an unbiased estimate of $C[a]$; all
    steps run in one ``lax.scan`` of the :class:`~genflow.train.Trainer`. Only the inexact arrays of ``path`` are
    trained: the model is not differentiated.

    Args:
        model: the (trained or analytic) multimarginal interpolant.
        path: the initial path, e.g. ``FourierPath(i, j, model.num_marginals)``.
        key: randomness for the samples and times.
        num_steps: optimizer steps.
        lr: Adam learning rate (ignored when ``optimizer`` is given).
        batch_size: samples per marginal per step.
        num_times: time cells per step.
        optimizer: an optax transformation; ``optax.adam(lr)`` by default.

    Returns:
        The optimised path and the cost estimate at every step.

    Note:
        The problem is not convex. For Gaussian marginals a small move off an edge scales the covariance of
        $x(a)$ down to first order, which raises the cost where the edge's standard deviation is convex in $t$; in
        the 2D experiments the optimised paths stay close to the edge and mainly change the speed along it.

    References:
        Albergo, Boffi, Lindsey, Vanden-Eijnden, "Multimarginal generative modeling with stochastic interpolants",
        ICLR 2024 (path optimisation with a frozen $g$).
    """
    optimizer = optax.adam(lr) if optimizer is None else optimizer
    # The Trainer's scan runs every step in one jit call and returns the per-step losses; the EMA is not used.
    trainer = Trainer(
        optimizer, int(num_steps), int(batch_size), steps_per_call=int(num_steps), progress=False, mesh=None
    )
    objective = _PathCost(path, model, int(num_times))
    state, costs, _ = trainer.train_chunk(trainer.init(objective, key), model.base)
    return state.model.path, costs


class _PathCost(eqx.Module):
    """The transport cost of ``path`` as a training loss; the batch only sets the number of samples per marginal."""

    path: AbstractSimplexPath
    model: MultimarginalInterpolant
    num_times: int = eqx.field(static=True)
    # Only the path is optimised: the fields g and the marginals stay fixed.
    frozen_fields: ClassVar[tuple[str, ...]] = ("model",)

    def loss(self, key: PRNGKeyArray, batch: Array) -> Scalar:
        k_x, k_t = jax.random.split(key)
        xs = self.model.sample_marginals(k_x, batch.shape[0])
        return self.model.transport_cost(self.path, xs, num_times=self.num_times, key=k_t)
