"""Disk at a preset: the root one cold run leaves, what an unchanged rerun adds, what ``recflow gc`` frees.

    python -m bench.disk [--config configs/default.yaml] [--keep]

``recflow run`` twice into a fresh ``RECFLOW_HOME`` as ``make run`` runs it (MLflow in
``<root>/mlflow.db`` and ``<root>/mlruns``, the embedded Prefect server on ``<root>/.prefect``),
then ``recflow gc --dry-run`` and ``recflow gc``. Sizes are counted as ``du -sb`` counts them
(every folder; a file's bytes once however many hard links name it). "Distinct" is the bytes of
each distinct file content once (sha256): the root can be no smaller without losing a file, so
root / distinct says how much is duplicate copies. What the rerun added is split by part of the
root. Targets (issue #28): an unchanged rerun adds < 1 MB; the root is <= 10x what it must keep.
Takes about twice a cold run (8-10 min at the default preset on 2 busy cores): run it once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recflow.runtime.dedupe import disk_bytes, files_by_size

REPO = Path(__file__).resolve().parents[1]
PARTS = ("mlflow.db", ".prefect", "mlruns", "serving", "logs")


def distinct_bytes(root: Path) -> int:
    """Each distinct file content once (size and sha256), hashing only sizes that several files share."""
    from recflow.runtime.store import sha256_file

    total = 0
    for size, group in files_by_size(root, 1).items():
        inodes = {(st.st_dev, st.st_ino): path for path, st in group}
        total += size * (1 if len(inodes) == 1 else len({sha256_file(p) for p in inodes.values()}))
    return total


def by_part(root: Path) -> dict[str, int]:
    """Bytes per part of the root, each file counted in the first part naming it; ``other`` the stage folders and the rest."""
    seen: set[tuple[int, int]] = set()
    parts = {part: disk_bytes(root / part, seen) for part in PARTS}
    parts["other"] = disk_bytes(root) - sum(parts.values())
    return parts


def recflow(root: Path, *args: str) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    env.update({"RECFLOW_HOME": str(root), "PYTHONPATH": str(REPO)})
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "recflow.cli.main", *args], cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"recflow {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done.stdout


def mb(n: int) -> str:
    return f"{n / 1e6:,.2f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--keep", action="store_true", help="leave the root in place and print where")
    args = ap.parse_args()
    load = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="recflow-disk-"))
    try:
        cold_s, _ = recflow(root, "run", "--config", args.config)
        cold, cold_parts, distinct = disk_bytes(root), by_part(root), distinct_bytes(root)
        rerun_s, out = recflow(root, "run", "--config", args.config)
        rerun, rerun_parts = disk_bytes(root), by_part(root)
        tasks = next((line for line in out.splitlines() if line.startswith("tasks:")), "tasks: ?")
        _, dry = recflow(root, "gc", "--dry-run")
        before_gc = disk_bytes(root)
        _, real = recflow(root, "gc")
        freed = before_gc - disk_bytes(root)
    finally:
        if args.keep:
            print(f"root kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    end = os.getloadavg()
    loads = " / ".join(f"{x:.1f}" for x in load), " / ".join(f"{x:.1f}" for x in end)
    print(f"\n{args.config}; {os.cpu_count()} cores; 1/5/15-min load {loads[0]} at start, {loads[1]} at end\n")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| cold run | {cold_s:.0f} s |")
    print(f"| root after the cold run | {mb(cold)} MB |")
    print(f"| distinct contents in it (each once) | {mb(distinct)} MB ({cold / distinct:.2f}x; target <= 10x) |")
    print(f"| unchanged rerun | {rerun_s:.1f} s, {tasks.removeprefix('tasks: ')} |")
    print(f"| **added by the unchanged rerun** | **{mb(rerun - cold)} MB** (target < 1 MB) |")
    for part in (*PARTS, "other"):
        print(f"| &nbsp; of which {part} | {(rerun_parts[part] - cold_parts[part]) / 1e3:,.1f} KB |")
    print(f"| `recflow gc --dry-run` | {dry.strip().splitlines()[0]} |")
    print(f"| `recflow gc` | {real.strip().splitlines()[0]}; root {mb(freed)} MB smaller |")


if __name__ == "__main__":
    main()
