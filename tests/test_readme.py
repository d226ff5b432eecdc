"""The README's Python examples run and print what the README says they print.

The fast test runs the blocks with every training budget cut to at most 50 steps (the API and the printed shapes
are what it checks; full training budgets cost a minute of the fast suite); the slow test runs them as written.
"""

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FAST_STEPS = 50


def _blocks(max_steps: int | None) -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 2
    if max_steps is None:
        return blocks
    cap = lambda m: f"{m.group(1)}={min(int(m.group(2).replace('_', '')), max_steps)}"
    warm = lambda m: f"warmup_steps={min(int(m.group(1).replace('_', '')), max_steps // 2)}"
    blocks = [re.sub(r"\bwarmup_steps=([\d_]+)", warm, b) for b in blocks]
    return [re.sub(r"\b(num_steps|total_steps|steps_per_call)=([\d_]+)", cap, b) for b in blocks]


def _run(blocks: list[str]) -> tuple[dict, str]:
    namespace, out = {}, io.StringIO()
    with contextlib.redirect_stdout(out):
        for code in blocks:  # later blocks build on names from earlier ones, as a reader's session would
            exec(compile(code, str(README), "exec"), namespace)
    return namespace, out.getvalue()


def _check(namespace: dict, printed: str) -> None:
    assert "(500, 2) 20 (6, 500, 2)" in printed
    assert namespace["si"].denoiser_net is not None
    assert "DDIM 50\nPredictorCorrector 201\nProbabilityFlow 37" in printed


def test_readme_python_examples_run_with_short_budgets():
    blocks = _blocks(FAST_STEPS)
    assert "num_steps=50" in blocks[0] and "num_steps=4000" not in blocks[0]  # the cap did apply
    _check(*_run(blocks))


@pytest.mark.slow
def test_readme_python_examples_run_as_written():
    _check(*_run(_blocks(None)))
