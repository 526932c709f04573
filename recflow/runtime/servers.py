"""The project's two servers: ``prefect server`` and ``mlflow server``, on 127.0.0.1 or a team's server host.

By default both keep their state under the artifacts root, beside the caches they describe:
Prefect's database in ``<root>/.prefect/server.db``, MLflow's store in ``<root>/mlflow.db`` (the
file that ``recflow run`` logs to) with artifacts in ``<root>/mlruns``. For a team, both run on
PostgreSQL instead (the store both projects recommend for a shared server: sqlite allows one
writer at a time on one machine): Prefect's on ``postgresql+asyncpg://...`` (asyncpg is the driver
Prefect's async server needs), MLflow's on ``postgresql+psycopg://...`` (psycopg 3, SQLAlchemy
2.1's default driver for ``postgresql://``), given as options of ``recflow ui`` or through the projects' own variables. With a root
on object storage, the MLflow server proxies the artifacts in the bucket (``<URL>/mlruns``, where
``recflow run`` writes them), so nothing a run tracks stays on the server host. While they run, ``<root>/.ui.json``
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from recflow.runtime import storage
from recflow.runtime.store import artifacts_root

UI_FILE = ".ui.json"
LOOPBACK = "127.0.0.1"


class ServerError(RuntimeError):
    """A server did not come up; the message names it, its command and the end of its log."""


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


class DamagedDatabase(ServerError):
    """A sqlite file recflow needs is not a readable database; the message names it and the remedy."""


PREFECT_DB_REMEDY = (
    "move it aside (`mv {path} {path}.damaged`) and run again: Prefect creates a new one "
    "(the UI's run history starts over; stage caches and MLflow are untouched)"
)
MLFLOW_DB_REMEDY = (
    "restore it from a backup, or move it aside (`mv {path} {path}.damaged`) together with "
    "{root}/serving to start a new MLflow history (earlier runs, metrics and the champion are then gone from MLflow)"
)


def check_sqlite(path: Path, what: str, remedy: str) -> None:
    """Raise ``DamagedDatabase`` when ``path`` exists but is no sound sqlite database (read-only probe, ``quick_check``).

    A damaged file otherwise fails every night far from its cause: Prefect's server never answers
    (the run blames its start-up timeout) and MLflow raises ``DatabaseError: malformed`` naming no file.
    """
    import sqlite3

    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)) as db:
            found = db.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.DatabaseError as exc:
        if "locked" in str(exc).lower():  # in use by a live process: not damage
            return
        found = (str(exc),)
    if found and found[0] != "ok":
        problem = " ".join(str(found[0]).replace("*** in database main ***", "").split())
        raise DamagedDatabase(f"{what} {path} is damaged (sqlite: {problem}): {remedy.format(path=path, root=path.parent)}")


def check_prefect_database(root: Path) -> None:
    url = os.environ.get("PREFECT_SERVER_DATABASE_CONNECTION_URL") or prefect_database_url(root)
    if url.startswith("sqlite"):
        check_sqlite(Path(url.split(":///", 1)[1]), "the Prefect database", PREFECT_DB_REMEDY)


def check_mlflow_database(uri: str) -> None:
    """The MLflow store of a ``sqlite:///`` tracking URI, checked before a run writes to it."""
    if uri.startswith("sqlite:///"):
        check_sqlite(Path(uri.removeprefix("sqlite:///")), "the MLflow store", MLFLOW_DB_REMEDY)


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


#: Prefect's setting for its server's database, and the older name it still reads (the first one set wins, as in Prefect)
PREFECT_DATABASE_VARIABLES = ("PREFECT_SERVER_DATABASE_CONNECTION_URL", "PREFECT_API_DATABASE_CONNECTION_URL")


def prefect_database_url(root: Path) -> str:
    """The Prefect server's database: ``$PREFECT_SERVER_DATABASE_CONNECTION_URL`` (or the older
    ``$PREFECT_API_DATABASE_CONNECTION_URL``, e.g. ``postgresql+asyncpg://...``), else ``<root>/.prefect/server.db``."""
    for name in PREFECT_DATABASE_VARIABLES:
        if os.environ.get(name):
            return os.environ[name]
    return f"sqlite+aiosqlite:///{root / '.prefect' / 'server.db'}"


def redacted(url: str) -> str:
    """A database URL fit to print: its password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def prefect_server(root: Path, port: int, host: str = LOOPBACK, database: str | None = None, **extra_env: str) -> Server:
    """``prefect server start`` (UI, API and every service) on ``database`` (default ``prefect_database_url``); ``extra_env`` tunes it."""
    url = f"http://{host}:{port}"
    env = {k: v for k, v in os.environ.items() if k not in PREFECT_DATABASE_VARIABLES}
    env.update(
        {
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": database or prefect_database_url(root),
            "PREFECT_UI_API_URL": f"{url}/api",  # the UI's browser code calls this address
            "PREFECT_API_URL": f"{url}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            **extra_env,
        }
    )
    command = [_bin("prefect"), "server", "start", "--host", host, "--port", str(port)]
    return Server("prefect server", command, env, f"{url}/api/health", url, root / ".prefect" / "logs" / "prefect-server.log")


def mlflow_artifacts_destination(root: Path) -> str:
    """Where the MLflow server keeps the artifacts it serves: the bucket's ``<URL>/mlruns`` for a root on
    object storage (where ``recflow run`` puts its experiments' artifacts too), else ``<root>/mlruns``."""
    remote = storage.remote_of(root)
    if remote is not None:
        return storage.mlflow_artifact_location(remote)  # also points MLflow's S3 client at $AWS_ENDPOINT_URL
    (root / "mlruns").mkdir(parents=True, exist_ok=True)
    return str(root / "mlruns")


def mlflow_server(root: Path, port: int, host: str = LOOPBACK, backend: str | None = None) -> Server:
    """``mlflow server`` on the backend store ``backend`` (default ``mlflow_backend_uri``: a PostgreSQL URL
    ``postgresql+psycopg://...`` makes it a team's server), proxying the artifacts at ``mlflow_artifacts_destination``."""
    url = f"http://{host}:{port}"
    destination = mlflow_artifacts_destination(root)
    command = [
        sys.executable,
        "-m",
        "recflow.runtime.mlflow_ui",  # `mlflow server`, its home page opening experiments in the training view
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend or mlflow_backend_uri(root),
        "--serve-artifacts",
        "--artifacts-destination",
        destination,
    ]
    env = {**os.environ, "MLFLOW_ENABLE_ASYNC_LOGGING": "false", "GIT_PYTHON_REFRESH": "quiet"}
    # MLflow 3 answers only Host headers it expects (localhost and private addresses by default): a
    # server reached by a DNS name needs $MLFLOW_SERVER_ALLOWED_HOSTS, which it inherits from here
    return Server("mlflow server", command, env, f"{url}/health", url, root / ".prefect" / "logs" / "mlflow-server.log")


class ProjectServers:
    """Start both servers (in parallel), wait until they answer, stop both on exit.

    ``host`` is the address both bind and are reached at (127.0.0.1 by default; a team's server
    host gives its own address). ``prefect_database`` and ``mlflow_database`` are the servers'
    stores (default: the environment's, else sqlite files under the root); with PostgreSQL URLs
    the servers keep no state on this machine but their logs.

    Port 0 picks a free port. A port already taken is an error naming it, not a silent second server.
    """

    def __init__(
        self,
        root: Path | None = None,
        prefect_port: int = 4200,
        mlflow_port: int = 5000,
        timeout: float = 180.0,
        host: str = LOOPBACK,
        prefect_database: str | None = None,
        mlflow_database: str | None = None,
    ) -> None:
        self.root = (root or artifacts_root()).resolve()
        for what, port in (("prefect", prefect_port), ("mlflow", mlflow_port)):
            if port and port_in_use(port, host):
                raise ServerError(f"port {port} on {host} is in use; pass --{what}-port with another port (0 picks a free one)")
        self.prefect = prefect_server(self.root, prefect_port or free_port(host), host, prefect_database)
        self.mlflow = mlflow_server(self.root, mlflow_port or free_port(host), host, mlflow_database)
        self.timeout = timeout

    @property
    def databases(self) -> dict[str, str]:
        """Each server's store, passwords redacted: what `recflow ui` prints."""
        backend = self.mlflow.command[self.mlflow.command.index("--backend-store-uri") + 1]
        return {"prefect": redacted(self.prefect.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"]), "mlflow": redacted(backend)}

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
        check_prefect_database(self.root)
        check_mlflow_database(mlflow_backend_uri(self.root))
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
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_UI_URL", *PREFECT_DATABASE_VARIABLES)}
    env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = prefect_database_url(root)
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


def prefect_sqlite_path(root: Path) -> Path | None:
    """The file of the root's Prefect database when it is SQLite (``prefect_database_url``), else None (PostgreSQL)."""
    url = prefect_database_url(root)
    return Path(url.split(":///", 1)[1]) if url.startswith("sqlite") and ":///" in url else None


def compact_prefect_database(path: Path, since: str) -> dict[str, int]:
    """The events of earlier runs deleted, the write-ahead log folded in and emptied: before an embedded server starts and after it stopped.

    Prefect records every state change twice: as a state row (what the run pages, the graph, the
    timeline and the dashboard read: all kept) and as an event (the Events feed), each event with
    its related resources and six indexes: about 1 MB of the 1.3 MB a fully cached rerun of the
    default preset added to ``server.db``. Prefect's own server deletes events after a retention
    period (7 days, ``PREFECT_SERVER_EVENTS_RETENTION_PERIOD``) in its ``db_vacuum`` service, which
    an embedded server does not run; so the root keeps the events of the newest run (those that
    occurred at or after ``since``, UTC ``YYYY-MM-DD HH:MM:SS``, Prefect's stored form); deleted before
    the run writes its own, a rerun reuses the pages the previous run's events held instead of
    growing the file. Only with no server of another process on the database (the root's lock is
    held, ``recflow ui`` is not running: its server would be the run's). And SQLite
    leaves ``server.db-wal`` at its largest size when the server process ends without closing its
    connections (it is killed): ``wal_checkpoint(TRUNCATE)`` writes it into the database and empties it.

    Never fails the run: a database that is busy (another server on it: the WAL stays), locked or
    not Prefect's is left as it is. Returns the rows deleted (``events``, ``event_resources``).
    """
    import sqlite3

    deleted = {"events": 0, "event_resources": 0}
    if not path.exists():
        return deleted
    try:
        db = sqlite3.connect(path, timeout=5)
    except sqlite3.Error:
        return deleted
    try:
        with db:
            for table in ("event_resources", "events"):  # resources first, as Prefect's vacuum does (no cascade)
                deleted[table] = db.execute(f"DELETE FROM {table} WHERE occurred < ?", (since,)).rowcount
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        pass
    finally:
        db.close()
    return deleted


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
        self.started = ""
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
            check_prefect_database(self.root)
            self.server = embedded_prefect_server(self.root)
            self.started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            self.compact()  # before this run's events: they reuse the pages the earlier runs' events held
            self.server.start()
            atexit.register(self.stop_embedded)
            env = {"PREFECT_API_URL": f"{self.server.url}/api"}
        self._export({**env, "RECFLOW_PREFECT_SERVER": self.kind})
        return self

    def compact(self) -> None:
        """``compact_prefect_database`` on the root's SQLite Prefect database: the events before this run go, the WAL is emptied."""
        database = prefect_sqlite_path(self.root)
        if database is not None:
            compact_prefect_database(database, self.started)

    def stop_embedded(self) -> None:
        """Stop the embedded server, then empty the write-ahead log it left (this run's events stay)."""
        if self.server is not None:
            self.server.stop(5.0)
            self.compact()

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
