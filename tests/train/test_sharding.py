"""Data parallelism: k steps on a two-device 'data' mesh match the single-device run, trace once, and resume exactly.

The two host devices need ``--xla_force_host_platform_device_count=2`` before jax starts, so the runs happen in a
subprocess (tests/train/sharded_run.py).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import optax
import pytest

from genflow.train import Trainer


@pytest.fixture(scope="module")
def sharded():
    script = Path(__file__).with_name("sharded_run.py")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True, timeout=600)
    return json.loads(out.stdout)


def test_two_devices_match_one_device(sharded):
    assert sharded["device_count"] == 2 and sharded["mesh_devices"] == 2
    assert sharded["param_devices"] == 2  # parameters replicated on both devices
    assert sharded["all_reduce_in_hlo"]  # the batch really is split: gradients are summed across devices
    # Same program, only the reduction order differs: float32 round-off, not a different computation.
    np.testing.assert_allclose(sharded["losses_sharded"], sharded["losses_single"], rtol=1e-5)
    assert sharded["max_rel_param_diff"] < 1e-5


def test_sharded_chunks_trace_once_and_resume_exactly(sharded):
    assert sharded["sharded_traces"] == 1
    assert sharded["resume_equal"]


def test_batch_must_split_evenly_over_the_mesh(sharded):
    assert "train.batch_size=65 is invalid: must be a multiple of the 2 devices" in sharded["indivisible_batch_error"]


def test_bad_mesh_argument_is_refused():
    with pytest.raises(ValueError, match="train.mesh='gpu' is invalid"):
        Trainer(optax.adam(1e-3), 10, 8, steps_per_call=10, mesh="gpu")
