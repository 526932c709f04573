"""Faults a nightly user meets, each operated for real (issue 26): substitutions refused, damaged
databases named with their remedy, credentials never shown, killed runs ended on the next run."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from recflow.data.locate import DatasetNotFoundError, locate_dataset
from recflow.experiments.config import ConfigError, load_config
from recflow.experiments.tracking import CRASHED_TAG, ROOT_TAG, TrackingStoreMismatch, start_pipeline_run
from recflow.runtime.servers import DamagedDatabase, check_mlflow_database, check_prefect_database
from recflow.runtime.storage import redact_uri
from recflow.runtime.store import building

REPO = Path(__file__).resolve().parents[1]

# ----------------------------------------------------------------------------- substitutions are refused


def test_an_empty_config_file_is_refused_not_replaced_by_the_defaults(tmp_path):
    empty = tmp_path / "nightly.yaml"
    empty.write_text("# nothing here yet\n")
    with pytest.raises(ConfigError, match=r"nightly.yaml: the config file is empty; refused"):
        load_config(empty)


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_a_data_dir_that_is_missing_or_empty_is_refused_not_replaced_by_the_bundled_copy(tmp_path, monkeypatch, state):
    data_dir = tmp_path / "volume"
    if state == "empty":
        data_dir.mkdir()  # an unmounted volume's mount point
    monkeypatch.setenv("RECFLOW_DATA_DIR", str(data_dir))
    expected = "is empty" if state == "empty" else "does not exist"
    with pytest.raises(DatasetNotFoundError, match=rf"RECFLOW_DATA_DIR={data_dir} {expected} \(an unmounted volume\?\); refused"):
        locate_dataset("ml-latest-small", None, tmp_path / "cache")


def test_an_emptied_mlflow_db_under_serving_records_is_refused(recflow_home):
    cfg = load_config("configs/smoke.yaml")
    parent = start_pipeline_run(cfg, "first", recflow_home)
    records = recflow_home / "serving" / "runs"
    records.mkdir(parents=True)
    record = {"run_id": parent["run_id"], "experiment": parent["experiment"], "tracking_uri": parent["tracking_uri"]}
    (records / f"{parent['run_id']}.json").write_text(json.dumps(record))
    start_pipeline_run(cfg, "second", recflow_home)  # the store knows the recorded run: fine
    (recflow_home / "mlflow.db").write_bytes(b"")  # emptied
    with pytest.raises(TrackingStoreMismatch, match=r"holds none of the 1 runs of experiment 'recflow/synthetic-smoke' .* mlflow.db\?\): refused"):
        start_pipeline_run(cfg, "third", recflow_home)


# ----------------------------------------------------------------------------- damaged databases


def damaged_sqlite(path: Path) -> Path:
    """A real sqlite file, then its second page overwritten with garbage (what a torn write or a bad disk leaves)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
        db.executemany("INSERT INTO runs (name) VALUES (?)", [(f"run {i}" * 20,) for i in range(2000)])
    with open(path, "r+b") as fh:
        fh.seek(4096)
        fh.write(os.urandom(8192))
    return path


def test_a_damaged_mlflow_db_is_named_with_the_remedy(tmp_path):
    db = damaged_sqlite(tmp_path / "mlflow.db")
    with pytest.raises(DamagedDatabase, match=rf"the MLflow store {db} is damaged \(sqlite: .*\): restore it from a backup, or move it aside"):
        check_mlflow_database(f"sqlite:///{db}")


def test_a_sound_database_passes(tmp_path):
    with sqlite3.connect(tmp_path / "ok.db") as db:
        db.execute("CREATE TABLE t (x)")
    check_mlflow_database(f"sqlite:///{tmp_path / 'ok.db'}")


def test_a_run_on_a_damaged_prefect_database_is_told_which_file_and_what_to_do(tmp_path):
    root = tmp_path / "artifacts"
    db = damaged_sqlite(root / ".prefect" / "server.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PREFECT_SERVER_DATABASE", "MLFLOW_TRACKING"))}
    env |= {"RECFLOW_HOME": str(root), "PYTHONPATH": str(REPO), "RECFLOW_PROGRESS": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "recflow.cli.main", "run", "-c", "configs/smoke.yaml"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 1
    assert f"the Prefect database {db} is damaged" in done.stderr
    assert f"move it aside (`mv {db} {db}.damaged`) and run again" in done.stderr
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" not in done.stderr


def test_check_prefect_database_reads_the_configured_url(tmp_path, monkeypatch):
    db = damaged_sqlite(tmp_path / "elsewhere.db")
    monkeypatch.setenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{db}")
    with pytest.raises(DamagedDatabase, match="elsewhere.db is damaged"):
        check_prefect_database(tmp_path)


# ----------------------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("http://user:pass@host:5000/x", "http://***@host:5000/x"),
        ("https://token@host", "https://***@host"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("postgresql://u:p@db/mlflow", "postgresql://***@db/mlflow"),
    ],
)
def test_a_uri_is_shown_without_its_credentials(uri, shown):
    assert redact_uri(uri) == shown


# ----------------------------------------------------------------------------- killed runs


def test_the_next_run_ends_a_killed_runs_mlflow_runs_as_failed(recflow_home):
    cfg = load_config("configs/smoke.yaml")
    killed = start_pipeline_run(cfg, "killed", recflow_home, tags={"recflow.prefect_flow_run_id": "f-1"})
    client = MlflowClient(killed["tracking_uri"])
    model = client.create_run(killed["experiment_id"], run_name="bias", tags={"mlflow.parentRunId": killed["run_id"], "model": "bias"})
    other_root = client.create_run(killed["experiment_id"], tags={"recflow.kind": "pipeline", ROOT_TAG: "/elsewhere"})
    nxt = start_pipeline_run(cfg, "next", recflow_home)
    assert nxt["crashed"] == [{"run_id": killed["run_id"], "flow_run_id": "f-1"}]
    for run_id in (killed["run_id"], model.info.run_id):
        run = client.get_run(run_id)
        assert run.info.status == "FAILED"
        assert run.data.tags[CRASHED_TAG].startswith("its process died; ended by the next run on this root")
    assert client.get_run(other_root.info.run_id).info.status == "RUNNING"  # another root's run may be alive
    assert client.get_run(nxt["run_id"]).info.status == "RUNNING"


def test_compare_hides_a_killed_run_and_gc_frees_it(recflow_home):
    from recflow.experiments.compare import model_results
    from recflow.experiments.gc import plan

    cfg = load_config("configs/smoke.yaml")
    killed = start_pipeline_run(cfg, "killed", recflow_home)
    client = MlflowClient(killed["tracking_uri"])
    client.create_run(killed["experiment_id"], run_name="bias", tags={"mlflow.parentRunId": killed["run_id"], "model": "bias"})
    nxt = start_pipeline_run(cfg, "next", recflow_home)
    client.set_tag(nxt["run_id"], "recflow.stages", "[]")
    client.set_terminated(nxt["run_id"], "FINISHED")
    assert [r.pipeline_run_id for r in model_results(client, killed["experiment_id"], 10)] == []
    gc_plan = plan(recflow_home)
    assert gc_plan.kept_runs == [nxt["run_id"]]
    assert not any("logged before gc existed" in note for note in gc_plan.notes)


def test_a_crashed_tasks_scratch_folder_is_removed_when_its_stage_is_rebuilt(tmp_path):
    stale = tmp_path / "train" / ".abc.x1y2"
    stale.mkdir(parents=True)
    (stale / "model.npz").write_bytes(b"half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    with building("train", "abc", tmp_path) as scratch:
        (scratch / "model.npz").write_bytes(b"whole")
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == ["abc"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_credentialed_tracking_uri_appears_in_no_output_record_or_artifact(tmp_path):
    """A real MLflow server reached as ``http://user:secret@host``: the run logs there, and the secret is
    in none of its console output, its files (run records, logs) or its Prefect database (summary artifact)."""
    from recflow.runtime.servers import free_port, mlflow_server

    secret = "pa55-never-shown-Zq81"
    server = mlflow_server(tmp_path / "mlflow-server", free_port())
    server.start()
    try:
        server.wait_until_up(180)
        root = tmp_path / "artifacts"
        uri = server.url.replace("http://", f"http://recflow:{secret}@")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PREFECT_UI", "MLFLOW_TRACKING"))}
        env |= {"RECFLOW_HOME": str(root), "PYTHONPATH": str(REPO), "RECFLOW_PROGRESS": "0", "MLFLOW_TRACKING_URI": uri}
        env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "300"
        done = subprocess.run(
            [sys.executable, "-m", "recflow.cli.main", "run", "-c", "configs/smoke.yaml"], cwd=REPO, env=env, capture_output=True, text=True, timeout=800
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "http://***@127.0.0.1" in done.stdout  # the summary names the server, not the credentials
        assert secret not in done.stdout + done.stderr
        holding = [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
        assert holding == []  # serving/runs/<id>.json, logs, .prefect/server.db (the summary artifact), results
        assert list((root / "serving" / "runs").glob("*.json"))
    finally:
        server.stop()


# ----------------------------------------------------------------------------- a full disk (a real one: a small tmpfs)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs mounted for the test (root only), unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_model_copy_that_fills_the_disk_fails_clearly_and_leaves_no_partial_copy(tmp_path, small_disk, monkeypatch):
    import mlflow

    from recflow.experiments.tracking import ModelFilesNotLogged, log_model_files
    from recflow.runtime.store import Artifact

    root = tmp_path / "root"
    (root / "train" / "k" / "model").mkdir(parents=True)
    (root / "train" / "k" / "model" / "weights.bin").write_bytes(os.urandom(3 << 20))  # 3 MB onto a 2 MB disk
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("full-disk", artifact_location=(small_disk / "mlruns").as_uri())
    trained = Artifact(stage="train", key="k", fingerprint="f" * 64, path="train/k")
    with mlflow.start_run(experiment_id=experiment) as run:
        started = time.monotonic()
        with pytest.raises(ModelFilesNotLogged, match=r"MLflow could not store train/k's model files in .*No space left on device"):
            log_model_files(trained, root)
        assert time.monotonic() - started < 60  # fails, never hangs
    assert not (small_disk / "mlruns" / run.info.run_id / "artifacts" / "model").exists()


def test_a_run_log_on_a_full_disk_says_so_once_and_stops(small_disk, capfd):
    import logging

    from recflow.runtime.runlog import run_log

    (small_disk / "ballast").write_bytes(b"")
    with run_log(small_disk / "logs" / "run.log"):
        with open(small_disk / "ballast", "ab") as fh, contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        for i in range(2000):
            logging.getLogger("recflow.test").warning("line %d %s", i, "x" * 200)
    err = capfd.readouterr().err
    assert err.count("cannot be written") == 1
    assert "Logging error" not in err


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_run_killed_mid_training_is_ended_failed_in_mlflow_and_crashed_in_prefect_by_the_next_run(tmp_path):
    root = tmp_path / "artifacts"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PREFECT_UI", "MLFLOW_TRACKING"))}
    env |= {"RECFLOW_HOME": str(root), "PYTHONPATH": str(REPO), "RECFLOW_PROGRESS": "0", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"}
    command = [sys.executable, "-m", "recflow.cli.main", "run", "-c", "configs/smoke.yaml"]
    killed = subprocess.Popen(
        [*command, "--set", "models.bias.epochs=100000000"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 600
        running: list[tuple[str, str]] = []
        while not running and time.monotonic() < deadline:  # the parent run exists: the flow is under way
            time.sleep(1)
            with contextlib.suppress(sqlite3.Error):
                with contextlib.closing(sqlite3.connect(root / "mlflow.db")) as db:
                    found = "SELECT r.run_uuid, t.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid WHERE r.status = 'RUNNING' AND t.key = ?"
                    running = db.execute(found, ("recflow.prefect_flow_run_id",)).fetchall()
        assert running, "the run never started its MLflow parent run"
        time.sleep(5)  # training
        os.killpg(killed.pid, 9)
    finally:
        killed.wait()
    parent, flow_run_id = running[0]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    assert client.get_run(parent).info.status == "FAILED"
    assert CRASHED_TAG in client.get_run(parent).data.tags
    with contextlib.closing(sqlite3.connect(root / ".prefect" / "server.db")) as db:
        (state,) = db.execute("SELECT state_type FROM flow_run WHERE id = ? OR id = ?", (flow_run_id, flow_run_id.replace("-", ""))).fetchone()
    assert state == "CRASHED"
