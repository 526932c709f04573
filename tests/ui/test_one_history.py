"""One Prefect history: ``recflow run`` on a root whose ``recflow ui`` is running uses that server.

No ``PREFECT_API_URL`` in the run's environment: the run finds the server through ``<root>/.ui.json``
and its flow run shows in that dashboard, and the MLflow parent run links to it there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]


def test_a_run_without_prefect_api_url_shows_in_the_running_recflow_ui(live_servers, api):
    from mlflow import MlflowClient

    urls = live_servers.urls
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "PREFECT_UI", "MLFLOW_TRACKING"))}
    env.update(RECFLOW_HOME=urls["root"], RECFLOW_PROGRESS="0")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "recflow"), "run", "--config", "configs/smoke.yaml", "--set", "dataset.name=history-smoke"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    flow_run = next(
        r
        for r in api("/flow_runs/filter", {"sort": "START_TIME_DESC", "limit": 20})
        if "dataset:history-smoke" in r["tags"] or r["parameters"].get("overrides") == ["dataset.name=history-smoke"]
    )
    assert flow_run["state_type"] == "COMPLETED"
    client = MlflowClient(urls["mlflow_url"])
    experiment = client.get_experiment_by_name("recflow/history-smoke")
    parent = next(r for r in client.search_runs([experiment.experiment_id]) if "model" not in r.data.tags)
    assert parent.data.tags["prefect.flow_run_id"] == flow_run["id"]
    assert parent.data.tags["prefect.flow_run_url"] == f"{urls['prefect_url']}/flow-runs/flow-run/{flow_run['id']}"
