"""``recflow replay`` over the bundled ml-latest-small: three nights (its last three months) through the pipeline."""

from __future__ import annotations

import json

import pytest

from recflow.experiments.replay import table_lines
from tests.flows.replaying import replays

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

MODELS = "models=[{name: popular}, {name: mf, factors: 8, epochs: 4}, {name: bpr, factors: 8, epochs: 4}]"
FAST = [MODELS, "evaluation.ks=[10]", "evaluation.bootstrap_samples=200", "serving.register_model=false", "index.kinds=[flat]"]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    (first, again), runs, home = replays(tmp_path_factory, FAST, 3, 2)  # then the last two nights again
    return first, again, runs, home


def test_each_night_appends_its_month_and_tests_on_it(replayed):
    first, _, _, _ = replayed
    assert [r.night for r in first] == ["date=2018-07-01", "date=2018-08-01", "date=2018-09-01"]
    assert [r.new_interactions for r in first] == [293, 831, 604]  # the month's ratings
    assert all(r.error is None and r.value is not None and r.ci_low <= r.value <= r.ci_high for r in first)
    assert all(r.new_users is not None and r.new_items is not None for r in first)


def test_the_first_night_fits_cold_and_the_next_continue_from_the_night_before(replayed):
    first, _, _, _ = replayed
    assert first[0].warm_started == []
    assert first[1].warm_started == first[2].warm_started == ["bpr", "mf"]  # popular does not warm-start
    assert first[1].warm_epochs["mf"] == 2 and first[1].warm_epochs["bpr"] == 3  # warm_min_epochs: the new month is < 1% of train


def test_replaying_the_same_nights_again_reproduces_every_model_from_the_cache(replayed):
    first, again, _, _ = replayed
    assert [r.night for r in again] == [r.night for r in first[1:]]
    assert [r.ran for r in again] == [0, 0]  # the same warm starts, so the same cache keys
    assert [r.model_metrics for r in again] == [r.model_metrics for r in first[1:]]


def test_each_night_is_an_mlflow_run_tagged_with_its_night_and_warm_models_name_their_start(replayed):
    _, _, runs, _ = replayed
    parents = [r for r in runs if r.data.tags.get("recflow.kind") == "pipeline"]
    assert sorted({r.data.tags["recflow.night"] for r in parents}) == ["2018-07-01", "2018-08-01", "2018-09-01"]
    assert {r.data.tags["recflow.night"]: r.data.metrics["n_new_interactions"] for r in parents} == {"2018-07-01": 293, "2018-08-01": 831, "2018-09-01": 604}
    warm = [r for r in runs if r.data.tags.get("model") == "mf" and "recflow.warm_start_from" in r.data.tags]
    assert len(warm) == 4 and all(r.data.tags["recflow.warm_start_from"].startswith("train/") for r in warm)  # nights 2 and 3, each replayed twice
    replay_runs = [r for r in runs if r.data.tags.get("recflow.kind") == "replay"]
    assert len(replay_runs) == 2


def test_a_warm_started_models_index_continues_the_one_built_over_the_fit_it_continued(replayed):
    _, _, _, home = replayed
    summaries = [json.loads(p.read_text()) for p in sorted((home / "index").glob("*/summary.json"))]
    continued = sorted((s["model"], s["spaces"][s["primary"]]["continued"]["added"] >= 0) for s in summaries if s.get("continued_from"))
    assert continued == [("bpr", True), ("bpr", True), ("mf", True), ("mf", True)]  # nights 2 and 3; night 1 fit cold, so its indexes were built
    assert all((home / s["continued_from"] / "summary.json").is_file() for s in summaries if s.get("continued_from"))
    assert sorted(s["model"] for s in summaries if not s.get("continued_from")) == ["bpr", "mf"]


def test_the_table_has_a_row_per_night():
    from recflow.experiments.replay import NightRow

    rows = [
        NightRow("date=2018-07-01", 293, 4, 20, 9, 0, 12.5, "mf", "recall_at_10", 0.05, 0.03, 0.07, "moved v1", ["mf"]),
        NightRow("date=2018-08-01", error="x"),
    ]
    lines = table_lines(rows)
    assert len(lines) == 4 and "date=2018-07-01" in lines[2] and "mf 0.0500 ±0.0200" in lines[2] and lines[2].endswith("mf")
    assert lines[3] == "date=2018-08-01   failed: x"
