"""A real PostgreSQL server for tests: ``initdb`` into a folder, a free port, stopped at the end.

Why a real server rather than sqlite or a mock: the point of these tests is that Prefect's server,
MLflow's tracking server and the SQL source run on PostgreSQL, with its drivers, its SQL dialect and
its connection handling. PostgreSQL 15's ``initdb``/``pg_ctl`` are taken from ``$PATH``, else from
Debian's ``/usr/lib/postgresql/<version>/bin`` (where ``apt-get install postgresql`` puts them;
``.ci/run`` installs it where it is missing).

``initdb`` refuses to run as root: as root, every PostgreSQL command runs as the ``postgres`` user
through ``runuser -u postgres --`` (the user is created when missing) and the folder is given to it.
A folder that user cannot reach (pytest's ``tmp_path`` lies under a root-only ``/tmp/pytest-of-root``)
is replaced by a fresh temporary folder of its own, removed at ``stop()``.

The server trusts every local connection (``--auth=trust``, user ``postgres``, no password) and
skips fsync: a throwaway test cluster, never a deployment. ``prefix`` runs every command under
another one, e.g. ``["ip", "netns", "exec", "storage"]`` to serve from inside a network namespace.

Use::

    with PostgresServer().start(tmp_path) as pg:
        pg.create_database("prefect")
        url = pg.url("asyncpg", "prefect")   # postgresql+asyncpg://postgres@127.0.0.1:<port>/prefect

or the session-scoped fixture ``postgres_server`` (imported by tests/conftest.py), which skips the
test, naming the reason, where PostgreSQL is not installed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest

USER = "postgres"
START_TIMEOUT = 60


def _bindir() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: ``$PATH`` first, else Debian's newest versioned folder."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def unavailable_reason() -> str | None:
    """Why no PostgreSQL server can be started here, or None when one can."""
    if _bindir() is None:
        return "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin; .ci/run installs it with apt-get)"
    return None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class PostgresServer:
    """One throwaway PostgreSQL cluster: ``start()`` it, build ``url()``s to it, ``stop()`` it (also as a context manager)."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.dir: Path | None = None
        self.prefix: list[str] = []
        self._own_dir = False
        self._bin = _bindir()

    # ------------------------------------------------------------------ running commands as the server's user
    def _as_user(self) -> list[str]:
        return ["runuser", "-u", USER, "--"] if os.geteuid() == 0 else []

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        argv = [*self.prefix, *self._as_user(), *command]
        done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=START_TIMEOUT + 30)
        if check and done.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path and self.log_path.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}:\n{done.stdout}{done.stderr}{log}")
        return done

    def _tool(self, name: str) -> str:
        assert self._bin is not None, unavailable_reason()
        return str(self._bin / name)

    @staticmethod
    def _ensure_user() -> None:
        if subprocess.run(["id", "-u", USER], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True, capture_output=True)

    def _reachable(self, folder: Path) -> bool:
        return subprocess.run([*self._as_user(), "test", "-w", str(folder), "-a", "-x", str(folder)], capture_output=True).returncode == 0

    @property
    def data_dir(self) -> Path:
        assert self.dir is not None, "start() the server first"
        return self.dir / "data"

    @property
    def log_path(self) -> Path | None:
        return self.dir / "postgres.log" if self.dir else None

    # ------------------------------------------------------------------ the life cycle
    def start(self, dir: str | Path, host: str = "127.0.0.1", port: int | None = None, prefix: Sequence[str] = ()) -> PostgresServer:
        """initdb a cluster under ``dir`` and start it listening on ``host:port`` (None: a free port); returns self."""
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self.host, self.prefix = host, list(prefix)
        self.port = port or _free_port(host if not prefix else "127.0.0.1")
        folder = Path(dir)
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._ensure_user()
            shutil.chown(folder, USER, USER)
            if not self._reachable(folder):
                folder = Path(tempfile.mkdtemp(prefix="recflow-pg-"))
                shutil.chown(folder, USER, USER)
                self._own_dir = True
        self.dir = folder
        self._run(self._tool("initdb"), "-D", str(self.data_dir), "-U", USER, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
        if host not in ("127.0.0.1", "localhost", "::1"):  # initdb's pg_hba.conf admits loopback only: also the host's own subnets
            with open(self.data_dir / "pg_hba.conf", "a") as hba:
                hba.write("host all all samenet trust\n")
        options = f"-h {host} -p {self.port} -k {folder} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        self._run(self._tool("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options, "-w", "-t", str(START_TIMEOUT), "start")
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended) and remove a folder it made for itself."""
        if self.dir is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            done = self._run(self._tool("pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop", check=False)
            if done.returncode != 0:
                with contextlib.suppress(OSError, ValueError, IndexError):
                    os.kill(int((self.data_dir / "postmaster.pid").read_text().split()[0]), 9)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ using it
    def url(self, driver: str | None = None, database: str = "postgres") -> str:
        """``postgresql://`` (libpq's own form: ``psycopg.connect`` takes it; SQLAlchemy 2.1 reads it as psycopg 3)
        or SQLAlchemy's ``postgresql+<driver>://`` (``asyncpg`` for Prefect, ``psycopg`` for MLflow)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{USER}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name`` (once: an existing one is kept) and return its ``url()``."""
        done = self._run(self._tool("createdb"), "-h", self.host, "-p", str(self.port), "-U", USER, name, check=False)
        if done.returncode != 0 and "already exists" not in done.stderr:
            raise RuntimeError(f"createdb {name} on {self.host}:{self.port} failed: {done.stderr.strip()}")
        return self.url(database=name)


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server for the test session (each xdist worker has its own); skips where PostgreSQL is missing.

    Tests share it: each creates the databases it needs under names of its own (``create_database``)."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    folder = tempfile.mkdtemp(prefix="recflow-pg-")
    server = PostgresServer()
    try:
        server.start(folder)
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
