"""Score a trained run against fresh data: energy distance, MMD, sliced and exact W2, and NLL where defined.

    python experiments/evaluate.py RUN_DIR [--num 2000] [--seed 0] [--nll-num 500]

Writes RUN_DIR/eval.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import jax
import numpy as np

from experiments._common import load_run
from genflow._blas import single_threaded_lapack
from genflow.metrics import energy_distance, flatten_samples, mmd, nll_bits_per_dim, sliced_w2, w2_exact
from genflow.train import sample_with_reference


def sample_metrics(key, x, ref) -> dict:
    x, ref = flatten_samples(x), flatten_samples(ref)
    n_exact = min(1000, x.shape[0])  # exact OT is cubic: keep it to a subsample
    return {
        "energy_distance": float(energy_distance(x, ref)),
        "mmd": float(mmd(x, ref)),
        "sliced_w2": float(sliced_w2(key, x, ref)),
        "w2_exact": float(w2_exact(x[:n_exact], ref[:n_exact])),
    }


def nll_metrics(model, key, ref, data) -> dict:
    """Mean negative log-likelihood of data under the model (nats, and bits/dim for images)."""
    if hasattr(getattr(model, "coupling", None), "coupled"):
        return {"nll": None, "nll_note": "a data-dependent coupling has no unconditional likelihood"}
    try:
        logp = np.asarray(model.log_prob(ref))
    except NotImplementedError as err:
        return {"nll": None, "nll_note": str(err)}
    dims = math.prod(ref.shape[1:])
    out = {"nll": float(-logp.mean())}
    if hasattr(data, "num_classes"):  # density of the [-1, 1]-scaled pixels, without a dequantisation correction
        out["bits_per_dim_continuous"] = float(nll_bits_per_dim(logp.mean(), dims))
    return out


def main(argv=None) -> dict:
    single_threaded_lapack()  # an entry point sets it, before JAX first loads LAPACK (genflow/_blas.py)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--num", type=int, default=2000)
    p.add_argument("--nll-num", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--step", type=int, default=None)
    args = p.parse_args(argv)
    if args.num <= 0 or args.nll_num < 0:
        raise SystemExit("genflow: --num must be positive and --nll-num non-negative")

    cfg, state, data = load_run(args.run_dir, args.step)
    model = state.ema_model
    k_draw, k_proj, k_nll = jax.random.split(jax.random.key(args.seed), 3)
    x, ref, _ = sample_with_reference(model, k_draw, data, args.num)
    result = {"step": int(state.step), "num": args.num, **sample_metrics(k_proj, x, ref)}
    if args.nll_num:
        result.update(nll_metrics(model, k_nll, ref[: args.nll_num], data))
    (args.run_dir / "eval.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
