"""Where ``recflow recommend --user ID`` spends its wall time, fresh process by fresh process.

    python -m bench.recommend --root ARTIFACTS [--user 1] [--runs 7]

``ARTIFACTS`` is a root with a champion (after ``recflow run``). Each run is a new interpreter, as a
user's shell starts one; the table is the median of ``--runs``:

* ``process start``: ``python -c pass`` (the interpreter and site, what no code of ours can save);
* ``imports``: ``recflow.cli.main`` and the modules the command imports before it reads a file;
* ``load``: the champion's record, catalogue and model (memory-mapped), read;
* ``answer``: scoring the user and ranking the top 10;
* ``recflow recommend``: the console script end to end (its wall; the phases above add up to about it).

The budget (issue 28): <= 1.5 s wall on 2 cores. The load average is printed with the numbers:
on a shared machine the same command takes twice as long at load 4.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PHASES = """
import json, sys, time
t0 = time.perf_counter()
import recflow.cli.main
from recflow.cli.retrieval import _default_dataset
from recflow.experiments.serving.resolve import resolve
from recflow.retrieval.search import Retriever
t1 = time.perf_counter()
sources, info = resolve(default_dataset=_default_dataset())
retriever = Retriever.from_sources(sources, info)
retriever.catalogue, retriever.recommend_via
if retriever.recommend_via == "model":
    retriever._model
t2 = time.perf_counter()
retriever.recommend(int(sys.argv[1]), 10)
t3 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "answer": t3 - t2}))
"""


def wall(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="an artifacts root with a champion")
    parser.add_argument("--user", type=int, default=1)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    env = {**os.environ, "RECFLOW_HOME": str(Path(args.root).resolve())}
    recflow = shutil.which("recflow", path=str(Path(sys.executable).parent)) or "recflow"
    rows: dict[str, list[float]] = {"process start": [], "imports": [], "load": [], "answer": [], "recflow recommend": []}
    load_before = os.getloadavg()
    for _ in range(args.runs):
        rows["process start"].append(wall([sys.executable, "-c", "pass"], env)[0])
        phases = json.loads(wall([sys.executable, "-c", PHASES, str(args.user)], env)[1].splitlines()[-1])
        for name, seconds in phases.items():
            rows[name].append(seconds)
        rows["recflow recommend"].append(wall([recflow, "recommend", "--user", str(args.user)], env)[0])
    load_after = os.getloadavg()
    print(f"recflow recommend --user {args.user}: median of {args.runs} fresh processes, {os.cpu_count()} cores ({platform.processor() or platform.machine()})")
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'phase':<20} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, values in rows.items():
        print(f"{name:<20} {statistics.median(values):>9.3f} {min(values):>7.3f} {max(values):>7.3f}")


if __name__ == "__main__":
    main()
