"""Artifacts are content-addressed, written atomically, and verified before they are trusted."""

from __future__ import annotations

import pytest

from recflow.runtime.store import atomic_path, building, describe, fingerprint_files, hash_parts, stage_key, verify_stage_dir


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_building_publishes_folder_with_manifest_only_on_success(tmp_path):
    with building("split", "abc", tmp_path) as scratch:
        (scratch / "split.parquet").write_text("data")
    art = describe("split", "abc", tmp_path)
    assert art.path == "split/abc"
    assert art.is_intact(tmp_path)


def test_failed_build_publishes_nothing(tmp_path):
    with pytest.raises(ValueError):
        with building("split", "abc", tmp_path) as scratch:
            (scratch / "split.parquet").write_text("data")
            raise ValueError("boom")
    assert not (tmp_path / "split" / "abc").exists()
    assert list((tmp_path / "split").iterdir()) == []


def test_tampered_file_fails_verification(tmp_path):
    with building("split", "abc", tmp_path) as scratch:
        (scratch / "split.parquet").write_text("data")
    folder = tmp_path / "split" / "abc"
    assert verify_stage_dir(folder) is not None
    (folder / "split.parquet").write_text("DATA")
    assert verify_stage_dir(folder) is None


def test_keys_depend_on_values_not_on_dict_order():
    assert hash_parts({"a": 1, "b": 2}) == hash_parts({"b": 2, "a": 1})
    assert stage_key("split", {"seed": 1}) != stage_key("split", {"seed": 2})


def test_fingerprint_follows_content_not_mtime(tmp_path):
    f = tmp_path / "ratings.csv"
    f.write_text("1,2,3\n")
    cache = tmp_path / "fp.json"
    first = fingerprint_files([f], cache)
    f.write_text("1,2,3\n")  # same bytes, new mtime
    assert fingerprint_files([f], cache) == first
    f.write_text("1,2,4\n")
    assert fingerprint_files([f], cache) != first
