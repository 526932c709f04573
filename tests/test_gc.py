"""``recflow gc`` on tiny hand-made artifacts roots: exactly what no kept run needs goes, nothing else."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from recflow.experiments.gc import RootBusy, collect, plan


def key(n: int) -> str:
    return f"{n:020x}"


def folder(root: Path, stage: str, n: int, inputs: list[str]) -> str:
    path = root / stage / key(n)
    path.mkdir(parents=True)
    (path / "data.bin").write_bytes(b"x" * 100)
    (path / "inputs.json").write_text(json.dumps(inputs))
    return f"{stage}/{key(n)}"


class Root:
    """Two pipeline runs on one root: the old one trained T0, the new one T1 and reuses the old model files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        ingest = folder(root, "ingest", 1, [])
        split = folder(root, "split", 2, [ingest])
        sampling = folder(root, "sampling", 3, [split])
        self.t0 = folder(root, "train", 10, [ingest, split])
        self.e0 = folder(root, "evaluate", 11, [self.t0, split])
        t1 = folder(root, "train", 20, [ingest, split, sampling])
        e1 = folder(root, "evaluate", 21, [t1, split])
        self.orphan = folder(root, "ingest", 99, [])
        (root / ".prefect" / "results").mkdir(parents=True)
        (root / ".prefect" / "results" / key(10)).write_text("{}")  # T0's cache record
        (root / ".prefect" / "results" / key(20)).write_text("{}")
        (root / "train" / f".{key(30)}.k2j4").mkdir()  # scratch of a crashed run
        (root / "train" / f".{key(30)}.k2j4" / "half.bin").write_bytes(b"y" * 10)
        (root / "serving" / "runs").mkdir(parents=True)
        (root / "serving" / "runs" / ".x.json.abc123.tmp").write_text("partial")
        (root / "downloads").mkdir()
        (root / "downloads" / ".ml-1m.zip.q1w2.part").write_bytes(b"z" * 5)
        (root / "synth" / key(40)).mkdir(parents=True)  # a source, not a stage: never collected

        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        client = self.client = MlflowClient(self.uri)
        exp = client.create_experiment("recflow/x", artifact_location=(root / "mlruns").as_uri())

        def run(start: int, tags: dict, parent: str | None = None, artifact: bool = True) -> str:
            r = client.create_run(exp, start_time=start, tags={**tags, **({"mlflow.parentRunId": parent} if parent else {})})
            if artifact:
                client.log_text(r.info.run_id, "files", "model/file.txt")
            client.set_terminated(r.info.run_id)
            return r.info.run_id

        self.old = run(1000, {"recflow.kind": "pipeline", "recflow.stages": json.dumps([ingest, split])})
        self.old_child = run(1001, {"model": "m", "recflow.stages": json.dumps([self.t0, self.e0])}, self.old)
        self.new = run(2000, {"recflow.kind": "pipeline", "recflow.stages": json.dumps([ingest, split])})
        run(2001, {"model": "m", "recflow.stages": json.dumps([t1, e1]), "recflow.model_run_id": self.old_child}, self.new, artifact=False)
        self.gone = run(500, {"recflow.kind": "pipeline", "recflow.stages": "[]"})
        client.delete_run(self.gone)

    def artifacts(self, run_id: str) -> Path:
        return Path(self.client.get_run(run_id).info.artifact_uri.removeprefix("file://"))

    def files(self) -> set[str]:
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Root, Path]:
    """Built once (an MLflow store takes seconds to create); each test gets it back at the same path."""
    made = Root(tmp_path_factory.mktemp("gc") / "artifacts")
    backup = made.root.parent / "backup"
    shutil.copytree(made.root, backup)
    return made, backup


@pytest.fixture
def made(pristine) -> Root:
    made, backup = pristine
    for path in made.root.iterdir():  # the store stays: its open engine must keep its file
        if path.name != "mlflow.db":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    shutil.copytree(backup, made.root, dirs_exist_ok=True, ignore=lambda d, names: ["mlflow.db"] if Path(d) == backup else [])
    return made


def deleted(made: Root, keep_runs: int) -> set[str]:
    return {str(i.path.relative_to(made.root)) for i in plan(made.root, keep_runs).items}


def test_collects_exactly_what_no_kept_run_needs(made):
    expected = {
        made.t0,
        made.e0,
        made.orphan,
        f".prefect/results/{key(10)}",
        f"train/.{key(30)}.k2j4",
        "serving/runs/.x.json.abc123.tmp",
        "downloads/.ml-1m.zip.q1w2.part",
        str(made.artifacts(made.old).relative_to(made.root)),  # beyond the newest run
        str(made.artifacts(made.gone).relative_to(made.root)),  # deleted in MLflow
    }
    assert deleted(made, keep_runs=1) == expected


def test_files_a_kept_run_refers_to_stay(made):
    collect(made.root, keep_runs=1)
    assert (made.artifacts(made.old_child) / "model" / "file.txt").exists()  # the new run's model files
    assert not made.artifacts(made.old).exists()
    assert (made.root / "sampling" / key(3) / "data.bin").exists()  # reached through train's inputs.json
    assert (made.root / "synth" / key(40)).is_dir()


def test_keeping_both_runs_collects_only_the_orphans(made):
    assert deleted(made, keep_runs=2) == {
        made.orphan,
        f"train/.{key(30)}.k2j4",
        "serving/runs/.x.json.abc123.tmp",
        "downloads/.ml-1m.zip.q1w2.part",
        str(made.artifacts(made.gone).relative_to(made.root)),
    }


def test_dry_run_deletes_nothing(made):
    before = made.files()
    result = collect(made.root, keep_runs=1, dry_run=True)
    assert len(result.items) == 9
    assert made.files() - {".recflow.lock"} == before


def test_the_champions_run_is_kept_beyond_n(made):
    (made.root / "serving" / "champions").mkdir(parents=True)
    (made.root / "serving" / "champions" / "recflow-x.json").write_text(json.dumps({"run_id": made.old}))
    gone = deleted(made, keep_runs=1)
    assert made.t0 not in gone and made.e0 not in gone
    assert str(made.artifacts(made.old).relative_to(made.root)) not in gone


def test_a_run_without_stage_records_keeps_every_stage_folder(made):
    stages = made.client.get_run(made.new).data.tags["recflow.stages"]
    made.client.delete_tag(made.new, "recflow.stages")
    try:
        result = plan(made.root, keep_runs=1)
    finally:
        made.client.set_tag(made.new, "recflow.stages", stages)
    assert not [i for i in result.items if i.kind in ("stage folder", "cache record")]
    assert any("does not record its stage folders" in n for n in result.notes)


def test_a_referenced_folder_without_inputs_keeps_every_stage_folder(made):
    (made.root / "train" / key(20) / "inputs.json").unlink()
    result = plan(made.root, keep_runs=1)
    assert not [i for i in result.items if i.kind in ("stage folder", "cache record")]
    assert any("has no inputs.json" in n for n in result.notes)


def test_refuses_while_a_run_holds_the_root(made):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, os, sys, time\n"
                f"fd = os.open({str(made.root / '.recflow.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = made.files()
        with pytest.raises(RootBusy, match="in use"):
            collect(made.root, keep_runs=1)
        assert made.files() == before
    finally:
        holder.kill()
        holder.wait()
    assert collect(made.root, keep_runs=1).items  # free again once the holder is gone


def test_cli_prints_what_it_would_free(made, monkeypatch):
    from typer.testing import CliRunner

    from recflow.cli.main import app

    monkeypatch.setenv("RECFLOW_HOME", str(made.root))
    result = CliRunner().invoke(app, ["gc", "--keep-runs", "1", "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("would free 9 items")
    assert any(line.startswith("  stage folder: 3 (") for line in lines)
    assert made.root.joinpath(made.t0).is_dir()


def test_freed_bytes_count_a_file_linked_from_a_kept_run_as_nothing(made):
    """A run's artifact is often a hard link to a kept run's copy (``recflow.runtime.dedupe``): deleting that name frees no byte."""
    old, kept = made.artifacts(made.old) / "model" / "file.txt", made.artifacts(made.new) / "model" / "file.txt"
    kept.unlink()
    os.link(old, kept)
    items = {str(i.path.relative_to(made.root)): i.bytes for i in plan(made.root, keep_runs=1).items}
    assert items[str(made.artifacts(made.old).relative_to(made.root))] == 0
    assert items[made.t0] == 100 + len(json.dumps([f"ingest/{key(1)}", f"split/{key(2)}"]))  # data.bin and inputs.json, no other name
