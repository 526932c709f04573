"""Each content once on disk: MLflow's copies of stage files, and of what earlier runs logged, become hard links.

A run logs each model's files into MLflow (``mlruns/``: the model run's ``model`` artifacts, and the
champion's pyfunc bundle, which packages the model, index and catalogue files again). MLflow
copies what it logs, so a model of hundreds of MB (EASE's item-item matrix) was on disk three
times: ``train/<key>/``, the run's artifacts, the bundle. And every pipeline run logs its plots
(loss curves, each index's recall/QPS plot), tuning tables and summaries again: a cached rerun's
runs show the same files, byte for byte, about 1 MB of them at the default preset.

After a run, every file under ``mlruns/`` whose size and sha256 equal a stage file's (the stage
manifests hold their sha256) or another file's under ``mlruns/`` is replaced by a hard link to
that file (a stage file preferred): content-addressed, the same bytes once, every path still a
plain file that MLflow's UI, ``recflow recommend`` and ``recflow gc`` read and delete as before
(deleting one name keeps the other). Neither stage files (never written after their manifest)
nor logged MLflow artifacts are ever written in place, so a link cannot see them change.

Only files whose size another file shares are hashed (above ``PEER_MAX_BYTES``, only those of a
stage file's size), and a group of names already linked to one file is hashed once, so a run costs
one pass over the tree's names plus the new files' bytes.
Nothing is done across file systems, or on a root kept on object storage (its ``mlruns`` is a bucket).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from recflow.runtime.store import MANIFEST, sha256_file

#: the smallest file worth a link: every non-empty one (a small JSON still costs a 4 KB block a copy)
MIN_BYTES = 1
#: files this large are matched with stage files only (their sha256 is in the manifests), never hashed against one another:
#: two models of one size (EASE's and EDLAE's matrices) whose stage folders gc removed would otherwise be read every run
PEER_MAX_BYTES = 64 << 20
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


def files_by_size(top: Path, min_bytes: int) -> dict[int, list[tuple[Path, os.stat_result]]]:
    """Every plain file under ``top`` of ``min_bytes`` or more, grouped by size (no file is read)."""
    groups: dict[int, list[tuple[Path, os.stat_result]]] = {}
    for dirpath, _, names in os.walk(top):
        for name in names:
            path = Path(dirpath) / name
            try:
                st = path.stat(follow_symlinks=False)
            except OSError:
                continue
            if st.st_size >= min_bytes and path.is_file() and not path.is_symlink():
                groups.setdefault(st.st_size, []).append((path, st))
    return groups


def link_copies(root: Path, under: str = "mlruns", min_bytes: int = MIN_BYTES) -> Linked:
    """Replace every copy of a stage file, or of another file, under ``root/under`` by a hard link to it; what was freed."""
    originals = stage_files(root, min_bytes)
    stage_sizes = {size for size, _ in originals}
    done = Linked()
    for size, group in files_by_size(root / under, min_bytes).items():
        if all(st.st_nlink > 1 for _, st in group) or ((len(group) < 2 or size >= PEER_MAX_BYTES) and size not in stage_sizes):
            continue  # every name already shares its bytes, or nothing to share them with
        digests: dict[tuple[int, int], str] = {}  # the names of one file are hashed once
        for path, st in sorted(group, key=lambda item: -item[1].st_nlink):  # linked names first: they stay the originals
            inode = (st.st_dev, st.st_ino)
            if inode not in digests:
                try:
                    digests[inode] = sha256_file(path)
                except OSError:
                    continue
            original = originals.setdefault((size, digests[inode]), path)
            if original != path and relink(original, path, st):
                done.files += 1
                done.bytes += size
    return done


def relink(original: Path, path: Path, st: os.stat_result) -> bool:
    """``path`` becomes a hard link to ``original`` (atomically: a reader sees one or the other); False when it cannot."""
    try:
        target = original.stat()
    except OSError:
        return False
    if (target.st_dev, target.st_ino) == (st.st_dev, st.st_ino) or target.st_dev != st.st_dev:
        return False
    scratch = path.with_name(f".{path.name}.link.tmp")
    try:
        os.link(original, scratch)
        os.replace(scratch, path)
    except OSError:
        scratch.unlink(missing_ok=True)
        return False
    return True


def disk_bytes(top: Path, seen: set[tuple[int, int]] | None = None) -> int:
    """What ``top`` takes as ``du -sb`` counts it: every folder's own size, each file's bytes once however many
    hard links name it (once across calls sharing ``seen``): how the links above show on disk."""
    seen = set() if seen is None else seen
    if not top.exists():
        return 0
    if not top.is_dir():
        st = top.lstat()
        if (st.st_dev, st.st_ino) in seen:
            return 0
        seen.add((st.st_dev, st.st_ino))
        return st.st_size
    total = top.lstat().st_size
    for dirpath, dirnames, names in os.walk(top):
        total += sum(os.lstat(os.path.join(dirpath, d)).st_size for d in dirnames)
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
