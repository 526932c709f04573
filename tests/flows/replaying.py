"""``recflow replay`` runs for the replay tests: several replays into one fresh artifacts root, and its MLflow runs."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from flows.replay import replay


def replays(tmp_path_factory, overrides: list[str], *nights: int) -> tuple[list, list, Path]:
    """The default preset's last ``n`` months replayed, for each ``n`` of ``nights`` in turn, into one new root:
    (each replay's rows, every MLflow run of the replay's experiment, the root)."""
    home = tmp_path_factory.mktemp("artifacts")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECFLOW_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        results = [replay(["configs/default.yaml"], n, "month", root=home, overrides=overrides) for n in nights]
        client = mlflow.MlflowClient()
        runs = client.search_runs(client.get_experiment_by_name("recflow/ml-latest-small-replay-month").experiment_id)
    return results, runs, home
