"""What a scheduled run needs beyond the DAG: a full rebuild, one run per artifacts root, and what the Prefect UI shows."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.sorting import FlowRunSort

import tasks.ingest
from flows.pipeline import run_pipeline
from recflow.data import DatasetNotFoundError, DownloadError
from recflow.experiments.config import DatasetConfig
from tasks.operations import exclusive_root

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SMOKE = "configs/smoke.yaml"
N_TASKS = 7


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One smoke run shared by the read-only checks below: its result and its Prefect flow run."""
    home = tmp_path_factory.mktemp("ops") / "artifacts"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECFLOW_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        mp.setenv("RECFLOW_MLFLOW_URL", "http://mlflow.example:5000")
        result = run_pipeline(SMOKE, root=home)
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
    return result, flow_run


def _api(path: str, body: dict) -> list[dict]:
    """POST a filter to the API (the sync client's read_* helpers send nulls the server refuses)."""
    with get_client(sync_client=True) as client:
        return client.request("POST", path, json=body).json()


def _latest_artifact(key: str):
    found = _api("/artifacts/filter", {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1})
    assert found, f"no artifact {key}"
    return found[0]["data"]


def test_refresh_reruns_every_task_and_later_runs_reuse_the_rebuilt_cache(recflow_home):
    run_pipeline(SMOKE, root=recflow_home)
    manifest = next((recflow_home / "split").iterdir()) / "manifest.json"
    before = manifest.stat().st_mtime_ns
    rebuilt = run_pipeline(SMOKE, root=recflow_home, refresh=True)
    assert rebuilt["tasks"] == {"ran": N_TASKS, "cached": 0}
    assert manifest.stat().st_mtime_ns != before  # the folder was rewritten, not reused
    assert run_pipeline(SMOKE, root=recflow_home)["tasks"] == {"ran": 0, "cached": N_TASKS}


def test_a_run_holds_the_artifacts_roots_os_lock_and_frees_it_when_done(recflow_home):
    probe = [sys.executable, "-c", "import sys; from recflow.runtime.rootlock import RootLock; print(RootLock(sys.argv[1]).try_acquire())", str(recflow_home)]
    with exclusive_root(recflow_home):
        assert subprocess.run(probe, capture_output=True, text=True, check=True).stdout == "False\n"
    assert subprocess.run(probe, capture_output=True, text=True, check=True).stdout == "True\n"


def test_metrics_table_artifact_has_every_models_metrics(smoke_run):
    result, _ = smoke_run
    rows = json.loads(_latest_artifact("recflow-synthetic-smoke-metrics"))
    by_model = {row["model"]: row for row in rows}
    assert set(by_model) == {"popular", "bias"}
    assert by_model["bias"]["recall_at_10"] == pytest.approx(result["metrics"]["bias"]["recall_at_10"], abs=1e-6)
    assert by_model["bias"]["rmse"] == pytest.approx(result["metrics"]["bias"]["rmse"], abs=1e-6)
    assert by_model["popular"]["mlflow_run_id"] == result["tracking"]["model_runs"]["popular"]


def test_summary_artifact_links_the_mlflow_runs(smoke_run):
    result, _ = smoke_run
    text = _latest_artifact("recflow-synthetic-smoke-summary")
    tracking = result["tracking"]
    exp = tracking["experiment_id"]
    assert f"http://mlflow.example:5000/#/experiments/{exp}/runs/{tracking['run_id']}" in text
    assert f"/#/experiments/{exp}/runs/{tracking['model_runs']['bias']}" in text
    assert "compare-runs?runs=" in text


def test_summary_artifact_names_the_model_this_run_made_champion(smoke_run):
    result, _ = smoke_run
    champion = result["serving"]["champion"]
    text = _latest_artifact("recflow-synthetic-smoke-summary")
    assert f"**champion: recflow-synthetic-smoke v{champion['champion_version']} (this run's best: {champion['model']}, " in text
    assert champion["reason"] in text


def test_task_runs_are_named_after_their_work_and_tagged_with_the_dataset(smoke_run):
    _, flow_run = smoke_run
    task_runs = _api("/task_runs/filter", {"flow_runs": {"id": {"any_": [str(flow_run.id)]}}, "sort": "EXPECTED_START_TIME_ASC", "limit": 100})
    names = {t["name"] for t in task_runs}
    assert {"locate[synthetic-smoke]", "ingest[synthetic-smoke]", "split[user_random]", "features", "train[bias]", "evaluate[popular]"} <= names
    assert {"track[mlflow]", "report", "catalogue", "champion"} <= names  # the tail is tasks too
    assert all("dataset:synthetic-smoke" in t["tags"] for t in task_runs)


def test_mlflow_parent_run_is_named_after_the_preset_and_spans_the_flow_run(smoke_run):
    import mlflow

    result, flow_run = smoke_run
    client = mlflow.MlflowClient(result["tracking"]["tracking_uri"])
    parent = client.get_run(result["tracking"]["run_id"])
    assert parent.info.run_name.startswith("smoke 20") and parent.info.run_name.endswith(f"({flow_run.name})")
    assert parent.info.status == "FINISHED"
    children = [client.get_run(run_id) for run_id in result["tracking"]["model_runs"].values()]
    assert parent.info.start_time <= min(c.info.start_time for c in children)
    assert parent.info.end_time >= max(c.info.end_time for c in children)
    flow_start, flow_end = flow_run.start_time.timestamp() * 1000, flow_run.end_time.timestamp() * 1000
    assert flow_start - 1000 <= parent.info.start_time and parent.info.end_time <= flow_end + 1000


def test_experiment_opens_in_mlflows_training_view(smoke_run):
    import mlflow

    result, _ = smoke_run
    experiment = mlflow.MlflowClient(result["tracking"]["tracking_uri"]).get_experiment(result["tracking"]["experiment_id"])
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_mlflow_parent_run_points_back_to_the_flow_run(smoke_run):
    import mlflow

    result, flow_run = smoke_run
    parent = mlflow.MlflowClient(result["tracking"]["tracking_uri"]).get_run(result["tracking"]["run_id"])
    assert parent.data.tags["prefect.flow_run_id"] == str(flow_run.id)
    assert parent.data.tags["prefect.flow_run_name"] == flow_run.name


@pytest.mark.parametrize("error, calls", [(DownloadError("connection reset"), 2), (DatasetNotFoundError("no ml-1m here"), 1)])
def test_locate_retries_a_failed_download_but_not_a_missing_dataset(monkeypatch, error, calls):
    seen = []

    def flaky(dataset):
        seen.append(dataset.name)
        if len(seen) == 1:
            raise error
        return "found"

    monkeypatch.setattr(tasks.ingest, "locate_source", flaky)
    fast = tasks.ingest.locate.with_options(retry_delay_seconds=0)
    if calls == 1:
        with pytest.raises(DatasetNotFoundError):
            fast(DatasetConfig(name="ml-1m"))
    else:
        assert fast(DatasetConfig(name="ml-1m")) == "found"
    assert len(seen) == calls


def test_a_failed_index_keeps_its_models_metrics_in_mlflow_and_the_report(recflow_home, monkeypatch):
    import mlflow

    import recflow.retrieval.build
    from recflow.runtime.outcomes import PipelineFailed

    def out_of_memory(*args, **kwargs):
        raise MemoryError("faiss ran out")

    monkeypatch.setattr(recflow.retrieval.build, "build_serving_indexes", out_of_memory)
    with pytest.raises(PipelineFailed) as failed:
        run_pipeline(SMOKE, ["models=[{name: popular}, {name: mf}]"], root=recflow_home)
    assert [f.line() for f in failed.value.failures] == ["index[mf] failed: MemoryError: faiss ran out"]
    client = mlflow.MlflowClient(f"sqlite:///{recflow_home / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("recflow/synthetic-smoke")
    runs = {r.data.tags.get("model", "parent"): r for r in client.search_runs([experiment.experiment_id])}
    assert runs["parent"].info.status == "FAILED"
    mf = runs["mf"]
    assert (mf.info.status, mf.data.tags["error"]) == ("FAILED", "index: MemoryError: faiss ran out")
    assert "recall_at_10" in mf.data.metrics
    row = next(r for r in json.loads(_latest_artifact("recflow-synthetic-smoke-metrics")) if r["model"] == "mf")
    assert row["status"] == "index failed" and row["recall_at_10"] == pytest.approx(mf.data.metrics["recall_at_10"], abs=1e-6)
