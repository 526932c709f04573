"""Content-addressed, atomically written artifacts and the small descriptors tasks pass around.

A stage output lives in ``<root>/<stage>/<key>/`` where ``key`` hashes everything that made it
(stage name, code version, input fingerprints, config slice). Two runs with the same inputs
therefore share a folder and a different input can never overwrite it. Each folder holds a
``manifest.json`` (written last, atomically) listing its files with their sha256; a folder
without a valid manifest is treated as absent.

The root may also be an object-storage URL (``RECFLOW_HOME=s3://bucket/prefix``): the root is
then a local mirror of the bucket, folders are published to it (manifest last) once built and
fetched from it (checksums verified) when the mirror lacks them; see ``recflow.runtime.storage``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from recflow.runtime import storage

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def artifacts_root() -> Path:
    """``$RECFLOW_HOME`` if set, else ``./artifacts``; for an object-storage URL, this machine's mirror of it."""
    home = os.environ.get("RECFLOW_HOME") or "artifacts"
    if storage.is_remote_url(home):
        return storage.RemoteRoot.parse(home).mirror
    return storage.local_root(home)


def shared_root(root: str | Path) -> str:
    """The root as another process or machine must be given it: an object-storage root by its URL (each machine keeps its own mirror), else the path."""
    home = os.environ.get("RECFLOW_HOME", "")
    if storage.is_remote_url(home) and Path(root) == storage.RemoteRoot.parse(home).mirror:
        return home
    return str(root)


# ----------------------------------------------------------------------------- hashing


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    """Stable JSON for hashing: sorted keys, no whitespace, pydantic models dumped."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), default=str)


def _plain(obj: Any) -> Any:
    token = getattr(obj, "cache_token", None)
    if callable(token):
        return _plain(token())
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def hash_parts(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(canonical_json(part).encode())
        h.update(b"\x00")
    return h.hexdigest()


_stat_lock = threading.Lock()


def fingerprint_files(paths: list[Path], cache_file: Path | None = None) -> str:
    """sha256 over raw input files, remembered by (path, size, mtime) so a 600 MB file is hashed once."""
    cache: dict[str, str] = {}
    if cache_file is not None and cache_file.exists():
        with contextlib.suppress(ValueError):
            cache = json.loads(cache_file.read_text())
    digests = []
    changed = False
    for path in sorted(Path(p).resolve() for p in paths):
        st = path.stat()
        token = f"{path}|{st.st_size}|{st.st_mtime_ns}"
        digest = cache.get(token)
        if digest is None:
            digest = sha256_file(path)
            cache[token] = digest
            changed = True
        digests.append((path.name, digest))
    if cache_file is not None and changed:
        with _stat_lock:
            write_text_atomic(cache_file, json.dumps(cache, indent=0, sort_keys=True))
    return hash_parts(digests)


# ----------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``target``; rename it into place only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json_atomic(target: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(target, json.dumps(_plain(obj), indent=2, sort_keys=True, default=str))


# ----------------------------------------------------------------------------- descriptors


class Artifact(BaseModel):
    """What a task returns: where a stage output is and what it is, never the data itself.

    ``path`` is relative to the artifacts root so a descriptor survives moving the root;
    ``fingerprint`` is the sha256 of the folder's manifest (hence of every file in it).
    """

    model_config = ConfigDict(frozen=True)

    stage: str
    key: str
    fingerprint: str
    path: str
    meta: dict[str, Any] = {}

    def cache_token(self) -> dict[str, str]:
        """What identifies this artifact in a cache key: its content, not where it lies."""
        return {"stage": self.stage, "fingerprint": self.fingerprint}

    def dir(self, root: Path | None = None) -> Path:
        """The folder on this machine; under a mirrored root it is fetched from the bucket if absent."""
        folder = (root or artifacts_root()) / self.path
        if not (folder / MANIFEST).is_file() and (remote := storage.remote_for_stage_folder(folder)):
            storage.fetch(folder, *remote)
        return folder

    def file(self, name: str, root: Path | None = None) -> Path:
        return self.dir(root) / name

    def is_intact(self, root: Path | None = None) -> bool:
        """Every file matches the manifest this descriptor was made from (under a mirrored root: also published)."""
        folder = self.dir(root)
        if verify_stage_dir(folder) != self.fingerprint:
            return False
        ensure_published(folder)
        return True


def stage_key(stage: str, *parts: Any) -> str:
    return hash_parts(stage, *parts)[:20]


def stage_dir(stage: str, key: str, root: Path | None = None) -> Path:
    return (root or artifacts_root()) / stage / key


@contextlib.contextmanager
def building(stage: str, key: str, root: Path | None = None) -> Iterator[Path]:
    """A scratch folder that becomes ``<root>/<stage>/<key>`` once the block finishes.

    The manifest (file -> sha256) is written inside the scratch folder, then the folder is
    renamed into place, so readers see either nothing or a complete, verified output. Under a
    mirrored root the folder is then published to the bucket, its manifest last.
    """
    final = stage_dir(stage, key, root)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_scratch(final)
    scratch = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
    try:
        yield scratch
        write_manifest(scratch)
        if final.exists():
            shutil.rmtree(final)
        os.replace(scratch, final)
        if remote := storage.remote_for_stage_folder(final):
            storage.publish(final, *remote)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


PROCESS_STARTED = time.time()


def remove_stale_scratch(final: Path) -> None:
    """Scratch folders of this stage and key left by a crashed run (``kill -9`` mid-task), older than this process.

    The run holds the root's lock, so no other process writes them; a scratch folder younger than
    this process may be another task's of this run (a retry), and is left alone.
    """
    for stale in final.parent.glob(f".{final.name}.*"):
        with contextlib.suppress(OSError):
            if stale.is_dir() and stale.stat().st_mtime < PROCESS_STARTED:
                shutil.rmtree(stale, ignore_errors=True)


def write_manifest(folder: Path) -> str:
    files = {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    text = json.dumps({"files": files}, indent=2, sort_keys=True)
    write_text_atomic(folder / MANIFEST, text)
    return hashlib.sha256(text.encode()).hexdigest()


def verify_stage_dir(folder: Path) -> str | None:
    """The folder's fingerprint if its manifest exists and every file matches it, else None.

    A stage folder of a mirrored root that is absent or damaged here is fetched from the bucket
    (when the bucket holds a complete, verified copy) and checked again.
    """
    fingerprint = _verify_local(folder)
    if fingerprint is None and (remote := storage.remote_for_stage_folder(folder)) and storage.fetch(folder, *remote):
        fingerprint = _verify_local(folder)
    return fingerprint


def ensure_published(folder: Path) -> None:
    """Under a mirrored root, upload a verified local folder the bucket lacks (a run that died before publishing it)."""
    if (remote := storage.remote_for_stage_folder(folder)) and not storage.has_manifest(*remote):
        storage.publish(folder, *remote)


def _verify_local(folder: Path) -> str | None:
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return None
    text = manifest.read_text()
    try:
        files = json.loads(text)["files"]
    except (ValueError, KeyError):
        return None
    for name, digest in files.items():
        path = folder / name
        if not path.is_file() or sha256_file(path) != digest:
            return None
    return hashlib.sha256(text.encode()).hexdigest()


def describe(stage: str, key: str, root: Path | None = None, **meta: Any) -> Artifact:
    root = root or artifacts_root()
    folder = stage_dir(stage, key, root)
    fingerprint = verify_stage_dir(folder)
    if fingerprint is None:
        raise FileNotFoundError(f"{folder} has no valid {MANIFEST}")
    ensure_published(folder)
    return Artifact(
        stage=stage,
        key=key,
        fingerprint=fingerprint,
        path=str(folder.relative_to(root)),
        meta=meta,
    )
