"""Split protocols: which ratings train a model and which evaluate it.

``split_ratings(ratings, cfg)`` filters the canonical ratings frame (``cfg.min_rating``, then the
user/item k-core of ``cfg.min_user_interactions`` / ``cfg.min_item_interactions``) and labels every
kept row ``train``, ``valid`` or ``test`` by ``cfg.protocol``:

``temporal``
    Global temporal holdout. Rows ordered by (timestamp, user_id, item_id); the last
    ``round(test_fraction * n)`` rows are test, the ``round(valid_fraction * n)`` before them valid.
``user_random``
    Per user, a seeded shuffle; the last ``round(test_fraction * n_u)`` rows of it are test (at
    least 1 when the user has >= 2 rows), the ``round(valid_fraction * n_u)`` before them valid (at
    least 1 when ``valid_fraction > 0`` and the user still has >= 2 rows). Every user keeps >= 1
    train row, so a user with a single row stays in train.
``user_temporal``
    Per user, ordered by (timestamp, item_id): the latest rows are test and the ones before
    them valid, with ``user_random``'s part sizes (round-half-up shares of the user's rows, test
    >= 1 when the user has >= 2 rows, train >= 1). Every user with two rows or more is tested on
    their most recent ratings; unlike ``temporal``, no user is left without test rows because they
    stopped rating before the global cut-off (train may hold other users' later ratings).
``leave_last_k``
    Per user, ordered by (timestamp, item_id): the last ``last_k`` rows are test when the user has
    more than ``last_k`` rows; when ``valid_fraction > 0`` the ``last_k`` rows before them are
    valid when the user has more than ``2 * last_k``. Test is filled first (as RecBole's
    leave-one-out does), so a user with between ``last_k + 1`` and ``2 * last_k`` rows gets a
    test part but no valid part; a user with ``<= last_k`` rows stays entirely in train.
``time_forward``
    What a nightly retrain has to answer: train on everything before a cut-off, test on what came
    after it. The cut-off is the start of the newest ``cfg.period`` (a UTC calendar day, an ISO
    week from Monday 00:00, or a calendar month) holding the latest timestamp; every row at or
    after it is test; the ``cfg.valid_periods`` whole periods before it are valid; the rest
    train. ``test_fraction`` / ``valid_fraction`` play no part. Users and items first seen after
    the cut-off are *cold*: they stay in the index (a model has nothing to rank them from, and
    what it does with them is measured separately, ``recflow.evaluation.evaluate.cold_start_metrics``),
    and the stats count them (``time_forward``: ``period``, ``cutoff``, ``valid_cutoff``,
    ``cold_users``, ``cold_items``, ``cold_user_rows``, ``cold_item_rows``).
``random``
    Global seeded random holdout: ``round(test_fraction * n)`` rows test,
    ``round(valid_fraction * n)`` valid (90/10 with the defaults).
``recbole``
    RecBole 1.2.1's general-recommendation "RS" split: per user a seeded shuffle, then
    ``valid = int(valid_fraction * n_u)``, ``test = int(test_fraction * n_u)``, train the rest,
    with RecBole's ``_calcu_split_ids`` correction (a part whose exact share is in (0, 1) gets one
    row while train keeps more than one), taken in the order train, valid, test along the
    shuffle. RecBole's published ML-1M protocol also drops ratings below 3 and applies a 10/10
    k-core: that is *configuration* (``min_rating: 3``, ``min_user_interactions: 10``,
    ``min_item_interactions: 10``, ``valid_fraction: 0.1``), which the ML-1M RecBole preset
    sets; the protocol itself only uses the cfg values, like every other protocol.

Determinism: the rows are first put in a canonical order, (user_id, timestamp, item_id, rating),
which depends only on the rows' values; the seeded draws (``numpy.random.default_rng(cfg.seed)``)
are made in that order, so the same rows and seed give the same split whatever the input row
order. Rows with identical (user_id, timestamp, item_id, rating) are interchangeable.

The returned frame holds the kept rows (every input column) in that canonical order with a
categorical ``split`` column (categories ``train``, ``valid``, ``test``) and a fresh RangeIndex.
Everything is vectorised (bincount, packed-key argsort); no Python loop runs per user or row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recflow.data.eventlog import period_shift, period_start
from recflow.evaluation.evaluate import NothingToEvaluate
from recflow.prep.config import SplitConfig

PARTS = ("train", "valid", "test")
TRAIN, VALID, TEST = 0, 1, 2
REQUIRED_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


@dataclass
class SplitResult:
    """``frame``: the kept rows in canonical order plus the categorical ``split`` column.

    ``stats`` (JSON-able): ``protocol``, ``seed``, ``rows_in``, ``dropped`` (rows removed by
    ``min_rating`` and by the ``kcore``), ``kcore_iterations`` (k-core passes that removed rows),
    ``rows``, ``n_users``, ``n_items`` (kept), and ``parts``: per part ``rows``, ``users``,
    ``items``, plus for valid/test the users without a train row (``users_not_in_train``) and the
    rows whose user or item has no train row (``rows_user_not_in_train``, ``rows_item_not_in_train``).
    """

    frame: pd.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)

    def part(self, name: str) -> pd.DataFrame:
        """The rows of one part (``train``, ``valid`` or ``test``), split column dropped."""
        if name not in PARTS:
            raise KeyError(name)
        return self.frame.loc[self.frame["split"] == name].drop(columns="split").reset_index(drop=True)


def split_ratings(ratings: pd.DataFrame, cfg: SplitConfig) -> SplitResult:
    missing = [c for c in REQUIRED_COLUMNS if c not in ratings.columns]
    if missing:
        raise ValueError(f"ratings frame lacks column(s) {missing}")
    if "split" in ratings.columns:
        raise ValueError("ratings frame already has a 'split' column")

    n_in = len(ratings)
    user = ratings["user_id"].to_numpy()
    item = ratings["item_id"].to_numpy()
    rating = ratings["rating"].to_numpy()
    ts = ratings["timestamp"].to_numpy()
    if not (np.issubdtype(user.dtype, np.integer) and np.issubdtype(item.dtype, np.integer) and np.issubdtype(ts.dtype, np.integer)):
        raise TypeError("user_id, item_id and timestamp must be integer columns")

    # ---- filters: min_rating, then the k-core (repeated until nothing changes)
    keep = np.ones(n_in, dtype=bool)
    dropped_min_rating = 0
    if cfg.min_rating is not None:
        keep &= rating >= cfg.min_rating
        dropped_min_rating = int(n_in - keep.sum())
    u_rank, n_u_all = _dense_rank(user)
    i_rank, n_i_all = _dense_rank(item)
    n_before_kcore = int(keep.sum())
    keep, iterations = _kcore(u_rank, i_rank, keep, n_u_all, n_i_all, cfg.min_user_interactions, cfg.min_item_interactions)
    dropped_kcore = n_before_kcore - int(keep.sum())

    # ---- canonical order of the kept rows: (user_id, timestamp, item_id, rating)
    rows = np.flatnonzero(keep)
    u, i, t, r = u_rank[rows], i_rank[rows], ts[rows].astype(np.int64), rating[rows]
    t_off = t - t.min() if len(t) else t
    order = _lex_order([u, t_off, i], tail=[r])
    rows, u, i, t_off, r = rows[order], u[order], i[order], t_off[order], r[order]
    del order
    n = len(rows)

    # ---- label every row
    rng = np.random.default_rng(cfg.seed)
    proto = cfg.protocol
    if proto == "temporal":
        label = _temporal(t_off, u, i, r, cfg)
    elif proto == "random":
        label = _global_random(n, cfg, rng)
    elif proto in ("user_random", "recbole"):
        label = _per_user_random(u, cfg, rng, recbole=proto == "recbole")
    elif proto == "leave_last_k":
        label = _leave_last_k(u, cfg)
    elif proto == "user_temporal":
        label = _user_temporal(u, cfg)
    elif proto == "time_forward":
        label, cutoffs = _time_forward(ts[rows], cfg)
    else:  # pragma: no cover - pydantic restricts the values
        raise ValueError(f"unknown split protocol {proto!r}")

    frame = ratings.take(rows).reset_index(drop=True)
    frame["split"] = pd.Categorical.from_codes(label, categories=list(PARTS))
    stats = _stats(cfg, n_in, dropped_min_rating, dropped_kcore, iterations, u, i, label)
    if proto == "time_forward":
        stats["time_forward"] = _cold_stats(cfg, cutoffs, stats)
    return SplitResult(frame=frame, stats=stats)


def check_evaluable(stats: dict[str, Any]) -> None:
    """Raise ``NothingToEvaluate`` when no test row belongs to a user with training ratings.

    A model ranks only for users it has seen in training, so such a split would give every
    ranking metric as NaN and the run would look successful. Checked in the split stage, before
    any model trains; the message gives the counts and why none is evaluable.
    """
    test = stats["parts"]["test"]
    if test["rows"] - test["rows_user_not_in_train"] > 0:
        return
    counts = (
        f"the {stats['protocol']} split kept {stats['rows']} of {stats['rows_in']} ratings, "
        f"{stats['n_users']} users; the test part has {test['rows']} rows of {test['users']} users"
    )
    if test["rows"] == 0:
        why = "no rating went to the test part"
    else:
        why = f"all {test['users_not_in_train']} test users are cold (no training ratings), so no model can rank items for them"
    raise NothingToEvaluate(
        f"nothing to evaluate: {counts}; {why}. Give the split more ratings per user "
        f"(a per-user protocol such as user_random keeps part of each user's history "
        f"in train)."
    )


# ----------------------------------------------------------------------------- protocols


def _n_of(fraction: float, n: int) -> int:
    """round-half-up(fraction * n) for the global protocols."""
    return int(np.floor(fraction * n + 0.5))


def _temporal(t_off, u, i, r, cfg: SplitConfig) -> np.ndarray:
    n = len(t_off)
    n_test = _n_of(cfg.test_fraction, n)
    n_valid = min(_n_of(cfg.valid_fraction, n), n - n_test)
    label = np.zeros(n, dtype=np.int8)
    if n == 0:
        return label
    keys = [t_off, u, i]
    packed = _pack(keys)
    if packed is not None:
        # the k latest rows by (timestamp, user, item) without a full sort: a partition finds the
        # cut-off key; keys are unique when (user, timestamp, item) is, which the count checks
        test = _at_least_kth_largest(packed, n_test)
        valid = _at_least_kth_largest(packed, n_test + n_valid)
        if test is not None and valid is not None:
            label[valid] = VALID
            label[test] = TEST
            return label
    order = _lex_order(keys, tail=[r])  # rank of each row in the global time order
    label[order[n - n_test - n_valid : n - n_test]] = VALID
    label[order[n - n_test :]] = TEST
    return label


def _at_least_kth_largest(packed: np.ndarray, k: int) -> np.ndarray | None:
    """Mask of the k largest keys, or None when ties at the cut-off make that ambiguous."""
    n = len(packed)
    if k <= 0:
        return np.zeros(n, dtype=bool)
    if k >= n:
        return np.ones(n, dtype=bool)
    cut = np.partition(packed, n - k)[n - k]
    mask = packed >= cut
    return mask if int(mask.sum()) == k else None


def _time_forward(ts: np.ndarray, cfg: SplitConfig) -> tuple[np.ndarray, tuple[int | None, int | None]]:
    label = np.zeros(len(ts), dtype=np.int8)
    if len(ts) == 0:
        return label, (None, None)
    cutoff = int(period_start(np.array([ts.max()]), cfg.period)[0])
    valid_cutoff = period_shift(cutoff, cfg.period, cfg.valid_periods) if cfg.valid_periods else cutoff
    label[ts >= valid_cutoff] = VALID
    label[ts >= cutoff] = TEST
    return label, (cutoff, valid_cutoff)


def _cold_stats(cfg: SplitConfig, cutoffs: tuple[int | None, int | None], stats: dict[str, Any]) -> dict[str, Any]:
    """What ``time_forward`` states beside the counts: its period, cut-offs and the cold users / items of the test part."""
    test = stats["parts"]["test"]
    cutoff, valid_cutoff = cutoffs
    return {
        "period": cfg.period,
        "cutoff": cutoff,
        "valid_cutoff": valid_cutoff,
        "cold_users": test["users_not_in_train"],
        "cold_items": test.get("items_not_in_train", 0),
        "cold_user_rows": test["rows_user_not_in_train"],
        "cold_item_rows": test["rows_item_not_in_train"],
    }


def _global_random(n: int, cfg: SplitConfig, rng: np.random.Generator) -> np.ndarray:
    n_test = _n_of(cfg.test_fraction, n)
    n_valid = min(_n_of(cfg.valid_fraction, n), n - n_test)
    perm = rng.permutation(n)
    label = np.zeros(n, dtype=np.int8)
    label[perm < n_test + n_valid] = VALID
    label[perm < n_test] = TEST
    return label


def _groups(u: np.ndarray):
    """For rows sorted by user: (count of the row's user, position of the row within its user)."""
    n = len(u)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return z, z
    start = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    sizes = np.diff(np.r_[start, n])
    gid = np.repeat(np.arange(len(start)), sizes)
    pos = np.arange(n) - start[gid]
    return sizes[gid], pos


def recbole_counts(n: np.ndarray, valid_fraction: float, test_fraction: float):
    """RecBole 1.2.1 ``_calcu_split_ids`` for ratios [1 - v - t, v, t], vectorised over users.

    ``cnt = [int(r * n) for r in ratios]; cnt[0] = n - sum(cnt[1:])``; then for the test and the
    valid part in turn: stop if ``cnt[0] <= 1``; if ``0 < ratio * n < 1`` move one row from train to
    that part. Returns (train, valid, test) int64 arrays.
    """
    n = np.asarray(n, dtype=np.int64)
    exact = {VALID: valid_fraction * n.astype(np.float64), TEST: test_fraction * n.astype(np.float64)}
    cnt = {k: np.floor(v).astype(np.int64) for k, v in exact.items()}
    train = n - cnt[VALID] - cnt[TEST]
    for part in (TEST, VALID):  # ratios[-1], ratios[-2]
        bump = (train > 1) & (exact[part] > 0) & (exact[part] < 1)
        cnt[part] += bump
        train -= bump
    return train, cnt[VALID], cnt[TEST]


def user_random_counts(n: np.ndarray, valid_fraction: float, test_fraction: float):
    """``user_random`` part sizes: round-half-up shares, test >= 1 and valid >= 1 (when asked)
    while the user has >= 2 rows left, and train >= 1 always."""
    n = np.asarray(n, dtype=np.int64)
    test = np.floor(test_fraction * n + 0.5).astype(np.int64)
    test = np.where(n >= 2, np.clip(test, 1, None), 0)
    test = np.minimum(test, np.maximum(n - 1, 0))
    rest = n - test
    if valid_fraction > 0:
        valid = np.floor(valid_fraction * n + 0.5).astype(np.int64)
        valid = np.where(rest >= 2, np.clip(valid, 1, None), 0)
        valid = np.minimum(valid, np.maximum(rest - 1, 0))
    else:
        valid = np.zeros_like(n)
    return n - test - valid, valid, test


def _per_user_random(u: np.ndarray, cfg: SplitConfig, rng: np.random.Generator, *, recbole: bool) -> np.ndarray:
    n = len(u)
    label = np.zeros(n, dtype=np.int8)
    if n == 0:
        return label
    # a seeded per-user shuffle: sort by (user, random permutation drawn in canonical order)
    perm = rng.permutation(n)
    shuffled = _lex_order([u, perm])
    del perm
    size, pos = _groups(u[shuffled])  # u[shuffled] is still grouped by user
    counts = recbole_counts if recbole else user_random_counts
    n_train, n_valid, _ = counts(size, cfg.valid_fraction, cfg.test_fraction)
    part = np.where(pos < n_train, TRAIN, np.where(pos < n_train + n_valid, VALID, TEST)).astype(np.int8)
    label[shuffled] = part
    return label


def _user_temporal(u: np.ndarray, cfg: SplitConfig) -> np.ndarray:
    size, pos = _groups(u)  # rows are in (user, timestamp, item) order: pos is the row's rank in time
    n_train, n_valid, _ = user_random_counts(size, cfg.valid_fraction, cfg.test_fraction)
    return np.where(pos < n_train, TRAIN, np.where(pos < n_train + n_valid, VALID, TEST)).astype(np.int8)


def _leave_last_k(u: np.ndarray, cfg: SplitConfig) -> np.ndarray:
    size, pos = _groups(u)  # rows are in (user, timestamp, item) order
    k = cfg.last_k
    from_end = size - 1 - pos
    label = np.zeros(len(u), dtype=np.int8)
    label[(from_end < k) & (size > k)] = TEST
    if cfg.valid_fraction > 0:
        label[(from_end >= k) & (from_end < 2 * k) & (size > 2 * k)] = VALID
    return label


# ----------------------------------------------------------------------------- helpers


def _dense_rank(x: np.ndarray) -> tuple[np.ndarray, int]:
    """0..m-1 codes that preserve the order of the values (so they are independent of row order)."""
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0
    lo, hi = int(x.min()), int(x.max())
    span = hi - lo + 1
    if span <= max(4 * n, 1 << 20):
        off = (x - lo).astype(np.intp, copy=False)
        present = np.bincount(off, minlength=span) > 0
        code_of = np.cumsum(present, dtype=np.int64) - 1
        return code_of[off], int(present.sum())
    codes, uniques = pd.factorize(x, sort=True)
    return codes.astype(np.int64, copy=False), len(uniques)


def _kcore(u, i, keep, n_u, n_i, min_u: int, min_i: int) -> tuple[np.ndarray, int]:
    """Drop users with < min_u and items with < min_i kept rows, both at once, until stable
    (RecBole's ``_filter_by_inter_num``). Returns the mask and the number of passes that dropped rows."""
    if min_u <= 1 and min_i <= 1:
        return keep, 0
    keep = keep.copy()
    iterations = 0
    while True:
        rows = np.flatnonzero(keep)
        drop = np.zeros(len(rows), dtype=bool)
        if min_u > 1:
            ur = u[rows]
            drop |= np.bincount(ur, minlength=n_u)[ur] < min_u
        if min_i > 1:
            ir = i[rows]
            drop |= np.bincount(ir, minlength=n_i)[ir] < min_i
        if not drop.any():
            return keep, iterations
        keep[rows[drop]] = False
        iterations += 1


def _bits(x: np.ndarray) -> int:
    return int(x.max()).bit_length() if len(x) else 0


def _pack(keys: list[np.ndarray]) -> np.ndarray | None:
    """All keys (non-negative ints, most significant first) packed into one uint64, or None
    when they need more than 64 bits."""
    widths = [_bits(k) for k in keys]
    if sum(widths) > 64:
        return None
    packed = np.zeros(len(keys[0]), dtype=np.uint64)
    for k, b in zip(keys, widths):
        packed <<= np.uint64(b)
        packed |= k.astype(np.uint64)
    return packed


def _lex_order(keys: list[np.ndarray], tail: list[np.ndarray] = ()) -> np.ndarray:
    """Row order sorting lexicographically by ``keys`` (non-negative ints, most significant
    first), then by ``tail`` (any sortable arrays).

    The leading keys that fit in 64 bits are packed into one uint64 and argsorted (fast); rows
    whose packed keys tie are then ordered by the remaining keys with ``np.lexsort`` (usually few).
    """
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    packed = np.zeros(n, dtype=np.uint64)  # the keys that fit, packed most significant first
    used_bits, n_packed = 0, 0
    for k in keys:
        b = _bits(k)
        if used_bits + b > 64:
            break
        packed <<= np.uint64(b)
        packed |= k.astype(np.uint64)
        used_bits += b
        n_packed += 1
    if n_packed == 0:
        return np.lexsort([*reversed(tail), *reversed(keys)])
    order = np.argsort(packed)
    rest = [*keys[n_packed:], *tail]
    if not rest:
        return order
    sp = packed[order]
    del packed
    tie = sp[1:] == sp[:-1]
    if not tie.any():
        return order
    in_tie = np.zeros(n, dtype=bool)
    in_tie[1:] |= tie
    in_tie[:-1] |= tie
    run = np.cumsum(np.r_[True, ~tie])  # run id per sorted position
    pos = np.flatnonzero(in_tie)
    sub = order[pos]
    sub_order = np.lexsort([*(c[sub] for c in reversed(rest)), run[pos]])
    order[pos] = sub[sub_order]
    return order


def _stats(cfg, n_in, dropped_min_rating, dropped_kcore, iterations, u, i, label) -> dict[str, Any]:
    n_u = int(u.max()) + 1 if len(u) else 0
    n_i = int(i.max()) + 1 if len(i) else 0
    lab = label.astype(np.int64)
    # rows per (part, user) and per (part, item): every count below comes from these two
    per_user = np.bincount(lab * n_u + u, minlength=3 * n_u).reshape(3, n_u)
    per_item = np.bincount(lab * n_i + i, minlength=3 * n_i).reshape(3, n_i)
    user_in_train = per_user[TRAIN] > 0
    item_in_train = per_item[TRAIN] > 0
    parts: dict[str, Any] = {}
    for code, name in enumerate(PARTS):
        entry = {
            "rows": int(per_user[code].sum()),
            "users": int((per_user[code] > 0).sum()),
            "items": int((per_item[code] > 0).sum()),
        }
        if code != TRAIN:
            entry["users_not_in_train"] = int((per_user[code][~user_in_train] > 0).sum())
            entry["rows_user_not_in_train"] = int(per_user[code][~user_in_train].sum())
            entry["rows_item_not_in_train"] = int(per_item[code][~item_in_train].sum())
            entry["items_not_in_train"] = int((per_item[code][~item_in_train] > 0).sum())
        parts[name] = entry
    return {
        "protocol": cfg.protocol,
        "seed": cfg.seed,
        "rows_in": int(n_in),
        "dropped": {"min_rating": int(dropped_min_rating), "kcore": int(dropped_kcore)},
        "kcore_iterations": int(iterations),
        "rows": int(len(label)),
        "n_users": int((per_user.sum(axis=0) > 0).sum()),
        "n_items": int((per_item.sum(axis=0) > 0).sum()),
        "parts": parts,
    }
