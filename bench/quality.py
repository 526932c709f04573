"""Tuned quality and speed of each model over several split seeds, beside published anchors.

    python -m bench.quality --preset ml-1m-recbole --models item_knn user_cf --tune-trials 15
    python -m bench.quality --preset ml-1m-rmse --models mf --overlay configs/ml-1m-rmse.tuned.yaml
    python -m bench.quality --preset ml-1m-recbole --set dataset.name=ml-latest-small --tune-trials 10
    python -m bench.quality --report            # the table of everything recorded under --root

The procedure is the one a user runs, with no hand tuning per dataset:

1. **tune** (``--tune-trials`` / ``--tune-minutes``): ``recflow tune`` (flows/tune.py) for each
   model that declares a search space, on the preset's validation part (the test split is never
   read), with the preset's selection metric (``PRESETS``: NDCG@10 as RecBole selects, RMSE for
   the rating preset). The best parameters of every model are merged into one overlay,
   ``<root>/tuning/<preset>[+<dataset>].tuned.yaml``.
2. **run**: ``recflow run --config <preset> --config <overlay>`` once per split seed
   (``--seeds``; default the preset's seed and the next two), every stage through the pipeline.
   The tuning used the preset's own seed: the other seeds' test parts overlap its validation
   part, so the spread over seeds says how stable the tuned setting is, not a clean re-tuning.

Every result is appended to ``<root>/bench-quality.jsonl``, so a slow machine can run it in
pieces (one preset, a few models, one seed at a time) against one ``--root``: studies resume and
pipeline stages are cached there, and each call prints the table of everything recorded so far.
The table: mean ± sample std over the seeds measured (the count is shown), the tuning wall time
(all of a study's invocations summed) and the median fit time. A row is one model under one
setting: every run row records the model's merged parameters (``settings``, overlays included),
and runs of one model under two settings (two overlays, a changed preset) are two rows, labelled
with their settings id and the parameters in which they differ, never averaged together.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

#: the metric each preset selects on while tuning
PRESETS = {"ml-1m-recbole": "ndcg_at_10", "ml-1m-rmse": "rmse", "default": "ndcg_at_10", "ml-1m": "ndcg_at_10"}

# ../shared/notes/anchors.md: RecBole 1.2.1 and Surprise 1.1.5 run on a 2-core CPU machine like ours
# (Recall@10, NDCG@10, wall s), then numbers published for the same protocols
RANKING_ANCHORS = {
    "RecBole Pop (measured)": (0.0698, 0.1009, 11),
    "RecBole BPR (measured)": (0.1734, 0.2369, 143),
    "RecBole ItemKNN (measured)": (0.1689, 0.2345, 42),
    "RecBole MultiVAE (measured)": (0.1886, 0.2411, 325),
    "RecBole EASE (measured)": (0.2124, 0.2789, 13),
    "LightGCN (published)": (0.1823, 0.2476, None),
    "ADMM-SLIM (published)": (0.2134, 0.2904, None),
    "RecVAE (published, best Recall@10)": (0.2163, 0.2795, None),
}
RMSE_ANCHORS = {  # RMSE, fit s
    "Surprise BaselineOnly (measured)": (0.9076, 1.5),
    "Surprise SVD (measured)": (0.8659, 5.7),
    "BiasedMF (published)": (0.845, None),
    "I-AutoRec (published)": (0.831, None),
    "GLocal-K (published)": (0.8227, None),
}


def preset_path(preset: str) -> Path:
    path = Path(preset)
    return path if path.suffix in (".yaml", ".yml") and path.exists() else REPO / "configs" / f"{preset}.yaml"


def label(preset: str, overrides: list[str]) -> str:
    """The preset, plus any dataset override (``ml-1m-recbole+ml-latest-small``)."""
    stem = preset_path(preset).stem
    dataset = next((o.split("=", 1)[1] for o in overrides if o.startswith("dataset.name=")), None)
    return f"{stem}+{dataset}" if dataset else stem


def record(root: Path, row: dict) -> None:
    with open(root / "bench-quality.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def recorded(root: Path) -> list[dict]:
    path = root / "bench-quality.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


# -- 1. tune -------------------------------------------------------------------------------------
def tune(preset: str, overrides: list[str], models: list[str], root: Path, trials: int | None, minutes: float | None, metric: str) -> Path:
    """Tune every model that declares a space; merge their best parameters into one overlay."""
    from flows.tune import run_tune
    from recflow.models import MODELS

    name = label(preset, overrides)
    merged: dict[str, dict] = {}
    for model in models:
        if not MODELS[model].search_space:
            continue
        if metric == "rmse" and not MODELS[model].predicts_ratings:
            continue
        started = time.perf_counter()
        out = root / "tuning" / f"{name}.{model}.yaml"
        result = run_tune([str(preset_path(preset))], overrides, model, root=root, trials=trials, minutes=minutes, metric=metric, out=str(out))
        seconds = time.perf_counter() - started
        best = {k: result[k] for k in ("best_value", "best_params", "n_completed", "study")}
        record(root, {"kind": "tune", "preset": name, "model": model, "seconds": seconds, "metric": metric, **best})
        merged[model] = {"name": model, **result["best_params"]}
        print(f"tuned {model}: {metric} (validation) {result['best_value']:.4f} after {result['n_completed']} trials, {seconds:.0f} s", flush=True)
    overlay = root / "tuning" / f"{name}.tuned.yaml"
    previous = yaml.safe_load(overlay.read_text()) if overlay.exists() else {"models": []}
    for entry in previous.get("models", []):
        merged.setdefault(entry["name"], entry)
    header = f"# bench.quality: best validation {metric} per model, preset {name}\n"
    overlay.write_text(header + yaml.safe_dump({"models": list(merged.values())}, sort_keys=False))
    print(f"overlay: {overlay}")
    return overlay


# -- 2. run over split seeds ---------------------------------------------------------------------
def preset_seed(preset: str) -> int:
    return int((yaml.safe_load(preset_path(preset).read_text()).get("split") or {}).get("seed", 42))


def run_seeds(preset: str, overrides: list[str], overlays: list[Path], models: list[str] | None, seeds: list[int], root: Path) -> None:
    from flows.pipeline import run_pipeline
    from recflow.experiments.config import load_config

    name = label(preset, overrides)
    configs = [str(preset_path(preset)), *map(str, overlays)]
    for seed in seeds:
        started = time.perf_counter()
        run_overrides = [*overrides, f"split.seed={seed}", *_selection(configs, overrides, models)]
        cfg = load_config(configs, run_overrides)
        result = run_pipeline(configs, run_overrides, root=root)
        wall = time.perf_counter() - started
        for model, metrics in result["metrics"].items():
            keep = {k: v for k, v in metrics.items() if k in ("recall_at_10", "ndcg_at_10", "rmse") and v is not None}
            settings = cfg.model(model).model_dump(mode="json")  # what the row measured: the merged parameters, overlays included
            row = {"kind": "run", "preset": name, "model": model, "seed": seed, "settings": settings, "settings_id": settings_id(settings)}
            record(root, {**row, "fit_seconds": result["training"][model].get("fit_seconds"), **keep})
        print(f"{name} seed {seed}: pipeline {wall:.0f} s", flush=True)


def _selection(configs: list[str], overrides: list[str], models: list[str] | None) -> list[str]:
    """``models=[...]`` keeping only ``models``, each with its merged parameters (the overlays' too:
    a bare ``models=[{name: x}]`` override would replace the list and drop them)."""
    if not models:
        return []
    from recflow.experiments.config import load_config

    cfg = load_config(configs, overrides)
    entries = []
    for model in models:
        try:
            entries.append(cfg.model(model).model_dump(mode="json"))
        except KeyError:
            entries.append({"name": model})
    return ["models=" + json.dumps(entries)]


# -- 3. the table --------------------------------------------------------------------------------
UNRECORDED = "unrecorded"  # rows from before settings were recorded


def settings_id(settings: dict) -> str:
    """A short digest of a model's merged parameters: rows with one id measured one setting."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def by_settings(runs: list[dict], model: str) -> dict[str, list[dict]]:
    """A model's run rows grouped by their settings (never mixing two overlays in one row), the latest run per seed."""
    groups: dict[str, dict[int, dict]] = {}
    for r in runs:
        if r["model"] == model:
            groups.setdefault(r.get("settings_id", UNRECORDED), {})[r["seed"]] = r  # a seed measured twice: the latest counts
    return {key: list(latest.values()) for key, latest in groups.items()}


def settings_difference(groups: dict[str, list[dict]]) -> dict[str, str]:
    """Per settings id, the parameters in which it differs from the model's other settings (``l2=500``)."""
    known = {key: rows[-1].get("settings") or {} for key, rows in groups.items()}
    names = sorted({k for s in known.values() for k in s if len({json.dumps(v.get(k)) for v in known.values()}) > 1})
    return {key: ", ".join(f"{k}={json.dumps(s.get(k))}" for k in names) or ("settings not recorded" if key == UNRECORDED else "") for key, s in known.items()}


def _stat(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def _table_row(shown: str, mine: list[dict], tuned: list[dict]) -> None:
    tuned = [r for r in tuned if r["study"] == tuned[-1]["study"]] if tuned else []  # the latest study's invocations
    tuning = f"{sum(r['seconds'] for r in tuned):.0f} ({tuned[-1]['n_completed']})" if tuned else "-"
    fits = [r["fit_seconds"] for r in mine if r.get("fit_seconds") is not None]
    cells = [_stat([r[k] for r in mine if k in r]) for k in ("recall_at_10", "ndcg_at_10", "rmse")]
    fit = f"{statistics.median(fits):.1f}" if fits else "-"
    print(f"| {shown} | {len(mine)} | {' | '.join(cells)} | {tuning} | {fit} |")


def table(rows: list[dict]) -> None:
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    for preset in dict.fromkeys(r["preset"] for r in rows):
        runs = [r for r in rows if r["preset"] == preset and r["kind"] == "run"]
        tunes = [r for r in rows if r["preset"] == preset and r["kind"] == "tune"]
        print(f"\n### {preset}\n")
        print("| model | seeds | Recall@10 | NDCG@10 | RMSE | tuning s (trials) | fit s (median) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for model in dict.fromkeys(r["model"] for r in runs + tunes):
            groups = by_settings(runs, model) or {UNRECORDED: []}
            differ = settings_difference(groups) if len(groups) > 1 else {}
            for key, mine in groups.items():
                shown = f"{model} [{key}: {differ[key]}]" if key in differ else model
                _table_row(shown, mine, [r for r in tunes if r["model"] == model])
        if preset.startswith("ml-1m-recbole") and "+" not in preset:
            for name, (recall, ndcg, wall) in RANKING_ANCHORS.items():
                print(f"| *{name}* | | {recall:.4f} | {ndcg:.4f} | - | - | {wall if wall is not None else '-'} (wall) |")
        if preset.startswith("ml-1m-rmse") and "+" not in preset:
            for name, (rmse, fit) in RMSE_ANCHORS.items():
                print(f"| *{name}* | | - | - | {rmse:.4f} | - | {fit if fit is not None else '-'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="ml-1m-recbole", help="a configs/<name>.yaml or a YAML path (default ml-1m-recbole)")
    ap.add_argument("--models", nargs="+", help="default: the preset's models")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value (e.g. dataset.name=ml-latest-small)")
    ap.add_argument("--seeds", nargs="+", type=int, help="split seeds (default: the preset's seed and the next two)")
    ap.add_argument("--tune-trials", type=int, help="tune each model to this many completed trials first")
    ap.add_argument("--tune-minutes", type=float, help="... or for at most this long per model")
    ap.add_argument("--metric", help="tuning metric (default: the preset's, see PRESETS)")
    ap.add_argument("--overlay", type=Path, action="append", default=[], help="tuned overlay(s) to run with, instead of or besides tuning")
    default_root = Path(os.environ.get("RECFLOW_HOME", "~/.recflow")).expanduser() / "bench-quality"
    ap.add_argument("--root", type=Path, default=default_root, help="artifacts root kept between pieces")
    ap.add_argument("--data-dir", type=Path, help="RECFLOW_DATA_DIR (e.g. ../shared/datasets)")
    ap.add_argument("--report", action="store_true", help="only print the table of what --root has recorded")
    args = ap.parse_args()
    if args.data_dir:
        os.environ["RECFLOW_DATA_DIR"] = str(args.data_dir)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.environ["RECFLOW_HOME"] = str(root)

    if not args.report:
        from recflow.experiments.config import load_config

        models = args.models or [m.name for m in load_config(str(preset_path(args.preset)), args.overrides).models]
        overlays = list(args.overlay)
        if args.tune_trials or args.tune_minutes:
            metric = args.metric or PRESETS.get(preset_path(args.preset).stem, "ndcg_at_10")
            overlays.append(tune(args.preset, args.overrides, models, root, args.tune_trials, args.tune_minutes, metric))
        seed = preset_seed(args.preset)
        run_seeds(args.preset, args.overrides, overlays, args.models, args.seeds or [seed, seed + 1, seed + 2], root)
    table(recorded(root))


if __name__ == "__main__":
    main()
