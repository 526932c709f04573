"""HybridRecommender (content + CF branches, fusion head) on a tiny two-cluster catalogue with titles and genres."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from recflow.models.base import NotFittedError
from recflow.models.context import FitContext
from recflow.models.hybrid import HybridRecommender
from recflow.models.hybrid_content import item_texts, text_features
from recflow.prep.genres import genre_overlap_at_k
from recflow.prep.interactions import Interactions
from recflow.retrieval.titles import canonical_title
from recflow.utils.numeric import cosine_neighbours

# items 0-11: family animation, 12-23: horror; 24: in the index but not in the items table;
# 25: in the items table, rated only in valid (no train interactions: no CF vector)
FAMILY = [
    "Toy Story (1995)",
    "Toy Story 2 (1999)",
    "Lion King, The (1994)",
    "Aladdin (1992)",
    "Babe (1995)",
    "Jumanji (1995)",
    "Mulan (1998)",
    "Hercules (1997)",
    "Pinocchio (1940)",
    "Dumbo (1941)",
    "Bambi (1942)",
    "Cinderella (1950)",
]
HORROR = [
    "Scream (1996)",
    "Scream 2 (1997)",
    "Shining, The (1980)",
    "Halloween (1978)",
    "Alien (1979)",
    "Psycho (1960)",
    "Exorcist, The (1973)",
    "Carrie (1976)",
    "Omen, The (1976)",
    "Ring, The (2002)",
    "Saw (2004)",
    "Candyman (1992)",
]
N_ITEMS = 26
N_USERS = 40
PARAMS = dict(dim=8, text_components=4, min_df=1, hidden=[16], batch_size=64, epochs=2, lr=0.01, genre_overlap_queries=None, threads=1)


def catalogue() -> pd.DataFrame:
    titles = FAMILY + HORROR + ["Seven (a.k.a. Se7en) (1995)"]
    genres = [["Animation", "Children"]] * 12 + [["Horror", "Thriller"]] * 12 + [["Thriller", "Crime"]]
    genres[4] = ["Children", "Comedy"]  # Babe
    genres[16] = ["Horror", "Sci-Fi"]  # Alien
    ids = [i for i in range(N_ITEMS) if i != 24]  # raw id == index here; 24 has no items row
    return pd.DataFrame({"item_id": ids, "title": titles, "year": [1990] * 25, "genres": [list(g) for g in genres]})


def interactions(seed: int = 0) -> tuple[Interactions, Interactions]:
    """(train, valid): users 0-19 like family items, 20-39 horror; everyone dislikes 2 of the other cluster."""
    rng = np.random.default_rng(seed)
    u, i, r = [], [], []
    for user in range(N_USERS):
        own, other = (0, 12) if user < 20 else (12, 0)
        liked = own + rng.choice(12, 7, replace=False)
        disliked = other + rng.choice(12, 2, replace=False)
        u += [user] * 9
        i += liked.tolist() + disliked.tolist()
        r += [5.0] * 7 + [2.0] * 2
    u += [0, 20]
    i += [24, 24]
    r += [4.0, 4.0]
    vu, vi = [], []
    for user in range(N_USERS):  # one unseen item of the user's own cluster, plus item 25 for a few
        own = 0 if user < 20 else 12
        seen = set(np.array(i)[np.array(u) == user].tolist())
        vu.append(user)
        vi.append(next(own + j for j in range(12) if own + j not in seen))
    vu += [1, 2]
    vi += [25, 25]
    ids_u, ids_i = np.arange(N_USERS), np.arange(N_ITEMS)

    def inter(uu, ii, rr):
        n = len(uu)
        return Interactions(np.array(uu, np.int32), np.array(ii, np.int32), np.array(rr, np.float32), np.zeros(n, np.int64), ids_u, ids_i)

    return inter(u, i, r), inter(vu, vi, [5.0] * len(vu))


def context(valid: Interactions | None = None, **kw) -> FitContext:
    tags = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [0, 1, 12], "tag": ["Pixar", "pixar", "slasher"], "timestamp": [0, 0, 0]})
    tmdb = pd.DataFrame(
        {
            "item_id": [0, 14],
            "overview": ["Toys come to life when Andy leaves the room.", "A family caretakes a haunted hotel in winter."],
            "keywords": [["toy", "friendship"], ["hotel", "ghost"]],
        }
    )
    ids = catalogue()["item_id"].to_numpy()  # 24 has no row here either
    item_features = pd.DataFrame(
        {"item_id": ids, "mean_rating": np.linspace(3, 4, len(ids)), "rating_count": np.arange(len(ids)) * 10, "genre_horror": np.zeros(len(ids), np.int8)}
    )
    return FitContext(valid=valid, items=catalogue(), tags=tags, tmdb=tmdb, item_features=item_features, **kw)


@pytest.fixture(scope="module")
def data():
    return interactions()


@pytest.fixture(scope="module")
def model(data) -> HybridRecommender:
    train, _ = data
    return HybridRecommender(**PARAMS, seed=0).fit(train, context())


# ----------------------------------------------------------------------------- fitted model


def test_shapes_vectors_and_scores(model, data):
    train, _ = data
    assert model.content_dims_ == {"text": 4, "genres": 7, "numeric": 2}  # genre_horror dropped (genre block)
    assert model.numeric_columns_ == ["mean_rating", "rating_count"]
    for mode in ("content", "cf", "hybrid"):
        emb = model.item_embeddings(mode)
        assert emb.shape == (N_ITEMS, 8) and emb.dtype == np.float32
        norms = np.linalg.norm(emb, axis=1)
        np.testing.assert_allclose(norms[model.valid_[mode]], 1.0, atol=1e-5)
        assert np.all(norms[~model.valid_[mode]] == 0)
    assert model.valid_["content"].tolist() == [True] * 24 + [False, True]  # 24: no items row, no text
    assert model.valid_["cf"].tolist() == [True] * 25 + [False]  # 25: no train interactions
    assert model.valid_["hybrid"].all()
    assert model.user_embeddings().shape == (N_USERS, 8)
    scores = model.score(np.array([0, 5, 39]))
    assert scores.shape == (3, N_ITEMS) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, model.user_vectors_[[0, 5, 39]] @ model.item_embeddings("hybrid").T, rtol=1e-6)
    assert model.positive_rule_ == "threshold"
    assert set(model.genre_overlap_) == {f"genre_{m}_at_10_{mode}" for m in ("overlap", "jaccard") for mode in ("content", "cf", "hybrid")}
    assert all(0 <= v <= 1 for v in model.genre_overlap_.values())


def test_recommend_excludes_seen(model, data):
    train, _ = data
    rec, sc = model.recommend(np.arange(N_USERS), k=N_ITEMS)
    seen = train.seen.toarray().astype(bool)
    for u, row in enumerate(rec):
        got = row[row >= 0]
        assert not seen[u, got].any()
        assert len(got) == N_ITEMS - seen[u].sum()
        assert np.all(np.diff(sc[u][row >= 0]) <= 0)


def test_history_and_epoch_callback(data):
    train, valid = data
    calls = []
    m = HybridRecommender(**{**PARAMS, "epochs": 3, "patience": 5}).fit(train, context(valid, on_epoch_end=lambda e, d: calls.append((e, d))))
    assert [h["epoch"] for h in m.history_] == [1, 2, 3] == [c[0] for c in calls]
    for h in m.history_:
        assert {"loss", "softmax_loss", "alignment_loss", "valid_recall_at_10", "seconds"} <= set(h)
        assert np.isfinite(h["loss"]) and 0 <= h["alignment_loss"] <= 2 and 0 <= h["valid_recall_at_10"] <= 1
        np.testing.assert_allclose(h["loss"], h["softmax_loss"] + 0.1 * h["alignment_loss"], rtol=1e-5)
    assert calls[0][1]["loss"] == m.history_[0]["loss"] and "epoch" not in calls[0][1]
    recalls = [h["valid_recall_at_10"] for h in m.history_]
    assert m.best_epoch_ == int(np.argmax(recalls)) + 1
    # the restored weights are the best epoch's: the final vectors reproduce its validation recall
    from recflow.evaluation.evaluate import evaluate_ranking

    assert evaluate_ranking(m, train, valid, ks=[10])["recall_at_10"] == pytest.approx(max(recalls))


def test_seeded_fit_is_deterministic(model, data):
    train, _ = data
    again = HybridRecommender(**model.get_params()).fit(train, context())
    # on CPU with op determinism the refit agrees bit for bit
    for mode in ("content", "cf", "hybrid"):
        np.testing.assert_array_equal(again.item_embeddings(mode), model.item_embeddings(mode))
    np.testing.assert_array_equal(again.user_embeddings(), model.user_embeddings())
    other = HybridRecommender(**{**PARAMS, "seed": 1}).fit(train, context())
    assert not np.array_equal(other.item_embeddings("cf"), model.item_embeddings("cf"))


def test_lazy_adam_is_seeded_learns_and_differs_from_dense_adam(data):
    train, _ = data
    params = {**PARAMS, "optimizer": "lazy_adam", "epochs": 4, "patience": 4}
    lazy = HybridRecommender(**params).fit(train, context())
    np.testing.assert_array_equal(HybridRecommender(**params).fit(train, context()).user_embeddings(), lazy.user_embeddings())
    assert lazy.history_[-1]["loss"] < lazy.history_[0]["loss"]
    # dense Adam keeps moving rows absent from a batch by their momentum; lazy Adam does not
    dense = HybridRecommender(**{**params, "optimizer": "adam"}).fit(train, context())
    assert not np.array_equal(dense.user_embeddings(), lazy.user_embeddings())
    with pytest.raises(ValueError, match="optimizer"):
        HybridRecommender(**{**params, "optimizer": "sgd"}).fit(train, context())


def test_shared_negatives_covering_the_batch_is_the_whole_batch_softmax(data):
    # with M >= batch size every row sees every other positive: the same loss as the B x B logits
    train, _ = data
    params = {**PARAMS, "optimizer": "lazy_adam"}
    whole = HybridRecommender(**params).fit(train, context())
    covering = HybridRecommender(**{**params, "shared_negatives": PARAMS["batch_size"]}).fit(train, context())
    fewer = HybridRecommender(**{**params, "shared_negatives": 4}).fit(train, context())
    np.testing.assert_allclose([h["softmax_loss"] for h in covering.history_], [h["softmax_loss"] for h in whole.history_], rtol=1e-5)
    np.testing.assert_allclose(covering.item_embeddings(), whole.item_embeddings(), atol=1e-5)
    assert fewer.history_[0]["softmax_loss"] < whole.history_[0]["softmax_loss"]  # 4 negatives: an easier softmax
    with pytest.raises(ValueError, match="shared_negatives"):
        HybridRecommender(**{**params, "shared_negatives": 0}).fit(train, context())


@pytest.mark.parametrize("optimizer", ["lazy_adam", "adam"])
def test_jit_compiled_step_trains_as_the_graph_step(data, optimizer):
    # XLA compiles the loss and its gradient; the optimizer's update is the same code either way
    train, _ = data
    params = {**PARAMS, "optimizer": optimizer, "epochs": 3, "branch_loss_weight": 0.5, "l2": 1e-4}
    graph = HybridRecommender(**params).fit(train, context())
    jit = HybridRecommender(**{**params, "jit_compile": True}).fit(train, context())
    assert np.isfinite([h["loss"] for h in jit.history_]).all()
    np.testing.assert_allclose([h["loss"] for h in jit.history_], [h["loss"] for h in graph.history_], rtol=1e-4)
    np.testing.assert_allclose(jit.item_embeddings(), graph.item_embeddings(), atol=1e-3)
    np.testing.assert_allclose(jit.user_embeddings(), graph.user_embeddings(), atol=1e-3)


def test_training_step_reads_id_tables_row_wise(data, monkeypatch):
    # the Keras Embedding lookup reads the whole table; after lazy Adam's first scatter TensorFlow
    # copies a variable on every whole read, so the step gathers the batch's rows from the variable
    import keras

    traced = []
    call = keras.layers.Embedding.call

    def recording(layer, *args, **kwargs):
        import tensorflow as tf

        if tf.inside_function():
            traced.append(layer.name)
        return call(layer, *args, **kwargs)

    monkeypatch.setattr(keras.layers.Embedding, "call", recording)
    train, _ = data
    m = HybridRecommender(**{**PARAMS, "optimizer": "lazy_adam", "epochs": 1}).fit(train, context())
    assert np.isfinite(m.history_[0]["loss"])
    assert "content_features" in traced  # the frozen content table: never scattered, so read whole
    assert "user_id_embedding" not in traced and "item_id_embedding" not in traced


def test_save_load_round_trip_without_tensorflow(model, tmp_path):
    path = tmp_path / "m"
    model.save(path)
    assert sorted(p.name for p in path.iterdir()) == ["arrays.npz", "model.keras", "params.json"]
    back = HybridRecommender.load(path)
    assert back.get_params() == model.get_params()
    users = np.arange(N_USERS)
    for a, b in zip(back.recommend(users, k=6), model.recommend(users, k=6)):
        np.testing.assert_array_equal(a, b)
    for mode in ("content", "cf", "hybrid"):
        pd.testing.assert_frame_equal(back.similar("toy story", 5, mode), model.similar("toy story", 5, mode))
        for a, b in zip(back.similar_items(np.arange(N_ITEMS), 4, mode), model.similar_items(np.arange(N_ITEMS), 4, mode)):
            np.testing.assert_array_equal(a, b)
    assert back.genre_overlap_ == model.genre_overlap_
    np.testing.assert_array_equal(back.genres_, model.genres_)
    assert back.genre_names_.tolist() == model.genre_names_.tolist()
    # the lazily loaded network reproduces the precomputed vectors
    out = back.keras_model.predict([np.arange(N_ITEMS) % N_USERS, np.arange(N_ITEMS)], verbose=0)
    np.testing.assert_allclose(out[3], model.item_embeddings("hybrid"), atol=1e-5)
    # a fresh process: import, load, recommend and similar() never import TensorFlow
    code = (
        "import sys, json, numpy as np\n"
        "from recflow.models.hybrid import HybridRecommender\n"
        f"m = HybridRecommender.load({str(path)!r})\n"
        "rec, _ = m.recommend(np.arange(3), k=3)\n"
        "sim = m.similar('Scream', 3, 'hybrid')\n"
        "print(json.dumps({'tf': 'tensorflow' in sys.modules or 'keras' in sys.modules, 'rec': rec.tolist(),"
        " 'sim': sim['item_id'].tolist()}))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["tf"] is False
    assert got["rec"] == model.recommend(np.arange(3), k=3)[0].tolist()
    assert got["sim"] == model.similar("Scream", 3, "hybrid")["item_id"].tolist()


# ----------------------------------------------------------------------------- similar by title


def test_similar_by_title(model):
    exact = model.similar("Toy Story (1995)", 5, "content")
    assert list(exact.columns) == ["item_id", "title", "score"] and len(exact) == 5
    assert exact.attrs["query_item_id"] == 0 and 0 not in exact["item_id"].tolist()
    assert np.all(np.diff(exact["score"].to_numpy()) <= 0)
    assert exact["title"].tolist() == [model.titles_[i] for i in exact["item_id"]]
    pd.testing.assert_frame_equal(model.similar("tOY sTORY", 5, "content"), exact)  # case, year stripped
    assert model.similar("The Lion King", 3).attrs["query_item_id"] == 2  # MovieLens "Lion King, The"
    assert model.similar("Toy Stroy", 3).attrs["query_item_id"] == 0  # fuzzy
    assert model.similar("se7en", 3).attrs["query_item_id"] == 25  # whole words inside a title
    assert model.similar("Scream", 3).attrs["query_item_id"] == 12  # exact beats "Scream 2"
    assert model.find_title("toy story 2") == 1


def test_unknown_title_lists_suggestions(model):
    with pytest.raises(LookupError, match="closest titles") as err:
        model.similar("Toy Storm Qqqqqq Zzzzzz", 5)
    assert "Toy Story" in str(err.value)
    with pytest.raises(ValueError, match="mode"):
        model.similar("Toy Story", 5, "popular")


def test_modes_give_different_neighbours(model):
    lists = {mode: model.similar_items(np.arange(24), 5, mode)[0] for mode in ("content", "cf", "hybrid")}
    assert not np.array_equal(lists["content"], lists["cf"])
    assert not np.array_equal(lists["content"], lists["hybrid"])
    assert not np.array_equal(lists["cf"], lists["hybrid"])
    cf, _ = model.similar_items(0, N_ITEMS, "cf")
    assert 25 not in cf and 0 not in cf and (cf >= 0).sum() == 24  # no CF vector: never a CF neighbour
    content, _ = model.similar_items(0, N_ITEMS, "content")
    assert 24 not in content and (content >= 0).sum() == 24
    assert np.all(model.similar_items(25, 3, "cf")[0] == -1)  # a query without a vector in that mode


def test_content_neighbours_follow_genres(model):
    # content vectors see genres directly: family items' nearest neighbours are family items
    nb, _ = model.similar_items(np.arange(12), 3, "content")
    assert (nb < 12).mean() > 0.9


# ----------------------------------------------------------------------------- pure functions


def test_genre_overlap_hand_checked():
    # 5 items on a plane; cosine neighbours are known exactly
    vectors = np.array([[1, 0], [0.9, 0.1], [0.8, 0.3], [0, 1], [-1, 0]], np.float32)
    genres = np.array(
        [
            [1, 1, 0],  # 0: A B
            [1, 0, 0],  # 1: A
            [0, 0, 1],  # 2: C
            [0, 1, 1],  # 3: B C
            [0, 0, 0],  # 4: no genre (never a query)
        ]
    )
    nb, _ = cosine_neighbours(vectors, np.arange(5), 2)
    assert nb.tolist() == [[1, 2], [0, 2], [1, 0], [2, 1], [3, 2]]
    out = genre_overlap_at_k(vectors, genres, k=2)
    # overlap: q0 {1: yes, 2: no} = 1/2; q1 {0: yes, 2: no} = 1/2; q2 {1: no, 0: no} = 0; q3 {2: yes, 1: no} = 1/2
    assert out["genre_overlap_at_2"] == pytest.approx((0.5 + 0.5 + 0 + 0.5) / 4)
    # jaccard: q0 (1/2 + 0)/2; q1 (1/2 + 0)/2; q2 (0 + 0)/2; q3 (1/2 + 0)/2
    assert out["genre_jaccard_at_2"] == pytest.approx((0.25 + 0.25 + 0 + 0.25) / 4)
    assert out["n_queries"] == 4
    sub = genre_overlap_at_k(vectors, genres, k=2, queries=np.array([0, 4]), valid=np.array([1, 1, 0, 1, 1], bool))
    # item 2 is not a candidate: q0's neighbours are 1 (A: shares) and 3 (B C: shares B); q4 has no genre
    assert sub == {"genre_overlap_at_2": 1.0, "genre_jaccard_at_2": pytest.approx((1 / 2 + 1 / 3) / 2), "n_queries": 1}
    assert np.isnan(genre_overlap_at_k(vectors, np.zeros((5, 3)), k=2)["genre_overlap_at_2"])


def test_text_helpers():
    assert canonical_title("Matrix, The (1999)") == "the matrix"
    assert canonical_title("  Toy   Story (1995) ") == "toy story"
    assert canonical_title("Femme Nikita, La (1990)") == "la femme nikita"
    items = catalogue()
    texts = item_texts(np.array([0, 14, 24]), items, context().tags, context().tmdb)
    assert texts[0].startswith("Toy Story . pixar") and "friendship" in texts[0] and "(1995)" not in texts[0]
    assert "haunted hotel" in texts[1] and texts[2] == ""
    z = text_features(texts + ["toy hotel ghost"], max_features=100, min_df=1, n_components=2, seed=0)
    assert z.shape == (4, 2) and np.all(z[2] == 0)
    np.testing.assert_allclose(np.linalg.norm(z[[0, 1, 3]], axis=1), np.sqrt(2), rtol=1e-5)
    assert text_features(["", ""], max_features=10, min_df=1, n_components=2, seed=0).shape == (2, 0)
    assert text_features(["the and", "of a"], max_features=10, min_df=1, n_components=2, seed=0).shape == (2, 0)


# ----------------------------------------------------------------------------- edge cases


def test_positive_rule_and_missing_side_data(data):
    train, _ = data
    implicit = Interactions(train.user_idx, train.item_idx, np.ones(len(train), np.float32), train.timestamps, train.user_ids, train.item_ids)
    m = HybridRecommender(**{**PARAMS, "epochs": 1}).fit(implicit)  # no context: content is empty
    assert m.positive_rule_ == "all"
    assert not m.valid_["content"].any() and m.content_dims_ == {"text": 0, "genres": 0, "numeric": 0}
    assert np.isnan(m.genre_overlap_["genre_overlap_at_10_hybrid"])  # no genres known
    with pytest.raises(LookupError):
        m.similar("Toy Story")
    rec, _ = m.recommend(np.arange(3), k=4)
    assert (rec >= 0).all()


def test_not_fitted_and_bad_params(data):
    train, _ = data
    with pytest.raises(NotFittedError):
        HybridRecommender().similar_items(0)
    with pytest.raises(NotFittedError):
        HybridRecommender().recommend(np.array([0]))
    with pytest.raises(ValueError):
        HybridRecommender(dim=0).fit(train)
    with pytest.raises(ValueError):
        HybridRecommender(cf_dropout=1.0).fit(train)
    with pytest.raises(ValueError):
        HybridRecommender(temperature=0).fit(train)
