"""The hybrid model's content side: one row of side information per item of the split's index.

Text (title without its year, tags, TMDB overview and keywords) -> TF-IDF -> LSA; the genre
multi-hot (``recflow.prep.genres``); the numeric item features of the features stage. Pure NumPy /
pandas / scikit-learn, apart from the network, so each part is testable on a tiny frame and
the design of the content branch (what counts as content, why tags can be turned off, why TMDB's
vote counts are left out) is in ``recflow.models.hybrid``'s docstring beside the model using it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recflow.models.context import FitContext
from recflow.models.towers import numeric_feature_table
from recflow.prep.genres import genre_matrix
from recflow.prep.interactions import Interactions
from recflow.retrieval.titles import strip_year


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        return [v for v in value if v is not None and not (isinstance(v, float) and np.isnan(v))]
    except TypeError:
        return []


def align_items(table: pd.DataFrame | None, item_ids: np.ndarray) -> tuple[pd.DataFrame | None, np.ndarray]:
    """(rows of ``table`` whose item_id is in the index, their dense indices); None when no table."""
    if table is None or len(table) == 0 or "item_id" not in table.columns:
        return None, np.zeros(0, np.int64)
    raw = table["item_id"].to_numpy(np.int64)
    pos = np.clip(np.searchsorted(item_ids, raw), 0, max(len(item_ids) - 1, 0))
    ok = (item_ids[pos] == raw) if len(item_ids) else np.zeros(len(raw), bool)
    return table.loc[ok], pos[ok].astype(np.int64)


def item_texts(item_ids: np.ndarray, items: pd.DataFrame | None, tags: pd.DataFrame | None, tmdb: pd.DataFrame | None) -> list[str]:
    """One text per index item: title (year stripped), tags, TMDB overview and keywords ("" if none)."""
    n = len(item_ids)
    parts: list[list[str]] = [[] for _ in range(n)]
    rows, idx = align_items(items, item_ids)
    if rows is not None and "title" in rows.columns:
        for i, t in zip(idx, rows["title"].to_numpy(dtype=object)):
            if isinstance(t, str) and t:
                parts[i].append(strip_year(t))
    rows, idx = align_items(tags, item_ids)
    if rows is not None and "tag" in rows.columns:
        frame = pd.DataFrame({"i": idx, "tag": rows["tag"].astype(str).str.lower().to_numpy(dtype=object)})
        for i, group in frame.groupby("i", sort=True)["tag"]:
            parts[int(i)].append(" . ".join(group.tolist()))
    rows, idx = align_items(tmdb, item_ids)
    if rows is not None:
        overview = rows["overview"].to_numpy(dtype=object) if "overview" in rows.columns else [None] * len(idx)
        keywords = rows["keywords"].to_numpy(dtype=object) if "keywords" in rows.columns else [None] * len(idx)
        for i, o, k in zip(idx, overview, keywords):
            if isinstance(o, str) and o:
                parts[i].append(o)
            kw = [str(w) for w in _as_list(k)]
            if kw:
                parts[i].append(" . ".join(kw))
    return [" . ".join(p) for p in parts]


def text_features(texts: list[str], *, max_features: int, min_df: int, n_components: int, seed: int) -> np.ndarray:
    """(n, c) float32 LSA features: TF-IDF (sublinear, English stop words) -> TruncatedSVD -> unit rows * sqrt(c).

    ``c = min(n_components, vocabulary - 1, n - 1)``; 0 columns when there is nothing to fit.
    Rows of empty texts are zero.
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    n = len(texts)
    if n < 2 or not any(texts):
        return np.zeros((n, 0), np.float32)
    vec = TfidfVectorizer(max_features=int(max_features), sublinear_tf=True, stop_words="english", min_df=min(int(min_df), n), dtype=np.float32)
    try:
        tfidf = vec.fit_transform(texts)
    except ValueError:  # empty vocabulary (only stop words, or min_df removed everything)
        return np.zeros((n, 0), np.float32)
    c = min(int(n_components), tfidf.shape[1] - 1, n - 1)
    if c < 1:
        return np.zeros((n, 0), np.float32)
    svd = TruncatedSVD(n_components=c, random_state=int(seed))
    z = svd.fit_transform(tfidf).astype(np.float32)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    z = np.divide(z, norms, out=np.zeros_like(z), where=norms > 0) * np.float32(np.sqrt(c))
    return z.astype(np.float32)


@dataclass
class Content:
    """The content table (items x columns; one zero column when there is no side information) and what it holds."""

    table: np.ndarray
    genres: np.ndarray  # (n_items, g) int8 multi-hot
    genre_names: np.ndarray
    numeric_columns: list[str]
    dims: dict[str, int]
    has_content: np.ndarray  # items with some non-zero content input


def content_features(
    train: Interactions,
    context: FitContext,
    *,
    use_tags: bool,
    use_tmdb: bool,
    use_item_features: bool,
    max_features: int,
    min_df: int,
    text_components: int,
    seed: int,
    feature_clip: float,
) -> Content:
    """Text LSA | genre multi-hot | standardised numerics per index item (``recflow.models.hybrid``'s doc)."""
    item_ids = np.asarray(train.item_ids)
    texts = item_texts(item_ids, context.items, context.tags if use_tags else None, context.tmdb if use_tmdb else None)
    text = (
        text_features(texts, max_features=max_features, min_df=min_df, n_components=text_components, seed=int(seed))
        if int(text_components)
        else np.zeros((len(item_ids), 0), np.float32)
    )
    genres, genre_names = genre_matrix(item_ids, context.items)
    table = context.item_features if use_item_features else None
    if table is not None and len(table):
        drop = [c for c in table.columns if c.startswith("genre_") and c != "genre_purity"]
        table = table.drop(columns=drop)
        if "rating_count" in table.columns:
            table = table.assign(rating_count=np.log1p(np.maximum(table["rating_count"].to_numpy(np.float64), 0)))
    numeric, numeric_columns, _, _ = numeric_feature_table(table, "item_id", train.item_index, train.n_items, float(feature_clip))
    content = np.hstack([text, genres.astype(np.float32), numeric]).astype(np.float32)
    dims = {"text": text.shape[1], "genres": genres.shape[1], "numeric": numeric.shape[1]}
    has_content = (content != 0).any(axis=1) if content.shape[1] else np.zeros(train.n_items, bool)
    if content.shape[1] == 0:  # no side information at all: one constant-zero column keeps the branch defined
        content = np.zeros((train.n_items, 1), np.float32)
    return Content(content, genres, genre_names, numeric_columns, dims, has_content)
