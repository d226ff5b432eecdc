"""Build a dataset from its name (the entry point used by configs)."""

from __future__ import annotations

from typing import Any

from genflow.data._finite import Digits
from genflow.data._images import CIFAR10, MNIST, FashionMNIST
from genflow.data._toy import TOY_DATASETS, Toy2D
from genflow.distributions import AbstractDistribution

_FINITE = {"digits": Digits, "mnist": MNIST, "fashion_mnist": FashionMNIST, "cifar10": CIFAR10}
DATASETS: tuple[str, ...] = (*TOY_DATASETS, *_FINITE)


def make_dataset(name: str, **kwargs: Any) -> AbstractDistribution:
    """Return ``Toy2D(name, **kwargs)`` for a toy name, else the dataset class of that name called with ``kwargs``:
    ``digits`` (Digits), ``mnist`` (MNIST), ``fashion_mnist`` (FashionMNIST), ``cifar10`` (CIFAR10).

    Raises:
        ValueError: for an unknown name; the message lists every name in ``DATASETS``.
    """
    if name in TOY_DATASETS:
        return Toy2D(name, **kwargs)
    if name in _FINITE:
        return _FINITE[name](**kwargs)
    raise ValueError(f"make_dataset: unknown dataset {name!r}; allowed names are {', '.join(DATASETS)}")
