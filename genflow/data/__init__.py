"""Dataset samplers: 2D toys, scikit-learn's 8x8 digits, MNIST, Fashion-MNIST, CIFAR-10, arrays and pairs.

Every dataset is an :class:`~genflow.distributions.AbstractDistribution`: ``sample(key, num)`` draws a batch
inside jit. Synthetic sets generate it; finite sets hold their data on the device and index it. The image datasets
find their files in a data directory, in packaged offline copies or by a checked download (``docs/data.md``).
"""

from genflow.data._binary_gmm import BinaryGMMSamples, binary_gmm
from genflow.data._catalogue import CATALOGUES, CIFAR10_FILES, FASHION_MNIST_FILES, MNIST_FILES
from genflow.data._factory import DATASETS, make_dataset
from genflow.data._finite import AbstractFiniteDataset, ArrayDataset, Digits
from genflow.data._images import CIFAR10, MNIST, FashionMNIST, ImageDataset
from genflow.data._paired import Paired
from genflow.data._sources import (
    ENV_VAR,
    Catalogue,
    DataIntegrityError,
    DataNotFoundError,
    DebianPackageCopy,
    PythonPackageCopy,
    Resource,
    cache_dir,
    data_dir,
    load_split,
    locate,
)
from genflow.data._toy import TOY_DATASETS, Toy2D

__all__ = [
    "CATALOGUES",
    "CIFAR10",
    "CIFAR10_FILES",
    "DATASETS",
    "ENV_VAR",
    "FASHION_MNIST_FILES",
    "MNIST",
    "MNIST_FILES",
    "TOY_DATASETS",
    "AbstractFiniteDataset",
    "ImageDataset",
    "ArrayDataset",
    "BinaryGMMSamples",
    "Catalogue",
    "DataIntegrityError",
    "DataNotFoundError",
    "DebianPackageCopy",
    "Digits",
    "FashionMNIST",
    "Paired",
    "PythonPackageCopy",
    "Resource",
    "Toy2D",
    "binary_gmm",
    "cache_dir",
    "data_dir",
    "load_split",
    "locate",
    "make_dataset",
]
