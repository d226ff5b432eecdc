r"""Predictor–corrector sampling (t=0 data, t_max noise), with separate predictor and corrector modules as in
score_sde: a predictor moves from one grid time to the next, a corrector runs MCMC at a fixed time.

References:
    Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021,
    Algorithms 2-5.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from genflow._checks import check_instance, check_positive_int
from genflow.diffusion._samplers._base import (
    AbstractDiffusionSampler,
    Score,
    denoise,
    finish,
    posterior,
    reverse_sde,
    scan_transitions,
    transition_table,
)
from genflow.diffusion._samplers._grids import AbstractTimeGrid, Uniform, check_grid, time_grid
from genflow.diffusion._schedules import AbstractSchedule
from genflow.solvers import Solution

PREDICTOR_CHOICES = "a predictor module: EulerMaruyamaPredictor(), AncestralPredictor(), NoPredictor()"
CORRECTOR_CHOICES = "a corrector module: LangevinCorrector(snr, num_steps)"


class AbstractPredictor(eqx.Module):
    """One step from the grid time t to the next, ``t'``, costing ``nfe`` score evaluations."""

    nfe: ClassVar[int]

    @abc.abstractmethod
    def predict(
        self, score: Score, schedule: AbstractSchedule, step: dict[str, Array], x: Array, key: PRNGKeyArray
    ) -> Array:
        """``x`` at ``step["t_next"]`` from ``x`` at ``step["t"]``."""


class EulerMaruyamaPredictor(AbstractPredictor):
    """One Euler–Maruyama step of the reverse SDE: ``x + [f x - g^2 s] dt + g sqrt(|dt|) z`` (``dt < 0``)."""

    nfe: ClassVar[int] = 1

    def predict(self, score, schedule, step, x, key):
        t, dt = step["t"], step["t_next"] - step["t"]
        drift, diffusion = reverse_sde(score, schedule)
        dw = jnp.sqrt(jnp.abs(dt)) * jax.random.normal(key, x.shape, x.dtype)
        return x + drift(t, x) * dt + diffusion(t, x) * dw


class AncestralPredictor(AbstractPredictor):
    """One ancestral step: a draw from the posterior ``q(x_{t'} | x_t, x0_hat)`` (Ho et al. 2020)."""

    nfe: ClassVar[int] = 1

    def predict(self, score, schedule, step, x, key):
        x0 = denoise(score, schedule, step["t"], x)
        mean, var = posterior(step, x, x0)
        return mean + jnp.sqrt(var) * jax.random.normal(key, x.shape, x.dtype)


class NoPredictor(AbstractPredictor):
    """No move: with the corrector alone this is annealed Langevin dynamics (Song & Ermon 2019)."""

    nfe: ClassVar[int] = 0

    def predict(self, score, schedule, step, x, key):
        return x


class LangevinCorrector(eqx.Module):
    r"""Langevin MCMC at fixed t, with the step size set by a target signal-to-noise ratio ``r``:

    $$x \leftarrow x + \epsilon\, s(t, x) + \sqrt{2\epsilon}\, z, \quad
    \epsilon = 2 a \left(r \frac{\|z\|}{\|s(t, x)\|}\right)^2, \quad a = (\alpha_t / \alpha_{t'})^2,$$

    (``a = 1 - beta_i`` on the discrete VP chain, 1 for VE), with the norms averaged over the batch as in the
    reference code (so the batch shares one step size).

    Args:
        snr: the target signal-to-noise ratio ``r`` (0.16 in Song et al. for VE on CIFAR-10).
        num_steps: Langevin steps per grid time (0: no correction).
    """

    snr: float = eqx.field(static=True, default=0.16)
    num_steps: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        if isinstance(self.num_steps, bool) or not isinstance(self.num_steps, int) or self.num_steps < 0:
            raise ValueError(f"num_steps={self.num_steps!r} is invalid: must be an integer >= 0")
        if not self.snr > 0:
            raise ValueError(f"snr={self.snr!r} is invalid: must be positive")

    def correct(self, score: Score, schedule: AbstractSchedule, t, t_next, x: Array, keys: PRNGKeyArray) -> Array:
        """``num_steps`` Langevin steps at time ``t``, one key each."""
        a = (schedule.alpha(t) / schedule.alpha(t_next)) ** 2
        n = x.shape[0]

        def step(x, k):
            s = score(t, x)
            z = jax.random.normal(k, x.shape, x.dtype)
            # Batch-averaged norms, as in the reference code: a per-example |s| vanishes at a mode's centre in low
            # dimension, and the step size would blow up there.
            mean_norm = lambda v: jnp.mean(jnp.linalg.norm(v.reshape(n, -1), axis=-1))
            eps = 2.0 * a * (self.snr * mean_norm(z) / mean_norm(s)) ** 2
            return x + eps * s + jnp.sqrt(2.0 * eps) * z, None

        return jax.lax.scan(step, x, keys)[0]


class PredictorCorrector(AbstractDiffusionSampler):
    r"""Predictor–corrector sampling: at each grid time, corrector steps, then a predictor step to the next time.

    ``nfe = num_steps * (corrector.num_steps + predictor.nfe) + denoise_final``.

    Args:
        num_steps: predictor steps (the grid has ``num_steps + 1`` times).
        predictor: ``EulerMaruyamaPredictor()`` (reverse SDE), ``AncestralPredictor()`` or ``NoPredictor()``.
        corrector: ``LangevinCorrector(snr, num_steps)``.
        grid: the time grid (``Uniform()``, ``EDMGrid(rho)``, ``LogSNRGrid()``).
        denoise_final: end with ``x0_hat(t_min, x)``.

    References:
        Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021,
        Algorithms 2-5.
    """

    num_steps: int = eqx.field(static=True, default=1000)
    predictor: AbstractPredictor = EulerMaruyamaPredictor()
    corrector: LangevinCorrector = LangevinCorrector()
    grid: AbstractTimeGrid = Uniform()
    denoise_final: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        check_positive_int("num_steps", self.num_steps)
        check_grid(self.grid)
        check_instance("predictor", self.predictor, AbstractPredictor, PREDICTOR_CHOICES)
        check_instance("corrector", self.corrector, LangevinCorrector, CORRECTOR_CHOICES)
        if self.corrector.num_steps + self.predictor.nfe == 0:
            raise ValueError(f"corrector={self.corrector!r} is invalid: NoPredictor() needs corrector num_steps >= 1")

    def sample(self, score, schedule, x_T, *, key, save_trajectory=False):
        ts = time_grid(schedule, self.num_steps + 1, self.grid)
        table = {k: v[:-1] for k, v in transition_table(schedule, ts).items()}
        table["alpha_s"], table["sigma_s"], table["lam_s"] = (
            schedule.alpha(ts[1:]),
            schedule.sigma(ts[1:]),
            schedule.log_snr(ts[1:]),
        )
        table["t_next"] = ts[1:]
        keys = jax.random.split(key, (self.num_steps, self.corrector.num_steps + 1))

        def body(x, inputs):
            step, k = inputs
            x = self.corrector.correct(score, schedule, step["t"], step["t_next"], x, k[1:])
            return self.predictor.predict(score, schedule, step, x, k[0])

        y, ys = scan_transitions(body, x_T, (table, keys), save_trajectory)
        per_step = self.corrector.num_steps + self.predictor.nfe
        sol = Solution(y=y, nfe=self.num_steps * per_step, ts=ts, ys=ys)
        return finish(score, schedule, sol, self.denoise_final, save_trajectory)
