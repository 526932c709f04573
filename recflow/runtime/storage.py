"""An artifacts root on object storage: an fsspec URL (``s3://bucket/prefix``) with a local mirror.

Everything in recflow reads stage files through local paths (pandas, pyarrow, numpy, FAISS,
Keras), so a remote root is never read in place: ``RECFLOW_HOME=s3://bucket/prefix`` makes the
artifacts root a local *mirror* folder, ``$RECFLOW_CACHE_DIR/mirrors/<sha256 of the URL>``
(default ``~/.cache/recflow``), and the bucket holds the shared truth:

  * **publish** (after a stage folder is built locally): every file is uploaded, then its
    ``manifest.json`` last. An older manifest is removed first, so at no moment does the bucket
    show a manifest beside objects it does not describe. A crash between objects and manifest
    leaves a folder without a manifest, which no reader trusts;
  * **fetch** (a stage folder missing from the mirror): the remote manifest is read, every file
    it lists is downloaded into a scratch folder beside the target and checked against its
    sha256, the manifest is written last and the folder renamed into place. A missing manifest,
    a missing or truncated object, or a checksum mismatch means "absent": the task rebuilds it.
    Processes sharing the mirror on one machine see a folder either complete or not at all
    (atomic rename; the loser of a race discards its copy).

Prefect's result records and cache records go to ``<URL>/.prefect/results`` (an fsspec-backed
``RemoteFileSystem``), MLflow's run artifacts to ``<URL>/mlruns``. What another machine needs to
serve and to read a run goes to the bucket too, as plain objects beside the stage folders
(``SHARED_FOLDERS``: ``serving/`` run records and champion pointers, ``logs/`` run logs):
``publish_file`` uploads one after it is written locally, ``fetch_folder`` brings a folder's
objects into the mirror before it is read (a machine that never ran the pipeline starts from an
empty mirror). Machine-local state stays in the mirror: the MLflow tracking database (sqlite,
unless ``MLFLOW_TRACKING_URI`` names a server: a team's must), the Prefect server's database and
the lock file.

Credentials come only from the environment, as the AWS SDKs read them (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL`` for MinIO or another S3-compatible server); a URL carrying credentials
(``s3://key:secret@bucket``) is refused, so they can never reach a config, a log line or an
MLflow parameter. ``file://`` URLs and plain paths are local roots, as before.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

MANIFEST = "manifest.json"  # recflow.runtime.store.MANIFEST (no import: store imports this module)
#: folders of plain files under the root that every machine sharing a bucket reads (see the module docstring)
SHARED_FOLDERS = ("serving", "logs")


class StorageError(ValueError):
    """An artifacts root URL that cannot be used as given."""


class LeaseLost(RuntimeError):
    """This run no longer holds the bucket's lease, so it must not write there (``recflow.runtime.lease``)."""


# url -> the check a write to that root must pass first (the holder's lease: ``BucketLease.check``)
_fences: dict[str, Any] = {}


def fence(remote: RemoteRoot, check: Any) -> None:
    """Every later write to ``remote`` (``publish``, ``check_fence``) first calls ``check``, which raises ``LeaseLost``."""
    _fences[remote.url] = check


def unfence(remote: RemoteRoot) -> None:
    _fences.pop(remote.url, None)


def check_fence(remote: RemoteRoot | None) -> None:
    """Raise ``LeaseLost`` when this process may no longer write to ``remote`` (a no-op for a local root)."""
    if remote is not None and (check := _fences.get(remote.url)) is not None:
        check()


def check_root_fence(root: str | os.PathLike | None) -> None:
    """``check_fence`` for the remote root that ``root`` mirrors, if any: before writing MLflow artifacts, records."""
    check_fence(remote_of(root))


def bucket_error(remote: RemoteRoot, exc: BaseException) -> StorageError | None:
    """A missing bucket or a refused access as an error naming the bucket and what to check; None for other errors."""
    bucket = urlsplit(remote.url).netloc
    if isinstance(exc, FileNotFoundError):
        endpoint = os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
        return StorageError(f"artifacts root {remote.url}: bucket {bucket!r} does not exist at {endpoint} (check RECFLOW_HOME and AWS_ENDPOINT_URL)")
    if isinstance(exc, PermissionError):
        return StorageError(f"artifacts root {remote.url}: access to bucket {bucket!r} is refused ({exc}); check the AWS_* credentials and the bucket policy")
    return None


def redact_uri(uri: str | None) -> str | None:
    """``uri`` without the credentials of its user-info part (``http://user:pass@host`` -> ``http://***@host``).

    Every place a URI is shown or written (the console, run records, Prefect artifacts, the flow's
    result) goes through this; the URI itself, credentials included, is used only to connect.
    """
    if not uri or "@" not in uri:
        return uri
    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"***@{host}").geturl()


def is_remote_url(location: str) -> bool:
    """An fsspec URL other than ``file://`` (``s3://``, ``gs://``, ``memory://`` ...)."""
    scheme = urlsplit(location).scheme
    return len(scheme) > 1 and scheme != "file"  # one letter: a Windows drive


def local_root(location: str) -> Path:
    """A plain path or ``file://`` URL as a resolved local folder."""
    if urlsplit(location).scheme == "file":
        return Path(unquote(urlsplit(location).path)).resolve()
    return Path(location).resolve()


def cache_dir() -> Path:
    return Path(os.environ.get("RECFLOW_CACHE_DIR") or Path.home() / ".cache" / "recflow")


@dataclass(frozen=True)
class RemoteRoot:
    """A root URL, the fsspec filesystem serving it, and this machine's mirror of it."""

    url: str  # normalised: no trailing slash

    @classmethod
    def parse(cls, url: str) -> RemoteRoot:
        parts = urlsplit(url)
        if parts.username or parts.password:
            raise StorageError(
                f"artifacts root {parts.scheme}://{parts.hostname}{parts.path}: credentials in the URL are refused; "
                "set them in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL ...)"
            )
        if not parts.netloc:
            raise StorageError(f"artifacts root {url!r}: expected <scheme>://<bucket>[/<prefix>]")
        return cls(url.rstrip("/"))

    @property
    def fs(self) -> Any:
        return _filesystem(urlsplit(self.url).scheme)

    @property
    def mirror(self) -> Path:
        return (cache_dir() / "mirrors" / hashlib.sha256(self.url.encode()).hexdigest()[:16]).resolve()

    def path(self, relative: str | os.PathLike = "") -> str:
        """The filesystem path (no scheme) of ``relative`` under the root, as fsspec methods take it."""
        base = self.fs._strip_protocol(self.url).rstrip("/")
        rel = Path(relative).as_posix().strip("/")
        return f"{base}/{rel}" if rel and rel != "." else base

    def url_of(self, relative: str) -> str:
        return f"{self.url}/{relative.strip('/')}"


@functools.cache
def _filesystem(protocol: str) -> Any:
    import fsspec

    return fsspec.filesystem(protocol)


def configured_remote() -> RemoteRoot | None:
    """``$RECFLOW_HOME`` as a remote root, or None when it is a local path (or unset)."""
    home = os.environ.get("RECFLOW_HOME") or ""
    return RemoteRoot.parse(home) if is_remote_url(home) else None


def remote_of(root: str | os.PathLike | None) -> RemoteRoot | None:
    """The remote root that ``root`` mirrors: the configured one, when ``root`` is its mirror."""
    remote = configured_remote()
    if remote is None or root is None:
        return None
    return remote if Path(root).resolve() == remote.mirror else None


def remote_for_stage_folder(folder: Path) -> tuple[RemoteRoot, str] | None:
    """(remote root, ``<stage>/<key>``) when ``folder`` is a stage folder of a mirrored root."""
    folder = Path(folder)
    remote = remote_of(folder.parent.parent)
    return (remote, f"{folder.parent.name}/{folder.name}") if remote else None


# ----------------------------------------------------------------------------- publish / fetch


def _manifest_files(text: str) -> dict[str, str] | None:
    try:
        files = json.loads(text)["files"]
    except (ValueError, KeyError, TypeError):
        return None
    return files if isinstance(files, dict) else None


def has_manifest(remote: RemoteRoot, relative: str) -> bool:
    """Asks the store itself (``refresh``): a listing cached by s3fs may predate another machine's write or delete."""
    try:
        remote.fs.info(remote.path(f"{relative}/{MANIFEST}"), refresh=True)
    except FileNotFoundError:
        return False
    return True


def remote_manifest(remote: RemoteRoot, relative: str) -> str | None:
    with contextlib.suppress(FileNotFoundError):
        return remote.fs.cat_file(remote.path(f"{relative}/{MANIFEST}")).decode()
    return None


def publish(folder: Path, remote: RemoteRoot, relative: str) -> None:
    """Upload a built, verified stage folder: its files, then its manifest last (see the module docstring)."""
    fs = remote.fs
    target = remote.path(relative)
    manifest_text = (folder / MANIFEST).read_text()
    files = sorted(_manifest_files(manifest_text) or {})
    check_fence(remote)  # before each write: a run that lost the bucket's lease writes nothing more
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(f"{target}/{MANIFEST}")  # withdraw an older version before replacing its objects
    for name in files:
        check_fence(remote)
        fs.put_file(str(folder / name), f"{target}/{name}")
    check_fence(remote)
    fs.pipe_file(f"{target}/{MANIFEST}", manifest_text.encode())


def fetch(folder: Path, remote: RemoteRoot, relative: str) -> bool:
    """Download ``relative`` into ``folder`` if the bucket holds a complete, verified copy; False otherwise."""
    text = remote_manifest(remote, relative)
    files = _manifest_files(text) if text is not None else None
    if files is None:
        return False
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))  # recflow gc's scratch pattern
    try:
        names = sorted(files)
        for name in names:
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        try:
            if names:
                remote.fs.get([remote.path(f"{relative}/{n}") for n in names], [str(scratch / n) for n in names])
        except OSError:  # a listed object is missing (or unreadable): not a complete copy
            return False
        for name in names:
            local = scratch / name
            if not local.is_file() or _sha256(local) != files[name]:
                return False
        (scratch / MANIFEST).write_text(text)  # last: the mirror's copy is complete once this exists
        if folder.exists():
            if _holds(folder, text, files):  # another process put a complete copy there first: keep theirs
                return True
            shutil.rmtree(folder, ignore_errors=True)  # a damaged local copy
        with contextlib.suppress(OSError):  # another process renamed its copy into place meanwhile: keep theirs
            os.replace(scratch, folder)
        return True
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def _holds(folder: Path, manifest_text: str, files: dict[str, str]) -> bool:
    """Whether ``folder`` already is a complete copy of that manifest."""
    try:
        if (folder / MANIFEST).read_text() != manifest_text:
            return False
        return all(_sha256(folder / name) == digest for name, digest in files.items())
    except OSError:
        return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- MLflow


def mlflow_artifact_location(remote: RemoteRoot) -> str:
    """``<URL>/mlruns``; MLflow's S3 client is pointed at ``$AWS_ENDPOINT_URL`` when one is set."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and urlsplit(remote.url).scheme in ("s3", "s3a") and not os.environ.get("MLFLOW_S3_ENDPOINT_URL"):
        os.environ["MLFLOW_S3_ENDPOINT_URL"] = endpoint
    return remote.url_of("mlruns")


# ----------------------------------------------------------------------------- shared plain files


def _mirrored(root: str | os.PathLike, path: str | os.PathLike) -> tuple[RemoteRoot, str] | None:
    """(remote, path relative to the root) when ``path`` lies under the mirror of the configured remote root."""
    remote = remote_of(root)
    if remote is None:
        return None
    try:
        return remote, Path(path).resolve().relative_to(remote.mirror).as_posix()
    except ValueError:
        return None


def publish_file(root: str | os.PathLike, path: str | os.PathLike) -> None:
    """Upload a file written under a mirrored root to the same place in the bucket; nothing for a local root."""
    if found := _mirrored(root, path):
        remote, relative = found
        remote.fs.put_file(str(path), remote.path(relative))


def fetch_folder(root: str | os.PathLike, relative: str) -> None:
    """Bring ``<URL>/<relative>``'s objects into the mirror (the newer copy wins); nothing for a local root.

    Each file is downloaded beside its target and renamed into place, so a reader on this machine
    sees an old or a new JSON record, never half of one.
    """
    remote = remote_of(root)
    if remote is None:
        return
    base = remote.path(relative)
    try:
        listing = remote.fs.find(base, detail=True, refresh=True)
    except FileNotFoundError:
        return
    for key, info in listing.items():
        local = remote.mirror / relative / key[len(base) + 1 :]
        if local.is_file() and local.stat().st_size == info.get("size") and _remote_older(info, local):
            continue
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{local.name}.", dir=local.parent)
        os.close(fd)
        try:
            remote.fs.get_file(key, tmp)
            os.replace(tmp, local)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _remote_older(info: dict[str, Any], local: Path) -> bool:
    modified = info.get("LastModified") or info.get("mtime")
    stamp = modified.timestamp() if hasattr(modified, "timestamp") else modified
    return isinstance(stamp, (int, float)) and stamp <= local.stat().st_mtime
