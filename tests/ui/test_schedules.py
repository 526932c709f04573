"""Operated end to end: a real ``prefect server``, ``make deploy``, a process worker, the scheduler's own runs.

One Prefect server on a free loopback port for the module (its scheduler loop shortened to seconds
through its environment), ``make deploy`` exactly as a user runs it (work pool, prefect.yaml's
deployments, automations.yaml's alerts to a webhook on a loopback HTTP server), plus a test-only
deployment of the pipeline on the smoke preset with a 20 s interval schedule, and
``prefect worker start`` on the pool. Prefect 3.8.8 + SQLAlchemy 2.1 never created a scheduled run
(its scheduler raised every loop); the first test fails there.
"""

from __future__ import annotations

import http.server
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from recflow.runtime.servers import free_port, prefect_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SMOKE = "smoke-every-20s"


class _Hook(http.server.BaseHTTPRequestHandler):
    received: queue.Queue = queue.Queue()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.put(json.loads(body or b"null"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                ppid = int(next(line for line in (proc / "status").read_text().splitlines() if line.startswith("PPid:")).split()[1])
                children.setdefault(ppid, []).append(int(proc.name))
        except (OSError, StopIteration):
            continue
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.fixture(scope="module")
def operated(tmp_path_factory):
    """Server (scheduler every 2 s), ``make deploy`` with the alert webhook, the smoke deployment, a worker."""
    root = tmp_path_factory.mktemp("operated") / "artifacts"
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    server = prefect_server(root, free_port(), PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2")
    worker = None
    server.start()
    try:
        server.wait_until_up(300)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PREFECT_UI", "MLFLOW_TRACKING"))}
        env.update(
            PREFECT_API_URL=f"{server.url}/api",
            RECFLOW_HOME=str(root),
            RECFLOW_PROGRESS="0",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_WORKER_QUERY_SECONDS="2",
            RECFLOW_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{hook.server_address[1]}/alerts",
        )

        def sh(*command: str) -> str:
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=500, check=False)
            assert done.returncode == 0, f"{command}: " + done.stdout[-3000:] + done.stderr[-3000:]
            return done.stdout

        deploy_output = sh("make", "-s", "-o", ".venv/.installed", "deploy")  # -o: never reinstall from a test
        sh(
            str(BIN / "prefect"),
            "--no-prompt",
            "deploy",
            "flows/pipeline.py:pipeline",
            "--name",
            SMOKE,
            "--pool",
            "recflow-process",
            "--interval",
            "20",
            "--params",
            json.dumps({"config_path": "configs/smoke.yaml"}),
        )
        with open(root / "worker.log", "ab") as worker_log:
            worker = subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", "recflow-process"],
                cwd=REPO,
                env=env,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        yield {"server": server, "env": env, "root": root, "hook": _Hook.received, "deploy_output": deploy_output}
    finally:
        if worker is not None:
            family = _descendants(worker.pid)
            os.killpg(worker.pid, signal.SIGKILL)
            for pid in family:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            worker.wait(10)
        server.stop()
        hook.shutdown()
        hook.server_close()


def _api(operated, method: str, path: str, body: dict | None = None):
    request = urllib.request.Request(
        f"{operated['server'].url}/api{path}",
        method=method,
        headers={"Content-Type": "application/json"},
        data=None if body is None else json.dumps(body).encode(),
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
    return json.loads(text) if text else None


def _deployment(operated, name: str) -> dict:
    return next(d for d in _api(operated, "POST", "/deployments/filter", {"limit": 50}) if d["name"] == name)


FINAL = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]


def _runs_in(operated, deployment_id: str, states: list[str]) -> list[dict]:
    """Filtered by state on the server: the scheduler keeps up to 100 future runs of a 20 s schedule."""
    return _api(
        operated, "POST", "/flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment_id]}, "state": {"type": {"any_": states}}}, "limit": 50}
    )


def _wait_for_runs(operated, deployment_id: str, states: list[str], timeout: float = 600) -> list[dict]:
    deadline = time.monotonic() + timeout
    while not (runs := _runs_in(operated, deployment_id, states)):
        assert time.monotonic() < deadline, f"no run reached {states}; worker log:\n{(operated['root'] / 'worker.log').read_text()[-3000:]}"
        time.sleep(2)
    return runs


def _silence_smoke_schedule(operated) -> None:
    """Pause the 20 s schedule (Prefect deletes its pending runs), so the pool's one slot is free for the next test."""
    _api(operated, "POST", f"/deployments/{_deployment(operated, SMOKE)['id']}/pause_deployment")


def test_an_auto_scheduled_run_of_the_pipeline_completes_and_the_server_logs_no_traceback(operated):
    smoke = _deployment(operated, SMOKE)
    _wait_for_runs(operated, smoke["id"], ["RUNNING", *FINAL])
    _silence_smoke_schedule(operated)  # while the pool's one slot is taken: no second run starts
    first = min(_wait_for_runs(operated, smoke["id"], FINAL), key=lambda r: r["start_time"])
    assert first["auto_scheduled"] is True  # made by the scheduler service, not by hand
    assert first["state_type"] == "COMPLETED", first["state"]
    assert _exceptions(operated["server"].log_path.read_text(errors="replace")) == []


def _exceptions(log: str) -> list[str]:
    """The exception lines of the server's tracebacks, less SQLite's write-lock contention.

    Prefect's server on SQLite logs ``database is locked`` now and then on a loaded machine (a worker
    heartbeat, a Late transition) and retries on its next loop; any other exception fails the test
    (3.8.8's scheduler: ``sqlalchemy.exc.InvalidRequestError: Can't evaluate bulk DML statement``).
    """
    found = re.findall(r"^([A-Za-z_][\w.]*(?:Error|Exception)\b.*)$", log, flags=re.MULTILINE)
    return [line for line in found if "database is locked" not in line]


def test_make_deploy_creates_both_alerts_on_the_webhook_block(operated):
    automations = {a["name"]: a for a in _api(operated, "POST", "/automations/filter", {})}
    assert set(automations) == {"recflow-run-failed", "recflow-no-completed-run-in-26h"}
    failed, missing = automations["recflow-run-failed"], automations["recflow-no-completed-run-in-26h"]
    assert (failed["trigger"]["posture"], sorted(failed["trigger"]["expect"])) == ("Reactive", ["prefect.flow-run.Crashed", "prefect.flow-run.Failed"])
    assert (missing["trigger"]["posture"], missing["trigger"]["expect"], missing["trigger"]["within"]) == (
        "Proactive",
        ["prefect.flow-run.Completed"],
        26 * 3600,
    )
    assert missing["trigger"]["for_each"] == ["related:deployment:prefect.resource.id"]
    block = _api(operated, "GET", "/block_types/slug/webhook/block_documents/name/recflow-alerts")
    assert {a["type"] for a in failed["actions"] + missing["actions"]} == {"call-webhook"}
    assert {a["block_document_id"] for a in failed["actions"] + missing["actions"]} == {block["id"]}
    assert "alerts: recflow-run-failed, recflow-no-completed-run-in-26h" in operated["deploy_output"]


def test_a_failed_deployment_run_calls_the_alert_webhook(operated):
    _silence_smoke_schedule(operated)
    default = _deployment(operated, "default")
    run = _api(operated, "POST", f"/deployments/{default['id']}/create_flow_run", {"parameters": {"config_path": "configs/no-such-config.yaml"}})
    try:
        alert = operated["hook"].get(timeout=600)
    except queue.Empty:
        pytest.fail(f"no webhook call; the run is {_api(operated, 'GET', '/flow_runs/' + run['id'])['state']}")
    assert (alert["alert"], alert["deployment"], alert["flow_run"], alert["flow_run_id"], alert["state"]) == (
        "recflow-run-failed",
        "default",
        run["name"],
        run["id"],
        "Failed",
    )
    assert "no-such-config.yaml" in alert["message"]
