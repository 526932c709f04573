"""The project's two UIs as local servers: ``prefect server`` and ``mlflow server`` on 127.0.0.1.

Both keep their state under the artifacts root, beside the caches they describe: Prefect's
database in ``<root>/.prefect/server.db``, MLflow's store in ``<root>/mlflow.db`` (the file that
``recflow run`` logs to) with artifacts in ``<root>/mlruns``. While they run, ``<root>/.ui.json``
says where they are, so a pipeline run's summary can link to the MLflow UI.

No Prefect import: the servers are child processes started from the venv's own interpreter.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recflow.store import artifacts_root

UI_FILE = ".ui.json"
LOOPBACK = "127.0.0.1"


class ServerError(RuntimeError):
    """A server did not come up; the message names it, its command and the end of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((LOOPBACK, port)) == 0


def mlflow_backend_uri(root: Path) -> str:
    """The store ``recflow run`` logs to: ``$MLFLOW_TRACKING_URI`` when it is a database, else ``sqlite:///<root>/mlflow.db``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri and not uri.startswith(("http://", "https://", "databricks")):
        return uri
    return f"sqlite:///{root / 'mlflow.db'}"


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]
    health_url: str
    url: str
    log_path: Path
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        # own session: Ctrl-C reaches us, and stop() ends the server with all its workers
        self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def wait_until_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(self._failure(f"exited with code {self.process.returncode}"))
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.health_url, timeout=2) as response:
                    if response.status == 200:
                        return
            time.sleep(0.5)
        raise ServerError(self._failure(f"did not answer {self.health_url} within {timeout:.0f} s"))

    def _failure(self, what: str) -> str:
        tail = self.log_path.read_text(errors="replace").splitlines()[-15:] if self.log_path.exists() else []
        return f"{self.name} {what}\n  command: {' '.join(self.command)}\n  log: {self.log_path}\n    " + "\n    ".join(tail)

    def stop(self, grace: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def _bin(name: str) -> str:
    """The venv's own console script, so the servers use the project's pinned versions."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def prefect_server(root: Path, port: int) -> Server:
    url = f"http://{LOOPBACK}:{port}"
    env = {
        **os.environ,
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{root / '.prefect' / 'server.db'}",
        "PREFECT_UI_API_URL": f"{url}/api",  # the UI's browser code calls this address
        "PREFECT_API_URL": f"{url}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    }
    command = [_bin("prefect"), "server", "start", "--host", LOOPBACK, "--port", str(port)]
    return Server("prefect server", command, env, f"{url}/api/health", url, root / ".prefect" / "logs" / "prefect-server.log")


def mlflow_server(root: Path, port: int) -> Server:
    url = f"http://{LOOPBACK}:{port}"
    (root / "mlruns").mkdir(parents=True, exist_ok=True)
    command = [
        _bin("mlflow"), "server", "--host", LOOPBACK, "--port", str(port), "--workers", "1",
        "--backend-store-uri", mlflow_backend_uri(root), "--artifacts-destination", str(root / "mlruns"),
    ]
    env = {**os.environ, "MLFLOW_ENABLE_ASYNC_LOGGING": "false", "GIT_PYTHON_REFRESH": "quiet"}
    return Server("mlflow server", command, env, f"{url}/health", url, root / ".prefect" / "logs" / "mlflow-server.log")


class ProjectServers:
    """Start both servers (in parallel), wait until they answer, stop both on exit.

    Port 0 picks a free port. A port already taken is an error naming it, not a silent second server.
    """

    def __init__(self, root: Path | None = None, prefect_port: int = 4200, mlflow_port: int = 5000, timeout: float = 180.0) -> None:
        self.root = (root or artifacts_root()).resolve()
        for what, port in (("prefect", prefect_port), ("mlflow", mlflow_port)):
            if port and port_in_use(port):
                raise ServerError(f"port {port} on {LOOPBACK} is in use; pass --{what}-port with another port (0 picks a free one)")
        self.prefect = prefect_server(self.root, prefect_port or free_port())
        self.mlflow = mlflow_server(self.root, mlflow_port or free_port())
        self.timeout = timeout

    @property
    def urls(self) -> dict[str, Any]:
        return {
            "prefect_url": self.prefect.url,
            "prefect_api_url": f"{self.prefect.url}/api",
            "mlflow_url": self.mlflow.url,
            "root": str(self.root),
            "pid": os.getpid(),
        }

    def __enter__(self) -> "ProjectServers":
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            for server in (self.prefect, self.mlflow):
                server.start()
            for server in (self.prefect, self.mlflow):
                server.wait_until_up(self.timeout)
        except BaseException:
            self.stop()
            raise
        (self.root / UI_FILE).write_text(json.dumps(self.urls, indent=2))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if json.loads((self.root / UI_FILE).read_text()).get("pid") == os.getpid():
                (self.root / UI_FILE).unlink()
        for server in (self.prefect, self.mlflow):
            server.stop()


def running_ui(root: Path) -> dict[str, Any] | None:
    """Where ``recflow ui`` serves this root's UIs, if it is still running."""
    try:
        info = json.loads((root / UI_FILE).read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info
