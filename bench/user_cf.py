"""user_cf at ML-25M scale: fit time, prediction and ranking throughput, peak memory.

    python -m bench.user_cf [--scale 25000000] [--eval-users 20000]

Writes an ML-25M-sized synthetic set (162,541 users x 59,047 items, the real ``ratings.csv``
format), ingests it, splits it random 90/10 and fits ``user_cf`` with its defaults, timing each
fit stage. RMSE covers every test rating; Recall@50 / NDCG@50 rank every item for a seeded sample
of ``--eval-users`` test users (full ranking over all 162k takes proportionally longer). The
synthetic ratings carry little neighbour signal, so the quality numbers only prove the path
runs end to end at that size; quality is judged on ML-1M (``bench.quality``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=25_000_000)
    ap.add_argument("--eval-users", type=int, default=20_000)
    args = ap.parse_args()

    import pandas as pd

    from recflow.data import ingest_dataset, write_synthetic
    from recflow.evaluation.evaluate import evaluate_ranking, evaluate_ratings
    from recflow.experiments.config import SplitConfig
    from recflow.models.user_cf import UserCFRecommender
    from recflow.prep.interactions import index_split
    from recflow.prep.split import split_ratings

    rows: list[tuple[str, float]] = []
    users, items = (162_541, 59_047) if args.scale >= 20_000_000 else (max(args.scale // 150, 100), max(args.scale // 400, 50))
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "out"
        t = time.perf_counter()
        write_synthetic(raw, n_users=users, n_items=items, n_ratings=args.scale, format="ml-25m", seed=0)
        rows.append(("generate synthetic", time.perf_counter() - t))
        t = time.perf_counter()
        out.mkdir()
        ingest_dataset(raw, out, max_reject_fraction=0.001)
        ratings = pd.read_parquet(out / "ratings.parquet")
        parts = index_split(split_ratings(ratings, SplitConfig(protocol="random", valid_fraction=0.0)).frame)
        del ratings
        rows.append(("ingest + split", time.perf_counter() - t))
    train, test = parts["train"], parts["test"]

    model = UserCFRecommender()
    t = time.perf_counter()
    model.fit(train)
    rows.append(("fit (SVD + HNSW + neighbours)", time.perf_counter() - t))

    t = time.perf_counter()
    rating = evaluate_ratings(model, test)
    predict_s = time.perf_counter() - t
    rows.append((f"predict {rating['n_rated']:,} test ratings", predict_s))

    rng = np.random.default_rng(0)
    test_users = np.unique(test.user_idx)
    sample = np.sort(rng.choice(test_users, size=min(args.eval_users, len(test_users)), replace=False))
    keep = np.isin(test.user_idx, sample)
    sampled_test = type(test)(
        user_idx=test.user_idx[keep],
        item_idx=test.item_idx[keep],
        ratings=test.ratings[keep],
        timestamps=test.timestamps[keep],
        user_ids=test.user_ids,
        item_ids=test.item_ids,
    )
    t = time.perf_counter()
    ranking = evaluate_ranking(model, train, sampled_test, ks=[50])
    rank_s = time.perf_counter() - t
    rows.append((f"full ranking, {ranking['n_eval_users']:,} users", rank_s))

    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{len(train):,} train / {len(test):,} test ratings, {train.n_users:,} users x {train.n_items:,} items\n"
    )
    print("| stage | seconds |")
    print("|---|---:|")
    for name, s in rows:
        print(f"| {name} | {s:.1f} |")
    print(
        f"\nRMSE {rating['rmse']:.4f} ({rating['n_rated'] / predict_s:,.0f} predictions/s); "
        f"Recall@50 {ranking['recall_at_50']:.4f}, NDCG@50 "
        f"{ranking['ndcg_at_50']:.4f} ({ranking['n_eval_users'] / rank_s:,.0f} users/s); "
        f"peak RSS {peak_rss_gb():.2f} GB"
    )


if __name__ == "__main__":
    main()
