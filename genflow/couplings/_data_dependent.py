"""Data-dependent couplings ``rho(x0, x1) = rho1(x1) rho0(x0 | x1)``, and the image operations they share."""

from __future__ import annotations

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, PyTree

from genflow.couplings._base import AbstractCoupling


class AbstractDataDependentCoupling(AbstractCoupling):
    """A data-dependent coupling ``rho(x0, x1) = rho1(x1) rho0(x0 | x1)`` with

        x0 = m(x1, xi) + s(xi) ∘ zeta,    zeta ~ N(0, I),

    where ``xi`` is the conditioning information (a mask, a low-resolution image). The incoming base batch ``x0`` is
    ignored, and the returned ``cond`` is ``xi``: every field learned on these pairs is conditional, ``b(t, x, xi)``,
    and at sampling time the same ``xi`` is passed as ``cond``. A condition that came with the data (e.g. a label) is
    replaced by ``xi``; to condition on both, fold the label into ``xi`` with a coupling of your own.

    Subclasses give ``mean_and_condition`` (draws xi and computes m), ``noise_scale`` (s), ``constrain`` and the flag
    ``coupled``. With ``coupled=False`` the pairs are independent, ``x0 ~ rho0`` (the model's base), but the fields
    still see ``xi``: the uncoupled baseline of the paper, conditioned on the same information.

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
        """Starts ``x0 ~ rho0(. | x1)`` (the base draws ``x0`` when uncoupled) and the condition ``xi``."""
        x0, _, xi = self(key, x0, x1, cond)
        return x0, xi


class DataDependentCoupling(AbstractDataDependentCoupling):
    """A data-dependent coupling from a user function: ``m, xi = mean_fn(key, x1)`` and ``x0 = m + sigma zeta``.

    ``mean_fn`` acts on the whole batch and returns the batch of means and the batch of conditions; every coordinate
    moves along the flow. See :class:`AbstractDataDependentCoupling`.

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

    def constrain(self, v, cond):
        del cond
        return v


def check_images(name: str, x1: Array, factor: int) -> None:
    if x1.ndim != 4:
        raise ValueError(f"{name}: expects a batch of channels-first images (n, C, H, W), got shape {x1.shape}")
    if factor and (x1.shape[2] % factor or x1.shape[3] % factor):
        raise ValueError(f"{name}: image size {x1.shape[2:]} is not divisible by factor={factor}")


def tile_up(x: Float[Array, "n c h w"], factor: int) -> Float[Array, "n c h*factor w*factor"]:
    """Nearest-neighbour upsampling: every pixel becomes a factor x factor block."""
    return jnp.repeat(jnp.repeat(x, factor, axis=2), factor, axis=3)
