"""genflow: probabilistic generative modeling in JAX."""

from genflow._blas import single_threaded_lapack

single_threaded_lapack()  # before JAX first loads LAPACK: see genflow/_blas.py

from genflow._base import (  # noqa: E402
    AbstractDensityModel,
    AbstractGenerativeModel,
    AbstractSolvableDensityModel,
    AbstractSolvableModel,
)

__version__ = "0.1.0"
__all__ = ["AbstractDensityModel", "AbstractGenerativeModel", "AbstractSolvableDensityModel", "AbstractSolvableModel"]
