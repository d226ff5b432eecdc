"""A normalizing flow: a base distribution pushed forward by a bijection, and its training objectives.

With ``x = f(z)``, ``z ~ p_Z`` and ``f`` the bijection's ``transform``,

    log q(x) = log p_Z(f^{-1}(x)) + log|det d f^{-1}/dx|,

so ``log_prob`` runs the bijection's ``inverse`` and ``sample_and_log_prob`` its ``transform``:
``log q(f(z)) = log p_Z(z) - log|det df/dz|``. Training is by maximum likelihood on data or by reverse KL
against an unnormalised target (Boltzmann-generator style); the objective is a strategy module.

References:
    Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015.
    Papamakarios, Nalisnick, Rezende, Mohamed, Lakshminarayanan, "Normalizing Flows for Probabilistic Modeling
    and Inference", JMLR 2021.
    Noé, Olsson, Köhler, Wu, "Boltzmann generators", Science 2019.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from genflow._base import AbstractDensityModel, split_batch
from genflow._checks import as_shape
from genflow.distributions import AbstractDistribution, StandardNormal
from genflow.flows._bijections import AbstractBijection


class AbstractFlowObjective(eqx.Module):
    """A training loss for a flow: ``objective(flow, key, batch) -> scalar``."""

    @abc.abstractmethod
    def __call__(self, flow: Any, key: PRNGKeyArray, batch: Any) -> Scalar:
        """The minibatch loss."""


class MaximumLikelihood(AbstractFlowObjective):
    r"""Negative log-likelihood of the data, $L = -\frac1n \sum_i \log q(x_i \mid c_i)$ (forward KL + const)."""

    def __call__(self, flow, key, batch):
        x, cond = split_batch(batch)
        return -jnp.mean(flow.log_prob(x, cond=cond))


class ReverseKL(AbstractFlowObjective):
    r"""Reverse KL to an unnormalised target $\tilde p = Z p$ with reparametrised samples $x = f(z)$:

    $$L = \mathbb E_{z \sim p_Z}\big[\log q(f(z)) - \log \tilde p(f(z))\big] = \mathrm{KL}(q \,\|\, p) - \log Z.$$

    The batch only sets the number of samples (its leading size) unless ``num_samples`` is given; the data are
    never used. The target's arrays are frozen (``frozen_fields``).

    Args:
        target: anything with a batched ``log_prob`` (an ``AbstractEnergy`` such as ``Banana``).
        num_samples: samples per loss evaluation (default: the batch size).

    References:
        Rezende & Mohamed, "Variational Inference with Normalizing Flows", ICML 2015.
        Noé, Olsson, Köhler, Wu, "Boltzmann generators", Science 2019.
    """

    target: Any
    num_samples: int | None = eqx.field(static=True, default=None)
    frozen_fields: ClassVar[tuple[str, ...]] = ("target",)

    def __call__(self, flow, key, batch):
        x, cond = split_batch(batch) if batch is not None else (None, None)
        if cond is not None:
            raise ValueError("ReverseKL trains an unconditional flow; the batch carries a condition")
        if self.num_samples is None and x is None:
            raise ValueError("ReverseKL without a batch needs num_samples")
        n = self.num_samples if self.num_samples is not None else x.shape[0]
        y, log_q = flow.sample_and_log_prob(key, n)
        return jnp.mean(log_q - self.target.log_prob(y))


class ForceMatching(AbstractFlowObjective):
    r"""Likelihood plus force matching on data that carry reference forces:

    $$L = w_{\mathrm{nll}}\, \mathbb E[-\log q(x)] + w_f\, \mathbb E\,\|\nabla_x \log q(x) - F(x)\|^2,$$

    with $F = \nabla_x \log p = -\nabla_x U$ the reference force (the score of the target). The batch is a dict
    with ``"x"`` and ``"forces"`` (see :class:`WithForces`). The gradient of the loss differentiates
    $\nabla_x \log q$ once more, which is why the flow should be smooth: spline flows have piecewise-defined
    second derivatives, so their forces jump at the knots.

    Args:
        nll_weight: ``w_nll``.
        force_weight: ``w_f``.

    References:
        Köhler, Krämer, Noé, "Smooth Normalizing Flows", NeurIPS 2021, section 4.
    """

    nll_weight: float = eqx.field(static=True, default=1.0)
    force_weight: float = eqx.field(static=True, default=1.0)

    def __call__(self, flow, key, batch):
        x, forces = batch["x"], batch["forces"]
        log_q, grad_log_q = jax.vmap(jax.value_and_grad(lambda xi: flow.log_prob(xi[None])[0]))(x)
        force_mse = jnp.mean(jnp.sum((grad_log_q - forces).reshape(x.shape[0], -1) ** 2, axis=-1))
        return -self.nll_weight * jnp.mean(log_q) + self.force_weight * force_mse


class WithForces(AbstractDistribution):
    """A data set of samples with their reference forces: ``sample`` returns ``{"x": x, "forces": score(x)}``.

    Wraps any distribution with a ``score`` (e.g. a ``TorusVonMisesMixture``), for :class:`ForceMatching`.
    """

    distribution: AbstractDistribution
    frozen_fields: ClassVar[tuple[str, ...]] = ("distribution",)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.distribution.event_shape

    def sample(self, key: PRNGKeyArray, num: int) -> dict[str, Array]:
        x = self.distribution.sample(key, num)
        return {"x": x, "forces": self.distribution.score(x)}

    def log_prob(self, x):
        return self.distribution.log_prob(x)


class Flow(AbstractDensityModel):
    """A normalizing flow ``x = f(z)``, ``z ~ base``, with exact ``log_prob``, ``sample`` and ``sample_and_log_prob``.

    Args:
        bijection: the map ``f`` (base -> data), e.g. from :func:`coupling_flow`.
        data_shape: shape of one example (default: the bijection's).
        base: base distribution (``N(0, I)`` by default; :class:`Uniform` for torus flows).
        objective: :class:`MaximumLikelihood` (default), :class:`ReverseKL` or :class:`ForceMatching`.

    Conditional flows take ``cond`` (one condition broadcast to all samples, or one per sample); in a batch the
    condition sits under ``"cond"``.
    """

    bijection: AbstractBijection
    base: AbstractDistribution
    objective: AbstractFlowObjective
    data_shape: tuple[int, ...] = eqx.field(static=True)
    # The base is fixed: reverse-KL samples are reparametrised through it, and it must not drift.
    frozen_fields: ClassVar[tuple[str, ...]] = ("base",)

    def __init__(
        self,
        bijection: AbstractBijection,
        data_shape: Any = None,
        base: AbstractDistribution | None = None,
        objective: AbstractFlowObjective | None = None,
    ):
        self.bijection = bijection
        self.data_shape = bijection.shape if data_shape is None else as_shape(data_shape)
        if tuple(bijection.shape) != self.data_shape:
            raise ValueError(
                f"the bijection acts on examples of shape {bijection.shape} but data_shape is {self.data_shape}"
            )
        self.base = StandardNormal(self.data_shape) if base is None else base
        if tuple(self.base.event_shape) != self.data_shape:
            raise ValueError(f"base event_shape {self.base.event_shape} does not match data_shape {self.data_shape}")
        self.objective = MaximumLikelihood() if objective is None else objective

    @classmethod
    def from_net(
        cls,
        net: AbstractBijection,
        data_shape: Any,
        sampler: Any = None,
        base: AbstractDistribution | None = None,
        objective: AbstractFlowObjective | None = None,
    ) -> Flow:
        """Hydra entry point (``build_model`` passes ``net``, ``data_shape`` and ``sampler``).

        For flows the ``net`` group holds the bijection (e.g. ``genflow.flows.coupling_flow``). ``sampler`` is
        accepted and ignored: a discrete flow samples exactly, with no integrator.
        """
        del sampler
        return cls(net, data_shape, base, objective)

    @property
    def cond_shape(self) -> tuple[int, ...] | None:
        return self.bijection.cond_shape

    def _cond_batch(self, cond: Any, num: int) -> Array | None:
        if cond is None:
            return None
        cond = jnp.asarray(cond)
        if self.cond_shape is not None and cond.shape == self.cond_shape:
            return jnp.broadcast_to(cond, (num, *self.cond_shape))
        if cond.shape[0] != num:
            raise ValueError(f"cond has shape {cond.shape}; expected {self.cond_shape} or ({num}, ...)")
        return cond

    def _vmap(self, method: str, x: Array, cond: Array | None):
        fn = getattr(self.bijection, method)
        return jax.vmap(fn, in_axes=(0, None if cond is None else 0))(x, cond)

    @eqx.filter_jit
    def log_prob(
        self, x: Float[Array, "num ..."], *, key: PRNGKeyArray | None = None, cond: Any = None
    ) -> Float[Array, " num"]:
        """Exact ``log q(x | cond)`` (``key`` is unused: the density is exact)."""
        z, ld = self._vmap("inverse_and_log_det", x, self._cond_batch(cond, x.shape[0]))
        return self.base.log_prob(z) + ld

    @eqx.filter_jit
    def sample_and_log_prob(
        self, key: PRNGKeyArray, num: int, *, cond: Any = None
    ) -> tuple[Float[Array, "num ..."], Float[Array, " num"]]:
        """Samples and their log-densities from one pass of ``transform`` (no inverse needed)."""
        z = self.base.sample(key, num)
        x, ld = self._vmap("transform_and_log_det", z, self._cond_batch(cond, num))
        return x, self.base.log_prob(z) - ld

    @eqx.filter_jit
    def sample(self, key: PRNGKeyArray, num: int, *, cond: Any = None) -> Float[Array, "num ..."]:
        """Draw ``num`` samples (given ``cond``, if the flow is conditional)."""
        z = self.base.sample(key, num)
        return self._vmap("transform", z, self._cond_batch(cond, num))

    def loss(self, key: PRNGKeyArray, batch: Any) -> Scalar:
        return self.objective(self, key, batch)
