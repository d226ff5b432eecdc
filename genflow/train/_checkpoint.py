"""Atomic, pickle-free checkpoints with ``eqx.tree_serialise_leaves``.

A checkpoint stores the leaves of ``(model, ema_model, opt_state, step, key_data)``. Reading needs a skeleton of
the same structure (build the model from its config, or with ``eqx.filter_eval_shape``); nothing executable is
ever unpickled. A write goes to a temporary file in the same folder which is then renamed over the target, so a
kill at any moment leaves either the previous complete checkpoint or the new complete one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import equinox as eqx

_PATTERN = re.compile(r"^ckpt_(\d{9})\.eqx$")


class CheckpointManager:
    """Saves and restores pytrees under ``directory`` as ``ckpt_<step>.eqx``, keeping the last ``keep``."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep={keep} must be >= 1")
        self.directory = Path(directory)
        self.keep = keep

    def path(self, step: int) -> Path:
        return self.directory / f"ckpt_{int(step):09d}.eqx"

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints on disk, ascending (temporary files are ignored)."""
        if not self.directory.exists():
            return []
        found = (_PATTERN.match(p.name) for p in self.directory.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def latest_step(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, tree: Any) -> Path:
        """Write ``tree`` atomically for ``step`` and drop checkpoints beyond the last ``keep``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.path(step)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            eqx.tree_serialise_leaves(f, tree)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        _fsync_dir(self.directory)  # make the rename itself durable
        for old in self.steps()[: -self.keep]:
            self.path(old).unlink(missing_ok=True)
        return target

    def remove_partial_writes(self) -> None:
        """Delete temporary files left by writes that a kill cut short (never complete checkpoints)."""
        if self.directory.exists():
            for p in self.directory.glob(".ckpt_*.eqx.tmp-*"):
                p.unlink(missing_ok=True)

    def restore(self, like: Any, step: int | None = None) -> Any:
        """Load the checkpoint at ``step`` (latest by default) into a skeleton ``like``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        return eqx.tree_deserialise_leaves(self.path(step), like)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
