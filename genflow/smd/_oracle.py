"""The exact reverse kernel of a diffusion on isotropic Gaussian-mixture data, and ancestral sampling with it.

Convention: the diffusion family's (t=0 data, ``x_t = alpha_t x0 + sigma_t eps``). For data
``p0 = sum_k pi_k N(mu_k, std_k^2 I)`` the marginal at time s is ``sum_k pi_k N(alpha_s mu_k, C_k^s I)``,
``C_k^s = alpha_s^2 std_k^2 + sigma_s^2``, and the forward kernel from s to t > s is
``x_t | x_s ~ N(a x_s, b I)``, ``a = alpha_t / alpha_s``, ``b = sigma_t^2 (1 - r)``,
``r = alpha_t^2 sigma_s^2 / (alpha_s^2 sigma_t^2)``. Bayes' rule within each component gives the true reverse kernel

    q(x_s | x_t) = sum_k r_k(x_t) N(m_k, S_k I),
    S_k = (1 / C_k^s + a^2 / b)^{-1},    m_k = S_k (alpha_s mu_k / C_k^s + a x_t / b),
    r_k(x_t) = softmax_k(log pi_k + log N(x_t; alpha_t mu_k, C_k^t I)),

a Gaussian mixture, not a Gaussian. On adjacent steps of the DDPM chain ``a^2 = 1 - beta_t`` and ``b = beta_t``
(the spec's form). Ancestral sampling with it reproduces p0 for any number of steps, even one; the diffusion
family's Gaussian kernel (exact mean ``E[x_s | x_t]``, variance ``sigma_tilde^2``) does not.

References:
    Li, van Breugel, van der Schaar, "Soft Mixture Denoising: Beyond the Expressive Bottleneck of Diffusion Models",
    ICLR 2024, section 3 (the Gaussian kernel's expressive bottleneck).
    Bishop, *Pattern Recognition and Machine Learning*, 2006, section 2.3.3 (the Gaussian posterior).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from genflow.diffusion import AbstractSchedule, AbstractTimeGrid, Uniform, time_grid, transition_table
from genflow.distributions import GaussianMixture
from genflow.solvers import Solution


class MixtureKernelOracle(eqx.Module):
    """True marginals and reverse kernels of a diffusion on ``p0 = sum_k pi_k N(mu_k, std_k^2 I)``.

    Args:
        weights: ``(K,)`` mixture weights (normalised here).
        means: ``(K, d)`` component means.
        stds: ``(K,)`` component standard deviations (or one for all), positive.
    """

    weights: Float[Array, " K"]
    means: Float[Array, "K d"]
    stds: Float[Array, " K"]

    def __init__(self, weights: ArrayLike, means: ArrayLike, stds: ArrayLike):
        dtype = jnp.result_type(float)
        means = jnp.asarray(means, dtype)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, d), got {means.shape}")
        k = means.shape[0]
        weights = jnp.asarray(weights, dtype)
        if weights.shape != (k,):
            raise ValueError(f"weights must have shape ({k},), got {weights.shape}")
        stds = jnp.broadcast_to(jnp.asarray(stds, dtype), (k,))
        if not (np.all(np.asarray(stds) > 0) and np.all(np.asarray(weights) > 0)):
            raise ValueError(f"stds={np.asarray(stds)} and weights={np.asarray(weights)} must be positive")
        self.weights, self.means, self.stds = weights / jnp.sum(weights), means, stds

    @classmethod
    def from_mixture(cls, gmm: GaussianMixture) -> MixtureKernelOracle:
        """From an isotropic :class:`GaussianMixture` (covariances ``std_k^2 I``); anything else is an error."""
        covs = np.asarray(gmm.covs)
        var = covs[:, 0, 0]
        if not np.allclose(covs, var[:, None, None] * np.eye(covs.shape[1]), rtol=1e-6, atol=0.0):
            raise ValueError("the exact-kernel oracle needs an isotropic mixture (covariances std_k^2 I)")
        return cls(gmm.weights, gmm.means, np.sqrt(var))

    @property
    def mixture(self) -> GaussianMixture:
        """The data distribution p0."""
        return GaussianMixture.isotropic(self.weights, self.means, self.stds)

    def marginal(self, schedule: AbstractSchedule, t) -> GaussianMixture:
        """The forward marginal at time ``t``: ``sum_k pi_k N(alpha_t mu_k, (alpha_t^2 std_k^2 + sigma_t^2) I)``."""
        return self.mixture.noised(schedule.alpha(t), schedule.sigma(t))

    def _kernel(self, step: dict[str, Array], x_t: Float[Array, "n d"]):
        """``(log r (n, K), m (n, K, d), S (K,))`` of the kernel from ``step``'s t to its s."""
        d = self.means.shape[1]
        std2 = self.stds**2
        c_t = step["alpha_t"] ** 2 * std2 + step["sigma_t"] ** 2
        c_s = step["alpha_s"] ** 2 * std2 + step["sigma_s"] ** 2
        diff = x_t[:, None, :] - step["alpha_t"] * self.means
        log_n = -0.5 * jnp.sum(diff**2, -1) / c_t - 0.5 * d * jnp.log(2 * jnp.pi * c_t)
        log_r = jax.nn.log_softmax(jnp.log(self.weights) + log_n, axis=-1)
        a = step["alpha_t"] / step["alpha_s"]
        b = -jnp.expm1(step["lam_t"] - step["lam_s"]) * step["sigma_t"] ** 2  # sigma_t^2 - a^2 sigma_s^2, stably
        prec = 1.0 / c_s + a**2 / b
        m = (step["alpha_s"] * self.means / c_s[:, None] + a * x_t[:, None, :] / b) / prec[:, None]
        return log_r, m, 1.0 / prec

    def kernel(
        self, schedule: AbstractSchedule, t, s, x_t: Float[Array, "n d"]
    ) -> tuple[Float[Array, "n K"], Float[Array, "n K d"], Float[Array, " K"]]:
        """The true reverse kernel ``q(x_s | x_t) = sum_k r_k N(m_k, S_k I)`` for ``s < t`` (``s = 0``: clean data).

        Returns ``(log r_k(x_t), m_k(x_t), S_k)``.
        """
        step = _step(schedule, jnp.asarray(t), jnp.asarray(s))
        return self._kernel(step, x_t)

    def kernel_mean(self, schedule: AbstractSchedule, t, s, x_t: Float[Array, "n d"]) -> Float[Array, "n d"]:
        """``E[x_s | x_t] = sum_k r_k m_k``: the mean the diffusion family's Gaussian kernel uses."""
        log_r, m, _ = self.kernel(schedule, t, s, x_t)
        return jnp.einsum("nk,nkd->nd", jnp.exp(log_r), m)

    @eqx.filter_jit
    def sample(
        self,
        key: PRNGKeyArray,
        num: int,
        schedule: AbstractSchedule,
        num_steps: int,
        *,
        grid: AbstractTimeGrid = Uniform(),
        x_T: Float[Array, "num d"] | None = None,
        save_trajectory: bool = False,
    ) -> Solution:
        """Ancestral sampling with the true kernel on the samplers' grid of ``num_steps`` times (one ``lax.scan``).

        The grid is the diffusion samplers' (:func:`genflow.diffusion.time_grid`, respaced on a discrete chain); the
        last transition goes to clean data. ``x_T`` defaults to draws from the exact marginal at ``t_max``, which
        makes the samples exact draws from p0 for every ``num_steps``. ``nfe`` counts kernel evaluations.
        """
        k_T, k_steps = jax.random.split(key)
        ts = time_grid(schedule, num_steps, grid)
        if x_T is None:
            x_T = self.marginal(schedule, schedule.t_max).sample(k_T, num)
        table = transition_table(schedule, ts)

        def body(x, inputs):
            step, k = inputs
            k_comp, k_z = jax.random.split(k)
            log_r, m, var = self._kernel(step, x)
            comp = jax.random.categorical(k_comp, log_r, axis=-1)
            mean = jnp.take_along_axis(m, comp[:, None, None], axis=1)[:, 0]
            x_next = mean + jnp.sqrt(var[comp])[:, None] * jax.random.normal(k_z, x.shape, x.dtype)
            return x_next, (x_next if save_trajectory else None)

        y, ys = jax.lax.scan(body, x_T, (table, jax.random.split(k_steps, num_steps)))
        if save_trajectory:
            ys = jnp.concatenate([x_T[None], ys])
        return Solution(y=y, nfe=num_steps, ts=ts, ys=ys)


def _step(schedule: AbstractSchedule, t: Array, s: Array) -> dict[str, Array]:
    return {
        "alpha_t": schedule.alpha(t),
        "sigma_t": schedule.sigma(t),
        "lam_t": schedule.log_snr(t),
        "alpha_s": schedule.alpha(s),
        "sigma_s": schedule.sigma(s),
        "lam_s": schedule.log_snr(s),
    }
