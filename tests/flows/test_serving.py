"""Index stage, run records, the packaged champion and the retrieval commands, end to end on smoke data.

One pipeline run (popular, mf, item2vec on configs/smoke.yaml) is shared by the module's tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from flows.pipeline import run_pipeline
from recflow.cli.main import app
from recflow.experiments.serving.champion import register_champion
from recflow.experiments.serving.records import ALIAS, runs_dir

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SMOKE = "configs/smoke.yaml"
MODELS = ["models=[{name: popular}, {name: mf}, {name: item2vec}]"]
NAME = "recflow-synthetic-smoke"
N_TASKS = 4 + 3 * 2 + 2  # ingest, split, features, sampling; train + evaluate x 3; index for mf and item2vec
runner = CliRunner()


@pytest.fixture(scope="module")
def served(tmp_path_factory, prefect_harness):
    home = tmp_path_factory.mktemp("serving") / "artifacts"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECFLOW_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        mp.chdir(Path(__file__).resolve().parents[2])
        result = run_pipeline(SMOKE, MODELS, root=home)
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        yield home, result


def cli(*args: str):
    return runner.invoke(app, list(args))


def table(output: str) -> list[tuple[int, float, str]]:
    """(item_id, score, title) rows of a recommend / similar table."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("rank")) + 1
    rows = []
    for line in lines[start:]:
        rank, score, item, title = line.split(maxsplit=3)
        rows.append((int(item), float(score), title))
    return rows


def test_models_with_embeddings_get_an_index_task(served):
    _, result = served
    assert result["tasks"] == {"ran": N_TASKS, "cached": 0}


def test_the_parent_run_carries_each_models_headline_metric(served):
    _, result = served
    parent = MlflowClient().get_run(result["tracking"]["run_id"])
    headline = {k: v for k, v in parent.data.metrics.items() if k.startswith("recall_at_10/")}
    assert headline == {f"recall_at_10/{name}": metrics["recall_at_10"] for name, metrics in result["metrics"].items()}


def test_index_metrics_plot_and_choice_are_on_the_model_run(served):
    _, result = served
    client = MlflowClient()
    for model in ("mf", "item2vec"):
        run = client.get_run(result["tracking"]["model_runs"][model])
        metrics = run.data.metrics
        assert metrics["index_recall_k10"] == 1.0  # 150 items: exact search is served
        assert metrics["index_qps"] > 0 and 0 < metrics["index_p50_ms"] <= metrics["index_p99_ms"] and metrics["index_bytes"] > 0
        for kind in ("flat", "hnsw", "hnswlib"):
            assert metrics[f"index/items/{kind}/recall_k10"] >= 0.99
        assert "index/items/ivf_pq/recall_k10" not in metrics  # skipped: too few vectors to train
        # a chart search for the model metric finds it, not the index's: no index metric contains its name
        named = sorted(k for k in metrics if "recall_at_10" in k)
        assert named == ["champion_metric/recall_at_10", "recall_at_10", "recall_at_10_ci_high", "recall_at_10_ci_low"]
        assert run.data.params["index.kind"] == "flat"
        assert re.match(r"exact: 1[45]\d vectors < index.exact_below=20000", run.data.tags["index.items.reason"])
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "index/items")}
        assert {"index/items/recall_qps.png", "index/items/tuning.json"} <= artifacts


def test_similar_is_served_by_the_model_whose_neighbours_share_most_genres(served):
    home, result = served
    client = MlflowClient()
    overlap = {}
    for model in ("mf", "item2vec"):
        metrics = client.get_run(result["tracking"]["model_runs"][model]).data.metrics
        overlap[model] = metrics["genre_overlap_at_10"]
        assert 0 <= metrics["genre_jaccard_at_10"] <= overlap[model] <= 1
        assert metrics["index/items/genre_overlap_at_10"] == overlap[model]
    record = json.loads((runs_dir(home) / f"{result['tracking']['run_id']}.json").read_text())
    assert record["similar"] == max(overlap, key=overlap.get)
    assert result["serving"]["champion"]["similar_genre_overlap"] == pytest.approx(max(overlap.values()))


def test_indexes_are_saved_natively_with_a_parquet_row_map(served):
    home, _ = served
    folders = list((home / "index").iterdir())
    assert len(folders) == 2
    for folder in folders:
        files = {p.name for p in (folder / "spaces" / "items").iterdir()}
        assert {"flat.faiss", "hnsw.faiss", "hnswlib.bin", "rows.parquet", "vectors.npy"} <= files
        assert not [p for p in folder.rglob("*") if p.suffix in (".pkl", ".pickle", ".joblib")]
        rows = pd.read_parquet(folder / "spaces" / "items" / "rows.parquet")
        assert rows["row"].tolist() == list(range(len(rows))) and rows["id"].is_monotonic_increasing


def test_the_champion_is_the_best_model_of_the_run_by_recall(served):
    _, result = served
    recall = {name: m["recall_at_10"] for name, m in result["metrics"].items()}
    best = max(recall, key=recall.get)
    champion = MlflowClient().get_model_version_by_alias(NAME, ALIAS)
    assert champion.tags["model"] == best
    assert champion.run_id == result["tracking"]["model_runs"][best]
    assert result["serving"]["champion"]["moved"] is True


def test_the_registered_champion_answers_like_the_cli(served):
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@{ALIAS}")
    assert model.metadata.signature.params.to_dict()[0]["name"] == "k"
    for user in (1, 2):
        packaged = model.predict(pd.DataFrame({"user_id": [user]}), params={"k": 5})
        shown = cli("recommend", "--user", str(user), "-k", "5")
        assert shown.exit_code == 0, shown.output
        assert [(r[0], round(r[1], 4)) for r in table(shown.output)] == list(zip(packaged["item_id"], packaged["score"].round(4)))
    packaged = model.predict(pd.DataFrame({"title": ["synthetic movie 12"]}), params={"k": 10})
    shown = cli("similar", "--title", "synthetic movie 12")
    assert shown.exit_code == 0, shown.output
    assert [r[0] for r in table(shown.output)] == packaged["item_id"].tolist()
    assert len(packaged) == 10 and set(packaged["query"]) == {"Synthetic Movie 12 (2009)"}


RECOMMEND_IMPORTS = """
import json, sys
from recflow.cli.main import app
from recflow.models import ENTRIES
sys.argv, code = ["recflow", "recommend", "--user", "1", "-k", "3"], None
try:
    app()
except SystemExit as exc:
    code = exc.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "prefect", "mlflow", "pandas", "gensim", "sklearn"})
models = sorted(name for name, (module, _, _) in ENTRIES.items() if f"recflow.models.{module}" in sys.modules)
print(json.dumps({"code": code, "heavy": heavy, "models": models}))
"""


def test_the_recommend_command_imports_only_the_champions_model_and_no_heavy_library(served):
    """What keeps ``recflow recommend`` near a second: no TensorFlow, Prefect, MLflow or pandas, one model module (``bench/recommend.py`` times it)."""
    home, result = served
    env = {**os.environ, "RECFLOW_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", RECOMMEND_IMPORTS], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.splitlines()[-1])
    assert got == {"code": 0, "heavy": [], "models": [result["serving"]["champion"]["model"]]}


def test_a_nonsense_title_exits_non_zero_listing_the_closest_titles(served):
    shown = cli("similar", "--title", "qqqq zzzz xxxx")
    assert shown.exit_code == 1
    assert "no title matches 'qqqq zzzz xxxx'; closest titles: Synthetic Movie" in shown.output


def test_an_unknown_user_is_refused_unless_the_popular_fallback_is_asked_for(served):
    refused = cli("recommend", "--user", "999999")
    assert refused.exit_code == 1
    assert "user 999999 is unknown" in refused.output and "--fallback popular" in refused.output
    answered = cli("recommend", "--user", "999999", "--fallback", "popular")
    assert answered.exit_code == 0 and len(table(answered.output)) == 10
    assert "popularity fallback" in answered.output


def test_a_named_model_run_serves_that_model(served):
    _, result = served
    shown = cli("recommend", "--user", "1", "--run", result["tracking"]["model_runs"]["mf"], "-k", "3")
    assert shown.exit_code == 0, shown.output
    assert "[mf, exact dot product; run " in shown.output and len(table(shown.output)) == 3
    unknown = cli("recommend", "--user", "1", "--run", "no-such-run")
    assert unknown.exit_code == 1 and "no pipeline or model run 'no-such-run'" in unknown.output


def test_the_evaluate_stage_keeps_each_users_values_and_mlflow_their_interval(served):
    home, result = served
    record = json.loads((runs_dir(home) / f"{result['tracking']['run_id']}.json").read_text())
    for entry in record["models"].values():
        metrics = entry["metrics"]
        per_user = pd.read_parquet(home / entry["per_user"])
        assert len(per_user) == metrics["n_eval_users"]
        assert per_user["recall_at_10"].mean() == metrics["recall_at_10"]
        assert metrics["recall_at_10_ci_low"] <= metrics["recall_at_10"] <= metrics["recall_at_10_ci_high"]
        logged = MlflowClient().get_run(entry["run_id"]).data.metrics
        assert {k: logged[k] for k in ("recall_at_10_ci_low", "recall_at_10_ci_high", "n_eval_users", "n_test_users")} == {
            k: float(metrics[k]) for k in ("recall_at_10_ci_low", "recall_at_10_ci_high", "n_eval_users", "n_test_users")
        }


def _per_user(home: Path, record: dict, model: str, values, name: str) -> None:
    """Give ``model`` of ``record`` hand-made per-user recall_at_10 values for the run's evaluated
    users (a file under the artifacts root)."""
    path = home / "test-per-user" / f"{name}.parquet"
    path.parent.mkdir(exist_ok=True)
    users = pd.read_parquet(home / next(e["per_user"] for e in record["models"].values() if e["per_user"]))["user_id"]
    pd.DataFrame({"user_id": users, "recall_at_10": values}).to_parquet(path)
    record["models"][model]["per_user"] = str(path.relative_to(home))


def test_the_alias_moves_only_to_a_model_significantly_better_than_the_champion(served):
    home, result = served
    record = json.loads((runs_dir(home) / f"{result['tracking']['run_id']}.json").read_text())
    record["registered_model"] = "recflow-alias-test"  # a registry entry of its own
    best = record["best"]
    value = record["models"][best]["metrics"]["recall_at_10"]
    champion_values = pd.read_parquet(home / record["models"][best]["per_user"])["recall_at_10"].to_numpy()
    n = len(champion_values)
    other = next(name for name in record["models"] if name != best)
    try:
        first = register_champion(record, home)
        assert (first["moved"], first["version"], first["reason"]) == (True, 1, "first champion")
        version = MlflowClient().get_model_version_by_alias("recflow-alias-test", ALIAS)
        assert version.tags["per_user"] == record["models"][best]["per_user"]  # findable by the next run
        # a higher mean made of noise: +0.2 / -0.2 per user, a hair more on one
        noise = np.where(np.arange(n) % 2 == 0, 0.2, -0.2) if n % 2 == 0 else np.r_[np.where(np.arange(n - 1) % 2 == 0, 0.2, -0.2), 0.0]
        noise[0] += 0.001
        record["best"] = other
        record["models"][other]["metrics"]["recall_at_10"] = value + 0.001 / n
        _per_user(home, record, other, champion_values + noise, "noisy")
        noisy = register_champion(record, home)
        assert (noisy["moved"], noisy["version"], noisy["champion_version"]) == (False, 2, 1)
        assert noisy["reason"].startswith("not significantly better than champion v1 (recall_at_10 ")
        assert f"paired bootstrap over {n} users" in noisy["reason"] and ", p 0." in noisy["reason"]
        # the same bundle again (a cached rerun of a run that did not win): no new version, no new logged model
        logged_models = len(list((home / "mlruns" / "models").iterdir()))
        repeat = register_champion(record, home)
        assert (repeat["moved"], repeat["version"], repeat["reused_version"], repeat["champion_version"]) == (False, 2, 2, 1)
        assert len(list((home / "mlruns" / "models").iterdir())) == logged_models
        # clearly better for every user
        record["models"][other]["metrics"]["recall_at_10"] = value + 0.1
        _per_user(home, record, other, champion_values + 0.1, "better")
        better = register_champion(record, home)
        assert (better["moved"], better["version"], better["champion_version"]) == (True, 3, 3)
        assert "beats champion v1" in better["reason"] and "delta +0.1000, p 0.0001 < 0.05" in better["reason"]
        assert MlflowClient().get_model_version_by_alias("recflow-alias-test", ALIAS).tags["model"] == other
        # the first model again (another bundle), its per-user file gone: no test, the alias stays
        record["best"], real = best, record["models"][best]["per_user"]
        record["models"][best]["metrics"]["recall_at_10"] = value + 0.2
        record["models"][best]["per_user"] = "test-per-user/gone.parquet"
        gone = register_champion(record, home)
        assert (gone["moved"], gone["champion_version"]) == (False, 3)
        assert gone["reason"].startswith(
            f"cannot test: this run's per-user values are missing ({home / 'test-per-user/gone.parquet'}); the alias stays on champion v3"
        )
        # the champion's stage file gone: the copy logged to its model run still serves the test
        (home / "test-per-user" / "better.parquet").unlink()
        record["models"][best]["per_user"] = real
        again = register_champion(record, home)
        assert (again["moved"], again["champion_version"]) == (False, 3)
        assert again["reason"].startswith("not significantly better than champion v3") and "delta -0.1000" in again["reason"]
    finally:  # the CLI picks the only champion there is: leave just the smoke one
        (home / "serving" / "champions" / "recflow-alias-test.json").unlink(missing_ok=True)


def test_a_champion_without_per_user_values_keeps_the_alias(served):
    home, result = served
    record = json.loads((runs_dir(home) / f"{result['tracking']['run_id']}.json").read_text())
    record["registered_model"] = "recflow-untested"
    record["models"][record["best"]]["per_user"] = None
    try:
        assert register_champion(record, home)["moved"] is True  # as a version from before per-user files
        other = next(name for name in record["models"] if name != record["best"])
        record["models"][other]["metrics"]["recall_at_10"] = record["models"][record["best"]]["metrics"]["recall_at_10"] + 0.5
        record["best"] = other
        _per_user(home, record, other, 1.0, "all-hits")
        kept = register_champion(record, home)
        assert (kept["moved"], kept["champion_version"]) == (False, 1)
        assert kept["reason"].startswith("cannot test: champion v1 has no per-user values (registered before they were kept); the alias stays on champion v1")
    finally:
        (home / "serving" / "champions" / "recflow-untested.json").unlink(missing_ok=True)


def test_a_run_under_another_protocol_does_not_take_the_alias(served):
    home, result = served
    record = json.loads((runs_dir(home) / f"{result['tracking']['run_id']}.json").read_text())
    record["registered_model"] = "recflow-protocol-test"
    seed = record["protocol"]["split"]["seed"]
    try:
        assert register_champion(record, home)["moved"] is True
        value = record["models"][record["best"]]["metrics"]["recall_at_10"]
        record["best"] = next(name for name in record["models"] if name != record["best"])
        record["models"][record["best"]]["metrics"]["recall_at_10"] = value + 0.5  # "better", but on another split
        record["protocol"]["split"]["seed"] = seed + 1
        other = register_champion(record, home)
        assert (other["moved"], other["version"], other["champion_version"]) == (False, 2, 1)
        assert other["reason"].startswith(f"not compared: champion v1 was evaluated under another protocol (split.seed {seed} -> {seed + 1})")
    finally:
        (home / "serving" / "champions" / "recflow-protocol-test.json").unlink(missing_ok=True)


def test_the_run_exports_the_champions_top_k_per_user_as_the_cli_ranks(served):
    home, result = served
    exported = result["export"]
    assert exported.stage == "export" and (exported.meta["k"], exported.meta["partitions"]) == (100, 16)
    frame = pads.dataset(home / exported.path / "top_k", partitioning="hive").to_table().to_pandas()
    assert frame["user_id"].nunique() == exported.meta["users_with_rows"] and len(frame) == exported.meta["rows"]
    assert frame.groupby("user_id").size().max() == 100
    shown = cli("recommend", "--user", "1", "-k", "5")
    rows = frame[frame["user_id"] == 1].sort_values("rank").head(5)
    assert rows["item_id"].tolist() == [r[0] for r in table(shown.output)]


def test_an_unchanged_rerun_is_cached_and_registers_nothing_new(served):
    home, first = served
    versions = len(MlflowClient().search_model_versions(f"name='{NAME}'"))
    again = run_pipeline(SMOKE, MODELS, root=home)
    assert again["tasks"] == {"ran": 0, "cached": N_TASKS}
    assert again["export"] == first["export"]  # the champion's files are unchanged: the export is reused
    assert again["serving"]["champion"]["reason"].startswith("unchanged: champion v1 already serves this bundle")
    assert len(MlflowClient().search_model_versions(f"name='{NAME}'")) == versions
