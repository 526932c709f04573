"""Speed and memory of ingest + split + features (+ the sampling stage), on ml-1m and on an ML-25M-sized synthetic set.

    python -m bench.pipeline [--scale 25000000] [--repeats 3] [--data-dir ../shared/datasets]

Each case runs in a fresh subprocess (so peak RSS is that case's alone); stage times are medians
over the repeats. Targets (issue #2, 2 cores): ml-1m <= 10 s, 25M ratings <= 3 min, peak <= 8 GB
for ingest + split + features ("total"). Sampling (issue #3: the notebook's three negative kinds +
BPR triplets, <= 3 s on ml-1m; also item2vec sequences and DeepWalk walks with the models'
defaults) is timed after them and kept out of the total.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_case(source: str, split_protocol: str) -> dict:
    """Ingest + split + features once, in this process; returns seconds per stage and peak RSS."""
    import pandas as pd

    from recflow.data import ingest_dataset
    from recflow.experiments.config import FeaturesConfig, SplitConfig
    from recflow.prep.features import write_feature_tables
    from recflow.prep.split import split_ratings

    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t = time.perf_counter()
        summary = ingest_dataset(Path(source), out, max_reject_fraction=0.001)
        times["ingest"] = time.perf_counter() - t

        t = time.perf_counter()
        ratings = pd.read_parquet(out / "ratings.parquet")
        result = split_ratings(ratings, SplitConfig(protocol=split_protocol))
        result.frame.to_parquet(out / "split.parquet", index=False)
        times["split"] = time.perf_counter() - t
        del ratings

        t = time.perf_counter()
        train = result.frame[result.frame["split"] == "train"]
        items = pd.read_parquet(out / "items.parquet")
        (out / "features").mkdir()
        write_feature_tables(train, items, FeaturesConfig(), out / "features", {})
        times["features"] = time.perf_counter() - t
        times["total"] = sum(times.values())
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # before sampling: the issue-2 budget
        times.update(time_sampling(result.frame))
    return {"times": times, "n_ratings": summary["n_ratings"], "peak_rss_gb": peak_gb}


def time_sampling(split_frame) -> dict[str, float]:
    """The sampling stage's outputs, made as the pipeline makes them for two_tower (bpr), item2vec, deepwalk."""
    from recflow.experiments.config import SamplingConfig
    from recflow.models.deepwalk import DeepWalkRecommender
    from recflow.models.item2vec import Item2VecRecommender
    from recflow.prep.interactions import index_split
    from recflow.prep.sampling import make_samples

    train = index_split(split_frame)["train"]
    _, _, seconds = make_samples(
        train, negatives=SamplingConfig(), sequences=Item2VecRecommender().sampling_needs()["sequences"], walks=DeepWalkRecommender().sampling_needs()["walks"]
    )
    return seconds


def measure(source: Path, protocol: str, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-m", "bench.pipeline", "--case", str(source), "--protocol", protocol],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    stages = runs[0]["times"].keys()
    return {
        "n_ratings": runs[0]["n_ratings"],
        "median": {s: statistics.median(r["times"][s] for r in runs) for s in stages},
        "peak_rss_gb": max(r["peak_rss_gb"] for r in runs),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case")
    ap.add_argument("--protocol", default="temporal")
    ap.add_argument("--scale", type=int, default=25_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "datasets")
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.protocol)))
        return

    from recflow.data import write_synthetic

    rows = []
    if (args.data_dir / "ml-1m").is_dir():
        rows.append(("ml-1m", measure(args.data_dir / "ml-1m", args.protocol, args.repeats), 10))
    with tempfile.TemporaryDirectory() as tmp:
        users, items = (162_541, 59_047) if args.scale >= 20_000_000 else (max(args.scale // 150, 100), max(args.scale // 400, 50))
        t = time.perf_counter()
        write_synthetic(Path(tmp), n_users=users, n_items=items, n_ratings=args.scale, format="ml-25m", seed=0)
        gen = time.perf_counter() - t
        rows.append((f"synthetic {args.scale / 1e6:g}M", measure(Path(tmp), args.protocol, args.repeats), 180))

    print(
        f"\nmachine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"{__import__('os').cpu_count()} cores; protocol {args.protocol}; median of {args.repeats}; "
        f"synthetic generation took {gen:.1f} s\n"
    )
    print("| dataset | ratings | ingest s | split s | features s | total s | target s | peak RSS GB | negatives + triplets s | sequences s | walks s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, m, target in rows:
        t = m["median"]
        print(
            f"| {name} | {m['n_ratings']:,} | {t['ingest']:.2f} | {t['split']:.2f} | {t['features']:.2f} | "
            f"{t['total']:.2f} | {target} | {m['peak_rss_gb']:.2f} | {t['negatives_and_triplets']:.2f} | {t['sequences']:.2f} | {t['walks']:.2f} |"
        )


if __name__ == "__main__":
    main()
