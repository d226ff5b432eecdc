import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from genflow._blas import single_threaded_lapack  # noqa: E402

single_threaded_lapack()  # the test process is an entry point: see genflow/_blas.py

import jax  # noqa: E402
import pytest  # noqa: E402


def _float64():
    """float64 while the generator is suspended; traces cached under one precision must not leak into the other,
    so caches are cleared on both edges."""
    prev = jax.config.jax_enable_x64
    jax.clear_caches()
    jax.config.update("jax_enable_x64", True)
    yield
    jax.clear_caches()
    jax.config.update("jax_enable_x64", prev)


@pytest.fixture
def x64():
    """Enable float64 for a test that compares against a closed form."""
    yield from _float64()


@pytest.fixture(scope="module")
def x64_module():
    """float64 for a whole test module: like the ``x64`` fixture, but compiled primitives are shared by its tests.

    Clearing caches per test (as ``x64`` does) recompiles every primitive in every test, which dominates the
    runtime of small oracle tests (the flows') on a loaded 2-core machine.
    """
    yield from _float64()
