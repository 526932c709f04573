"""``recflow ui``'s servers for a team: Prefect's server and MLflow's tracking server on a real PostgreSQL,
the MLflow artifacts proxied to the root's bucket (moto's S3 server), nothing kept in the root's mirror."""

from __future__ import annotations

import json
import urllib.request

import pytest

from recflow.runtime.servers import ProjectServers, redacted
from recflow.runtime.store import artifacts_root

pytestmark = pytest.mark.slow


def _rows(url: str, query: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchall()


def test_both_servers_keep_their_state_in_postgresql_and_mlflow_artifacts_in_the_bucket(s3, postgres_server, monkeypatch, tmp_path):
    import mlflow

    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)  # set for the server below; restored after the test
    prefect_db = postgres_server.create_database("team_prefect")
    mlflow_db = postgres_server.create_database("team_mlflow")
    root = artifacts_root()
    databases = {"prefect_database": postgres_server.url("asyncpg", "team_prefect"), "mlflow_database": postgres_server.url("psycopg", "team_mlflow")}
    with ProjectServers(root, prefect_port=0, mlflow_port=0, **databases) as servers:
        request = urllib.request.Request(
            f"{servers.urls['prefect_api_url']}/flows/", data=json.dumps({"name": "team-flow"}).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status in (200, 201)
        client = mlflow.MlflowClient(servers.mlflow.url)
        experiment_id = client.create_experiment("team")
        run = client.create_run(experiment_id)
        (tmp_path / "note.txt").write_text("shared")
        client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))

    assert _rows(prefect_db, "select name from flow") == [("team-flow",)]
    assert ("team",) in _rows(mlflow_db, "select name from experiments")
    in_bucket = [p for p in s3.fs.find(s3.path("mlruns")) if p.endswith("/note.txt")]
    assert len(in_bucket) == 1 and s3.fs.cat(in_bucket[0]) == b"shared"
    assert not (root / ".prefect" / "server.db").exists() and not (root / "mlflow.db").exists() and not (root / "mlruns").exists()


def test_a_database_password_is_never_printed():
    assert redacted("postgresql+asyncpg://team:hunter2@db:5432/prefect") == "postgresql+asyncpg://team:***@db:5432/prefect"
    assert redacted("postgresql://db/mlflow") == "postgresql://db/mlflow"
