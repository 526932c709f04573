"""Hybrid training step time at the ML-25M index shape (162,541 users, 59,047 items), 2 CPU cores.

    python -m bench.hybrid [--examples 300000] [--epochs 2] [--variants default,jit,...]

A synthetic train (``recflow.prep.interactions.Interactions`` built here, seeded): the ML-25M index
(every user and item exists, so the embedding tables and the lazy-Adam moments have 25M's size)
but only ``--examples`` ratings, popularity Zipf-like over items; items get a synthetic title
(random words: the TF-IDF -> LSA text block has its usual width), 1-3 of 20 genres and three
numeric features. One fit per variant, no validation; the figure is the median over epochs 2..
of (epoch seconds / steps): epoch 1 also pays tracing (and XLA compilation). The last column
extrapolates one epoch over ML-25M's ~22M train positives at that per-example rate.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics

import numpy as np

N_USERS, N_ITEMS, POSITIVES_25M = 162_541, 59_047, 22_000_000
GENRES = [f"G{g}" for g in range(20)]

VARIANTS = {  # label -> HybridRecommender params (on top of lazy_adam, as configs/ml-25m.yaml)
    "default": {},
    "no_determinism": {"deterministic": False},
    "jit": {"jit_compile": True},
    "shared256": {"shared_negatives": 256},
    "jit+shared256": {"jit_compile": True, "shared_negatives": 256},
    "jit+shared256+B4096": {"jit_compile": True, "shared_negatives": 256, "batch_size": 4096},
    "jit+shared512+B4096": {"jit_compile": True, "shared_negatives": 512, "batch_size": 4096},
    "jit+adam": {"jit_compile": True, "optimizer": "adam"},
}


def synthetic(n_examples: int, seed: int = 0):
    """(train Interactions, FitContext) at the ML-25M index shape with ``n_examples`` ratings."""
    import pandas as pd

    from recflow.models.context import FitContext
    from recflow.prep.interactions import Interactions

    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.8
    items = rng.choice(N_ITEMS, n_examples, p=pop / pop.sum()).astype(np.int32)
    users = np.concatenate([np.arange(N_USERS), rng.integers(0, N_USERS, max(n_examples - N_USERS, 0))])[:n_examples].astype(np.int32)
    ratings = rng.choice(np.array([2.0, 3.0, 4.0, 5.0], np.float32), n_examples, p=[0.15, 0.25, 0.35, 0.25])
    ids_u, ids_i = np.arange(N_USERS), np.arange(N_ITEMS)
    train = Interactions(users, items, ratings, np.arange(n_examples, dtype=np.int64), ids_u, ids_i)
    words = np.array([f"w{w}" for w in range(5000)])
    titles = [" ".join(words[rng.integers(0, 5000, 3)]) + " (1999)" for _ in range(N_ITEMS)]
    genres = [list(rng.choice(GENRES, rng.integers(1, 4), replace=False)) for _ in range(N_ITEMS)]
    catalogue = pd.DataFrame({"item_id": ids_i, "title": titles, "genres": genres})
    feats = pd.DataFrame(
        {
            "item_id": ids_i,
            "mean_rating": rng.normal(3.5, 0.5, N_ITEMS),
            "rating_count": np.bincount(items, minlength=N_ITEMS),
            "year": rng.integers(1950, 2020, N_ITEMS),
        }
    )
    return train, FitContext(items=catalogue, item_features=feats)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=300_000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from recflow.models.hybrid import HybridRecommender

    train, context = synthetic(args.examples)
    rows = []
    for label in args.variants.split(","):
        params = {"optimizer": "lazy_adam", "epochs": args.epochs, "genre_overlap_queries": 200, **VARIANTS[label]}
        model = HybridRecommender(**params).fit(train, context)
        n = int((train.ratings >= 4).sum())  # the positives (threshold 4)
        steps = -(-n // int(params.get("batch_size", 1024)))
        secs = [h["seconds"] for h in model.history_]
        med = statistics.median(secs[1:] or secs)
        rows.append((label, n, steps, 1000 * med / steps, med, secs[0], med / n * POSITIVES_25M, model.history_[-1]["loss"]))
        print(f"done: {label} {secs} loss {model.history_[-1]['loss']:.4f}", flush=True)

    machine = f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}"
    print(f"\nmachine: {machine}; {N_USERS:,} users x {N_ITEMS:,} items, {args.examples:,} ratings, {args.epochs} epochs\n")
    print("| variant | positives | steps/epoch | ms/step (median, epochs 2..) | s/epoch | epoch 1 s | s/epoch at 22M positives | last loss |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, n, steps, ms, med, first, ext, loss in rows:
        print(f"| {label} | {n:,} | {steps} | {ms:.1f} | {med:.1f} | {first:.1f} | {ext:,.0f} | {loss:.4f} |")


if __name__ == "__main__":
    main()
