"""Model files once on disk: MLflow's copy of a stage file becomes a hard link to it."""

from __future__ import annotations

import os

from recflow.runtime.dedupe import disk_bytes, link_copies
from recflow.runtime.store import write_manifest


def test_an_mlflow_copy_of_a_stage_file_becomes_a_link_and_other_files_stay(tmp_path):
    stage = tmp_path / "train" / "abc"
    stage.mkdir(parents=True)
    (stage / "weights.npy").write_bytes(b"w" * 4096)
    write_manifest(stage)
    logged = tmp_path / "mlruns" / "1" / "run" / "artifacts" / "model"
    logged.mkdir(parents=True)
    (logged / "weights.npy").write_bytes(b"w" * 4096)
    (logged / "other.npy").write_bytes(b"x" * 4096)

    freed = link_copies(tmp_path, min_bytes=1024)

    assert (freed.files, freed.bytes) == (1, 4096)
    assert (logged / "weights.npy").stat().st_ino == (stage / "weights.npy").stat().st_ino
    assert (logged / "weights.npy").read_bytes() == b"w" * 4096
    assert (logged / "other.npy").stat().st_nlink == 1
    assert link_copies(tmp_path, min_bytes=1024).files == 0  # already one file


def test_a_file_a_later_run_logs_again_becomes_a_link_to_the_earlier_runs_copy(tmp_path):
    """A cached rerun logs the same plots and tables again: the bytes stay once, every run still lists its file."""
    runs = tmp_path / "mlruns"
    for run in ("first", "second"):
        plots = runs / run / "artifacts" / "index" / "items"
        plots.mkdir(parents=True)
        (plots / "recall_qps.png").write_bytes(b"png" * 100)
    (runs / "second" / "artifacts" / "other.png").write_bytes(b"gif" * 100)  # the same size, another content

    freed = link_copies(tmp_path)

    first, second = (runs / run / "artifacts" / "index" / "items" / "recall_qps.png" for run in ("first", "second"))
    assert (freed.files, freed.bytes) == (1, 300)
    assert first.stat().st_ino == second.stat().st_ino
    assert second.read_bytes() == b"png" * 100
    assert (runs / "second" / "artifacts" / "other.png").stat().st_nlink == 1
    assert link_copies(tmp_path).files == 0


def test_a_third_copy_joins_the_file_already_shared(tmp_path):
    """Linked names stay the originals: a new copy links to them rather than starting a second shared file."""
    runs = tmp_path / "mlruns"
    for run in ("a", "b"):
        (runs / run).mkdir(parents=True)
        (runs / run / "summary.json").write_text('{"k": 10}')
    link_copies(tmp_path)
    (runs / "c").mkdir()
    (runs / "c" / "summary.json").write_text('{"k": 10}')

    assert link_copies(tmp_path).files == 1
    assert {(runs / run / "summary.json").stat().st_ino for run in "abc"} == {(runs / "a" / "summary.json").stat().st_ino}
    assert (runs / "a" / "summary.json").stat().st_nlink == 3


def test_disk_bytes_counts_a_linked_file_once_and_every_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"x" * 1000)
    os.link(tmp_path / "a" / "f", tmp_path / "g")
    folders = (tmp_path / "a").stat().st_size

    assert disk_bytes(tmp_path) == tmp_path.stat().st_size + folders + 1000
    seen: set = set()
    assert (disk_bytes(tmp_path / "a", seen), disk_bytes(tmp_path / "g", seen)) == (folders + 1000, 0)
    assert disk_bytes(tmp_path / "absent") == 0


def test_large_files_are_linked_to_stage_files_only_never_hashed_against_each_other(tmp_path, monkeypatch):
    """Two equal-sized models whose stage folders are gone would be read in full after every run; they are left alone."""
    from recflow.runtime import dedupe

    monkeypatch.setattr(dedupe, "PEER_MAX_BYTES", 1000)
    for run in ("a", "b"):
        (tmp_path / "mlruns" / run).mkdir(parents=True)
        (tmp_path / "mlruns" / run / "arrays.npz").write_bytes(b"m" * 2000)

    assert link_copies(tmp_path).files == 0
