"""Shared builders for the bridge reproduction scripts (eot_benchmark.py, gaussian_bridge.py).

Each method is an experiment config, composed (with ``--quick``, its debug config) by :func:`compose_run`:
LightSB ``lightsb_eot_benchmark`` (and ``eot_benchmark`` / ``gaussian_bridge``, which extend it), SB-CFM
``sb_cfm_eot_benchmark``, DSBM ``dsbm_eot_benchmark``. Networks, models, optimizers and Trainers are built from it
with the builders of ``experiments/train.py``; the scripts train on the pairs they build themselves, so the source
``model.base`` and LightSB's ``net.init_data`` are the script's distributions, passed to the constructors.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import jax
import matplotlib
from omegaconf import DictConfig, OmegaConf

from experiments._common import build_net, build_sampler, build_trainer, instantiate_at
from experiments.compose import compose
from genflow.bridges import fit_dsbm

matplotlib.use("Agg")  # files only: no display on the machines that run these
import matplotlib.pyplot as plt  # noqa: E402

RUN = ["train.progress=false", "train.checkpoint_every=0"]  # a figure run: no progress bar, no run directory


def compose_run(experiment: str, overrides: Sequence[str] = (), quick: bool = False, debug: str | None = None):
    """The figure run's config of ``experiment`` (``configs/debug/<debug or experiment>.yaml`` too if ``quick``)."""
    return compose(experiment, [*RUN, *overrides], quick, debug=debug)


def figure_parser(name: str) -> argparse.ArgumentParser:
    """``--out`` (scripts/figures/results/<name> by default) and ``--quick`` (the experiments' debug configs)."""
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=f"scripts/figures/results/{name}")
    p.add_argument("--quick", action="store_true")
    return p


def save_figure(fig, path, **layout) -> None:
    """Lay out (``tight_layout(**layout)``), write at 120 dpi and close ``fig``."""
    fig.tight_layout(**layout)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def pair_overrides(eps: float, dim: int, seed: int = 0) -> list[str]:
    """Overrides for one benchmark setting: the bridge's eps, the dimension and the seed of the pair and the run."""
    return [f"model.eps={eps}", f"bench.dim={dim}", f"bench.seed={seed}", f"train.seed={seed}"]


def _given(cfg: DictConfig, **nodes: dict) -> DictConfig:
    """``cfg`` with the keys the script passes itself set to null, so that the config does not build them."""
    return OmegaConf.merge(cfg, {group: dict.fromkeys(keys) for group, keys in nodes.items()})


def _fit(cfg: DictConfig, fit):
    """``fit(trainer, key)`` with the Trainer of ``cfg``; returns the fitted model and its training time (s)."""
    trainer = build_trainer(cfg, None)
    t0 = time.perf_counter()
    fitted = jax.block_until_ready(fit(trainer, jax.random.key(cfg.train.seed + 1)))
    return fitted, time.perf_counter() - t0


def train_lightsb(cfg: DictConfig, source, target, data):
    """LightSB of ``cfg`` from ``source``; the potential's means start at samples of ``target``."""
    cfg = _given(cfg, model=("base",), net=("init_data",))
    make = instantiate_at(cfg, "net")  # a partial, like build_net's, that also takes the initial means' data
    potential = make(init_data=target, key=jax.random.key(cfg.train.seed))
    model = instantiate_at(cfg, "model", net=potential, base=source)
    return _fit(cfg, lambda trainer, key: trainer.fit(model, data, key=key).model)


def _bridge_model(cfg: DictConfig, source, **nets):
    """The network bridge of ``cfg`` (SB-CFM, DSBM) from ``source``, its endpoint net keyed by ``train.seed``."""
    return instantiate_at(
        cfg,
        "model",
        net=build_net(cfg, jax.random.key(cfg.train.seed)),
        data_shape=tuple(source.event_shape),
        sampler=build_sampler(cfg),
        base=source,
        **nets,
    )


def train_sbcfm(cfg: DictConfig, source, data):
    """SB-CFM of ``cfg`` (bridge matching on the pairs as the data gives them with ``model.coupling=null``)."""
    model = _bridge_model(_given(cfg, model=("base",)), source)
    return _fit(cfg, lambda trainer, key: trainer.fit(model, data, key=key).ema_model)


def train_dsbm(cfg: DictConfig, source, data, callback=None):
    """DSBM of ``cfg`` by alternating IMF (``figure.num_iterations`` stages); the backward net has its own key."""
    cfg = _given(cfg, model=("base",))
    model = _bridge_model(cfg, source, backward_net=build_net(cfg, jax.random.key(cfg.train.seed + 7)))
    stages = cfg.figure.num_iterations

    def fit(trainer, key):
        return fit_dsbm(model, data, trainer, key=key, num_iterations=stages, callback=callback)

    return _fit(cfg, fit)
