"""Small dataset files written in the real published formats, and catalogues that describe them.

IDX files are gzip'd with the stored file name, as the published MNIST files are. The CIFAR-10 archive holds
``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``, pickled here (in tests only) with Python's pickle at
protocol 2, the protocol of the published batches; ``python2_layout=True`` writes byte strings with the Python 2
opcodes (SHORT_BINSTRING/BINSTRING) that the published files, written by Python 2's cPickle, use.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

from genflow.data import Catalogue, Resource
from genflow.data._formats import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_cifar_split, read_idx_split

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CIFAR_NAME = "cifar-10-python.tar.gz"


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """The raw IDX file: magic, big-endian uint32 sizes, then the uint8 data."""
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape) + array.tobytes()


def gzip_named(raw: bytes, name: str, mtime: int = 0) -> bytes:
    """gzip with the FNAME field set, as the published files are."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=buf, mtime=mtime) as f:
        f.write(raw)
    return buf.getvalue()


def mnist_like_arrays(num_train: int = 12, num_test: int = 10, seed: int = 0) -> dict[str, tuple]:
    """Random uint8 images (1, 28, 28) that include 0 and 255, with labels ``i % 10`` (so each test label is unique)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", num_train), ("test", num_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        out[split] = (images, (np.arange(n) % 10).astype(np.uint8))
    return out


def write_idx_dataset(folder: Path, arrays: dict, mtime: int = 0) -> dict[str, tuple[Resource, ...]]:
    """Write the four IDX .gz files into ``folder``; return the catalogue's splits for them."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, (images, labels) in arrays.items():
        resources = []
        magics = (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC)
        for name, array, magic in zip(IDX_NAMES[split], (images, labels), magics, strict=True):
            raw = idx_bytes(array, magic)
            data = gzip_named(raw, name.removesuffix(".gz"), mtime)
            (folder / name).write_bytes(data)
            resources.append(
                Resource(name, hashlib.sha256(data).hexdigest(), len(data), hashlib.sha256(raw).hexdigest())
            )
        splits[split] = tuple(resources)
    return splits


def idx_catalogue(splits, mirrors=(), packaged=(), name="TinyMNIST", folder="mnist") -> Catalogue:
    return Catalogue(name, folder, (1, 28, 28), 10, splits, read_idx_split, tuple(mirrors), tuple(packaged))


class _Python2Pickler(pickle._Pickler):
    """Python's pure-Python pickler, writing ``bytes`` and ``str`` as Python 2's cPickle wrote its ``str``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj):
        data = obj if isinstance(obj, bytes) else obj.encode("latin-1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str
    dispatch[str] = save_python2_str


def pickle_batch(batch: dict, python2_layout: bool = False) -> bytes:
    if not python2_layout:
        return pickle.dumps(batch, protocol=2)
    buf = io.BytesIO()
    _Python2Pickler(buf, protocol=2).dump(batch)
    return buf.getvalue()


def cifar_like_arrays(per_batch: int = 3, num_test: int = 10, seed: int = 0) -> dict[str, tuple]:
    """Random (3, 32, 32) uint8 images with labels ``i % 10``: five train batches of ``per_batch``, one test batch."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", 5 * per_batch), ("test", num_test)):
        images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        images[0, 0, 0, 0], images[0, 0, 0, 1] = 0, 255
        out[split] = (images, np.arange(n) % 10)
    return out


def write_cifar_archive(path: Path, arrays: dict, python2_layout: bool = False, members=None) -> Resource:
    """Write ``cifar-10-python.tar.gz`` in the published layout; return its Resource."""
    train_x, train_y = arrays["train"]
    chunks = np.array_split(np.arange(train_x.shape[0]), 5)
    batches = {f"data_batch_{i + 1}": (train_x[c], train_y[c]) for i, c in enumerate(chunks)}
    batches["test_batch"] = arrays["test"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, (x, y) in batches.items():
            if members is not None and name not in members:
                continue
            batch = {
                b"batch_label": f"{name} of tiny CIFAR".encode(),
                b"labels": [int(v) for v in y],
                b"data": x.reshape(x.shape[0], -1),
                b"filenames": [f"img_{i}.png".encode() for i in range(x.shape[0])],
            }
            data = pickle_batch(batch, python2_layout)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data = path.read_bytes()
    return Resource(CIFAR_NAME, hashlib.sha256(data).hexdigest(), len(data))


def cifar_catalogue(resource: Resource, mirrors=(), name="TinyCIFAR") -> Catalogue:
    splits = {"train": (resource,), "test": (resource,)}
    return Catalogue(name, "cifar10", (3, 32, 32), 10, splits, read_cifar_split, tuple(mirrors))
