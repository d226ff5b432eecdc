import jax
import pytest


@pytest.fixture(scope="module")
def x64_module():
    """float64 for a whole test module: like the ``x64`` fixture, but compiled primitives are shared by its tests.

    Clearing caches per test (as ``x64`` does) recompiles every primitive in every test, which dominates the
    runtime of these small oracle tests on a loaded 2-core machine.
    """
    prev = jax.config.jax_enable_x64
    jax.clear_caches()
    jax.config.update("jax_enable_x64", True)
    yield
    jax.clear_caches()
    jax.config.update("jax_enable_x64", prev)
