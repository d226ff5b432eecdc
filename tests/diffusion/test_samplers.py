"""Samplers on analytic scores (float64): a 2D GMM's modes and moments, convergence orders on Gaussian data, exact
identities between samplers, guidance, NFE and recompilation. The oracles: Song et al., "Score-Based Generative
Modeling through Stochastic Differential Equations", ICLR 2021 (the noised GMM's score in closed form); Ho et al.
2020, eq. 7 and Algorithm 2; Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genflow import diffusion as gd
from genflow.metrics import energy_distance
from genflow.nn import guided as cfg_guided
from genflow.solvers import RK4, DiffraxODE, DiffraxSDE, Euler, EulerMaruyama, Heun, StochasticHeun

from ._oracle import COVS, MEANS, WEIGHTS, assign_modes, component_score, gmm_score

N = 4000
# The moment checks carry the precision; the energy distance, on 2000 of the samples, catches gross errors: between
# two exact sets of 2000 it has mean 3.2e-3 and 99th percentile 1.4e-2 (200 draws); mode weights off by 0.05 give
# 2.2e-2 on average.
N_ED, ED_MAX = 2000, 1.5e-2

SAMPLERS = {
    "ddpm_respaced": (lambda: gd.DiscreteSchedule(1000), lambda: gd.Ancestral(250)),
    "ddim": (gd.VPSchedule, lambda: gd.DDIM(50)),
    "reverse_sde_em": (gd.VPSchedule, lambda: gd.ReverseSDE(EulerMaruyama(500))),
    "pc_langevin_ve": (gd.VESchedule, lambda: gd.PredictorCorrector(250, corrector=gd.LangevinCorrector(snr=0.16))),
    "pf_euler": (gd.VPSchedule, lambda: gd.ProbabilityFlow(Euler(100), grid=gd.Uniform(), variable=gd.TimeVariable())),
    "pf_heun_edm": (gd.VPSchedule, lambda: gd.ProbabilityFlow(Heun(20))),
    "pf_tsit5": (gd.VPSchedule, lambda: gd.ProbabilityFlow(DiffraxODE(diffrax.Tsit5(), rtol=1e-5, atol=1e-5))),
}


def _mode_stats(x):
    lab = assign_modes(x)
    k = len(MEANS)
    counts = np.bincount(lab, minlength=k)
    groups = [x[lab == i] for i in range(k)]
    return counts / len(x), counts, [g.mean(0) for g in groups], [np.cov(g.T) for g in groups]


def _exact_samples(rng, num):
    idx = rng.choice(len(WEIGHTS), p=WEIGHTS, size=num)
    chols = np.linalg.cholesky(COVS)
    return MEANS[idx] + np.einsum("nij,nj->ni", chols[idx], rng.standard_normal((num, 2)))


@pytest.fixture(scope="module")
def reference():
    # A large exact sample, classified like the model's: the per-mode moments of the truncated modes.
    rng = np.random.default_rng(0)
    return _mode_stats(_exact_samples(rng, 40_000)), _exact_samples(rng, N_ED)


def _check_against_reference(x, reference, name):
    (w_ref, n_ref, m_ref, c_ref), ref_ed = reference
    assert np.all(np.isfinite(x)), name
    w, n, m, c = _mode_stats(x)
    # 5 standard errors of the difference between the two sample sets, per quantity.
    se_w = np.sqrt(w_ref * (1 - w_ref) * (1 / N + 1 / n_ref.sum()))
    np.testing.assert_array_less(np.abs(w - w_ref), 5 * se_w, err_msg=f"{name}: weights")
    for k in range(len(MEANS)):
        inv_n = 1 / n[k] + 1 / n_ref[k]
        cov = c_ref[k]
        se_m = np.sqrt(np.diag(cov) * inv_n)
        np.testing.assert_array_less(np.abs(m[k] - m_ref[k]), 5 * se_m, err_msg=f"{name}: mean {k}")
        se_c = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) * inv_n)
        np.testing.assert_array_less(np.abs(c[k] - cov), 5 * se_c, err_msg=f"{name}: covariance {k}")
    ed = float(energy_distance(x[:N_ED], ref_ed))
    assert ed < ED_MAX, (name, ed)


def test_every_sampler_reproduces_the_gmm(x64, reference):
    """Mode weights, per-mode means and covariances, and energy distance against exact samples, for every sampler
    on the exact score (one test, so the float64 caches are cleared once)."""

    @jax.jit
    def draw_all(z, key):  # one compilation for all samplers
        out = {}
        for name, (make_schedule, make) in SAMPLERS.items():
            schedule = make_schedule()
            out[name] = make().sample(gmm_score(schedule), schedule, schedule.prior_std() * z, key=key).y
        return out

    samples = draw_all(jax.random.normal(jax.random.key(1), (N, 2)), jax.random.key(2))
    for name, x in samples.items():
        _check_against_reference(np.asarray(x), reference, name)


MU, S = 0.5, 0.4  # 1D Gaussian data N(MU, S^2)


def _gaussian_oracle(schedule):
    std = lambda t: jnp.sqrt(schedule.alpha(t) ** 2 * S**2 + schedule.sigma(t) ** 2)
    score = lambda t, x: -(x - schedule.alpha(t) * MU) / std(t) ** 2
    # The probability-flow map of Gaussian marginals keeps the standardised value (x - mean) / std.
    flow = lambda x, t0, t1: schedule.alpha(t1) * MU + std(t1) / std(t0) * (x - schedule.alpha(t0) * MU)
    denoised = lambda t, x: (x + schedule.sigma(t) ** 2 * score(t, x)) / schedule.alpha(t)
    return score, flow, denoised


def test_convergence_orders(x64):
    """Error at t_min against the exact flow map over a step sweep: DDIM and Euler ~ 1, Heun (EDM grid) ~ 2."""
    schedule = gd.VPSchedule()
    score, flow, denoised = _gaussian_oracle(schedule)
    x_T = jnp.linspace(-2.0, 2.0, 9)[:, None]
    exact = flow(x_T, schedule.t_max, schedule.t_min)
    steps = np.array([16, 32, 64, 128, 256])
    cases = {
        # DDIM ends on x0_hat at t_min, which is affine in x: compare with the exact path's x0_hat.
        "ddim": (1, lambda n: gd.DDIM(n + 1), denoised(schedule.t_min, exact)),
        "euler": (
            1,
            lambda n: gd.ProbabilityFlow(Euler(n), grid=gd.Uniform(), variable=gd.TimeVariable(), denoise_final=False),
            exact,
        ),
        "heun_edm": (2, lambda n: gd.ProbabilityFlow(Heun(n), grid=gd.EDMGrid(), denoise_final=False), exact),
    }

    @jax.jit
    def errors():  # one compilation for the whole sweep
        run = lambda sampler: sampler.sample(score, schedule, x_T, key=jax.random.key(0)).y
        return {
            name: [jnp.max(jnp.abs(run(make(int(n))) - want)) for n in steps] for name, (_, make, want) in cases.items()
        }

    for name, errs in errors().items():
        order = cases[name][0]
        errs = np.asarray(errs)
        slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
        assert abs(slope - order) < 0.15, (name, slope, errs)


def test_ddim_is_euler_in_edm_variables_and_ancestral_at_eta_one(x64):
    schedule = gd.VPSchedule()
    score = gmm_score(schedule)
    x_T = jax.random.normal(jax.random.key(0), (64, 2))
    samplers = [
        gd.DDIM(20),
        gd.ProbabilityFlow(Euler(19), grid=gd.Uniform(), variable=gd.SigmaVariable()),
        gd.DDIM(20, eta=1.0),
        gd.Ancestral(20),
    ]
    run = lambda: [s.sample(score, schedule, x_T, key=jax.random.key(1)).y for s in samplers]
    ddim, euler, ddim1, ancestral = eqx.filter_jit(run)()
    np.testing.assert_allclose(ddim, euler, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ddim1, ancestral, rtol=1e-10, atol=1e-10)


def test_posterior_is_ho_et_al_eq_7(x64):
    schedule = gd.DiscreteSchedule(100)
    alphabar = np.concatenate([[1.0], np.asarray(schedule.alphas_cumprod)])
    betas = np.asarray(schedule.betas)
    n = np.array([1, 2, 37, 100])
    x_t, x0 = np.array([0.7, -1.2, 0.1, 2.0]), np.array([-0.3, 0.4, 1.5, -2.0])
    mean, var = eqx.filter_jit(gd.gaussian_posterior)(schedule, n / 100, (n - 1) / 100, x_t, x0)
    ab_t, ab_s, beta = alphabar[n], alphabar[n - 1], betas[n - 1]
    want_mean = np.sqrt(ab_s) * beta / (1 - ab_t) * x0 + np.sqrt(1 - beta) * (1 - ab_s) / (1 - ab_t) * x_t
    # absolute: at n=2 two O(1) terms cancel to 1e-3, so both sides round at 1e-16 times the terms' size
    np.testing.assert_allclose(mean, want_mean, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(var, (1 - ab_s) / (1 - ab_t) * beta, rtol=1e-12, atol=1e-16)


@pytest.mark.slow  # exact but compile-heavy; the GMM test runs respaced DDPM in the fast suite
def test_ancestral_on_the_discrete_chain_is_ho_et_al_algorithm_2(x64):
    """Respaced DDPM (10 of the 40 steps of a chain, evenly spaced from n=40 to n=1), written out as in Ho et al.
    (2020) with the same noise."""
    schedule = gd.DiscreteSchedule(40, gd.LinearBetas(beta_end=0.2))
    score = jax.jit(gmm_score(schedule))
    x_T = jax.random.normal(jax.random.key(3), (16, 2))
    key = jax.random.key(4)
    got = eqx.filter_jit(gd.Ancestral(10).sample)(score, schedule, x_T, key=key).y
    alphabar = np.concatenate([[1.0], np.asarray(schedule.alphas_cumprod)])
    steps = np.round(np.linspace(40, 1, 10)).astype(int)  # n = 40, 36, 31, ..., 5, 1, then the clean state
    z = jax.jit(jax.vmap(lambda k: jax.random.normal(k, x_T.shape)))(jax.random.split(key, 10))
    x = np.asarray(x_T)
    for i, n in enumerate(steps):
        prev = steps[i + 1] if i + 1 < len(steps) else 0
        ab_t, ab_s = alphabar[n], alphabar[prev]
        beta = 1 - ab_t / ab_s  # the respaced step's beta
        eps = -np.sqrt(1 - ab_t) * np.asarray(score(n / 40, x))
        mean = (x - beta / np.sqrt(1 - ab_t) * eps) / np.sqrt(1 - beta)
        var = beta * (1 - ab_s) / (1 - ab_t)
        x = mean + np.sqrt(var) * np.asarray(z[i])
    np.testing.assert_allclose(got, x, rtol=1e-9, atol=1e-9)


def test_nfe_and_trajectories(x64):
    schedule = gd.VPSchedule()
    score = gmm_score(schedule)
    x_T = jnp.zeros((3, 2))
    cases = [
        (gd.Ancestral(7), 7, 8),
        (gd.DDIM(7), 7, 8),
        (gd.ReverseSDE(EulerMaruyama(7)), 8, 9),
        (gd.ReverseSDE(StochasticHeun(7), denoise_final=False), 14, 8),
        (gd.PredictorCorrector(7, corrector=gd.LangevinCorrector(num_steps=2)), 22, 9),
        (
            gd.PredictorCorrector(
                7, predictor=gd.NoPredictor(), corrector=gd.LangevinCorrector(num_steps=1), denoise_final=False
            ),
            7,
            8,
        ),
        (gd.ProbabilityFlow(Heun(7)), 15, 9),
        (gd.ProbabilityFlow(RK4(7), variable=gd.TimeVariable(), denoise_final=False), 28, 8),
    ]
    for sampler, nfe, length in cases:
        # traced, not compiled: a fixed-step sampler's NFE is a static count
        sol = eqx.filter_eval_shape(
            lambda s: s.sample(score, schedule, x_T, key=jax.random.key(0), save_trajectory=True), sampler
        )
        assert int(sol.nfe) == nfe, sampler
        assert sol.ys.shape == (length, 3, 2), sampler
    sol = eqx.filter_jit(gd.ProbabilityFlow(Heun(4)).sample)(score, schedule, x_T, key=None, save_trajectory=True)
    np.testing.assert_allclose(sol.ys[-1], sol.y)
    np.testing.assert_allclose(sol.ys[0], x_T)


def test_plain_solvers_become_diffusion_samplers():
    assert isinstance(gd.make_sampler(Heun(num_steps=5)), gd.ProbabilityFlow)
    assert isinstance(gd.make_sampler(EulerMaruyama(num_steps=5)), gd.ReverseSDE)
    with pytest.raises(ValueError, match="sampler=.*is invalid"):
        gd.make_sampler("heun")
    with pytest.raises(ValueError, match="solver='rk45' is invalid; allowed: an ODE solver module"):
        gd.ProbabilityFlow("rk45")
    with pytest.raises(ValueError, match="solver=Heun.* is invalid; allowed: an SDE solver module"):
        gd.ReverseSDE(Heun(5))
    with pytest.raises(ValueError, match="grid='cosine' is invalid; allowed: a time grid module"):
        gd.DDIM(10, grid="cosine")
    with pytest.raises(ValueError, match="rho=0.0 is invalid"):
        gd.EDMGrid(rho=0.0)
    with pytest.raises(ValueError, match="variance='small' is invalid; allowed: a reverse-variance module"):
        gd.Ancestral(10, variance="small")
    with pytest.raises(ValueError, match="predictor='langevin' is invalid; allowed: a predictor module"):
        gd.PredictorCorrector(10, predictor="langevin")
    with pytest.raises(ValueError, match="variable='t' is invalid"):
        gd.ProbabilityFlow(Heun(5), variable="t")
    with pytest.raises(ValueError, match="corrector=.* NoPredictor"):
        gd.PredictorCorrector(10, predictor=gd.NoPredictor(), corrector=gd.LangevinCorrector(num_steps=0))
    assert isinstance(gd.Ancestral(10, variance=gd.BetaVariance()).variance, gd.BetaVariance)


@pytest.mark.slow  # diffrax's SDE solvers take a while to compile
def test_reverse_sde_with_adaptive_diffrax_reproduces_the_gmm(x64, reference):
    schedule = gd.VPSchedule()
    sampler = gd.ReverseSDE(DiffraxSDE(diffrax.ShARK(), num_steps=100, rtol=1e-3, atol=1e-3))
    x_T = jax.random.normal(jax.random.key(1), (N, 2))
    sol = eqx.filter_jit(sampler.sample)(gmm_score(schedule), schedule, x_T, key=jax.random.key(2))
    assert int(sol.nfe) > 0
    _check_against_reference(np.asarray(sol.y), reference, "reverse_sde_shark")


def test_classifier_free_guidance_limits(x64):
    """GMM components as classes: w=0 is the unconditional (mixture) score, w=1 the class's own."""
    schedule = gd.VPSchedule()
    uncond, cond = gmm_score(schedule), component_score(schedule, 1)
    x = jax.random.normal(jax.random.key(0), (10, 2)) * 2
    t = jnp.array([0.05, 0.5, 0.9])[:, None, None]

    # A per-example field with cond=None the unconditional score (as DiffusionModel.score), guided by genflow.nn.
    field = lambda ti, xi, c=None: (uncond if c is None else cond)(ti, xi[None])[0]

    @jax.jit
    def scores(w):
        over_t = lambda fn: jax.vmap(fn, in_axes=(0, None))(t[:, 0, 0], x)
        guided_field = lambda ti, xs: jax.vmap(cfg_guided(field, w), in_axes=(None, 0, None))(ti, xs, 1)
        return over_t(guided_field), over_t(uncond), over_t(cond)

    guided, s_u, s_c = scores(0.0)
    np.testing.assert_allclose(guided, s_u, rtol=1e-12)
    guided, s_u, s_c = scores(1.0)
    np.testing.assert_allclose(guided, s_c, rtol=1e-12)
    guided, s_u, s_c = scores(3.0)
    np.testing.assert_allclose(guided, -2 * s_u + 3 * s_c, rtol=1e-10)
    assert not np.allclose(s_u, s_c)


def test_no_recompilation_across_calls(x64):
    schedule = gd.VPSchedule()
    score = gmm_score(schedule)

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def draw(sampler, key, x_T):
        return sampler.sample(score, schedule, x_T, key=key).y

    for i in range(3):
        # rebuilt each call: equal static fields hash equal, so the compiled program is reused
        draw(gd.PredictorCorrector(5, predictor=gd.AncestralPredictor()), jax.random.key(i), jnp.ones((4, 2)) * i)
