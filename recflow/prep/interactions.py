"""The indexed view of a split that models and metrics work on.

Raw MovieLens ids are sparse and arbitrary; models want dense 0..n-1 indices. ``Interactions``
fixes one user index and one item index for a whole split (train, valid and test share them),
so a model fitted on train scores exactly the items the evaluator ranks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recflow.utils.numeric import distinct

if TYPE_CHECKING:  # pandas is imported where a frame is made or read: loading a saved model for a query needs none (recflow recommend)
    import pandas as pd


@dataclass(frozen=True, eq=False)
class Interactions:
    """Ratings of one part of a split, on indices shared by the whole split.

    ``user_idx``/``item_idx`` are int32 arrays into ``user_ids``/``item_ids`` (the raw ids);
    ``ratings`` float32 and ``timestamps`` int64 are aligned with them.
    """

    user_idx: np.ndarray
    item_idx: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.user_idx)

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """users x items CSR of ratings (duplicates are impossible after validation)."""
        return sp.csr_matrix(
            (self.ratings.astype(np.float32), (self.user_idx, self.item_idx)),
            shape=(self.n_users, self.n_items),
        )

    @cached_property
    def seen(self) -> sp.csr_matrix:
        """users x items CSR of ones where a user interacted: the mask for exclude_seen."""
        m = self.matrix.copy()
        m.data = np.ones_like(m.data)
        return m

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            {
                "user_id": self.user_ids[self.user_idx],
                "item_id": self.item_ids[self.item_idx],
                "rating": self.ratings,
                "timestamp": self.timestamps,
            }
        )

    def user_index(self, raw_user_ids) -> np.ndarray:
        """Indices of raw user ids; -1 where a user is unknown."""
        return _lookup(self.user_ids, raw_user_ids)

    def item_index(self, raw_item_ids) -> np.ndarray:
        return _lookup(self.item_ids, raw_item_ids)


def _lookup(sorted_ids: np.ndarray, raw) -> np.ndarray:
    raw = np.asarray(raw)
    pos = np.searchsorted(sorted_ids, raw)
    pos = np.clip(pos, 0, max(len(sorted_ids) - 1, 0))
    found = len(sorted_ids) > 0
    ok = (sorted_ids[pos] == raw) if found else np.zeros(raw.shape, bool)
    return np.where(ok, pos, -1).astype(np.int64)


def index_split(split_frame: pd.DataFrame) -> dict[str, Interactions]:
    """Per-part ``Interactions`` (``train``/``valid``/``test``) of a split frame with a ``split`` column.

    The user and item universes are the sorted ids present anywhere in the split, so that a
    full ranking covers every item a user could be tested on. Every task that reads a split calls
    this, so it is linear in the rows (``_dense_index``; the part column compared by its category
    codes, not as 25M strings).
    """
    import pandas as pd

    user_ids, u = _dense_index(split_frame["user_id"].to_numpy())
    item_ids, i = _dense_index(split_frame["item_id"].to_numpy())
    r = split_frame["rating"].to_numpy(np.float32)
    t = split_frame["timestamp"].to_numpy(np.int64)
    column = split_frame["split"]
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        categories = [str(c) for c in column.cat.categories]
        masks = {name: codes == categories.index(name) if name in categories else np.zeros(len(codes), bool) for name in ("train", "valid", "test")}
    else:
        part = column.astype(str).to_numpy()
        masks = {name: part == name for name in ("train", "valid", "test")}
    return {name: Interactions(u[m], i[m], r[m], t[m], user_ids, item_ids) for name, m in masks.items()}


def _dense_index(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct ids, each row's int32 position among them): ``np.unique`` + ``searchsorted``,
    through a lookup table when the ids are non-negative integers of modest range (MovieLens ids)."""
    if len(ids) and ids.dtype.kind in "iu" and ids.min() >= 0 and ids.max() < max(4 * len(ids), 1 << 20):
        present = np.zeros(int(ids.max()) + 1, bool)
        present[ids] = True
        rank = np.cumsum(present, dtype=np.int64) - 1
        return np.flatnonzero(present).astype(ids.dtype), rank[ids].astype(np.int32)
    values = distinct(ids)
    return values, np.searchsorted(values, ids).astype(np.int32)
