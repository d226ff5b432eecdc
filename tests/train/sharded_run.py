"""Run by tests/train/test_sharding.py in a subprocess with two host devices (the flag must precede jax's start).

Trains the same flow-matching model for a few chunks on one device (``mesh=None``) and data-parallel on a two-device
'data' mesh, checkpoints and resumes the sharded run, and prints the numbers as JSON.
"""

import json
import os
import sys
import tempfile

import optax

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from genflow.data import Toy2D  # noqa: E402
from genflow.interpolants import FlowMatching  # noqa: E402
from genflow.nn import MLP  # noqa: E402
from genflow.train import Trainer  # noqa: E402
from genflow.train._trainer import _train_chunk  # noqa: E402

STEPS, CHUNK, BATCH = 30, 10, 64


class CountingMoons:
    """Moons whose ``sample`` counts its calls: it runs once per trace of the training chunk, never per step."""

    def __init__(self):
        self.moons, self.traces = Toy2D("moons"), 0

    def sample(self, key, num):
        self.traces += 1
        return self.moons.sample(key, num)


def model():
    return FlowMatching(MLP(data_dim=2, width=32, depth=2, emb_dim=16, key=jax.random.key(0)), data_shape=(2,))


OPT = optax.adam(1e-2)  # one optimizer object: trainers that share it share compiled chunks


def trainer(mesh, num_steps=STEPS, **kw):
    return Trainer(OPT, num_steps, BATCH, steps_per_call=CHUNK, progress=False, mesh=mesh, **kw)


def run(tr, data):
    state, losses = tr.init(model(), jax.random.key(1)), []
    for _ in range(STEPS // CHUNK):
        state, chunk_losses, _ = tr.train_chunk(state, data)
        losses.append(np.asarray(chunk_losses))
    return state, np.concatenate(losses)


def leaves(tree):
    return [np.asarray(x).ravel() for x in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_inexact_array))]


def _indivisible_batch_error() -> str:
    try:
        Trainer(OPT, STEPS, BATCH + 1, steps_per_call=CHUNK)
    except ValueError as err:
        return str(err)
    return ""


def main():
    single, sharded = trainer(None), trainer("auto")
    s1, l1 = run(single, Toy2D("moons"))
    counting = CountingMoons()
    s2, l2 = run(sharded, counting)
    w = [np.abs(a - b).max() / (np.abs(a).max() + 1e-12) for a, b in zip(leaves(s1), leaves(s2), strict=True)]
    args = (Toy2D("moons"), sharded.init(model(), jax.random.key(1)), sharded.optimizer, BATCH, CHUNK)
    hlo = _train_chunk.lower(*args, 0.999, True, 1, sharded.mesh).compile().compiled.as_text()
    with tempfile.TemporaryDirectory() as tmp:
        fit = lambda name, n: trainer("auto", n, run_dir=f"{tmp}/{name}", checkpoint_every=CHUNK).fit(
            model(), Toy2D("moons"), key=jax.random.key(2)
        )
        full = fit("full", STEPS)
        fit("cut", 2 * CHUNK)  # a run stopped after two chunks, then resumed with the full budget
        resumed = fit("cut", STEPS)
        resume_equal = all(np.array_equal(a, b) for a, b in zip(leaves(full), leaves(resumed), strict=True))
    print(
        json.dumps(
            {
                "device_count": jax.device_count(),
                "mesh_devices": int(sharded.mesh.devices.size),
                "param_devices": len(
                    jax.tree_util.tree_leaves(eqx.filter(s2.model, eqx.is_array))[0].sharding.device_set
                ),
                "losses_single": l1.tolist(),
                "losses_sharded": l2.tolist(),
                "max_rel_param_diff": float(max(w)),
                "sharded_traces": counting.traces,
                "all_reduce_in_hlo": "all-reduce" in hlo,
                "resume_equal": bool(resume_equal),
                "indivisible_batch_error": _indivisible_batch_error(),
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
