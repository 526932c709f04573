"""Quality and speed of every model beside published anchors, through the real pipeline.

    python -m bench.quality [--data-dir ../shared/datasets] [--ranking-models ...] [--rating-models ...]

Runs ``configs/ml-1m-recbole.yaml`` (Recall@10 / NDCG@10 under RecBole's protocol) and
``configs/ml-1m-rmse.yaml`` (RMSE on a seeded random 90/10) in a scratch artifacts root, cold,
and prints one markdown table. Anchors: shared/notes/anchors.md and issue #3.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RANKING_ANCHORS = {  # RecBole, ML-1M, Recall@10 / NDCG@10
    "Pop": (0.0699, 0.1006),
    "BPR": (0.1725, 0.2407),
    "LightGCN": (0.1823, 0.2476),
    "EASE": (0.2139, 0.2865),
    "RecVAE": (0.2163, 0.2795),
}
RMSE_ANCHORS = {"Surprise BaselineOnly": 0.909, "Surprise SVD": 0.873, "SVD++": 0.862, "BiasedMF": 0.845, "GLocal-K": 0.8227}


def run(config: str, models: list[str] | None, root: Path) -> tuple[dict, float]:
    """One cold pipeline run of ``config`` (its own models, or ``models``); (result, wall seconds)."""
    from flows.pipeline import run_pipeline

    overrides = ["models=[" + ", ".join(f"{{name: {m}}}" for m in models) + "]"] if models else []
    started = time.perf_counter()
    result = run_pipeline(str(REPO / "configs" / config), overrides, root=root)
    return result, time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "datasets")
    ap.add_argument("--ranking-models", nargs="+", help="default: every model of configs/ml-1m-recbole.yaml")
    ap.add_argument("--rating-models", nargs="+", help="default: every model of configs/ml-1m-rmse.yaml")
    args = ap.parse_args()
    os.environ["RECFLOW_DATA_DIR"] = str(args.data_dir)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["RECFLOW_HOME"] = str(root)
        ranking, ranking_wall = run("ml-1m-recbole.yaml", args.ranking_models, root)
        rating, rating_wall = run("ml-1m-rmse.yaml", args.rating_models, root)

    rows = {}
    for name, metrics in ranking["metrics"].items():
        rows.setdefault(name, {})["recall"] = metrics["recall_at_10"]
        rows[name]["ndcg"] = metrics["ndcg_at_10"]
        rows[name]["fit"] = ranking["training"][name]["fit_seconds"]
        rows[name]["eps"] = ranking["training"][name].get("epoch_examples_per_second")
    for name, metrics in rating["metrics"].items():
        if "rmse" in metrics:
            rows.setdefault(name, {})["rmse"] = metrics["rmse"]
            rows[name]["fit_rmse"] = rating["training"][name]["fit_seconds"]

    print(
        f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"cold pipeline wall time: RecBole protocol {ranking_wall:.0f} s, random 90/10 {rating_wall:.0f} s\n"
    )
    print("| model | Recall@10 | NDCG@10 | RMSE | fit s (ranking / rating run) | training examples/s (median epoch) |")
    print("|---|---:|---:|---:|---:|---:|")
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    for name, r in rows.items():
        fits = " / ".join(f"{r[k]:.1f}" if k in r else "-" for k in ("fit", "fit_rmse"))
        eps = f"{r['eps']:,.0f}" if r.get("eps") else "-"
        print(f"| {name} | {fmt(r.get('recall'))} | {fmt(r.get('ndcg'))} | {fmt(r.get('rmse'))} | {fits} | {eps} |")
    for name, (recall, ndcg) in RANKING_ANCHORS.items():
        print(f"| *RecBole {name}* | {recall:.4f} | {ndcg:.4f} | - | - | - |")
    for name, rmse in RMSE_ANCHORS.items():
        print(f"| *{name}* | - | - | {rmse:.4f} | - | - |")


if __name__ == "__main__":
    main()
