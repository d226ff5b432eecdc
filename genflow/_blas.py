"""Keep the LAPACK behind XLA:CPU's linear algebra single-threaded.

XLA:CPU lowers ``cholesky``, ``solve``, ``eigh`` and friends to LAPACK calls into SciPy's bundled OpenBLAS, and it
issues them from its own worker threads. A threaded OpenBLAS then spins its pool against XLA's: batched small
factorizations inside a ``lax.scan`` ran 200x slower on two cores (EOT-benchmark target sampling at D = 16: 20 s
instead of 0.1 s per 500 batches), and wide vmaps of batched linalg have hung with every thread waiting. One BLAS
thread per caller removes both; XLA's own thread pool still parallelises the work.

``import genflow`` changes no process setting. The entry points call :func:`single_threaded_lapack`: experiments/
(train, sample, evaluate), the scripts and tests/conftest.py. Library users set ``OPENBLAS_NUM_THREADS=1`` in the
environment (or in ``os.environ`` before importing jax), or call this function before their first linear algebra.
"""

from __future__ import annotations

import os
import sys


def single_threaded_lapack() -> None:
    """Set ``OPENBLAS_NUM_THREADS=1`` unless the user chose a value.

    OpenBLAS reads the variable when it is loaded, which JAX does lazily at its first LAPACK call, so setting it
    at the start of a program is enough. If SciPy was imported earlier (and so its OpenBLAS loaded), the limit is
    applied at run time through threadpoolctl where it is installed.
    """
    if os.environ.setdefault("OPENBLAS_NUM_THREADS", "1") != "1" or "scipy" not in sys.modules:
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn, not with genflow's core
        return
    threadpool_limits(1, user_api="blas")
