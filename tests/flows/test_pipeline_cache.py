"""The pipeline's caching contract, end to end on the smoke config (tiny synthetic data)."""

from __future__ import annotations

import shutil

import mlflow
import pytest

from flows.pipeline import run_pipeline
from recflow.runtime.outcomes import PipelineFailed

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SMOKE = "configs/smoke.yaml"
N_TASKS = 3 + 2 * 2  # ingest, split, features + train/evaluate for popular and bias


def test_first_run_executes_every_task(recflow_home):
    result = run_pipeline(SMOKE, root=recflow_home)
    assert result["tasks"] == {"ran": N_TASKS, "cached": 0}


def test_unchanged_rerun_executes_no_task(recflow_home):
    first = run_pipeline(SMOKE, root=recflow_home)
    second = run_pipeline(SMOKE, root=recflow_home)
    assert second["tasks"] == {"ran": 0, "cached": N_TASKS}
    assert second["metrics"] == first["metrics"]


def test_changing_one_model_parameter_reruns_only_that_model(recflow_home):
    run_pipeline(SMOKE, root=recflow_home)
    result = run_pipeline(SMOKE, ["models.bias.reg_user=3.0"], root=recflow_home)
    assert result["tasks"] == {"ran": 2, "cached": N_TASKS - 2}


def test_changing_the_samples_reruns_their_readers_not_the_models_that_read_none(recflow_home):
    models = "models=[{name: popular}, {name: item2vec, epochs: 1}]"
    run_pipeline(SMOKE, [models], root=recflow_home)
    result = run_pipeline(SMOKE, [models, "models.item2vec.min_rating=3.0"], root=recflow_home)
    # sampling and train/evaluate/index[item2vec] rerun; ingest, split, features, train/evaluate[popular] cached
    assert result["tasks"] == {"ran": 4, "cached": 5}


def test_damaged_artifact_is_rebuilt_not_trusted(recflow_home):
    run_pipeline(SMOKE, root=recflow_home)
    split_dir = next((recflow_home / "split").iterdir())
    (split_dir / "split.parquet").write_bytes(b"corrupt")
    result = run_pipeline(SMOKE, root=recflow_home)
    assert result["tasks"]["ran"] == 1  # split rebuilt; same content, so its consumers stay cached
    assert (split_dir / "split.parquet").read_bytes() != b"corrupt"


def test_deleted_stage_folder_is_rebuilt(recflow_home):
    run_pipeline(SMOKE, root=recflow_home)
    shutil.rmtree(recflow_home / "features")
    result = run_pipeline(SMOKE, root=recflow_home)
    assert result["tasks"]["ran"] >= 1
    assert any((recflow_home / "features").iterdir())


def test_mlflow_holds_parent_and_nested_model_runs(recflow_home):
    result = run_pipeline(SMOKE, root=recflow_home)
    tracking = result["tracking"]
    mlflow.set_tracking_uri(tracking["tracking_uri"])
    parent = mlflow.get_run(tracking["run_id"])
    assert parent.data.params["split.protocol"] == "user_random"
    assert parent.data.metrics["rows_rejected"] == 0
    children = mlflow.search_runs(
        experiment_ids=[tracking["experiment_id"]],
        filter_string=f"tags.mlflow.parentRunId = '{tracking['run_id']}'",
        output_format="list",
    )
    by_model = {run.data.tags["model"]: run for run in children}
    assert set(by_model) == {"popular", "bias"}
    assert by_model["bias"].data.tags["protocol"] == "user_random"
    for metric in ("recall_at_10", "ndcg_at_10", "precision_at_10", "map_at_10", "hit_rate_at_10", "coverage_at_10", "recall_at_5"):
        assert metric in by_model["popular"].data.metrics
    assert {"rmse", "mae"} <= set(by_model["bias"].data.metrics)


def test_keras_models_land_in_mlflow_as_keras_models(recflow_home):
    pytest.importorskip("tensorflow")
    tiny = "models=[{name: two_tower, dim: 4, hidden: [8], epochs: 1, batch_size: 256, jit_compile: false}]"
    tracking = run_pipeline(SMOKE, [tiny], root=recflow_home)["tracking"]
    mlflow.set_tracking_uri(tracking["tracking_uri"])
    run_id = tracking["model_runs"]["two_tower"]
    keras_model = mlflow.tensorflow.load_model(f"runs:/{run_id}/keras_model")
    assert [t.name for t in keras_model.inputs] == ["user_idx", "item_idx"]
    assert {"epoch_examples_per_second", "fit_seconds"} <= set(mlflow.get_run(run_id).data.metrics)


ENSEMBLE = "models=[{name: popular}, {name: bias}, {name: rank_fusion, members: [popular, bias], weights: [1, 2]}]"


def test_an_ensemble_trains_from_its_members_cached_fits_and_is_evaluated_like_any_model(recflow_home):
    result = run_pipeline(SMOKE, [ENSEMBLE], root=recflow_home)
    assert result["tasks"] == {"ran": N_TASKS + 2, "cached": 0}  # + train/evaluate[rank_fusion]
    assert result["training"]["rank_fusion"]["members"] == ["bias", "popular"]
    assert 0 < result["metrics"]["rank_fusion"]["recall_at_10"] <= 1


def test_a_member_that_retrains_retrains_its_ensemble_and_nothing_else(recflow_home):
    run_pipeline(SMOKE, [ENSEMBLE], root=recflow_home)
    result = run_pipeline(SMOKE, [ENSEMBLE, "models.bias.reg_user=3.0"], root=recflow_home)
    # train/evaluate[bias] and train/evaluate[rank_fusion] rerun; popular's and the data stages are cached
    assert result["tasks"] == {"ran": 4, "cached": N_TASKS + 2 - 4}


def test_an_ensemble_whose_member_fails_is_reported_not_silently_missing(recflow_home, monkeypatch):
    from recflow.models.item_knn import ItemKNNRecommender

    def fails(self, train, context=None):  # a member that fails while it trains (bad params are config errors at load)
        raise ValueError("the member failed while fitting")

    monkeypatch.setattr(ItemKNNRecommender, "fit", fails)
    models = "models=[{name: popular}, {name: item_knn}, {name: rank_fusion, members: [popular, item_knn]}]"
    with pytest.raises(PipelineFailed) as failed:
        run_pipeline(SMOKE, [models], root=recflow_home)
    lines = failed.value.lines()
    assert lines[0] == "train[item_knn] failed: ValueError: the member failed while fitting"
    assert lines[1] == "train[rank_fusion] failed: not run: its members ['item_knn'] did not train, so there was nothing to fuse"
