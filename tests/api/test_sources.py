"""Where ``recflow api`` reads the champion alias: recflow's records, or the MLflow registry itself."""

from __future__ import annotations

import pytest

from recflow.api.sources import ChampionRecords, FixedRun, RegistryAlias
from recflow.experiments.serving.records import ServingNotFound


def test_the_records_source_follows_the_champion_file(tiny_root):
    pointer = ChampionRecords(tiny_root).current()
    assert (pointer.version, pointer.info["recommend_model"], pointer.info["served_from"]) == (1, "ease", "recflow-tiny@champion v1")
    assert pointer.sources["catalogue"] == tiny_root / "catalogue" / "run-a"


def test_a_fixed_run_does_not_move_and_names_its_model(tiny_root):
    source = FixedRun(tiny_root, "run-b", "mf")
    pointer = source.current()
    assert source.moves is False and (pointer.version, pointer.info["recommend_model"]) == (None, "mf")


def test_the_registry_source_reads_the_alias_and_serves_the_run_its_version_names(tiny_root, tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    client.create_registered_model("recflow-tiny")
    (tmp_path / "bundle").mkdir()
    for run_id, model in (("run-a", "ease"), ("run-b", "item_knn")):
        client.create_model_version("recflow-tiny", str(tmp_path / "bundle"), tags={"pipeline_run_id": run_id, "model": model})
    client.set_registered_model_alias("recflow-tiny", "champion", "2")  # moved by hand, as in the MLflow UI
    pointer = RegistryAlias(tiny_root, "tiny", tracking_uri=uri).current()
    assert (pointer.version, pointer.info["run_id"], pointer.info["recommend_model"]) == (2, "run-b", "item_knn")
    assert pointer.info["served_from"] == "recflow-tiny@champion v2 (registry)"
    client.delete_registered_model_alias("recflow-tiny", "champion")
    with pytest.raises(ServingNotFound, match="recflow-tiny has no 'champion' alias"):
        RegistryAlias(tiny_root, "tiny", tracking_uri=uri).current()
