"""Optimizers: optax chains with warmup/cosine schedules and gradient clipping."""

from __future__ import annotations

import optax

_OPTIMIZERS = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd, "lion": optax.lion}
_SCHEDULES = ("constant", "cosine", "warmup_cosine", "warmup_constant")


def make_schedule(
    lr: float,
    schedule: str = "constant",
    warmup_steps: int = 0,
    total_steps: int | None = None,
    final_lr_fraction: float = 0.0,
) -> optax.Schedule:
    """Learning-rate schedule.

    - ``constant``: ``lr``.
    - ``warmup_constant``: linear ramp 0 -> lr over ``warmup_steps``, then constant.
    - ``cosine``/``warmup_cosine``: optional linear warmup, then cosine decay to ``final_lr_fraction * lr`` at
      ``total_steps`` (Loshchilov & Hutter, "SGDR", ICLR 2017).
    """
    if schedule not in _SCHEDULES:
        raise ValueError(f"schedule={schedule!r} is not known; allowed: {list(_SCHEDULES)}")
    if schedule == "constant":
        return optax.constant_schedule(lr)
    if schedule == "warmup_constant":
        return optax.linear_schedule(0.0, lr, int(warmup_steps)) if warmup_steps else optax.constant_schedule(lr)
    if total_steps is None or total_steps <= warmup_steps:
        raise ValueError(f"schedule={schedule!r} needs total_steps > warmup_steps (got {total_steps})")
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warmup_steps else lr,
        peak_value=lr,
        warmup_steps=int(warmup_steps),
        decay_steps=int(total_steps),
        end_value=final_lr_fraction * lr,
    )


def make_optimizer(
    name: str = "adam",
    lr: float = 1e-3,
    schedule: str = "constant",
    warmup_steps: int = 0,
    total_steps: int | None = None,
    grad_clip: float | None = None,
    weight_decay: float = 0.0,
    final_lr_fraction: float = 0.0,
    **kwargs,
) -> optax.GradientTransformation:
    """An optax optimizer: global-norm clipping (if ``grad_clip``) followed by ``name`` on a schedule."""
    if name not in _OPTIMIZERS:
        raise ValueError(f"optimizer name={name!r} is not known; allowed: {sorted(_OPTIMIZERS)}")
    if lr <= 0:
        raise ValueError(f"lr={lr} must be positive")
    sched = make_schedule(lr, schedule, warmup_steps, total_steps, final_lr_fraction)
    if name in ("adamw", "lion"):
        kwargs["weight_decay"] = weight_decay
    elif weight_decay:
        raise ValueError(f"weight_decay={weight_decay} needs name='adamw' or 'lion' (decoupled decay), got {name!r}")
    opt = _OPTIMIZERS[name](learning_rate=sched, **kwargs)
    if grad_clip is not None and grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(grad_clip), opt)
    return opt
