"""The catalogue stage: what serving needs to know about a split, built once and verified like a stage.

Id maps, titles, training counts and every rated (user, item) pair
(``recflow.retrieval.build.build_catalogue``), content-addressed under ``<root>/catalogue/<key>``.
The key hashes the builder module's code lineage (by module name, as every stage key does:
``recflow.runtime.lineage``) with the split's and the ingest's fingerprints, so a rerun on
unchanged data reuses the folder, a changed builder builds a new one, and a machine that installed
recflow elsewhere (a wheel) finds the same folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recflow.runtime.store import Artifact


def ensure_catalogue(split: Artifact, data: Artifact, root: Path | None = None) -> Path:
    """The serving catalogue of a split, built once per (split, ingest, code) and verified like a stage."""
    from recflow.retrieval.build import build_catalogue
    from recflow.runtime import lineage
    from recflow.runtime.store import artifacts_root, building, hash_parts, stage_dir, verify_stage_dir

    root = root or artifacts_root()
    key = hash_parts("catalogue", lineage.installed().digest([build_catalogue.__module__]), split.fingerprint, data.fingerprint)[:20]
    folder = stage_dir("catalogue", key, root)
    if verify_stage_dir(folder) is None:
        with building("catalogue", key, root) as scratch:
            summary = build_catalogue(split.file("split.parquet", root), data.file("items.parquet", root), scratch)
            (scratch / "summary.json").write_text(json.dumps(summary, indent=2))
    return folder
