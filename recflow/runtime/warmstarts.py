"""Which earlier fit a model continues from: the artifacts root's record of time-forward fits.

A warm fit's cache key includes the fit it started from (``tasks/train.py`` takes it as an
input), so which fit that is must be decided the same way every time the same nights run:

* each successful fit on a time-forward split is recorded per dataset and model configuration
  (name + parameters): the split it trained on, its train descriptor, and the fit it started from;
* a run whose split is already recorded starts from what that record started from (a rerun of
  the same night reproduces the same fit, from the cache);
* otherwise it starts from the record with the latest cut-off before its own (last night's fit);
* no record, another protocol or period, or a later cut-off: a cold fit.

So a replay of the same nights into an empty root makes the same chain of fits. The weekly
rebuild (``refresh``) fits cold and is recorded like any fit, so the next night continues from it.
Records are one small JSON file per dataset and model under ``<root>/warmstarts/``, written
atomically; the run holds the root's lock while it reads and writes them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from recflow.runtime.store import Artifact, canonical_json, write_json_atomic

FOLDER = "warmstarts"


def record_file(root: Path, dataset: str, params: dict[str, Any]) -> Path:
    digest = hashlib.sha256(canonical_json(params).encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset)
    return root / FOLDER / safe / f"{params['name']}-{digest}.json"


def _entries(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text()) if path.is_file() else []


def _forward(split: Artifact) -> dict[str, Any] | None:
    return split.meta.get("time_forward")


def warm_source(root: Path, dataset: str, params: dict[str, Any], split: Artifact) -> tuple[Artifact, Artifact] | None:
    """(earlier train descriptor, the split it trained on) to continue from, or None for a cold fit."""
    forward = _forward(split)
    if forward is None or forward.get("cutoff") is None:
        return None
    entries = _entries(record_file(root, dataset, params))
    for entry in entries:
        if entry["split"]["fingerprint"] == split.fingerprint:
            start = entry.get("from")
            return None if start is None else _intact(root, Artifact(**start["model"]), Artifact(**start["split"]))
    earlier = [
        e
        for e in entries
        if (f := e["split"]["meta"].get("time_forward"))
        and f.get("period") == forward["period"]
        and f["cutoff"] is not None
        and f["cutoff"] < forward["cutoff"]
    ]
    if not earlier:
        return None
    latest = max(earlier, key=lambda e: e["split"]["meta"]["time_forward"]["cutoff"])
    return _intact(root, Artifact(**latest["model"]), Artifact(**latest["split"]))


def _intact(root: Path, model: Artifact, split: Artifact) -> tuple[Artifact, Artifact] | None:
    """The pair, or None (a cold fit) when either folder was collected by gc or is damaged."""
    return (model, split) if model.is_intact(root) and split.is_intact(root) else None


def record_fit(root: Path, dataset: str, params: dict[str, Any], split: Artifact, model: Artifact, start: tuple[Artifact, Artifact] | None) -> None:
    """Remember a fit on a time-forward split (and what it started from); other protocols are not recorded."""
    if _forward(split) is None:
        return
    path = record_file(root, dataset, params)
    entries = [e for e in _entries(path) if e["split"]["fingerprint"] != split.fingerprint]
    entries.append(
        {
            "split": split.model_dump(mode="json"),
            "model": model.model_dump(mode="json"),
            "from": None if start is None else {"model": start[0].model_dump(mode="json"), "split": start[1].model_dump(mode="json")},
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, entries)
