"""Operated over many runs: caches follow the code they run, and an unchanged rerun leaves the disk flat."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from flows.pipeline import run_pipeline
from recflow.cli.main import app
from recflow.experiments.gc import collect
from recflow.runtime.lineage import Lineage
from tasks import caching

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SMOKE = "configs/smoke.yaml"
REPO = Path(__file__).resolve().parents[2]


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def project_copy(dest: Path) -> Path:
    for package in ("recflow", "tasks", "flows"):
        shutil.copytree(REPO / package, dest / package, ignore=lambda d, names: [n for n in names if not (n.endswith(".py") or (Path(d) / n).is_dir())])
    return dest


def test_editing_embeddings_reruns_item2vec_and_keeps_popular_cached(recflow_home, tmp_path, monkeypatch):
    models = ["models=[{name: popular}, {name: item2vec, epochs: 1}]"]
    run_pipeline(SMOKE, models, root=recflow_home)
    copy = project_copy(tmp_path / "project")
    embeddings = copy / "recflow" / "models" / "embeddings.py"
    embeddings.write_text(embeddings.read_text() + "\n_EDITED = True\n")
    monkeypatch.setattr(caching, "LINEAGE", Lineage.from_root(copy))

    result = run_pipeline(SMOKE, models, root=recflow_home)

    # ingest, split, features, sampling, train/evaluate[popular] cached; train, evaluate, index[item2vec] rerun
    assert result["tasks"] == {"ran": 3, "cached": 6}


def test_unchanged_rerun_adds_under_a_megabyte_and_still_serves(recflow_home):
    # 600 items: EASE's dense item-item matrix is ~1.4 MB a copy, so logging it again would show
    models = ["dataset.synth.n_items=600", "models=[{name: popular}, {name: ease}, {name: item2vec, epochs: 1}]"]
    first = run_pipeline(SMOKE, models, root=recflow_home)
    before = tree_bytes(recflow_home)

    second = run_pipeline(SMOKE, models, root=recflow_home)

    grown = tree_bytes(recflow_home) - before
    assert second["tasks"]["ran"] == 0
    assert grown < 1_000_000, f"an unchanged rerun grew the root by {grown:,} bytes"
    client = mlflow.MlflowClient(second["tracking"]["tracking_uri"])
    for name, run_id in second["tracking"]["model_runs"].items():
        tags = client.get_run(run_id).data.tags
        assert tags["recflow.model_run_id"] == first["tracking"]["model_runs"][name]  # files stay with the first run
        assert client.list_artifacts(run_id, "model") == []
    answer = CliRunner().invoke(app, ["recommend", "--user", "1"])
    assert answer.exit_code == 0, answer.output
    assert "rank" in answer.output


def test_gc_frees_a_superseded_run_and_keeps_what_serving_and_the_newest_run_need(recflow_home):
    run_pipeline(SMOKE, root=recflow_home)  # popular wins: its bundle stays the champion throughout
    middle = run_pipeline(SMOKE, ["models.bias.reg_user=3.0"], root=recflow_home)
    run_pipeline(SMOKE, ["models.bias.reg_user=5.0"], root=recflow_home)

    freed = collect(recflow_home, keep_runs=1)

    client = mlflow.MlflowClient(middle["tracking"]["tracking_uri"])
    middle_bias = json.loads(client.get_run(middle["tracking"]["model_runs"]["bias"]).data.tags["recflow.stages"])
    stage_folders = {str(i.path.relative_to(recflow_home)) for i in freed.items if i.kind == "stage folder"}
    assert stage_folders == set(middle_bias)  # the middle run's bias train and evaluate, nothing else
    assert sorted(p.split("/")[0] for p in stage_folders) == ["evaluate", "train"]
    middle_runs = {middle["tracking"]["run_id"], *middle["tracking"]["model_runs"].values()}
    assert {i.path.parent.name for i in freed.items if i.kind == "run artifacts"} <= middle_runs
    assert run_pipeline(SMOKE, ["models.bias.reg_user=5.0"], root=recflow_home)["tasks"]["ran"] == 0
    answer = CliRunner().invoke(app, ["recommend", "--user", "1"])
    assert answer.exit_code == 0, answer.output
