"""Build, validate and reload runs from Hydra configs. The only library-facing code that touches hydra/omegaconf.

Validation runs before anything compiles: it instantiates the cheap parts (data, sampler, optimizer, Trainer),
traces the network and model constructors with ``eqx.filter_eval_shape`` (shapes only), and checks the loop's
integers. Every failure is a :class:`ConfigError` naming the key, the value and what is allowed.

The optimizer (``optim``), the Trainer (``train``) and its evaluation hooks (``callbacks``) are built from their
``_target_`` nodes; only ``train.seed`` and ``train.resume`` belong to the run rather than to the Trainer.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from genflow.train import AbstractPrecision, Trainer
from genflow.train._precision import check_precision

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
# What a resumed run must share with the saved one: everything that shapes the checkpoint or the numbers after it.
RESUME_GROUPS = ("model", "net", "data", "optim", "sampler")
# unroll may change; precision may not (bf16 and fp32 steps differ in the last bits, and more)
RESUME_TRAIN_KEYS = ("seed", "batch_size", "steps_per_call", "ema_decay", "ema_warmup", "precision")
# What a run directory saved before a key existed ran with: the Trainer's default.
RESUME_DEFAULTS = {"precision": {"_target_": "genflow.train.FullPrecision"}}
RUN_KEYS = ("seed", "resume")  # train.* keys that experiments/train.py reads itself; the rest are Trainer arguments


class ConfigError(ValueError):
    """A bad config: the message names the key, the value and what is allowed."""


def _root_message(err: BaseException) -> str:
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {err}" if not isinstance(err, ValueError) else str(err)


def instantiate_at(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """``instantiate(cfg.<key>)``, turning any construction error into a ConfigError that names ``key``."""
    node = OmegaConf.select(cfg, key)
    if node is None:
        raise ConfigError(f"{key} is missing from the config")
    try:
        if not kwargs:
            return instantiate(node, _convert_="all")
        # Objects (equinox modules are dataclasses) must not pass through OmegaConf: bind them after instantiation.
        return instantiate(node, _convert_="all", _partial_=True)(**kwargs)
    except (InstantiationException, ValueError, TypeError) as err:
        raise ConfigError(f"{key}: {_root_message(err)} (value: {OmegaConf.to_container(node)})") from err


def build_data(cfg: DictConfig) -> Any:
    return instantiate_at(cfg, "data")


def build_sampler(cfg: DictConfig) -> Any:
    return instantiate_at(cfg, "sampler")


def build_net(cfg: DictConfig, key) -> eqx.Module:
    make = instantiate_at(cfg, "net")  # a partial: the constructor runs only when it gets its key
    try:
        return make(key=key)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"net: {_root_message(err)} (value: {OmegaConf.to_container(cfg.net)})") from err


def build_model(cfg: DictConfig, data_shape: tuple[int, ...], key) -> eqx.Module:
    """The model with its network; a ``model.denoiser_net`` net config (stochastic interpolants) gets its own key."""
    k_net, k_aux = jax.random.split(key)
    extra = {}
    model_cfg = cfg
    if OmegaConf.select(cfg, "model.denoiser_net") is not None:
        aux = OmegaConf.create({"net": OmegaConf.to_container(cfg.model.denoiser_net, resolve=True)})
        extra["denoiser_net"] = build_net(aux, k_aux)
        model_cfg = copy.deepcopy(cfg)
        with open_dict(model_cfg.model):
            del model_cfg.model["denoiser_net"]
    net = build_net(cfg, k_net)
    return instantiate_at(
        model_cfg, "model", net=net, data_shape=tuple(data_shape), sampler=build_sampler(cfg), **extra
    )


def build_optimizer(cfg: DictConfig) -> Any:
    """The optax transformation of ``cfg.optim``, checked and clamped by :func:`check_optim` first."""
    check_optim(cfg)
    return instantiate_at(cfg, "optim")


def build_trainer(cfg: DictConfig, run_dir: str | Path | None) -> Trainer:
    """``cfg.train`` instantiated (``_target_: genflow.train.Trainer``) with the optimizer and the run directory."""
    return instantiate_at(_trainer_node(cfg), "train", optimizer=build_optimizer(cfg), run_dir=run_dir)


def _trainer_node(cfg: DictConfig) -> DictConfig:
    """``cfg`` without the run's own keys (``RUN_KEYS``) under ``train``: what the Trainer takes."""
    node = copy.deepcopy(cfg)
    with open_dict(node.train):
        for name in RUN_KEYS:
            node.train.pop(name, None)
    return node


def build_hooks(cfg: DictConfig, data: Any, run_dir: Path) -> list:
    """The Trainer's evaluation hooks: every node of ``cfg.callbacks``, given the data set and the run directory."""
    callbacks = OmegaConf.select(cfg, "callbacks") or {}
    return [instantiate_at(cfg, f"callbacks.{name}", data=data, run_dir=run_dir) for name in callbacks]


def _nodes(node: Any, path: str):
    """``(path, node)`` for ``node`` and every dict node below it, lists included."""
    if OmegaConf.is_dict(node):
        yield path, node
        children = ((f"{path}.{k}", v) for k, v in node.items_ex(resolve=False))
    elif OmegaConf.is_list(node):
        children = ((f"{path}.{i}", v) for i, v in enumerate(node))
    else:
        return
    for child_path, child in children:
        yield from _nodes(child, child_path)


def check_optim(cfg: DictConfig) -> None:
    """Learning rates must be positive; a warm-up as long as the run or longer is clamped, with a warning.

    optax checks neither: a negative rate ascends the loss, and ``warmup_cosine_decay_schedule`` fails inside
    optax when ``warmup_steps >= decay_steps`` (for instance a 100-step warm-up in a ``train.num_steps=7`` run).
    """
    for path, node in _nodes(cfg.optim, "optim"):
        is_schedule = str(node.get("_target_", "")).endswith("_schedule")
        for name in ("learning_rate",) + (("peak_value", "value") if is_schedule else ()):
            value = node.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
                raise ConfigError(f"{path}.{name}={value!r} is invalid: must be a positive learning rate")
        warmup, total = node.get("warmup_steps"), node.get("decay_steps")
        if isinstance(warmup, int) and isinstance(total, int) and 0 < total <= warmup:
            warnings.warn(
                f"{path}.warmup_steps={warmup} is not shorter than the schedule ({path}.decay_steps={total}): "
                f"clamped to {total - 1}",
                stacklevel=2,
            )
            node.warmup_steps = total - 1


def _net_size_keys(cfg: DictConfig) -> str:
    keys = [k for k in ("data_dim", "in_channels", "image_size") if k in cfg.net]
    return ", ".join(f"net.{k}={cfg.net[k]}" for k in keys) or "net"


def check_net_matches_data(cfg: DictConfig, data: Any) -> None:
    """The network's declared input shape must equal the data's example shape."""
    net = eqx.filter_eval_shape(build_net, cfg, jax.random.key(0))
    # Networks declare data_shape; a bijection acts on examples of its shape unless it says otherwise (a
    # Hamiltonian map's state holds position, momentum and a time variable around each example).
    want = getattr(net, "data_shape", getattr(net, "shape", ()))
    want, got = tuple(want), tuple(data.event_shape)
    if want and want != got:
        raise ConfigError(
            f"{_net_size_keys(cfg)} does not match the data: net takes examples of shape {want} but "
            f"data ({cfg.data.get('_target_')}, {cfg.data.get('name', '')}) gives {got}. Allowed: a net whose input "
            f"shape is {got}" + (f" (e.g. net.data_dim={math.prod(got)})" if len(got) == 1 else " (e.g. net=unet)")
        )


def validate(cfg: DictConfig) -> Any:
    """Check a config before compiling anything; returns the instantiated data set."""
    t = cfg.train
    _check_positive_int(t, "train", "keep_checkpoints")
    _check_int(t, "train", "seed")
    for name in ("progress", "tensorboard", "resume", "ema_warmup"):
        if not isinstance(t[name], bool):
            raise ConfigError(f"train.{name}={t[name]!r} is invalid: must be true or false")
    for name in ("num_samples", "num_trajectories"):
        _check_positive_int(cfg.eval, "eval", name)
    precision = build_precision(cfg)
    # The loop's integers first (the schedule's length depends on them): the Trainer checks them when it is built.
    instantiate_at(_trainer_node(cfg), "train", optimizer=None, run_dir=None)
    build_optimizer(cfg)
    data = build_data(cfg)
    build_sampler(cfg)
    check_net_matches_data(cfg, data)
    model = eqx.filter_eval_shape(build_model, cfg, tuple(data.event_shape), jax.random.key(0))
    if precision is not None:
        try:
            precision.check(model)
        except ValueError as err:
            raise ConfigError(f"train.precision: {err}") from err
    return data


def build_precision(cfg: DictConfig) -> AbstractPrecision | None:
    """The precision policy of ``cfg.train.precision`` (``None`` when the key is absent: the Trainer's default)."""
    node = OmegaConf.select(cfg, "train.precision")
    if node is None:
        return None
    if not OmegaConf.is_dict(node):  # e.g. train.precision=bf16 where the group override train/precision=bf16 was meant
        raise ConfigError(
            f"train.precision={node!r} is invalid; allowed: the config group train/precision=full or "
            "train/precision=bf16, or a node with _target_: genflow.train.FullPrecision or genflow.train.MixedPrecision"
        )
    precision = instantiate_at(cfg, "train.precision")
    try:
        check_precision(precision)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    return precision


def _check_int(node: DictConfig, prefix: str, name: str) -> None:
    value = node[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{prefix}.{name}={value!r} is invalid: must be an integer")


def _check_positive_int(node: DictConfig, prefix: str, name: str) -> None:
    _check_int(node, prefix, name)
    if node[name] <= 0:
        raise ConfigError(f"{prefix}.{name}={node[name]!r} is invalid: must be a positive integer")


def check_resumable(cfg: DictConfig, run_dir: Path) -> None:
    """A run directory with checkpoints may only be resumed with the config that produced them.

    num_steps may grow (with a schedule that does not depend on it); logging and checkpoint cadence may change.
    """
    saved_path = run_dir / "config.yaml"
    if not saved_path.exists() or not list((run_dir / "checkpoints").glob("ckpt_*.eqx")):
        return
    saved = OmegaConf.load(saved_path)
    pairs = [(g, saved.get(g), cfg.get(g)) for g in RESUME_GROUPS]
    pairs += [
        (f"train.{k}", saved.train.get(k, RESUME_DEFAULTS.get(k)), cfg.train.get(k, RESUME_DEFAULTS.get(k)))
        for k in RESUME_TRAIN_KEYS
    ]
    for key, old, new in pairs:
        old, new = (OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for v in (old, new))
        if old != new:
            raise ConfigError(
                f"{key}={new!r} differs from the run saved in {saved_path} ({old!r}); allowed: the saved value, "
                "or a new run directory (hydra.run.dir=...)"
            )


def load_run(run_dir: str | Path, step: int | None = None) -> tuple[DictConfig, Any, Any]:
    """Rebuild a run from ``run_dir/config.yaml`` and its latest (or given) checkpoint.

    The skeleton comes from ``eqx.filter_eval_shape``, so nothing is initialised twice. Returns
    ``(cfg, state, data)`` where ``state`` is the restored :class:`TrainState`.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"{run_dir} has no config.yaml: not a genflow run directory")
    cfg = OmegaConf.load(run_dir / "config.yaml")
    data = build_data(cfg)
    trainer = build_trainer(cfg, run_dir)
    key = jax.random.key(cfg.train.seed)
    skeleton = eqx.filter_eval_shape(lambda: trainer.init(build_model(cfg, tuple(data.event_shape), key), key))
    return cfg, trainer.restore(skeleton, step), data
