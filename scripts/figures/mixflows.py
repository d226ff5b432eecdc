"""MixFlows (Xu, Chen, Campbell, ICML 2023) on the banana, the cross and Neal's funnel: ELBO against the number of
maps N, the x-marginal density against the truth, samples against a long HMC run, and round-trip stability.

    python scripts/figures/mixflows.py [--out scripts/figures/results/mixflows] [--quick]

Setup (the experiment config ``mixflows``, under ``figure``; ``--quick`` adds ``configs/debug/mixflows.yaml``):

- Targets (all normalised, so ELBO <= 0 and -ELBO is the KL on the extended space): ``Banana(b=0.1, sigma=2)``,
  ``Cross2D()`` and ``NealFunnel(dim=2)``. Reference ``q0 = N(0, I)`` on x, Laplace momentum, ``u ~ U[0, 1)``.
- The map: uncorrected Hamiltonian dynamics with a deterministic momentum refresh. Step size and leapfrog steps
  per target by ``tune_mixflow`` (a grid, scored by the orbit ELBO at ``N = tune_n``).
- ELBO against N: the orbit estimator (an unbiased average over ``T^n s0``, n < N) from ``num_elbo`` orbits.
- Density: ``q_N(x) = E_{rho ~ m, u ~ U}[q_N(x, rho, u) / m(rho)]``, an unbiased Monte Carlo estimate of the
  x-marginal (``num_marginal`` draws per grid point), against the target on a grid; total variation on the grid.
- Samples: MixFlow samples and a long HMC run (``HMCLayer`` chains, burn-in dropped, thinned), each compared with
  exact target samples by the energy distance (and the exact-vs-exact floor).
- Round trip: ``||T^{-N} T^N s - s||`` for growing N, float32, as in the paper's numerical-stability study.

Cost: the cross is a Gaussian mixture whose ``log_prob`` makes batched 2x2 triangular solves (LAPACK ``trsm``).
With OpenBLAS's default threading on the shared, oversubscribed 2-core machine one such solve with 1600
right-hand sides took 65 ms instead of 0.07 ms single-threaded (1000x), which is what stalled the first full run
on the cross; ``import genflow`` now sets ``OPENBLAS_NUM_THREADS=1`` (unless already set; genflow/_blas.py). The ELBO
curve comes from one set of orbits of the largest N (``MixFlow.elbo_orbit_curve``): one compile per target instead
of one per N, and the estimates are paired across N. ``numbers.json`` records the budget (``config``), the time
per stage and the load average.

Writes elbo_vs_n.png, densities.png, roundtrip.png and numbers.json into --out.

References:
    Xu, Chen, Campbell, "MixFlows: principled variational inference via mixed flows", ICML 2023.
"""

from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from _flows_common import figure_parser, save_figure, write_numbers
from omegaconf import DictConfig, OmegaConf

from experiments._common import instantiate_at
from experiments.compose import compose
from genflow.distributions import StandardNormal
from genflow.flows import AnnealedEnergy, HMCLayer, MixFlow, UncorrectedHamiltonianMap, tune_mixflow
from genflow.metrics import energy_distance

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LIMITS = {"banana": ((-6, 6), (-8, 4)), "cross": ((-5, 5), (-5, 5)), "funnel": ((-8, 8), (-12, 12))}


def settings(cfg: DictConfig) -> dict:
    """The run's budget (``figure`` less its targets), as numbers.json records it (``config``)."""
    fig = OmegaConf.to_container(cfg.figure, resolve=False)
    return {k: v for k, v in fig.items() if k != "targets"}


def targets(cfg: DictConfig) -> dict:
    return {name: instantiate_at(cfg, f"figure.targets.{name}") for name in cfg.figure.targets}


def elbo_vs_n(flow: MixFlow, ns, key, num: int) -> list[dict]:
    """Orbit ELBO of ``q_n`` for every ``n`` in ``ns``, all from the same ``num`` orbits of ``max(ns)`` maps."""
    ns = tuple(ns)
    curve = np.asarray(MixFlow(flow.map, max(ns), flow.reference).elbo_orbit_curve(key, num, ns))
    return [
        {"n": n, "elbo": float(col.mean()), "se": float(col.std() / math.sqrt(num))}
        for n, col in zip(ns, curve.T, strict=True)
    ]


def marginal_log_density(flow: MixFlow, x, key, num: int):
    """``log q_N(x)`` by ``logmeanexp_k [log q_N(x, rho_k, u_k) - log m(rho_k)]`` with ``rho_k ~ m``, ``u_k ~ U``."""
    k_r, k_u = jax.random.split(key)
    d = flow.map.dim
    rho = jax.random.laplace(k_r, (x.shape[0], num, d), x.dtype)
    u = jax.random.uniform(k_u, (x.shape[0], num, 1), x.dtype)
    s = jnp.concatenate([jnp.broadcast_to(x[:, None], (x.shape[0], num, d)), rho, u], axis=-1)
    log_q = flow.log_prob_extended(s.reshape(-1, 2 * d + 1)).reshape(x.shape[0], num)
    log_m = jnp.sum(-jnp.abs(rho) - math.log(2.0), axis=-1)  # unit Laplace momentum density
    return jax.scipy.special.logsumexp(log_q - log_m, axis=1) - math.log(num)


def density_on_grid(flow: MixFlow, target, lims, n: int, key, num: int) -> dict:
    gx, gy = (np.linspace(lo, hi, n) for lo, hi in lims)
    xx, yy = np.meshgrid(gx, gy, indexing="xy")
    pts = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], -1), jnp.float32)
    cell = (gx[1] - gx[0]) * (gy[1] - gy[0])
    p = np.exp(np.asarray(target.log_prob(pts), np.float64))
    q = np.exp(np.asarray(marginal_log_density(flow, pts, key, num), np.float64))
    tv = 0.5 * np.sum(np.abs(p / p.sum() - q / q.sum()))
    return {"xx": xx, "yy": yy, "p": p.reshape(n, n), "q": q.reshape(n, n), "tv": float(tv),
            "mass_p": float(p.sum() * cell), "mass_q": float(q.sum() * cell),
            "nonfinite_q": int(np.sum(~np.isfinite(q)))}  # fmt: skip


def hmc_reference(target, key, cfg: dict):
    """A long HMC run: ``hmc_chains`` chains from N(0, I), burn-in dropped, the rest thinned to ``num_samples``."""
    layer = HMCLayer(1.0, cfg["hmc_step_size"], cfg["hmc_leapfrog"])
    energy = AnnealedEnergy(StandardNormal((2,)), target, 1.0)

    def step(x, k):
        keys = jax.random.split(k, x.shape[0])
        x, _ = jax.vmap(lambda ki, xi: layer(ki, xi, energy))(keys, x)
        return x, x

    k0, k_run = jax.random.split(key)
    x0 = jax.random.normal(k0, (cfg["hmc_chains"], 2))
    _, xs = jax.jit(lambda x, ks: jax.lax.scan(step, x, ks))(x0, jax.random.split(k_run, cfg["hmc_steps"]))
    kept = np.asarray(xs[cfg["hmc_burn"] :]).reshape(-1, 2)
    idx = np.linspace(0, kept.shape[0] - 1, cfg["num_samples"]).astype(int)
    return kept[idx]


def roundtrip_errors(flow: MixFlow, ns, key, num: int) -> list[dict]:
    s0 = flow.sample_reference(key, num)
    fwd = jax.jit(jax.vmap(lambda s, n: jax.lax.fori_loop(0, n, lambda _, v: flow.map.transform(v), s), (0, None)))
    bwd = jax.jit(jax.vmap(lambda s, n: jax.lax.fori_loop(0, n, lambda _, v: flow.map.inverse(v), s), (0, None)))
    rows = []
    for n in ns:
        err = np.asarray(jnp.linalg.norm(bwd(fwd(s0, n), n) - s0, axis=-1))
        rows.append({"n": n, "median": float(np.median(err)), "max": float(np.max(err))})
    return rows


def _timed(seconds: dict, stage: str, f, *args):
    """``f(*args)`` with its wall time (compile included; results are blocked on) stored in ``seconds[stage]``."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(f(*args))
    seconds[stage] = round(time.perf_counter() - t0, 2)
    return out


def _energy_distances(mix, hmc, exact, exact2) -> dict:
    ed = lambda a, b: float(energy_distance(jnp.asarray(a), jnp.asarray(b)))  # noqa: E731
    return {"mixflow_vs_exact": ed(mix, exact), "hmc_vs_exact": ed(hmc, exact), "mixflow_vs_hmc": ed(mix, hmc),
            "exact_vs_exact": ed(exact2, exact)}  # fmt: skip


def run_target(name: str, target, cfg: dict, key) -> tuple[dict, dict]:
    k_tune, k_elbo, k_dens, k_samp, k_hmc, k_ref, k_rt = jax.random.split(key, 7)
    sec: dict[str, float] = {}
    init = MixFlow(UncorrectedHamiltonianMap(target, 2, 0.1, 10), cfg["tune_n"])
    args = (init, k_tune, cfg["step_sizes"], cfg["leapfrog_steps"], cfg["num_tune"])
    tuned, table = _timed(sec, "tune", tune_mixflow, *args)
    elbos = _timed(sec, "elbo_vs_n", elbo_vs_n, tuned, cfg["ns"], k_elbo, cfg["num_elbo"])
    flow = MixFlow(tuned.map, cfg["density_n"])
    args = (flow, target, LIMITS[name], cfg["grid"], k_dens, cfg["num_marginal"])
    dens = _timed(sec, "density", density_on_grid, *args)
    mix = np.asarray(_timed(sec, "mixflow_samples", flow.sample, k_samp, cfg["num_samples"]))
    hmc = _timed(sec, "hmc_reference", hmc_reference, target, k_hmc, cfg)
    exact, exact2 = (np.asarray(target.sample(k, cfg["num_samples"])) for k in jax.random.split(k_ref))
    args = (flow, cfg["roundtrip_ns"], k_rt, cfg["roundtrip_states"])
    row = {
        "step_size": float(jnp.exp(tuned.map.log_step_size)),
        "num_leapfrog": tuned.map.num_leapfrog,
        "tuning": table,
        "elbo_vs_n": elbos,
        "density_n": cfg["density_n"],
        "density_tv_on_grid": dens["tv"],
        "grid_mass": {"target": dens["mass_p"], "mixflow": dens["mass_q"]},
        "density_nonfinite_grid_points": dens["nonfinite_q"],
        "energy_distance": _energy_distances(mix, hmc, exact, exact2),
        "roundtrip": _timed(sec, "roundtrip", roundtrip_errors, *args),
        "seconds_per_stage": sec,
    }
    return row, {"density": dens, "mixflow": mix, "hmc": hmc}


def plot_elbo(path, results):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, r in results.items():
        n = [e["n"] for e in r["elbo_vs_n"]]
        ax.errorbar(
            n, [e["elbo"] for e in r["elbo_vs_n"]], [2 * e["se"] for e in r["elbo_vs_n"]], marker="o", label=name
        )
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("N (number of maps)")
    ax.set_ylabel("ELBO (log Z = 0)")
    ax.legend()
    save_figure(fig, path)


def plot_densities(path, plots):
    fig, axes = plt.subplots(len(plots), 3, figsize=(9, 3 * len(plots)), squeeze=False)
    for row, (name, pl) in zip(axes, plots.items(), strict=True):
        d = pl["density"]
        for ax, z, title in ((row[0], d["p"], "target"), (row[1], d["q"], "MixFlow marginal (MC)")):
            ax.pcolormesh(d["xx"], d["yy"], z, cmap="viridis", vmin=0, vmax=d["p"].max())
            ax.set_title(f"{name}: {title}", fontsize=8)
        row[2].scatter(*pl["hmc"].T, s=1, alpha=0.3, label="HMC")
        row[2].scatter(*pl["mixflow"].T, s=1, alpha=0.3, label="MixFlow")
        row[2].set_xlim(d["xx"].min(), d["xx"].max())
        row[2].set_ylim(d["yy"].min(), d["yy"].max())
        row[2].legend(fontsize=7, markerscale=5)
        row[2].set_title(f"{name}: samples", fontsize=8)
    save_figure(fig, path, dpi=110)


def plot_roundtrip(path, results):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, r in results.items():
        ax.plot([e["n"] for e in r["roundtrip"]], [e["median"] for e in r["roundtrip"]], marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="N", ylabel="median ||T^-N T^N s - s|| (float32)")
    ax.legend()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    p = figure_parser("mixflows")
    args = p.parse_args(argv)
    run_cfg = compose("mixflows", quick=args.quick)
    cfg = settings(run_cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    print(json.dumps({"load_average_at_start": os.getloadavg(), "config": cfg}), flush=True)
    results, plots, seconds = {}, {}, {}
    for i, (name, target) in enumerate(targets(run_cfg).items()):
        t0 = time.perf_counter()
        results[name], plots[name] = run_target(name, target, cfg, jax.random.key(i))
        seconds[name] = time.perf_counter() - t0
        print(json.dumps({name: {k: v for k, v in results[name].items() if k != "tuning"}}), flush=True)
    plot_elbo(args.out / "elbo_vs_n.png", results)
    plot_densities(args.out / "densities.png", plots)
    plot_roundtrip(args.out / "roundtrip.png", results)
    numbers = {
        "config": cfg | {"quick": args.quick},
        "results": results,
        "seconds": {"per_target": seconds, "total": time.perf_counter() - t_start},
        "load_average_1_5_15min_at_end": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    return write_numbers(args.out, numbers)


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
