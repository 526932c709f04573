"""A Dask worker whose recflow is a wheel installed into another venv, at another path, joins a checkout's run.

What a team's worker image is: the project from ``pip wheel``, under ``<venv>/site-packages``, no
checkout anywhere near it. Cache keys hash module names and the sources installed under them
(``tasks/caching.py``), so the worker computes the checkout's keys byte for byte: a run on it
writes the folders and cache records a checkout then hits, and the reverse. Operated: a real
``dask scheduler`` and a ``dask worker`` started from that venv, as a user starts them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cloudpickle
import pytest

from recflow.runtime.servers import free_port
from tests.cluster import processes as processes_
from tests.cluster.wheel import REPO, clean_environment

SMOKE = "configs/smoke.yaml"
N_TASKS = 7

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(scope="module")
def wheel_cluster(wheel_python, tmp_path_factory):
    """``dask scheduler`` and one ``dask worker`` from the wheel's venv (cwd outside the checkout), as a team's image runs them.

    The scheduler unpickles the task graph too, so it needs the project as much as the worker does."""
    logs = tmp_path_factory.mktemp("wheel-dask-logs")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    commands = [
        [str(wheel_python), "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        [str(wheel_python), "-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1", "--nworkers", "1", "--nthreads", "1", "--no-dashboard"],
    ]
    processes = processes_.start(commands, logs, clean_environment())
    try:
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
        cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the worker cannot import this test module
        yield address
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        processes_.stop(processes)


def where_the_code_is() -> dict[str, str]:
    """On the worker: the files its recflow and tasks packages were imported from, and its cloudpickle."""
    import cloudpickle

    import recflow
    import tasks.caching

    return {"recflow": recflow.__file__, "tasks": tasks.caching.__file__, "cloudpickle": cloudpickle.__version__}


def lineage_digests() -> dict[str, str]:
    """Every project module's lineage digest, as this process computes it from what it has installed."""
    from recflow.runtime.lineage import Lineage

    lineage = Lineage.installed()
    return {name: lineage.digest([name]) for name in lineage.sources()}


def example_keys() -> dict[str, str]:
    """Keys of every cached stage for fixed inputs (models chosen through the registry included)."""
    from recflow.experiments.config import MODEL_PARAMS
    from recflow.runtime.store import Artifact
    from tasks.evaluate import evaluate
    from tasks.features import features
    from tasks.index import index
    from tasks.train import train

    data = Artifact(stage="ingest", key="k", fingerprint="ingest-fp", path="ingest/k")
    keys = {"features": features.cache_policy.key_for({"split": data, "config": {}})}
    for name in ("popular", "bias", "ease"):
        model = Artifact(stage="train", key="k", fingerprint="train-fp", path="train/k", meta={"model": name})
        keys[f"train[{name}]"] = train.cache_policy.key_for({"data": data, "params": MODEL_PARAMS[name]()})
        keys[f"evaluate[{name}]"] = evaluate.cache_policy.key_for({"model": model, "config": {}})
        keys[f"index[{name}]"] = index.cache_policy.key_for({"model": model, "config": {}})
    return keys


def on_the_worker(address: str, fn):
    from distributed import Client

    with Client(address) as client:
        (value,) = client.run(fn).values()
    return value


def test_the_workers_recflow_is_the_wheels_at_another_path(wheel_cluster, wheel_python):
    found = on_the_worker(wheel_cluster, where_the_code_is)
    venv = wheel_python.parent.parent
    assert Path(found["recflow"]).is_relative_to(venv) and Path(found["tasks"]).is_relative_to(venv), found
    assert "site-packages" in found["recflow"] and not Path(found["recflow"]).is_relative_to(REPO)
    assert found["cloudpickle"] == cloudpickle.__version__


def test_the_wheel_worker_computes_the_checkouts_lineage_and_keys(wheel_cluster):
    assert on_the_worker(wheel_cluster, lineage_digests) == lineage_digests()
    assert on_the_worker(wheel_cluster, example_keys) == example_keys()


def stage_folders(root: Path) -> list[str]:
    return sorted(f"{p.parent.name}/{p.name}" for p in root.glob("*/*/manifest.json"))


def test_a_run_on_the_wheel_worker_and_one_in_the_checkout_share_every_cache(wheel_cluster, tmp_path, monkeypatch):
    """Cold on the wheel worker (every task there), then in the checkout's thread pool: every stage a hit, the same folders."""
    from flows.pipeline import run_pipeline

    root = tmp_path / "artifacts"
    root.mkdir()
    monkeypatch.setenv("RECFLOW_HOME", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.chdir(REPO)

    on_cluster = run_pipeline(SMOKE, ["serving.register_model=false"], root=root, dask=wheel_cluster)
    assert on_cluster["tasks"] == {"ran": N_TASKS, "cached": 0}
    folders = stage_folders(root)

    in_checkout = run_pipeline(SMOKE, ["serving.register_model=false"], root=root)
    assert in_checkout["tasks"] == {"ran": 0, "cached": N_TASKS}
    assert in_checkout["metrics"] == on_cluster["metrics"]
    assert stage_folders(root) == folders
    summaries = [json.loads(p.read_text()) for p in sorted((root / "evaluate").glob("*/summary.json"))]
    assert sorted(s["model"] for s in summaries) == ["bias", "popular"]
