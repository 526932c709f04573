"""After a pipeline run: index metrics into MLflow, a serving record, a packaged champion.

``publish_run`` (called by the flow after ``log_pipeline_run``):

1. builds the run's *catalogue* (id maps, titles, training counts, rated pairs; content-addressed
   under ``<root>/catalogue/<key>``, like a stage output) from the split and ingest outputs;
2. logs every index to its model's nested MLflow run (``log_index``);
3. writes ``<root>/serving/runs/<run_id>.json``: which files serve each model of the run, their
   metrics, the best model by ``serving.champion_metric`` and the best model with an item index
   (what ``similar`` uses when the best model has none, e.g. ``popular``);
4. packages the best model as an MLflow pyfunc (``recflow.pyfunc_model``: catalogue, index,
   model files when it needs them, titles, signature), registered as ``recflow-<dataset>``, and
   moves the ``champion`` alias to it only when it beats the current champion on the metric,
   measured under the same evaluation protocol (split settings, validation masking, relevance
   threshold: a Recall@10 from a random 90/10 split says nothing against one from RecBole's),
   and significantly so: a paired bootstrap test over the users both evaluated
   (``champion_decision``) at ``serving.significance_level``.
   A bundle identical to the champion's (a fully cached rerun) is not registered again.
   ``<root>/serving/champions/recflow-<dataset>.json`` records the alias for the CLI.

The CLI resolves the champion (or ``--run``) from those JSON records, never importing MLflow
(2 s of start-up), and reads the very files the pyfunc bundles. The record follows the alias
as recflow moves it; an alias moved by hand in the MLflow UI is not seen by the CLI until the
next ``recflow run``.
"""

from __future__ import annotations

import inspect
import json
import math
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports this module: keep recflow.store (pydantic) out of its start-up path
    from recflow.store import Artifact

ALIAS = "champion"
SERVING_DIR = "serving"
PYFUNC_NAME = "serving"
PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
INDEX_METRICS = ("qps", "p50_ms", "p99_ms", "build_seconds", "bytes")


def registered_model_name(dataset: str) -> str:
    return f"recflow-{dataset}"


class ServingNotFound(LookupError):
    """No champion or run to serve from; the message says what exists and what to run."""


# ----------------------------------------------------------------------------- catalogue


def ensure_catalogue(split: Artifact, data: Artifact, root: Path | None = None) -> Path:
    """The serving catalogue of a split, built once per (split, ingest, code) and verified like a stage."""
    from recflow.retrieval_build import build_catalogue
    from recflow.store import artifacts_root, building, hash_parts, stage_dir, verify_stage_dir

    root = root or artifacts_root()
    key = hash_parts("catalogue", inspect.getsource(build_catalogue), split.fingerprint, data.fingerprint)[:20]
    folder = stage_dir("catalogue", key, root)
    if verify_stage_dir(folder) is None:
        with building("catalogue", key, root) as scratch:
            summary = build_catalogue(split.file("split.parquet", root), data.file("items.parquet", root), scratch)
            (scratch / "summary.json").write_text(json.dumps(summary, indent=2))
    return folder


# ----------------------------------------------------------------------------- MLflow: indexes


def index_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """MLflow metrics of an index summary: the primary space's chosen index unprefixed
    (``ann_recall_at_10``, ``index_qps``, ``index_p50_ms`` ...), every space and kind under
    ``index/<space>/<kind>/`` and every space's chosen index under ``index/<space>/``."""
    k = summary["k"]
    recall = f"ann_recall_at_{k}"
    out: dict[str, float] = {}
    similar = similar_space(summary)
    for name, space in summary["spaces"].items():
        chosen = space["metrics"]
        for g in (f"genre_overlap_at_{k}", f"genre_jaccard_at_{k}"):
            if g in chosen:
                out[f"index/{name}/{g}"] = chosen[g]
                if name == similar:
                    out[g] = chosen[g]
        if name == summary["primary"]:
            out[recall] = chosen[recall]
            out.update({f"index_{m}": chosen[m] for m in INDEX_METRICS})
        out[f"index/{name}/{recall}"] = chosen[recall]
        out.update({f"index/{name}/{m}": chosen[m] for m in INDEX_METRICS})
        for kind, r in space["kinds"].items():
            if r.get("skipped"):
                continue
            out[f"index/{name}/{kind}/{recall}"] = r["recall"]
            out.update({f"index/{name}/{kind}/{m}": r[m] for m in INDEX_METRICS})
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}


def similar_space(summary: dict[str, Any]) -> str | None:
    """The item space ``recflow similar`` searches by default: the primary one, else the first item space."""
    items = [n for n, sp in summary["spaces"].items() if sp["entity"] == "item"]
    return summary.get("primary") if summary.get("primary") in items else (items[0] if items else None)


def log_index(index: Artifact, root: Path | None = None) -> None:
    """Index metrics, chosen kinds and search settings, tuning curves and plots, into the active run."""
    import mlflow

    from recflow.store import artifacts_root

    root = root or artifacts_root()
    summary = index.meta
    mlflow.log_metrics(index_metrics(summary))
    params = {"index.kind": summary["spaces"][summary["primary"]]["kind"], "index.recommend_via": summary["recommend_via"]}
    for name, space in summary["spaces"].items():
        params[f"index.{name}.kind"] = space["kind"]
        params[f"index.{name}.search"] = json.dumps(space["index"]["search"], sort_keys=True)
        params[f"index.{name}.build"] = json.dumps(space["index"]["build"], sort_keys=True)
    mlflow.log_params(params)
    mlflow.set_tags({f"index.{name}.reason": space["reason"][:5000] for name, space in summary["spaces"].items()})
    mlflow.log_dict(summary, "index/summary.json")
    for name in summary["spaces"]:
        folder = index.dir(root) / "spaces" / name
        for file in ("recall_qps.png", "tuning.json"):
            if (folder / file).exists():
                mlflow.log_artifact(str(folder / file), f"index/{name}")


# ----------------------------------------------------------------------------- the run record


def _best(candidates: dict[str, float], greater_is_better: bool) -> str | None:
    finite = {n: v for n, v in candidates.items() if v is not None and math.isfinite(v)}
    if not finite:
        return None
    return (max if greater_is_better else min)(finite, key=lambda n: finite[n])


def _similar_genre_overlap(index_meta: dict[str, Any]) -> float | None:
    space = similar_space(index_meta) if index_meta else None
    return index_meta["spaces"][space]["metrics"].get(f"genre_overlap_at_{index_meta['k']}") if space else None


def evaluation_protocol(cfg: Any) -> dict[str, Any]:
    """Everything that makes two runs' metrics comparable: the split and how the test ranking is scored."""
    return {"split": cfg.split.model_dump(mode="json"), "mask_valid": cfg.evaluation.mask_valid, "relevance_threshold": cfg.evaluation.relevance_threshold}


def _protocol_tag(protocol: dict[str, Any]) -> str:
    return json.dumps(protocol, sort_keys=True, separators=(",", ":"))


def protocol_difference(theirs: dict[str, Any], ours: dict[str, Any]) -> str:
    """``split.seed 2020 -> 42, mask_valid true -> false``: the settings that differ, dotted."""

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    a, b = flat(theirs), flat(ours)
    return ", ".join(f"{k} {json.dumps(a.get(k))} -> {json.dumps(b.get(k))}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k))


def run_record(cfg: Any, tracking: dict[str, Any], models: dict[str, Any], catalogue: Path, root: Path) -> dict[str, Any]:
    """What serves each successful model of a run (paths relative to the artifacts root) and the best ones.

    ``models``: name -> ``recflow.outcomes.ModelOutcome``; a model with any failed stage is left out.
    """
    metric, greater = cfg.serving.champion_metric, cfg.serving.greater_is_better
    entries: dict[str, dict[str, Any]] = {}
    for name, result in models.items():
        if not result.servable:
            continue
        index = result.index
        index_meta = index.meta if index is not None else {}
        entries[name] = {
            "run_id": tracking["model_runs"].get(name),
            "model": str(Path(result.train.path) / "model"),
            "index": index.path if index is not None else None,
            "recommend_via": index_meta.get("recommend_via", "model"),
            "similar": bool(index_meta) and any(s["entity"] == "item" for s in index_meta["spaces"].values()),
            "metrics": result.evaluate.meta["metrics"],
            "per_user": (str(Path(result.evaluate.path) / result.evaluate.meta["per_user"]) if result.evaluate.meta.get("per_user") else None),
            "genre_overlap": _similar_genre_overlap(index_meta),
        }
    scores = {n: e["metrics"].get(metric) for n, e in entries.items()}
    best = _best(scores, greater)
    # "movies like X" is judged by genre overlap of the neighbours, not by a ranking metric
    similar = _best({n: e["genre_overlap"] for n, e in entries.items() if e["similar"]}, True)
    if similar is None:  # no genres: the best ranker with an item index, else any item index
        similar = best if best and entries[best]["similar"] else _best({n: s for n, s in scores.items() if entries[n]["similar"]}, greater)
    if similar is None:
        similar = next((n for n, e in entries.items() if e["similar"]), None)
    return {
        "dataset": cfg.dataset.name,
        "registered_model": registered_model_name(cfg.dataset.name),
        "run_id": tracking["run_id"],
        "experiment": tracking["experiment"],
        "tracking_uri": tracking["tracking_uri"],
        "catalogue": str(catalogue.relative_to(root)),
        "metric": metric,
        "greater_is_better": greater,
        "significance_level": cfg.serving.significance_level,
        "protocol": evaluation_protocol(cfg),
        "best": best,
        "similar": similar,
        "models": entries,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def runs_dir(root: Path) -> Path:
    return root / SERVING_DIR / "runs"


def champions_dir(root: Path) -> Path:
    return root / SERVING_DIR / "champions"


def sources_for(record: dict[str, Any], root: Path, model: str | None = None) -> tuple[dict[str, Path | None], dict[str, Any]]:
    """The files a ``Retriever`` reads for a run record (its best model, or ``model``), and its info."""
    models = record["models"]
    if model is not None and model not in models:
        raise ServingNotFound(f"model {model!r} is not in run {record['run_id']}; it has: {', '.join(sorted(models)) or 'none'}")
    rec = model or record["best"]
    if rec is None:
        raise ServingNotFound(f"run {record['run_id']} has no model with a {record['metric']}; name one with --model")
    sim = model or record["similar"]
    entry = models[rec]
    index = root / entry["index"] if entry["index"] else None
    sim_index = root / models[sim]["index"] if sim and sim != rec and models[sim]["index"] else None
    sources = {
        "catalogue": root / record["catalogue"],
        "index": index,
        "model": root / entry["model"] if entry["recommend_via"] == "model" else None,
        "similar_index": sim_index,
    }
    info = {
        "dataset": record["dataset"],
        "run_id": record["run_id"],
        "model_run_id": entry["run_id"],
        "recommend_model": rec,
        "similar_model": sim if (sim_index is not None or (sim == rec and entry["similar"])) else None,
        "metric": record["metric"],
        "metric_value": entry["metrics"].get(record["metric"]),
    }
    return sources, info


def item_spaces(record: dict[str, Any], root: Path, model: str) -> list[str]:
    """The item spaces of ``model``'s index in a run record (``similar --mode`` values); [] without an index."""
    index = record["models"][model]["index"]
    path = root / index / "summary.json" if index else None
    if path is None or not path.is_file():
        return []
    return [name for name, s in _read(path)["spaces"].items() if s["entity"] == "item"]


def model_with_mode(record: dict[str, Any], root: Path, mode: str) -> str | None:
    """The model to answer ``similar --mode mode``: None when the run's similar model has that space
    (the default serves), else the model with that space whose neighbours share most genres (the
    rule that picks the similar model), else None (the default model's error names its modes)."""
    if record["similar"] and mode in item_spaces(record, root, record["similar"]):
        return None
    having = {n: e for n, e in record["models"].items() if mode in item_spaces(record, root, n)}
    if not having:
        return None
    scored = {n: e["genre_overlap"] for n, e in having.items() if e.get("genre_overlap") is not None}
    return _best(scored, True) or next(iter(having))


# ----------------------------------------------------------------------------- MLflow: the champion


def serving_signature():
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("long", "user_id", required=False), ColSpec("string", "title", required=False)])
    outputs = Schema(
        [
            ColSpec("long", "query_row"),
            ColSpec("string", "query"),
            ColSpec("long", "rank"),
            ColSpec("long", "item_id"),
            ColSpec("string", "title"),
            ColSpec("double", "score"),
            ColSpec("string", "model"),
        ]
    )
    params = ParamSchema([ParamSpec("k", "long", 10), ParamSpec("mode", "string", ""), ParamSpec("fallback", "string", "")])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("recflow", "mlflow", "numpy", "pandas", "pyarrow", "scipy", "faiss-cpu", "hnswlib"):
        try:
            out.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            out.append(dist)
    return out


def bundle_fingerprint(sources: dict[str, Path | None], info: dict[str, Any], root: Path) -> str:
    """Stage folders are content-addressed, so their paths (and the models served) identify a bundle."""
    from recflow.store import hash_parts

    paths = {k: str(v.relative_to(root)) if v is not None else None for k, v in sources.items()}
    return hash_parts(paths, info["recommend_model"], info["similar_model"])[:20]


def current_champion(client: Any, name: str) -> Any | None:
    """The model version holding the ``champion`` alias, or None (also when the model is not registered)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None


def _log_pyfunc(sources: dict[str, Path | None], info: dict[str, Any]) -> Any:
    """Log the bundle into the model's nested run as a pyfunc (registered by the caller, silently)."""
    import os

    import mlflow
    import pandas as pd

    from recflow.retrieval import Catalogue

    users = Catalogue(sources["catalogue"]).user_ids
    example = pd.DataFrame({"user_id": users[:1].astype("int64")})
    quiet = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    saved = {k: os.environ.get(k) for k in quiet}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(quiet)
        try:
            bundle = Path(tmp) / "bundle.json"
            bundle.write_text(json.dumps(info, indent=2, default=str))
            artifacts = {"bundle": str(bundle), **{k: str(v) for k, v in sources.items() if v is not None}}
            with mlflow.start_run(run_id=info["model_run_id"]):
                return mlflow.pyfunc.log_model(
                    name=PYFUNC_NAME,
                    python_model=str(PYFUNC_FILE),
                    artifacts=artifacts,
                    signature=serving_signature(),
                    input_example=example,
                    pip_requirements=_requirements(),
                    metadata={"recflow": info},
                )
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _write_champion(root: Path, record: dict[str, Any], name: str, version: int, info: dict[str, Any]) -> None:
    from recflow.store import write_json_atomic

    write_json_atomic(
        champions_dir(root) / f"{name}.json",
        {
            "registered_model": name,
            "version": version,
            "run_id": record["run_id"],
            "record": str((runs_dir(root) / f"{record['run_id']}.json").relative_to(root)),
            "model": info["recommend_model"],
            "metric": record["metric"],
            "value": info["metric_value"],
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )


#: resamples of the paired test: p is resolved to 1 / 10,001, far below any usual level
PAIRED_RESAMPLES = 10_000
PER_USER_ARTIFACT = "evaluation/per_user.parquet"


def champion_decision(ours: Any, theirs: Any, metric: str, *, greater_is_better: bool = True, level: float = 0.05, seed: int = 0) -> dict[str, Any]:
    """Is the new model significantly better than the champion on ``metric``, user for user?

    ``ours`` / ``theirs``: per-user frames (``user_id`` and a ``metric`` column, the evaluate
    stage's ``per_user.parquet``). They are paired on ``user_id`` (the users both evaluated: all
    of them under one protocol on unchanged data) and judged by a one-sided paired bootstrap test
    (``recflow.metrics.paired_bootstrap_test``): the alias moves when p < ``level``.

    Why a paired bootstrap: per-user ranking metrics are bounded, skewed and mostly ties at 0
    (a t-test's normality is a stretch for a few hundred users; a sign test throws the ties and
    the sizes of the gains away), pairing removes the user-to-user spread both models share,
    and it is the same resampling as the metrics' confidence intervals.

    Returns ``significant`` and, when a test ran, ``delta`` (mean of ours - theirs), ``p`` and
    ``n_users``; when it cannot run, ``significant`` False and ``cannot`` saying why.
    """
    import numpy as np

    from recflow.metrics import paired_bootstrap_test

    for frame, whose in ((ours, "this run's model"), (theirs, "the champion")):
        if metric not in frame.columns:
            return {"significant": False, "cannot": f"{whose} has no per-user {metric} (a paired test needs a per-user metric)"}
    a = ours[["user_id", metric]].dropna()
    b = theirs[["user_id", metric]].dropna()
    paired = a.merge(b, on="user_id", suffixes=("_ours", "_theirs"))
    if paired.empty:
        return {"significant": False, "cannot": f"no user was evaluated on {metric} by both"}
    delta, p = paired_bootstrap_test(
        paired[f"{metric}_ours"].to_numpy(np.float64),
        paired[f"{metric}_theirs"].to_numpy(np.float64),
        greater_is_better=greater_is_better,
        n_boot=PAIRED_RESAMPLES,
        seed=seed,
    )
    better = delta > 0 if greater_is_better else delta < 0
    return {"significant": bool(better and p < level), "delta": delta, "p": p, "n_users": len(paired), "n_ours": len(a), "n_theirs": len(b)}


def _champion_per_user(client: Any, champion: Any, root: Path) -> tuple[Any | None, str]:
    """The champion's per-user values: the evaluate stage file its version's ``per_user`` tag names,
    else the copy logged to its model run; else (None, why not)."""
    import pandas as pd

    tag = champion.tags.get("per_user")
    if not tag:
        return None, f"champion v{champion.version} has no per-user values (registered before they were kept)"
    path = root / tag
    if path.is_file():
        return pd.read_parquet(path), str(path)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(champion.run_id, PER_USER_ARTIFACT, tmp)
            return pd.read_parquet(local), f"runs:/{champion.run_id}/{PER_USER_ARTIFACT}"
    except Exception as exc:
        return None, f"champion v{champion.version}'s per-user values are missing ({path} and its run's {PER_USER_ARTIFACT}: {type(exc).__name__})"


def _significance(record: dict[str, Any], client: Any, champion: Any, root: Path) -> dict[str, Any]:
    import pandas as pd

    entry = record["models"][record["best"]]
    ours_path = root / entry["per_user"] if entry.get("per_user") else None
    if ours_path is None or not ours_path.is_file():
        return {"significant": False, "cannot": f"this run's per-user values are missing ({ours_path or 'not recorded'})"}
    theirs, where = _champion_per_user(client, champion, root)
    if theirs is None:
        return {"significant": False, "cannot": where}
    return champion_decision(
        pd.read_parquet(ours_path), theirs, record["metric"], greater_is_better=record["greater_is_better"], level=record.get("significance_level", 0.05)
    )


def register_champion(record: dict[str, Any], root: Path) -> dict[str, Any]:
    """Log the run's best model as a pyfunc, register it, and move ``champion`` if it wins.

    Winning: the same evaluation protocol as the champion, and significantly better on the metric
    by ``champion_decision`` (paired over the users both evaluated). Each version is tagged
    ``per_user`` (its evaluate stage's per-user file, relative to the artifacts root) and the file
    is also logged to its model run (``evaluation/per_user.parquet``), so the next run can pair with it.
    """
    from mlflow import MlflowClient

    name, metric = record["registered_model"], record["metric"]
    sources, info = sources_for(record, root)
    value = info["metric_value"]
    fingerprint = bundle_fingerprint(sources, info, root)
    client = MlflowClient()
    champion = current_champion(client, name)
    out: dict[str, Any] = {
        "registered_model": name,
        "metric": metric,
        "model": info["recommend_model"],
        "value": value,
        "similar_model": info["similar_model"],
        "similar_genre_overlap": record["models"].get(info["similar_model"] or "", {}).get("genre_overlap"),
    }
    if champion is not None and champion.tags.get("bundle") == fingerprint:
        if not (champions_dir(root) / f"{name}.json").exists():  # same files, recorded under another run id
            _write_champion(root, record, name, int(champion.version), info)
        return {
            **out,
            "version": int(champion.version),
            "champion_version": int(champion.version),
            "moved": False,
            "reason": f"unchanged: champion v{champion.version} already serves this bundle",
        }

    ours = _protocol_tag(record["protocol"])
    per_user = record["models"][info["recommend_model"]].get("per_user")
    registered = _version_with_bundle(client, name, fingerprint, ours, per_user)
    if registered is not None:  # the same files, judged the same way, are registered already (a cached rerun): never log them twice
        version = str(registered.version)
        out["reused_version"] = int(version)
    else:
        version = _register_bundle(client, record, root, sources, info, fingerprint, ours)

    theirs = champion.tags.get("protocol") if champion is not None else None
    if theirs is not None and theirs != ours:  # versions from before the tag: compared
        return {
            **out,
            "version": int(version),
            "champion_version": int(champion.version),
            "moved": False,
            "reason": (
                f"not compared: champion v{champion.version} was evaluated under another protocol "
                f"({protocol_difference(json.loads(theirs), record['protocol'])}); to serve v{version} "
                f"instead, move the '{ALIAS}' alias of {name} to it in MLflow"
            ),
        }
    previous = None
    if champion is not None:
        previous = client.get_run(champion.run_id).data.metrics.get(metric) if champion.run_id else None
    test: dict[str, Any] = {}
    if champion is not None and previous is not None and value is not None:
        test = _significance(record, client, champion, root)
        out["significance"] = test
    if champion is None or previous is None or test.get("significant"):
        client.set_registered_model_alias(name, ALIAS, version)
        why = (
            "first champion"
            if champion is None
            else f"{metric} {value:.4f} beats champion v{champion.version} ({previous:.4f}): {_test_text(test, record)}"
            if previous is not None
            else f"champion v{champion.version} has no {metric}"
        )
        _write_champion(root, record, name, int(version), info)
        return {**out, "version": int(version), "champion_version": int(version), "moved": True, "reason": why}
    shown = f"{value:.4f}" if value is not None else "none"
    if "cannot" in test:
        why = f"cannot test: {test['cannot']}; the alias stays on champion v{champion.version} ({metric} {shown} vs {previous:.4f})"
    else:
        why = f"not significantly better than champion v{champion.version} ({metric} {shown} vs {previous:.4f}: {_test_text(test, record)})"
    return {**out, "version": int(version), "champion_version": int(champion.version), "moved": False, "reason": why}


def _version_with_bundle(client: Any, name: str, fingerprint: str, protocol_tag: str, per_user: str | None) -> Any | None:
    """The newest registered version with exactly these files, evaluated under the same protocol into the
    same per-user values (what the next run pairs with), if any."""
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        return None
    found = [
        v
        for v in client.search_model_versions(f"name = '{name}' and tags.bundle = '{fingerprint}'")
        if v.tags.get("protocol") == protocol_tag and v.tags.get("per_user") == per_user
    ]
    return max(found, key=lambda v: int(v.version)) if found else None


def _register_bundle(
    client: Any, record: dict[str, Any], root: Path, sources: dict[str, Any], info: dict[str, Any], fingerprint: str, protocol_tag: str
) -> str:
    """Log the bundle as a pyfunc and register it as a new version of ``record``'s model; returns the version."""
    name, metric, value = record["registered_model"], record["metric"], info["metric_value"]
    logged = _log_pyfunc(sources, info)
    per_user = record["models"][info["recommend_model"]].get("per_user")
    tags = {
        "bundle": fingerprint,
        "model": info["recommend_model"],
        "similar_model": str(info["similar_model"]),
        "pipeline_run_id": record["run_id"],
        "dataset": record["dataset"],
        "metric": metric,
        "metric_value": str(value),
        "protocol": protocol_tag,
        **({"per_user": per_user} if per_user else {}),
    }
    if per_user and (root / per_user).is_file() and info["model_run_id"]:  # under the name the next run looks for
        folder, _, file = PER_USER_ARTIFACT.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copyfile(root / per_user, Path(tmp) / file)
            client.log_artifact(info["model_run_id"], str(Path(tmp) / file), folder)
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name, description=f"recflow serving bundles for {record['dataset']} (see recflow.serving)")
    return str(client.create_model_version(name, source=logged.model_uri, run_id=info["model_run_id"], tags=tags, model_id=logged.model_id).version)


def _test_text(test: dict[str, Any], record: dict[str, Any]) -> str:
    """``delta +0.0123, p 0.0004 < 0.05, paired bootstrap over 610 users``."""
    level = record.get("significance_level", 0.05)
    users = f"{test['n_users']} users" + (
        "" if test["n_users"] == test["n_ours"] == test["n_theirs"] else f" evaluated by both ({test['n_ours']} now, {test['n_theirs']} for the champion)"
    )
    return f"delta {test['delta']:+.4f}, p {test['p']:.4f} {'<' if test['p'] < level else '>='} {level:g}, paired bootstrap over {users}"


def publish_run(
    cfg: Any, tracking: dict[str, Any], models: dict[str, Any], split: Artifact, data: Artifact, root: Path | None = None, register: bool = True
) -> dict[str, Any]:
    """Everything after logging: indexes into MLflow, the run record, the champion (module doc).

    ``register=False`` stops before the champion (the flow registers it in a task of its own).
    """
    import mlflow

    from recflow.store import artifacts_root, write_json_atomic

    root = root or artifacts_root()
    mlflow.set_tracking_uri(tracking["tracking_uri"])
    catalogue = ensure_catalogue(split, data, root)
    for name, result in models.items():
        run_id = tracking["model_runs"].get(name)
        if result.servable and result.index is not None and run_id:  # reopening a FAILED run would mark it FINISHED
            with mlflow.start_run(run_id=run_id):
                log_index(result.index, root)
    record = run_record(cfg, tracking, models, catalogue, root)
    write_json_atomic(runs_dir(root) / f"{record['run_id']}.json", record)
    out: dict[str, Any] = {"record": str(runs_dir(root) / f"{record['run_id']}.json"), "best": record["best"], "similar": record["similar"]}
    if register and cfg.serving.register_model and record["best"] is not None:
        out["champion"] = register_champion(record, root)
    return out


def summary_lines(serving: dict[str, Any]) -> list[str]:
    """What ``recflow run`` prints about serving: the champion and how to query it."""
    champion = serving.get("champion")
    if not champion:
        return []
    value = champion["value"]
    shown = f"{value:.4f}" if isinstance(value, (int, float)) else "-"
    return [
        f"champion: {champion['registered_model']} v{champion['champion_version']} "
        f"(this run's best: {champion['model']}, {champion['metric']} {shown}; {champion['reason']})",
        *(
            [f"similar: {champion['similar_model']} (the run's highest genre overlap of nearest movies, {champion['similar_genre_overlap']:.3f})"]
            if champion.get("similar_model") and champion.get("similar_genre_overlap") is not None
            else []
        ),
        "  try: recflow recommend --user <id> | recflow similar --title <title>",
    ]


# ----------------------------------------------------------------------------- the CLI's side (no MLflow)


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def find_run(root: Path, run_id: str) -> tuple[dict[str, Any], str | None]:
    """The record of a pipeline run id, or of the run holding a model run id (then that model too)."""
    path = runs_dir(root) / f"{run_id}.json"
    if path.is_file():
        return _read(path), None
    for path in sorted(runs_dir(root).glob("*.json")) if runs_dir(root).is_dir() else []:
        record = _read(path)
        for name, entry in record["models"].items():
            if entry.get("run_id") == run_id:
                return record, name
    raise ServingNotFound(f"no pipeline or model run {run_id!r} recorded under {runs_dir(root)} (runs are recorded by `recflow run`)")


def find_champion(root: Path, dataset: str | None = None, default_dataset: str | None = None) -> dict[str, Any]:
    """The champion record of ``dataset``; without one, of ``default_dataset`` or of the only dataset there is."""
    folder = champions_dir(root)
    known = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
    if dataset is not None:
        name = registered_model_name(dataset)
        if name not in known:
            raise ServingNotFound(
                f"no champion for dataset {dataset!r} under {folder}; " + (f"champions: {', '.join(known)}" if known else "run `recflow run` first")
            )
    elif default_dataset is not None and registered_model_name(default_dataset) in known:
        name = registered_model_name(default_dataset)
    elif len(known) == 1:
        name = known[0]
    elif not known:
        raise ServingNotFound(f"no champion yet under {folder}: run `recflow run` first")
    else:
        raise ServingNotFound(f"several datasets have a champion ({', '.join(known)}); choose one with --dataset")
    return _read(folder / f"{name}.json")


def resolve(
    root: Path | None = None,
    *,
    dataset: str | None = None,
    run: str | None = None,
    model: str | None = None,
    default_dataset: str | None = None,
    mode: str | None = None,
) -> tuple[dict[str, Path | None], dict[str, Any]]:
    """Sources and info for a ``Retriever``: the champion (default) or a named run, optionally one model of it.

    ``mode`` (``similar --mode``) without ``model``: when the run's similar model has no item space
    of that name, the run's model that has one serves instead (``model_with_mode``).
    """
    from recflow.store import artifacts_root

    root = root or artifacts_root()
    if run is not None:
        record, run_model = find_run(root, run)
        model = model or run_model or (model_with_mode(record, root, mode) if mode else None)
        sources, info = sources_for(record, root, model)
        info["served_from"] = f"run {record['run_id']}"
    else:
        champion = find_champion(root, dataset, default_dataset)
        record = _read(root / champion["record"])
        model = model or (model_with_mode(record, root, mode) if mode else None)
        sources, info = sources_for(record, root, model)
        info["served_from"] = f"{champion['registered_model']}@{ALIAS} v{champion['version']}"
    for key, path in sources.items():
        if path is not None and not path.exists():
            raise ServingNotFound(f"{path} ({key}) is missing: the artifacts were removed; rerun `recflow run`")
    return sources, info
