"""Configs: YAML validated by pydantic; unknown keys are errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from recflow.experiments.config import ConfigError, RunConfig, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", ["default", "ml-1m", "ml-1m-rmse", "ml-1m-recbole", "smoke"])
def test_every_preset_validates(name):
    assert isinstance(load_config(CONFIGS / f"{name}.yaml"), RunConfig)


def test_unknown_key_is_rejected_by_name(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("split:\n  protocl: random\n")
    with pytest.raises(ConfigError, match=r"unknown key 'split\.protocl'") as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_unknown_model_parameter_is_rejected_by_name(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  - name: bias\n    reg_usr: 1\n")
    with pytest.raises(ConfigError, match="reg_usr"):
        load_config(path)


def test_set_overrides_nested_key():
    cfg = load_config(None, ["split.protocol=random", "evaluation.ks=[5, 10]"])
    assert cfg.split.protocol == "random"
    assert cfg.evaluation.ks == [5, 10]


def test_set_addresses_a_model_by_name():
    cfg = load_config(CONFIGS / "smoke.yaml", ["models.bias.reg_user=3.5"])
    assert cfg.model("bias").reg_user == 3.5
    assert cfg.model("popular").name == "popular"


def test_set_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["split.protocol"])


def test_duplicate_models_are_rejected():
    with pytest.raises(ConfigError, match="listed twice"):
        load_config(None, ["models=[{name: popular}, {name: popular}]"])


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("split: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(path)


def test_a_champion_metric_at_a_cutoff_the_evaluation_skips_is_an_error_that_says_why(tmp_path):
    path = tmp_path / "ks.yaml"
    path.write_text("evaluation:\n  ks: [5, 20]\n")  # the default champion metric is recall_at_10
    with pytest.raises(ConfigError, match=r"serving\.champion_metric: 'recall_at_10' needs k=10 in evaluation\.ks \[5, 20\]") as info:
        load_config(path)
    assert str(path) in str(info.value) and "no champion would ever be registered" in str(info.value)
    assert "'recall_at_5', 'recall_at_20'" in str(info.value)


def test_a_champion_metric_the_evaluation_computes_is_accepted():
    assert load_config(None, ["evaluation.ks=[5, 20]", "serving.champion_metric=ndcg_at_20"]).serving.champion_metric == "ndcg_at_20"
    assert load_config(None, ["evaluation.ks=[5]", "serving.champion_metric=rmse", "serving.greater_is_better=false"])


def test_an_ensemble_combines_models_the_config_lists():
    cfg = RunConfig.model_validate({"models": [{"name": "ease"}, {"name": "popular"}, {"name": "rank_fusion", "members": ["ease", "popular"]}]})
    assert cfg.model("rank_fusion").members == ("ease", "popular")


def test_an_ensemble_member_the_config_does_not_list_is_an_error_naming_it():
    with pytest.raises(ConfigError, match=r"'rank_fusion' combines \['item_knn'\], which the config does not list"):
        load_config(None, ["models=[{name: ease}, {name: rank_fusion, members: [ease, item_knn]}]"])


def test_an_ensemble_cannot_be_its_own_member():
    with pytest.raises(ConfigError, match="its own member"):
        load_config(None, ["models=[{name: rank_fusion, members: [rank_fusion]}]"])


def test_an_ensemble_with_a_weight_per_member_missing_is_an_error():
    with pytest.raises(ConfigError, match="1 weights for 2 members"):
        load_config(None, ["models=[{name: ease}, {name: popular}, {name: rank_fusion, members: [ease, popular], weights: [2]}]"])


def test_a_growing_source_defaults_to_the_time_forward_split_and_movielens_keeps_its_protocol():
    from recflow.experiments.config import RunConfig

    assert RunConfig.model_validate({}).split.protocol == "temporal"
    raw = {"split": {"period": "week"}}
    assert RunConfig._growing_sources_split_time_forward({**raw, "dataset": {"source": {"kind": "table"}}})["split"] == {
        "period": "week",
        "protocol": "time_forward",
    }
    assert RunConfig._growing_sources_split_time_forward({"dataset": {"source": {"kind": "sql"}}, "split": {"protocol": "random"}})["split"] == {
        "protocol": "random"
    }
    assert RunConfig._growing_sources_split_time_forward({"dataset": {"name": "ml-1m"}}) == {"dataset": {"name": "ml-1m"}}


# -- bounds and names checked at load (issue 26, point 11) ----------------------------------------


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        ("dataset.name=../../x", "dataset.name"),
        ("evaluation.ks=[10,1000000]", "evaluation.ks.1"),
        ("evaluation.bootstrap_samples=100000000", "evaluation.bootstrap_samples"),
        ("models=[{name: two_tower, dim: 1000000}]", "dim"),
    ],
)
def test_a_value_no_run_could_survive_is_a_config_error_at_load(override, problem):
    with pytest.raises(ConfigError, match=problem.replace(".", r"\.")):
        load_config("configs/smoke.yaml", [override])


def test_a_bad_set_value_is_blamed_on_that_set_not_on_the_file():
    with pytest.raises(ConfigError) as failed:
        load_config("configs/smoke.yaml", ["models.bias.reg_user=abc"])
    assert str(failed.value).splitlines() == [
        "--set models.bias.reg_user=abc: invalid config",
        "  models.bias.reg_user=abc: Input should be a valid number, unable to parse string as a number",
    ]


def test_a_model_param_out_of_its_bounds_is_a_config_error_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: bias\n    reg_user: -1\n")
    with pytest.raises(ConfigError) as failed:
        load_config(bad)
    assert str(failed.value) == f"{bad}: invalid config\n  models.bias.reg_user: Input should be greater than or equal to 0"


def test_a_wrong_config_path_lists_the_presets():
    with pytest.raises(ConfigError) as failed:
        load_config("configs/smok.yaml")
    first, presets = str(failed.value).splitlines()
    assert first == "config file not found: configs/smok.yaml"
    assert "configs/smoke.yaml" in presets.removeprefix("presets: ").split(", ")
