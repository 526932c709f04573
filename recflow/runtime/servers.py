"""The project's two UIs as local servers: ``prefect server`` and ``mlflow server`` on 127.0.0.1.

Both keep their state under the artifacts root, beside the caches they describe: Prefect's
database in ``<root>/.prefect/server.db``, MLflow's store in ``<root>/mlflow.db`` (the file that
``recflow run`` logs to) with artifacts in ``<root>/mlruns``. While they run, ``<root>/.ui.json``
says where they are, so a pipeline run's summary can link to the MLflow UI and ``recflow run``
sends its flow run to that Prefect server (one history: the dashboard shows every run).

Without ``recflow ui``, ``recflow run`` starts its own embedded Prefect API server
(``run_prefect_api``), on the same database, so a later ``recflow ui`` still shows the run.

No Prefect import: the servers are child processes started from the venv's own interpreter.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
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

from recflow.runtime.store import artifacts_root

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
    dies_with_parent: bool = False

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        # own session: Ctrl-C reaches us, and stop() ends the server with all its workers
        # preexec_fn: only prctl + getppid (async-signal-safe); a run starts its server before its task threads
        preexec = _die_with_parent(os.getpid()) if self.dies_with_parent else None
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec
        )  # noqa: PLW1509
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


def prefect_database_url(root: Path) -> str:
    return f"sqlite+aiosqlite:///{root / '.prefect' / 'server.db'}"


def prefect_server(root: Path, port: int, **extra_env: str) -> Server:
    """``prefect server start`` (UI, API and every service) with its database under the root; ``extra_env`` tunes it."""
    url = f"http://{LOOPBACK}:{port}"
    env = {
        **os.environ,
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": prefect_database_url(root),
        "PREFECT_UI_API_URL": f"{url}/api",  # the UI's browser code calls this address
        "PREFECT_API_URL": f"{url}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        **extra_env,
    }
    command = [_bin("prefect"), "server", "start", "--host", LOOPBACK, "--port", str(port)]
    return Server("prefect server", command, env, f"{url}/api/health", url, root / ".prefect" / "logs" / "prefect-server.log")


def mlflow_server(root: Path, port: int) -> Server:
    url = f"http://{LOOPBACK}:{port}"
    (root / "mlruns").mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "recflow.runtime.mlflow_ui",  # `mlflow server`, its home page opening experiments in the training view
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        mlflow_backend_uri(root),
        "--artifacts-destination",
        str(root / "mlruns"),
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

    def __enter__(self) -> ProjectServers:
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


# ----------------------------------------------------------------------------- the Prefect API of one `recflow run`

STARTUP_TIMEOUT_SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULT_STARTUP_TIMEOUT = 180.0
PR_SET_PDEATHSIG = 1


def embedded_startup_timeout() -> float:
    """Prefect's own setting for its ephemeral server, with a default for a busy machine (Prefect's 20 s is not)."""
    return float(os.environ.get(STARTUP_TIMEOUT_SETTING) or DEFAULT_STARTUP_TIMEOUT)


def _die_with_parent(parent_pid: int):
    """A ``preexec_fn`` asking Linux to SIGKILL the child when the process that started it dies.

    Why not a watchdog: the kernel delivers PR_SET_PDEATHSIG even when the parent is killed with
    SIGKILL, with no helper process to keep alive or to be killed first. SIGKILL rather than SIGTERM
    because the run is gone: nothing waits for a graceful shutdown, and SQLite's journal keeps the
    database consistent. The signal follows the thread that forked, so start the server from the main
    thread. If the parent died before prctl took effect the child exits at once. Elsewhere than Linux
    (no prctl) the server is still stopped on every normal exit, Ctrl-C and SIGTERM included.
    """
    path = ctypes.util.find_library("c")
    libc = ctypes.CDLL(path, use_errno=True) if path else None
    if libc is None or not hasattr(libc, "prctl"):
        return None

    def preexec() -> None:  # runs in the child between fork and exec: no imports, no allocation-heavy work
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def embedded_prefect_server(root: Path, port: int | None = None) -> Server:
    """The API server one run needs (no UI), as Prefect's ephemeral mode starts it, but dying with the run.

    Its database is the one ``recflow ui`` serves (``<root>/.prefect/server.db``, unless
    ``PREFECT_SERVER_DATABASE_CONNECTION_URL`` says otherwise), so the dashboard shows this run later.
    """
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_UI_URL")}
    env.setdefault("PREFECT_SERVER_DATABASE_CONNECTION_URL", prefect_database_url(root))
    env.update(
        {
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",  # only the services an ephemeral server runs
            "PREFECT__SERVER_FINAL": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
    )
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "prefect.server.api.server:create_app",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]
    log_path = root / ".prefect" / "logs" / "prefect-embedded.log"
    return Server("embedded prefect server", command, env, f"{url}/api/health", url, log_path, dies_with_parent=True)


def answers(url: str, timeout: float = 2.0) -> bool:
    with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status == 200
    return False


def ui_prefect_api(root: Path) -> dict[str, str] | None:
    """The Prefect server ``recflow ui`` runs for this root, if it runs and answers."""
    ui = running_ui(root)
    if ui and ui.get("prefect_api_url") and answers(f"{ui['prefect_api_url']}/health"):
        return {"PREFECT_API_URL": ui["prefect_api_url"], "PREFECT_UI_URL": ui["prefect_url"]}
    return None


class RunPrefectApi:
    """Where one ``recflow run`` sends its flow run, chosen in this order:

    1. ``$PREFECT_API_URL`` (or a Prefect already configured in this process, e.g. a test harness);
    2. the Prefect server of ``recflow ui`` for this root (``<root>/.ui.json``), so its dashboard
       shows every run;
    3. an embedded API server started for this run and stopped with it (``embedded_prefect_server``).

    The choice is made through the environment before Prefect is imported (its settings are read
    once, at import). ``ready()`` waits for an embedded server, so importing the pipeline overlaps
    its start-up. The embedded server stops at interpreter exit, not at the end of the ``with``:
    Prefect drains its log and event workers at thread shutdown, which comes before ``atexit`` hooks,
    and they need the server (stopped earlier, the last logs fail with "Error logging to API").
    ``kind`` is ``configured``, ``ui`` or ``embedded``; it is exported as
    ``RECFLOW_PREFECT_SERVER`` so reporting knows an embedded server's UI address is not worth linking.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server: Server | None = None
        self.kind = "configured"
        self._saved: dict[str, str | None] = {}

    def __enter__(self) -> RunPrefectApi:
        if os.environ.get("PREFECT_API_URL") or "prefect" in sys.modules:
            return self
        env = ui_prefect_api(self.root)
        if env is not None:
            self.kind = "ui"
        else:
            self.kind = "embedded"
            self.root.mkdir(parents=True, exist_ok=True)
            self.server = embedded_prefect_server(self.root)
            self.server.start()
            atexit.register(self.server.stop, 5.0)
            env = {"PREFECT_API_URL": f"{self.server.url}/api"}
        self._export({**env, "RECFLOW_PREFECT_SERVER": self.kind})
        return self

    def ready(self) -> None:
        if self.server is None:
            return
        timeout = embedded_startup_timeout()
        try:
            self.server.wait_until_up(timeout)
        except ServerError as exc:
            self.server.stop()
            raise ServerError(
                f"{exc}\n  raise {STARTUP_TIMEOUT_SETTING} (now {timeout:.0f} s) on a busy machine, "
                f"or start `recflow ui` for this root and run again: runs then use its server"
            ) from None

    def _export(self, values: dict[str, str]) -> None:
        for key, value in values.items():
            self._saved.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def __exit__(self, *exc: object) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_prefect_api(root: Path) -> RunPrefectApi:
    return RunPrefectApi(root.resolve())
