"""Cold retrain vs nightly (warm-started) run on the same data, same machine, one process.

    python -m bench.nightly [--dataset ml-1m|synth] [--synth-ratings 25000000] [--share 0.005]
                            [--models popular,ease,edlae,mf,bpr,item2vec] [--out bench-nightly.json]

The data: a release's canonical ratings (ML-1M from ../shared/datasets, or ``recflow synth`` at
ML-25M's shape scaled to ``--synth-ratings``), ordered by time. Its latest ``2 x share`` of the
rows become two nights of ``share`` each (0.5% by default): their timestamps are moved, in order,
onto the two UTC days after the rest (a release's own last days hold far fewer or far more than
0.5%; the move keeps the order and makes each night exactly one day). Then, each in a fresh
artifacts root and through ``run_pipeline`` (the flow the schedule runs) with a ``time_forward``
split by day, so tonight's day is the test part:

* **nightly**: yesterday (history + night 1) is run first (cold: this is the state a nightly
  schedule has), then tonight (history + nights 1 and 2) warm-starts from it: the timed run;
* **cold**: tonight's data in another empty root with ``warm_start: false``: a full cold retrain.

Both runs judge the same test day, so the per-model quality delta (warm minus cold
Recall@10, with the cold fit's 95% CI) compares like with like. The table gives wall seconds per
run (``run_pipeline``'s wall, the Prefect server start excluded) and per model (its train
task's ``fit_seconds``), epochs run, and whether each model warm-started. Both read the rows
as a ``table`` source over a Hive-partitioned log (one partition per day): the nightly root's log
gains tonight's partition after yesterday's run, so its ingest reads one partition; the cold root
reads them all. Then the table ingest alone is timed at library level: every partition into an
empty cache, then one more partition into that cache (the <= 2 s target at 25M).

Per stage: each run's task runs are read back from the embedded Prefect server's database
(``bench.scale.task_runs``: end minus start of every task run inside the run's interval), so the
table says where a night's seconds go (ingest, split, features, sampling, each train, evaluate,
index, track[mlflow] ...). Models train concurrently in the thread pool, so on 2 cores a task's
wall seconds include what ran beside it; the stage rows are not additive.

The machine is shared: the load average at the start and end is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
DAY = 86_400
FULL_25M = {"n_ratings": 25_000_000, "n_users": 162_541, "n_items": 59_047}
#: per shape: ML-1M's settings, and the synthetic 25M shape's from configs/ml-25m.yaml (EASE / EDLAE over the
#: 6,000 most popular items, fewer epochs) so a run fits a 24 GB / 2-core machine. bpr runs 4 epochs there, not
#: the preset's 1: a warm fit runs at least ``warm_min_epochs`` (2), so a 1-epoch cold fit could not be beaten.
MODELS = {
    "ml-1m": {
        "popular": {},
        "ease": {"l2": 500.0},
        "edlae": {},
        "mf": {"factors": 32, "epochs": 15},
        "bpr": {"factors": 32, "epochs": 20},
        "item2vec": {"epochs": 5},
    },
    "synth": {
        "popular": {},
        "ease": {"top_items": 6000, "max_items": 6000, "l2": 2000.0},
        "edlae": {"top_items": 6000, "max_items": 6000},
        "mf": {"epochs": 6},
        "bpr": {"epochs": 4, "batch_size": 16384, "lr": 0.005},
        "item2vec": {"epochs": 2, "workers": 2},
    },
}


def canonical_ratings(dataset: str, synth_ratings: int, work: Path) -> pd.DataFrame:
    from recflow.data import ingest_dataset, write_synthetic

    if dataset == "ml-1m":
        release = SHARED / "ml-1m"
        if not release.is_dir():
            raise SystemExit(f"{release} is absent")
    else:
        f = synth_ratings / FULL_25M["n_ratings"]
        release = work / "synth-release"
        write_synthetic(
            release,
            n_users=max(int(FULL_25M["n_users"] * f), 10),
            n_items=max(int(FULL_25M["n_items"] * f), 10),
            n_ratings=synth_ratings,
            rank=16,
            format="ml-25m",
        )
    tables = work / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    ingest_dataset(release, tables, max_reject_fraction=0.01)
    return pd.read_parquet(tables / "ratings.parquet", columns=["user_id", "item_id", "rating", "timestamp"])


def with_two_nights(ratings: pd.DataFrame, share: float) -> tuple[pd.DataFrame, int]:
    """The latest ``2 x share`` of the rows moved, in time order, onto the two days after the rest; returns (frame, night size)."""
    frame = ratings.sort_values(["timestamp", "user_id", "item_id"], kind="stable").reset_index(drop=True)
    n_night = max(int(round(share * len(frame))), 1)
    history = len(frame) - 2 * n_night
    first_day = (int(frame["timestamp"].iloc[history - 1]) // DAY + 1) * DAY
    ts = frame["timestamp"].to_numpy(np.int64).copy()
    for night in range(2):
        rows = slice(history + night * n_night, history + (night + 1) * n_night)
        ts[rows] = first_day + night * DAY + (np.arange(n_night) * (DAY - 1) // max(n_night, 1))
    frame["timestamp"] = ts
    return frame, n_night


def event_log(frame: pd.DataFrame, folder: Path) -> Path:
    """The rows as a Hive-partitioned log, one partition per UTC day (``recflow.data.eventlog``)."""
    from recflow.data.eventlog import write_event_log

    write_event_log(frame, folder, "day")
    return folder


def source_spec(log: Path) -> str:
    return f"{{kind: table, path: '{log}', columns: {{user: user, item: item, timestamp: timestamp, rating: rating}}}}"


def timed_partition_ingest(yesterday: pd.DataFrame, night: pd.DataFrame, work: Path) -> tuple[float, float, dict]:
    """Library-level table ingest: yesterday's log cold, then the same cache after one more partition (seconds each)."""
    from recflow.data.eventlog import append_partition
    from recflow.data.table import ingest_table
    from recflow.experiments.config import load_config

    full = event_log(pd.concat([yesterday, night]), work / "ingest-full")
    live = event_log(yesterday, work / "ingest-live")
    spec = load_config(None, ["dataset.name=bench-ingest", f"dataset.source={source_spec(live)}"]).dataset.source
    started = time.perf_counter()
    ingest_table(spec, _fresh(work / "ingest-out-1"), work / "ingest-cache", max_reject_fraction=0.01)
    cold = time.perf_counter() - started
    new = sorted(set(p.name for p in full.glob("date=*")) - set(p.name for p in live.glob("date=*")))
    for name in new:
        append_partition(full, live, name)
    started = time.perf_counter()
    summary = ingest_table(spec, _fresh(work / "ingest-out-2"), work / "ingest-cache", max_reject_fraction=0.01)
    return cold, time.perf_counter() - started, summary.get("partitions", {})


def _fresh(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def overlay(work: Path, name: str, log: Path, models: list[str], warm: bool, shape: str = "ml-1m") -> Path:
    source = yaml.safe_load(source_spec(log))
    cfg = {
        "dataset": {"name": name, "source": source, "max_reject_fraction": 0.01},
        "split": {"protocol": "time_forward", "period": "day"},
        "evaluation": {"ks": [10], "bootstrap_samples": 1000},
        "serving": {"register_model": False},
        "index": {"kinds": ["flat"]},
        "warm_start": warm,
        "models": [{"name": m, **MODELS[shape].get(m, {})} for m in models],
    }
    path = work / f"{name}-{'warm' if warm else 'cold'}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def timed_run(config: Path, root: Path) -> tuple[dict, float]:
    """One ``run_pipeline`` into ``root``, timed (the Prefect API is up already: ``main`` starts one for the process).

    The result gains ``window``: its start and end in epoch seconds (for ``stage_seconds`` once the server has stopped
    and written every task run's final state)."""
    from flows.pipeline import run_pipeline

    os.environ["RECFLOW_HOME"] = str(root)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    started, since = time.perf_counter(), time.time()
    result = run_pipeline(str(config), root=root)
    wall = time.perf_counter() - started
    return {**result, "window": (since, time.time())}, wall


def stage_seconds(prefect_home: Path, window: tuple[float, float]) -> dict[str, float]:
    """Wall seconds of every task run that started in ``window``, by task run name (summed over repeats)."""
    from bench.scale import task_runs

    since, until = window
    out: dict[str, float] = {}
    for run in task_runs(prefect_home):
        if since - 1 <= run["start"] <= until and run["end"] is not None:
            out[run["name"]] = round(out.get(run["name"], 0.0) + run["end"] - run["start"], 3)
    return out


def model_rows(cold: dict, night: dict, models: list[str]) -> list[dict]:
    rows = []
    for m in models:
        c, w = cold["metrics"].get(m, {}), night["metrics"].get(m, {})
        ct, wt = cold["training"].get(m, {}), night["training"].get(m, {})
        rows.append(
            {
                "model": m,
                "cold_fit_s": ct.get("fit_seconds"),
                "night_fit_s": wt.get("fit_seconds"),
                "cold_epochs": ct.get("epochs_run"),
                "night_epochs": wt.get("epochs_run"),
                "warm": bool(wt.get("warm_start_from")),
                "warm_fit": warm_fit_note(wt.get("warm_start", {})),
                "cold_recall": c.get("recall_at_10"),
                "cold_ci": (c.get("recall_at_10_ci_low"), c.get("recall_at_10_ci_high")),
                "night_recall": w.get("recall_at_10"),
                "within_ci": c.get("recall_at_10_ci_low") is not None and w.get("recall_at_10") is not None and w["recall_at_10"] >= c["recall_at_10_ci_low"],
            }
        )
    return rows


def warm_fit_note(warm: dict) -> str:
    """What a warm fit ran over, from its train summary's ``warm_start``: rows, sentences, solved users / items, or a closed form kept."""
    if "resolved" in warm:
        return f"{'re-solved' if warm['resolved'] else 'B kept'} (dG {warm.get('gram_change', 0):.2%})"
    counted = (("rows_per_epoch", "of_rows", "rows/epoch"), ("sentences_trained", "of_sentences", "sentences"), ("users_solved", "of_users", "users"))
    for done, total, what in counted:
        if done in warm:
            extra = f", {warm['items_solved']:,}/{warm['of_items']:,} items" if done == "users_solved" else ""
            return f"{warm[done]:,}/{warm[total]:,} {what}{extra}"
    return "-"


def stage_rows(cold: dict[str, float], night: dict[str, float]) -> list[dict]:
    """One row per task run name, in the cold run's order of cost."""
    names = sorted(set(cold) | set(night), key=lambda n: (-cold.get(n, 0.0), n))
    return [{"stage": n, "cold_s": cold.get(n), "night_s": night.get(n)} for n in names]


def print_stages(rows: list[dict]) -> None:
    if not rows:
        return
    print(f"{'stage (task run)':<28} {'cold s':>8} {'night s':>8}")
    for r in rows:
        cells = [f"{r[k]:.2f}" if r[k] is not None else "-" for k in ("cold_s", "night_s")]
        print(f"{r['stage']:<28} {cells[0]:>8} {cells[1]:>8}")


def print_table(summary: dict) -> None:
    print(f"\n{summary['dataset']}: {summary['n_ratings']:,} ratings, nights of {summary['n_night']:,} ({summary['share']:.1%}); {summary['machine']}")
    print(f"load average before / after: {summary['load_before']} / {summary['load_after']}")
    print(
        f"run wall s: cold retrain {summary['cold_wall_s']:.1f} | night (warm) {summary['night_wall_s']:.1f} "
        f"= {summary['night_wall_s'] / summary['cold_wall_s']:.0%} of cold | yesterday's cold setup {summary['setup_wall_s']:.1f}"
    )
    parts = summary["ingest_partitions"]
    print(
        f"table ingest (library): every partition {summary['ingest_cold_s']:.2f} s; one new partition {summary['ingest_one_partition_s']:.2f} s "
        f"({parts.get('read', '?')} of {parts.get('total', '?')} partitions read, combine: {parts.get('combine', '?')})"
    )
    heads = [("model", "<9"), ("cold fit s", ">10"), ("night fit s", ">11"), ("epochs c/n", ">10"), ("warm", ">5")]
    heads += [("cold R@10 [95% CI]", ">28"), ("night R@10", ">10"), ("delta", ">8"), ("in CI", ">6"), ("warm fit ran over", "<40")]
    print(" ".join(f"{h:{f}}" for h, f in heads))
    for r in summary["models"]:
        ci = f"[{r['cold_ci'][0]:.4f}, {r['cold_ci'][1]:.4f}]" if r["cold_ci"][0] is not None else "-"
        cold = f"{r['cold_recall']:.4f} {ci}" if r["cold_recall"] is not None else "-"
        delta = f"{r['night_recall'] - r['cold_recall']:+.4f}" if r["night_recall"] is not None and r["cold_recall"] is not None else "-"
        night = f"{r['night_recall']:.4f}" if r["night_recall"] is not None else "-"
        epochs = f"{r['cold_epochs']}/{r['night_epochs']}"
        cells = [r["model"], f"{r['cold_fit_s'] or 0:.2f}", f"{r['night_fit_s'] or 0:.2f}", epochs, "yes" if r["warm"] else "no"]
        cells += [cold, night, delta, "yes" if r["within_ci"] else "NO", r.get("warm_fit", "-")]
        print(" ".join(f"{c:{f}}" for c, (_, f) in zip(cells, heads)))
    print_stages(summary.get("stages", []))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["ml-1m", "synth"], default="ml-1m")
    parser.add_argument("--synth-ratings", type=int, default=25_000_000)
    parser.add_argument("--share", type=float, default=0.005)
    parser.add_argument("--models", default=",".join(MODELS["ml-1m"]))
    parser.add_argument("--home-dir", default=None, help="where the temporary artifacts roots go")
    parser.add_argument("--out", default=None, help="also write the summary as JSON here")
    args = parser.parse_args(argv)
    models = args.models.split(",")
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-nightly-", dir=args.home_dir))
    try:
        frame, n_night = with_two_nights(canonical_ratings(args.dataset, args.synth_ratings, work), args.share)
        name = f"bench-{args.dataset}"
        yesterday, tonight = frame.iloc[: len(frame) - n_night], frame.iloc[len(frame) - n_night :]
        live = event_log(yesterday, work / "log-nightly")  # grows by tonight's partition after yesterday's run
        full = event_log(frame, work / "log-cold")  # what a cold retrain reads: every partition
        nightly_root, cold_root = work / "root-nightly", work / "root-cold"
        from recflow.runtime.servers import run_prefect_api

        os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        with run_prefect_api(work / "prefect") as api:  # before Prefect is imported: one embedded server for every run
            api.ready()
            nightly_config = overlay(work, name, live, models, True, args.dataset)
            _, setup_wall = timed_run(nightly_config, nightly_root)
            from recflow.data.eventlog import append_partition

            for part in sorted({p.name for p in full.glob("date=*")} - {p.name for p in live.glob("date=*")}):
                append_partition(full, live, part)
            night, night_wall = timed_run(nightly_config, nightly_root)
            cold, cold_wall = timed_run(overlay(work, name, full, models, False, args.dataset), cold_root)
        ingest_cold_s, ingest_night_s, partitions = timed_partition_ingest(yesterday, tonight, work)
        summary = {
            "dataset": args.dataset if args.dataset == "ml-1m" else f"synth {args.synth_ratings:,}",
            "n_ratings": len(frame),
            "n_night": n_night,
            "share": args.share,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "load_before": " ".join(f"{x:.1f}" for x in load_before),
            "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "setup_wall_s": setup_wall,
            "night_wall_s": night_wall,
            "cold_wall_s": cold_wall,
            "ingest_cold_s": ingest_cold_s,
            "ingest_one_partition_s": ingest_night_s,
            "ingest_partitions": partitions,
            "night_ingest": night.get("ingest", {}),
            "night_tasks": night["tasks"],
            "cold_tasks": cold["tasks"],
            "models": model_rows(cold, night, models),
            "stages": stage_rows(stage_seconds(work / "prefect", cold["window"]), stage_seconds(work / "prefect", night["window"])),
        }
        print_table(summary)
        if args.out:
            Path(args.out).write_text(json.dumps(summary, indent=2, default=float))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
