"""Schedules against closed forms: derivatives (vs jax.grad), log-SNR inverses, SDE coefficients, the discrete chain."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow.diffusion import (
    CosineBetas,
    CosineSchedule,
    DiscreteSchedule,
    EDMGrid,
    EDMSchedule,
    LinearBetas,
    LogSNRGrid,
    SubVPSchedule,
    Uniform,
    VESchedule,
    VPSchedule,
    time_grid,
)

# Factories: a discrete chain's betas take the float precision in force when it is built (x64 in these tests).
SCHEDULES = {
    "vp": VPSchedule,
    "subvp": SubVPSchedule,
    "ve": VESchedule,
    "cosine": CosineSchedule,
    "edm": EDMSchedule,
    "ddpm_linear": lambda: DiscreteSchedule(1000),
    "ddpm_cosine": lambda: DiscreteSchedule(1000, CosineBetas()),
}


def _interior_times(schedule, num=9):
    # Off the discrete grid (its derivative jumps at the steps) and inside [t_min, t_max].
    u = (np.arange(num) + 0.37) / num
    return jnp.asarray(schedule.t_min + u * (schedule.t_max - schedule.t_min))


def _quantities(schedule, t):
    """Everything the per-schedule checks compare, in one compiled call (eager x64 dispatch is slow on CPU)."""
    grad = lambda fn: jax.vmap(jax.grad(fn))(t)
    return {
        "dalpha": schedule.dalpha(t),
        "grad_alpha": grad(schedule.alpha),
        "dsigma": schedule.dsigma(t),
        "grad_sigma": grad(schedule.sigma),
        "dsigma_sq": schedule.dsigma_sq(t),
        "grad_sigma_sq": grad(lambda u: schedule.sigma(u) ** 2),
        "g2": schedule.diffusion_sq(t),
        "g2_from_lambda": -(schedule.sigma(t) ** 2) * grad(schedule.log_snr),  # Kingma et al. 2021
        "f": schedule.drift_coeff(t),
        "grad_log_alpha": grad(lambda u: jnp.log(schedule.alpha(u))),
        "lam": schedule.log_snr(t),
        "lam_direct": jnp.log(schedule.alpha(t) ** 2 / schedule.sigma(t) ** 2),
        "t_from_lam": schedule.t_from_log_snr(schedule.log_snr(t)),
        "t_from_ratio": schedule.t_from_noise_to_signal(schedule.noise_to_signal(t)),
        "power": schedule.alpha(t) ** 2 + schedule.sigma(t) ** 2,
        "prior_std": schedule.prior_std(),
    }


def test_derivatives_and_log_snr_inverse(x64):
    schedules = {name: make() for name, make in SCHEDULES.items()}
    times = {name: _interior_times(s) for name, s in schedules.items()}
    # every schedule in one compiled call (eager float64 dispatch is slow on CPU)
    quantities = jax.jit(lambda: {name: _quantities(s, times[name]) for name, s in schedules.items()})()
    for name, q in quantities.items():
        t = times[name]
        np.testing.assert_allclose(q["dalpha"], q["grad_alpha"], rtol=1e-10, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(q["dsigma"], q["grad_sigma"], rtol=1e-10, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(q["dsigma_sq"], q["grad_sigma_sq"], rtol=1e-10, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(q["g2"], q["g2_from_lambda"], rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(q["f"], q["grad_log_alpha"], rtol=1e-10, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(q["lam"], q["lam_direct"], rtol=1e-12, atol=1e-12, err_msg=name)
        assert np.all(np.diff(np.asarray(q["lam"])) < 0), name
        np.testing.assert_allclose(q["t_from_lam"], t, rtol=1e-10, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(q["t_from_ratio"], t, rtol=1e-10, atol=1e-12, err_msg=name)
        if name in ("vp", "cosine", "ddpm_linear", "ddpm_cosine"):  # variance preserving
            np.testing.assert_allclose(q["power"], 1.0, rtol=1e-12, err_msg=name)
            np.testing.assert_allclose(q["prior_std"], 1.0, rtol=1e-12, err_msg=name)


def test_song_sde_coefficients(x64):
    """The generic f and g^2 reproduce Song et al.'s VP, sub-VP and VE SDEs and the cosine/EDM closed forms."""
    vp, sub, ve, cos, edm = VPSchedule(), SubVPSchedule(), VESchedule(), CosineSchedule(), EDMSchedule()
    chain = DiscreteSchedule(1000)
    t = jnp.linspace(0.05, 0.95, 7)
    beta = 0.1 + t * 19.9
    big_b = 0.1 * t + 0.5 * 19.9 * t**2
    got, want = jax.jit(
        lambda: (
            [vp.drift_coeff(t), vp.diffusion_sq(t), sub.drift_coeff(t), sub.diffusion_sq(t), ve.diffusion_sq(t),
             cos.diffusion_sq(t), edm.diffusion_sq(t), vp.sde_diffusion(t), vp.diffusion_sq(0.0),
             chain.diffusion_sq(0.0), ve.drift_coeff(t), ve.sigma(jnp.array([0.0, 1.0]))],
            [-0.5 * beta, beta, -0.5 * beta, beta * (1 - jnp.exp(-2 * big_b)),
             2 * ve.sigma(t) ** 2 * math.log(50 / 0.01), -2 * cos.drift_coeff(t), 2 * t, jnp.sqrt(beta),
             # finite where sigma vanishes (t=0): the closed-form d(sigma^2)/dt, not 2 sigma sigma' = 0 * inf
             0.1,
             # the discrete chain's log alpha is linear on each step: g^2 = -2 f = -N log(1 - beta_1) there
             -1000 * math.log1p(-1e-4),
             0.0, jnp.array([0.01, 50.0])],
        )
    )()  # fmt: skip
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-14, err_msg=str(i))


def test_discrete_linear_chain_alphabar(x64):
    s = DiscreteSchedule(1000)
    betas = np.linspace(1e-4, 0.02, 1000)
    alphabar = np.cumprod(1 - betas)
    n = jnp.arange(0, 1001)
    cumprod, alpha, sigma = jax.jit(lambda: (s.alphas_cumprod, s.alpha(n / 1000), s.sigma(n[1:] / 1000)))()
    np.testing.assert_allclose(cumprod, alphabar, rtol=1e-12)
    np.testing.assert_allclose(cumprod[-1], 4.035e-5, rtol=1e-3)  # Ho et al.'s alphabar_T
    np.testing.assert_allclose(alpha**2, np.concatenate([[1.0], alphabar]), rtol=1e-12)
    np.testing.assert_allclose(sigma**2, 1 - alphabar, rtol=1e-12)
    # one step of the chain: x_n | x_{n-1} = sqrt(1 - beta_n) x_{n-1} + sqrt(beta_n) eps
    np.testing.assert_allclose((alpha[1:] / alpha[:-1]) ** 2, 1 - betas, rtol=1e-12)


def test_discrete_cosine_chain_alphabar(x64):
    s = DiscreteSchedule(1000, CosineBetas())
    f = np.cos((np.arange(1001) / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
    alphabar = f[1:] / f[0]
    betas = np.asarray(s.betas)
    assert betas.max() == pytest.approx(0.999) and np.all(betas <= 0.999)
    unclipped = betas < 0.999
    assert unclipped.sum() >= 990  # only the very last steps are clipped
    last = np.argmin(unclipped)
    np.testing.assert_allclose(np.asarray(s.alphas_cumprod)[:last], alphabar[:last], rtol=1e-10)


@pytest.mark.slow
def test_time_grids_are_decreasing_and_pinned(x64):
    schedules = {name: make() for name, make in SCHEDULES.items()}
    kinds = {"uniform": Uniform(), "edm": EDMGrid(), "log_snr": LogSNRGrid()}
    grids, edm, chain = jax.jit(
        lambda: (
            {(name, kind): time_grid(s, 12, grid) for name, s in schedules.items() for kind, grid in kinds.items()},
            time_grid(EDMSchedule(), 5, EDMGrid()),
            time_grid(DiscreteSchedule(1000), 7, Uniform()),
        )
    )()
    for (name, kind), ts in grids.items():
        s, ts = schedules[name], np.asarray(ts)
        assert ts[0] == pytest.approx(s.t_max) and ts[-1] == pytest.approx(s.t_min), (name, kind)
        # Snapping to a discrete chain's steps may repeat a time where the grid is finer than the chain.
        strict = not isinstance(s, DiscreteSchedule)
        assert np.all(np.diff(ts) < 0 if strict else np.diff(ts) <= 0), (name, kind, ts)
    # EDM's rho = 7 grid on the EDM schedule (Karras et al., eq. 5)
    i = np.arange(5)
    want = (80 ** (1 / 7) + i / 4 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(edm, want, rtol=1e-12)
    # a discrete chain is respaced onto its own steps
    np.testing.assert_allclose(np.asarray(chain) * 1000, np.round(np.asarray(chain) * 1000), atol=1e-9)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: VPSchedule(beta_min=0.0), "beta_min"),
        (lambda: VESchedule(sigma_min=2.0, sigma_max=1.0), "sigma_min"),
        (lambda: CosineSchedule(t_max=1.0), "t_max"),
        (lambda: VPSchedule(t_min=0.5, t_max=0.2), "t_min"),
        (lambda: DiscreteSchedule(0), "num_timesteps"),
        (lambda: DiscreteSchedule(10, "quadratic"), "beta_schedule='quadratic' is invalid"),
        (lambda: DiscreteSchedule(10, LinearBetas(beta_end=1.5)), "betas"),
    ],
)
def test_bad_schedules_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()
