"""The MLflow parent run's link back to Prefect: set only when there is a UI to link to, never ``None/...``."""

from __future__ import annotations

import pytest

from tasks.reporting import tag_mlflow_run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the module (creating a sqlite store takes seconds)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('links') / 'mlflow.db'}"
    client = MlflowClient(uri)
    return client, uri, client.create_experiment("links")


@pytest.fixture
def parent_run(store):
    client, uri, experiment_id = store
    return client, {"tracking_uri": uri, "run_id": client.create_run(experiment_id).info.run_id}


def _tags(client, tracking) -> dict[str, str]:
    return {k: v for k, v in client.get_run(tracking["run_id"]).data.tags.items() if k.startswith("prefect.")}


def test_a_run_without_a_prefect_ui_gets_no_url_tag(parent_run, monkeypatch):
    monkeypatch.delenv("RECFLOW_PREFECT_SERVER", raising=False)
    client, tracking = parent_run
    tag_mlflow_run(tracking, "brave-fox", "f00", "None/flow-runs/flow-run/f00")  # Prefect's ui_url without PREFECT_UI_URL
    assert _tags(client, tracking) == {"prefect.flow_run_id": "f00", "prefect.flow_run_name": "brave-fox"}


def test_a_run_on_an_embedded_server_gets_no_url_tag(parent_run, monkeypatch):
    monkeypatch.setenv("RECFLOW_PREFECT_SERVER", "embedded")  # its address dies with the run
    client, tracking = parent_run
    tag_mlflow_run(tracking, "brave-fox", "f00", "http://127.0.0.1:8123/flow-runs/flow-run/f00")
    assert "prefect.flow_run_url" not in _tags(client, tracking)


def test_a_run_on_a_prefect_server_with_a_ui_links_to_its_flow_run(parent_run, monkeypatch):
    monkeypatch.setenv("RECFLOW_PREFECT_SERVER", "ui")
    client, tracking = parent_run
    tag_mlflow_run(tracking, "brave-fox", "f00", "http://127.0.0.1:4200/flow-runs/flow-run/f00")
    assert _tags(client, tracking)["prefect.flow_run_url"] == "http://127.0.0.1:4200/flow-runs/flow-run/f00"
