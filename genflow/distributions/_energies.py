"""Energies on R^d used as sampling targets: double wells (plain and tilted), banana, Neal's funnel, a 2D cross."""

from __future__ import annotations

import math
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from genflow.distributions._base import AbstractEnergy
from genflow.distributions._gaussian import GaussianMixture
from genflow.distributions._rejection import rejection_sample


def _check_dim(name: str, dim: int, minimum: int) -> int:
    if int(dim) < minimum:
        raise ValueError(f"{name}: dim must be >= {minimum}, got {dim}")
    return int(dim)


class DoubleWell(AbstractEnergy):
    r"""Double well along the first axis, Gaussian in the others.

    $$E(x) = a (x_1^2 - 1)^2 + \tfrac{b}{2} \sum_{i \ge 2} x_i^2, \qquad
    \nabla_x \log p = \big(-4 a x_1 (x_1^2 - 1),\; -b x_{2:}\big).$$

    The modes sit at ``x_1 = ±1``; the barrier height is ``a``. ``log_prob`` is **unnormalised** (``-E``).
    ``sample`` is exact: ``x_{2:} ~ N(0, I/b)`` and ``x_1`` by rejection from the proposal
    ``½N(1, 1/(2a)) + ½N(-1, 1/(2a))``, valid because ``(x^2-1)^2 >= (|x|-1)^2``; acceptance is about 50%.

    Args:
        dim: dimension ``d >= 1``.
        a: barrier height (> 0).
        b: precision of the Gaussian coordinates (> 0).

    References:
        Noé, Olsson, Köhler, Wu, "Boltzmann generators", Science 2019 (a tilted double well of this form).
    """

    dim: int = eqx.field(static=True)
    a: float = eqx.field(static=True)
    b: float = eqx.field(static=True)
    normalized: ClassVar[bool] = False

    def __init__(self, dim: int = 2, a: float = 1.0, b: float = 1.0):
        self.dim = _check_dim("DoubleWell", dim, 1)
        if a <= 0 or b <= 0:
            raise ValueError(f"DoubleWell: a and b must be > 0, got a={a}, b={b}")
        self.a, self.b = float(a), float(b)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def log_prob(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch"]:
        x1, rest = x[..., 0], x[..., 1:]
        return -self.a * (x1**2 - 1) ** 2 - 0.5 * self.b * jnp.sum(rest**2, axis=-1)

    def score(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
        x1 = x[..., :1]
        return jnp.concatenate([-4 * self.a * x1 * (x1**2 - 1), -self.b * x[..., 1:]], axis=-1)

    def _sample_x1(self, key: PRNGKeyArray, num: int, dtype) -> Float[Array, " num"]:
        a = self.a

        def propose(key):
            k_side, k_eps, k_u = jax.random.split(key, 3)
            side = jnp.where(jax.random.bernoulli(k_side, 0.5, (num,)), 1.0, -1.0)
            x = side + jax.random.normal(k_eps, (num,), dtype) / math.sqrt(2 * a)
            # Log space: far in the tails both envelope and target underflow, and 0 <= 0 would accept.
            log_envelope = jnp.logaddexp(-a * (x - 1) ** 2, -a * (x + 1) ** 2)
            log_target = -a * (x**2 - 1) ** 2
            return x, jnp.log(jax.random.uniform(k_u, (num,), dtype)) + log_envelope <= log_target

        return rejection_sample(key, propose, (num,), dtype)

    def sample(self, key: PRNGKeyArray, num: int) -> Float[Array, "num d"]:
        dtype = jnp.result_type(float)
        k1, k_rest = jax.random.split(key)
        rest = jax.random.normal(k_rest, (num, self.dim - 1), dtype) / math.sqrt(self.b)
        return jnp.concatenate([self._sample_x1(k1, num, dtype)[:, None], rest], axis=-1)


class Banana(AbstractEnergy):
    r"""Haario's twisted Gaussian ("banana").

    With $\phi_b(x) = (x_1,\; x_2 + b x_1^2 - b s^2,\; x_3, \dots, x_d)$ and
    $C = \mathrm{diag}(s^2, 1, \dots, 1)$,

    $$p(x) = \mathcal N(\phi_b(x); 0, C).$$

    ``phi_b`` has unit Jacobian, so ``log_prob`` is **normalised**. ``sample`` is exact: ``x = phi_b^{-1}(z)``
    with ``z ~ N(0, C)``. The mean is zero and ``Var x_2 = 1 + 2 b^2 s^4``.

    Args:
        dim: dimension ``d >= 2``.
        b: twist (0.03 moderately, 0.1 strongly twisted in the reference).
        sigma: standard deviation ``s`` of the first coordinate.

    References:
        Haario, Saksman, Tamminen, "Adaptive proposal distribution for random walk Metropolis algorithm",
        Computational Statistics 1999.
    """

    dim: int = eqx.field(static=True)
    b: float = eqx.field(static=True)
    sigma: float = eqx.field(static=True)
    normalized: ClassVar[bool] = True

    def __init__(self, dim: int = 2, b: float = 0.1, sigma: float = 10.0):
        self.dim = _check_dim("Banana", dim, 2)
        self.b, self.sigma = float(b), float(sigma)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def _phi(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
        x1 = x[..., 0]
        y2 = x[..., 1] + self.b * x1**2 - self.b * self.sigma**2
        return x.at[..., 1].set(y2)

    def _var(self, dtype) -> Float[Array, " d"]:
        return jnp.ones((self.dim,), dtype).at[0].set(self.sigma**2)

    def log_prob(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch"]:
        y = self._phi(x)
        var = self._var(x.dtype)
        return -0.5 * jnp.sum(y**2 / var + jnp.log(2 * math.pi * var), axis=-1)

    def score(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
        g = -self._phi(x) / self._var(x.dtype)
        # Chain rule through phi_b: only dy_2/dx_1 = 2 b x_1 is off the diagonal.
        return g.at[..., 0].add(g[..., 1] * 2 * self.b * x[..., 0])

    def sample(self, key: PRNGKeyArray, num: int) -> Float[Array, "num d"]:
        dtype = jnp.result_type(float)
        z = jax.random.normal(key, (num, self.dim), dtype) * jnp.sqrt(self._var(dtype))
        x2 = z[:, 1] - self.b * z[:, 0] ** 2 + self.b * self.sigma**2
        return z.at[:, 1].set(x2)


class NealFunnel(AbstractEnergy):
    r"""Neal's funnel: $v \sim \mathcal N(0, s^2)$ and $x_i \mid v \sim \mathcal N(0, e^{v})$, $i = 1..d-1$.

    $$\log p(v, x) = \log\mathcal N(v; 0, s^2) + \sum_{i=1}^{d-1} \log \mathcal N(x_i; 0, e^{v}).$$

    The first coordinate is ``v``. ``log_prob`` is **normalised**; ``sample`` is exact (ancestral).

    Args:
        dim: total dimension ``d >= 2`` (``v`` plus ``d - 1`` coordinates).
        scale: standard deviation ``s`` of ``v`` (3 in the reference).

    References:
        Neal, "Slice sampling", Annals of Statistics 2003, section 8.
    """

    dim: int = eqx.field(static=True)
    scale: float = eqx.field(static=True)
    normalized: ClassVar[bool] = True

    def __init__(self, dim: int = 10, scale: float = 3.0):
        self.dim = _check_dim("NealFunnel", dim, 2)
        self.scale = float(scale)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def log_prob(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch"]:
        v, xs = x[..., 0], x[..., 1:]
        log_pv = -0.5 * (v / self.scale) ** 2 - math.log(self.scale) - 0.5 * math.log(2 * math.pi)
        n = self.dim - 1
        log_px = -0.5 * jnp.exp(-v) * jnp.sum(xs**2, axis=-1) - 0.5 * n * v - 0.5 * n * math.log(2 * math.pi)
        return log_pv + log_px

    def score(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
        v, xs = x[..., :1], x[..., 1:]
        inv_var = jnp.exp(-v)
        sq_norm = jnp.sum(xs**2, axis=-1, keepdims=True)
        dv = -v / self.scale**2 + 0.5 * inv_var * sq_norm - 0.5 * (self.dim - 1)
        return jnp.concatenate([dv, -xs * inv_var], axis=-1)

    def sample(self, key: PRNGKeyArray, num: int) -> Float[Array, "num d"]:
        eps = jax.random.normal(key, (num, self.dim), jnp.result_type(float))
        v = self.scale * eps[:, :1]
        return jnp.concatenate([v, jnp.exp(0.5 * v) * eps[:, 1:]], axis=-1)


class Cross2D(AbstractEnergy):
    r"""A cross: four equally weighted Gaussians elongated along the arms of the axes.

    $$p(x) = \tfrac14 \sum_{\pm} \mathcal N\big(x; (\pm m, 0), \mathrm{diag}(\ell^2, w^2)\big)
           + \tfrac14 \sum_{\pm} \mathcal N\big(x; (0, \pm m), \mathrm{diag}(w^2, \ell^2)\big).$$

    ``log_prob`` is **normalised**; ``sample`` is exact. Implemented with a :class:`GaussianMixture`.

    Args:
        offset: distance ``m`` of each arm's centre from the origin.
        long_std: standard deviation ``ell`` along the arm.
        short_std: standard deviation ``w`` across the arm.

    References:
        A common 2D multimodal benchmark of particle samplers; no single canonical source.
    """

    mixture: GaussianMixture
    normalized: ClassVar[bool] = True

    def __init__(self, offset: float = 2.0, long_std: float = 1.0, short_std: float = 0.15):
        m, ell2, w2 = float(offset), float(long_std) ** 2, float(short_std) ** 2
        means = [[m, 0.0], [-m, 0.0], [0.0, m], [0.0, -m]]
        along_x, along_y = [[ell2, 0.0], [0.0, w2]], [[w2, 0.0], [0.0, ell2]]
        self.mixture = GaussianMixture([1.0] * 4, means, [along_x, along_x, along_y, along_y])

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (2,)

    def log_prob(self, x: Float[Array, "*batch 2"]) -> Float[Array, "*batch"]:
        return self.mixture.log_prob(x)

    def score(self, x: Float[Array, "*batch 2"]) -> Float[Array, "*batch 2"]:
        return self.mixture.score(x)

    def sample(self, key: PRNGKeyArray, num: int) -> Float[Array, "num 2"]:
        return self.mixture.sample(key, num)


def _max_quartic_on_half_line(coeffs: list[float], sign: float) -> float:
    """``max`` of the polynomial ``coeffs`` (highest power first, negative leading term) on ``sign * x >= 0``."""
    crit = [r.real for r in np.roots(np.polyder(coeffs)) if abs(r.imag) < 1e-9 and sign * r.real >= 0]
    return max(float(np.polyval(coeffs, x)) for x in [0.0, *crit])


class TiltedDoubleWell(AbstractEnergy):
    r"""A tilted double well along the first axis, Gaussian in the others (the SNF paper's 2D example).

    $$E(x) = a x_1^4 - b x_1^2 - c x_1 + \tfrac12 \sum_{i \ge 2} x_i^2,$$

    with defaults ``a=1, b=6, c=0.5``: ``E = x_1^4 - 6 x_1^2 - 0.5 x_1 + x_2^2/2``, wells near ``x_1 = ±1.7``, the
    right one deeper by about ``2 c sqrt(b / 2a) = 1.7`` (free-energy difference 1.69, by quadrature). ``log_prob``
    is **unnormalised** (``-E``). ``sample`` is exact: ``x_{2:} ~ N(0, I)`` and ``x_1`` by rejection from
    ``½N(-m, s^2) + ½N(m, s^2)`` with ``m = sqrt(b / 2a)``. The envelope constant bounds
    ``-E_1 - log proposal`` on each half-line by the one Gaussian centred there, whose maximum is a root of a
    cubic, so the bound is exact rather than found on a grid. Acceptance is about 30% for the defaults.

    Args:
        dim: dimension ``d >= 1``.
        a, b: quartic and quadratic coefficients (> 0).
        c: tilt (any sign; > 0 makes the right well deeper).

    References:
        Wu, Köhler, Noé, "Stochastic Normalizing Flows", NeurIPS 2020 (section 5, double well).
        Noé, Olsson, Köhler, Wu, "Boltzmann generators", Science 2019.
    """

    dim: int = eqx.field(static=True)
    a: float = eqx.field(static=True)
    b: float = eqx.field(static=True)
    c: float = eqx.field(static=True)
    log_bound: float = eqx.field(static=True)
    normalized: ClassVar[bool] = False

    def __init__(self, dim: int = 2, a: float = 1.0, b: float = 6.0, c: float = 0.5):
        self.dim = _check_dim("TiltedDoubleWell", dim, 1)
        if a <= 0 or b <= 0:
            raise ValueError(f"TiltedDoubleWell: a and b must be > 0, got a={a}, b={b}")
        self.a, self.b, self.c = float(a), float(b), float(c)
        m, s2 = self._proposal()
        bounds = []
        for sign in (1.0, -1.0):
            # -E_1(x) + (x - sign m)^2 / (2 s^2): on sign * x >= 0 the envelope is at least half this Gaussian.
            q = 1 / (2 * s2)
            coeffs = [-self.a, 0.0, self.b + q, self.c - 2 * sign * m * q, m * m * q]
            bounds.append(_max_quartic_on_half_line(coeffs, sign))
        self.log_bound = max(bounds) + math.log(2 * math.sqrt(2 * math.pi * s2))

    def _proposal(self) -> tuple[float, float]:
        m = math.sqrt(self.b / (2 * self.a))
        # s^2 = 1 / (2 a m^2): the Gaussians are wide enough to reach over the barrier E(0) - E(m) = a m^4
        # (a narrower one makes the bound at x = 0 dominate), and four times the local variance 1 / E''(m).
        return m, 1.0 / (2 * self.a * m * m)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def energy_x1(self, x1: Float[Array, "*batch"]) -> Float[Array, "*batch"]:
        """The first coordinate's energy ``a x_1^4 - b x_1^2 - c x_1`` (minus its log-marginal, up to a constant)."""
        return self.a * x1**4 - self.b * x1**2 - self.c * x1

    def log_prob(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch"]:
        return -self.energy_x1(x[..., 0]) - 0.5 * jnp.sum(x[..., 1:] ** 2, axis=-1)

    def score(self, x: Float[Array, "*batch d"]) -> Float[Array, "*batch d"]:
        x1 = x[..., :1]
        return jnp.concatenate([-4 * self.a * x1**3 + 2 * self.b * x1 + self.c, -x[..., 1:]], axis=-1)

    def _sample_x1(self, key: PRNGKeyArray, num: int, dtype) -> Float[Array, " num"]:
        m, s2 = self._proposal()

        def propose(key):
            k_side, k_eps, k_u = jax.random.split(key, 3)
            side = jnp.where(jax.random.bernoulli(k_side, 0.5, (num,)), m, -m)
            x = side + math.sqrt(s2) * jax.random.normal(k_eps, (num,), dtype)
            log_q = jnp.logaddexp(-((x - m) ** 2) / (2 * s2), -((x + m) ** 2) / (2 * s2))
            log_q = log_q - math.log(2 * math.sqrt(2 * math.pi * s2))
            log_ratio = -self.energy_x1(x) - log_q - self.log_bound
            return x, jnp.log(jax.random.uniform(k_u, (num,), dtype)) <= log_ratio

        return rejection_sample(key, propose, (num,), dtype)

    def sample(self, key: PRNGKeyArray, num: int) -> Float[Array, "num d"]:
        dtype = jnp.result_type(float)
        k1, k_rest = jax.random.split(key)
        rest = jax.random.normal(k_rest, (num, self.dim - 1), dtype)
        return jnp.concatenate([self._sample_x1(k1, num, dtype)[:, None], rest], axis=-1)
