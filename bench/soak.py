"""Soak: the smoke pipeline operated as in production, on a schedule, with faults injected.

    python -m bench.soak [--cycles 20] [--interval 60] [--seed 0] [--keep]

A real ``prefect server`` and ``mlflow server`` (``recflow.runtime.servers.ProjectServers``, free loopback
ports, a temporary artifacts root), a process work pool, the pipeline deployed on the smoke preset
with an interval schedule (``prefect deploy`` from this repository, as ``make deploy`` does), and
``prefect worker start``. Every scheduled flow run is one cycle. Cycle 1 is clean (its metrics are
the reference); after it, cycles alternate a fault and a clean cycle, the faults in a seeded
random order:

* ``kill -9``: the flow-run process (the root lock's holder) killed at a random moment of the run
  while a task of it is running (the cycle gets new data first, so every stage has work in
  flight); that cycle crashes and the next one must complete, with no MLflow run left RUNNING and
  no Prefect flow run left Running by the killed one;
* ``truncated artifact``: a file of a stage folder cut to half its size, between cycles;
* ``corrupt cache record``: a Prefect result record under ``<root>/.prefect/results`` overwritten
  with garbage, between cycles;
* ``deleted stage folder``: one ``<root>/<stage>/<key>`` removed, between cycles;

  (these three land on what the last completed cycle used, so the next cycle meets them);
* ``second run``: ``recflow run`` on the same root started as the scheduled run starts; both
  must complete, one after the other (whichever takes the root lock second waits for it).

The data is a MovieLens-format folder the soak rewrites (a new synthetic seed) before every
``kill -9`` and ``second run`` cycle; the other faults damage what the previous cycle built, so
their cycle keeps its data. Metrics are compared with the first completed cycle on the same data.

After each cycle it checks: the cycle completed; its models' metrics (read back from MLflow)
equal the clean cycle's; every stage folder the cycle used (its MLflow runs' ``recflow.stages`` tags
and its serving record) passes its manifest's checksums: a damaged artifact was never trusted (a
damaged folder that no later run uses is only counted, ``recflow gc`` removes it); no root lock
outlived its holder; and how much the
root grew (without the Prefect server's own database and logs). A fault is *recovered* when the
first cycle completed after it passes every check, *lost* otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POOL = "recflow-soak"
DEPLOYMENT = "soak"
FAULTS = ("kill -9", "truncated artifact", "corrupt cache record", "deleted stage folder", "second run")
MISSED = "missed"  # a kill -9 that came after the run had ended: not counted as injected
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
SERVER_STATE = (".prefect/server.db", ".prefect/logs", ".prefect/server.db-wal", ".prefect/server.db-shm")


@dataclass
class Cycle:
    number: int
    fault: str | None
    state: str = ""
    seconds: float = 0.0
    tasks: str = ""
    metrics_equal: bool | None = None
    damaged_folders: int = 0  # among the folders the cycle used
    damaged_unused: int = 0  # elsewhere in the root: trusted by no run
    stale_lock: bool = False
    zombies: int = 0  # MLflow runs or Prefect flow runs of earlier cycles still RUNNING after this one
    seed: int = 0
    growth_bytes: int = 0
    note: str = ""
    extra: dict = field(default_factory=dict)


def soak_yaml(interval: int, config: str = "configs/smoke.yaml") -> str:
    return textwrap.dedent(f"""\
        name: recflow-soak
        prefect-version: 3.9.1
        build: null
        push: null
        deployments:
          - name: {DEPLOYMENT}
            entrypoint: flows/pipeline.py:pipeline
            parameters:
              config_path: {config}
              refresh: false
            schedules:
              - interval: {interval}
                slug: soak
            concurrency_limit:
              limit: 1
              collision_strategy: ENQUEUE
            work_pool:
              name: {POOL}
        """)


class Soak:
    def __init__(self, root: Path, servers, interval: int, seed: int) -> None:
        self.root = root
        self.servers = servers
        self.interval = interval
        self.rng = random.Random(seed)
        urls = servers.urls
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PREFECT_API_URL": urls["prefect_api_url"],
            "MLFLOW_TRACKING_URI": urls["mlflow_url"],
            "RECFLOW_HOME": str(root),
            "RECFLOW_PROGRESS": "0",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "INFO",
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
            "GIT_PYTHON_REFRESH": "quiet",
        }
        self.worker: subprocess.Popen | None = None
        self.deployment_id = ""
        self.seen: set[str] = set()
        self.last_used: set[Path] = set()  # the stage folders the last completed cycle used: where faults land
        self.references: dict[int, dict] = {}  # data seed -> the metrics of the first completed cycle on it
        self.seed = 0
        self.config = root.parent / "soak.yaml"
        self.write_data(0)

    # ---- the data: a MovieLens-format folder behind a symlink the config names ----
    def write_data(self, seed: int) -> None:
        from recflow.data import write_synthetic

        data = self.root.parent / "data"
        target = data / f"seed-{seed}"
        if not target.exists():
            write_synthetic(target, n_users=200, n_items=150, n_ratings=6000, rank=4, format="ml-25m", seed=seed)
        link = data / "current.tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(target.name)
        os.replace(link, data / "current")  # atomic: a run sees the old data or the new
        self.seed = seed
        smoke = (REPO / "configs" / "smoke.yaml").read_text()
        rest = smoke.partition("split:")[2]
        self.config.write_text(f"dataset:\n  name: soak\n  path: {data / 'current'}\n  download: false\nsplit:{rest}")

    # ---- Prefect API ----
    def api(self, path: str, body: dict | None = None, method: str = "POST"):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.servers.urls["prefect_api_url"] + path, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def deploy(self) -> None:
        bin_dir = Path(sys.executable).parent
        spec = self.root.parent / "prefect-soak.yaml"
        spec.write_text(soak_yaml(self.interval, str(self.config)))
        for command in (
            ["work-pool", "create", POOL, "--type", "process", "--overwrite"],  # as `make deploy` does
            ["work-pool", "set-concurrency-limit", POOL, "1"],
            ["--no-prompt", "deploy", "--prefect-file", str(spec), "--all"],
        ):
            done = subprocess.run([str(bin_dir / "prefect"), *command], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=600, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"prefect {' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        self.deployment_id = self.api("/deployments/filter", {"limit": 10})[0]["id"]
        log = open(self.root.parent / "worker.log", "ab")
        self.worker = subprocess.Popen(
            [str(bin_dir / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.worker and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):  # no further scheduled runs
            self.api(f"/deployments/{self.deployment_id}/pause_deployment", {})

    def flow_runs(self) -> list[dict]:
        return self.api("/flow_runs/filter", {"deployments": {"id": {"any_": [self.deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC", "limit": 200})

    def next_run(self, timeout: float) -> dict:
        """The next flow run of the deployment that leaves Scheduled (first come, first served)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for run in self.flow_runs():
                if run["id"] not in self.seen and run["state_type"] not in ("SCHEDULED",):
                    self.seen.add(run["id"])
                    return run
            time.sleep(1)
        raise TimeoutError(f"no scheduled flow run started within {timeout:.0f} s (worker log: {self.root.parent / 'worker.log'})")

    def wait_terminal(self, run_id: str, timeout: float) -> tuple[dict, float]:
        """The finished flow run, and for how many seconds the root lock was held meanwhile."""
        from recflow.runtime.rootlock import RootLock

        lock = RootLock(self.root)
        held_from = held_to = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if lock.is_held():
                held_from = held_from or time.monotonic()
                held_to = time.monotonic()
            run = self.api(f"/flow_runs/{run_id}", method="GET")
            if run["state_type"] in TERMINAL:
                return run, (held_to - held_from) if held_from else 0.0
            time.sleep(0.25)
        raise TimeoutError(f"flow run {run_id} did not finish within {timeout:.0f} s")

    def logged(self, run_id: str, text: str) -> bool:
        logs = self.api("/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200})
        return any(text in log["message"] for log in logs)

    def task_counts(self, run_id: str) -> str:
        logs = self.api("/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200})
        found = [log["message"] for log in logs if log["message"].startswith("tasks: ")]
        return found[-1].removeprefix("tasks: ") if found else ""

    # ---- the root ----
    def lock_holder_pid(self, timeout: float) -> int | None:
        """The pid holding the root lock (the flow-run process), once some process other than us holds it."""
        from recflow.runtime.rootlock import RootLock

        lock = RootLock(self.root)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            holder = lock.holder()
            if lock.is_held() and holder is not None:
                return holder.pid
            time.sleep(0.1)
        return None

    def stale_lock(self) -> bool:
        """A held lock whose recorded holder is dead would be a lock outliving its holder."""
        from recflow.runtime.rootlock import RootLock

        lock = RootLock(self.root)
        if not lock.is_held():
            return False
        holder = lock.holder()
        if holder is None:
            return False  # a new holder is writing its name
        try:
            os.kill(holder.pid, 0)
        except ProcessLookupError:
            return True
        return False

    def stage_folders(self) -> list[Path]:
        """Published ``<root>/<stage>/<key>`` folders (not ``.prefect``, not a run's ``.<key>.*`` scratch folder)."""
        return sorted(p.parent for p in self.root.glob("*/*/manifest.json") if not (p.parts[-3].startswith(".") or p.parts[-2].startswith(".")))

    def used_folders(self, flow_run_id: str) -> set[Path]:
        """The stage folders a completed flow run used: its MLflow runs' ``recflow.stages`` tags and its serving record."""
        from mlflow import MlflowClient

        client = MlflowClient(self.env["MLFLOW_TRACKING_URI"])
        experiments = [e.experiment_id for e in client.search_experiments()]
        parents = client.search_runs(experiments, f"tags.`prefect.flow_run_id` = '{flow_run_id}'")
        if not parents:
            return set()
        runs = [parents[0], *client.search_runs(experiments, f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")]
        paths = {p for r in runs for p in json.loads(r.data.tags.get("recflow.stages", "[]"))}
        record = self.root / "serving" / "runs" / f"{parents[0].info.run_id}.json"
        if record.is_file():
            served = json.loads(record.read_text())
            paths.add(served["catalogue"])
            paths.update(m["index"] for m in served.get("models", {}).values() if m.get("index"))
        return {self.root / p for p in paths}

    def damaged_folders(self) -> list[Path]:
        from recflow.runtime.store import verify_stage_dir

        return [folder for folder in self.stage_folders() if verify_stage_dir(folder) is None]

    def size(self) -> int:
        total = 0
        for path in self.root.rglob("*"):
            rel = path.relative_to(self.root).as_posix()
            if path.is_file() and not any(rel == s or rel.startswith(s + "/") for s in SERVER_STATE):
                total += path.stat().st_size
        return total

    def metrics(self, flow_run_id: str) -> dict:
        """The models' metrics of the MLflow parent run that this flow run logged."""
        from mlflow import MlflowClient

        client = MlflowClient(self.env["MLFLOW_TRACKING_URI"])
        experiments = [e.experiment_id for e in client.search_experiments()]
        parents = client.search_runs(experiments, f"tags.`prefect.flow_run_id` = '{flow_run_id}'")
        if not parents:
            return {}
        children = client.search_runs(experiments, f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
        return {c.info.run_name: {k: v for k, v in c.data.metrics.items() if k.startswith(("recall_at", "ndcg_at", "rmse"))} for c in children}

    # ---- faults ----
    def targets(self) -> list[Path]:
        """The stage folders the last completed cycle used (a fault there is met by the next cycle), else every one."""
        present = set(self.stage_folders())
        return sorted(present & self.last_used) or sorted(present)

    def between_cycles(self, fault: str) -> str:
        if fault == "truncated artifact":
            files = [f for d in self.targets() for f in d.rglob("*") if f.is_file() and f.name != "manifest.json" and f.stat().st_size > 1]
            target = self.rng.choice(files)
            with open(target, "r+b") as fh:
                fh.truncate(target.stat().st_size // 2)
            return str(target.relative_to(self.root))
        if fault == "corrupt cache record":
            records = [f for f in (self.root / ".prefect" / "results").rglob("*") if f.is_file()]
            keys = {d.name for d in self.targets()}
            records = [f for f in records if f.name in keys] or records  # a stage folder is named by its cache key
            target = self.rng.choice(records)
            target.write_bytes(b'{"not": "a result record"' + bytes(self.rng.randrange(256) for _ in range(64)))
            return str(target.relative_to(self.root))
        if fault == "deleted stage folder":
            target = self.rng.choice(self.targets())
            shutil.rmtree(target)
            return str(target.relative_to(self.root))
        return ""

    def during_cycle(self, fault: str, expected_seconds: float) -> tuple[str, subprocess.Popen | None]:
        if fault == "second run":  # started as the scheduled run starts: whichever takes the root first, the other waits
            second = subprocess.Popen(
                [sys.executable, "-m", "recflow.cli.main", "run", "-c", "configs/smoke.yaml"],
                cwd=REPO,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            return f"recflow run pid {second.pid} started with the scheduled run", second
        pid = self.lock_holder_pid(timeout=120)
        if pid is None:
            return "the run never took the root lock", None
        if fault == "kill -9":
            delay = self.rng.uniform(0, 0.9 * expected_seconds)  # a moment while the run holds the root
            time.sleep(delay)
            in_flight = self.running_task(timeout=120)  # ... and one of its tasks is running
            from recflow.runtime.rootlock import RootLock

            lock = RootLock(self.root)
            holder = lock.holder()
            if not (lock.is_held() and holder is not None and holder.pid == pid):  # its flow is over (maybe still exiting)
                return f"{MISSED}: pid {pid} had already released the root {delay:.1f} s in", None
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return f"{MISSED}: pid {pid} had already finished {delay:.1f} s in", None
            return f"pid {pid} killed {delay:.1f} s after it took the root, during {in_flight or 'no task (between tasks)'}", None
        return "", None

    def running_task(self, timeout: float) -> str:
        """The name of a task run in state Running, waiting up to ``timeout`` for one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.api("/task_runs/filter", {"task_runs": {"state": {"type": {"any_": ["RUNNING"]}}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 5})
            if runs:
                return runs[0]["name"]
            time.sleep(0.05)
        return ""

    def zombies(self, before: float) -> int:
        """MLflow runs still RUNNING and flow runs still Running that started before ``before`` (epoch seconds): a killed run's leftovers."""
        from mlflow import MlflowClient

        client = MlflowClient(self.env["MLFLOW_TRACKING_URI"])
        experiments = [e.experiment_id for e in client.search_experiments()]
        running = client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=1000)
        count = sum(r.info.start_time / 1000 < before for r in running)
        for run in self.flow_runs():
            started = run.get("start_time")
            if run["state_type"] == "RUNNING" and started and _epoch(started) < before:
                count += 1
        return count

    # ---- the loop ----
    def run(self, cycles: int) -> list[Cycle]:
        results: list[Cycle] = []
        expected = 10.0  # seconds the root is held by a clean cycle: measured on each clean cycle
        for number, fault in enumerate(fault_plan(cycles, self.rng), start=1):
            if fault in ("kill -9", "second run") and number > 1:
                self.write_data(number)  # new data: every stage of this cycle has work in flight
            cycle = Cycle(number, fault, seed=self.seed)
            before = self.size()
            if fault in ("truncated artifact", "corrupt cache record", "deleted stage folder"):
                cycle.note = self.between_cycles(fault)
            run = self.next_run(timeout=self.interval * 3 + 300)
            started = time.monotonic()
            started_at = time.time()
            second = None
            if fault in ("kill -9", "second run"):
                cycle.note, second = self.during_cycle(fault, expected)
            run, held = self.wait_terminal(run["id"], timeout=900)
            cycle.seconds = time.monotonic() - started
            cycle.state = run["state_type"]
            if second is not None:
                out, _ = second.communicate(timeout=900)
                cycle.extra["second_rc"] = second.returncode
                waited = "waiting for it to finish" in out
                scheduled_waited = self.logged(run["id"], "waiting for it to finish")
                cycle.note += (
                    "; it waited for the scheduled run" if waited else "; the scheduled run waited for it" if scheduled_waited else "; neither had to wait"
                )
                if second.returncode != 0:
                    cycle.note += f"; second run failed: {out.strip().splitlines()[-1:]}"
            time.sleep(1)  # the flow-run process exits after reporting its state
            cycle.stale_lock = self.stale_lock()
            damaged = self.damaged_folders()
            used = self.used_folders(run["id"]) if cycle.state == "COMPLETED" else set()
            cycle.damaged_folders = len([f for f in damaged if f in used])
            self.last_used = used or self.last_used
            cycle.damaged_unused = len(damaged) - cycle.damaged_folders
            if cycle.state == "COMPLETED":
                cycle.tasks = self.task_counts(run["id"])
                metrics = self.metrics(run["id"])
                reference = self.references.setdefault(cycle.seed, metrics)
                if number == 1:
                    expected = held  # a run that builds everything: a kill lands while the run has work
                cycle.metrics_equal = bool(metrics) and metrics == reference
                cycle.zombies = self.zombies(started_at - 1)
            cycle.growth_bytes = self.size() - before
            results.append(cycle)
            print(
                f"cycle {number:>2} {fault or 'clean':<22} {cycle.state:<9} {cycle.seconds:6.1f} s  tasks {cycle.tasks or '-':<18} "
                f"metrics {'=' if cycle.metrics_equal else ('-' if cycle.metrics_equal is None else '!=')}  "
                f"damaged used {cycle.damaged_folders} unused {cycle.damaged_unused}  stale lock {cycle.stale_lock}  zombies {cycle.zombies}  "
                f"+{cycle.growth_bytes / 1e6:.2f} MB  {cycle.note}",
                flush=True,
            )
        return results


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def fault_plan(cycles: int, rng: random.Random) -> list[str | None]:
    """Cycle 1 clean (the reference), then a fault and a clean cycle in turn; faults in shuffled rounds of all kinds."""
    faults: list[str] = []
    while len(faults) < cycles:
        batch = list(FAULTS)
        rng.shuffle(batch)
        faults.extend(batch)
    return [None] + [faults[i // 2] if i % 2 == 1 else None for i in range(1, cycles)]


def healthy(cycle: Cycle) -> bool:
    return (
        cycle.state == "COMPLETED"
        and bool(cycle.metrics_equal)
        and cycle.damaged_folders == 0
        and not cycle.stale_lock
        and cycle.zombies == 0
        and cycle.extra.get("second_rc", 0) == 0
    )


def summarise(results: list[Cycle]) -> str:
    faults = Counter(c.fault for c in results if c.fault and not c.note.startswith(MISSED))
    recovered: Counter = Counter()
    lost: Counter = Counter()
    missed = sum(c.note.startswith(MISSED) for c in results)
    for i, cycle in enumerate(results):
        if not cycle.fault or cycle.note.startswith(MISSED):
            continue
        # kill -9 crashes its own cycle by design: the next cycle must heal; other faults must not fail their cycle
        judged = results[i + 1] if cycle.fault == "kill -9" and i + 1 < len(results) else cycle
        if cycle.fault == "kill -9" and judged is cycle:
            continue  # the last cycle: nothing after it to judge
        (recovered if healthy(judged) and (cycle.fault == "kill -9" or not cycle.stale_lock) else lost)[cycle.fault] += 1
    unchanged = [c.growth_bytes for i, c in enumerate(results) if not c.fault and i > 0 and c.tasks.startswith("0 ran")]
    lines = [
        (f"cycles: {len(results)} ({sum(c.state == 'COMPLETED' for c in results)} completed, {sum(c.state == 'CRASHED' for c in results)} crashed by kill -9)"),
        "",
        "| fault | injected | recovered | lost |",
        "|---|---:|---:|---:|",
        *(f"| {kind} | {faults[kind]} | {recovered[kind]} | {lost[kind]} |" for kind in FAULTS if faults[kind]),
        f"| all | {sum(faults.values())} | {sum(recovered.values())} | {sum(lost.values())} |",
        *([f"(kill -9 missed, the run had already ended: {missed}, not counted)"] if missed else []),
        "",
        (
            f"stale locks after any cycle: {sum(c.stale_lock for c in results)}; runs left RUNNING by a killed one: {sum(c.zombies for c in results)}; "
            f"damaged stage folders a cycle used: "
            f"{sum(c.damaged_folders for c in results)}; damaged and used by no later run (left for recflow gc): "
            f"{results[-1].damaged_unused if results else 0}"
        ),
        "disk growth per unchanged cycle (0 tasks ran; root without the Prefect server's db/logs): "
        + (", ".join(f"{b / 1e6:.2f} MB" for b in unchanged) if unchanged else "no such cycle"),
        "disk growth per cycle, all: " + ", ".join(f"{c.growth_bytes / 1e6:.2f}" for c in results) + " MB",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--interval", type=int, default=60, help="seconds between scheduled runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary root (printed) for inspection")
    args = parser.parse_args(argv)

    from recflow.runtime.servers import ProjectServers

    tmp = Path(tempfile.mkdtemp(prefix="recflow-soak-"))
    root = tmp / "artifacts"
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the MLflow server serves the root's own store
    print(f"soak: root {root}, {args.cycles} cycles, a run every {args.interval} s, seed {args.seed}", flush=True)
    try:
        with ProjectServers(root, prefect_port=0, mlflow_port=0) as servers:
            soak = Soak(root, servers, args.interval, args.seed)
            try:
                soak.deploy()
                results = soak.run(args.cycles)
            finally:
                soak.stop()
        print()
        print(summarise(results))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
