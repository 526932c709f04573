"""``similar --mode M`` without ``--model``: a model of the run that has the item space M answers."""

from __future__ import annotations

import json

from recflow.experiments.serving.records import model_with_mode


def run_record(root, spaces: dict[str, list[str] | None], similar: str, overlap: dict[str, float] | None = None) -> dict:
    """A run record whose models have index folders with these item spaces (None: no index)."""
    models = {}
    for name, names in spaces.items():
        index = None
        if names is not None:
            index = f"index/{name}"
            (root / index).mkdir(parents=True)
            summary = {"model": name, "spaces": {s: {"entity": "item"} for s in names} | {"users": {"entity": "user"}}}
            (root / index / "summary.json").write_text(json.dumps(summary))
        models[name] = {"index": index, "genre_overlap": (overlap or {}).get(name)}
    return {"similar": similar, "models": models}


def test_the_run_s_similar_model_serves_a_mode_it_has(tmp_path):
    record = run_record(tmp_path, {"mf": ["items"], "hybrid": ["hybrid", "content", "cf"]}, similar="hybrid")
    assert model_with_mode(record, tmp_path, "content") is None  # the default model answers


def test_a_mode_only_another_model_has_picks_that_model(tmp_path):
    record = run_record(tmp_path, {"popular": None, "item2vec": ["items"], "hybrid": ["hybrid", "content", "cf"]}, similar="item2vec")
    assert model_with_mode(record, tmp_path, "content") == "hybrid"


def test_among_models_with_the_mode_the_one_whose_neighbours_share_most_genres_answers(tmp_path):
    record = run_record(tmp_path, {"mf": ["items"], "a": ["cf"], "b": ["cf"]}, similar="mf", overlap={"a": 0.2, "b": 0.4})
    assert model_with_mode(record, tmp_path, "cf") == "b"


def test_a_mode_no_model_has_leaves_the_default_whose_error_names_its_modes(tmp_path):
    record = run_record(tmp_path, {"mf": ["items"]}, similar="mf")
    assert model_with_mode(record, tmp_path, "content") is None
