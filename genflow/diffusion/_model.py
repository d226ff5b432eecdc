"""DiffusionModel: a Gaussian diffusion with a learned denoiser, any sampler, and exact or bounded likelihoods.

Convention: t=0 is data and ``t_max`` noise; ``x_t = alpha_t x0 + sigma_t eps``. The network predicts eps, x0, v,
the score or EDM's preconditioned output (the parametrization); every sampler sees the score

    s(t, x) = -eps_hat(t, x) / sigma_t,

and classifier-free guidance combines the conditional and unconditional scores, ``s_u + w (s_c - s_u)``.

References:
    Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
    Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations", ICLR 2021.
    Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative Models", NeurIPS 2022.
    Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from genflow._base import AbstractSolvableDensityModel, split_batch
from genflow._checks import as_shape, check_instance, check_probability
from genflow.diffusion._likelihood import (
    AbstractDecoder,
    GaussianDecoder,
    LikelihoodTerms,
    VLBTerms,
    ddpm_vlb,
    pf_ode_log_prob,
)
from genflow.diffusion._losses import (
    AbstractTimeSampler,
    AbstractWeighting,
    NoWeighting,
    UniformTime,
    denoising_loss,
)
from genflow.diffusion._parametrizations import AbstractParametrization, EpsilonPrediction
from genflow.diffusion._samplers import AbstractDiffusionSampler, ProbabilityFlow, make_sampler
from genflow.diffusion._schedules import AbstractSchedule, VPSchedule
from genflow.diffusion._variances import AbstractReverseVariance, PosteriorVariance
from genflow.metrics import dequantized_bits_per_dim
from genflow.nn import ConditionDropout, guided
from genflow.solvers import AbstractODESolver, DiffraxODE, Solution

_PARAMETRIZATIONS = (
    "EpsilonPrediction(), DataPrediction(), VelocityPrediction(), ScorePrediction(), EDMPreconditioning()"
)
_WEIGHTINGS = "NoWeighting(), SNRWeighting(), MinSNRWeighting(), LikelihoodWeighting(), EDMWeighting()"
_TIME_SAMPLERS = "UniformTime(), StratifiedTime(), ImportanceTime(), LogNormalTime()"


class DiffusionModel(AbstractSolvableDensityModel):
    """A Gaussian diffusion model (t=0 data, t_max noise).

    Args:
        net: per-example network ``net(t, x, cond=None)`` (or any callable with that signature).
        data_shape: shape of one example.
        schedule: the noise schedule (``VPSchedule()`` by default).
        parametrization: what ``net`` predicts: ``EpsilonPrediction()`` (the default), ``DataPrediction()``,
            ``VelocityPrediction()``, ``ScorePrediction()`` or ``EDMPreconditioning(sigma_data)``.
        weighting: the loss weighting: ``NoWeighting()`` (the default), ``SNRWeighting()``,
            ``MinSNRWeighting(gamma)``, ``LikelihoodWeighting()`` or ``EDMWeighting(sigma_data)``.
        time_sampler: ``UniformTime()`` (the default), ``StratifiedTime()``, ``ImportanceTime(num_bins)`` or
            ``LogNormalTime(mean, std)``.
        sampler: default sampler of ``sample``: a diffusion sampler, or a plain ODE solver (probability flow) or SDE
            solver (reverse SDE). Heun on the EDM grid, 50 steps, by default.
        likelihood_solver: ODE solver of ``log_prob`` (adaptive Tsit5, rtol = atol = 1e-5, by default).
        cond_drop_prob: probability of replacing an example's condition with the null condition in training
            (classifier-free guidance).
        null_label: the null class label; by default ``net.embed.null_label`` (genflow nets) when there is one.
    """

    net: Callable
    schedule: AbstractSchedule
    parametrization: AbstractParametrization
    weighting: AbstractWeighting
    time_sampler: AbstractTimeSampler
    sampler: AbstractDiffusionSampler
    likelihood_solver: AbstractODESolver
    condition_dropout: ConditionDropout
    data_shape: tuple[int, ...] = eqx.field(static=True)
    # The schedule's arrays (a discrete chain's betas) are fixed, not parameters.
    frozen_fields: ClassVar[tuple[str, ...]] = ("schedule",)

    def __init__(
        self,
        net,
        data_shape,
        schedule=None,
        parametrization: AbstractParametrization = EpsilonPrediction(),
        weighting: AbstractWeighting = NoWeighting(),
        time_sampler: AbstractTimeSampler = UniformTime(),
        sampler=None,
        likelihood_solver=None,
        cond_drop_prob: float = 0.0,
        null_label: int | None = None,
    ):
        self.net = net
        self.data_shape = as_shape(data_shape)
        self.schedule = VPSchedule() if schedule is None else schedule
        if not isinstance(self.schedule, AbstractSchedule):
            raise ValueError(f"schedule={schedule!r} is invalid: must be a schedule module (e.g. VPSchedule())")
        check_instance("parametrization", parametrization, AbstractParametrization, _PARAMETRIZATIONS)
        check_instance("weighting", weighting, AbstractWeighting, _WEIGHTINGS)
        check_instance("time_sampler", time_sampler, AbstractTimeSampler, _TIME_SAMPLERS)
        self.parametrization, self.weighting, self.time_sampler = parametrization, weighting, time_sampler
        self.sampler = ProbabilityFlow() if sampler is None else make_sampler(sampler)
        self.likelihood_solver = DiffraxODE(diffrax.Tsit5()) if likelihood_solver is None else likelihood_solver
        if not isinstance(self.likelihood_solver, AbstractODESolver):
            raise ValueError(f"likelihood_solver={likelihood_solver!r} is invalid: must be an ODE solver")
        check_probability("cond_drop_prob", cond_drop_prob)
        if null_label is None:
            null_label = getattr(getattr(net, "embed", None), "null_label", None)
        self.condition_dropout = ConditionDropout(cond_drop_prob, null_label)

    # -- predictions (one example) -----------------------------------------------------------------------------
    def predict(self, t, x: Array, cond: Any = None) -> tuple[Array, Array]:
        """``(x0_hat, eps_hat)`` at time ``t`` for one example."""
        alpha, sigma = self.schedule.alpha(t), self.schedule.sigma(t)
        out = self.parametrization(self.net, t, x, cond, alpha, sigma)
        return self.parametrization.x0_eps(out, x, alpha, sigma)

    def score(self, t, x: Array, cond: Any = None) -> Array:
        """``grad_x log p_t(x | cond) = -eps_hat / sigma_t`` for one example."""
        return -self.predict(t, x, cond)[1] / self.schedule.sigma(t)

    def batched_score(self, cond: Any = None, guidance: Any = None) -> Callable[[Any, Array], Array]:
        """The score on a batch, ``(t, x) -> scores``, with per-example ``cond`` and an optional classifier-free
        guidance weight ``w``: ``s_u + w (s_c - s_u)`` (:func:`genflow.nn.guided`)."""
        if cond is None:
            return lambda t, x: jax.vmap(self.score, in_axes=(None, 0))(t, x)
        score = self.score if guidance is None else guided(self.score, guidance)
        return lambda t, x: jax.vmap(score, in_axes=(None, 0, 0))(t, x, cond)

    # -- training ----------------------------------------------------------------------------------------------
    def loss(self, key: PRNGKeyArray, batch: Any) -> Scalar:
        """The weighted denoising loss; with ``cond_drop_prob``, conditions are dropped for CFG."""
        x0, cond = split_batch(batch)
        k_loss, k_drop = jax.random.split(key)
        cond = self.condition_dropout(k_drop, cond)
        value, _ = denoising_loss(
            k_loss, self.net, x0, cond, self.schedule, self.parametrization, self.weighting, self.time_sampler
        )
        return value

    # -- sampling ----------------------------------------------------------------------------------------------
    def solve(
        self,
        key: PRNGKeyArray,
        num: int,
        *,
        sampler: Any = None,
        cond: Any = None,
        guidance: float | None = None,
        x_T: Array | None = None,
        save_trajectory: bool = False,
    ) -> Solution:
        """Draw ``num`` samples with the default or given sampler; returns the :class:`Solution` (with NFE).

        Args:
            key: random key.
            num: number of samples.
            sampler: a diffusion sampler, ODE solver or SDE solver (the model's by default).
            cond: per-example conditions ``(num, ...)``, or one label for all.
            guidance: classifier-free guidance weight ``w`` (needs ``cond``; None: plain conditional sampling).
            x_T: starting points at ``t_max`` (prior draws by default).
            save_trajectory: also return the path.
        """
        sampler = self.sampler if sampler is None else make_sampler(sampler)
        if cond is not None and jnp.ndim(cond) == 0:
            cond = jnp.full((num,), cond)
        if guidance is not None and cond is None:
            raise ValueError("guidance needs a condition (cond=...)")
        guidance = None if guidance is None else jnp.asarray(guidance)  # traced: new weights do not recompile
        return self._solve(key, num, sampler, cond, guidance, x_T, save_trajectory)

    @eqx.filter_jit
    def _solve(self, key, num, sampler, cond, guidance, x_T, save_trajectory) -> Solution:
        k_prior, k_sample = jax.random.split(key)
        if x_T is None:
            x_T = self.schedule.prior_std() * jax.random.normal(k_prior, (num, *self.data_shape))
        score = self.batched_score(cond, guidance)
        return sampler.sample(score, self.schedule, x_T, key=k_sample, save_trajectory=save_trajectory)

    # -- likelihood --------------------------------------------------------------------------------------------
    @eqx.filter_jit
    def log_prob_terms(
        self, x: Float[Array, "num ..."], *, key: PRNGKeyArray | None = None, cond: Any = None, **opts: Any
    ) -> LikelihoodTerms:
        """Probability-flow log-likelihood with the prior term separate.

        ``opts`` are those of :func:`pf_ode_log_prob`, which computes it: ``solver`` (the model's
        ``likelihood_solver`` by default), ``divergence`` (``Exact()``; ``Hutchinson()`` needs ``key``) and
        ``t_data``, where ``x`` lives (``schedule.t_min`` by default).
        """
        if opts.get("solver") is None:
            opts["solver"] = self.likelihood_solver
        if cond is None:
            return pf_ode_log_prob(lambda t, z: self.score(t, z), self.schedule, x, key=key, **opts)
        # A conditional score differs per example, so each example is its own one-point solve.
        keys = None if key is None else jax.random.split(key, x.shape[0])

        def one(xi, ci, ki):
            terms = pf_ode_log_prob(lambda t, z: self.score(t, z, ci), self.schedule, xi[None], key=ki, **opts)
            return LikelihoodTerms(terms.log_prob[0], terms.prior[0], terms.delta[0], terms.nfe)

        return jax.vmap(one, in_axes=(0, 0, None if keys is None else 0))(x, cond, keys)

    def log_prob(self, x: Float[Array, "num ..."], *, key: PRNGKeyArray | None = None, **opts) -> Float[Array, " num"]:
        """``log p(x)`` by the probability-flow ODE (an unbiased estimate with ``divergence=Hutchinson()``); ``opts``
        (``cond``, ``solver``, ``divergence``) as in :meth:`log_prob_terms`."""
        return self.log_prob_terms(x, key=key, **opts).log_prob

    def bits_per_dim(
        self, x: Float[Array, "num ..."], *, key: PRNGKeyArray, bin_width: float, **opts
    ) -> Float[Array, " num"]:
        """Negative log-likelihood of quantized data in bits/dim, with uniform dequantization; ``opts`` (``cond``,
        ``solver``, ``divergence``) as in :meth:`log_prob_terms`.

        ``x + (u - 1/2) bin_width`` fills each value's bin; ``(-log p(x_deq) - D log bin_width) / (D log 2)``
        upper-bounds the discrete NLL in expectation over ``u`` (:func:`genflow.metrics.dequantized_bits_per_dim`;
        for 8-bit images, :func:`genflow.metrics.image_bits_per_dim` with ``self.log_prob``). Digits (values
        p/8 - 1) have ``bin_width = 1/8``.
        """
        return dequantized_bits_per_dim(lambda z, key: self.log_prob(z, key=key, **opts), x, key, bin_width=bin_width)

    @eqx.filter_jit
    def vlb(
        self,
        x: Float[Array, "num ..."],
        *,
        key: PRNGKeyArray,
        cond: Any = None,
        variance: AbstractReverseVariance = PosteriorVariance(),
        decoder: AbstractDecoder = GaussianDecoder(),
        num_terms: int | None = None,
    ) -> VLBTerms:
        """The discrete DDPM variational bound (needs a ``DiscreteSchedule``); see :func:`ddpm_vlb`."""
        score = self.batched_score(cond)
        return ddpm_vlb(score, self.schedule, x, key=key, variance=variance, decoder=decoder, num_terms=num_terms)
