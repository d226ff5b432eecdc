"""Cluster launchers (configs/hydra/launcher/): they compose with the app's config and build, and nothing is submitted.

Local sweeps use Hydra's basic launcher (tests/experiments/test_cli.py::test_multirun_sweep runs one).
"""

import importlib.util

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from .conftest import CONFIG_DIR


def launcher_cfg(name):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose("config", overrides=[f"hydra/launcher={name}"], return_hydra_config=True)
    return cfg.hydra.launcher


def has(module):
    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(not has("hydra_plugins.hydra_submitit_launcher"), reason="pip install -e '.[cluster]'")
def test_slurm_launcher_composes_and_builds_without_submitting():
    cfg = launcher_cfg("slurm")
    assert cfg._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (cfg.gpus_per_node, cfg.max_num_timeout, cfg.timeout_min) == (1, 3, 240)
    launcher = instantiate(cfg)  # constructing the launcher submits nothing; launch() would
    assert type(launcher).__name__ == "SlurmLauncher"
    assert launcher.params["partition"] is None and launcher.params["cpus_per_task"] == 8


def test_ray_launcher_config_composes():
    cfg = launcher_cfg("ray_cluster")
    assert cfg._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert set(cfg.ray) == {"init", "remote"} and cfg.ray.init.address is None
    assert set(cfg.ray.remote) == {"num_cpus", "num_gpus"}


@pytest.mark.skipif(
    not has("hydra_plugins.hydra_ray_launcher"),
    reason="hydra-ray-launcher is not installed: it pulls in ray (hundreds of MB) and pins cloudpickle 2.2.1, so it "
    "is left out of the [cluster] extra; the config's target and keys are checked above",
)
def test_ray_launcher_builds_without_submitting():
    launcher = instantiate(launcher_cfg("ray_cluster"))
    assert type(launcher).__name__ == "RayLauncher"
