"""Readers of the published image formats: MNIST-style IDX files and the CIFAR-10 python archive.

Both return channels-first ``uint8`` images ``(n, c, h, w)`` and int32 labels ``(n,)``, after checking every header
field, size and checksum against what the catalogue promises; a failed check names the file.

References:
    LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document recognition", 1998, and
    http://yann.lecun.com/exdb/mnist/ (the IDX format).
    Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009 (CIFAR-10).
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from genflow.data._pickle import PickleFormatError, read_pickled_dict
from genflow.data._sources import DataIntegrityError, Resource, check_sha256

if TYPE_CHECKING:
    from genflow.data._sources import Catalogue

# IDX magic: two zero bytes, a type code (0x08: unsigned byte), the number of dimensions.
_IDX_UBYTE = 0x08
IDX_IMAGES_MAGIC = 0x00000803  # 2051: uint8, 3 dims (n, rows, cols)
IDX_LABELS_MAGIC = 0x00000801  # 2049: uint8, 1 dim (n,)


def _gunzip(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes())
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        # EOFError: truncated stream; BadGzipFile: bad magic or CRC/length trailer; zlib.error: corrupt deflate data.
        raise DataIntegrityError(f"{path}: not a complete gzip file ({type(e).__name__}: {e})") from e


def read_idx(path: Path, resource: Resource, magic: int) -> np.ndarray:
    """Read a gzip'd IDX file of unsigned bytes, checking its magic number, its size and its content checksum.

    The header is big-endian: ``0x00 0x00 <type> <ndim>`` then ``ndim`` uint32 sizes; the data are the
    ``prod(sizes)`` bytes that follow, and nothing else.

    Raises:
        DataIntegrityError: a truncated or corrupt file, a wrong magic number, a payload whose length is not the one
            the header gives, or (for a catalogue file) a content SHA-256 that is not the published one.
    """
    raw = _gunzip(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    got = int.from_bytes(raw[:4], "big")
    if got != magic:
        raise DataIntegrityError(f"{path}: IDX magic number {got:#010x}, expected {magic:#010x} (uint8, {ndim}-d)")
    if len(raw) < header:
        raise DataIntegrityError(f"{path}: {len(raw)} bytes is too short for an IDX header of {header} bytes")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(dims)):
        raise DataIntegrityError(
            f"{path}: the header gives shape {dims} ({int(np.prod(dims))} bytes) but {len(raw) - header} bytes follow"
        )
    if resource.content_sha256 is not None and hashlib.sha256(raw).hexdigest() != resource.content_sha256:
        raise DataIntegrityError(
            f"{path}: the decompressed content's SHA-256 {hashlib.sha256(raw).hexdigest()} does not match the "
            f"published {resource.filename}'s {resource.content_sha256}; delete the file and fetch it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _check_labels(path: Path, labels: np.ndarray, num_images: int, num_classes: int) -> np.ndarray:
    if labels.shape != (num_images,):
        raise DataIntegrityError(f"{path}: {labels.shape[0]} labels for {num_images} images")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if bad.size:
        raise DataIntegrityError(f"{path}: label {int(bad[0])} outside 0..{num_classes - 1}")
    return labels.astype(np.int32)


def read_idx_split(catalogue: Catalogue, split: str, paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    """An MNIST-style split from its (images, labels) IDX files: ``uint8 (n, 1, 28, 28)`` and ``int32 (n,)``."""
    (images_path, labels_path), (images_res, labels_res) = paths, catalogue.splits[split]
    images = read_idx(images_path, images_res, IDX_IMAGES_MAGIC)
    if images.shape[1:] != catalogue.image_shape[1:]:
        raise DataIntegrityError(f"{images_path}: images of shape {images.shape[1:]}, {catalogue.name} has "
                                 f"{catalogue.image_shape[1:]}")  # fmt: skip
    labels = read_idx(labels_path, labels_res, IDX_LABELS_MAGIC)
    labels = _check_labels(labels_path, labels, images.shape[0], catalogue.num_classes)
    return images[:, None], labels


def _cifar_batch(path: Path, archive: tarfile.TarFile, member: str, image_shape) -> tuple[np.ndarray, np.ndarray]:
    try:
        handle = archive.extractfile(member)
    except KeyError:
        handle = None
    if handle is None:
        raise DataIntegrityError(f"{path}: the archive has no file {member}")
    try:
        batch = read_pickled_dict(handle.read())
    except PickleFormatError as e:
        raise DataIntegrityError(f"{path}: {member} is not a CIFAR-10 python batch: {e}") from e
    data, labels = batch.get(b"data"), batch.get(b"labels")
    size = int(np.prod(image_shape))
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != size:
        found = getattr(data, "shape", type(data).__name__)
        raise DataIntegrityError(f"{path}: {member}: 'data' must be a uint8 array (n, {size}), got {found}")
    if not isinstance(labels, list) or not all(isinstance(y, int) for y in labels):
        raise DataIntegrityError(f"{path}: {member}: 'labels' must be a list of ints (keys: {sorted(batch)})")
    # Each row is the 1024 red, then 1024 green, then 1024 blue values of a 32x32 image, rows top to bottom:
    # channels first already.
    return data.reshape(-1, *image_shape), np.asarray(labels, dtype=np.int64)


def read_cifar_split(catalogue: Catalogue, split: str, paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 split read from ``cifar-10-python.tar.gz`` without unpacking it: ``uint8 (n, 3, 32, 32)``."""
    (path,), (resource,) = paths, catalogue.splits[split]
    # The batches are pickles: check the archive is the published one before parsing any of it.
    check_sha256(path, resource)
    members = CIFAR10_MEMBERS[split]
    try:
        with tarfile.open(path, "r:gz") as archive:
            batches = [_cifar_batch(path, archive, m, catalogue.image_shape) for m in members]
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataIntegrityError(f"{path}: not a complete tar.gz archive ({type(e).__name__}: {e})") from e
    images = np.concatenate([b[0] for b in batches])
    labels = _check_labels(path, np.concatenate([b[1] for b in batches]), images.shape[0], catalogue.num_classes)
    return images, labels


# The python release's members for each split (its readme lists them).
CIFAR10_MEMBERS = {
    "train": tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
    "test": ("cifar-10-batches-py/test_batch",),
}
