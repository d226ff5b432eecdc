"""The IDX and CIFAR-10 readers on small files in the published formats, and the pickle-free batch reader."""

import gzip
import hashlib
import os
import pickle
import tarfile

import numpy as np
import pytest

from genflow.data import DataIntegrityError, Resource, load_split
from genflow.data._formats import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx
from genflow.data._pickle import PickleFormatError, read_pickled_dict

from ._files import (
    CIFAR_NAME,
    IDX_NAMES,
    cifar_catalogue,
    cifar_like_arrays,
    gzip_named,
    idx_bytes,
    idx_catalogue,
    mnist_like_arrays,
    pickle_batch,
    write_cifar_archive,
    write_idx_dataset,
)


@pytest.fixture
def mnist_dir(tmp_path):
    arrays = mnist_like_arrays()
    splits = write_idx_dataset(tmp_path / "mnist", arrays)
    return tmp_path, arrays, idx_catalogue(splits)


def test_idx_round_trip(mnist_dir):
    root, arrays, cat = mnist_dir
    for split in ("train", "test"):
        images, labels = load_split(cat, split, root, allow_download=False)
        assert images.dtype == np.uint8 and images.shape == (arrays[split][0].shape[0], 1, 28, 28)
        np.testing.assert_array_equal(images[:, 0], arrays[split][0])
        np.testing.assert_array_equal(labels, arrays[split][1])
        assert labels.dtype == np.int32


def _resource(path, raw=None):
    data = path.read_bytes()
    content = None if raw is None else hashlib.sha256(raw).hexdigest()
    return Resource(path.name, hashlib.sha256(data).hexdigest(), len(data), content)


def test_idx_checks_magic_dims_and_content(tmp_path):
    labels = np.arange(5, dtype=np.uint8)
    raw = idx_bytes(labels, IDX_LABELS_MAGIC)
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip_named(raw, "labels"))
    np.testing.assert_array_equal(read_idx(path, _resource(path, raw), IDX_LABELS_MAGIC), labels)
    # Images' magic where labels' is expected.
    with pytest.raises(DataIntegrityError, match=r"labels\.gz: IDX magic number 0x00000801, expected 0x00000803"):
        read_idx(path, _resource(path), IDX_IMAGES_MAGIC)
    # A header that promises more bytes than follow (a file cut before gzip'ing).
    path.write_bytes(gzip_named(raw[:-2], "labels"))
    with pytest.raises(DataIntegrityError, match=r"labels\.gz: the header gives shape \(5,\) \(5 bytes\) but 3"):
        read_idx(path, _resource(path), IDX_LABELS_MAGIC)
    # Same shape, one label changed: only the content checksum can tell.
    changed = idx_bytes(np.array([0, 1, 2, 3, 9], np.uint8), IDX_LABELS_MAGIC)
    path.write_bytes(gzip_named(changed, "labels"))
    with pytest.raises(DataIntegrityError, match=r"labels\.gz: the decompressed content's SHA-256 .* does not match"):
        read_idx(path, Resource("labels.gz", "x", 0, hashlib.sha256(raw).hexdigest()), IDX_LABELS_MAGIC)


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "not_gzip"])
def test_damaged_gzip_names_the_file(mnist_dir, damage):
    root, _, cat = mnist_dir
    path = root / "mnist" / IDX_NAMES["test"][0]
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip_byte":
        data[len(data) // 2] ^= 0xFF
    else:
        data = bytearray(b"\x00" * 64)
    path.write_bytes(bytes(data))
    with pytest.raises(DataIntegrityError, match=f"{path}: not a complete gzip file"):
        load_split(cat, "test", root, allow_download=False)


def test_labels_outside_the_classes_are_rejected(tmp_path):
    arrays = mnist_like_arrays()
    arrays["test"][1][3] = 10
    splits = write_idx_dataset(tmp_path / "mnist", arrays)
    with pytest.raises(DataIntegrityError, match=r"t10k-labels-idx1-ubyte\.gz: label 10 outside 0\.\.9"):
        load_split(idx_catalogue(splits), "test", tmp_path, allow_download=False)


@pytest.mark.parametrize("python2_layout", [False, True], ids=["python3-protocol2", "python2-cpickle-layout"])
def test_cifar_round_trip(tmp_path, python2_layout):
    arrays = cifar_like_arrays()
    cat = cifar_catalogue(write_cifar_archive(tmp_path / "cifar10" / CIFAR_NAME, arrays, python2_layout))
    for split in ("train", "test"):
        images, labels = load_split(cat, split, tmp_path, allow_download=False)
        assert images.dtype == np.uint8 and images.shape[1:] == (3, 32, 32)
        np.testing.assert_array_equal(images, arrays[split][0])
        np.testing.assert_array_equal(labels, arrays[split][1])


def test_pickle_reader_reads_both_layouts():
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    batch = {b"batch_label": b"b" * 300, b"labels": [3, 7], b"data": data, b"filenames": [b"a.png", b"b.png"]}
    py3, py2 = pickle_batch(batch), pickle_batch(batch, python2_layout=True)
    assert b"_codecs" in py3 and b"_codecs" not in py2  # the two ways of writing byte strings at protocol 2
    assert py2[:2] == b"\x80\x02" and b"T,\x01\x00\x00" + b"b" * 300 in py2  # BINSTRING of 300 bytes
    for blob in (py3, py2):
        out = read_pickled_dict(blob)
        assert set(out) == set(batch) and out[b"labels"] == [3, 7] and out[b"batch_label"] == b"b" * 300
        assert out[b"filenames"] == [b"a.png", b"b.png"]
        assert out[b"data"].dtype == np.uint8
        np.testing.assert_array_equal(out[b"data"], data)


def test_pickle_reader_reads_the_published_opcode_layout():
    # The opcodes of a published batch as Python 2's cPickle wrote them (numpy.core module path, dtype args as ints,
    # memo from 1, SETITEMS/APPENDS), written out by hand for a 2-image batch.
    data = bytes(range(256)) * 24  # 2 x 3072 bytes
    blob = (
        b"\x80\x02}q\x01(U\x04dataq\x02cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04K\x00\x85"
        b"U\x01b\x87Rq\x05(K\x01K\x02M\x00\x0c\x86cnumpy\ndtype\nq\x06U\x02u1K\x00K\x01\x87Rq\x07"
        b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T\x00\x18\x00\x00" + data + b"tbq\x08"
        b"U\x06labelsq\x09]q\x0a(K\x03K\x07eU\x0bbatch_labelq\x0bU\x15training batch 1 of 5q\x0c"
        b"U\tfilenamesq\r]q\x0e(U\x05a.pngq\x0fU\x05b.pngq\x10eu."
    )
    out = read_pickled_dict(blob)
    assert out[b"labels"] == [3, 7] and out[b"batch_label"] == b"training batch 1 of 5"
    assert out[b"filenames"] == [b"a.png", b"b.png"]
    np.testing.assert_array_equal(out[b"data"], np.frombuffer(data, np.uint8).reshape(2, 3072))


class _Sneaky:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (pickle.dumps({b"x": _Sneaky()}, protocol=2), r"GLOBAL (posix|os|nt)\.getcwd is not allowed"),
        (pickle.dumps({b"x": np.zeros(3, np.float32)}, protocol=2), r"only uint8 arrays"),
        (pickle.dumps({b"x": 1.5}, protocol=2), r"opcode b'G' .* is not allowed"),
        (pickle.dumps({b"x": 1}, protocol=4), r"pickle protocol 4"),
        (pickle.dumps([1, 2], protocol=2), r"expected a pickled dict"),
        (pickle.dumps({b"x": b"abc"}, protocol=2)[:-6], r"truncated pickle"),
    ],
    ids=["foreign-global", "float-array", "float", "protocol-4", "list", "truncated"],
)
def test_pickle_reader_refuses_everything_else(payload, match):
    with pytest.raises(PickleFormatError, match=match):
        read_pickled_dict(payload)


def test_cifar_archive_checks(tmp_path):
    arrays = cifar_like_arrays()
    path = tmp_path / "cifar10" / CIFAR_NAME
    resource = write_cifar_archive(path, arrays)
    # A different archive under the published name fails the SHA-256 check before anything is parsed.
    wrong = Resource(CIFAR_NAME, "0" * 64, resource.size)
    with pytest.raises(DataIntegrityError, match=f"{path}: SHA-256 {resource.sha256} does not match the published"):
        load_split(cifar_catalogue(wrong), "test", tmp_path, allow_download=False)
    # With a matching checksum, a missing batch and a batch that is not a CIFAR pickle are still caught.
    partial = write_cifar_archive(path, arrays, members={"data_batch_1", "test_batch"})
    with pytest.raises(DataIntegrityError, match=r"the archive has no file cifar-10-batches-py/data_batch_2"):
        load_split(cifar_catalogue(partial), "train", tmp_path, allow_download=False)
    with tarfile.open(path, "w:gz") as tar:
        blob = pickle.dumps({b"data": _Sneaky(), b"labels": []}, protocol=2)
        info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        info.size = len(blob)
        tar.addfile(info, __import__("io").BytesIO(blob))
    evil = Resource(CIFAR_NAME, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    with pytest.raises(DataIntegrityError, match=r"test_batch is not a CIFAR-10 python batch: GLOBAL .* not allowed"):
        load_split(cifar_catalogue(evil), "test", tmp_path, allow_download=False)
    # A truncated archive whose checksum were somehow right still fails as an archive.
    good = write_cifar_archive(path, arrays)
    path.write_bytes(path.read_bytes()[: good.size // 2])
    cut = Resource(CIFAR_NAME, hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    with pytest.raises(DataIntegrityError, match=f"{path}: not a complete tar.gz archive"):
        load_split(cifar_catalogue(cut), "test", tmp_path, allow_download=False)


def test_gzip_named_matches_the_published_header():
    # The published MNIST files store the file name (gzip flag FNAME = 0x08); so do the test files.
    data = gzip_named(b"abc", "t10k-labels-idx1-ubyte")
    assert data[:4] == b"\x1f\x8b\x08\x08" and b"t10k-labels-idx1-ubyte\x00" in data
    assert gzip.decompress(data) == b"abc"
