"""The shared ``recommend`` (masking, padding, ties, batching) and save/load, via a fixed-score model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from recflow.models import load_model
from recflow.models.base import NotFittedError, Recommender
from recflow.prep.interactions import Interactions
from recflow.utils.numeric import topk


def interactions(users, items, n_users, n_items) -> Interactions:
    users, items = np.asarray(users, np.int32), np.asarray(items, np.int32)
    return Interactions(
        users, items, np.ones(len(users), np.float32), np.zeros(len(users), np.int64),
        np.arange(n_users) + 100, np.arange(n_items) + 1000,
    )  # fmt: skip


class Fixed(Recommender):
    """Scores are a fixed table given at fit time (a stand-in for any learned model)."""

    name = "fixed"

    def __init__(self, table: list | None = None):
        self.table = table

    def fit(self, train):
        self.scores_ = np.asarray(self.table, np.float32)
        self._remember_seen(train)
        return self

    def score(self, users):
        return self.scores_[np.asarray(users)].copy()

    def _state(self):
        return {"scores": self.scores_}

    def _restore(self, arrays):
        self.scores_ = arrays["scores"]


TABLE = [
    [0.1, 0.9, 0.5, 0.5, 0.2],  # user 0
    [1.0, 1.0, 1.0, 1.0, 1.0],  # user 1: all tied
    [0.3, 0.2, 0.1, 0.0, -1.0],  # user 2
]
# user 0 saw item 1, user 2 saw items 0 and 1
TRAIN = interactions([0, 2, 2], [1, 0, 1], 3, 5)


@pytest.fixture
def model():
    return Fixed(TABLE).fit(TRAIN)


def test_unfitted_model_refuses(tmp_path):
    with pytest.raises(NotFittedError):
        Fixed(TABLE).recommend([0])
    with pytest.raises(NotFittedError):
        Fixed(TABLE).save(tmp_path / "m")


def test_shapes_order_and_seen_masking(model):
    items, scores = model.recommend([0, 1, 2], k=3)
    assert items.shape == (3, 3) and items.dtype == np.int64
    assert scores.shape == (3, 3) and scores.dtype == np.float32
    # user 0: item 1 (0.9) is seen; 2 and 3 tie at 0.5 -> lower index first
    np.testing.assert_array_equal(items, [[2, 3, 4], [0, 1, 2], [2, 3, 4]])
    np.testing.assert_allclose(scores[0], [0.5, 0.5, 0.2])
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_exclude_seen_off(model):
    items, _ = model.recommend([0, 2], k=2, exclude_seen=False)
    np.testing.assert_array_equal(items, [[1, 2], [0, 1]])


def test_exclude_matrix_is_honoured(model):
    exclude = sp.csr_matrix(([1, 1, 1], ([0, 1, 1], [2, 0, 1])), shape=(3, 5))
    items, _ = model.recommend([0, 1], k=3, exclude=exclude)
    np.testing.assert_array_equal(items, [[3, 4, 0], [2, 3, 4]])
    # any sparse format is accepted; a wrong shape is not
    items2, _ = model.recommend([0, 1], k=3, exclude=exclude.tocoo())
    np.testing.assert_array_equal(items, items2)
    with pytest.raises(ValueError):
        model.recommend([0], k=3, exclude=sp.csr_matrix((3, 4)))


def test_padding_when_fewer_items_than_k(model):
    # user 2 has 3 unseen items; k = 7 > 5 items
    items, scores = model.recommend([2], k=7)
    np.testing.assert_array_equal(items, [[2, 3, 4, -1, -1, -1, -1]])
    assert np.all(np.isneginf(scores[0, 3:]))
    # a masked item never comes back, even when k reaches into masked territory
    items, _ = model.recommend([0], k=5, exclude=sp.csr_matrix(([1, 1, 1, 1], ([0] * 4, [0, 2, 3, 4])), shape=(3, 5)))
    np.testing.assert_array_equal(items, [[-1, -1, -1, -1, -1]])


def test_ties_broken_by_lower_index_at_the_cut():
    # 1 distinct winner and 999 tied items: the cut must keep the lowest tied indices
    table = np.zeros((2, 1000), np.float32)
    table[:, 500] = 1.0
    m = Fixed(table.tolist()).fit(interactions([], [], 2, 1000))
    items, _ = m.recommend([0, 1], k=5)
    np.testing.assert_array_equal(items, [[500, 0, 1, 2, 3]] * 2)


def test_topk_matches_stable_sort_on_ties():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n = int(rng.integers(1, 50))
        k = int(rng.integers(1, n + 3))
        s = rng.integers(0, 3, (4, n)).astype(np.float32)
        s[rng.random(s.shape) < 0.2] = -np.inf
        np.testing.assert_array_equal(topk(s, k), np.argsort(-s, axis=1, kind="stable")[:, :k])


def test_topk_on_wide_rows_matches_stable_sort_with_ties_and_masks():
    # rows wider than numeric._PREFILTER_MIN take the group-maxima prefilter; it must keep the same
    # tie rule, including rows that are mostly -inf (ranked whole) and a row of nothing but -inf
    rng = np.random.default_rng(1)
    s = rng.integers(0, 4, (6, 5000)).astype(np.float32)
    s[1, rng.random(5000) < 0.999] = -np.inf
    s[2] = -np.inf
    s[3, :4990] = 0.0
    s[3, 4995] = 1.0  # the winner sits in the columns past the last whole group
    for k in (1, 7, 50):
        np.testing.assert_array_equal(topk(s, k), np.argsort(-s, axis=1, kind="stable")[:, :k])


def test_batching_and_determinism(model):
    a = model.recommend([2, 0, 1, 0], k=4)
    b = model.recommend([2, 0, 1, 0], k=4, batch_size=1)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[0][1], a[0][3])  # same user twice, same answer


def test_bad_users_and_k(model):
    with pytest.raises(IndexError):
        model.recommend([-1], k=2)  # would silently wrap onto user 2's seen row
    with pytest.raises(IndexError):
        model.recommend([3], k=2)
    with pytest.raises(ValueError):
        model.recommend([0], k=0)
    empty_items, empty_scores = model.recommend([], k=2)
    assert empty_items.shape == (0, 2) and empty_scores.shape == (0, 2)


def test_nan_scores_are_an_error():
    table = np.array(TABLE)
    table[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Fixed(table.tolist()).fit(TRAIN).recommend([0], k=2)


def test_read_only_scores_are_not_written(model):
    class Shared(Fixed):
        def score(self, users):
            out = self.scores_[np.asarray(users)]
            out.flags.writeable = False
            return out

    m = Shared(TABLE).fit(TRAIN)
    before = m.scores_.copy()
    np.testing.assert_array_equal(m.recommend([0, 1, 2], k=3)[0], model.recommend([0, 1, 2], k=3)[0])
    np.testing.assert_array_equal(m.scores_, before)


def test_save_load_round_trip(model, tmp_path, monkeypatch):
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "params.json").read_text()) == {"name": "fixed", "params": {"table": TABLE}}
    loaded = Fixed.load(tmp_path / "m")
    assert loaded.n_users == 3 and loaded.n_items == 5
    for x, y in zip(model.recommend([0, 1, 2], k=5), loaded.recommend([0, 1, 2], k=5)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(loaded._seen.toarray(), model._seen.toarray())
    # the registry's load_model dispatches on the saved name
    from recflow import models

    monkeypatch.setitem(models.MODELS.registered, "fixed", Fixed)
    assert isinstance(load_model(tmp_path / "m"), Fixed)


def test_load_refuses_another_model(model, tmp_path):
    model.save(tmp_path / "m")

    class Other(Fixed):
        name = "other"

    with pytest.raises(ValueError):
        Other.load(tmp_path / "m")


def test_inside_memory_mapped_a_loaded_models_large_arrays_are_read_only_maps_that_score_alike(tmp_path, monkeypatch):
    """``recflow recommend`` loads EASE this way: its items x items ``B`` is mapped, not read (the pages of
    the user's rows are all a query touches); small arrays and loads outside the context are read as before."""
    import recflow.models.base as base
    from recflow.models.ease import EASERecommender

    train = interactions([0, 0, 1, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2, 3], 3, 4)
    EASERecommender(l2=1.0).fit(train).save(tmp_path / "ease")
    monkeypatch.setattr(base, "MMAP_MIN_BYTES", 64)  # B is 4 x 4 float32: 64 bytes
    read = load_model(tmp_path / "ease")
    with base.memory_mapped():
        mapped = load_model(tmp_path / "ease")
    assert isinstance(mapped.B_.base, np.memmap) or isinstance(mapped.B_, np.memmap)
    assert not mapped.B_.flags.writeable and read.B_.flags.writeable
    np.testing.assert_array_equal(mapped.score(np.arange(3)), read.score(np.arange(3)))


def test_the_registry_refuses_a_second_class_under_a_taken_name():
    from recflow import models

    class Impostor(Fixed):
        name = "ease"

    with pytest.raises(ValueError, match="'ease' is already registered"):
        models.MODELS.register(Impostor)
