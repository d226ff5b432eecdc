"""Error against the closed-form Gaussian bridge as the dimension grows: LightSB, LightSB-M, SB-CFM and DSBM.

    python scripts/figures/gaussian_bridge.py [--out scripts/figures/results/gaussian_bridge] [--quick]

Source ``N(0, A)`` and target ``N(b, B)`` with random covariances (seeded), eps = 1. Each method is trained on
independent source/target batches; the error is the cBW-UVP-style average over 50 inputs of
``BW(model conditional, exact Gaussian conditional) / (Var(P1) / 2)`` in % (500 samples per input), and, for the
closed-form LightSB methods, the max-entry error of the learned conditional covariance ``eps S`` against
``eps A^{-1} C``. LightSB and LightSB-M use K=1 with full S (the Gaussian bridge is exactly representable);
SB-CFM and DSBM an MLP (width 128) with Euler–Maruyama (50 steps). The settings are experiment configs (cut for
two shared CPU cores): ``gaussian_bridge`` (LightSB, LightSB-M; the dimensions are ``figure.dims``),
``gaussian_bridge_sb_cfm`` and ``dsbm_eot_benchmark``; ``--quick`` composes ``configs/debug/gaussian_bridge``,
``sb_cfm_eot_benchmark`` and ``dsbm_eot_benchmark``. The budgets are written into numbers.json; ``train_s``
includes compilation. Writes error_vs_dim.png and numbers.json.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import _bridges_common as common  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from genflow.bridges import GaussianBridge  # noqa: E402
from genflow.data import Paired  # noqa: E402
from genflow.distributions import Gaussian  # noqa: E402
from genflow.metrics import bures_wasserstein_sq, sample_mean_cov  # noqa: E402

EPS = 1.0
OBJECTIVES = {"lightsb": "genflow.bridges.LightSBKL", "lightsb_m": "genflow.bridges.LightSBMatching"}


def _spd(rng, d):
    m = rng.standard_normal((d, d))
    return m @ m.T / d + 0.5 * np.eye(d)


def conditional_error(sample_conditional, gb, n_in=50, n_s=500):
    x = gb.sample_plan(jax.random.key(5), n_in)[0]
    keys = jax.random.split(jax.random.key(6), n_in)
    total = 0.0
    for xi, k in zip(x, keys, strict=True):
        y = sample_conditional(k, jnp.broadcast_to(xi, (n_s, gb.dim)))
        m_hat, c_hat = sample_mean_cov(y)
        m, c = gb.conditional(xi)
        total += 0.5 * float(bures_wasserstein_sq(m_hat, c_hat, m, c))
    return 100.0 * (total / n_in) / (0.5 * float(jnp.trace(gb.B)))


def train_methods(gb, quick, budget):
    """Every method's conditional error on ``gb`` (and LightSB's covariance error); the step counts go to ``budget``."""
    src, tgt = Gaussian(gb.a, gb.A), Gaussian(gb.b, gb.B)
    data, where = Paired(src, tgt), common.pair_overrides(EPS, gb.dim)
    out = {}
    for name, objective in OBJECTIVES.items():
        cfg = common.compose_run("gaussian_bridge", [*where, f"model.objective._target_={objective}"], quick)
        m, secs = common.train_lightsb(cfg, src, tgt, data)
        cov_err = float(jnp.max(jnp.abs(m.conditional_params(gb.a[None])[2][0] - gb.conditional(gb.a)[1])))
        err = conditional_error(m.sample_conditional, gb)
        out[name] = {"cond_error_pct": err, "cov_max_err": cov_err, "train_s": secs, "steps": cfg.train.num_steps}
        budget["lightsb_steps"] = cfg.train.num_steps
    cfg = common.compose_run("gaussian_bridge_sb_cfm", where, quick, debug="sb_cfm_eot_benchmark")
    m, secs = common.train_sbcfm(cfg, src, data)
    out["sb_cfm"] = {"cond_error_pct": conditional_error(m.sample_conditional, gb), "train_s": secs}
    out["sb_cfm"]["steps"] = budget["sbcfm_steps"] = cfg.train.num_steps
    cfg = common.compose_run("dsbm_eot_benchmark", where, quick)
    m, secs = common.train_dsbm(cfg, src, data)
    stages, per_stage = cfg.figure.num_iterations, cfg.train.num_steps
    budget.update(dsbm_stages=stages, dsbm_steps_per_stage=per_stage)
    out["dsbm"] = {"cond_error_pct": conditional_error(m.sample_conditional, gb), "train_s": secs}
    out["dsbm"]["steps"] = stages * per_stage
    return out


def plot(rows, out):
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for name in ("lightsb", "lightsb_m", "sb_cfm", "dsbm"):
        ax.plot([r["dim"] for r in rows], [r[name]["cond_error_pct"] for r in rows], marker="o", label=name)
    ax.plot([r["dim"] for r in rows], [r["floor_exact_sampler"] for r in rows], "k--", label="exact sampler (floor)")
    ax.set(xscale="log", yscale="log", xlabel="D", ylabel="conditional BW error (%)", title="Gaussian bridge, eps=1")
    dims = [r["dim"] for r in rows]
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.legend(fontsize=7)
    common.save_figure(fig, out / "error_vs_dim.png")


def main():
    p = common.figure_parser("gaussian_bridge")
    p.add_argument("--plot-only", action="store_true", help="redraw the figure from --out's numbers.json")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.plot_only:
        plot(json.loads((out / "numbers.json").read_text())["rows"], out)
        return
    dims = list(common.compose_run("gaussian_bridge", quick=args.quick).figure.dims)
    rows, b = [], {"dims": dims}
    t_start = time.perf_counter()
    for dim in dims:
        rng = np.random.default_rng(dim)
        gb = GaussianBridge(np.zeros(dim), _spd(rng, dim), rng.standard_normal(dim), 2 * _spd(rng, dim), EPS)
        row = {"dim": dim, "floor_exact_sampler": conditional_error(gb.sample_conditional, gb)}
        row.update(train_methods(gb, args.quick, b))
        rows.append(row)
        print(json.dumps(row), flush=True)
        result = {"eps": EPS, "budget": b, "rows": rows, "wall_s": time.perf_counter() - t_start}
        result["load_avg"] = list(os.getloadavg())
        (out / "numbers.json").write_text(json.dumps(result, indent=2))
        plot(rows, out)


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
