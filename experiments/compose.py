"""Compose an experiment's config outside a Hydra application: what the figure scripts run.

A figure script reads the same ``configs/experiment/<name>.yaml`` as ``experiments/train.py`` and builds its models
with the same builders (:mod:`experiments._common`). The convention:

- the script's own settings (NFE lists, seeds, evaluation sizes: what is not a model, data or training setting) sit
  under a ``figure:`` node of its experiment config; ``train.py`` ignores that node;
- ``--quick`` composes ``debug=<script>`` (``configs/debug/<script>.yaml``, ``# @package _global_``), which
  shrinks ``figure.*``, ``train.*`` and ``net.*`` for a smoke run.

    cfg = compose("ode_vs_sde", quick=args.quick)                 # experiment=ode_vs_sde [debug=ode_vs_sde]
    cfg = compose("flow_smooth_torus", quick=True, debug="smooth_flows_torus")
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig

from experiments._common import CONFIG_DIR


def compose(
    experiment: str, overrides: Sequence[str] = (), quick: bool = False, *, debug: str | None = None
) -> DictConfig:
    """``configs/config.yaml`` with ``experiment=<experiment>`` (and ``debug=<debug>`` when ``quick``).

    Args:
        experiment: the name of a file in ``configs/experiment/`` (without ``.yaml``).
        overrides: further Hydra overrides, e.g. ``["train.seed=1"]``.
        quick: compose the debug config too (``configs/debug/<debug>.yaml``).
        debug: the debug config's name; the experiment's name by default.

    Returns:
        The composed, unresolved config.
    """
    debug_overrides = [f"debug={debug or experiment}"] if quick else []
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return hydra_compose(config_name="config", overrides=[f"experiment={experiment}", *debug_overrides, *overrides])
