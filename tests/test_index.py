"""recflow.retrieval.index: the five index kinds, recall against exact search, tuning and the kind chosen."""

from __future__ import annotations

import numpy as np
import pytest

from recflow.retrieval.index import (
    KINDS,
    KindResult,
    TuningGrid,
    VectorIndex,
    choose_kind,
    default_nlist,
    normalise,
    pq_subquantizers,
    recall_at_k,
    recall_qps_plot,
    tune_kind,
    tune_space,
)

#: build parameters under which every kind is exact on ``clusters()`` (all cells probed, every
#: IVF-PQ candidate re-ranked exactly, a generous graph search)
EXACT_SETTINGS = {
    "flat": ({}, {}),
    "ivf_flat": ({"nlist": 4}, {"nprobe": 4}),
    "hnsw": ({"M": 16, "ef_construction": 100}, {"ef_search": 300}),
    "ivf_pq": ({"nlist": 4, "pq_m": 2, "refine": "flat"}, {"nprobe": 4, "k_factor": 64}),
    "hnswlib": ({"M": 16, "ef_construction": 100}, {"ef_search": 300}),
}


def clusters(n: int = 300, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, dim))
    return normalise(centres[rng.integers(0, 6, n)] + 0.3 * rng.normal(size=(n, dim)))


def small_grid(**overrides) -> TuningGrid:
    base = dict(
        n_queries=200, latency_queries=20, hnsw_m=(8,), ef_construction=64, ef_search=(8, 16, 32, 64, 128), nprobe=(1, 2, 4, 8, 16), pq_k_factor=(1, 4, 16, 64)
    )
    return TuningGrid(**{**base, **overrides})


def test_normalise_makes_unit_rows_and_keeps_zero_rows_zero():
    out = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32


def test_flat_index_returns_exact_cosines_best_first():
    index = VectorIndex.build("flat", normalise(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])))
    rows, scores = index.search(np.array([[1.0, 0.0]]), k=3)
    assert rows.tolist() == [[0, 2, 1]]
    np.testing.assert_allclose(scores, [[1.0, np.sqrt(0.5), 0.0]], atol=1e-6)


def test_asking_for_more_neighbours_than_vectors_pads_with_minus_one():
    index = VectorIndex.build("hnswlib", normalise(np.eye(2)), M=4, ef_construction=10)
    rows, scores = index.search(np.array([[1.0, 0.0]]), k=3)
    assert rows.tolist() == [[0, 1, -1]]
    assert np.isneginf(scores[0, 2])


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_finds_the_exact_neighbours_when_searched_exhaustively(kind):
    x = clusters()
    build, search = EXACT_SETTINGS[kind]
    index = VectorIndex.build(kind, x, **build).configure(**search)
    exact_rows, exact_scores = VectorIndex.build("flat", x).search(x[:20], 5)
    rows, scores = index.search(x[:20], 5)
    assert rows.tolist() == exact_rows.tolist()
    np.testing.assert_allclose(scores, exact_scores, atol=1e-3 if kind == "ivf_pq" else 1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_a_saved_index_loads_back_and_answers_the_same(kind, tmp_path):
    x = clusters()
    build, search = EXACT_SETTINGS[kind]
    index = VectorIndex.build(kind, x, **build).configure(**search)
    spec = index.save(tmp_path)
    assert (tmp_path / spec.file).is_file() and spec.file.endswith(".faiss" if kind != "hnswlib" else ".bin")
    again = VectorIndex.load(tmp_path, spec.to_json())
    assert again.spec.search == search
    for a, b in zip(index.search(x[:10], 5), again.search(x[:10], 5)):
        np.testing.assert_array_equal(a, b)
    assert again.nbytes() == (tmp_path / spec.file).stat().st_size or kind == "hnswlib"


def test_loading_a_missing_index_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="hnsw.faiss"):
        VectorIndex.load(tmp_path, {"kind": "hnsw", "dim": 2, "n": 2, "file": "hnsw.faiss"})


def test_recall_is_the_share_of_the_exact_top_k_found():
    vectors = normalise(np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]))
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    truth = np.array([[1.0, 0.8]], dtype=np.float32)  # exact top-2: rows 0, 1
    assert recall_at_k(np.array([[0, 1]]), query, vectors, truth) == 1.0
    assert recall_at_k(np.array([[0, 2]]), query, vectors, truth) == 0.5
    assert recall_at_k(np.array([[0, -1]]), query, vectors, truth) == 0.5


def test_recall_counts_a_tied_neighbour_as_a_hit():
    vectors = normalise(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))  # rows 0 and 1 are the same point
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    assert recall_at_k(np.array([[1]]), query, vectors, np.array([[1.0]], dtype=np.float32)) == 1.0


def test_default_cells_and_subquantizers():
    assert default_nlist(40_000) == 800  # 4 sqrt(n)
    assert default_nlist(10_000) == 256  # at most n / 39
    assert default_nlist(10) == 1
    assert [pq_subquantizers(d) for d in (64, 32, 30, 3)] == [16, 8, 6, 1]


def test_tuned_kinds_reach_the_target_on_held_out_queries_and_small_catalogues_are_served_exactly():
    x = clusters(n=1500, dim=16)
    tuned = tune_space(x, x, small_grid())
    assert set(tuned.results) == set(KINDS)
    for kind, result in tuned.results.items():
        assert result.target_reached, (kind, result.recall)
        assert result.recall >= 0.99 and result.qps > 0 and result.p50_ms <= result.p99_ms and result.bytes > 0
    assert tuned.results["flat"].recall == 1.0
    assert tuned.chosen == "flat"
    assert tuned.reason.startswith("exact: 1500 vectors < index.exact_below=20000")
    assert tuned.results["ivf_flat"].search["nprobe"] <= tuned.results["ivf_flat"].build["nlist"]


def test_ivf_kinds_are_skipped_on_small_catalogues_with_the_reason():
    x = clusters(n=300)
    held = (x[:10], VectorIndex.build("flat", x).search(x[:10], 10)[1])
    index, result = tune_kind("ivf_pq", x, held, held, small_grid())
    assert index is None
    assert result.skipped == "300 vectors < index.min_ivf_vectors=1000: too few to train IVF cells"


def _result(kind: str, recall: float, qps: float) -> KindResult:
    return KindResult(kind, recall=recall, qps=qps, p50_ms=1000 / qps, target_reached=recall >= 0.99)


def test_above_the_exact_threshold_the_fastest_kind_reaching_the_target_is_served():
    results = {"flat": _result("flat", 1.0, 100), "hnsw": _result("hnsw", 0.995, 500), "ivf_flat": _result("ivf_flat", 0.97, 900)}
    kind, reason = choose_kind(results, n=50_000, grid=TuningGrid())
    assert kind == "hnsw"
    assert reason == "hnsw: the fastest kind reaching recall@10 >= 0.99 on held-out queries (0.9950 at 500 q/s, exact 100 q/s)"


def test_when_no_approximate_kind_reaches_the_target_exact_search_is_served():
    results = {"flat": _result("flat", 1.0, 100), "hnsw": _result("hnsw", 0.9, 500)}
    kind, reason = choose_kind(results, n=50_000, grid=TuningGrid())
    assert kind == "flat"
    assert reason == "no approximate kind reached recall@10 >= 0.99 on held-out queries; serving flat"


def test_exact_search_is_served_when_it_is_the_fastest():
    results = {"flat": _result("flat", 1.0, 1000), "hnsw": _result("hnsw", 0.995, 500)}
    assert choose_kind(results, n=50_000, grid=TuningGrid()) == (
        "flat",
        "exact search (1000 q/s) is faster than every approximate kind reaching recall@10 >= 0.99",
    )


def test_recall_qps_plot_writes_a_png(tmp_path):
    result = KindResult(
        "hnsw",
        curve=[{"build": {"M": 8}, "search": {"ef_search": e}, "recall": r, "qps": q, "p50_ms": 1.0} for e, r, q in ((8, 0.9, 900.0), (16, 0.99, 500.0))],
    )
    path = recall_qps_plot({"hnsw": result}, tmp_path / "curve.png", title="t", target=0.99)
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_index_section_of_the_config_is_strict_and_feeds_the_tuning_grid():
    from recflow.experiments.config import ConfigError, load_config

    cfg = load_config(None, ["index.kinds=[flat, hnswlib]", "index.target_recall=0.95"])
    grid = TuningGrid.from_config(cfg.index)
    assert (grid.kinds, grid.target_recall, grid.pq_refine) == (("flat", "hnswlib"), 0.95, ("fp16", "flat"))
    with pytest.raises(ConfigError, match="index.kinds.0"):
        load_config(None, ["index.kinds=[annoy]"])
    with pytest.raises(ConfigError, match="unknown key 'index.efsearch'"):
        load_config(None, ["index.efsearch=[8]"])


@pytest.mark.parametrize("kind", VectorIndex.EXTENDABLE)
def test_an_index_grown_by_new_items_answers_like_one_built_from_scratch(kind):
    vectors = clusters(n=300)
    build, search = EXACT_SETTINGS[kind]
    grown = VectorIndex.build(kind, vectors[:250], **build).configure(**search)
    record = grown.extend(vectors)
    scratch = VectorIndex.build(kind, vectors, **build).configure(**search)
    queries = clusters(n=20, seed=1)
    assert record == {"continued": True, "added": 50, "updated": 0, "n": 300}
    exact = VectorIndex.build("flat", vectors).search(queries, 10)[0]
    assert grown.search(queries, 10)[0].tolist() == scratch.search(queries, 10)[0].tolist() == exact.tolist()


@pytest.mark.parametrize("kind", VectorIndex.EXTENDABLE)
def test_a_grown_index_replaces_the_old_rows_whose_vectors_moved(kind):
    vectors = clusters(n=300)
    build, search = EXACT_SETTINGS[kind]
    grown = VectorIndex.build(kind, vectors[:250], **build).configure(**search)
    moved = vectors.copy()
    moved[:5] = clusters(n=5, seed=2)
    record = grown.extend(moved)
    rows, _ = grown.search(moved[:5], 1)
    assert record == {"continued": True, "added": 50, "updated": 5, "n": 300}
    assert rows[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_an_index_kind_that_cannot_take_new_rows_says_so():
    index = VectorIndex.build("hnsw", clusters(n=50), M=16, ef_construction=100)
    with pytest.raises(ValueError, match="hnsw index cannot take new rows in place"):
        index.extend(clusters(n=60))
