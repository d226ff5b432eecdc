"""Run logging: metrics.jsonl (always) and TensorBoard (when tensorboardX is installed and asked for)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _jsonable(v: Any) -> Any:
    try:
        v = float(v) if not isinstance(v, (int, str, bool)) else v
    except (TypeError, ValueError):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class MetricsLogger:
    """Appends one JSON object per record to ``run_dir/metrics.jsonl``."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = False):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tb = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:  # optional dependency: fall back to jsonl only
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def log(self, step: int, **values: Any) -> None:
        record = {"step": int(step), **{k: _jsonable(v) for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, int(step))

    def truncate_after(self, step: int) -> None:
        """Drop records logged after ``step`` (a resumed run recomputes them, bit for bit)."""
        kept = [r for r in self.read() if r["step"] <= step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        tmp.replace(self.path)

    def read(self) -> list[dict]:
        """All complete records; a last line torn by a kill mid-write is skipped."""
        if not self.path.exists():
            return []
        records = []
        for ln in self.path.read_text().splitlines():
            try:
                records.append(json.loads(ln))
            except json.JSONDecodeError:
                continue
        return records

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
