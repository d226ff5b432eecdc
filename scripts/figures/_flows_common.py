"""What the normalizing-flow figure scripts (smooth_flows_torus.py, snf_double_well.py, mixflows.py) share."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

ROOT = Path(__file__).resolve().parents[2]

matplotlib.use("Agg")  # files only: no display on the machines that run these
import matplotlib.pyplot as plt  # noqa: E402


def save_figure(fig, path: Path, dpi: int = 120) -> None:
    """Lay out, write and close ``fig`` (closed figures free their memory in long runs)."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def write_numbers(out: Path, numbers: dict) -> dict:
    """Write ``out/numbers.json`` and return ``numbers``."""
    (out / "numbers.json").write_text(json.dumps(numbers, indent=2))
    return numbers


def figure_parser(name: str) -> argparse.ArgumentParser:
    """``--out`` (scripts/figures/results/<name> by default) and ``--quick`` (adds configs/debug/<name>.yaml)."""
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=ROOT / "scripts/figures/results" / name)
    p.add_argument("--quick", action="store_true", help=f"tiny settings (configs/debug/{name}.yaml)")
    return p
