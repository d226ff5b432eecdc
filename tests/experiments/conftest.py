import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = ROOT / "configs"

# A few steps, small evaluation, no progress bar: enough to exercise every code path quickly.
TINY = [
    "train.num_steps=20",
    "train.steps_per_call=10",
    "train.checkpoint_every=10",
    "train.batch_size=16",
    "train.progress=false",
    "eval.num_samples=64",
    "eval.num_trajectories=16",
]


@pytest.fixture
def make_cfg():
    def _make(*overrides):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            return compose("config", overrides=[*TINY, *overrides])

    return _make


def cli_env() -> dict:
    """The environment of a command-line run: this checkout's experiments and genflow, whatever is installed."""
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONPATH": path}


def run_cli(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = cli_env()
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )
