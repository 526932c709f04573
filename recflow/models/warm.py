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
the passes run over all training rows, not the new ones alone, so what was learnt is refined
rather than forgotten.
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
    see; ``share_new`` their share of this fit's training rows.
    """

    model: Recommender
    user_map: np.ndarray
    item_map: np.ndarray
    n_new_rows: int
    n_rows: int

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
        old_seen = remap_matrix(model._seen, user_map, item_map, (train.n_users, train.n_items))
        known = int(train.seen.multiply(old_seen).nnz)
        return cls(model, user_map, item_map, n_new_rows=int(train.seen.nnz) - known, n_rows=int(train.seen.nnz))

    @property
    def share_new(self) -> float:
        return self.n_new_rows / self.n_rows if self.n_rows else 0.0

    def grow(self, old: np.ndarray, mapping: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        """Rows of ``old`` (earlier indices) moved to the new indices; ``fresh`` (one row per new index) where unknown."""
        return grow_rows(old, mapping, fresh)

    def grow_users(self, old: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        return self.grow(old, self.user_map, fresh)

    def grow_items(self, old: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        return self.grow(old, self.item_map, fresh)


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
