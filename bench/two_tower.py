"""Two-tower training throughput (examples/s) on ml-1m, RecBole protocol, 2 CPU cores.

    python -m bench.two_tower [--data-dir ../shared/datasets] [--epochs 4]

One fit per variant on the same split and features, no validation (throughput only). The figure
is the median over epochs 2.. of (training positives / epoch seconds): epoch 1 also pays the XLA
compilation. Target (issue #3): >= 100k examples/s; the reference notebook ran ~13k/s. Quality
of the default lives in ``bench.quality`` (Recall@10 after early stopping).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

VARIANTS = {  # label -> TwoTowerRecommender params
    "softmax, 256 shared negatives, B=1024 (default)": {},
    "softmax, whole batch (B x B logits), B=1024": {"shared_negatives": None},
    "softmax, whole batch, B=512": {"shared_negatives": None, "batch_size": 512},
    "bpr, uniform unseen negatives, B=1024": {"loss": "bpr"},
}


def prepared_ml1m(data_dir: Path, tmp: Path):
    """(train Interactions, FitContext) of ml-1m under configs/ml-1m-recbole.yaml's split."""
    import pandas as pd

    from recflow.data import ingest_dataset
    from recflow.experiments.config import FeaturesConfig, load_config
    from recflow.models.context import FitContext
    from recflow.prep.features import write_feature_tables
    from recflow.prep.interactions import index_split
    from recflow.prep.split import split_ratings

    cfg = load_config(REPO / "configs" / "ml-1m-recbole.yaml")
    ingest_dataset(data_dir / "ml-1m", tmp, max_reject_fraction=0.001)
    frame = split_ratings(pd.read_parquet(tmp / "ratings.parquet"), cfg.split).frame
    items = pd.read_parquet(tmp / "items.parquet")
    write_feature_tables(frame[frame["split"] == "train"], items, FeaturesConfig(), tmp / "features", {})
    parts = index_split(frame)
    context = FitContext(
        user_features=pd.read_parquet(tmp / "features" / "user_features.parquet"),
        item_features=pd.read_parquet(tmp / "features" / "item_features.parquet"),
    )
    return parts["train"], context


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "datasets")
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from recflow.models.two_tower import TwoTowerRecommender

    with tempfile.TemporaryDirectory() as tmp:
        train, context = prepared_ml1m(args.data_dir, Path(tmp))
    rows = []
    for label, params in VARIANTS.items():
        model = TwoTowerRecommender(epochs=args.epochs, **params).fit(train, context)
        rates = [h["examples_per_second"] for h in model.history_[1:]] or [model.history_[0]["examples_per_second"]]
        rows.append((label, model.n_examples_, statistics.median(rates), min(rates), max(rates), model.history_[0]["seconds"]))
        print(f"done: {label}", flush=True)

    print(
        f"\nmachine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}; "
        f"ml-1m RecBole split, {args.epochs} epochs each\n"
    )
    print("| variant | examples / epoch | median examples/s (epochs 2..) | min | max | epoch 1 s (with compile) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, n, med, lo, hi, first in rows:
        print(f"| {label} | {n:,} | {med:,.0f} | {lo:,.0f} | {hi:,.0f} | {first:.1f} |")
    print("| *reference notebook 1* | | *~13,000* | | | |")


if __name__ == "__main__":
    main()
