"""Warm starts: a new fit that continues from an earlier fit of the same model on a prefix of the data.

A nightly retrain on a growing log sees yesterday's interactions plus today's. A model that
declares ``warm_starts`` (``recflow.models.base.Recommender``) reads ``context.warm_start``, a
``WarmStart``: the earlier fit plus the maps between its indices and this fit's. Users and items
are dense indices of each split (``recflow.prep.interactions``), so the same raw id can have
another index tonight (a new id sorted before it); the maps are made once here from the two
splits' raw ids, and every model grows its state with ``grow`` (rows of known ids move to their
new index, new ids get the model's fresh initial value).

How many epochs a warm fit trains is one rule for every model that trains in epochs
(``warm_epochs``): its ``epochs`` scaled by the share of training rows the earlier fit did not
see, at least the class's ``warm_min_epochs``, never more than ``epochs``. The new rows are a
small share on a night (0.5% at 25M), so a warm fit costs a few passes instead of ``epochs``;
what a pass runs over is the model's: ``replay_rows`` gives the models that train on rows (bpr) and
sentences (item2vec) every row of each user whose history changed tonight plus a seeded replay
sample of the other rows, ``warm_replay`` of them per changed row, so a night's epochs cost what
changed; yesterday's state carries the rest, and the replay keeps it from drifting towards tonight's
users only ("refine, don't forget" on a budget). ``warm_replay=None`` replays every row (a warm pass
over all training rows, the cost of a cold epoch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recflow.prep.interactions import Interactions

if TYPE_CHECKING:
    from recflow.models.base import Recommender


@dataclass(frozen=True)
class WarmStart:
    """The earlier fit and how its indices map onto this fit's.

    ``user_map[new_index]`` / ``item_map[new_index]``: that id's index in the earlier fit, ``-1``
    for an id it never saw. ``n_new_rows``: training rows (user, item pairs) the earlier fit did not
    see; ``share_new`` their share of this fit's training rows. ``new_row`` (when known): per row of
    tonight's training part, whether its pair is one of those.
    """

    model: Recommender
    user_map: np.ndarray
    item_map: np.ndarray
    n_new_rows: int
    n_rows: int
    new_row: np.ndarray | None = None

    @classmethod
    def between(cls, model: Recommender, old_user_ids: np.ndarray, old_item_ids: np.ndarray, train: Interactions) -> WarmStart:
        """Maps from the earlier split's raw ids (its ``user_ids`` / ``item_ids``) onto ``train``'s.

        An id of the earlier fit that is gone from tonight's split (the log is append-only, so
        only through a filter) is simply dropped.
        """
        if (len(old_user_ids), len(old_item_ids)) != (model.n_users, model.n_items):
            raise ValueError(f"the earlier fit has a {model.n_users} x {model.n_items} index, its split's ids are {len(old_user_ids)} x {len(old_item_ids)}")
        user_map = ids_lookup(old_user_ids, train.user_ids)
        item_map = ids_lookup(old_item_ids, train.item_ids)
        old_seen = remap_matrix(model._seen, user_map, item_map, (train.n_users, train.n_items)).tocoo()
        old_keys = np.sort(old_seen.row.astype(np.int64) * train.n_items + old_seen.col)
        new_row = ~sorted_contains(old_keys, train.user_idx.astype(np.int64) * train.n_items + train.item_idx)
        return cls(model, user_map, item_map, n_new_rows=int(new_row.sum()), n_rows=len(train), new_row=new_row)

    @property
    def share_new(self) -> float:
        return self.n_new_rows / self.n_rows if self.n_rows else 0.0

    def changed_users(self, train: Interactions) -> np.ndarray:
        """Per user of ``train``: whether any of their training rows is new tonight (a new user, or an old one with new rows)."""
        changed = np.zeros(train.n_users, bool)
        changed[train.user_idx[self._new_row(train)]] = True
        return changed

    def replay_rows(self, train: Interactions, replay: float | None, rng: np.random.Generator) -> np.ndarray:
        """Training row indices a warm pass runs over (sorted): every row of each changed user, and a uniform
        sample without replacement of ``ceil(replay x`` that many ``)`` of the other rows (all of them when
        fewer, or when ``replay`` is None), drawn from ``rng`` (the model's seeded generator)."""
        changed = self.changed_users(train)[train.user_idx]
        return replay_sample(changed, replay, rng)

    def _new_row(self, train: Interactions) -> np.ndarray:
        if self.new_row is None or len(self.new_row) != len(train):
            raise ValueError(f"this warm start knows no new rows for a training part of {len(train)} rows (made by WarmStart.between for it?)")
        return self.new_row

    def grow(self, old: np.ndarray, mapping: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        """Rows of ``old`` (earlier indices) moved to the new indices; ``fresh`` (one row per new index) where unknown."""
        return grow_rows(old, mapping, fresh)

    def grow_users(self, old: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        return self.grow(old, self.user_map, fresh)

    def grow_items(self, old: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        return self.grow(old, self.item_map, fresh)


def replay_sample(changed: np.ndarray, replay: float | None, rng: np.random.Generator) -> np.ndarray:
    """Indices (sorted) of every ``changed`` entry plus ``min(#unchanged, ceil(replay * #changed))`` unchanged
    ones, uniform without replacement from ``rng``; every index when ``replay`` is None."""
    changed = np.asarray(changed, bool)
    if replay is None:
        return np.arange(len(changed))
    if float(replay) < 0:
        raise ValueError(f"warm_replay must be >= 0 (unchanged rows replayed per changed row) or None (all), got {replay}")
    kept, others = np.flatnonzero(changed), np.flatnonzero(~changed)
    n = min(len(others), math.ceil(float(replay) * len(kept)))
    return np.sort(np.concatenate([kept, rng.choice(others, n, replace=False) if n else others[:0]]))


def sorted_contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Per entry of ``keys``: whether it is in ``sorted_keys`` (ascending). The keys are looked up in
    ascending order (NumPy's binary search is several times faster on ascending queries at 25M)."""
    if not len(sorted_keys):
        return np.zeros(len(keys), bool)
    order = np.argsort(keys, kind="stable")
    pos = np.empty(len(keys), np.int64)
    pos[order] = np.searchsorted(sorted_keys, keys[order])
    pos = np.minimum(pos, len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


def grow_rows(old: np.ndarray, mapping: np.ndarray, fresh: np.ndarray, axis: int = 0) -> np.ndarray:
    """``fresh`` with its slices along ``axis`` taken from ``old`` where ``mapping`` (one entry per slice
    of ``fresh``: the earlier position, ``-1`` for none) names one; the other axes must agree."""
    old, fresh, mapping = np.asarray(old), np.asarray(fresh), np.asarray(mapping, dtype=np.int64)
    if mapping.shape != (fresh.shape[axis],):
        raise ValueError(f"the map has {len(mapping)} entries for {fresh.shape[axis]} rows along axis {axis}")
    if np.delete(old.shape, axis).tolist() != np.delete(fresh.shape, axis).tolist():
        raise ValueError(f"an earlier array of shape {old.shape} cannot grow into {fresh.shape} along axis {axis}")
    if mapping.size and mapping.max() >= old.shape[axis]:
        raise IndexError(f"the map names position {mapping.max()}, the earlier array has {old.shape[axis]} along axis {axis}")
    out = np.array(fresh, copy=True)
    known = np.flatnonzero(mapping >= 0)
    where = [slice(None)] * out.ndim
    where[axis] = known
    out[tuple(where)] = np.take(old, mapping[known], axis=axis)
    return out


def ids_lookup(old_ids: np.ndarray, new_ids: np.ndarray) -> np.ndarray:
    """For each of ``new_ids`` (sorted), its position in ``old_ids`` (sorted), ``-1`` where absent."""
    old_ids = np.asarray(old_ids)
    if not len(old_ids):
        return np.full(len(new_ids), -1, dtype=np.int64)
    pos = np.clip(np.searchsorted(old_ids, new_ids), 0, len(old_ids) - 1)
    return np.where(old_ids[pos] == new_ids, pos, -1).astype(np.int64)


def remap_matrix(old: sp.csr_matrix, user_map: np.ndarray, item_map: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """An earlier users x items matrix on the new indices (entries of ids now absent are dropped)."""
    old_to_new_u = _inverse(user_map, old.shape[0])
    old_to_new_i = _inverse(item_map, old.shape[1])
    coo = old.tocoo()
    r, c = old_to_new_u[coo.row], old_to_new_i[coo.col]
    keep = (r >= 0) & (c >= 0)
    return sp.csr_matrix((coo.data[keep], (r[keep], c[keep])), shape=shape)


def _inverse(mapping: np.ndarray, n_old: int) -> np.ndarray:
    inverse = np.full(n_old, -1, dtype=np.int64)
    known = mapping >= 0
    inverse[mapping[known]] = np.flatnonzero(known)
    return inverse


def warm_epochs(epochs: int, share_new: float, minimum: int) -> int:
    """``epochs`` scaled by the share of new training rows, at least ``minimum``, at most ``epochs``."""
    return int(min(int(epochs), max(int(minimum), math.ceil(int(epochs) * float(share_new)))))
