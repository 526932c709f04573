"""Model files once on disk: MLflow's copies of stage files become hard links to the stage folder's file.

A run logs each model's files into MLflow (``mlruns/``: the model run's ``model`` artifacts, and the
champion's pyfunc bundle, which packages the model, index and catalogue files again). MLflow
copies what it logs, so a model of hundreds of MB (EASE's item-item matrix) was on disk three
times: ``train/<key>/``, the run's artifacts, the bundle. After a run, every file under ``mlruns/``
whose size and sha256 equal a stage file's (the stage manifests hold their sha256) is replaced by a
hard link to that stage file: the same bytes once, every path still a plain file that MLflow,
``recflow recommend`` and ``recflow gc`` read and delete as before (deleting one name keeps the
other). Stage files are never written after their manifest, so a link cannot see them change.

Only files of at least ``MIN_BYTES`` are looked at (the large ones are what matters; small ones
cost more to hash than they save). Nothing is done across file systems, or on a root kept on
object storage (its ``mlruns`` is a bucket).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from recflow.runtime.store import MANIFEST, sha256_file

MIN_BYTES = 1 << 20
STAGES = ("ingest", "split", "features", "sampling", "train", "evaluate", "index", "catalogue")


@dataclass
class Linked:
    files: int = 0
    bytes: int = 0


def stage_files(root: Path, min_bytes: int = MIN_BYTES) -> dict[tuple[int, str], Path]:
    """(size, sha256) -> one stage file with that content (``min_bytes`` or more), from every stage folder's manifest."""
    found: dict[tuple[int, str], Path] = {}
    for stage in STAGES:
        for manifest in (root / stage).glob(f"*/{MANIFEST}"):
            try:
                files = json.loads(manifest.read_text())["files"]
            except (OSError, ValueError, KeyError):
                continue
            for name, digest in files.items():
                path = manifest.parent / name
                try:
                    size = path.stat().st_size
                except OSError:
                    continue
                if size >= min_bytes:
                    found.setdefault((size, digest), path)
    return found


def link_copies(root: Path, under: str = "mlruns", min_bytes: int = MIN_BYTES) -> Linked:
    """Replace every copy of a stage file under ``root/under`` by a hard link to it; what was freed."""
    originals = stage_files(root, min_bytes)
    sizes = {size for size, _ in originals}
    done = Linked()
    for dirpath, _, names in os.walk(root / under):
        for name in names:
            path = Path(dirpath) / name
            try:
                st = path.stat()
            except OSError:
                continue
            if st.st_size not in sizes or st.st_nlink > 1:
                continue
            original = originals.get((st.st_size, sha256_file(path)))
            if original is None or original.stat().st_dev != st.st_dev:
                continue
            scratch = path.with_name(f".{name}.link.tmp")
            try:
                os.link(original, scratch)
                os.replace(scratch, path)
            except OSError:
                scratch.unlink(missing_ok=True)
                continue
            done.files += 1
            done.bytes += st.st_size
    return done
