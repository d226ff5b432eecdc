"""Parametrizations: exact round trips (float64), the identities of Song et al. 2021 and Karras et al. 2022 (Table 1),
and loss weights that agree across spaces."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.diffusion import (
    DataPrediction,
    EDMPreconditioning,
    EDMWeighting,
    EpsilonPrediction,
    LikelihoodWeighting,
    MinSNRWeighting,
    NoWeighting,
    ScorePrediction,
    SNRWeighting,
    VelocityPrediction,
    VPSchedule,
    convert,
    network_weight,
)

PARAMS = {
    "eps": EpsilonPrediction(),
    "x0": DataPrediction(),  # also EDM's denoiser D
    "v": VelocityPrediction(),
    "score": ScorePrediction(),
    "edm": EDMPreconditioning(),
}
WEIGHTINGS = {
    "none": NoWeighting(),
    "snr": SNRWeighting(),
    "min_snr": MinSNRWeighting(),
    "likelihood": LikelihoodWeighting(),
    "edm": EDMWeighting(),
}

# (alpha, sigma): variance preserving, variance exploding, and neither.
SCALES = [(0.8, 0.6), (1.0, 5.0), (0.7, 1.3)]


@jax.jit
def _round_trips(x0, eps, alpha, sigma):
    x = alpha * x0 + sigma * eps
    truth = {"eps": eps, "x0": x0, "v": alpha * eps - sigma * x0, "score": -eps / sigma}
    truth["edm"] = PARAMS["edm"].target(x0, eps, x, alpha, sigma)  # EDM's F
    out = {}
    for a, b in itertools.product(PARAMS, PARAMS):
        there = convert(truth[a], PARAMS[a], PARAMS[b], x, alpha, sigma)
        out[a, b] = (there, truth[b], convert(there, PARAMS[b], PARAMS[a], x, alpha, sigma), truth[a])
    return out


def test_conversions_are_exact_round_trips(x64):
    k1, k2 = jax.random.split(jax.random.key(0))
    x0, eps = jax.random.normal(k1, (5, 3)), jax.random.normal(k2, (5, 3))
    for alpha, sigma in SCALES:  # traced scalars: one compilation for all three
        for (a, b), (there, want, back, orig) in _round_trips(x0, eps, alpha, sigma).items():
            msg = f"{a} -> {b} at alpha={alpha}, sigma={sigma}"
            np.testing.assert_allclose(there, want, rtol=1e-12, atol=1e-12, err_msg=msg)
            np.testing.assert_allclose(back, orig, rtol=1e-12, atol=1e-12, err_msg=msg + " and back")


def test_spec_identities(x64):
    k1, k2 = jax.random.split(jax.random.key(1))
    x, s = jax.random.normal(k1, (4, 2)), jax.random.normal(k2, (4, 2))
    sigma = 0.7
    # EDM (alpha = 1): D(x; sigma) = x + sigma^2 score; and x0_hat = (x + sigma^2 score) / alpha in general.
    np.testing.assert_allclose(
        convert(s, ScorePrediction(), DataPrediction(), x, 1.0, sigma), x + sigma**2 * s, rtol=1e-14
    )
    np.testing.assert_allclose(
        convert(s, ScorePrediction(), DataPrediction(), x, 0.6, 0.8), (x + 0.64 * s) / 0.6, rtol=1e-14
    )
    np.testing.assert_allclose(convert(s, ScorePrediction(), EpsilonPrediction(), x, 0.6, 0.8), -0.8 * s, rtol=1e-14)
    with pytest.raises(ValueError, match="source='noise' is invalid; allowed: a parametrization module"):
        convert(s, "noise", EpsilonPrediction(), x, 1.0, 1.0)


def test_exact_output_recovers_x0_and_eps(x64):
    k1, k2 = jax.random.split(jax.random.key(2))
    x0, eps = jax.random.normal(k1, (3,)), jax.random.normal(k2, (3,))
    delta = 1e-3 * jnp.arange(1.0, 4.0)

    @jax.jit
    def recover():
        out = {}
        for name, param in PARAMS.items():
            for i, (alpha, sigma) in enumerate(SCALES):
                x = alpha * x0 + sigma * eps
                target = param.target(x0, eps, x, alpha, sigma)
                x0_hat, eps_hat = param.x0_eps(target, x, alpha, sigma)
                # eps_factor: a perturbation of the output moves eps_hat by c times as much
                moved = param.x0_eps(target + delta, x, alpha, sigma)[1] - eps
                out[name, i] = (x0_hat, eps_hat, moved, param.eps_factor(alpha, sigma) * delta)
        return out

    for key, (x0_hat, eps_hat, moved, predicted) in recover().items():
        np.testing.assert_allclose(x0_hat, x0, rtol=1e-12, atol=1e-12, err_msg=str(key))
        np.testing.assert_allclose(eps_hat, eps, rtol=1e-12, atol=1e-12, err_msg=str(key))
        np.testing.assert_allclose(moved, predicted, rtol=1e-9, err_msg=str(key))


def test_edm_preconditioning_coefficients_and_inputs(x64):
    p = EDMPreconditioning(sigma_data=0.5)
    s = jnp.array([0.002, 0.5, 80.0])
    c_skip, c_out, c_in, c_noise = p.coefficients(s)
    np.testing.assert_allclose(c_skip, 0.25 / (s**2 + 0.25), rtol=1e-14)
    np.testing.assert_allclose(c_out, s * 0.5 / jnp.sqrt(s**2 + 0.25), rtol=1e-14)
    np.testing.assert_allclose(c_in, 1 / jnp.sqrt(s**2 + 0.25), rtol=1e-14)
    np.testing.assert_allclose(c_noise, jnp.log(s) / 4, rtol=1e-14)
    # the network sees (c_noise, c_in x / alpha) at the rescaled noise level s = sigma / alpha
    seen = p(lambda t, x: (t, x), 0.3, jnp.ones(2), None, 0.5, 1.0)
    _, _, c_in2, c_noise2 = p.coefficients(jnp.asarray(2.0))
    np.testing.assert_allclose(seen[0], c_noise2)
    np.testing.assert_allclose(seen[1], c_in2 * 2.0 * jnp.ones(2))
    # the plain parametrizations pass the condition through only when there is one
    assert EpsilonPrediction()(lambda t, x: "no cond", 0.1, 0.0, None, 1.0, 1.0) == "no cond"
    assert EpsilonPrediction()(lambda t, x, c: c, 0.1, 0.0, 7, 1.0, 1.0) == 7


def test_weights_agree_across_parametrizations(x64):
    """For the same underlying prediction, every parametrization gives the same weighted loss, and the weights are
    those of their x0-space definitions (Hang et al. 2023; Karras et al. 2022)."""
    schedule = VPSchedule()
    t = jnp.linspace(schedule.t_min + 0.01, schedule.t_max - 0.01, 6)[:, None]
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    x0, eps, x0_hat = (jax.random.normal(k, (6, 2)) for k in (k1, k2, k3))
    x = alpha * x0 + sigma * eps
    eps_hat = (x - alpha * x0_hat) / sigma
    x0_err = jnp.sum((x0_hat - x0) ** 2, axis=-1)
    snr = (alpha**2 / sigma**2)[:, 0]
    s_tilde = (sigma / alpha)[:, 0]
    expected_x0_weight = {
        "snr": snr,
        "min_snr": jnp.minimum(snr, 5.0),
        "likelihood": snr * schedule.diffusion_sq(t[:, 0]) / sigma[:, 0] ** 2,
        "edm": (s_tilde**2 + 0.25) / (s_tilde * 0.5) ** 2,
    }
    params = [EpsilonPrediction(), DataPrediction(), VelocityPrediction(), ScorePrediction(), EDMPreconditioning()]

    @jax.jit
    def weighted_losses():
        losses = {}
        for name in expected_x0_weight:
            for p in params:
                # the raw output that gives x0_hat: the target evaluated at (x0_hat, eps_hat)
                out = p.target(x0_hat, eps_hat, x, alpha, sigma)
                target = p.target(x0, eps, x, alpha, sigma)
                w = network_weight(WEIGHTINGS[name], schedule, p, t[:, 0])
                losses[name, type(p).__name__] = w * jnp.sum((out - target) ** 2, axis=-1)
        return losses, expected_x0_weight

    losses, expected = weighted_losses()
    for (name, param), loss in losses.items():
        np.testing.assert_allclose(loss, expected[name] * x0_err, rtol=1e-9, err_msg=f"{name}, {param}")
    # unit weight on EDM's F is EDM's lambda(sigma) on the denoiser; "none" is unit weight on the own target
    units = jax.jit(
        lambda t: [
            network_weight(EDMWeighting(), schedule, EDMPreconditioning(), t),
            network_weight(NoWeighting(), schedule, DataPrediction(), t),
            network_weight(SNRWeighting(), schedule, EpsilonPrediction(), t),
        ]
    )(t[:, 0])
    for w in units:
        np.testing.assert_allclose(w, 1.0, rtol=1e-12)
    assert MinSNRWeighting(gamma=2.0).gamma == 2.0
