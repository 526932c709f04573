"""The contract every registered model honours (after scikit-learn's ``parametrize_with_checks``).

Each check runs for every entry of ``recflow.models.MODELS``: a new model gets all of them by
being registered. ``FAST`` only shrinks a model's settings so the suite stays quick (TF models:
one epoch, tiny dims); a model missing from it runs with its defaults.

The data: 12 users x 15 items, 5-8 seeded random ratings per user (1-5 stars), all in train.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from recflow.experiments.config import RunConfig
from recflow.models import MODELS, build_model, load_model
from recflow.models.base import NotSupported, Recommender
from recflow.models.context import FitContext
from recflow.models.params import MODEL_PARAMS
from recflow.prep.interactions import Interactions, index_split

N_USERS, N_ITEMS = 12, 15
TF = dict(batch_size=32, epochs=1, jit_compile=False, threads=1)
FAST: dict[str, dict] = {
    "item2vec": dict(dim=4, epochs=2),
    "deepwalk": dict(dim=4, epochs=1, walks_per_item=2, walk_length=5),
    "mf": dict(factors=3, epochs=3),
    "user_cf": dict(n_components=4, n_neighbors=5, ef=20, M=4),
    "two_tower": dict(dim=4, hidden=[8], shared_negatives=None, **TF),
    "dssm": dict(dim=4, hidden=[8], **TF),
    "hybrid": dict(dim=4, hidden=[8], text_components=0, batch_size=32, epochs=1, threads=1, genre_overlap_queries=None),
    "mult_vae": dict(dim=4, hidden=[8], batch_size=5, epochs=2, threads=1),
    "rank_fusion": dict(members=("ease", "popular"), weights=(2.0, 1.0)),
}


def tiny_train() -> Interactions:
    rng = np.random.default_rng(7)
    rows = []
    for u in range(N_USERS):
        for i in rng.choice(N_ITEMS, int(rng.integers(5, 9)), replace=False):
            rows.append((u, int(i), float(rng.integers(1, 6))))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]).assign(timestamp=np.arange(len(rows)), split="train")
    train = index_split(frame)["train"]
    assert (train.n_users, train.n_items) == (N_USERS, N_ITEMS)
    return train


TRAIN = tiny_train()
USERS = np.arange(N_USERS)


def params_of(name: str) -> dict:
    return dict(FAST.get(name, {}))


def fresh(name: str) -> Recommender:
    return build_model(MODEL_PARAMS[name](**params_of(name)))


def fit_fresh(name: str, **context) -> Recommender:
    """A fresh fit; an ensemble gets its members fitted (the module's shared fits) in ``context.members``."""
    model = fresh(name)
    members = {member: fitted_model(member) for member in model.member_names()}
    return model.fit(TRAIN, FitContext(members=members or None, **context))


_FITTED: dict[str, Recommender] = {}


def fitted_model(name: str) -> Recommender:
    if name not in _FITTED:
        _FITTED[name] = fit_fresh(name)
    return _FITTED[name]


@pytest.fixture(params=sorted(MODELS))
def name(request) -> str:
    return request.param


@pytest.fixture
def fitted(name) -> Recommender:
    """One fit per model for the whole module (the checks only read it)."""
    return fitted_model(name)


def test_fit_returns_the_model_and_score_is_float32_users_by_items_without_nan(fitted):
    scores = fitted.score(USERS)
    assert scores.shape == (N_USERS, N_ITEMS) and scores.dtype == np.float32
    assert not np.isnan(scores).any()
    assert (fitted.n_users, fitted.n_items) == (N_USERS, N_ITEMS)


def test_recommend_masks_seen_items_and_pads_with_minus_one(fitted):
    items, scores = fitted.recommend(USERS, k=N_ITEMS)
    assert items.shape == scores.shape == (N_USERS, N_ITEMS) and items.dtype == np.int64
    seen = TRAIN.seen
    for u in USERS:
        real = items[u][items[u] >= 0]
        assert not set(real.tolist()) & set(seen[u].indices.tolist()), f"user {u} got a seen item"
        assert len(real) <= N_ITEMS - seen[u].nnz
        assert (items[u][len(real) :] == -1).all() and np.isneginf(scores[u][len(real) :]).all()  # padding at the tail
        assert np.all(np.diff(scores[u][: len(real)]) <= 0)  # best first
    assert (items >= 0).sum(axis=1).max() > 0


def test_save_and_load_give_identical_scores_without_unpickling(fitted, tmp_path, monkeypatch):
    fitted.save(tmp_path / "model")

    def refuse(*args, **kwargs):
        raise AssertionError("load unpickled something")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    back = load_model(tmp_path / "model")
    assert type(back) is type(fitted) and back.get_params() == fitted.get_params()
    np.testing.assert_array_equal(back.score(USERS), fitted.score(USERS))
    np.testing.assert_array_equal(back.recommend(USERS, 5)[0], fitted.recommend(USERS, 5)[0])
    if fitted.predicts_ratings:
        np.testing.assert_array_equal(back.predict(TRAIN.user_idx, TRAIN.item_idx), fitted.predict(TRAIN.user_idx, TRAIN.item_idx))


def test_predict_gives_unknown_indices_the_fallback_and_refuses_others(fitted):
    if not fitted.predicts_ratings:
        with pytest.raises(NotImplementedError, match="does not predict ratings"):
            fitted.predict([0], [0])
        return
    known = fitted.predict(TRAIN.user_idx, TRAIN.item_idx)
    assert known.shape == (len(TRAIN),) and np.isfinite(known).all()
    unknown = fitted.predict([-1, 0, -1], [0, -1, -1])  # the rule: -1 is unknown and gets the fallback
    assert unknown.shape == (3,) and np.isfinite(unknown).all()
    for users, items in (([N_USERS], [0]), ([0], [N_ITEMS]), ([-2], [0]), ([0], [-2])):
        with pytest.raises(IndexError, match=r"or be -1 \(unknown\)"):
            fitted.predict(users, items)
    with pytest.raises(ValueError, match="entries"):
        fitted.predict([0, 1], [0])


def test_the_same_seed_gives_the_same_scores(name, fitted):
    np.testing.assert_array_equal(fit_fresh(name).score(USERS), fitted.score(USERS))


def test_params_round_trip_through_the_config(name):
    members = [{"name": member} for member in fresh(name).member_names()]  # an ensemble's members are listed too
    cfg = RunConfig.model_validate({"models": [*members, {"name": name, **params_of(name)}]})
    model = build_model(cfg.model(name))
    again = RunConfig.model_validate({"models": [*members, {"name": name, **model.get_params()}]}).model(name)
    assert again == cfg.model(name)
    assert build_model(again).get_params() == model.get_params()


def test_declared_vector_spaces_are_served_and_undeclared_ones_refused(fitted):
    spaces = type(fitted).vector_spaces()
    assert spaces == fitted.vector_spaces()  # declared by the class, before any fit
    item_spaces = [s.name for s in spaces if s.entity == "item"]
    assert item_spaces == list(fitted.item_spaces)
    for space in item_spaces:
        vectors = fitted.item_embeddings(space)
        assert vectors.ndim == 2 and len(vectors) == N_ITEMS and vectors.dtype == np.float32
    if fitted.user_space:
        users = fitted.user_embeddings()
        assert users.ndim == 2 and len(users) == N_USERS and users.dtype == np.float32
    else:
        with pytest.raises(NotSupported):
            fitted.user_embeddings()
    if not item_spaces:
        for call in (fitted.item_embeddings, lambda: fitted.similar_items(0)):
            with pytest.raises(NotSupported, match="no item vectors"):
                call()
    else:
        with pytest.raises(ValueError, match="space must be one of"):
            fitted.item_embeddings("no such space")


def test_similar_items_excludes_the_query_and_pads_with_minus_one(fitted):
    if not fitted.item_spaces:
        pytest.skip("declares no item space")
    for space in fitted.item_spaces:
        items, scores = fitted.similar_items(np.arange(N_ITEMS), N_ITEMS, space)
        assert items.shape == (N_ITEMS, N_ITEMS)
        for q in range(N_ITEMS):
            real = items[q][items[q] >= 0]
            assert q not in real and len(set(real.tolist())) == len(real)
            assert (items[q][len(real) :] == -1).all() and np.all(np.diff(scores[q][: len(real)]) <= 1e-6)
        single, _ = fitted.similar_items(3, 4, space)
        np.testing.assert_array_equal(single, items[3][:4])


def test_declared_dot_factors_reproduce_the_scores(fitted):
    factors = fitted.dot_factors()
    if factors is None:
        pytest.skip("scoring is not a plain dot product")
    U, V, valid = factors
    assert U.shape[0] == N_USERS and V.shape[0] == N_ITEMS and valid.shape == (N_ITEMS,)
    expected = fitted.score(USERS).astype(np.float64)
    got = U.astype(np.float64) @ V.T.astype(np.float64)
    got[:, ~valid] = -np.inf
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-4, atol=1e-4)


def test_a_framework_flavour_comes_with_its_model(fitted):
    if fitted.framework_flavour is None:
        with pytest.raises(NotSupported):
            fitted.framework_model()
    else:
        assert fitted.framework_model() is not None


def test_a_model_that_trains_in_epochs_reports_each_epoch_within_its_budget(name):
    """``trains_in_epochs`` is declared, not guessed from an ``epochs`` parameter: the train task sizes
    its progress bar by ``epoch_budget()``, and a model reporting epochs without declaring it fails."""
    reported = []
    model = fit_fresh(name, on_epoch_end=lambda epoch, logs: reported.append(epoch))
    if model.trains_in_epochs:
        assert reported == list(range(1, len(reported) + 1)) and 1 <= len(reported) <= model.epoch_budget()
    else:
        assert reported == [] and model.epoch_budget() is None


# ----------------------------------------------------------------------------- warm starts


def _growing_log():
    """60 users x 25 items, 6-10 rows each; each user's last row is valid. The earlier fit saw the
    train rows before the 85th-percentile timestamp of users 0-49 on items 0-23: users 50-59 and
    item 24 are new tonight, and old users have new rows."""
    rng = np.random.default_rng(11)
    rows = []
    for u in range(60):
        for t, i in enumerate(rng.choice(25, int(rng.integers(6, 11)), replace=False)):
            rows.append((u, int(i), float(rng.integers(1, 6)), int(rng.integers(0, 1000)) + t))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    last = frame.groupby("user_id")["timestamp"].transform("max") == frame["timestamp"]
    frame["split"] = np.where(last, "valid", "train")
    parts = index_split(frame)
    train = frame[frame["split"] == "train"]
    old = train[(train["timestamp"] < train["timestamp"].quantile(0.85)) & (train["user_id"] < 50) & (train["item_id"] < 24)]
    return index_split(old.assign(split="train"))["train"], parts["train"], parts["valid"]


OLD, NEW, VALID = _growing_log()


def _recall_with_ci(model: Recommender) -> dict:
    from recflow.evaluation.evaluate import evaluate_ranking_per_user, with_confidence_intervals

    metrics, per_user = evaluate_ranking_per_user(model, NEW, VALID, ks=[10])
    return with_confidence_intervals(metrics, per_user, n_boot=500)


WARM = sorted(n for n, cls in MODELS.items() if cls.warm_starts)


def _saved_and_loaded(model: Recommender, path) -> Recommender:
    """The earlier fit as the train task hands it over: saved by its own fit, loaded from the folder."""
    model.save(path)
    return load_model(path)


@pytest.mark.parametrize("warm_name", WARM)
def test_a_warm_fit_on_old_plus_new_is_as_good_as_a_cold_fit_within_its_ci(warm_name, tmp_path):
    from recflow.models.warm import WarmStart

    earlier = _saved_and_loaded(fresh(warm_name).fit(OLD, FitContext()), tmp_path / "earlier")
    warm = WarmStart.between(earlier, OLD.user_ids, OLD.item_ids, NEW)
    assert (len(warm.user_map), len(warm.item_map)) == (60, 25) and warm.n_new_rows > 0
    warm_fit = fresh(warm_name).fit(NEW, FitContext(warm_start=warm))
    cold_fit = fresh(warm_name).fit(NEW, FitContext())
    assert (warm_fit.n_users, warm_fit.n_items) == (60, 25)  # the id maps grew
    assert warm_fit.warm_started_ and not cold_fit.warm_started_
    got, cold = _recall_with_ci(warm_fit), _recall_with_ci(cold_fit)
    assert got["recall_at_10"] >= cold["recall_at_10_ci_low"], (got["recall_at_10"], cold)


#: per warm model, the parameters with which a warm fit hardly moves (a learning rate near 0): it ends
#: where it started, so its scores show where the earlier fit's rows went; ease and edlae are exact
STILL = {
    "two_tower": dict(lr=1e-9),
    "dssm": dict(lr=1e-9),
    "hybrid": dict(lr=1e-9),
    "mult_vae": dict(lr=1e-9),
    "autorec": dict(learning_rate=1e-9),
    "bpr": dict(lr=1e-9),
    "ease": {},
    "edlae": {},
    "mf": {},  # a warm epoch solves only the users and items with new rows
}
#: warm models whose fit moves every row whatever the settings, so no fit shows the carried rows as they were
MOVING = {
    "item2vec": "gensim's learning rate (alpha) is not a parameter, and negative sampling moves any item's context vector",
    "deepwalk": "gensim's learning rate (alpha) is not a parameter, and negative sampling moves any item's context vector",
}


def _shifted_log():
    """The earlier log (users 10-59 x items 5-24) and its side tables, then tonight's: it plus users 0-9 on
    items 0-4 only, with a genre and an occupation the earlier fit never saw. Every known id's index
    moves (by 10 users, 5 items) and nothing the old users rated, or the old items are, changes."""
    rng = np.random.default_rng(5)
    rows = [(u, int(i), float(rng.integers(1, 6))) for u in range(10, 60) for i in rng.choice(np.arange(5, 25), int(rng.integers(5, 10)), replace=False)]
    rows += [(u, int(i), float(rng.integers(1, 6))) for u in range(10) for i in rng.choice(5, 3, replace=False)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating"]).assign(timestamp=np.arange(len(rows)), split="train")
    items = pd.DataFrame({"item_id": np.arange(25), "genres": [["New"] if i < 5 else [["A", "B"], ["B"], ["C", "A"]][i % 3] for i in range(25)]})
    ids = np.arange(60)
    users = pd.DataFrame({"user_id": ids, "gender": np.where(ids % 2, "F", "M"), "occupation": np.where(ids < 10, 9, ids % 3)})
    old = FitContext(items=items[items["item_id"] >= 5], users=users[users["user_id"] >= 10])
    return index_split(frame[frame["user_id"] >= 10])["train"], old, index_split(frame)["train"], FitContext(items=items, users=users)


def test_every_warm_model_either_shows_its_carried_rows_or_says_why_none_can():
    assert set(STILL) | set(MOVING) == set(WARM) and not set(STILL) & set(MOVING)


#: the same check on layouts the defaults do not build (slow: a TF fit pair each): a history tower, no hidden layers, a top_items subset
CARRY_CASES = [pytest.param(name, {}, id=name) for name in sorted(STILL)] + [
    pytest.param(name, layout, id=case, marks=pytest.mark.slow)
    for name, layout, case in (
        ("two_tower", dict(history=4, user_id=False), "two_tower-history"),
        ("dssm", dict(hidden=[]), "dssm-no-hidden"),
        ("hybrid", dict(hidden=[]), "hybrid-no-hidden"),
        ("mult_vae", dict(hidden=[], top_items=18), "mult_vae-top-items"),
    )
]


@pytest.mark.parametrize(("warm_name", "layout"), CARRY_CASES)
def test_a_warm_fit_carries_each_old_users_and_items_rows_to_their_new_index_by_id(warm_name, layout, tmp_path):
    """A position-based copy would give old user 10 (index 0 before, 10 tonight) user 0's rows."""
    from recflow.models.warm import WarmStart

    old, old_context, new, context = _shifted_log()
    params = {**params_of(warm_name), **STILL[warm_name], **layout}
    earlier = _saved_and_loaded(build_model(MODEL_PARAMS[warm_name](**params)).fit(old, old_context), tmp_path / "earlier")
    context.warm_start = warm = WarmStart.between(earlier, old.user_ids, old.item_ids, new)
    assert warm.user_map.tolist() == [-1] * 10 + list(range(50)) and warm.item_map.tolist() == [-1] * 5 + list(range(20))
    fit = build_model(MODEL_PARAMS[warm_name](**params)).fit(new, context)
    assert fit.warm_started_
    got = fit.score(np.arange(10, 60))[:, 5:]
    np.testing.assert_allclose(got, earlier.score(np.arange(50)), rtol=1e-4, atol=1e-5)
    for space in fit.item_spaces:
        np.testing.assert_allclose(fit.item_embeddings(space)[5:], earlier.item_embeddings(space), rtol=1e-4, atol=1e-5)
    if fit.user_space:
        np.testing.assert_allclose(fit.user_embeddings()[10:], earlier.user_embeddings(), rtol=1e-4, atol=1e-5)


def test_a_model_that_does_not_warm_start_says_why(name):
    model = fresh(name)
    refusal = model.warm_start_refusal()
    assert (refusal is None) == type(model).warm_starts
    if refusal is not None:
        assert name in refusal


def test_folding_in_a_training_users_own_items_gives_that_users_scores(fitted):
    """A model declaring ``folds_in_history`` is a function of the history: a training user's own
    training items, folded in as if a new user, score exactly as that user does (what
    ``POST /recommend`` of ``recflow api`` relies on for a user outside the training data)."""
    if not fitted.folds_in_history:
        with pytest.raises(NotSupported):
            fitted.score_history([[0, 1]])
        return
    seen = TRAIN.seen.tocsr()
    histories = [seen.indices[seen.indptr[u] : seen.indptr[u + 1]].tolist()[::-1] for u in USERS]  # order does not matter
    got, expected = fitted.score_history(histories), fitted.score(USERS)
    assert got.dtype == np.float32 and got.shape == (N_USERS, N_ITEMS)
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-5, atol=1e-5)


def test_a_history_with_an_unknown_item_index_is_refused(fitted):
    if not fitted.folds_in_history:
        pytest.skip("does not fold in histories")
    with pytest.raises(IndexError):
        fitted.score_history([[0, N_ITEMS]])
