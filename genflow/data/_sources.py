"""Where dataset files come from: a data directory, copies inside installed packages, or a checked download.

A file is looked up in this order, and the first source that has it wins:

1. the data directory: the ``root`` argument, else ``$GENFLOW_DATA``, else the cache folder (``$XDG_CACHE_HOME/genflow``
   or ``~/.cache/genflow``), as ``<dir>/<dataset folder>/<file name>``;
2. copies that ship inside packages and work offline (a Python package found with importlib but never imported, or a
   Debian package installed system-wide or unpacked into the cache by ``make data``);
3. a download from the official locations, tried mirror by mirror, kept only if its SHA-256 matches.

A file that is found but damaged is an error, not a reason to try the next source: a silent fallback would hide a
corrupt cache. Downloads are written atomically (a temporary file in the same folder, fsync, rename), so a failed or
interrupted download leaves no file behind.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import http.client
import importlib.util
import os
import tempfile
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from genflow._checks import check_choice

ENV_VAR = "GENFLOW_DATA"
FETCH_COMMAND = "make data"
_CHUNK = 1 << 20


class DataNotFoundError(FileNotFoundError):
    """No source has the file; the message names every source tried and the command that fetches it."""


class DataIntegrityError(ValueError):
    """A file exists but fails its checksum, size or format check; the message names the file."""


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/genflow``, else ``~/.cache/genflow``: the default data directory and the Debian unpack area."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "genflow"


def debian_dir() -> Path:
    """Where ``make data`` unpacks Debian packages (``dpkg-deb -x``, no root install)."""
    return cache_dir() / "debian"


def data_dir(root: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The data directory and how it was chosen: the ``root`` argument, else ``$GENFLOW_DATA``, else the cache."""
    if root is not None:
        return Path(root).expanduser(), "the root argument"
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser(), f"${ENV_VAR}"
    return cache_dir(), f"the default cache; set root= or ${ENV_VAR} to use another"


@dataclasses.dataclass(frozen=True)
class Resource:
    """One published file.

    Attributes:
        filename: its published name.
        sha256: SHA-256 of the file as published; a download must match it.
        size: its published size in bytes.
        content_sha256: SHA-256 of the decompressed payload of a ``.gz`` file, or None. Packaged copies may wrap the
            same payload in a different gzip header (Debian strips the stored name and time), so local copies of a
            gzip file are checked by their content; files without one are checked by ``sha256``.
    """

    filename: str
    sha256: str
    size: int
    content_sha256: str | None = None


class AbstractPackagedCopy(abc.ABC):
    """Copies of a dataset's files inside a package that works offline."""

    @abc.abstractmethod
    def folders(self) -> list[tuple[Path, str]]:
        """Folders that may hold the files, each with a description for messages; empty when not installed."""

    @abc.abstractmethod
    def missing(self) -> str:
        """What an error message says when the package is not installed at all."""


@dataclasses.dataclass(frozen=True)
class PythonPackageCopy(AbstractPackagedCopy):
    """Files inside an installed Python package, found with ``importlib.util.find_spec`` and never imported.

    Attributes:
        package: the top-level import name.
        subdir: the folder inside the package.
        install: the command that installs it.
    """

    package: str
    subdir: str
    install: str

    def folders(self) -> list[tuple[Path, str]]:
        try:
            # find_spec on a top-level name locates the package without running its __init__.
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):
            return []
        locations = [] if spec is None else list(spec.submodule_search_locations or [])
        return [(Path(loc) / self.subdir, f"Python package {self.package}") for loc in locations]

    def missing(self) -> str:
        return f"Python package {self.package} ({self.package}/{self.subdir}): not installed ({self.install})"


@dataclasses.dataclass(frozen=True)
class DebianPackageCopy(AbstractPackagedCopy):
    """Files of a Debian package, installed system-wide or unpacked into the cache by ``make data``.

    Attributes:
        package: the Debian package name.
        subdir: where the files land, relative to ``/`` (see ``dpkg-deb -c``).
    """

    package: str
    subdir: str

    def folders(self) -> list[tuple[Path, str]]:
        return [
            (Path("/") / self.subdir, f"Debian package {self.package}, installed"),
            (self.unpacked() / self.subdir, f"Debian package {self.package}, unpacked by `{FETCH_COMMAND}`"),
        ]

    def unpacked(self) -> Path:
        """The root of this package's tree as ``make data`` unpacks it."""
        return debian_dir() / self.package

    def missing(self) -> str:
        return f"Debian package {self.package}: not found"


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """The published files of one dataset and where to find them.

    Attributes:
        name: the dataset's name, for messages.
        folder: its folder inside the data directory.
        image_shape: one image, channels first.
        num_classes: labels lie in ``0..num_classes - 1``.
        splits: for each split, the files it reads.
        read: ``read(catalogue, split, paths)`` reads a split from its files' paths (in ``splits[split]`` order) into
            ``uint8 (n, *image_shape)`` images and int32 labels.
        mirrors: base URLs (ending in ``/``) that serve every file by its name, tried in order.
        packaged: copies inside packages, tried in order before downloading.
        fetch: the command that puts the files in place.
    """

    name: str
    folder: str
    image_shape: tuple[int, int, int]
    num_classes: int
    splits: Mapping[str, tuple[Resource, ...]]
    read: Callable[[Catalogue, str, Sequence[Path]], tuple[np.ndarray, np.ndarray]]
    mirrors: tuple[str, ...]
    packaged: tuple[AbstractPackagedCopy, ...] = ()
    fetch: str = FETCH_COMMAND


@dataclasses.dataclass(frozen=True)
class Found:
    """Where a file was found: its path and a description of the source."""

    path: Path
    source: str


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: Path, resource: Resource) -> None:
    """Raise a DataIntegrityError naming ``path`` unless its SHA-256 is the published one."""
    got = sha256_file(path)
    if got != resource.sha256:
        raise DataIntegrityError(
            f"{path}: SHA-256 {got} does not match the published {resource.sha256} of {resource.filename} "
            f"({path.stat().st_size} bytes, published {resource.size}): the file is corrupt, truncated or another "
            "file; delete it and fetch it again"
        )


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def download(url: str, dest: Path, resource: Resource, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` atomically, keeping it only if its size and SHA-256 are the published ones.

    The bytes go to a temporary file in ``dest``'s folder (so the final rename stays on one filesystem and is atomic),
    are fsynced, checked, then renamed to ``dest``. On any failure the temporary file is removed and ``dest`` is
    untouched.

    Raises:
        DataIntegrityError: the download's size or SHA-256 is not the published one.
        OSError: the network or the disk failed (urllib's URLError is an OSError).
        http.client.HTTPException: the server broke the protocol, e.g. closed the connection mid-file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        digest, size = hashlib.sha256(), 0
        request = urllib.request.Request(url, headers={"User-Agent": "genflow"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size != resource.size or digest.hexdigest() != resource.sha256:
            raise DataIntegrityError(
                f"{url}: got {size} bytes with SHA-256 {digest.hexdigest()}, expected {resource.size} bytes with "
                f"SHA-256 {resource.sha256}; nothing was written to {dest}"
            )
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)
    return dest


def local_candidates(catalogue: Catalogue, resource: Resource, root=None) -> list[tuple[Path | None, str]]:
    """Every local place ``resource`` may be, in search order, with its source; ``None`` for a missing package."""
    folder, why = data_dir(root)
    found: list[tuple[Path | None, str]] = [(folder / catalogue.folder / resource.filename, f"data directory, {why}")]
    for copy in catalogue.packaged:
        folders = copy.folders()
        found += [(f / resource.filename, source) for f, source in folders] or [(None, copy.missing())]
    return found


def locate(
    catalogue: Catalogue,
    resource: Resource,
    root: str | os.PathLike | None = None,
    allow_download: bool = True,
    timeout: float = 30.0,
) -> Found:
    """Find ``resource``: the data directory, then packaged copies, then a download into the data directory.

    Raises:
        DataNotFoundError: no source has it; the message lists every path, package and URL tried and the command
            that fetches the data.
    """
    tried = []
    for path, source in local_candidates(catalogue, resource, root):
        if path is None:
            tried.append(source)
        elif path.is_file():
            return Found(path, source)
        else:
            tried.append(f"{path} [{source}]: missing")
    dest = data_dir(root)[0] / catalogue.folder / resource.filename
    for base in catalogue.mirrors:
        url = base + resource.filename
        if not allow_download:
            tried.append(f"{url}: not tried (download=False)")
            continue
        try:
            return Found(download(url, dest, resource, timeout), f"downloaded from {url}")
        except (OSError, http.client.HTTPException, DataIntegrityError) as e:
            tried.append(f"{url}: {type(e).__name__}: {e}")
    raise DataNotFoundError(
        f"{catalogue.name}: {resource.filename} was not found. Sources tried, in order:\n  - "
        + "\n  - ".join(tried)
        + f"\nRun `{catalogue.fetch}` to put the data in place (or pass root= / set ${ENV_VAR} to a folder holding "
        f"{catalogue.folder}/{resource.filename})."
    )


def load_split(
    catalogue: Catalogue,
    split: str,
    root: str | os.PathLike | None = None,
    allow_download: bool = True,
    timeout: float = 30.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Locate a split's files (see :func:`locate`) and read them: ``uint8 (n, *image_shape)`` images, int32 labels.

    Raises:
        ValueError: an unknown split.
        DataNotFoundError: a file is in no source.
        DataIntegrityError: a file fails its checksum, size or format check.
    """
    check_choice("split", split, catalogue.splits)
    paths = [locate(catalogue, r, root, allow_download, timeout).path for r in catalogue.splits[split]]
    return catalogue.read(catalogue, split, paths)
