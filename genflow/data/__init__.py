"""Dataset samplers: 2D toys, scikit-learn's 8x8 digits, finite arrays and source/target pairs.

Every dataset is an :class:`~genflow.distributions.AbstractDistribution`: ``sample(key, num)`` draws a batch
inside jit. Synthetic sets generate it; finite sets hold their data on the device and index it.
"""

from genflow.data._binary_gmm import BinaryGMMSamples, binary_gmm
from genflow.data._factory import DATASETS, make_dataset
from genflow.data._finite import AbstractFiniteDataset, ArrayDataset, Digits
from genflow.data._paired import Paired
from genflow.data._toy import TOY_DATASETS, Toy2D

__all__ = [
    "DATASETS",
    "TOY_DATASETS",
    "AbstractFiniteDataset",
    "ArrayDataset",
    "BinaryGMMSamples",
    "Digits",
    "Paired",
    "Toy2D",
    "binary_gmm",
    "make_dataset",
]
