"""Which files answer a CLI query: the champion's (default) or a named run's, read from the run records.

Never imports MLflow, so ``recflow recommend`` / ``similar`` start at once, and reads the very
files the champion's pyfunc bundles (``recflow.experiments.serving.records`` says what a record holds).
Under an ``s3://`` root the records and the stage folders they name are fetched into this
machine's mirror first, so a machine that never ran the pipeline answers from the bucket alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recflow.experiments.serving.records import (
    ALIAS,
    SERVING_DIR,
    ServingNotFound,
    champions_dir,
    model_with_mode,
    read_record,
    registered_model_name,
    runs_dir,
    sources_for,
)


def find_run(root: Path, run_id: str) -> tuple[dict[str, Any], str | None]:
    """The record of a pipeline run id, or of the run holding a model run id (then that model too)."""
    path = runs_dir(root) / f"{run_id}.json"
    if path.is_file():
        return read_record(path), None
    for path in sorted(runs_dir(root).glob("*.json")) if runs_dir(root).is_dir() else []:
        record = read_record(path)
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
    return read_record(folder / f"{name}.json")


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
    from recflow.runtime import storage
    from recflow.runtime.store import artifacts_root, verify_stage_dir

    root = root or artifacts_root()
    storage.fetch_folder(root, SERVING_DIR)  # under an s3:// root: the records other machines published
    if run is not None:
        record, run_model = find_run(root, run)
        model = model or run_model or (model_with_mode(record, root, mode) if mode else None)
        sources, info = sources_for(record, root, model)
        info["served_from"] = f"run {record['run_id']}"
    else:
        champion = find_champion(root, dataset, default_dataset)
        record = read_record(root / champion["record"])
        model = model or (model_with_mode(record, root, mode) if mode else None)
        sources, info = sources_for(record, root, model)
        info["served_from"] = f"{champion['registered_model']}@{ALIAS} v{champion['version']}"
    for key, path in sources.items():
        if path is not None and not path.exists() and len(parts := path.relative_to(root).parts) >= 2:
            verify_stage_dir(root / parts[0] / parts[1])  # a mirror's missing stage folder comes from the bucket
        if path is not None and not path.exists():
            raise ServingNotFound(f"{path} ({key}) is missing: the artifacts were removed; rerun `recflow run`")
    return sources, info
