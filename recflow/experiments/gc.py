"""``recflow gc``: free what no kept run needs under an artifacts root.

What is kept:
  * the newest ``keep_runs`` live pipeline runs of every MLflow experiment recorded for the
    root, and the pipeline run of every registered champion (the ``champion`` alias in MLflow
    and ``serving/champions/*.json``), with their nested model runs;
  * the run artifacts those runs need: their own, and those of the earlier runs holding the
    model files they refer to (``recflow.model_run_id``, see ``recflow.experiments.tracking.log_model_files``);
  * the stage folders they refer to (``recflow.stages`` tags, the run record's catalogue, model
    and index folders) and, transitively, the folders those were built from (``inputs.json``).

What is freed:
  * stage folders (``ingest`` ... ``index``, ``catalogue``) no kept run refers to, with their
    Prefect cache records (``.prefect/results/<key>``: a stage folder is named by its cache key);
  * scratch folders (``<stage>/.<key>.*``) and temporary files (``.<name>.*.tmp`` / ``.part``)
    left by crashed runs: no run can be writing them, since gc holds the root's lock;
  * the artifacts of MLflow runs that are deleted, or belong to pipeline runs beyond the newest
    ``keep_runs`` (the runs and their metrics stay in MLflow; only local artifact folders are removed).

On a root kept on object storage (``RECFLOW_HOME=s3://...``) gc refuses: see ``refuse_mirrored``.

Safety first: a kept run whose stage folders are not recorded (a run from before the tags) or a
referenced folder without ``inputs.json`` makes gc keep every stage folder and say why, and an
MLflow store that cannot be read stops gc altogether. Logged MLflow models (the pyfunc bundles
under ``mlruns/<experiment>/models``) are never touched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from recflow.runtime.lineage import INPUTS_FILE
from recflow.runtime.storage import redact_uri

STAGES = ("ingest", "split", "features", "sampling", "train", "evaluate", "index", "catalogue")
LOCK_FILE = ".recflow.lock"
SCRATCH_DIR = re.compile(r"^\.[0-9a-f]{20}\..+$")  # recflow.runtime.store.building's mkdtemp prefix
TEMP_FILE = re.compile(r"^\..+\.(tmp|part)$")  # recflow.runtime.store.atomic_path / data.download temp names
NOT_OURS = {"mlruns", ".prefect"}  # other tools' trees: never scanned for temp files


class RootBusy(RuntimeError):
    """A pipeline run (or another gc) holds the artifacts root."""


class GcError(RuntimeError):
    """gc cannot tell what is needed (an unreadable MLflow store); nothing was deleted."""


@dataclass
class Item:
    kind: str  # "stage folder", "cache record", "scratch", "temp file", "run artifacts"
    path: Path
    bytes: int


@dataclass
class GcPlan:
    root: Path
    items: list[Item] = field(default_factory=list)
    kept_runs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(i.bytes for i in self.items)

    def by_kind(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for item in self.items:
            count, size = out.get(item.kind, (0, 0))
            out[item.kind] = (count + 1, size + item.bytes)
        return out

    def lines(self, dry_run: bool) -> list[str]:
        verb = "would free" if dry_run else "freed"
        rows = [f"  {kind}: {count} ({human(size)})" for kind, (count, size) in sorted(self.by_kind().items())]
        head = f"{verb} {len(self.items)} items, {human(self.bytes)} under {self.root} (kept {len(self.kept_runs)} pipeline runs)"
        return [head, *rows, *(f"  note: {n}" for n in self.notes)]


def human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def tree_bytes(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# ----------------------------------------------------------------------------- the root lock


@contextlib.contextmanager
def holding_root(root: Path) -> Iterator[None]:
    """Hold the root's lock without waiting; ``RootBusy`` (naming the holder when known) if a run has it.

    Uses ``recflow.runtime.rootlock`` when present (the lock every pipeline run takes); otherwise a
    non-blocking ``flock`` on the same file, which is what that module locks too.
    """
    try:
        from recflow.runtime.rootlock import RootLock
    except ImportError:
        RootLock = None
    if RootLock is not None:
        lock = RootLock(root)
        if not lock.try_acquire():
            holder = lock.holder()
            raise RootBusy(f"{root} is in use by {holder.describe() if holder else 'another process'}; run gc when it is idle")
        try:
            yield
        finally:
            lock.release()
        return
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RootBusy(f"{root} is in use by another process; run gc when it is idle") from None
            raise
        yield
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- what runs need


def local_path(uri: str) -> Path | None:
    """The local folder of a ``file:`` URI or plain path; None for remote artifact stores."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and uri[1:3] == ":\\"):
        return Path(uri)
    return None


def tracking_uris(root: Path) -> list[str]:
    """Every MLflow store recflow runs on this root logged to (their run records say), and the default one."""
    uris = []
    if (root / "mlflow.db").exists():
        uris.append(f"sqlite:///{root / 'mlflow.db'}")
    for path in sorted((root / "serving" / "runs").glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError):
            uri = _with_credentials(json.loads(path.read_text())["tracking_uri"])
            if uri not in uris:
                uris.append(uri)
    return uris


def _with_credentials(recorded: str) -> str:
    """A record's URI has its credentials redacted (``***@``): the environment's URI for that same store has them."""
    env = os.environ.get("MLFLOW_TRACKING_URI") or ""
    return env if env and "***@" in recorded and redact_uri(env) == recorded else recorded


@dataclass
class RunInfo:
    run_id: str
    experiment_id: str
    parent: str | None
    pipeline: bool
    deleted: bool
    start: int
    status: str
    artifact_uri: str
    tags: dict[str, str]


def read_runs(uri: str) -> tuple[list[RunInfo], set[str]]:
    """All runs of every experiment in a store, and the pipeline run ids of its champions."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(uri)
    runs: list[RunInfo] = []
    for experiment in client.search_experiments(view_type=ViewType.ALL):
        token = None
        while True:
            page = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000, page_token=token)
            for run in page:
                tags = run.data.tags
                runs.append(
                    RunInfo(
                        run.info.run_id,
                        experiment.experiment_id,
                        tags.get("mlflow.parentRunId"),
                        tags.get("recflow.kind") == "pipeline",
                        run.info.lifecycle_stage == "deleted" or experiment.lifecycle_stage == "deleted",
                        run.info.start_time or 0,
                        run.info.status,
                        run.info.artifact_uri,
                        dict(tags),
                    )
                )
            token = page.token
            if not token:
                break
    champions: set[str] = set()
    from mlflow.exceptions import MlflowException

    for model in client.search_registered_models():
        with contextlib.suppress(MlflowException):
            version = client.get_model_version_by_alias(model.name, "champion")
            champions.add(version.tags.get("pipeline_run_id") or "")
            champions.add(version.run_id or "")
    return runs, champions - {""}


def kept_pipeline_runs(runs: list[RunInfo], keep_runs: int, champions: set[str]) -> set[str]:
    """The newest ``keep_runs`` live pipeline runs per experiment, plus the champions' pipeline runs."""
    by_id = {r.run_id: r for r in runs}
    kept: set[str] = set()
    per_experiment: dict[str, list[RunInfo]] = {}
    for run in runs:
        # a killed run's pipeline run (ended FAILED by the next run, or still RUNNING: gc holds the lock, so it is dead)
        # refers to no stage folder of its own and takes no place among the kept runs: its artifacts are freed
        crashed = "recflow.crashed" in run.tags or run.status == "RUNNING"
        if run.pipeline and not run.deleted and not crashed:
            per_experiment.setdefault(run.experiment_id, []).append(run)
    for exp_runs in per_experiment.values():
        kept.update(r.run_id for r in sorted(exp_runs, key=lambda r: r.start, reverse=True)[:keep_runs])
    for run_id in champions:  # a champion id may name the model run: keep its pipeline run
        run = by_id.get(run_id)
        while run is not None and not run.pipeline and run.parent:
            run = by_id.get(run.parent)
        if run is not None:
            kept.add(run.run_id)
    return kept


# ----------------------------------------------------------------------------- the plan


def plan(root: Path, keep_runs: int = 10) -> GcPlan:
    """What gc would delete under ``root`` (nothing is touched); see the module docstring."""
    root = Path(root).resolve()
    if keep_runs < 1:
        raise ValueError(f"--keep-runs must be at least 1, got {keep_runs}")
    out = GcPlan(root)
    runs: list[RunInfo] = []
    champions: set[str] = set()
    for uri in tracking_uris(root):
        try:
            store_runs, store_champions = read_runs(uri)
        except Exception as exc:
            raise GcError(f"cannot read the MLflow store {uri} ({exc}); nothing was deleted") from exc
        runs += store_runs
        champions |= store_champions
    for path in sorted((root / "serving" / "champions").glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError):
            champions.add(json.loads(path.read_text())["run_id"])

    kept = kept_pipeline_runs(runs, keep_runs, champions)
    out.kept_runs = sorted(kept)
    kept_all = {r.run_id for r in runs if (r.run_id in kept or r.parent in kept) and not r.deleted}
    needed = kept_all | {r.tags["recflow.model_run_id"] for r in runs if r.run_id in kept_all and "recflow.model_run_id" in r.tags}
    _plan_run_artifacts(out, runs, kept, needed)
    _plan_stage_folders(out, root, [r for r in runs if r.run_id in kept_all])
    _plan_scratch(out, root)
    count_freed_bytes(out.items)
    return out


def count_freed_bytes(items: list[Item]) -> None:
    """Each item's bytes as deleting the whole plan frees them: a file's bytes once, and only when every hard link to
    it is among what the plan deletes. A run's plot or model file is often a link to a kept run's or a stage file's
    (``recflow.runtime.dedupe``): removing that name frees nothing, so it is not counted."""
    inodes: dict[tuple[int, int], list[int]] = {}  # (dev, inode) -> [names in the plan, links, size, the first item naming it]
    for i, item in enumerate(items):
        files = [item.path] if not item.path.is_dir() else [p for p in item.path.rglob("*") if p.is_file() and not p.is_symlink()]
        for file in files:
            with contextlib.suppress(OSError):
                st = file.lstat()
                entry = inodes.setdefault((st.st_dev, st.st_ino), [0, st.st_nlink, st.st_size, i])
                entry[0] += 1
    sizes = [0] * len(items)
    for names, links, size, i in inodes.values():
        if names >= links:
            sizes[i] += size
    for item, size in zip(items, sizes, strict=True):
        item.bytes = size


def _plan_run_artifacts(out: GcPlan, runs: list[RunInfo], kept: set[str], needed: set[str]) -> None:
    by_id = {r.run_id: r for r in runs}
    for run in runs:
        if run.run_id in needed:
            continue
        top = run
        while top.parent and top.parent in by_id and not top.pipeline:
            top = by_id[top.parent]
        if not (run.deleted or top.deleted or (top.pipeline and top.run_id not in kept)):
            continue  # a live run that is not part of a pipeline run (e.g. a comparison): kept
        folder = local_path(run.artifact_uri)
        if folder is None:
            if run.deleted or top.pipeline:
                out.notes.append(f"run {run.run_id}: artifacts in a remote store ({run.artifact_uri}) are left alone")
            continue
        if folder.is_dir() and any(folder.iterdir()):
            out.items.append(Item("run artifacts", folder, tree_bytes(folder)))


def _plan_stage_folders(out: GcPlan, root: Path, kept_runs: list[RunInfo]) -> None:
    referenced: set[str] = set()
    for run in kept_runs:
        if "recflow.stages" in run.tags:
            referenced.update(json.loads(run.tags["recflow.stages"]))
        elif run.pipeline or (run.status == "FINISHED" and run.tags.get("model")):
            out.notes.append(f"run {run.run_id} does not record its stage folders (logged before gc existed): stage folders kept")
            return
        record = root / "serving" / "runs" / f"{run.run_id}.json"
        if run.pipeline and record.is_file():
            data = json.loads(record.read_text())
            referenced.add(data["catalogue"])
            for entry in data["models"].values():
                referenced.add(str(Path(entry["model"]).parent))
                if entry.get("index"):
                    referenced.add(entry["index"])
    todo = list(referenced)
    while todo:  # what a referenced folder was built from
        folder = root / todo.pop()
        if not folder.is_dir() or folder.parent.name == "catalogue":
            continue
        inputs = folder / INPUTS_FILE
        if not inputs.is_file():
            out.notes.append(f"{folder.relative_to(root)} has no {INPUTS_FILE} (built before gc existed): stage folders kept")
            return
        for path in json.loads(inputs.read_text()):
            if path not in referenced:
                referenced.add(path)
                todo.append(path)
    results = root / ".prefect" / "results"
    for stage in STAGES:
        for folder in sorted((root / stage).glob("*")) if (root / stage).is_dir() else []:
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            if str(folder.relative_to(root)) in referenced:
                continue
            out.items.append(Item("stage folder", folder, tree_bytes(folder)))
            record = results / folder.name
            if record.is_file():
                out.items.append(Item("cache record", record, record.stat().st_size))


def _plan_scratch(out: GcPlan, root: Path) -> None:
    for top in sorted(root.iterdir()) if root.is_dir() else []:
        if top.name in NOT_OURS:
            continue
        if top.is_file():
            if TEMP_FILE.match(top.name):
                out.items.append(Item("temp file", top, top.stat().st_size))
            continue
        for dirpath, dirnames, filenames in os.walk(top):
            here = Path(dirpath)
            for name in list(dirnames):
                if SCRATCH_DIR.match(name):
                    out.items.append(Item("scratch", here / name, tree_bytes(here / name)))
                    dirnames.remove(name)
            out.items.extend(Item("temp file", here / f, (here / f).stat().st_size) for f in filenames if TEMP_FILE.match(f))


# ----------------------------------------------------------------------------- doing it


def apply(gc_plan: GcPlan) -> None:
    for item in gc_plan.items:
        if item.path.is_dir() and not item.path.is_symlink():
            shutil.rmtree(item.path, ignore_errors=True)
        else:
            item.path.unlink(missing_ok=True)


def refuse_mirrored(root: Path) -> None:
    """gc reasons about one filesystem; on a mirror of a bucket it would free local copies only and
    mislead, and other machines may be using the bucket's folders: refuse, and say what to do instead."""
    from recflow.runtime.storage import remote_of

    if remote := remote_of(root):
        raise GcError(
            f"recflow gc works on local artifacts roots only; {remote.url} is on object storage. "
            f"Expire its objects with the bucket's lifecycle rules; the local mirror {root} can be deleted at any time "
            "(it is refilled from the bucket; its mlflow.db is this machine's tracking store unless MLFLOW_TRACKING_URI names another)"
        )


def collect(root: Path, keep_runs: int = 10, dry_run: bool = False) -> GcPlan:
    """Plan and (unless ``dry_run``) delete, holding the root so no run starts meanwhile."""
    root = Path(root).resolve()
    refuse_mirrored(root)
    with holding_root(root):
        gc_plan = plan(root, keep_runs)
        if not dry_run:
            apply(gc_plan)
    return gc_plan
