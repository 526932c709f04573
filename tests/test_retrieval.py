"""recflow.retrieval.search: serving indexes built from a model, and the answers a Retriever gives.

The catalogue: users 10, 20, 30 and items 100..600, whose 2-d unit vectors point at 0, 30, 60,
90, 120 and 180 degrees. User 10 (vector [2, 0]) rated 100 (train) and 300 (test); user 20
rated 100, 200 (train), 400 (valid) and 600 (test); user 30 only 500 (test), so has no training ratings.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recflow.models.base import Recommender
from recflow.prep.interactions import index_split
from recflow.retrieval.build import Space, build_catalogue, build_serving_indexes, check_dot_factors, model_spaces
from recflow.retrieval.index import TuningGrid
from recflow.retrieval.search import Catalogue, NoVector, Retriever, UnknownUser
from recflow.retrieval.titles import TitleNotFound
from recflow.utils.numeric import top_k

ITEM_IDS = np.array([100, 200, 300, 400, 500, 600])
USER_IDS = np.array([10, 20, 30])
ANGLES = np.radians([0, 30, 60, 90, 120, 180])
V = np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1).astype(np.float32)
U = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=np.float32)
TITLES = {
    100: "Toy Story (1995)",
    200: "Matrix, The (1999)",
    300: "Heat (1995)",
    400: "Star Wars: Episode IV - A New Hope (1977)",
    500: "Heat (1986)",
}  # 600 has no title
GRID = TuningGrid(kinds=("flat", "hnsw", "hnswlib"), n_queries=8, latency_queries=4, hnsw_m=(4,), ef_construction=16, ef_search=(4, 8))


def split_frame() -> pd.DataFrame:
    rows = [(10, 100, "train"), (10, 300, "test"), (20, 100, "train"), (20, 200, "train"), (20, 400, "valid"), (20, 600, "test"), (30, 500, "test")]
    return pd.DataFrame(
        {"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows], "rating": 4.0, "timestamp": np.arange(len(rows)), "split": [r[2] for r in rows]}
    )


class DotModel(Recommender):
    """A model whose score is U @ V.T: what two_tower (unit V) or a biased factor model looks like to serving."""

    name = "dot"
    item_spaces = ("items",)
    user_space = True

    def __init__(self, users: np.ndarray, items: np.ndarray) -> None:
        self.U, self.V = users, items
        self._seen = sp.csr_matrix((len(users), len(items)), dtype=np.float32)

    def fit(self, train, context=None):
        return self

    def score(self, users):
        return self.U[np.asarray(users)] @ self.V.T

    def _user_vectors(self):
        return self.U

    def _item_vectors(self, space):
        return self.V

    def dot_factors(self):
        return self.U, self.V, np.ones(len(self.V), bool)


@pytest.fixture
def catalogue_dir(tmp_path) -> Path:
    split_frame().to_parquet(tmp_path / "split.parquet")
    pd.DataFrame({"item_id": list(TITLES), "title": list(TITLES.values())}).to_parquet(tmp_path / "items.parquet")
    out = tmp_path / "catalogue"
    build_catalogue(tmp_path / "split.parquet", tmp_path / "items.parquet", out)
    return out


def index_folder(model, out: Path) -> Path:
    """What the index task writes (summary.json is written by ``produce`` there)."""
    summary = build_serving_indexes(model, ITEM_IDS, USER_IDS, GRID, out)
    (out / "summary.json").write_text(json.dumps(summary, default=float))
    return out


def test_catalogue_holds_id_maps_titles_training_counts_and_every_rated_pair(catalogue_dir):
    cat = Catalogue(catalogue_dir)
    assert cat.item_ids.tolist() == ITEM_IDS.tolist()
    assert list(cat.titles) == [*TITLES.values(), "item 600"]
    assert cat.train_count.tolist() == [2, 1, 0, 0, 0, 0]
    assert cat.user_ids.tolist() == [10, 20, 30] and cat.user_train_count.tolist() == [1, 2, 0]
    assert [cat.seen(u).tolist() for u in range(3)] == [[0, 2], [0, 1, 3, 5], [4]]
    assert cat.popular.tolist() == [0, 1, 2, 3, 4, 5]
    assert (cat.user_index(20), cat.user_index(99)) == (1, -1)


def test_a_missing_catalogue_file_is_named(catalogue_dir):
    (catalogue_dir / "users.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="users.parquet"):
        Catalogue(catalogue_dir)


def test_top_k_breaks_ties_by_lower_index_and_never_returns_minus_infinity():
    scores = np.array([1.0, 3.0, 3.0, -np.inf, 2.0])
    assert top_k(scores, 2).tolist() == [1, 2]
    assert top_k(scores, 10).tolist() == [1, 2, 4, 0]


def test_unit_item_vectors_with_a_dot_score_are_served_through_the_index(catalogue_dir, tmp_path):
    folder = index_folder(DotModel(U, V), tmp_path / "index")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["recommend_via"] == "index"
    assert summary["primary"] == "items" and summary["spaces"]["items"]["kind"] == "flat"
    assert summary["spaces"]["items"]["metrics"]["ann_recall_at_10"] == 1.0
    retriever = Retriever.from_sources({"catalogue": catalogue_dir, "index": folder}, {"recommend_model": "dot"})
    answer = retriever.recommend(10, k=2)
    assert answer.item_ids.tolist() == [200, 400]  # 100 and 300 are rated; 2 cos 30deg, 2 cos 90deg
    np.testing.assert_allclose(answer.scores, [np.sqrt(3), 0.0], atol=1e-6)
    assert answer.via == "flat index" and answer.titles == ["Matrix, The (1999)", "Star Wars: Episode IV - A New Hope (1977)"]


def test_other_dot_products_are_served_exactly(catalogue_dir, tmp_path):
    stretched = V * np.array([[1], [2], [1], [1], [1], [1]], dtype=np.float32)  # item 200 twice as long
    folder = index_folder(DotModel(U, stretched), tmp_path / "index")
    retriever = Retriever.from_sources({"catalogue": catalogue_dir, "index": folder}, {"recommend_model": "dot"})
    assert retriever.recommend_via == "dot"
    answer = retriever.recommend(10, k=3)
    assert answer.item_ids.tolist() == [200, 400, 500]
    np.testing.assert_allclose(answer.scores, [2 * np.sqrt(3), 0.0, -1.0], atol=1e-6)
    assert answer.via == "exact dot product"


def test_a_model_without_dot_factors_is_loaded_and_scores(catalogue_dir, tmp_path):
    from recflow.models import PopularRecommender

    PopularRecommender().fit(index_split(split_frame())["train"]).save(tmp_path / "model")
    retriever = Retriever.from_sources({"catalogue": catalogue_dir, "model": tmp_path / "model"}, {"recommend_model": "popular"})
    answer = retriever.recommend(10, k=2)
    assert answer.item_ids.tolist() == [200, 400]  # counts 2 (seen), 1, 0 (seen), 0, 0, 0: ties to the lower index
    assert answer.scores.tolist() == [1.0, 0.0] and answer.via == "model scores"


def test_unknown_and_cold_users_are_refused_with_a_reason(catalogue_dir, tmp_path):
    retriever = Retriever.from_sources({"catalogue": catalogue_dir, "index": index_folder(DotModel(U, V), tmp_path / "i")}, {"recommend_model": "dot"})
    with pytest.raises(UnknownUser, match=r"user 99 is unknown: not among the 3 users of this catalogue \(ids 10\.\.30\)"):
        retriever.recommend(99)
    with pytest.raises(UnknownUser, match="user 30 has no training ratings"):
        retriever.recommend(30)


def test_the_popular_fallback_answers_cold_and_unknown_users(catalogue_dir, tmp_path):
    retriever = Retriever.from_sources({"catalogue": catalogue_dir, "index": index_folder(DotModel(U, V), tmp_path / "i")}, {"recommend_model": "dot"})
    cold = retriever.recommend(30, k=5, fallback="popular")
    assert cold.item_ids.tolist() == [100, 200, 300, 400, 600]  # 500 is rated by user 30
    assert cold.scores.tolist() == [2.0, 1.0, 0.0, 0.0, 0.0] and cold.model == "popular"
    assert cold.note.startswith("cold user")
    assert retriever.recommend(99, k=2, fallback="popular").item_ids.tolist() == [100, 200]


def test_similar_finds_the_title_and_its_nearest_items_by_cosine(catalogue_dir, tmp_path):
    retriever = Retriever.from_sources(
        {"catalogue": catalogue_dir, "index": index_folder(DotModel(U, V), tmp_path / "i")}, {"recommend_model": "dot", "similar_model": "dot"}
    )
    answer = retriever.similar("toy story", k=3)
    assert answer.query == "Toy Story (1995)"
    assert answer.item_ids.tolist() == [200, 300, 400]
    np.testing.assert_allclose(answer.scores, [np.cos(np.radians(30)), 0.5, 0.0], atol=1e-6)
    with pytest.raises(TitleNotFound, match="closest titles"):
        retriever.similar("qqqq zzzz")
    with pytest.raises(ValueError, match="--mode applies to models with several spaces"):
        retriever.similar("toy story", mode="cf")


def test_an_item_without_a_vector_has_no_similar_items(catalogue_dir, tmp_path):
    holes = V.copy()
    holes[0] = 0.0  # item 100: too rare for a vector
    retriever = Retriever.from_sources({"catalogue": catalogue_dir, "index": index_folder(DotModel(U, holes), tmp_path / "i")}, {"recommend_model": "dot"})
    rows = pd.read_parquet(tmp_path / "i" / "spaces" / "items" / "rows.parquet")
    assert rows["id"].tolist() == [200, 300, 400, 500, 600]  # the zero row is not indexed
    with pytest.raises(NoVector, match="'Toy Story \\(1995\\)' has no vector in dot's 'items' space"):
        retriever.similar("Toy Story")


class ModalModel(DotModel):
    """Item vectors in several modes, like the hybrid model."""

    item_spaces = ("hybrid", "content", "cf")

    def _item_vectors(self, space):
        return {"hybrid": self.V, "content": self.V[::-1].copy(), "cf": self.V}[space]


def test_a_model_with_modes_gets_one_space_per_mode_with_the_default_first():
    spaces, primary = model_spaces(ModalModel(U, V))
    assert primary == "hybrid"
    assert [s.name for s in spaces] == ["hybrid", "content", "cf"]
    assert spaces[0].queries is U and spaces[1].queries is None


def test_a_model_with_only_user_vectors_gets_a_users_space():
    class UsersOnly(DotModel):
        name = "users_only"
        item_spaces = ()

        def __init__(self):
            super().__init__(U, V)

    spaces, primary = model_spaces(UsersOnly())
    assert primary == "users" and [(s.name, s.entity) for s in spaces] == [("users", "user")]
    assert isinstance(spaces[0], Space)


def test_mf_and_item2vec_factors_reproduce_their_scores():
    from recflow.models import MODELS

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": rng.integers(0, 30, 600), "item_id": rng.integers(0, 40, 600)}).drop_duplicates()
    frame = frame.assign(rating=rng.integers(1, 6, len(frame)).astype(float), timestamp=0, split="train")
    train = index_split(frame)["train"]
    for name, params in (("mf", {"factors": 4, "epochs": 3}), ("item2vec", {"dim": 8, "epochs": 2, "workers": 1})):
        model = MODELS[name](**params).fit(train)
        factors = model.dot_factors()
        assert factors is not None and check_dot_factors(model, *factors), name


def test_a_two_tower_bundle_answers_without_importing_tensorflow(catalogue_dir, tmp_path):
    """Retrieval through the index and through the saved model reads npz files only."""
    from recflow.models.base import Recommender
    from recflow.models.two_tower import TwoTowerRecommender

    model = TwoTowerRecommender(dim=2)
    model.user_embeddings_, model.item_embeddings_ = np.array([[1, 0], [0, 1], [1, 0]], np.float32), V
    model.item_frequency_ = np.zeros(len(V))
    for side in ("user", "item"):
        setattr(model, f"{side}_feature_columns_", [])
        setattr(model, f"{side}_feature_mean_", np.zeros(0))
        setattr(model, f"{side}_feature_std_", np.zeros(0))
    model._seen = index_split(split_frame())["train"].seen
    Recommender.save(model, tmp_path / "model")  # the npz half of TwoTowerRecommender.save; no Keras file
    from recflow.models import load_model

    index = index_folder(load_model(tmp_path / "model"), tmp_path / "index")
    code = textwrap.dedent(f"""
        import json, sys
        from recflow.retrieval.search import Retriever
        by_index = Retriever.from_sources({{"catalogue": {str(catalogue_dir)!r}, "index": {str(index)!r}}}, {{"recommend_model": "two_tower"}})
        by_model = Retriever.from_sources({{"catalogue": {str(catalogue_dir)!r}, "model": {str(tmp_path / "model")!r}}}, {{"recommend_model": "two_tower"}})
        answers = [by_index.recommend(10, 2).item_ids.tolist(), by_model.recommend(10, 2).item_ids.tolist(),
                   by_index.similar("Toy Story", 2).item_ids.tolist(), by_index.recommend_via]
        print(json.dumps({{"answers": answers, "tf": "tensorflow" in sys.modules or "keras" in sys.modules}}))
    """)
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout)
    assert out == {"answers": [[200, 400], [200, 400], [200, 300], "index"], "tf": False}
