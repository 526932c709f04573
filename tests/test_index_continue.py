"""recflow.retrieval.build.continue_serving_indexes: a warm-started model's index continues last night's.

Last night: items 100..500, 2-d unit vectors at 0, 30, 60, 90, 120 degrees. Tonight the split has item
600 too (at 180 degrees) and the warm fit moved item 300 from 60 to 45 degrees.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from recflow.retrieval.build import build_serving_indexes, continue_serving_indexes
from recflow.retrieval.index import TuningGrid, VectorIndex
from tests.test_retrieval import DotModel


def _vectors(degrees) -> np.ndarray:
    a = np.radians(degrees)
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


USERS = np.array([10, 20])
U = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)


def _last_night(tmp_path, kind: str):
    grid = TuningGrid(kinds=(kind,), n_queries=4, latency_queries=2, hnsw_m=(4,), ef_construction=16, ef_search=(8,))
    summary = build_serving_indexes(DotModel(U, _vectors([0, 30, 60, 90, 120])), np.array([100, 200, 300, 400, 500]), USERS, grid, tmp_path / "night-1")
    (tmp_path / "night-1" / "summary.json").write_text(json.dumps(summary, default=float))
    return tmp_path / "night-1"


@pytest.mark.parametrize("kind", ["hnswlib", "flat"])
def test_a_continued_index_keeps_last_nights_rows_adds_the_new_items_and_answers_like_exact_search(tmp_path, kind, monkeypatch):
    monkeypatch.setattr("recflow.retrieval.build.MAX_MOVED_SHARE", 0.5)  # 1 of 5 moved: replaced in place
    previous = _last_night(tmp_path, kind)
    tonight = _vectors([0, 30, 45, 90, 120, 180])
    summary, why = continue_serving_indexes(
        DotModel(U, tonight), np.array([100, 200, 300, 400, 500, 600]), USERS, previous, tmp_path / "night-2", label="index/x"
    )
    assert why == "" and summary["continued_from"] == "index/x"
    space = summary["spaces"]["items"]
    assert (space["kind"], space["n"], space["continued"]) == (kind, 6, {"from": "index/x", "continued": True, "added": 1, "updated": 1, "n": 6})
    folder = tmp_path / "night-2" / "spaces" / "items"
    assert pq.read_table(folder / "rows.parquet").to_pydict() == {"row": [0, 1, 2, 3, 4, 5], "index": [0, 1, 2, 3, 4, 5], "id": [100, 200, 300, 400, 500, 600]}
    grown = VectorIndex.load(folder, space["index"])
    exact = VectorIndex.build("flat", tonight).search(tonight, 3)[0]
    assert grown.search(tonight, 3)[0].tolist() == exact.tolist()


def test_an_index_kind_that_takes_no_rows_in_place_is_rebuilt_and_says_why(tmp_path):
    previous = _last_night(tmp_path, "hnsw")
    summary, why = continue_serving_indexes(
        DotModel(U, _vectors([0, 30, 60, 90, 120, 180])), np.array([100, 200, 300, 400, 500, 600]), USERS, previous, tmp_path / "n2"
    )
    assert summary is None and why == "space 'items': a hnsw index cannot take new rows in place"


def test_an_indexed_item_gone_tonight_means_a_rebuild(tmp_path):
    previous = _last_night(tmp_path, "hnswlib")
    summary, why = continue_serving_indexes(DotModel(U, _vectors([0, 30, 60, 90])), np.array([100, 200, 300, 400]), USERS, previous, tmp_path / "n2")
    assert summary is None and why == "space 'items': an indexed item is gone from tonight's split"


def test_an_hnswlib_index_whose_vectors_mostly_moved_is_rebuilt_not_continued(tmp_path):
    previous = _last_night(tmp_path, "hnswlib")
    summary, why = continue_serving_indexes(
        DotModel(U, _vectors([5, 35, 65, 90, 120, 180])), np.array([100, 200, 300, 400, 500, 600]), USERS, previous, tmp_path / "n2"
    )
    assert summary is None and why == "space 'items': the fit moved 3 of 5 indexed vectors; rebuilding the hnswlib index is cheaper"
