"""genflow: probabilistic generative modeling in JAX."""

from genflow._base import (
    AbstractDensityModel,
    AbstractGenerativeModel,
    AbstractSolvableDensityModel,
    AbstractSolvableModel,
)

__version__ = "0.1.0"
__all__ = ["AbstractDensityModel", "AbstractGenerativeModel", "AbstractSolvableDensityModel", "AbstractSolvableModel"]
