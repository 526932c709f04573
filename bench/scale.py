"""The whole DAG at 1M, 10M and 25M synthetic ratings: wall seconds and peak RSS per stage and model.

    python -m bench.scale [--sizes 1e6,1e7,2.5e7] [--runner local|dask] [--slots 1] [--timeout 3000]

Each size is one cold ``recflow run --config configs/ml-25m.yaml --config configs/ml-25m-synth.yaml``
in a fresh subprocess with its own temporary ``RECFLOW_HOME`` (``--home-dir`` picks the disk). The
synthetic release keeps ML-25M's shape scaled down: users, items and ratings shrink by the same
factor (162,541 users and 59,047 items at 25M), so ratings per user and per item stay the same.

Method. Local runner: tasks run one at a time (``PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS=1``,
as the preset says to run it), so each task has the process to itself; ``--slots 2`` lets two
tasks overlap (more of both cores busy, RSS columns then shared as with Dask). A sampling thread reads
the RSS of the run's process tree (psutil, every 0.2 s); after the run the task runs' start and
end times are read from the run's Prefect database (``<home>/.prefect/server.db``), and a task's
peak RSS is the largest sample inside its interval (so it includes what earlier stages left
resident, as the real run does). Wall seconds are the task run's end minus start. ``locate``
includes writing the synthetic release. ``--runner dask`` passes ``--dask`` to ``recflow run``
(a 2-worker LocalCluster, the dask runner's default) when this ``recflow`` has it, and says so
when it does not; tasks then overlap on the workers, so a task's RSS column is the whole process
tree's peak while it ran (an upper bound shared with whatever ran beside it).

CPU seconds (the tree's user + system time over the task's interval) are shown beside wall
seconds: on a shared machine wall time grows with other processes' load, CPU time much less.
``--save`` / ``--load`` keep each size's measurements as JSON, so sizes run at different times
tabulate together.

Growth: for each stage the exponent ``b`` of ``cost ~ ratings^b`` from the two largest sizes
(``growth_exponent``: a log-log slope); ``b <= 1`` is at most linear.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FULL = {"n_ratings": 25_000_000, "n_users": 162_541, "n_items": 59_047}
PRESET = ["--config", str(REPO / "configs" / "ml-25m.yaml"), "--config", str(REPO / "configs" / "ml-25m-synth.yaml")]


def shape(n_ratings: int) -> dict[str, int]:
    """ML-25M's users and items scaled by ``n_ratings / 25M`` (ratings per user and per item kept)."""
    f = n_ratings / FULL["n_ratings"]
    return {"n_ratings": int(n_ratings), "n_users": max(int(round(FULL["n_users"] * f)), 10), "n_items": max(int(round(FULL["n_items"] * f)), 10)}


def growth_exponent(x1: float, y1: float, x2: float, y2: float) -> float:
    """``b`` in ``y ~ x^b`` through two points (the slope on log-log axes): 1 is linear, 2 quadratic."""
    if min(x1, y1, x2, y2) <= 0 or x1 == x2:
        return float("nan")
    return math.log(y2 / y1) / math.log(x2 / x1)


class RssSampler(threading.Thread):
    """Samples the RSS (bytes) and CPU seconds (user + system) of a process and its children every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int, float]] = []
        self._cpu_gone = 0.0  # CPU seconds of children that have exited
        self._cpu_last: dict[int, float] = {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop_event.is_set():
            total, cpu = 0, {}
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for p in procs:
                try:
                    with p.oneshot():
                        total += p.memory_info().rss
                        t = p.cpu_times()
                        cpu[p.pid] = t.user + t.system
                except psutil.Error:
                    pass
            self._cpu_gone += sum(v for pid, v in self._cpu_last.items() if pid not in cpu)
            self._cpu_last = cpu
            self.samples.append((time.time(), total, self._cpu_gone + sum(cpu.values())))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def peak(self, start: float, end: float) -> int:
        inside = [rss for t, rss, _ in self.samples if start <= t <= end + self.interval]
        return max(inside, default=0)

    def cpu(self, start: float, end: float) -> float:
        """CPU seconds the process tree used between the samples nearest ``start`` and ``end``."""
        if not self.samples:
            return 0.0
        times = [t for t, _, _ in self.samples]
        a = min(range(len(times)), key=lambda i: abs(times[i] - start))
        b = min(range(len(times)), key=lambda i: abs(times[i] - end))
        return max(self.samples[b][2] - self.samples[a][2], 0.0)


def task_runs(home: Path) -> list[dict]:
    """Every task run of the run's Prefect database: name, state, start and end (epoch seconds)."""
    db = home / ".prefect" / "server.db"
    if not db.exists():
        return []
    con = sqlite3.connect(db)
    try:
        rows = con.execute("select name, state_type, start_time, end_time from task_run order by start_time").fetchall()
    finally:
        con.close()
    out = []
    for name, state, start, end in rows:
        if start is None:
            continue
        out.append({"name": name, "state": state, "start": _epoch(start), "end": _epoch(end) if end else None})
    return out


def _epoch(value: str) -> float:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def dask_available() -> bool:
    out = subprocess.run([sys.executable, "-m", "recflow.cli.main", "run", "--help"], cwd=REPO, capture_output=True, text=True, env=_env())
    return "--dask" in out.stdout


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def run_size(n_ratings: int, runner: str, timeout: float, home_dir: str | None, slots: int = 1, overrides: tuple[str, ...] = ()) -> dict:
    """One cold run of the preset at ``n_ratings``; per-task wall seconds and peak RSS, and the run's totals.

    ``slots``: tasks at once on the local runner (its thread pool's size); ``overrides``: more
    ``--set KEY=VALUE`` for ``recflow run`` (e.g. ``runner.memory_limit=20GiB``)."""
    s = shape(n_ratings)
    sets = [f"--set=dataset.synth.{k}={v}" for k, v in s.items()] + [f"--set={o}" for o in overrides]
    cmd = [sys.executable, "-m", "recflow.cli.main", "run", *PRESET, *sets, *(["--dask"] if runner == "dask" else [])]
    with tempfile.TemporaryDirectory(prefix="recflow-scale-", dir=home_dir) as tmp:
        home = Path(tmp)
        env = _env(RECFLOW_HOME=str(home))
        if runner == "local":
            env["PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS"] = str(int(slots))
        log = open(home / "bench-run.log", "w")
        started = time.time()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        sampler = RssSampler(proc.pid)
        sampler.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
            rc = "timeout"
        wall = time.time() - started
        sampler.stop()
        log.close()
        tail = (home / "bench-run.log").read_text(errors="replace").splitlines()[-40:]
        tasks = []
        for t in task_runs(home):
            end = t["end"] or time.time()
            tasks.append({**t, "seconds": end - t["start"], "cpu": sampler.cpu(t["start"], end), "peak_rss": sampler.peak(t["start"], end)})
    samples = sampler.samples
    return {
        **s,
        "runner": (runner if runner != "local" else f"local, {int(slots)} task(s) at once") + "".join(f", {o}" for o in overrides),
        "rc": rc,
        "wall": wall,
        "cpu": samples[-1][2] if samples else 0.0,
        "peak_rss": max((r for _, r, _ in samples), default=0),
        "tasks": tasks,
        "tail": tail,
    }


def stage_of(task_name: str) -> str:
    """``train[ease]`` -> ``train[ease]``; Prefect's ``-<id>`` suffix on unnamed runs dropped."""
    return task_name if "[" in task_name else task_name.rsplit("-", 1)[0]


def table(results: list[dict]) -> list[str]:
    """Markdown rows, one per stage: wall seconds, CPU seconds and peak RSS GB per size, then the
    growth exponents (wall, CPU, RSS) between the two largest sizes."""
    names: list[str] = []
    per = []
    for r in results:
        by: dict[str, dict] = {}
        for t in r["tasks"]:
            key = stage_of(t["name"])
            if key not in names:
                names.append(key)
            prev = by.get(key, {"seconds": 0.0, "cpu": 0.0, "peak_rss": 0, "state": t["state"]})
            by[key] = {
                "seconds": prev["seconds"] + t["seconds"],
                "cpu": prev["cpu"] + t.get("cpu", 0.0),
                "peak_rss": max(prev["peak_rss"], t["peak_rss"]),
                "state": t["state"],
            }
        by["whole run"] = {"seconds": r["wall"], "cpu": r.get("cpu", 0.0), "peak_rss": r["peak_rss"], "state": "COMPLETED" if r["rc"] == 0 else f"rc={r['rc']}"}
        per.append(by)
    sizes = [f"{r['n_ratings'] / 1e6:g}M" for r in results]
    grow = len(results) > 1
    head = "| stage | " + " | ".join(f"{s} wall s | {s} CPU s | {s} GB" for s in sizes) + " |" + (" b wall | b CPU | b GB |" if grow else "")
    rows = [head, "|---|" + "---:|---:|---:|" * len(sizes) + ("---:|---:|---:|" if grow else "")]
    for name in names + ["whole run"]:
        cells = []
        for by in per:
            v = by.get(name)
            if v is None:
                cells += ["-", "-", "-"]
                continue
            mark = "" if v["state"] == "COMPLETED" else f" ({v['state'].lower()})"
            cells += [f"{v['seconds']:.1f}{mark}", f"{v['cpu']:.1f}", f"{v['peak_rss'] / 2**30:.2f}"]
        line = f"| {name} | " + " | ".join(cells) + " |"
        if grow:
            (x1, x2), (v1, v2) = [r["n_ratings"] for r in results[-2:]], [by.get(name) for by in per[-2:]]
            for key in ("seconds", "cpu", "peak_rss"):
                ok = v1 and v2 and v1["state"] == v2["state"] == "COMPLETED"
                b = growth_exponent(x1, v1[key], x2, v2[key]) if ok else float("nan")
                line += " - |" if math.isnan(b) else f" {b:.2f} |"
        rows.append(line)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1e6,1e7,2.5e7", help="comma-separated rating counts")
    ap.add_argument("--runner", choices=["local", "dask"], default="local", help="dask: recflow run --dask (a 2-worker LocalCluster)")
    ap.add_argument("--slots", type=int, default=1, help="local runner: tasks at once (its thread pool); 1 gives each task the process to itself")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="passed to recflow run (repeatable)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per size before the run is killed")
    ap.add_argument("--home-dir", default=None, help="where the temporary RECFLOW_HOME of each size goes (needs ~10 GB at 25M)")
    ap.add_argument("--save", type=Path, help="also write each size's measurements to <save>-<size>.json")
    ap.add_argument("--load", type=Path, nargs="*", default=[], help="measurements saved earlier (--save), tabulated with these sizes")
    args = ap.parse_args()
    if args.runner == "dask" and not dask_available():
        print("--runner dask: this recflow's `recflow run` has no --dask option (the Dask runner is not merged); nothing run")
        sys.exit(2)
    results = [json.loads(p.read_text()) for p in args.load]
    for size in (int(float(x)) for x in args.sizes.split(",") if x):
        print(f"running {size:,} ratings ({args.runner} runner) ...", file=sys.stderr, flush=True)
        r = run_size(size, args.runner, args.timeout, args.home_dir, args.slots, tuple(args.overrides))
        if r["rc"] != 0:
            print("\n".join(r["tail"]), file=sys.stderr)
        if args.save:
            Path(f"{args.save}-{size}.json").write_text(json.dumps(r))
        results.append(r)
        results.sort(key=lambda x: x["n_ratings"])
        print("\n".join(table(results)), file=sys.stderr, flush=True)  # partial tables as sizes finish
    print(
        f"\nmachine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} cores; growth: exponent b of cost ~ ratings^b between the two largest sizes; runners: "
        + "; ".join(f"{r['n_ratings'] / 1e6:g}M {r.get('runner', 'local, 1 task(s) at once')}" for r in results)
        + "\n"
    )
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
