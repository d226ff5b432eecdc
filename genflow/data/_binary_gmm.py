"""A fixed set of ``n`` samples from a high-dimensional binary Gaussian mixture, held on the device."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from genflow.data._finite import AbstractFiniteDataset
from genflow.distributions import GaussianMixture


def binary_gmm(mu: Float[Array, " d"], sigma: float) -> GaussianMixture:
    r"""The target ``1/2 N(mu, sigma^2 I) + 1/2 N(-mu, sigma^2 I)``."""
    return GaussianMixture.isotropic(jnp.array([0.5, 0.5]), jnp.stack([mu, -mu]), sigma)


class BinaryGMMSamples(AbstractFiniteDataset):
    r"""The empirical distribution of ``n`` fixed samples of $\frac12 \mathcal N(\mu, \sigma^2 I_d) +
    \frac12 \mathcal N(-\mu, \sigma^2 I_d)$, with $\mu = (1, \dots, 1)$ so that $|\mu|^2 / d = 1$.

    The ``n`` samples are drawn once, from ``seed``, at construction (configs pass no key to data); ``sample``
    then draws minibatches from them with replacement inside jit, like :class:`ArrayDataset`. ``target`` is the
    population mixture the samples come from.

    Args:
        dim: dimension ``d``.
        num_examples: number ``n`` of samples.
        sigma: standard deviation of each cluster.
        seed: seed of the fixed samples.

    References:
        Cui, Krzakala, Vanden-Eijnden, Zdeborová, "Analysis of learning a flow-based generative model from limited
        sample complexity", ICLR 2024.
    """

    array: Float[Array, "n d"]
    mu: Float[Array, " d"]
    sigma: float = eqx.field(static=True)
    seed: int = eqx.field(static=True)

    def __init__(self, dim: int, num_examples: int, sigma: float = 0.5, seed: int = 0):
        for name, value in (("dim", dim), ("num_examples", num_examples)):
            if int(value) != value or value < 1:
                raise ValueError(f"BinaryGMMSamples: {name}={value!r} must be a positive integer")
        if not sigma > 0:
            raise ValueError(f"BinaryGMMSamples: sigma={sigma!r} must be positive")
        self.mu = jnp.ones((int(dim),))
        self.sigma, self.seed = float(sigma), int(seed)
        self.array = self.target.sample(jax.random.key(self.seed), int(num_examples))

    @property
    def target(self) -> GaussianMixture:
        """The population mixture."""
        return binary_gmm(self.mu, self.sigma)

    @property
    def examples(self) -> Float[Array, "n d"]:
        return self.array

    @property
    def example_labels(self) -> None:
        return None

    def transform(self, key: PRNGKeyArray, x: Float[Array, "num d"]) -> Float[Array, "num d"]:
        return x
