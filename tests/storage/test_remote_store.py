"""A root on object storage: folders are published manifest last, fetched verified, never trusted half-written.

These run against fsspec's in-memory filesystem (``memory://``) under a recording wrapper; the
end-to-end tests against an S3 server are in ``test_s3_pipeline.py``.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from recflow.runtime import storage
from recflow.runtime.store import Artifact, artifacts_root, building, describe, stage_dir, verify_stage_dir


class RecordingFS(MemoryFileSystem):
    """fsspec's memory filesystem, recording every object written; ``fail_on`` names one that crashes the writer."""

    protocol = "recording"
    writes: list[str] = []
    fail_on: str | None = None

    def _record(self, path: str) -> None:
        name = path.rsplit("/", 1)[-1]
        if name == RecordingFS.fail_on:
            raise ConnectionError(f"injected crash before writing {name}")
        RecordingFS.writes.append(name)

    def put_file(self, lpath, rpath, *args, **kwargs):
        self._record(rpath)
        return super().put_file(lpath, rpath, *args, **kwargs)

    def pipe_file(self, path, value, *args, **kwargs):
        self._record(path)
        return super().pipe_file(path, value, *args, **kwargs)

    def get_file(self, rpath, lpath, *args, **kwargs):
        # the memory filesystem hands every reader one shared file object (and position): copy its bytes instead
        if self._strip_protocol(rpath) not in self.store:
            raise FileNotFoundError(rpath)
        Path(lpath).write_bytes(self.store[self._strip_protocol(rpath)].getvalue())


fsspec.register_implementation("recording", RecordingFS, clobber=True)


@pytest.fixture
def bucket(tmp_path, monkeypatch, request) -> storage.RemoteRoot:
    """``RECFLOW_HOME=recording://bucket/<test>`` with the mirror under the test's temp folder."""
    monkeypatch.setenv("RECFLOW_HOME", f"recording://bucket/{request.node.name}")
    monkeypatch.setenv("RECFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(RecordingFS, "writes", [])
    monkeypatch.setattr(RecordingFS, "fail_on", None)
    return storage.configured_remote()


def build_split(root: Path | None = None) -> Path:
    with building("split", "abc", root) as scratch:
        (scratch / "split.parquet").write_text("ratings")
        (scratch / "summary.json").write_text("{}")
    return stage_dir("split", "abc", root)


def objects(remote: storage.RemoteRoot, relative: str) -> set[str]:
    return {p.rsplit("/", 1)[-1] for p in remote.fs.find(remote.path(relative))}


def test_the_root_is_a_local_mirror_named_by_the_url(bucket, tmp_path):
    assert artifacts_root() == bucket.mirror
    assert bucket.mirror.parent == (tmp_path / "cache" / "mirrors").resolve()
    assert storage.remote_of(artifacts_root()) == bucket


def test_plain_paths_and_file_urls_are_local_roots(tmp_path, monkeypatch):
    monkeypatch.setenv("RECFLOW_HOME", (tmp_path / "here").as_uri())
    assert artifacts_root() == (tmp_path / "here").resolve()
    assert storage.remote_of(artifacts_root()) is None
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "there"))
    assert artifacts_root() == (tmp_path / "there").resolve()


def test_credentials_in_the_url_are_refused_without_echoing_them(monkeypatch):
    monkeypatch.setenv("RECFLOW_HOME", "s3://AKIDEXAMPLE:s3cr3t@bucket/prefix")
    with pytest.raises(storage.StorageError, match="credentials in the URL are refused") as info:
        artifacts_root()
    assert "s3cr3t" not in str(info.value) and "AKIDEXAMPLE" not in str(info.value)


def test_publishing_uploads_every_file_then_the_manifest_last(bucket):
    build_split()
    assert RecordingFS.writes == ["split.parquet", "summary.json", "manifest.json"]
    assert objects(bucket, "split/abc") == {"split.parquet", "summary.json", "manifest.json"}


def test_a_crash_before_the_manifest_leaves_a_folder_nobody_trusts(bucket):
    RecordingFS.fail_on = "manifest.json"
    with pytest.raises(ConnectionError):
        build_split()
    assert objects(bucket, "split/abc") == {"split.parquet", "summary.json"}
    shutil.rmtree(bucket.mirror)  # another machine: only the bucket
    assert verify_stage_dir(stage_dir("split", "abc")) is None
    assert not stage_dir("split", "abc").exists()


def test_a_wiped_mirror_is_refilled_from_the_bucket(bucket):
    fingerprint = verify_stage_dir(build_split())
    shutil.rmtree(bucket.mirror)
    folder = stage_dir("split", "abc")
    assert verify_stage_dir(folder) == fingerprint
    assert (folder / "split.parquet").read_text() == "ratings"


def test_a_truncated_object_is_not_trusted_and_leaves_no_partial_copy(bucket):
    build_split()
    bucket.fs.pipe_file(bucket.path("split/abc/split.parquet"), b"rat")  # the manifest still says "ratings"
    shutil.rmtree(bucket.mirror)
    assert verify_stage_dir(stage_dir("split", "abc")) is None
    assert list((bucket.mirror / "split").iterdir()) == []  # neither the folder nor a scratch copy


def test_a_missing_object_is_not_trusted(bucket):
    build_split()
    bucket.fs.rm_file(bucket.path("split/abc/summary.json"))
    shutil.rmtree(bucket.mirror)
    assert verify_stage_dir(stage_dir("split", "abc")) is None


def test_a_descriptor_fetches_its_folder_on_first_use(bucket):
    build_split()
    artifact = describe("split", "abc")
    shutil.rmtree(bucket.mirror)
    assert artifact.file("split.parquet").read_text() == "ratings"
    assert artifact.is_intact()


def test_a_folder_the_bucket_lost_is_published_again_when_described(bucket):
    folder = build_split()
    bucket.fs.rm(bucket.path("split/abc"), recursive=True)
    describe("split", "abc")
    assert objects(bucket, "split/abc") == {"split.parquet", "summary.json", "manifest.json"}
    assert verify_stage_dir(folder) is not None


def test_republishing_withdraws_the_old_manifest_before_replacing_objects(bucket):
    build_split()
    RecordingFS.writes.clear()
    RecordingFS.fail_on = "split.parquet"  # crash while replacing the objects of a rebuilt folder
    with pytest.raises(ConnectionError):
        build_split()
    assert "manifest.json" not in objects(bucket, "split/abc")


def test_processes_sharing_the_mirror_fetch_one_complete_copy(bucket):
    fingerprint = verify_stage_dir(build_split())
    folder = stage_dir("split", "abc")
    for _ in range(10):  # a race: several rounds of 8 readers of a wiped mirror
        shutil.rmtree(bucket.mirror)
        results: list[str | None] = []
        threads = [threading.Thread(target=lambda out=results: out.append(verify_stage_dir(folder))) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [fingerprint] * 8  # no reader saw a copy another one was replacing
        assert [p.name for p in (bucket.mirror / "split").iterdir()] == ["abc"]  # no scratch copy left behind


def test_a_local_root_never_touches_object_storage(tmp_path, monkeypatch):
    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path))
    monkeypatch.setattr(RecordingFS, "writes", [])
    build_split(tmp_path)
    assert RecordingFS.writes == []
    assert Artifact(stage="split", key="abc", fingerprint="x", path="split/abc").dir(tmp_path) == tmp_path / "split" / "abc"


def test_gc_refuses_a_root_on_object_storage_and_deletes_nothing(bucket):
    from recflow.experiments.gc import GcError, collect

    folder = build_split()
    with pytest.raises(GcError, match=r"recflow gc works on local artifacts roots only; recording://bucket/.* is on object storage"):
        collect(artifacts_root())
    assert verify_stage_dir(folder) is not None


def test_a_store_without_s3_conditional_writes_cannot_be_locked(bucket):
    from recflow.runtime.lease import BucketLease

    with pytest.raises(storage.StorageError, match="use an s3:// root"):
        BucketLease(bucket, {"pid": 1})
