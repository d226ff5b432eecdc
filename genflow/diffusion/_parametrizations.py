"""What the network predicts, and exact conversions between the equivalent predictions.

With ``x = alpha x0 + sigma eps`` (t=0 data) the following carry the same information, given ``x``, ``alpha`` and
``sigma``:

    eps                                    the noise
    x0     = (x - sigma eps) / alpha       the clean data (Tweedie's denoised mean)
    v      = alpha eps - sigma x0          the "velocity" (Salimans & Ho 2022)
    score  = -eps / sigma                  grad_x log p_t(x)
    D      = x0 = (x + sigma^2 score)/alpha the EDM denoiser; with alpha = 1, D(x; sigma) = x + sigma^2 score

Inverting v uses ``x0 = (alpha x - sigma v) / (alpha^2 + sigma^2)`` and ``eps = (sigma x + alpha v) /
(alpha^2 + sigma^2)``, exact for any schedule (not only variance-preserving ones).

A parametrization module calls the network (``net(t, x, cond)`` per example) and maps its raw output to ``(x0_hat,
eps_hat)``; it also gives the raw output's regression target and ``eps_factor`` ``c`` with ``eps_hat - eps =
c (out - target)``, which converts loss weights between spaces. EDM preconditioning feeds the network rescaled
inputs: ``F(c_in x, c_noise)`` with ``D = c_skip x + c_out F``.

References:
    Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020 (eps).
    Salimans & Ho, "Progressive Distillation for Fast Sampling of Diffusion Models", ICLR 2022 (v).
    Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021 (score).
    Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS 2022.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from genflow._checks import check_instance


def _call(net: Callable, t, x: Array, cond: Any) -> Array:
    return net(t, x) if cond is None else net(t, x, cond)


class AbstractParametrization(eqx.Module):
    """How a network's raw output maps to the denoised mean and the noise."""

    @abc.abstractmethod
    def __call__(self, net: Callable, t, x: Array, cond: Any, alpha: Array, sigma: Array) -> Array:
        """The network's raw output at one example (with any input preconditioning applied)."""

    @abc.abstractmethod
    def x0_eps(self, out: Array, x: Array, alpha: Array, sigma: Array) -> tuple[Array, Array]:
        """``(x0_hat, eps_hat)`` from the raw output."""

    @abc.abstractmethod
    def target(self, x0: Array, eps: Array, x: Array, alpha: Array, sigma: Array) -> Array:
        """The regression target of the raw output at ``x = alpha x0 + sigma eps``."""

    @abc.abstractmethod
    def eps_factor(self, alpha: Array, sigma: Array) -> Array:
        """``c`` with ``eps_hat - eps = c (out - target)``."""


class EpsilonPrediction(AbstractParametrization):
    """The network predicts the noise ``eps`` (Ho et al. 2020)."""

    def __call__(self, net, t, x, cond, alpha, sigma):
        return _call(net, t, x, cond)

    def x0_eps(self, out, x, alpha, sigma):
        return (x - sigma * out) / alpha, out

    def target(self, x0, eps, x, alpha, sigma):
        return eps

    def eps_factor(self, alpha, sigma):
        return jnp.ones_like(sigma)


class DataPrediction(AbstractParametrization):
    """The network predicts the clean data ``x0``."""

    def __call__(self, net, t, x, cond, alpha, sigma):
        return _call(net, t, x, cond)

    def x0_eps(self, out, x, alpha, sigma):
        return out, (x - alpha * out) / sigma

    def target(self, x0, eps, x, alpha, sigma):
        return x0

    def eps_factor(self, alpha, sigma):
        return -alpha / sigma


class VelocityPrediction(AbstractParametrization):
    """The network predicts ``v = alpha eps - sigma x0`` (Salimans & Ho 2022)."""

    def __call__(self, net, t, x, cond, alpha, sigma):
        return _call(net, t, x, cond)

    def x0_eps(self, out, x, alpha, sigma):
        norm = alpha**2 + sigma**2
        return (alpha * x - sigma * out) / norm, (sigma * x + alpha * out) / norm

    def target(self, x0, eps, x, alpha, sigma):
        return alpha * eps - sigma * x0

    def eps_factor(self, alpha, sigma):
        return alpha / (alpha**2 + sigma**2)


class ScorePrediction(AbstractParametrization):
    """The network predicts the score ``grad_x log p_t(x) = -E[eps | x] / sigma`` (Song et al. 2021)."""

    def __call__(self, net, t, x, cond, alpha, sigma):
        return _call(net, t, x, cond)

    def x0_eps(self, out, x, alpha, sigma):
        return (x + sigma**2 * out) / alpha, -sigma * out

    def target(self, x0, eps, x, alpha, sigma):
        return -eps / sigma

    def eps_factor(self, alpha, sigma):
        return -sigma


class EDMPreconditioning(AbstractParametrization):
    r"""EDM's preconditioned denoiser, on the rescaled state ``x~ = x / alpha`` with noise ``s = sigma / alpha``.

    $$D(\tilde x; s) = c_{skip}(s)\, \tilde x + c_{out}(s)\, F(c_{in}(s)\, \tilde x;\ c_{noise}(s)), \quad
    c_{skip} = \frac{\sigma_d^2}{s^2 + \sigma_d^2}, \ c_{out} = \frac{s\, \sigma_d}{\sqrt{s^2 + \sigma_d^2}}, \
    c_{in} = \frac{1}{\sqrt{s^2 + \sigma_d^2}}, \ c_{noise} = \tfrac14 \ln s.$$

    The network ``F`` sees ``c_noise`` as its time input. ``D`` is the ``x0`` prediction; the target of ``F`` is
    ``(x0 - c_skip x~) / c_out``, and unit weight on it is EDM's loss weight ``lambda(s) = (s^2 + sigma_d^2) /
    (s sigma_d)^2`` on ``|D - x0|^2``. With ``alpha = 1`` (EDM, VE) ``x~ = x`` and ``s = sigma``.

    Args:
        sigma_data: the data's standard deviation ``sigma_d``.

    References:
        Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS
        2022, Table 1.
    """

    sigma_data: float = eqx.field(static=True, default=0.5)

    def __check_init__(self):
        if not self.sigma_data > 0:
            raise ValueError(f"sigma_data={self.sigma_data!r} is invalid: must be positive")

    def coefficients(self, s: Array) -> tuple[Array, Array, Array, Array]:
        """``(c_skip, c_out, c_in, c_noise)`` at noise level ``s``."""
        sd2 = self.sigma_data**2
        norm = jnp.sqrt(s**2 + sd2)
        return sd2 / (s**2 + sd2), s * self.sigma_data / norm, 1.0 / norm, 0.25 * jnp.log(s)

    def __call__(self, net, t, x, cond, alpha, sigma):
        _, _, c_in, c_noise = self.coefficients(sigma / alpha)
        return _call(net, c_noise, c_in * (x / alpha), cond)

    def x0_eps(self, out, x, alpha, sigma):
        s = sigma / alpha
        c_skip, c_out, _, _ = self.coefficients(s)
        xs = x / alpha
        x0 = c_skip * xs + c_out * out
        return x0, (xs - x0) / s

    def target(self, x0, eps, x, alpha, sigma):
        c_skip, c_out, _, _ = self.coefficients(sigma / alpha)
        return (x0 - c_skip * (x / alpha)) / c_out

    def eps_factor(self, alpha, sigma):
        s = sigma / alpha
        return -self.coefficients(s)[1] / s


_CHOICES = (
    "a parametrization module: EpsilonPrediction(), DataPrediction(), VelocityPrediction(), ScorePrediction(), "
    "EDMPreconditioning()"
)


def convert(
    value: Float[Array, "*shape"],
    source: AbstractParametrization,
    target: AbstractParametrization,
    x: Float[Array, "*shape"],
    alpha: ArrayLike,
    sigma: ArrayLike,
) -> Float[Array, "*shape"]:
    """Convert a prediction at ``x = alpha x0 + sigma eps`` from one parametrization's output to another's, through
    ``(x0_hat, eps_hat) = source.x0_eps(value)`` and ``target.target(x0_hat, eps_hat)``.

    Args:
        value: the raw output of ``source``.
        source, target: parametrization modules (``DataPrediction()`` is also EDM's denoiser ``D``).
        x: the noisy point.
        alpha, sigma: the schedule at the point's time (broadcast against ``x``).
    """
    for name, p in (("source", source), ("target", target)):
        check_instance(name, p, AbstractParametrization, _CHOICES)
    if source == target:
        return value
    x0, eps = source.x0_eps(value, x, alpha, sigma)
    return target.target(x0, eps, x, alpha, sigma)
