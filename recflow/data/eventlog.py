"""A release turned into the event log a team would have: one Hive partition per period.

``recflow replay`` proves the nightly path on data we have: a MovieLens release's ratings, cut by
their timestamps into ``date=YYYY-MM-DD/part-0.parquet`` partitions (the UTC start of each day,
ISO week from Monday, or calendar month), columns ``user``, ``item``, ``timestamp`` (epoch
seconds), ``rating``: the shape of the ``table`` source (``dataset.source: {kind: table, path,
columns}``). Only periods with interactions get a partition. Rows within a partition are in
(timestamp, user, item) order, so the same ratings give byte-identical files whatever their
order in the release (a partition's fingerprint changes only when its rows do).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

COLUMNS = {"user": "user_id", "item": "item_id", "timestamp": "timestamp", "rating": "rating"}  # log column -> canonical
PART_FILE = "part-0.parquet"
DAY = 86_400


def period_start(ts: np.ndarray, period: str) -> np.ndarray:
    """The UTC start (epoch seconds) of the day / ISO week (Monday) / calendar month holding each timestamp."""
    ts = np.asarray(ts, dtype=np.int64)
    if period == "day":
        return ts // DAY * DAY
    if period == "week":  # 1970-01-01 was a Thursday: Monday 1969-12-29 starts week 0
        return (ts // DAY + 3) // 7 * 7 * DAY - 3 * DAY
    if period == "month":
        return ts.astype("datetime64[s]").astype("datetime64[M]").astype("datetime64[s]").astype(np.int64)
    raise ValueError(f"unknown period {period!r}: expected day, week or month")


def period_shift(start: int, period: str, n: int) -> int:
    """The start of the period ``n`` periods before (``n`` > 0) the one starting at ``start``."""
    if period == "month":
        return int((np.datetime64(int(start), "s").astype("datetime64[M]") - n).astype("datetime64[s]").astype(np.int64))
    return int(start) - n * (DAY if period == "day" else 7 * DAY)


def partition_name(start: int) -> str:
    return "date=" + np.datetime64(int(start), "s").astype("datetime64[D]").astype(str)


def write_event_log(ratings: pd.DataFrame, folder: Path, period: str) -> list[str]:
    """Every period's ratings (canonical ``user_id, item_id, rating, timestamp``) as a partition under ``folder``.

    Returns the partition names, oldest first. ``folder`` is replaced whole (written beside it, then moved).
    """
    missing = [c for c in COLUMNS.values() if c not in ratings.columns]
    if missing:
        raise ValueError(f"ratings lack column(s) {missing}")
    log = pd.DataFrame({name: ratings[col].to_numpy() for name, col in COLUMNS.items()})
    log["timestamp"] = log["timestamp"].astype(np.int64)
    log = log.sort_values(["timestamp", "user", "item"], kind="stable").reset_index(drop=True)
    starts = period_start(log["timestamp"].to_numpy(), period)
    scratch = folder.with_name(folder.name + ".writing")
    shutil.rmtree(scratch, ignore_errors=True)
    names = []
    cuts = np.flatnonzero(np.r_[True, starts[1:] != starts[:-1], True])
    for a, b in zip(cuts[:-1], cuts[1:]):
        name = partition_name(int(starts[a]))
        (scratch / name).mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(log.iloc[a:b], preserve_index=False), scratch / name / PART_FILE)
        names.append(name)
    shutil.rmtree(folder, ignore_errors=True)
    scratch.rename(folder)
    return names


def append_partition(log: Path, live: Path, name: str) -> Path:
    """Copy one partition of the full ``log`` into the ``live`` log a night reads (atomically: a reader never sees half)."""
    target = live / name
    scratch = live / f".{name}.writing"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(log / name, scratch)
    shutil.rmtree(target, ignore_errors=True)
    scratch.rename(target)
    return target
