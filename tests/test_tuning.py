"""``recflow tune``: declared search spaces, a validation split that never holds test rows, the overlay, the flow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from recflow.experiments import tuning
from recflow.experiments.config import ConfigError, load_config
from recflow.models import MODELS, build_model
from recflow.models.params import MODEL_PARAMS
from recflow.models.search_space import Choice, FloatRange, IntRange

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs" / "smoke.yaml"
TUNABLE = sorted(name for name, cls in MODELS.items() if cls.search_space)


# -- search spaces --------------------------------------------------------------------------------
def test_every_model_with_hyperparameters_declares_a_search_space():
    from recflow.models import MODELS

    assert set(MODELS) - {"popular", "rank_fusion"} == set(TUNABLE)
    assert "popular" not in TUNABLE  # nothing to tune
    assert "rank_fusion" not in TUNABLE  # a trial fits one model alone: an ensemble has no members to fuse there


@pytest.mark.parametrize("name", TUNABLE)
def test_a_declared_space_names_init_parameters_and_its_bounds_validate(name):
    space = tuning.search_space(name)
    base = MODEL_PARAMS[name]()
    for bound in ("low", "high"):
        values = {p: (d.options[0] if isinstance(d, Choice) else getattr(d, bound)) for p, d in space.items()}
        assert tuning.trial_params(base, values).model_dump() == {**base.model_dump(), **values}


def test_a_model_without_a_search_space_cannot_be_tuned():
    with pytest.raises(ValueError, match="'popular' declares no search_space.*tunable: \\[.*'bias'"):
        tuning.search_space("popular")


def test_a_space_naming_an_unknown_parameter_is_an_error(monkeypatch):
    monkeypatch.setattr(MODELS["bias"], "search_space", {"reg_usr": FloatRange(1, 2)})
    with pytest.raises(ValueError, match=r"names \['reg_usr'\], which are not parameters"):
        tuning.search_space("bias")


def test_suggest_asks_optuna_for_each_dimension_by_its_kind():
    space = {"f": FloatRange(0.1, 10, log=True), "n": IntRange(2, 8, step=2), "kind": Choice(("a", "b"))}
    trial = optuna.trial.FixedTrial({"f": 0.5, "n": 4, "kind": "b"})
    assert tuning.suggest(trial, space) == {"f": 0.5, "n": 4, "kind": "b"}


def test_the_baseline_is_the_configs_values_that_lie_in_the_space():
    space = {"reg": FloatRange(0.1, 10.0, log=True), "k": IntRange(5, 50), "kind": Choice(("a", "b")), "big": FloatRange(0.0, 1.0)}
    base = type("Base", (), {"reg": 0.5, "k": 100, "kind": "b", "big": 3.0})()
    assert tuning.baseline_values(base, space) == {"reg": 0.5, "kind": "b"}  # k and big lie outside: sampled


# -- the tuning split: train + valid, never test -----------------------------------------------------
def split_frame(rows: list[tuple[int, int, str]]) -> pd.DataFrame:
    users, items, parts = zip(*rows)
    n = len(rows)
    return pd.DataFrame({"user_id": users, "item_id": items, "rating": np.full(n, 4.0, np.float32), "timestamp": np.arange(n, dtype=np.int64), "split": parts})


def test_reading_the_split_file_for_tuning_leaves_out_the_test_rows(tmp_path):
    split_frame([(1, 1, "train"), (1, 2, "valid"), (1, 3, "test"), (2, 1, "test")]).to_parquet(tmp_path / "s.parquet")
    frame = tuning.read_tuning_frame(tmp_path / "s.parquet")
    assert frame[["user_id", "item_id", "split"]].values.tolist() == [[1, 1, "train"], [1, 2, "valid"]]


def test_a_preset_valid_part_is_kept_as_it_is():
    frame = split_frame([(1, 1, "train"), (1, 2, "valid"), (2, 1, "train")])
    pd.testing.assert_frame_equal(tuning.tuning_frame(frame, 0.5), frame)


def test_without_a_valid_part_one_is_carved_per_user_from_train():
    # user 1: 10 rows -> round(0.2 * 10) = 2 valid ; user 2: 3 rows -> round(0.6) = 1 ; user 3: 1 row -> 0
    rows = [(1, i, "train") for i in range(10)] + [(2, i, "train") for i in range(3)] + [(3, 0, "train")]
    carved = tuning.tuning_frame(split_frame(rows), valid_fraction=0.2, seed=0)
    assert carved.groupby("user_id")["split"].apply(lambda s: (s == "valid").sum()).to_dict() == {1: 2, 2: 1, 3: 0}
    pd.testing.assert_frame_equal(carved, tuning.tuning_frame(split_frame(rows), valid_fraction=0.2, seed=0))
    assert not carved.equals(tuning.tuning_frame(split_frame(rows), valid_fraction=0.2, seed=1))


def test_a_frame_with_test_rows_is_refused():
    with pytest.raises(ValueError, match="test rows"):
        tuning.tuning_frame(split_frame([(1, 1, "train"), (1, 2, "test")]))


def test_the_objective_is_the_same_whatever_the_test_rows_hold(tmp_path):
    """Test rows with other ratings, users and items change no trial's value: they never reach it."""
    rng = np.random.default_rng(0)
    rows = [(u, int(i), "train") for u in range(30) for i in rng.choice(20, 8, replace=False)]
    base = split_frame(rows)
    base["rating"] = rng.integers(1, 6, len(base)).astype(np.float32)
    values = []
    for test_rows in ([(0, 19, "test"), (1, 18, "test")], [(99, 77, "test"), (0, 55, "test"), (5, 3, "test")]):
        path = tmp_path / f"split{len(values)}.parquet"
        pd.concat([base, split_frame(test_rows)], ignore_index=True).to_parquet(path)
        parts = tuning.tuning_parts(tuning.tuning_frame(tuning.read_tuning_frame(path), 0.2, seed=0))
        for name, metric in (("bias", "rmse"), ("item_knn", "ndcg_at_5")):
            model = build_model(MODEL_PARAMS[name]()).fit(parts["train"])
            values.append(tuning.validation_metrics(model, parts, metric=metric, ks=[5]))
    assert values[:2] == values[2:]


# -- the overlay -----------------------------------------------------------------------------------
def test_the_overlay_changes_only_the_tuned_parameters_of_the_base_config(tmp_path):
    path = tuning.write_overlay(tmp_path / "o.yaml", "bias", {"reg_user": 2.5, "reg_item": np.float64(7.0)}, header="best")
    assert yaml.safe_load(path.read_text()) == {"models": [{"name": "bias", "reg_user": 2.5, "reg_item": 7.0}]}
    cfg = load_config([SMOKE, path])
    assert [m.name for m in cfg.models] == ["popular", "bias"]
    assert (cfg.model("bias").reg_user, cfg.model("bias").reg_item, cfg.model("bias").epochs) == (2.5, 7.0, 10)
    assert cfg.split == load_config(SMOKE).split


def test_an_overlay_for_a_model_the_base_lacks_adds_it(tmp_path):
    path = tuning.write_overlay(tmp_path / "o.yaml", "ease", {"l2": 120.0})
    assert [(m.name, getattr(m, "l2", None)) for m in load_config([SMOKE, path]).models] == [("popular", None), ("bias", None), ("ease", 120.0)]


def test_an_unknown_key_in_a_later_config_names_that_file(tmp_path):
    bad = tmp_path / "overlay.yaml"
    bad.write_text("models:\n  - name: bias\n    reg_usr: 3\n")
    with pytest.raises(ConfigError, match=r"overlay.yaml: invalid config\n  unknown key 'models.0.bias.reg_usr'"):
        load_config([SMOKE, bad])


def test_the_study_is_named_by_dataset_model_and_protocol_and_changes_with_it():
    cfg = load_config(SMOKE)
    name = tuning.study_name(cfg, "bias", "rmse", 0.1)
    assert name.startswith("synthetic-smoke/bias/user_random-")
    assert tuning.study_name(cfg, "bias", "rmse", 0.1) == name
    assert tuning.study_name(load_config(SMOKE, ["split.seed=7"]), "bias", "rmse", 0.1) != name
    assert tuning.study_name(cfg, "bias", "mae", 0.1) != name


# -- the flow ----------------------------------------------------------------------------------------
@pytest.fixture
def no_test_rows_read(monkeypatch):
    """Every parquet read in the process fails if it returns a row of the test split."""
    real = pd.read_parquet

    def guarded(*args, **kwargs):
        frame = real(*args, **kwargs)
        if "split" in frame.columns and (frame["split"].astype(str) == "test").any():
            raise AssertionError(f"test rows read from {args[0] if args else kwargs}")
        return frame

    monkeypatch.setattr(pd, "read_parquet", guarded)


def mlflow_runs(home: Path):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


@pytest.mark.slow  # operates a flow, a server or many threads: end-to-end
@pytest.mark.usefixtures("prefect_harness", "no_test_rows_read")
def test_tune_runs_three_trials_on_validation_writes_an_overlay_that_run_takes_and_resumes(recflow_home):
    from recflow.cli.main import app

    result = CliRunner().invoke(app, ["tune", "--config", "configs/smoke.yaml", "--model", "bias", "--trials", "3"])
    assert result.exit_code == 0, result.output
    assert "3 trials completed" in result.output and "best rmse (validation)" in result.output
    overlay = Path(result.output.split("overlay: ")[1].split()[0])
    assert overlay.parent == recflow_home / "tuning"
    tuned = yaml.safe_load(overlay.read_text())["models"]
    assert [sorted(m) for m in tuned] == [["name", "reg_item", "reg_user"]]
    cfg = load_config(["configs/smoke.yaml", str(overlay)])
    assert cfg.model("bias").reg_user == tuned[0]["reg_user"]

    study = optuna.load_study(study_name=result.output.split("study ")[1].split(":")[0], storage=f"sqlite:///{recflow_home / 'tuning' / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert study.trials[0].params == {"reg_user": 15.0, "reg_item": 10.0}  # the config's values first
    runs = mlflow_runs(recflow_home)
    parent = next(r for r in runs if r.info.run_name == "tune bias")
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_name for r in trials) == ["trial 0", "trial 1", "trial 2"]
    assert {r.data.params["reg_user"] for r in trials} == {str(t.params["reg_user"]) for t in study.trials}
    assert sorted(r.data.metrics["rmse"] for r in trials) == sorted(t.value for t in study.trials)

    study.ask()  # a trial a killed process left running
    again = CliRunner().invoke(app, ["tune", "--config", "configs/smoke.yaml", "--model", "bias", "--trials", "4"])
    assert again.exit_code == 0, again.output
    assert "4 trials completed" in again.output  # three resumed, one new, under the same parent run
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3 + ["FAIL", "COMPLETE"]
    assert len([r for r in mlflow_runs(recflow_home) if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]) == 4


def test_tune_refuses_a_model_without_a_search_space():
    from recflow.cli.main import app

    result = CliRunner().invoke(app, ["tune", "--config", str(SMOKE), "--model", "popular", "--trials", "1"])
    assert result.exit_code == 2 and "declares no search_space" in result.output


@pytest.mark.slow  # operates a flow, a server or many threads: end-to-end
@pytest.mark.usefixtures("prefect_harness")
def test_failing_trials_are_recorded_as_failed_and_tuning_fails_when_none_completes(recflow_home, monkeypatch):
    from recflow.cli.main import app
    from recflow.models.bias import BiasRecommender

    def diverges(self, train, context=None):  # a fit that fails only when it runs (bad params are config errors at load)
        raise ValueError("epochs must be >= 1 (diverged)")

    monkeypatch.setattr(BiasRecommender, "fit", diverges)
    result = CliRunner().invoke(app, ["tune", "--config", "configs/smoke.yaml", "--model", "bias", "--trials", "2"])
    assert result.exit_code == 1 and "no trial completed" in result.output
    (summary,) = optuna.get_all_study_summaries(f"sqlite:///{recflow_home / 'tuning' / 'optuna.db'}")
    study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{recflow_home / 'tuning' / 'optuna.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    errors = [r.data.tags.get("recflow.tune.error", "") for r in mlflow_runs(recflow_home) if r.info.run_name.startswith("trial")]
    assert len(errors) == 2 and all("epochs must be >= 1" in e for e in errors)


# -- what a study searches: only what its objective can see (issue 26) -----------------------------


def test_a_rating_study_leaves_the_ranking_only_parameters_unsearched_and_a_ranking_study_the_rating_only_ones():
    assert sorted(tuning.search_space("user_cf", "rmse")) == ["damping", "n_neighbors", "shrinkage"]
    assert sorted(tuning.search_space("user_cf", "recall_at_10")) == ["popularity_penalty", "rank_alpha", "rank_neighbors", "rank_shrink", "rating_weight"]
    assert tuning.unsearched("user_cf", "rmse") == ["popularity_penalty", "rank_alpha", "rank_neighbors", "rank_shrink", "rating_weight"]
    assert sorted(tuning.search_space("bias", "ndcg_at_10")) == sorted(tuning.search_space("bias"))  # both objectives see both


@pytest.mark.slow  # operates a flow, a server or many threads: end-to-end
@pytest.mark.usefixtures("prefect_harness", "no_test_rows_read")
def test_an_rmse_study_of_user_cf_draws_and_writes_no_ranking_parameter(recflow_home):
    from recflow.cli.main import app

    result = CliRunner().invoke(app, ["tune", "--config", "configs/smoke.yaml", "--model", "user_cf", "--trials", "2", "--metric", "rmse"])
    assert result.exit_code == 0, result.output
    overlay = Path(result.output.split("overlay: ")[1].split()[0])
    assert sorted(yaml.safe_load(overlay.read_text())["models"][0]) == ["damping", "n_neighbors", "name", "shrinkage"]
    study = optuna.load_study(study_name=result.output.split("study ")[1].split(":")[0], storage=f"sqlite:///{recflow_home / 'tuning' / 'optuna.db'}")
    assert {name for t in study.trials for name in t.params} == {"damping", "n_neighbors", "shrinkage"}


def test_a_shared_tuning_database_replaces_the_roots_sqlite_file(tmp_path, monkeypatch):
    """A sqlite file cannot be shared through a bucket: a team names a database server for its studies."""
    from recflow.experiments import tuning

    assert tuning.storage_url(tmp_path) == f"sqlite:///{tmp_path / 'tuning' / 'optuna.db'}"
    monkeypatch.setenv("RECFLOW_TUNING_STORAGE", "postgresql://tuner@10.0.0.5/optuna")
    assert tuning.storage_url(tmp_path) == "postgresql://tuner@10.0.0.5/optuna"
