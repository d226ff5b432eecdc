"""Time-tabulated two-layer denoising autoencoder with tied weights and a skip connection.

The network of Cui, Krzakala, Vanden-Eijnden and Zdeborová's analysis of flows learned from few samples: at each
discretised time a shallow DAE estimates the target ``x1`` from the interpolant ``x_t``; with the linear
interpolant ``x_t = (1 - t) x0 + t x1`` this denoiser gives the velocity ``b = (f - x) / (1 - t)``.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

from genflow._checks import check_callable, check_positive
from genflow.nn._mlp import Activation


class AbstractDAEOutput(eqx.Module):
    """What :class:`TimeTabulatedDAE` returns, given its denoiser output ``f = f_k(x)`` at the grid time ``t_k``."""

    @abc.abstractmethod
    def __call__(
        self, f: Float[Array, " data_dim"], x: Float[Array, " data_dim"], t_k: Float[Array, ""]
    ) -> Float[Array, " data_dim"]:
        """The network's output from the denoiser's estimate ``f`` of ``x1``, the input ``x`` and ``t_k``."""


class DenoiserOutput(AbstractDAEOutput):
    r"""The denoiser itself, $f_k(x) \approx E[x_1 \mid x_t = x]$."""

    def __call__(
        self, f: Float[Array, " data_dim"], x: Float[Array, " data_dim"], t_k: Float[Array, ""]
    ) -> Float[Array, " data_dim"]:
        return f


class VelocityOutput(AbstractDAEOutput):
    r"""The velocity of the linear interpolant through the denoiser, $b = (f_k(x) - x) / (1 - t_k)$.

    References:
        Albergo, Vanden-Eijnden, "Building normalizing flows with stochastic interpolants", ICLR 2023.
    """

    def __call__(
        self, f: Float[Array, " data_dim"], x: Float[Array, " data_dim"], t_k: Float[Array, ""]
    ) -> Float[Array, " data_dim"]:
        return (f - x) / (1 - t_k)


class TimeTabulatedDAE(eqx.Module):
    r"""Two-layer DAE with tied weights and a skip connection, one parameter set per grid time.

    On the grid $t_k = k / K$, $k = 0, \dots, K - 1$ (the left ends of $K$ uniform Euler steps on $[0, 1]$),

    $$f_k(x) = c_k\, x + w_k\, \varphi\!\left(\frac{w_k \cdot x}{\sqrt d}\right), \qquad
    b(t, x) = \frac{f_k(x) - x}{1 - t_k}, \qquad k = \operatorname{round}(K t) \wedge (K - 1),$$

    with $c_k \in \mathbb R$, $w_k \in \mathbb R^d$ and $\varphi = \mathrm{sign}$ (or $\tanh$). $f_k$ is trained to
    denoise, $f_k(x_{t_k}) \approx x_1$, and $b$ is the velocity $E[x_1 - x_0 \mid x_t = x]$ of the linear
    interpolant $x_t = (1 - t) x_0 + t x_1$ written through that denoiser. The exact denoiser of a binary Gaussian
    mixture $\frac12 \mathcal N(\pm\mu, \sigma^2 I)$ has this form (a linear shrinkage plus
    $\mu \tanh(\cdot\, \mu \cdot x)$), which is why the paper uses it.

    Why tabulated in time: the paper trains an independent DAE at every time of the Euler discretisation of the
    flow, and the velocity is only ever queried there. A table indexed by the nearest grid time reproduces that
    exactly (an Euler sampler with ``num_steps = num_times`` queries row ``k`` at ``t_k``), keeps the per-time
    problems independent (the loss at ``t_k`` only touches row ``k``, so all rows train in parallel and Adam, being
    elementwise, acts on each row as if alone), and costs no time embedding that would couple them. The
    conversion to a velocity uses the grid time ``t_k < 1``, never ``t``, so a sampler that queries ``t = 1``
    (Heun's last stage) stays finite; the last Euler step then lands exactly on ``f_{K-1}``.

    Args:
        data_dim: dimension ``d`` of ``x``.
        num_times: number ``K`` of grid times.
        activation: $\varphi$: ``jnp.sign`` (the paper's) or ``jnp.tanh`` (its smooth variant: ``w.x / sqrt(d)`` is
            ``O(sqrt(d))`` on the data, so tanh saturates to sign there, but it also passes gradients to ``w``).
        output: ``VelocityOutput()`` (``b``, for samplers and flow matching) or ``DenoiserOutput()`` (``f``).
        key: random key; ``w_k ~ N(0, I_d)`` and ``c_k = 1``, the initialisation of the paper's code.

    References:
        Cui, Krzakala, Vanden-Eijnden, Zdeborová, "Analysis of learning a flow-based generative model from limited
        sample complexity", ICLR 2024 (arXiv:2310.03575).
    """

    c: Float[Array, " num_times"]
    w: Float[Array, "num_times data_dim"]
    data_dim: int = eqx.field(static=True)
    num_times: int = eqx.field(static=True)
    output: AbstractDAEOutput
    activation: Activation = eqx.field(static=True)

    def __init__(
        self,
        data_dim: int,
        num_times: int = 100,
        activation: Activation = jnp.sign,
        output: AbstractDAEOutput = VelocityOutput(),
        *,
        key: PRNGKeyArray,
    ):
        check_positive("data_dim", data_dim)
        check_positive("num_times", num_times)
        check_callable("activation", activation, "such as jax.numpy.sign (the paper's) or jax.numpy.tanh")
        if not isinstance(output, AbstractDAEOutput):
            raise ValueError(f"output={output!r} is not allowed: pass VelocityOutput() or DenoiserOutput().")
        self.data_dim, self.num_times = int(data_dim), int(num_times)
        self.activation, self.output = activation, output
        self.c = jnp.ones((self.num_times,))
        self.w = jax.random.normal(key, (self.num_times, self.data_dim))

    @property
    def data_shape(self) -> tuple[int]:
        """Shape of one example ``x``."""
        return (self.data_dim,)

    @property
    def times(self) -> Float[Array, " num_times"]:
        """The grid ``t_k = k / K``."""
        return jnp.arange(self.num_times) / self.num_times

    def index(self, t: Float[ArrayLike, ""]) -> Int[Array, ""]:
        """Row of the nearest grid time; rounding (not flooring) keeps ``k / K`` computed in floats on row ``k``."""
        return jnp.clip(jnp.round(jnp.asarray(t) * self.num_times), 0, self.num_times - 1).astype(jnp.int32)

    def denoise(self, t: Float[ArrayLike, ""], x: Float[Array, " data_dim"]) -> Float[Array, " data_dim"]:
        """``f_k(x) = c_k x + w_k phi(w_k . x / sqrt(d))``, the estimate of ``x1`` given ``x_t = x``."""
        k = self.index(t)
        c, w = self.c[k], self.w[k]
        return c * x + w * self.activation(jnp.dot(w, x) / math.sqrt(self.data_dim))

    def __call__(
        self, t: Float[ArrayLike, ""], x: Float[Array, " data_dim"], cond: Any = None
    ) -> Float[Array, " data_dim"]:
        if cond is not None:
            raise ValueError("TimeTabulatedDAE is unconditional: cond must be None")
        return self.output(self.denoise(t, x), x, self.times[self.index(t)])
