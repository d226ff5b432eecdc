"""cBW-UVP on EOT-benchmark-style pairs: LightSB, SB-CFM and DSBM side by side, with wall time per method.

    python scripts/figures/eot_benchmark.py [--out scripts/figures/results/eot_benchmark] [--quick]

Pairs follow the construction of Gushchin et al. (NeurIPS 2023) but are generated from seeds
(:meth:`EOTBenchmark.generate`), because the official parameter files cannot be downloaded here: the numbers are
"EOT-benchmark-style" and not comparable with the paper's table (quoted in numbers.json for reference).
LightSB: K=50, diagonal S, S init 1, Adam with the paper's lr per eps, batch 128; the step budget is cut for two
shared CPU cores (``lightsb_steps``). SB-CFM and DSBM (MLP width 128, Euler–Maruyama 50 steps) run only on the
smaller settings (``net_dims``) with short budgets. cBW-UVP uses 50 test inputs x 500 conditional samples.
Writes cbw_uvp.png and numbers.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bridges_common import train_dsbm, train_lightsb, train_sbcfm  # noqa: E402

from genflow.bridges import EOTBenchmark, cbw_uvp, eot_benchmark_data  # noqa: E402

PAPER = {0.1: [0.03, 0.08, 0.28, 0.60], 1.0: [0.05, 0.09, 0.24, 0.62], 10.0: [0.07, 0.11, 0.21, 0.37]}
LR = {0.1: 1e-3, 1.0: 3e-3, 10.0: 6e-2}


def evaluate(model, bench, var, n_in, n_s):
    return float(cbw_uvp(model.sample_conditional, bench, jax.random.key(99), n_in, n_s, target_var=var))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="scripts/figures/results/eot_benchmark")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dims = (2, 16) if args.quick else (2, 16, 64, 128)
    epss = (1.0,) if args.quick else (0.1, 1.0, 10.0)
    seeds = (0,) if args.quick else (0, 1)
    lsb_steps = {2: 2000, 16: 3000, 64: 3000, 128: 2000} if not args.quick else {2: 500, 16: 500}
    net_dims, net_steps = (2, 16), (300 if args.quick else 2000)
    n_in, n_s = 50, 500
    rows = []
    for eps in epss:
        for dim in dims:
            for seed in seeds:
                bench = EOTBenchmark.generate(dim, eps, seed)
                data = eot_benchmark_data(dim, eps, seed)
                var = float(jnp.trace(bench.target_moments(jax.random.key(7))[1]))
                lsb, secs = train_lightsb(
                    bench.source, bench.target, data, eps, lr=LR[eps], steps=lsb_steps[dim], seed=seed
                )
                row = {
                    "eps": eps,
                    "dim": dim,
                    "seed": seed,
                    "lightsb": {
                        "cbw_uvp": evaluate(lsb, bench, var, n_in, n_s),
                        "train_s": secs,
                        "steps": lsb_steps[dim],
                    },
                }
                if dim in net_dims and seed == 0:
                    m, secs = train_sbcfm(bench.source, data, eps, steps=net_steps)
                    row["sb_cfm"] = {"cbw_uvp": evaluate(m, bench, var, n_in, n_s), "train_s": secs, "steps": net_steps}
                    m, secs = train_dsbm(bench.source, data, eps, steps_per_stage=net_steps // 2)
                    row["dsbm"] = {
                        "cbw_uvp": evaluate(m, bench, var, n_in, n_s),
                        "train_s": secs,
                        "steps": 4 * (net_steps // 2),
                    }
                rows.append(row)
                print(json.dumps(row), flush=True)
                (out / "numbers.json").write_text(
                    json.dumps({"label": "EOT-benchmark-style", "rows": rows, "paper_lightsb_cbw_uvp": PAPER}, indent=2)
                )
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
        ax.plot(dims, PAPER[eps][: len(dims)], "k--", lw=0.8, label="LightSB (paper, official pairs)")
        ax.set(xscale="log", yscale="log", xlabel="D", ylabel="cBW-UVP (%)", title=f"eps = {eps}")
        ax.legend(fontsize=7)
    fig.suptitle("EOT-benchmark-style pairs (seeded; not the official files)")
    fig.tight_layout()
    fig.savefig(out / "cbw_uvp.png", dpi=120)


if __name__ == "__main__":
    main()
