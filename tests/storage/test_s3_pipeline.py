"""The smoke preset on an ``s3://`` artifacts root, against a loopback S3 server (moto's server mode).

One cold run is shared by the module; each test then operates on the bucket or the local mirror
(a rerun, a wiped mirror, a lost manifest, a truncated object) and checks what the run did.
"""

from __future__ import annotations

import json
import os
import shutil

import mlflow
import pytest

from flows.pipeline import run_pipeline
from recflow.runtime import storage
from recflow.runtime.store import MANIFEST, artifacts_root, verify_stage_dir

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SMOKE = "configs/smoke.yaml"
N_TASKS = 3 + 2 * 2  # ingest, split, features + train/evaluate for popular and bias
STAGES = ("ingest", "split", "features", "train", "evaluate")


@pytest.fixture(scope="module")
def first_run(s3, tmp_path_factory):
    log_file = tmp_path_factory.mktemp("logs") / "first.log"
    result = run_pipeline(SMOKE, log_file=log_file)
    return result, log_file


def bucket_stage_folders(s3: storage.RemoteRoot) -> dict[str, set[str]]:
    """``<stage>/<key>`` -> the object names under it, for every stage folder in the bucket."""
    out: dict[str, set[str]] = {}
    for path in s3.fs.find(s3.path()):
        parts = path[len(s3.path()) + 1 :].split("/")
        if parts[0] in STAGES and len(parts) >= 3:
            out.setdefault(f"{parts[0]}/{parts[1]}", set()).add("/".join(parts[2:]))
    return out


def test_every_stage_folder_is_in_the_bucket_with_its_manifest(s3, first_run):
    result, _ = first_run
    assert result["tasks"] == {"ran": N_TASKS, "cached": 0}
    in_bucket = bucket_stage_folders(s3)
    assert {folder.split("/")[0] for folder in in_bucket} == set(STAGES)
    assert len(in_bucket) == N_TASKS
    for folder, names in in_bucket.items():
        manifest = json.loads(s3.fs.cat_file(s3.path(f"{folder}/{MANIFEST}")))
        assert names == {MANIFEST, *manifest["files"]}, folder
    assert s3.fs.find(s3.path(".prefect/results")), "Prefect's cache records are in the bucket"
    experiment = mlflow.MlflowClient(result["tracking"]["tracking_uri"]).get_experiment(result["tracking"]["experiment_id"])
    assert experiment.artifact_location == f"{s3.url}/mlruns"
    assert s3.fs.find(s3.path("mlruns")), "MLflow's run artifacts are in the bucket"


def test_no_secret_reaches_the_run_log_or_mlflow(s3, first_run):
    result, log_file = first_run
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert secret not in log_file.read_text()
    client = mlflow.MlflowClient(result["tracking"]["tracking_uri"])
    for run_id in [result["tracking"]["run_id"], *result["tracking"]["model_runs"].values()]:
        data = client.get_run(run_id).data
        assert secret not in json.dumps([data.params, data.tags])


def test_an_unchanged_rerun_and_one_from_a_wiped_mirror_execute_no_task(s3, first_run):
    assert run_pipeline(SMOKE)["tasks"] == {"ran": 0, "cached": N_TASKS}

    shutil.rmtree(artifacts_root())  # a fresh machine: everything comes back from the bucket
    again = run_pipeline(SMOKE)

    assert again["tasks"] == {"ran": 0, "cached": N_TASKS}
    assert again["metrics"] == first_run[0]["metrics"]
    assert any((artifacts_root() / "train").iterdir())


def test_a_folder_without_manifest_or_with_a_truncated_object_is_rebuilt(s3, first_run):
    folders = bucket_stage_folders(s3)
    ingest = next(f for f in folders if f.startswith("ingest/"))
    split = next(f for f in folders if f.startswith("split/"))
    s3.fs.rm_file(s3.path(f"{ingest}/{MANIFEST}"))  # objects there, manifest lost
    truncated = s3.path(f"{split}/split.parquet")
    s3.fs.pipe_file(truncated, s3.fs.cat_file(truncated)[:-1])
    shutil.rmtree(artifacts_root())

    result = run_pipeline(SMOKE)

    # ingest and split rebuilt, with the same content, so everything downstream stays cached
    assert result["tasks"] == {"ran": 2, "cached": N_TASKS - 2}
    assert result["metrics"] == first_run[0]["metrics"]
    shutil.rmtree(artifacts_root())
    assert verify_stage_dir(artifacts_root() / ingest) is not None  # the bucket's copies verify again
    assert verify_stage_dir(artifacts_root() / split) is not None
