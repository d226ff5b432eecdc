"""Two-dimensional toy distributions (the FFJORD / torchcfm set), sampled with jax.random inside jit.

Each sampler follows the usual definition (FFJORD's ``toy_data.py``, scikit-learn's ``make_moons``,
``make_circles`` and ``make_swiss_roll`` as FFJORD rescales them), except that discrete choices (which moon,
ring, arm or spiral) are drawn per sample instead of split in fixed proportions, so any ``num`` is an i.i.d.
batch. All sets are roughly centred, of unit scale and within about [-4, 4]^2.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from genflow.distributions import AbstractDistribution


def _normal(key: PRNGKeyArray, num: int) -> Float[Array, "num 2"]:
    return jax.random.normal(key, (num, 2))


def _moons(key: PRNGKeyArray, num: int) -> Float[Array, "num 2"]:
    k_side, k_t, k_eps = jax.random.split(key, 3)
    t = math.pi * jax.random.uniform(k_t, (num,))
    outer = jnp.stack([jnp.cos(t), jnp.sin(t)], axis=-1)
    inner = jnp.stack([1 - jnp.cos(t), 0.5 - jnp.sin(t)], axis=-1)
    x = jnp.where(jax.random.bernoulli(k_side, 0.5, (num, 1)), outer, inner) + 0.1 * _normal(k_eps, num)
    return 2 * x + jnp.array([-1.0, -0.2])


def _eight_gaussians(key: PRNGKeyArray, num: int) -> Float[Array, "num 2"]:
    k_idx, k_eps = jax.random.split(key)
    angles = jnp.arange(8) * (math.pi / 4)
    centers = 4 * jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)
    idx = jax.random.randint(k_idx, (num,), 0, 8)
    return (centers[idx] + 0.5 * _normal(k_eps, num)) / 1.414


def _checkerboard(key: PRNGKeyArray, num: int) -> Float[Array, "num 2"]:
    k1, k2, k_row = jax.random.split(key, 3)
    x1 = 4 * jax.random.uniform(k1, (num,)) - 2
    x2 = jax.random.uniform(k2, (num,)) - 2 * jax.random.randint(k_row, (num,), 0, 2)
    # Shifting every other column by one makes the squares alternate.
    x2 = x2 + jnp.mod(jnp.floor(x1), 2)
    return 2 * jnp.stack([x1, x2], axis=-1)


def _swissroll(key: PRNGKeyArray, num: int) -> Float[Array, "num 2"]:
    k_t, k_eps = jax.random.split(key)
    t = 1.5 * math.pi * (1 + 2 * jax.random.uniform(k_t, (num,)))
    x = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=-1) + _normal(k_eps, num)
    return x / 5


def _pinwheel(key: PRNGKeyArray, num: int) -> Float[Array, "num 2"]:
    num_arms, radial_std, tangential_std, rate = 5, 0.3, 0.1, 0.25
    k_arm, k_eps = jax.random.split(key)
    arm = jax.random.randint(k_arm, (num,), 0, num_arms)
    feats = _normal(k_eps, num) * jnp.array([radial_std, tangential_std]) + jnp.array([1.0, 0.0])
    # The rotation grows with the radius, which curls each arm.
    angle = 2 * math.pi * arm / num_arms + rate * jnp.exp(feats[:, 0])
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    rotated = jnp.stack([feats[:, 0] * cos + feats[:, 1] * sin, -feats[:, 0] * sin + feats[:, 1] * cos], -1)
    return 2 * rotated


def _two_spirals(key: PRNGKeyArray, num: int) -> Float[Array, "num 2"]:
    k_n, k_jitter, k_side, k_eps = jax.random.split(key, 4)
    n = jnp.sqrt(jax.random.uniform(k_n, (num,))) * 3 * math.pi
    arm = jnp.stack([-jnp.cos(n) * n, jnp.sin(n) * n], axis=-1) + 0.5 * jax.random.uniform(k_jitter, (num, 2))
    side = jnp.where(jax.random.bernoulli(k_side, 0.5, (num, 1)), 1.0, -1.0)
    return side * arm / 3 + 0.1 * _normal(k_eps, num)


def _circles(key: PRNGKeyArray, num: int) -> Float[Array, "num 2"]:
    k_r, k_t, k_eps = jax.random.split(key, 3)
    radius = jnp.where(jax.random.bernoulli(k_r, 0.5, (num,)), 1.0, 0.5)
    t = 2 * math.pi * jax.random.uniform(k_t, (num,))
    x = radius[:, None] * jnp.stack([jnp.cos(t), jnp.sin(t)], axis=-1) + 0.08 * _normal(k_eps, num)
    return 3 * x


def _rings(key: PRNGKeyArray, num: int) -> Float[Array, "num 2"]:
    k_r, k_t, k_eps = jax.random.split(key, 3)
    radius = 0.25 * (1 + jax.random.randint(k_r, (num,), 0, 4))
    t = 2 * math.pi * jax.random.uniform(k_t, (num,))
    x = 3 * radius[:, None] * jnp.stack([jnp.cos(t), jnp.sin(t)], axis=-1)
    return x + 0.08 * _normal(k_eps, num)


_SAMPLERS: dict[str, Callable[[PRNGKeyArray, int], Float[Array, "num 2"]]] = {
    "moons": _moons,
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "swissroll": _swissroll,
    "pinwheel": _pinwheel,
    "2spirals": _two_spirals,
    "circles": _circles,
    "rings": _rings,
    "gaussian": _normal,
}

TOY_DATASETS: tuple[str, ...] = tuple(_SAMPLERS)


class Toy2D(AbstractDistribution):
    """A 2D toy distribution, chosen by name, sampled from a key inside jit.

    ``name`` is static, so the sampler is picked from a dict at trace time: no ``lax.switch`` and one compiled
    program per dataset. Available names are in ``TOY_DATASETS``:
    moons, 8gaussians, checkerboard, swissroll, pinwheel, 2spirals, circles, rings, gaussian (``N(0, I)``).

    Args:
        name: one of ``TOY_DATASETS``.
        scale: factor applied to every sample.

    References:
        Grathwohl et al., "FFJORD: Free-form continuous dynamics for scalable reversible generative models",
        ICLR 2019 (toy sets); Tong et al., "Improving and generalizing flow-based generative models with
        minibatch optimal transport", TMLR 2024 (torchcfm).
    """

    name: str = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    def __init__(self, name: str, scale: float = 1.0):
        if name not in _SAMPLERS:
            raise ValueError(f"Toy2D: unknown name {name!r}; allowed names are {', '.join(TOY_DATASETS)}")
        self.name = name
        self.scale = float(scale)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (2,)

    def sample(self, key: PRNGKeyArray, num: int) -> Float[Array, "num 2"]:
        return self.scale * _SAMPLERS[self.name](key, num)
