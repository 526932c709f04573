"""The batch export: every warm user's top-K of a served model, as Parquet for a key-value loader.

Rows ``user_id, rank, item_id, score`` (int64, int16, int64, float32), sorted by user then rank,
in a Hive-partitioned dataset ``bucket=<b>/part-0.parquet`` with ``b = user_id mod partitions``:
a loader (Redis, DynamoDB, Cassandra bulk import) takes one bucket per worker, and a reader
finds one user's rows by reading one file (``pyarrow.dataset`` with a filter on ``bucket``).
The ranking is ``Retriever.recommend_many``'s, i.e. what ``recflow recommend`` and ``recflow api``
answer for the same user (items the user rated anywhere in the split left out). Users without
training ratings are not exported (they have no ranking; a service answers them with the
popularity fallback), nor is a user who rated every item (nothing is left to recommend).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recflow.retrieval.search import Retriever

EXPORT_DIR = "top_k"
BATCH_USERS = 4096


def write_top_k(retriever: Retriever, out: Path, k: int = 100, partitions: int = 16) -> dict[str, Any]:
    """Write every warm user's top ``k`` under ``out / EXPORT_DIR`` (see the module docstring); returns a summary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if k < 1 or partitions < 1:
        raise ValueError(f"k and partitions must be >= 1, got k={k}, partitions={partitions}")
    cat = retriever.catalogue
    warm = np.flatnonzero(cat.user_train_count > 0)
    k = min(int(k), cat.n_items)
    buckets: dict[int, list[pa.Table]] = {}
    rows = 0
    exported = 0
    for start in range(0, len(warm), BATCH_USERS):
        users = warm[start : start + BATCH_USERS]
        items, scores = retriever.recommend_many(users, k)
        ok = items >= 0
        user_ids = np.repeat(cat.user_ids[users], ok.sum(axis=1))
        ranks = np.broadcast_to(np.arange(1, k + 1, dtype=np.int16), items.shape)[ok]
        table = pa.table({"user_id": user_ids, "rank": ranks, "item_id": cat.item_ids[items[ok]], "score": scores[ok].astype(np.float32)})
        rows += len(table)
        exported += int(np.count_nonzero(ok[:, 0]))
        bucket = user_ids % partitions
        for b in np.unique(bucket).tolist():
            buckets.setdefault(b, []).append(table.filter(pa.array(bucket == b)))
    folder = Path(out) / EXPORT_DIR
    schema = pa.schema([("user_id", pa.int64()), ("rank", pa.int16()), ("item_id", pa.int64()), ("score", pa.float32())])
    for b in range(partitions):
        part = folder / f"bucket={b}"
        part.mkdir(parents=True, exist_ok=True)
        tables = buckets.get(b, [])
        pq.write_table(pa.concat_tables(tables) if tables else schema.empty_table(), part / "part-0.parquet")
    return {
        "model": retriever.recommend_model,
        "k": k,
        "partitions": partitions,
        "users": int(len(warm)),
        "users_with_rows": exported,  # a user who rated every item has nothing left to recommend
        "rows": int(rows),
        "path": EXPORT_DIR,
        "columns": ["user_id", "rank", "item_id", "score"],
        "partitioning": f"hive: bucket = user_id % {partitions}",
    }
