"""The registered model ``recflow-<dataset>`` and its ``champion`` alias: which version serves by default.

``register_champion`` registers the run's best model's bundle (``recflow.experiments.serving.bundle``) and
moves the alias to it only when it beats the current champion on ``serving.champion_metric``,
measured under the same evaluation protocol (split settings, validation masking, relevance
threshold: a Recall@10 from a random 90/10 split says nothing against one from RecBole's), and
significantly so: a paired bootstrap test over the users both evaluated (``champion_decision``)
at ``serving.significance_level``. A bundle identical to the champion's (a fully cached rerun) is
not registered again, and one registered already with the same files, protocol and per-user
values is reused, never logged twice. ``<root>/serving/champions/recflow-<dataset>.json`` records
the alias for the CLI; it follows the alias as recflow moves it, and an alias moved by hand in the
MLflow UI is not seen by the CLI until the next ``recflow run``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from recflow.experiments.serving.bundle import bundle_fingerprint, log_pyfunc
from recflow.experiments.serving.records import ALIAS, champions_dir, protocol_difference, runs_dir, sources_for, write_shared

#: resamples of the paired test: p is resolved to 1 / 10,001, far below any usual level
PAIRED_RESAMPLES = 10_000
PER_USER_ARTIFACT = "evaluation/per_user.parquet"


def champion_decision(ours: Any, theirs: Any, metric: str, *, greater_is_better: bool = True, level: float = 0.05, seed: int = 0) -> dict[str, Any]:
    """Is the new model significantly better than the champion on ``metric``, user for user?

    ``ours`` / ``theirs``: per-user frames (``user_id`` and a ``metric`` column, the evaluate
    stage's ``per_user.parquet``). They are paired on ``user_id`` (the users both evaluated: all
    of them under one protocol on unchanged data) and judged by a one-sided paired bootstrap test
    (``recflow.evaluation.metrics.paired_bootstrap_test``): the alias moves when p < ``level``.

    Why a paired bootstrap: per-user ranking metrics are bounded, skewed and mostly ties at 0
    (a t-test's normality is a stretch for a few hundred users; a sign test throws the ties and
    the sizes of the gains away), pairing removes the user-to-user spread both models share,
    and it is the same resampling as the metrics' confidence intervals.

    Returns ``significant`` and, when a test ran, ``delta`` (mean of ours - theirs), ``p`` and
    ``n_users``; when it cannot run, ``significant`` False and ``cannot`` saying why.
    """
    import numpy as np

    from recflow.evaluation.metrics import paired_bootstrap_test

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


def current_champion(client: Any, name: str) -> Any | None:
    """The model version holding the ``champion`` alias, or None (also when the model is not registered)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None


def _write_champion(root: Path, record: dict[str, Any], name: str, version: int, info: dict[str, Any]) -> None:
    write_shared(
        root,
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


def _protocol_tag(protocol: dict[str, Any]) -> str:
    return json.dumps(protocol, sort_keys=True, separators=(",", ":"))


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
    logged = log_pyfunc(sources, info)
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
        client.create_registered_model(name, description=f"recflow serving bundles for {record['dataset']} (see recflow.experiments.serving)")
    return str(client.create_model_version(name, source=logged.model_uri, run_id=info["model_run_id"], tags=tags, model_id=logged.model_id).version)


def _test_text(test: dict[str, Any], record: dict[str, Any]) -> str:
    """``delta +0.0123, p 0.0004 < 0.05, paired bootstrap over 610 users``."""
    level = record.get("significance_level", 0.05)
    users = f"{test['n_users']} users" + (
        "" if test["n_users"] == test["n_ours"] == test["n_theirs"] else f" evaluated by both ({test['n_ours']} now, {test['n_theirs']} for the champion)"
    )
    return f"delta {test['delta']:+.4f}, p {test['p']:.4f} {'<' if test['p'] < level else '>='} {level:g}, paired bootstrap over {users}"


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
