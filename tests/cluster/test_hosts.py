"""A team's deployment on six hosts (network namespaces on this machine, tests/netns.py), operated as a team runs it.

    storage    10.77.0.2  moto's S3 server (the artifacts root s3://recflow-team/root) and PostgreSQL
    scheduler  10.77.0.3  dask scheduler :8786, `recflow ui` (Prefect server :4200 on PostgreSQL via
                          asyncpg, MLflow server :5000 on PostgreSQL via psycopg, artifacts in the bucket)
    w1, w2     10.77.0.4-5 `dask worker`, each from its own venv at its own path, recflow from a wheel
    client     10.77.0.6  `recflow run --dask tcp://10.77.0.3:8786` from this checkout
    fresh      10.77.0.7  a machine that never ran the pipeline: `recflow recommend`

Every host has its own HOME, Prefect home and mirror of the root (``RECFLOW_CACHE_DIR``), as separate
machines would; they share only the network and what the services hold. One test, in steps, as the
services take a minute to start on a 2-core machine: the metrics of a cluster run, during which the
first worker seen building a stage folder is killed (every process of its host), equal a local run's
(the thread pool, started in the background at the beginning), with the same stage keys; an unchanged
rerun executes no task; a fresh host answers ``recflow recommend``. The hosts and every process on
them are removed at the end, pass or fail.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import netns
from tests.pg import PostgresServer
from tests.pg import unavailable_reason as no_postgres

REPO = Path(__file__).resolve().parents[2]
SMOKE = "configs/smoke.yaml"
BUCKET = "recflow-team"
ROOT_URL = f"s3://{BUCKET}/root"
STAGES = ("ingest", "split", "features", "train", "evaluate")
PY = sys.executable

pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.timeout(900)]

#: run on a host: wait until every URL answers 200 and the scheduler has N workers
WAIT = """
import sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[1])
scheduler, n_workers, urls = sys.argv[2], int(sys.argv[3]), sys.argv[4:]
for url in urls:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"{url} did not answer")
        time.sleep(0.5)
if n_workers:
    from distributed import Client
    with Client(scheduler, timeout=max(deadline - time.monotonic(), 5)) as client:
        client.wait_for_workers(n_workers, timeout=max(deadline - time.monotonic(), 5))
"""

MAKE_BUCKET = f"import boto3; boto3.client('s3').create_bucket(Bucket={BUCKET!r})"


def clean_env() -> dict[str, str]:
    """This machine's environment less everything that would tie a host to the test's own setup."""
    drop = ("RECFLOW_", "MLFLOW_", "PREFECT_", "AWS_", "PYTHONPATH", "DASK_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update({"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "GIT_PYTHON_REFRESH": "quiet", "MLFLOW_ENABLE_ASYNC_LOGGING": "false", "RECFLOW_PROGRESS": "0"})
    return env


def host_env(home: Path, storage: str, checkout: bool, **extra: str) -> dict[str, str]:
    """A host's environment: its own HOME, Prefect home and root mirror; the team's bucket and credentials."""
    env = clean_env()
    env.update(
        {
            "HOME": str(home),
            "PREFECT_HOME": str(home / "prefect"),
            "RECFLOW_CACHE_DIR": str(home / "cache"),
            "RECFLOW_HOME": ROOT_URL,
            "AWS_ENDPOINT_URL": f"http://{storage}:5000",
            "AWS_ACCESS_KEY_ID": "team-key",
            "AWS_SECRET_ACCESS_KEY": "team-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            **extra,
        }
    )
    if checkout:  # this checkout's code (CI's venv has it installed editable; a worktree needs the path)
        env["PYTHONPATH"] = str(REPO)
    return env


def build_wheel(into: Path) -> Path:
    """The project as a wheel, built from a copy of this checkout's sources (the checkout stays clean)."""
    src = into / "src"
    src.mkdir(parents=True)
    for name in ("recflow", "tasks", "flows"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run([PY, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(into), str(src)], check=True, capture_output=True)
    return next(into.glob("recflow-*.whl"))


def worker_venv(path: Path, wheel: Path) -> Path:
    """A venv at ``path`` with recflow installed from ``wheel``, its dependencies from this venv.

    ``--system-site-packages`` would give the base interpreter's packages, not this venv's, so a
    ``.pth`` line adds this venv's site-packages after the new venv's own: its ``.pth`` files (this
    venv's editable recflow among them) are not run, so ``import recflow`` finds the wheel's copy."""
    subprocess.run([PY, "-m", "venv", "--without-pip", str(path)], check=True, capture_output=True)
    site = next(path.glob("lib/python*/site-packages"))
    (site / "recflow-deps.pth").write_text(next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()) + "\n")
    python = path / "bin" / "python"
    subprocess.run([PY, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True)
    return python


def stage_summaries(roots: list[Path]) -> dict[str, dict]:
    """``evaluate/<key>/summary.json`` found under any of ``roots``: model -> its metrics."""
    out = {}
    for root in roots:
        for path in sorted(root.glob("evaluate/*/summary.json")):
            summary = json.loads(path.read_text())
            out[summary["model"]] = summary["metrics"]
    return out


def stage_keys(roots: list[Path], stages: tuple[str, ...]) -> set[str]:
    """``<stage>/<key>`` of every complete folder of ``stages`` under any of ``roots``."""
    return {f"{p.parent.parent.name}/{p.parent.name}" for root in roots for stage in stages for p in root.glob(f"{stage}/*/manifest.json")}


def mirrors(home: Path) -> list[Path]:
    return [Path(p) for p in glob.glob(str(home / "cache" / "mirrors" / "*"))]


def last_line(output: str, prefix: str) -> str:
    return next((line for line in reversed(output.splitlines()) if line.startswith(prefix)), f"(no line starting {prefix!r})")


@pytest.fixture
def network():
    reason = netns.unavailable_reason() or no_postgres()
    if reason:
        pytest.skip(reason)
    net = netns.Network()
    try:
        yield net
    finally:
        net.close()


def test_a_team_deployment_on_six_hosts_runs_survives_a_dead_worker_caches_and_serves_a_fresh_host(network, tmp_path):
    started = time.monotonic()
    timings: dict[str, float] = {}

    def mark(step: str) -> None:
        timings[step] = round(time.monotonic() - started, 1)

    # the reference: the same preset on this machine's thread pool, in the background meanwhile
    local_root = tmp_path / "local" / "artifacts"
    local_env = {**clean_env(), "RECFLOW_HOME": str(local_root), "HOME": str(tmp_path / "local"), "PYTHONPATH": str(REPO)}
    local_env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'local' / 'mlflow.db'}"
    local = subprocess.Popen(
        [PY, "-m", "recflow.cli.main", "run", "--config", SMOKE], cwd=REPO, env=local_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    pg = PostgresServer()
    try:
        hosts = {name: network.add(name) for name in ("storage", "scheduler", "w1", "w2", "client", "fresh")}
        storage, scheduler = hosts["storage"], hosts["scheduler"]
        homes = {name: tmp_path / name for name in hosts}
        for home in homes.values():
            home.mkdir(parents=True, exist_ok=True)
        logs = tmp_path / "logs"
        env = {name: host_env(homes[name], storage, checkout=name not in ("w1", "w2")) for name in hosts}

        # storage: PostgreSQL (stopped with the host) and moto's S3 server
        pg.start(homes["storage"] / "pg", host=storage, port=5432, prefix=network.command("storage", []))
        for database in ("prefect", "mlflow"):
            pg.create_database(database)
        network.popen("storage", [PY, "-m", "moto.server", "-H", storage, "-p", "5000"], logs / "moto.log", env["storage"], homes["storage"])
        # scheduler: dask scheduler and `recflow ui` on the team's databases
        address = f"tcp://{scheduler}:8786"
        dask_scheduler = [PY, "-m", "distributed.cli.dask_scheduler", "--host", scheduler, "--port", "8786", "--no-dashboard"]
        network.popen("scheduler", dask_scheduler, logs / "scheduler.log", env["scheduler"], homes["scheduler"])
        ui = [PY, "-m", "recflow.cli.main", "ui", "--host", scheduler, "--prefect-port", "4200", "--mlflow-port", "5000"]
        ui += ["--prefect-database", pg.url("asyncpg", "prefect"), "--mlflow-database", pg.url("psycopg", "mlflow")]
        network.popen("scheduler", ui, logs / "ui.log", env["scheduler"], REPO)
        mark("services started")
        # workers (built while the services start): each from its venv, at its own path, one task at a time
        wheel = build_wheel(tmp_path / "wheel")
        pythons = {w: worker_venv(tmp_path / w / "opt" / f"recflow-{w}", wheel) for w in ("w1", "w2")}  # two paths, neither the checkout
        mark("wheel and venvs")
        for w, python in pythons.items():
            command = [str(python), "-m", "distributed.cli.dask_worker", address, "--host", hosts[w], "--nworkers", "1", "--nthreads", "1", "--no-dashboard"]
            network.popen(w, [*command, "--name", w], logs / f"{w}.log", env[w], homes[w])
        made = network.run("client", [PY, "-c", WAIT, "60", address, "0", f"http://{storage}:5000/"], env["client"], homes["client"], 90)
        assert made.returncode == 0, made.stderr + (logs / "moto.log").read_text()
        made = network.run("client", [PY, "-c", MAKE_BUCKET], env["client"], homes["client"], 60)
        assert made.returncode == 0, made.stderr
        urls = [f"http://{scheduler}:4200/api/health", f"http://{scheduler}:5000/health"]
        up = network.run("client", [PY, "-c", WAIT, "420", address, "2", *urls], env["client"], homes["client"], 440)
        assert up.returncode == 0, up.stderr + "".join(p.read_text()[-3000:] for p in sorted(logs.glob("*.log")))
        mark("services up")

        out, _ = local.communicate(timeout=400)
        assert local.returncode == 0, out
        mark("local run")

        # the cluster run; the first worker seen building a stage folder dies (its whole host)
        team = {"PREFECT_API_URL": f"http://{scheduler}:4200/api", "MLFLOW_TRACKING_URI": f"http://{scheduler}:5000"}
        client_env = {**env["client"], **team}
        killed: list[str] = []
        done = threading.Event()

        def kill_a_busy_worker() -> None:
            while not done.is_set():
                for w in pythons:
                    if any(glob.glob(str(m / "*" / ".*")) for m in mirrors(homes[w])):  # a scratch folder: a task mid-build
                        network.kill(w)
                        killed.append(w)
                        return
                time.sleep(0.02)

        killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
        killer.start()
        run = [PY, "-m", "recflow.cli.main", "run", "--config", SMOKE, "--dask", address]
        first = network.run("client", run, client_env, REPO, 400)
        done.set()
        killer.join(5)
        mark("cluster run")
        assert first.returncode == 0, first.stdout + first.stderr
        assert len(killed) == 1, "no worker was seen mid-task"
        assert network.pids(killed[0]) == []
        worker_mirrors = [m for w in pythons for m in mirrors(homes[w])]
        assert stage_summaries(worker_mirrors) == stage_summaries([local_root])
        assert sorted(stage_summaries([local_root])) == ["bias", "popular"]
        # the wheel's code keys its stages as this checkout does; evaluate's key covers the trained folder's
        # content, fit_seconds included, so it differs between any two fits (also two local runs)
        assert stage_keys(worker_mirrors, STAGES[:-1]) == stage_keys([local_root], STAGES[:-1])

        again = network.run("client", run, client_env, REPO, 300)
        mark("rerun")
        assert again.returncode == 0, again.stdout + again.stderr
        assert last_line(again.stdout, "tasks:") == "tasks: 0 ran, 7 cached"

        answer = network.run("fresh", [PY, "-m", "recflow.cli.main", "recommend", "--user", "1", "-k", "5"], {**env["fresh"], **team}, REPO, 200)
        mark("recommend")
        if answer.returncode != 0 and "no champion yet under" in answer.stdout + answer.stderr:
            # the champion records stay in the client's mirror until serving/ is shared under the root (issue 25, point 2)
            pytest.xfail("a fresh host finds no champion: serving records are not yet shared under the s3 root")
        assert answer.returncode == 0, answer.stdout + answer.stderr
        assert "Top 5 for user 1" in answer.stdout
    finally:
        pg.stop()  # before the hosts go: pg_ctl runs on the storage host
        for log in sorted((tmp_path / "logs").glob("*.log")) if (tmp_path / "logs").is_dir() else []:
            print(f"--- {log.name} (end)\n{log.read_text(errors='replace')[-1500:]}")
        if local.poll() is None:
            local.kill()
            local.wait(10)
        print(f"timings (s since start): {timings}")
