import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs"
sys.path.insert(0, str(ROOT / "experiments"))

# A few steps, small evaluation, no progress bar: enough to exercise every code path quickly.
TINY = [
    "train.num_steps=20",
    "train.steps_per_call=10",
    "train.checkpoint_every=10",
    "train.batch_size=16",
    "train.progress=false",
    "eval.num_samples=64",
    "eval.num_trajectories=16",
    "optim.warmup_steps=2",
]


@pytest.fixture
def make_cfg():
    def _make(*overrides):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            return compose("config", overrides=[*TINY, *overrides])

    return _make


def run_cli(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )
