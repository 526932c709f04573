"""Downloads from a loopback HTTP server (never the internet) and the dataset search order."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest

from recflow.data import (
    KNOWN_CHECKSUMS,
    ChecksumMismatchError,
    DatasetNotFoundError,
    DownloadError,
    download_release,
    ingest_dataset,
    locate_dataset,
)
from recflow.data import locate as locate_module


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


class Server:
    """Serves ``files`` on 127.0.0.1; ``fail_next`` requests answer ``fail_status`` first."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.fail_next = 0
        self.fail_status = 500
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.requests.append(self.path)
                if server.fail_next > 0:
                    server.fail_next -= 1
                    self.send_error(server.fail_status)
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def release_zip(release_bytes) -> bytes:
    return _zip_bytes({f"ml-1m/{k}": v for k, v in release_bytes["ml-1m"].items()})


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_downloads_and_verifies(server, release_zip, tmp_path, out_dir):
    server.files["/ml-1m.zip"] = release_zip
    cache = tmp_path / "cache"

    path = download_release("ml-1m", cache, base_url=server.url, expected_sha256=_sha256(release_zip))

    assert path == cache / "ml-1m.zip"
    assert path.read_bytes() == release_zip
    assert server.requests == ["/ml-1m.zip"]
    assert sorted(p.name for p in cache.iterdir()) == ["ml-1m.zip"]  # no temp file left
    assert ingest_dataset(path, out_dir)["n_ratings"] == 3


def test_md5_is_accepted_too(server, release_zip, tmp_path):
    server.files["/ml-1m.zip"] = release_zip
    md5 = hashlib.md5(release_zip).hexdigest()
    path = download_release("ml-1m", tmp_path, base_url=server.url, expected_md5=md5)
    assert path.read_bytes() == release_zip


def test_cached_zip_needs_no_network(server, release_zip, tmp_path):
    server.files["/ml-1m.zip"] = release_zip
    sha = _sha256(release_zip)
    download_release("ml-1m", tmp_path, base_url=server.url, expected_sha256=sha)
    server.close()  # a second call must not touch the network at all

    path = download_release("ml-1m", tmp_path, base_url=server.url, expected_sha256=sha)

    assert path.read_bytes() == release_zip
    assert server.requests == ["/ml-1m.zip"]


def test_server_error_is_retried(server, release_zip, tmp_path):
    server.files["/ml-1m.zip"] = release_zip
    server.fail_next = 1

    path = download_release("ml-1m", tmp_path, base_url=server.url, backoff=0, expected_sha256=_sha256(release_zip))

    assert path.read_bytes() == release_zip
    assert server.requests == ["/ml-1m.zip", "/ml-1m.zip"]


def test_persistent_errors_give_up_after_the_retries(server, release_zip, tmp_path):
    server.files["/ml-1m.zip"] = release_zip
    server.fail_next = 10

    with pytest.raises(DownloadError, match="failed after 3 attempts"):
        download_release("ml-1m", tmp_path, base_url=server.url, retries=2, backoff=0, expected_sha256="0" * 64)

    assert len(server.requests) == 3
    assert list(tmp_path.iterdir()) == []


def test_not_found_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_release("ml-1m", tmp_path, base_url=server.url, backoff=0, expected_sha256="0" * 64)
    assert server.requests == ["/ml-1m.zip"]


def test_checksum_mismatch_leaves_nothing(server, release_zip, tmp_path):
    server.files["/ml-1m.zip"] = release_zip
    cache = tmp_path / "cache"

    with pytest.raises(ChecksumMismatchError, match="sha256"):
        download_release("ml-1m", cache, base_url=server.url, expected_sha256="0" * 64)

    assert list(cache.iterdir()) == []


def test_corrupt_cached_zip_is_fetched_again(server, release_zip, tmp_path):
    server.files["/ml-1m.zip"] = release_zip
    (tmp_path / "ml-1m.zip").write_bytes(b"truncated")

    path = download_release("ml-1m", tmp_path, base_url=server.url, expected_sha256=_sha256(release_zip))

    assert path.read_bytes() == release_zip
    assert server.requests == ["/ml-1m.zip"]


def test_unknown_release_needs_a_checksum(tmp_path):
    with pytest.raises(DownloadError, match="no known checksum for 'ml-huge'"):
        download_release("ml-huge", tmp_path, base_url="http://127.0.0.1:9/")


def test_known_checksums_cover_the_grouplens_releases():
    assert set(KNOWN_CHECKSUMS) == {"ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-latest-small"}
    for name, c in KNOWN_CHECKSUMS.items():
        assert c.md5 or c.sha256, name
        assert c.md5 is None or len(c.md5) == 32
        assert c.sha256 is None or len(c.sha256) == 64


# ----------------------------------------------------------------------------- locate_dataset


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("RECFLOW_DATA_DIR", raising=False)


@pytest.fixture
def no_download(monkeypatch):
    calls = []

    def fake(name, cache_dir, **kw):
        calls.append(name)
        path = Path(cache_dir) / f"{name}.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"fake")
        return path

    monkeypatch.setattr(locate_module, "download_release", fake)
    return calls


def test_explicit_path_comes_first(tmp_path, monkeypatch, no_download):
    explicit = tmp_path / "mine"
    explicit.mkdir()
    (tmp_path / "env" / "ml-latest-small").mkdir(parents=True)
    (tmp_path / "env" / "ml-latest-small" / "ratings.csv").write_text("x")
    monkeypatch.setenv("RECFLOW_DATA_DIR", str(tmp_path / "env"))

    assert locate_dataset("ml-latest-small", explicit, tmp_path / "cache") == explicit


def test_missing_explicit_path_is_an_error_naming_it(tmp_path, no_download):
    with pytest.raises(DatasetNotFoundError, match="nope"):
        locate_dataset("ml-latest-small", tmp_path / "nope", tmp_path / "cache")
    assert no_download == []


def test_env_dir_beats_the_bundled_copy(tmp_path, monkeypatch, no_download):
    env = tmp_path / "env"
    (env / "ml-latest-small").mkdir(parents=True)
    (env / "ml-latest-small" / "ratings.csv").write_text("x")
    monkeypatch.setenv("RECFLOW_DATA_DIR", str(env))

    assert locate_dataset("ml-latest-small", None, tmp_path / "cache") == env / "ml-latest-small"


def test_bundled_copy_when_no_env(tmp_path, no_env, no_download):
    path = locate_dataset("ml-latest-small", None, tmp_path / "cache")
    assert path == locate_module.BUNDLED_DIR / "ml-latest-small"
    assert (path / "ratings.csv").is_file()


def test_env_dir_without_the_dataset_falls_through(tmp_path, monkeypatch, no_download):
    (tmp_path / "env" / "ml-1m").mkdir(parents=True)  # a mounted volume holding other datasets
    monkeypatch.setenv("RECFLOW_DATA_DIR", str(tmp_path / "env"))
    assert locate_dataset("ml-latest-small", None, tmp_path / "cache") == locate_module.BUNDLED_DIR / "ml-latest-small"


@pytest.mark.parametrize("cached", ["ml-100k.zip", "ml-100k"])
def test_cache_before_download(tmp_path, no_env, no_download, cached):
    cache = tmp_path / "cache"
    target = cache / cached
    if cached.endswith(".zip"):
        cache.mkdir()
        target.write_bytes(b"zip")
    else:
        target.mkdir(parents=True)
        (target / "u.data").write_text("x")

    assert locate_dataset("ml-100k", None, cache) == target
    assert no_download == []


def test_download_last(tmp_path, no_env, no_download):
    assert locate_dataset("ml-100k", None, tmp_path / "cache") == tmp_path / "cache" / "ml-100k.zip"
    assert no_download == ["ml-100k"]


def test_nothing_found_lists_what_was_tried(tmp_path, no_env, no_download):
    with pytest.raises(DatasetNotFoundError) as err:
        locate_dataset("ml-100k", None, tmp_path / "cache", download=False)
    message = str(err.value)
    assert "RECFLOW_DATA_DIR (not set)" in message
    assert str(locate_module.BUNDLED_DIR / "ml-100k") in message
    assert str(tmp_path / "cache" / "ml-100k.zip") in message
    assert "download: disabled" in message
    assert no_download == []


def test_unknown_name_lists_what_was_tried(tmp_path, monkeypatch, no_download):
    (tmp_path / "env" / "ml-1m").mkdir(parents=True)
    monkeypatch.setenv("RECFLOW_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as err:
        locate_dataset("ml-huge", None, tmp_path / "cache")
    message = str(err.value)
    assert str(tmp_path / "env" / "ml-huge") in message
    assert "not a known GroupLens release" in message
    assert no_download == []


# ----------------------------------------------------------------------------- offline


@pytest.fixture
def offline(monkeypatch):
    """Every URL fails as on a machine without network: the host name does not resolve."""
    import socket
    import urllib.error

    calls = []

    def unresolvable(url, timeout=None):
        calls.append(url)
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr("urllib.request.urlopen", unresolvable)
    return calls


def test_no_network_fails_at_once_without_retries(tmp_path, offline):
    from recflow.data.download import OfflineError

    with pytest.raises(OfflineError, match="no network .*Name or service not known"):
        download_release("ml-1m", tmp_path, backoff=60.0)  # a retry would sleep a minute
    assert len(offline) == 1


def test_offline_missing_dataset_lists_the_places_tried_and_the_fix(tmp_path, no_env, offline):
    with pytest.raises(DatasetNotFoundError) as failed:
        locate_dataset("ml-1m", None, tmp_path / "cache")
    assert not isinstance(failed.value, DownloadError)  # final: the task's download retries do not apply
    assert str(failed.value).splitlines() == [
        "dataset 'ml-1m' not found; tried:",
        "  $RECFLOW_DATA_DIR (not set)",
        f"  bundled copy: {locate_module.BUNDLED_DIR / 'ml-1m'}",
        f"  cache: {tmp_path / 'cache' / 'ml-1m'}",
        f"  cache: {tmp_path / 'cache' / 'ml-1m.zip'}",
        "  download: https://files.grouplens.org/datasets/movielens/ml-1m.zip: no network ([Errno -2] Name or service not known)",
        "to fix: put the GroupLens release (ml-1m/ or ml-1m.zip) in a folder and export RECFLOW_DATA_DIR=<that folder>, "
        f"or copy ml-1m.zip to {tmp_path / 'cache' / 'ml-1m.zip'}, or point the config at it (dataset.path, or --set dataset.path=<folder or zip>)",
    ]
