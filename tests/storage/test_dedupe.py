"""Model files once on disk: MLflow's copy of a stage file becomes a hard link to it."""

from __future__ import annotations

from recflow.runtime.dedupe import link_copies
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
