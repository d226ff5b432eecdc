"""Build a dataset from its name (the entry point used by configs)."""

from __future__ import annotations

from typing import Any

from genflow.data._finite import Digits
from genflow.data._toy import TOY_DATASETS, Toy2D
from genflow.distributions import AbstractDistribution

DATASETS: tuple[str, ...] = (*TOY_DATASETS, "digits")


def make_dataset(name: str, **kwargs: Any) -> AbstractDistribution:
    """Return ``Toy2D(name, **kwargs)`` for a toy name or ``Digits(**kwargs)`` for ``"digits"``.

    Raises:
        ValueError: for an unknown name; the message lists every name in ``DATASETS``.
    """
    if name in TOY_DATASETS:
        return Toy2D(name, **kwargs)
    if name == "digits":
        return Digits(**kwargs)
    raise ValueError(f"make_dataset: unknown dataset {name!r}; allowed names are {', '.join(DATASETS)}")
