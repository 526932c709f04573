"""Rating and top-K metrics, RecBole 1.2 definitions, pure NumPy/SciPy.

Every top-K metric is a function of ONE boolean users x K hit matrix (``hit_matrix``): row ``u``,
column ``j`` is True when the item ranked at position ``j + 1`` for user ``u`` is relevant to
``u``. The per-user functions take that matrix (or its first ``k`` columns are used) and the
number of relevant items per user, and return one value per user; ``ranking_metrics`` averages
them over the users that have at least one relevant item (``recflow.evaluation.specs.per_user_metrics``
keeps the values; the registry there says which functions run).

Uncertainty (``bootstrap_ci``, ``paired_bootstrap_test``) is over *users*: a metric is a mean of
independent per-user values, so the users are what a resample draws.

Notation in the docstrings: ``hit_j`` (1 or 0) for position ``j = 1..K``, ``|rel|`` the user's
number of relevant items, ``min(|rel|, k)`` the number of relevant items that can fit in ``k``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recflow.utils.numeric import distinct

__all__ = [
    "hit_matrix",
    "recall_at_k",
    "precision_at_k",
    "ndcg_at_k",
    "map_at_k",
    "hit_rate_at_k",
    "coverage_at_k",
    "bootstrap_ci",
    "paired_bootstrap_test",
    "rmse",
    "mae",
]


# ----------------------------------------------------------------------------- hit matrix


def hit_matrix(recommended: np.ndarray, relevant: sp.spmatrix | sp.sparray) -> np.ndarray:
    """Boolean (n_users, K): ``hits[u, j] = recommended[u, j] is a relevant item of user u``.

    ``recommended`` holds item indices, best first, ``-1`` for padding (never a hit); no row
    may repeat an item. ``relevant`` is (n_users, n_items), row ``u`` for the same user as row
    ``u`` of ``recommended``; an entry is relevant when it is stored and nonzero.

    Vectorised: each (user, item) pair becomes the key ``user * n_items + item`` and is looked
    up in the sorted keys of the relevant entries with one ``np.searchsorted``.
    """
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be 2-D (n_users, K), got shape {rec.shape}")
    if not np.issubdtype(rec.dtype, np.integer):
        raise TypeError(f"recommended must hold integer item indices, got {rec.dtype}")
    rec = rec.astype(np.int64, copy=False)
    n_users, n_items = relevant.shape
    if rec.shape[0] != n_users:
        raise ValueError(f"recommended has {rec.shape[0]} rows but relevant has {n_users}")
    if rec.size and (rec.min() < -1 or rec.max() >= n_items):
        raise ValueError(f"recommended item indices must lie in [0, {n_items}) or be -1 (padding)")
    _check_no_repeats(rec)

    coo = sp.coo_matrix(relevant)
    nz = coo.data != 0
    rel_keys = np.sort(coo.row[nz].astype(np.int64) * n_items + coo.col[nz].astype(np.int64))

    valid = rec >= 0
    keys = np.arange(n_users, dtype=np.int64)[:, None] * n_items + np.where(valid, rec, 0)
    if len(rel_keys) == 0:
        return np.zeros(rec.shape, dtype=bool)
    pos = np.searchsorted(rel_keys, keys)
    found = rel_keys[np.minimum(pos, len(rel_keys) - 1)] == keys
    return found & valid


def _check_no_repeats(rec: np.ndarray) -> None:
    if rec.shape[1] < 2:
        return
    s = np.sort(rec, axis=1)
    if np.any((s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)):
        raise ValueError("a row of recommended repeats an item; hits would be counted twice")


# ----------------------------------------------------------------------------- per-user top-K


def _cut(hits: np.ndarray, k: int) -> np.ndarray:
    hits = np.asarray(hits, dtype=bool)
    if hits.ndim != 2:
        raise ValueError(f"hits must be 2-D (n_users, K), got shape {hits.shape}")
    if not 1 <= k <= hits.shape[1]:
        raise ValueError(f"k={k} must lie in [1, {hits.shape[1]}] (the hit matrix's K)")
    return hits[:, :k]


def _n_rel(n_relevant, n_rows: int) -> np.ndarray:
    n = np.asarray(n_relevant, dtype=np.float64).reshape(-1)
    if len(n) != n_rows:
        raise ValueError(f"n_relevant has {len(n)} entries for {n_rows} users")
    return n


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den per user, NaN where den == 0 (a user without relevant items has no value)."""
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Recall@k = (sum_{j<=k} hit_j) / |rel|.  NaN for a user with |rel| = 0."""
    h = _cut(hits, k)
    return _safe_div(h.sum(axis=1).astype(np.float64), _n_rel(n_relevant, len(h)))


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Precision@k = (sum_{j<=k} hit_j) / k  (padding counts as a miss, as in RecBole)."""
    return _cut(hits, k).sum(axis=1) / float(k)


def hit_rate_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Hit@k = 1 if any hit_j = 1 for j <= k, else 0."""
    return _cut(hits, k).any(axis=1).astype(np.float64)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))  # 1/log2(j+1), j = 1..k


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k = DCG@k / IDCG@k with binary gains.

    DCG@k = sum_{j<=k} hit_j / log2(j + 1);  IDCG@k = sum_{j<=min(|rel|,k)} 1 / log2(j + 1),
    i.e. the DCG of a ranking with all relevant items first. NaN for a user with |rel| = 0.
    """
    h = _cut(hits, k)
    n = _n_rel(n_relevant, len(h))
    disc = _discounts(k)
    dcg = h @ disc
    ideal_len = np.minimum(n, k).astype(np.int64)
    idcg = np.concatenate([[0.0], np.cumsum(disc)])[ideal_len]
    return _safe_div(dcg, idcg)


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """MAP@k (per user: AP@k) = (sum_{j<=k} hit_j * Precision@j) / min(|rel|, k).

    Precision@j = (sum_{i<=j} hit_i) / j. NaN for a user with |rel| = 0.
    """
    h = _cut(hits, k)
    n = _n_rel(n_relevant, len(h))
    prec = np.cumsum(h, axis=1) / np.arange(1, k + 1, dtype=np.float64)
    return _safe_div((prec * h).sum(axis=1), np.minimum(n, k))


def coverage_at_k(recommended: np.ndarray, n_items: int, k: int) -> float:
    """Catalogue coverage@k = |distinct items in the top k of any user| / n_items (padding ignored)."""
    rec = np.asarray(recommended)
    if rec.ndim != 2 or not 1 <= k <= rec.shape[1]:
        raise ValueError(f"need a 2-D recommended with at least k={k} columns, got shape {rec.shape}")
    if n_items <= 0:
        raise ValueError("n_items must be positive")
    top = rec[:, :k]
    return float(len(distinct(top[top >= 0])) / n_items)


# ----------------------------------------------------------------------------- aggregate


#: the top-K metrics that are a mean of one value per user (coverage is a catalogue count, not a mean)


def check_ks(ks: list[int], rec: np.ndarray) -> list[int]:
    ks = [int(k) for k in ks]
    if not ks:
        raise ValueError("ks must name at least one cutoff")
    if rec.ndim != 2 or max(ks) > rec.shape[1] or min(ks) < 1:
        raise ValueError(f"every k in {ks} must lie in [1, K] for recommended of shape {rec.shape}")
    return ks


# ----------------------------------------------------------------------------- uncertainty


def _resample_means(values: np.ndarray, n_boot: int, seed: int, block: int = 1 << 23) -> np.ndarray:
    """(n_boot, m) means of ``values`` (n, m) over ``n_boot`` seeded resamples of its rows.

    Resample b draws n row indices uniformly with replacement (``rng.integers``); its mean is
    ``c_b @ values / n`` where ``c_b`` counts how often each row was drawn (one ``bincount`` for a
    whole block of resamples; one column is simply gathered and averaged). Blocks keep memory at about ``block`` indices whatever n is; no
    Python loop runs per user or per resample.
    """
    n, m = values.shape
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, m))
    step = max(1, block // max(n, 1))
    for start in range(0, n_boot, step):
        rows = min(n_boot, start + step) - start
        idx = rng.integers(0, n, size=(rows, n))
        if m == 1:  # one column: gathering the drawn values is cheaper than counting them
            out[start : start + rows, 0] = values[idx, 0].mean(axis=1)
            continue
        idx += (np.arange(rows, dtype=np.int64) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)
        out[start : start + rows] = counts @ values / n
    return out


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap confidence interval of the mean of each column of ``values``.

    ``values`` is (n_users, m): one row per evaluated user, one column per metric (a 1-D array
    is one metric). Each of ``n_boot`` resamples draws n users with replacement (seeded, the same
    users for every column), and the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2``
    quantiles of the resampled means:

        mean*_b = (1/n) sum_u c_bu v_u,   c_bu = times user u is drawn in resample b   (b = 1..n_boot)
        CI = [quantile(mean*, (1 - level) / 2), quantile(mean*, (1 + level) / 2)]

    Returns (low, high), each of shape (m,) (scalars for 1-D input). NaN with no rows.
    """
    v = np.asarray(values, dtype=np.float64)
    one = v.ndim == 1
    v = v.reshape(len(v), -1)
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    if np.isnan(v).any():
        raise ValueError("values hold NaN: pass only users that have a value")
    if len(v) == 0:
        low = high = np.full(v.shape[1], np.nan)
    else:
        means = _resample_means(v, n_boot, seed)
        low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return (float(low[0]), float(high[0])) if one else (low, high)


def paired_bootstrap_test(new: np.ndarray, old: np.ndarray, *, greater_is_better: bool = True, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """One-sided paired bootstrap test that ``new`` is better than ``old`` on the same users.

    ``new[u]`` and ``old[u]`` are two models' values of one metric for the same user u. With
    ``d_u = new[u] - old[u]`` (sign flipped when smaller is better) and ``dbar`` their mean, the
    null "no gain" is imposed by centring, ``d0_u = d_u - dbar``, and

        p = (1 + #{b : mean*_b(d0) >= dbar}) / (n_boot + 1)

    over seeded resamples of users (``_resample_means``). Pairing removes the between-user
    spread both models share (hard users are hard for both), which is most of it. Returns
    (delta, p) with delta = mean(new - old) in the metric's own direction of sign.
    """
    a, b = np.asarray(new, dtype=np.float64).reshape(-1), np.asarray(old, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {len(a)} new, {len(b)} old")
    if len(a) == 0:
        raise ValueError("no paired users to test")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("paired values hold NaN")
    delta = float((a - b).mean())
    d = (a - b) if greater_is_better else (b - a)
    gain = float(d.mean())
    means = _resample_means((d - gain)[:, None], n_boot, seed)[:, 0]
    p = (1 + int((means >= gain).sum())) / (n_boot + 1)
    return delta, float(p)


# ----------------------------------------------------------------------------- ratings


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {len(t)} values but y_pred has {len(p)}")
    return t, p


def rmse(y_true, y_pred) -> float:
    """RMSE = sqrt(mean((y_true - y_pred)^2)); NaN when empty."""
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2))) if len(t) else float("nan")


def mae(y_true, y_pred) -> float:
    """MAE = mean(|y_true - y_pred|); NaN when empty."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p))) if len(t) else float("nan")
