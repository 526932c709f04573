"""Incremental ingest of a Hive-partitioned event log: a cold ingest, then nights that add one partition.

    python -m bench.sources [--rows 25000000] [--days 200] [--nights 2]

Writes a synthetic log (``date=YYYY-MM-DD/part-0.parquet``, string user ids, integer items, epoch-ms
timestamps, ratings) under a temp folder, ingests it cold, then per night appends one day of
``rows / days`` interactions (0.5% of the log at the defaults) and ingests again; last, a late
correction rewrites an old day. Each ingest is timed as the pipeline pays it: listing + digests
(``locate``), reading the parts without a cached piece, and combining every piece into the canonical
tables. Wall seconds per step, and the process's CPU seconds of the whole ingest (on a shared machine
the wall time also holds the waits for a core); apart, the sha256 of the output folder that the
pipeline's stage manifest costs (``ratings.parquet`` is a folder of 2^20-row pieces). Target (issue 23): one new partition at 25M <= 2 s on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DAY = 86_400


def write_day(folder: Path, day: int, n: int, n_users: int, n_items: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    start = int(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()) + day * DAY
    users = rng.integers(0, n_users, n)
    items = (rng.random(n) ** 2 * n_items).astype(np.int64)  # a popular head, few repeated (user, item) pairs
    users, items = _unique_pairs(users, items, n_items)
    table = pa.table(
        {
            "uid": pa.array(np.char.add("u", users.astype(str))),
            "movie": pa.array(items),
            "ts_ms": pa.array(np.sort(rng.integers(start * 1000, (start + DAY) * 1000, len(users)))),
            "stars": pa.array(rng.integers(1, 6, len(users)).astype(np.float32)),
        }
    )
    name = (dt.date(2026, 1, 1) + dt.timedelta(days=day)).isoformat()
    (folder / f"date={name}").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"date={name}" / "part-0.parquet")


def _unique_pairs(users, items, n_items):
    """Users' days never repeat a (user, item) pair of another day: each day owns a slice of the item range per user."""
    key = np.unique(users.astype(np.int64) * n_items + items)
    return key // n_items, key % n_items


def timed_ingest(spec, out: Path, cache: Path) -> dict:
    import recflow.data.table as T

    timings = {"read": 0.0, "combine": 0.0}
    read_part, combine = T.read_part, T.combine

    def timed(fn, what):
        def run(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timings[what] += time.perf_counter() - t

        return run

    T.read_part, T.combine = timed(read_part, "read"), timed(combine, "combine")
    try:
        t, cpu = time.perf_counter(), time.process_time()
        parts = T.list_parts(spec.path)
        digests = T.part_digests(parts, cache / "digests.json")
        timings["locate"] = time.perf_counter() - t
        timings["locate_cpu"] = time.process_time() - cpu
        out.mkdir(parents=True)
        t, cpu = time.perf_counter(), time.process_time()
        summary = T.ingest_table(spec, out, cache, parts=parts, digests=digests)
        timings["ingest"] = time.perf_counter() - t
        timings["ingest_cpu"] = time.process_time() - cpu
    finally:
        T.read_part, T.combine = read_part, combine
    t, cpu = time.perf_counter(), time.process_time()
    stage_manifest(out)
    timings["manifest"] = time.perf_counter() - t
    timings["manifest_cpu"] = time.process_time() - cpu
    timings["total"] = timings["locate"] + timings["ingest"]
    timings["total_cpu"] = timings["locate_cpu"] + timings["ingest_cpu"]
    return {"timings": timings, "summary": summary}


def stage_manifest(folder: Path) -> dict[str, str]:
    """What the ingest stage pays after the ingest: a sha256 of every file of its folder (its manifest, hence its fingerprint)."""
    from recflow.runtime.store import sha256_file

    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def main() -> None:
    from recflow.data.sources import TableSource

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=25_000_000)
    ap.add_argument("--days", type=int, default=200)
    ap.add_argument("--nights", type=int, default=2)
    args = ap.parse_args()
    per_day = args.rows // args.days
    n_users, n_items = max(args.rows // 150, 100), max(args.rows // 400, 100)
    with tempfile.TemporaryDirectory() as tmp:
        log, cache = Path(tmp) / "log", Path(tmp) / "cache"
        t = time.perf_counter()
        for day in range(args.days):
            write_day(log, day, per_day, n_users, n_items, seed=day)
        print(f"wrote {args.days} partitions of ~{per_day:,} rows in {time.perf_counter() - t:.1f} s")
        spec = TableSource(path=str(log), columns={"user": "uid", "item": "movie", "timestamp": "ts_ms", "rating": "stars"}, duplicates="first")
        rows = [("cold", timed_ingest(spec, Path(tmp) / "out-cold", cache))]
        for night in range(args.nights):
            write_day(log, args.days + night, per_day, n_users, n_items, seed=10_000 + night)
            rows.append((f"night {night + 1} (+1 partition)", timed_ingest(spec, Path(tmp) / f"out-{night}", cache)))
        write_day(log, 3, per_day + 10, n_users, n_items, seed=20_000)  # a late correction of day 3
        rows.append(("late correction (1 old partition rewritten)", timed_ingest(spec, Path(tmp) / "out-late", cache)))
    print(f"\nmachine: {platform.processor() or platform.machine()}, {platform.node()}; {args.rows:,} interactions over {args.days} days\n")
    head = f"{'parts read':>10} {'reused':>7} {'combine':>8} {'n_ratings':>11}"
    print(f"{'ingest':46} {head} {'locate s':>9} {'read s':>7} {'combine s':>10} {'total s':>8} {'CPU s':>6} {'manifest CPU s':>15}")
    for name, r in rows:
        p, tm = r["summary"]["partitions"], r["timings"]
        cells = f"{p['read']:>10} {p['reused']:>7} {p['combine']:>8} {r['summary']['n_ratings']:>11,}"
        times = f"{tm['locate']:>9.2f} {tm['read']:>7.2f} {tm['combine']:>10.2f} {tm['total']:>8.2f} {tm['total_cpu']:>6.2f} {tm['manifest_cpu']:>15.2f}"
        print(f"{name:46} {cells} {times}")
    print("\n(CPU s: locate + ingest, the process's CPU time; manifest: the sha256 of the stage folder the pipeline adds after it)")


if __name__ == "__main__":
    main()
