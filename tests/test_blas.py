"""``import genflow`` leaves OPENBLAS_NUM_THREADS alone; the entry points keep XLA:CPU's LAPACK single-threaded unless
the user chose otherwise (genflow/_blas.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_PROBE = "import genflow._blas as b, os; b.single_threaded_lapack(); print(os.environ['OPENBLAS_NUM_THREADS'])"


def _last_line(probe: str, env_value: str | None = None) -> str:
    """The last printed line of ``python -c probe`` with OPENBLAS_NUM_THREADS unset, or set to ``env_value``."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    if env_value is not None:
        env["OPENBLAS_NUM_THREADS"] = env_value
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_import_genflow_has_no_side_effect():
    assert _last_line("import genflow, genflow.train, os; print(os.environ.get('OPENBLAS_NUM_THREADS'))") == "None"


def test_default_is_one_thread():
    assert _last_line(_PROBE) == "1"


def test_user_choice_is_kept():
    assert _last_line(_PROBE, "2") == "2"


def test_limit_applies_when_scipy_was_loaded_first():
    pytest.importorskip("threadpoolctl")
    probe = (
        "import scipy.linalg, genflow._blas, threadpoolctl; genflow._blas.single_threaded_lapack(); "
        "print(max(i['num_threads'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'blas'))"
    )
    assert _last_line(probe) == "1"
