"""cBW-UVP on EOT-benchmark-style pairs: LightSB, SB-CFM and DSBM side by side, with wall time per method.

    python scripts/figures/eot_benchmark.py [--out scripts/figures/results/eot_benchmark] [--quick]
        [--part all|lightsb|networks|dsbm_curve] [--eps ...] [--dims ...] [--merge DIR ...]

Pairs follow the construction of Gushchin et al. (NeurIPS 2023) but are generated from seeds
(:meth:`EOTBenchmark.generate`), because the official parameter files cannot be downloaded here: the numbers are
"EOT-benchmark-style" and not comparable with the paper's table (quoted in numbers.json for reference).
LightSB (experiment ``eot_benchmark``, which also holds the settings under ``figure``): K=50, diagonal S, S init 1,
Adam with the paper's lr per eps, batch 128, the paper's 10k steps. SB-CFM (``sb_cfm_eot_benchmark``: minibatch
entropic OT, batch 256, Adam 1e-3 warmup-cosine) and DSBM (``dsbm_eot_benchmark``: alternating IMF stages with the
shared Trainer, 20-step simulations) use MLP endpoint networks (width 128, depth 3) and Euler–Maruyama with 50 steps
for sampling; their budgets, settings and seeds are cut for two CPU cores (SB-CFM solves an annealed log-domain
Sinkhorn on each batch of 256: 10-220 ms per step here). ``--quick`` composes each experiment's debug config
(``configs/debug/``). Every budget (steps, seeds, test inputs x conditional
samples for cBW-UVP) is written into numbers.json under ``budget`` (see :func:`budget`); ``train_s`` is the wall
time of training including compilation; ``floor_exact_sampler`` is the cBW-UVP of the ground-truth conditional
sampler at the same test budget (the metric's estimation floor). Writes cbw_uvp.png and numbers.json, both
rewritten after every setting.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
from omegaconf import OmegaConf

matplotlib.use("Agg")
import _bridges_common as common  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from genflow.bridges import BenchmarkPairs, EOTBenchmark, Forward, cbw_uvp  # noqa: E402

PAPER = {0.1: [0.03, 0.08, 0.28, 0.60], 1.0: [0.05, 0.09, 0.24, 0.62], 10.0: [0.07, 0.11, 0.21, 0.37]}
# DSBM's OT first pairs (--part dsbm_curve): minibatch entropic OT instead of independent pairs.
OT_INIT = "model.coupling={_target_:genflow.bridges.entropic_coupling,eps:${model.eps}}"


def evaluate(model, bench, var, n_in, n_s):
    return float(cbw_uvp(model.sample_conditional, bench, jax.random.key(99), n_in, n_s, target_var=var))


def budget(quick: bool) -> dict:
    """The run's settings, from the experiment configs (their debug configs if ``quick``), for numbers.json."""
    names = ("eot_benchmark", "sb_cfm_eot_benchmark", "dsbm_eot_benchmark", "dsbm_eot_benchmark_curve")
    lightsb, sbcfm, dsbm, curve = (common.compose_run(name, quick=quick) for name in names)
    fig = OmegaConf.to_container(lightsb.figure)
    return {
        **{k: fig[k] for k in ("dims", "eps", "seeds")},
        "lightsb_steps": lightsb.train.num_steps,
        "lightsb_lr": {r["eps"]: r["value"] for r in fig["learning_rate"]},
        **{k: fig[k] for k in ("net_eps", "net_dims", "net_seeds")},
        "sbcfm_steps": sbcfm.train.num_steps,
        "dsbm_stages": dsbm.figure.num_iterations,
        "dsbm_steps_per_stage": dsbm.train.num_steps,
        **{k: fig[k] for k in ("num_inputs", "num_samples", "curve_eps", "curve_dims")},
        "curve_stages": curve.figure.num_iterations,
        "curve_steps_per_stage": curve.train.num_steps,
    }


def setting(eps, dim, seed):
    """The benchmark pair, its independent training batches and ``tr Var(P1)`` (cBW-UVP's normaliser)."""
    bench = EOTBenchmark.generate(dim, eps, seed)
    return bench, BenchmarkPairs(bench), float(jnp.trace(bench.target_moments(jax.random.key(7))[1]))


def exact_floor(bench, var, b):
    """cBW-UVP of the ground-truth conditional sampler: the estimation floor of the metric at this budget."""
    return evaluate(bench, bench, var, b["num_inputs"], b["num_samples"])


def run_lightsb(eps, dim, seed, b, quick):
    bench, data, var = setting(eps, dim, seed)
    lr = f"optim.learning_rate.value={b['lightsb_lr'][eps]}"
    cfg = common.compose_run("eot_benchmark", [*common.pair_overrides(eps, dim, seed), lr], quick)
    lsb, secs = common.train_lightsb(cfg, bench.source, bench.target, data)
    cbw = evaluate(lsb, bench, var, b["num_inputs"], b["num_samples"])
    row = {"eps": eps, "dim": dim, "seed": seed, "floor_exact_sampler": exact_floor(bench, var, b)}
    row["lightsb"] = {"cbw_uvp": cbw, "train_s": secs, "steps": cfg.train.num_steps}
    return row


def run_networks(row, b, quick, methods=("sb_cfm", "dsbm")):
    """SB-CFM and/or DSBM on the pair of ``row`` (added to it in place)."""
    eps, dim, seed = row["eps"], row["dim"], row["seed"]
    bench, data, var = setting(eps, dim, seed)
    n_in, n_s = b["num_inputs"], b["num_samples"]
    if "sb_cfm" in methods:
        cfg = common.compose_run("sb_cfm_eot_benchmark", common.pair_overrides(eps, dim, seed), quick)
        m, secs = common.train_sbcfm(cfg, bench.source, data)
        row["sb_cfm"] = {"cbw_uvp": evaluate(m, bench, var, n_in, n_s), "train_s": secs, "steps": cfg.train.num_steps}
    if "dsbm" in methods:
        cfg = common.compose_run("dsbm_eot_benchmark", common.pair_overrides(eps, dim, seed), quick)
        m, secs = common.train_dsbm(cfg, bench.source, data)
        steps = cfg.figure.num_iterations * cfg.train.num_steps
        row["dsbm"] = {"cbw_uvp": evaluate(m, bench, var, n_in, n_s), "train_s": secs, "steps": steps}


def dsbm_stage_curve(bench, data, var, b, seed, ot_init, quick):
    """cBW-UVP after every forward IMF stage; ``train_s`` excludes the evaluations."""
    overrides = common.pair_overrides(bench.eps, bench.dim, seed) + ([OT_INIT] if ot_init else [])
    cfg = common.compose_run("dsbm_eot_benchmark_curve", overrides, quick)
    eps, per = bench.eps, cfg.train.num_steps
    curve, t0, paused = [], time.perf_counter(), 0.0

    def watch(stage, direction, model):
        nonlocal paused
        if direction == Forward():
            t = time.perf_counter()
            cbw = evaluate(model, bench, var, b["num_inputs"], b["num_samples"])
            curve.append({"stage": stage, "steps": stage * per, "cbw_uvp": cbw, "train_s": t - t0 - paused})
            paused += time.perf_counter() - t
            print(json.dumps({"eps": eps, "dim": bench.dim, "ot_init": ot_init, **curve[-1]}), flush=True)

    common.train_dsbm(cfg, bench.source, data, callback=watch)
    return curve


def run_dsbm_curve(eps, dim, seed, b, quick):
    """DSBM against IMF stages, from independent and from minibatch-OT first pairs, and bridge matching on the
    ground-truth plan.

    The last isolates the networks: same MLP, sampler and budget as SB-CFM, but the exact coupling, so what DSBM
    lacks beyond it is IMF's convergence to the coupling.
    """
    bench, data, var = setting(eps, dim, seed)
    run = {"eps": eps, "dim": dim, "seed": seed}
    run["dsbm"] = dsbm_stage_curve(bench, data, var, b, seed, False, quick)
    run["dsbm_ot_init"] = dsbm_stage_curve(bench, data, var, b, seed, True, quick)
    cfg = common.compose_run(
        "sb_cfm_eot_benchmark", [*common.pair_overrides(eps, dim, seed), "model.coupling=null"], quick
    )
    oracle, secs = common.train_sbcfm(cfg, bench.source, BenchmarkPairs(bench, coupled=True))
    cbw = evaluate(oracle, bench, var, b["num_inputs"], b["num_samples"])
    run["bridge_matching_true_plan"] = {"cbw_uvp": cbw, "train_s": secs, "steps": cfg.train.num_steps}
    return run


def plot_dsbm_curve(runs, out):
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for run, color in zip(runs, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False):
        for name, style in (("dsbm", "o-"), ("dsbm_ot_init", "s:")):
            if name in run:
                pts = run[name]
                init = "OT" if name == "dsbm_ot_init" else "independent"
                ax.plot([c["steps"] for c in pts], [c["cbw_uvp"] for c in pts], style, ms=3, color=color,
                        label=f"eps = {run['eps']:g}, D = {run['dim']}, {init} first pairs")  # fmt: skip
        ax.axhline(run["bridge_matching_true_plan"]["cbw_uvp"], color=color, ls="--", lw=0.8)
    steps = runs[0]["bridge_matching_true_plan"]["steps"]
    ax.plot([], [], "k--", lw=0.8, label=f"bridge matching on the true plan ({steps} steps)")
    ax.set(yscale="log", xlabel="training steps (IMF stages x steps per stage)", ylabel="cBW-UVP (%)")
    ax.set_title("DSBM against IMF stages (EOT-benchmark-style pairs)", fontsize=9)
    ax.legend(fontsize=6.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    common.save_figure(fig, out / "dsbm_curve.png")


def dsbm_curve_main(b, out, quick):
    runs, t_start = [], time.perf_counter()
    for eps, dim in itertools.product(b["curve_eps"], b["curve_dims"]):
        runs.append(run_dsbm_curve(eps, dim, 0, b, quick))
        result = {"label": "EOT-benchmark-style", "budget": b, "runs": runs,
                  "wall_s": time.perf_counter() - t_start, "load_avg": list(os.getloadavg())}  # fmt: skip
        (out / "dsbm_curve.json").write_text(json.dumps(result, indent=2))
        plot_dsbm_curve(runs, out)


def plot(rows, epss, dims, out):
    fig, axes = plt.subplots(1, len(epss), figsize=(4 * len(epss), 3.2), squeeze=False)
    for ax, eps in zip(axes[0], epss, strict=True):
        for method, marker in (("lightsb", "o"), ("sb_cfm", "s"), ("dsbm", "^")):
            pts = {}
            for r in rows:
                if r["eps"] == eps and method in r:
                    pts.setdefault(r["dim"], []).append(r[method]["cbw_uvp"])
            if pts:
                ds = sorted(pts)
                ax.plot(ds, [sum(pts[d]) / len(pts[d]) for d in ds], marker=marker, label=method)
        floors = {}
        for r in rows:
            if r["eps"] == eps and "floor_exact_sampler" in r:
                floors.setdefault(r["dim"], []).append(r["floor_exact_sampler"])
        if floors:
            ds = sorted(floors)
            ax.plot(ds, [sum(floors[d]) / len(floors[d]) for d in ds], "k:", lw=0.8, label="exact sampler (floor)")
        ax.plot(dims, PAPER[eps][: len(dims)], "k--", lw=0.8, label="LightSB (paper, official pairs)")
        ax.set(xscale="log", yscale="log", xlabel="D", ylabel="cBW-UVP (%)", title=f"eps = {eps}")
    # One legend under the panels: inside, it hides the curves that rise to the top right.
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.suptitle("EOT-benchmark-style pairs (seeded; not the official files)")
    common.save_figure(fig, out / "cbw_uvp.png", rect=(0, 0.07, 1, 1))


def main():
    p = common.figure_parser("eot_benchmark")
    p.add_argument(
        "--part",
        choices=("all", "lightsb", "networks", "dsbm_curve"),
        default="all",
        help="run only LightSB or only the networks (two processes share the cores better; see --merge), or "
        "DSBM over many IMF stages (dsbm_curve.json / .png)",
    )
    p.add_argument("--eps", type=float, nargs="+", help="override the budget's eps list (recorded in the JSON)")
    p.add_argument("--dims", type=int, nargs="+", help="override the budget's dims (recorded in the JSON)")
    p.add_argument("--methods", nargs="+", choices=("sb_cfm", "dsbm"), default=("sb_cfm", "dsbm"),
                   help="which networks --part networks trains")  # fmt: skip
    p.add_argument("--merge", nargs="+", metavar="DIR", help="merge the numbers.json of --part runs into --out")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    b = budget(args.quick)
    # --eps / --dims pick the settings of this run: LightSB's, and the networks' with --part networks
    b["eps"] = b["eps"] if args.eps is None else args.eps
    b["dims"] = b["dims"] if args.dims is None else args.dims
    if args.part == "networks":
        b["net_eps"] = b["net_eps"] if args.eps is None else args.eps
        b["net_dims"] = b["net_dims"] if args.dims is None else args.dims
    if args.part == "dsbm_curve":
        b["curve_eps"] = b["curve_eps"] if args.eps is None else args.eps
        b["curve_dims"] = b["curve_dims"] if args.dims is None else args.dims
        dsbm_curve_main(b, out, args.quick)
        return
    dims, epss = b["dims"], b["eps"]
    rows = []
    t_start = time.perf_counter()

    def save():
        result = {
            "label": "EOT-benchmark-style",
            "budget": b,
            "rows": rows,
            "paper_lightsb_cbw_uvp": PAPER,
            "wall_s": time.perf_counter() - t_start,
            "load_avg": list(os.getloadavg()),
        }
        (out / "numbers.json").write_text(json.dumps(result, indent=2))
        plot(rows, epss, dims, out)

    if args.merge:  # combine the numbers.json of separate --part runs (same budget) into --out
        parts = [json.loads((Path(d) / "numbers.json").read_text()) for d in args.merge]
        by_key = {}
        for part in parts:
            for r in part["rows"]:
                by_key.setdefault((r["eps"], r["dim"], r["seed"]), {}).update(r)
        rows[:] = [by_key[k] for k in sorted(by_key)]
        for r in rows:  # a part run without the floor (networks only) gets it here
            if "floor_exact_sampler" not in r:
                bench, _, var = setting(r["eps"], r["dim"], r["seed"])
                r["floor_exact_sampler"] = exact_floor(bench, var, b)
        save()
        return
    # LightSB on every setting first (the table), then the networks on theirs: a cut run keeps the table.
    if args.part in ("all", "lightsb"):
        for eps in epss:
            for dim in dims:
                for seed in b["seeds"]:
                    rows.append(run_lightsb(eps, dim, seed, b, args.quick))
                    print(json.dumps(rows[-1]), flush=True)
                    save()
    if args.part in ("all", "networks"):
        for eps, dim, seed in itertools.product(b["net_eps"], b["net_dims"], b["net_seeds"]):
            row = next((r for r in rows if (r["eps"], r["dim"], r["seed"]) == (eps, dim, seed)), None)
            if row is None:
                row = {"eps": eps, "dim": dim, "seed": seed}
                rows.append(row)
            run_networks(row, b, args.quick, args.methods)
            print(json.dumps(row), flush=True)
            save()


if __name__ == "__main__":
    from genflow._blas import single_threaded_lapack

    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    main()
