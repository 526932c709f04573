"""``recflow.runtime.servers``: where the UIs run, refusing a port that is taken, and the Prefect API of a run."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from recflow.runtime.servers import (
    ProjectServers,
    ServerError,
    compact_prefect_database,
    embedded_startup_timeout,
    mlflow_backend_uri,
    prefect_database_url,
    prefect_sqlite_path,
    running_ui,
    ui_prefect_api,
)

REPO = Path(__file__).resolve().parents[1]
RECFLOW = str(Path(sys.executable).parent / "recflow")


def test_running_ui_is_read_while_its_process_lives(tmp_path):
    (tmp_path / ".ui.json").write_text(json.dumps({"mlflow_url": "http://127.0.0.1:5000", "pid": os.getpid()}))
    assert running_ui(tmp_path)["mlflow_url"] == "http://127.0.0.1:5000"


def test_a_stale_ui_file_is_ignored(tmp_path):
    (tmp_path / ".ui.json").write_text(json.dumps({"mlflow_url": "http://127.0.0.1:5000", "pid": 2**22 + 12345}))
    assert running_ui(tmp_path) is None
    assert running_ui(tmp_path / "absent") is None


def test_a_taken_port_is_an_error_naming_it(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServerError, match=f"port {port} .* in use; pass --prefect-port"):
            ProjectServers(tmp_path, prefect_port=port, mlflow_port=0)


def test_mlflow_serves_the_store_recflow_run_logs_to(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mlflow_backend_uri(tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere:5000")
    assert mlflow_backend_uri(tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_prefects_database_is_its_own_variable_then_the_older_name_then_sqlite_in_the_root(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", raising=False)
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    assert prefect_database_url(tmp_path) == f"sqlite+aiosqlite:///{tmp_path / '.prefect' / 'server.db'}"
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://db/old")
    assert prefect_database_url(tmp_path) == "postgresql+asyncpg://db/old"
    monkeypatch.setenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", "postgresql+asyncpg://db/new")
    assert prefect_database_url(tmp_path) == "postgresql+asyncpg://db/new"


# ----------------------------------------------------------------------------- the Prefect API of one `recflow run`


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args):
        pass


@pytest.fixture
def answering_prefect():
    """A loopback HTTP server that answers Prefect's health check, as a running ``recflow ui`` does."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_run_uses_the_prefect_server_recflow_ui_runs_for_its_root(tmp_path, answering_prefect):
    (tmp_path / ".ui.json").write_text(json.dumps({"prefect_url": answering_prefect, "prefect_api_url": f"{answering_prefect}/api", "pid": os.getpid()}))
    assert ui_prefect_api(tmp_path) == {"PREFECT_API_URL": f"{answering_prefect}/api", "PREFECT_UI_URL": answering_prefect}


def test_a_recorded_prefect_server_that_does_not_answer_is_not_used(tmp_path):
    port = socket.socket()
    port.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
    url = f"http://127.0.0.1:{port.getsockname()[1]}"
    (tmp_path / ".ui.json").write_text(json.dumps({"prefect_url": url, "prefect_api_url": f"{url}/api", "pid": os.getpid()}))
    assert ui_prefect_api(tmp_path) is None
    port.close()


def test_the_embedded_server_gets_180_s_to_start_unless_prefects_setting_says_otherwise(monkeypatch):
    monkeypatch.delenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", raising=False)
    assert embedded_startup_timeout() == 180.0
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "600")
    assert embedded_startup_timeout() == 600.0


def _run_env(root: Path, **extra: str) -> dict[str, str]:
    """A user's shell without any Prefect server configured: ``recflow run`` must bring its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PREFECT_UI", "MLFLOW_TRACKING"))}
    return {**env, "RECFLOW_HOME": str(root), "RECFLOW_PROGRESS": "0", **extra}


@pytest.mark.slow  # operates a flow, a server or many threads: end-to-end
@pytest.mark.timeout(300)
def test_a_server_too_slow_to_start_fails_the_run_naming_the_setting_to_raise(tmp_path):
    done = subprocess.run(
        [RECFLOW, "run", "--config", "configs/smoke.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
        env=_run_env(tmp_path / "artifacts", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1"),
    )
    assert done.returncode == 1
    assert "embedded prefect server did not answer" in done.stderr
    assert "raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (now 1 s)" in done.stderr
    assert "or start `recflow ui` for this root" in done.stderr


def _prefect_servers_started_by(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or b"prefect.server.api.server:create_app" not in (proc / "cmdline").read_bytes():
                continue
            ppid = int(next(line for line in (proc / "status").read_text().splitlines() if line.startswith("PPid:")).split()[1])
        except (OSError, StopIteration):
            continue
        if ppid == pid:
            found.append(int(proc.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return " Z " not in state + " "  # a zombie has exited


@pytest.mark.slow  # operates a flow, a server or many threads: end-to-end
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
@pytest.mark.timeout(300)
def test_the_embedded_prefect_server_dies_with_a_run_killed_by_sigkill(tmp_path):
    run = subprocess.Popen(
        [RECFLOW, "run", "--config", "configs/smoke.yaml"], cwd=REPO, env=_run_env(tmp_path / "artifacts"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 240
        while not (servers := _prefect_servers_started_by(run.pid)):
            assert run.poll() is None and time.monotonic() < deadline, "recflow run started no Prefect server"
            time.sleep(0.2)
        time.sleep(1.0)
        run.send_signal(signal.SIGKILL)
        run.wait(10)
        deadline = time.monotonic() + 5
        while any(map(_alive, servers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, servers)), f"Prefect server {servers} outlived its run"
    finally:
        if run.poll() is None:
            run.kill()


def test_recflow_tune_sends_its_study_to_the_prefect_server_recflow_ui_runs(tmp_path, answering_prefect):
    """Operated through the command (a process of its own, Prefect not yet imported there); the study's flow is
    replaced by one that reports the API it was given."""
    (tmp_path / ".ui.json").write_text(json.dumps({"prefect_url": answering_prefect, "prefect_api_url": f"{answering_prefect}/api", "pid": os.getpid()}))
    script = (
        "import os, sys, types\n"
        "fake = types.ModuleType('flows.tune')\n"
        "def run_tune(*args, **kwargs):\n"
        "    print('API', os.environ['PREFECT_API_URL']); sys.exit(0)\n"
        "fake.run_tune = run_tune\n"
        "import flows\n"
        "sys.modules['flows.tune'] = fake\n"
        "from recflow.cli.main import app\n"
        "app(['tune', '--config', 'configs/smoke.yaml', '--model', 'bias', '--trials', '1'])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")} | {"RECFLOW_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.stdout.strip().splitlines()[-1] == f"API {answering_prefect}/api", done.stdout + done.stderr


def prefect_like_database(path: Path) -> sqlite3.Connection:
    """Prefect's two event tables (the columns compaction reads) in WAL mode, with one event of an earlier run and one of this run."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=0")  # a server killed before its checkpoint: the log holds everything
    db.execute("CREATE TABLE events (id TEXT, occurred TEXT, payload TEXT)")
    db.execute("CREATE TABLE event_resources (id TEXT, event_id TEXT, occurred TEXT)")
    db.execute("CREATE TABLE task_run_state (id TEXT, timestamp TEXT)")
    for event, occurred in (("old", "2026-12-07 23:09:14.215964"), ("new", "2026-12-07 23:20:15.000001")):
        db.execute("INSERT INTO events VALUES (?, ?, ?)", (event, occurred, "x" * 50_000))
        db.execute("INSERT INTO event_resources VALUES (?, ?, ?)", (f"{event}-r", event, occurred))
        db.execute("INSERT INTO task_run_state VALUES (?, ?)", (event, occurred))
    db.commit()
    return db


def test_compacting_the_prefect_database_keeps_this_runs_events_every_state_and_empties_the_log(tmp_path):
    path = tmp_path / "server.db"
    server = prefect_like_database(path)  # still open, as a killed server leaves it
    assert Path(f"{path}-wal").stat().st_size > 100_000

    deleted = compact_prefect_database(path, since="2026-12-07 23:20:15")

    server.close()
    db = sqlite3.connect(path)
    assert deleted == {"events": 1, "event_resources": 1}
    assert db.execute("SELECT id FROM events").fetchall() == [("new",)]
    assert db.execute("SELECT event_id FROM event_resources").fetchall() == [("new",)]
    assert db.execute("SELECT id FROM task_run_state ORDER BY id").fetchall() == [("new",), ("old",)]  # what the run pages read: all kept
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0


def test_a_database_that_is_not_prefects_is_left_as_it_is(tmp_path):
    path = tmp_path / "server.db"
    sqlite3.connect(path).execute("CREATE TABLE other (x)").connection.commit()
    assert compact_prefect_database(path, since="2026-12-07 23:20:15") == {"events": 0, "event_resources": 0}
    assert compact_prefect_database(tmp_path / "absent.db", since="2026-12-07 23:20:15") == {"events": 0, "event_resources": 0}
    assert not (tmp_path / "absent.db").exists()


def test_only_a_sqlite_prefect_database_is_compacted(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", raising=False)
    assert prefect_sqlite_path(tmp_path) == tmp_path / ".prefect" / "server.db"
    monkeypatch.setenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", "postgresql+asyncpg://u:p@127.0.0.1/prefect")
    assert prefect_sqlite_path(tmp_path) is None
