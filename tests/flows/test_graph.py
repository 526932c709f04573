"""The run as the Prefect UI draws it: every task a node of its own; a failed upstream's dependants NotRun under their own names."""

from __future__ import annotations

import pytest

from flows.pipeline import run_pipeline
from recflow.models.bias import BiasRecommender
from recflow.runtime.outcomes import PipelineFailed

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SMOKE = "configs/smoke.yaml"
WITH_INDEX = "models=[{name: popular}, {name: bias}, {name: mf, epochs: 2, factors: 4}]"


def latest_flow_run():
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]


def graph(flow_run_id) -> dict:
    """What the UI's run graph reads: ``GET /flow_runs/<id>/graph-v2``."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        response = client._client.get(f"/flow_runs/{flow_run_id}/graph-v2")
        response.raise_for_status()
        return response.json()


def task_state_names(flow_run_id) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {str(r.id): r.state.name for r in runs}


def test_every_task_is_a_node_of_its_own_in_the_run_graph(recflow_home):
    run_pipeline(SMOKE, [WITH_INDEX], root=recflow_home)
    nodes = graph(latest_flow_run().id)["nodes"]
    names = sorted(node["label"] for _, node in nodes)
    encapsulated = {node["label"]: node["encapsulating"] for _, node in nodes if node["encapsulating"]}
    assert encapsulated == {}  # no task of ours runs inside another
    assert names == sorted(
        [
            "locate[synthetic-smoke]",
            "ingest[synthetic-smoke]",
            "split[user_random]",
            "features",
            *[f"{stage}[{m}]" for m in ("popular", "bias", "mf") for stage in ("train", "evaluate")],
            "index[mf]",
            "track[mlflow]",
            "report",
            "catalogue",
            "champion",
            "export[top-100]",
        ]
    )


def test_the_flow_run_is_tagged_with_its_dataset_and_preset(recflow_home):
    run_pipeline(SMOKE, root=recflow_home)
    assert sorted(latest_flow_run().tags) == ["dataset:synthetic-smoke", "preset:smoke"]


def test_a_failed_train_marks_its_dependants_not_run_under_their_names_and_the_run_ends(recflow_home, monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(BiasRecommender, "fit", broken)
    with pytest.raises(PipelineFailed):
        run_pipeline(SMOKE, root=recflow_home)
    run = latest_flow_run()
    states = {node["label"]: (node["state_type"], task_state_names(run.id)[node["id"]]) for _, node in graph(run.id)["nodes"]}
    assert states["train[bias]"] == ("FAILED", "Failed")
    assert states["evaluate[bias]"] == ("CANCELLED", "NotRun")
    assert states["evaluate[popular]"] == ("COMPLETED", "Completed")
    assert all(kind in ("COMPLETED", "FAILED", "CANCELLED") for kind, _ in states.values())  # nothing Pending forever
    assert run.state.is_final()
