"""The pipeline on a Dask cluster (``recflow run --dask``), operated on loopback.

One cluster is started as a user starts one (``dask scheduler`` and two ``dask worker`` processes),
with no recflow variable set: the artifacts root, MLflow store and Prefect API reach the workers
from the run (``recflow.runtime.cluster.RunEnvironment``). Each run has its own artifacts root.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from recflow.runtime.servers import free_port
from tests.cluster import processes as processes_

REPO = Path(__file__).resolve().parents[2]
SMOKE = "configs/smoke.yaml"

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """``dask scheduler`` + 2 ``dask worker`` processes (one task at a time each) on 127.0.0.1; stopped at the end."""
    logs = tmp_path_factory.mktemp("dask-logs")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECFLOW_", "MLFLOW_", "PREFECT_API"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    commands = [[dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]] + [
        [dask, "worker", address, "--host", "127.0.0.1", "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--name", f"w{i}"] for i in range(2)
    ]
    processes = processes_.start(commands, logs, env)
    try:
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        processes_.stop(processes)


def home(tmp_path_factory, name: str, monkeypatch) -> Path:
    root = tmp_path_factory.mktemp(name) / "artifacts"
    root.mkdir()
    monkeypatch.setenv("RECFLOW_HOME", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.chdir(REPO)
    return root


def evaluated_metrics(root: Path) -> dict[str, dict]:
    """Every ``evaluate/<key>/summary.json`` under ``root``: model -> its metrics."""
    summaries = [json.loads(p.read_text()) for p in sorted((root / "evaluate").glob("*/summary.json"))]
    return {s["model"]: s["metrics"] for s in summaries}


@pytest.fixture(scope="module")
def threads_root(tmp_path_factory):
    """The smoke preset run as `make run` runs it: Prefect's thread pool, no Dask."""
    from flows.pipeline import run_pipeline

    with pytest.MonkeyPatch.context() as mp:
        root = home(tmp_path_factory, "threads", mp)
        result = run_pipeline(SMOKE, root=root)
    assert result["tasks"] == {"ran": 7, "cached": 0}
    return root


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory, scheduler):
    """``recflow run --dask tcp://...`` of the smoke preset against the scheduler started above."""
    with pytest.MonkeyPatch.context() as mp:
        root = home(tmp_path_factory, "cluster", mp)
        result = CliRunner().invoke(__import__("recflow.cli.main", fromlist=["app"]).app, ["run", "--config", SMOKE, "--dask", scheduler])
        assert result.exit_code == 0, result.output
        yield root, result.output


def test_the_smoke_presets_metrics_on_a_cluster_equal_the_thread_pools(threads_root, cluster_run):
    root, output = cluster_run
    assert output.strip().splitlines()[-2] == "tasks: 7 ran, 0 cached"
    on_cluster = evaluated_metrics(root)
    assert sorted(on_cluster) == ["bias", "popular"]
    assert on_cluster == evaluated_metrics(threads_root)


def test_an_unchanged_rerun_on_a_local_cluster_executes_no_task(cluster_run, monkeypatch):
    """The same root, now on a LocalCluster that the run starts itself (2 worker processes): every stage is a cache hit."""
    from flows.pipeline import run_pipeline

    root, _ = cluster_run
    monkeypatch.setenv("RECFLOW_HOME", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.chdir(REPO)
    result = run_pipeline(SMOKE, ["runner.n_workers=2"], root=root, dask="local")
    assert result["tasks"] == {"ran": 0, "cached": 7}


# --------------------------------------------------------------------------- a worker killed mid-training

SLOW_FIT = "mf"


def stall_first_fit(marker: str) -> int:
    """Run on each worker: the first ``MF.fit`` on the cluster writes its pid to ``marker`` and stalls
    (to be killed there); every fit appends its pid. Patches the library class, so no Prefect import."""
    from recflow.models.mf import BiasedMFRecommender as MF

    fit = MF.fit

    def stalling_fit(self, *args, **kwargs):
        first = not os.path.exists(marker)
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")
        if first:
            time.sleep(600)
        return fit(self, *args, **kwargs)

    MF.fit = stalling_fit
    return os.getpid()


def imports_tensorflow() -> bool:
    return "tensorflow" in sys.modules


def task_run_states(flow_run_name: str | None = None) -> dict[str, list[str]]:
    """Every task run of the newest flow run: its name -> its state names, oldest first."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def read() -> dict[str, list[str]]:
        async with get_client() as client:
            flow_run = (await client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1))[0]
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
            return {run.name: [s.name for s in sorted(await client.read_task_run_states(run.id), key=lambda s: s.timestamp)] for run in runs}

    return run_coro_as_sync(read())


def test_a_worker_killed_mid_training_reruns_that_task_elsewhere_and_nothing_else(scheduler, tmp_path_factory, monkeypatch):
    """SIGKILL to the worker process running ``train[mf]``: the scheduler reruns it on another worker and the run
    completes. The killed worker also held finished results, which Dask recomputes (Prefect #15442): each such
    rerun ends Cached (Prefect goes Running -> Cached without calling the task), so no finished task executes
    twice; and every stage folder verifies (the killed fit's scratch folder is a dot folder nothing reads)."""
    import cloudpickle
    from distributed import Client

    from flows.pipeline import run_pipeline
    from recflow.runtime.store import verify_stage_dir

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    root = home(tmp_path_factory, "killed", monkeypatch)
    marker = root.parent / "fits.pids"
    with Client(scheduler) as client:
        workers = set(client.run(stall_first_fit, str(marker)).values())  # their pids
        assert len(workers) == 2

        def kill_the_first_fit() -> None:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and not (marker.exists() and marker.read_text().strip()):
                time.sleep(0.1)
            os.kill(int(marker.read_text().split()[0]), signal.SIGKILL)

        killer = threading.Thread(target=kill_the_first_fit, daemon=True)
        killer.start()
        overrides = [f"models=[{{name: popular}}, {{name: {SLOW_FIT}, epochs: 2}}]", "serving.register_model=false"]
        result = run_pipeline(SMOKE, overrides, root=root, dask=scheduler)
        killer.join(5)
        assert not any(client.run(imports_tensorflow).values())  # no TF model ran on them

    killed, rerun = (int(pid) for pid in marker.read_text().split())
    assert killed in workers and rerun != killed  # the fit ran again, on another worker
    assert set(result["metrics"]) == {"popular", SLOW_FIT}
    states = task_run_states()
    assert states[f"train[{SLOW_FIT}]"].count("Running") == 2, states
    # each task's code ran to completion once; a recomputation by Dask (after Completed) read the cache
    assert {name: s.count("Completed") for name, s in states.items()} == {name: 1 for name in states}, states
    assert all(set(s[s.index("Completed") + 1 :]) <= {"Pending", "Running", "Cached"} for s in states.values()), states
    for stage in ("ingest", "split", "features", "train", "evaluate", "index"):
        for folder in (root / stage).iterdir():
            assert folder.name.startswith(".") or verify_stage_dir(folder) is not None, folder
