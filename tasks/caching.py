"""How every recflow task is cached: inputs + code + config, verified on every hit.

Prefect's default policy includes the run id, so nothing would be reused across runs. Ours keys
a task run on
  * its code lineage (``recflow.runtime.lineage``): the source of every project module the task's
    module can import, followed through imports inside functions and computed from the source,
    never listed by hand (a change to ``recflow/prep/split.py`` invalidates ``split`` and everything
    downstream of it; one to ``recflow/models/embeddings.py`` invalidates item2vec and deepwalk).
    The model registry contributes no model: train, evaluate and index add the lineage of the
    model they run (``chosen_model``), so editing one model reruns only that model,
  * its inputs rendered as canonical JSON: descriptors contribute their content fingerprints,
    config slices their values.
On a hit it checks that every artifact in the cached result is still intact (manifest present,
checksums match); if not, the stale record is dropped and the task runs again. Records live in
the results storage (``results_storage``: a local folder, or a bucket for a root on object
storage), and a stale one is deleted through that storage.

The same key names the task's output folder (``<root>/<stage>/<key>``), so the cache record and
the artifacts it points at can never disagree about which inputs made them.

The code part is computed from module *names* and the sources the lineage reads for them, never
from the live function object: the task's module and qualified name are fixed when ``stage``
decorates it and travel as strings in the policy. A function that reached a Dask worker pickled
by value (cloudpickle 3.1.3 does that to every task) has no source to read, and its file path is
the sender's; the module name, and that module's source as installed *there*, is all a key may
rely on. So a worker that installed recflow from a wheel into another venv at another path
computes the keys of a checkout's run byte for byte (``tests/cluster/test_wheel_worker.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from prefect import task
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

from recflow.runtime import storage
from recflow.runtime.lineage import INPUTS_FILE, Lineage
from recflow.runtime.store import Artifact, artifacts_root, hash_parts

LINEAGE = Lineage.installed()  # the project's module sources; tests point it at an edited copy


def _source_digest(objs: Iterable[Any], inputs: dict[str, Any], task_module: str | None = None) -> str:
    """Lineage of the task's module plus the modules ``code`` names; a callable in ``code`` picks them from the inputs.

    An entry of ``code`` is a module, a module name, or a callable returning a list of either;
    only names are kept. Modules outside the project (a test's own module) contribute their source
    as found by name (``outside_source``).
    """
    roots: list[str] = [task_module] if task_module else []
    for obj in objs:
        for item in [obj] if isinstance(obj, (ModuleType, str)) else obj(inputs):
            roots.append(item if isinstance(item, str) else item.__name__)
    roots += loaded_models(inputs)
    roots = list(dict.fromkeys(roots))
    sources = LINEAGE.sources()
    h = hashlib.sha256(LINEAGE.digest([r for r in roots if r in sources]).encode())
    for name in sorted({r for r in roots if r not in sources}):
        h.update(name.encode() + b"\x00" + outside_source(name).encode() + b"\x00")
    return h.hexdigest()


def loaded_models(inputs: dict[str, Any]) -> list[str]:
    """The modules of every model a task could load from its inputs: each ``train`` descriptor among them
    names its model (and an ensemble's members). In every key automatically, so a task that loads a
    model never forgets that model's code (``chosen_model`` remains for a task that builds one from params)."""
    from recflow.models import MODELS

    names = [name for a in iter_artifacts(inputs) if a.stage == "train" and "model" in a.meta for name in trained_models(a)]
    return [MODELS[name].__module__ for name in dict.fromkeys(names) if name in MODELS]


def outside_source(module: str) -> str:
    """The source of a module outside the project packages, found by its name; "" where none can be read.

    A module nobody can import by that name here (``__main__``, a test module a worker got by value)
    contributes only its name: its tasks then keep equal keys only where they run in one process.
    """
    with contextlib.suppress(ImportError, ValueError, OSError, TypeError):
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            return Path(spec.origin).read_text(encoding="utf-8")
        with contextlib.suppress(KeyError):
            return inspect.getsource(sys.modules[module])
    return ""


def chosen_model(names_of: Callable[[dict[str, Any]], str | list[str]]) -> Callable[[dict[str, Any]], list[str]]:
    """A ``code`` entry: the module of the model the task's inputs name (``names_of(inputs)``), or of several.

    The registry (``recflow.models``) is in every model task's lineage without its models; this
    adds the model the task runs, with everything that model's module imports, and an ensemble's
    members (whose code scores through it).
    """

    def model_module(inputs: dict[str, Any]) -> list[str]:
        from recflow.models import MODELS

        names = names_of(inputs)
        return [MODELS[name].__module__ for name in ([names] if isinstance(names, str) else names)]

    return model_module


def trained_models(model: Artifact) -> list[str]:
    """The model a ``train`` descriptor holds, then its members where it is an ensemble (``chosen_model``'s names)."""
    return [model.meta["model"], *model.meta.get("members", [])]


def iter_artifacts(value: Any) -> Iterable[Artifact]:
    if isinstance(value, Artifact):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from iter_artifacts(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from iter_artifacts(v)


@dataclass
class VerifiedStageCache(CachePolicy):
    """Key = stage + code digest + canonical inputs; a hit whose artifacts are damaged is discarded."""

    stage: str = ""
    code: tuple = field(default_factory=tuple)
    keyed_on: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    module: str = ""  # the task function's module and qualified name, as names (see the module docstring)
    function: str = ""

    def key_for(self, inputs: dict[str, Any]) -> str:
        return stage_key_for(self.stage, self.module, self.function, self.code, inputs, self.keyed_on(inputs) if self.keyed_on else None)

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any], **kwargs: Any) -> str:
        key = self.key_for(inputs)
        self._drop_if_damaged(task_ctx, key)
        return key

    @staticmethod
    def _drop_if_damaged(task_ctx: TaskRunContext, key: str) -> None:
        store = task_ctx.result_store
        if store is None or store.result_storage is None or not store.exists(key):
            return
        try:
            record = store.read(key)
            intact = all(a.is_intact() for a in iter_artifacts(record.result))
        except Exception:  # an unreadable record is as good as none
            intact = False
        if intact:
            return
        path = store._resolved_key_path(key)
        store.cache.pop(path, None)
        delete_record(store.result_storage, path)


def delete_record(results: Any, path: str) -> None:
    """Remove a cache record through the storage that holds it: a local file, or an object via fsspec."""
    from prefect.filesystems import RemoteFileSystem

    if isinstance(results, RemoteFileSystem):
        with contextlib.suppress(FileNotFoundError):
            results.filesystem.rm_file(results._resolve_path(path))  # a saved block's store keeps keys unresolved
    else:
        Path(path).unlink(missing_ok=True)


def stage_key_for(stage: str, module: str, function: str, code: tuple, inputs: dict[str, Any], keyed: dict[str, Any] | None = None) -> str:
    """The cache key (and output folder name) of a task of ``module`` named ``function`` on ``inputs``: names in, never a function object.

    ``keyed``: what of the inputs the key holds (``stage(keyed_on=...)``); the code lineage is still read from ``inputs``."""
    return hash_parts(stage, module, function, _source_digest(code, inputs, module), inputs if keyed is None else keyed)[:20]


def current_key() -> str:
    """The running task's cache key, which is also its output folder name."""
    ctx = TaskRunContext.get()
    if ctx is None:
        raise RuntimeError("current_key() called outside a Prefect task run")
    return ctx.task.cache_policy.key_for(ctx.parameters)


def stage(name: str, *, code: tuple[Any, ...] = (), retries: int = 0, keyed_on: Callable[[dict[str, Any]], dict[str, Any]] | None = None, **task_kwargs: Any):
    """Declare a cached recflow task; its module's lineage is in the key, plus what ``code`` adds (``chosen_model``).

    ``keyed_on``: what of the inputs the key holds, when an input carries more than the result
    depends on (the export's champion result names this run; the key holds only the files it serves).
    """

    def decorate(fn: Callable) -> Any:
        return task(
            fn,
            name=name,
            cache_policy=VerifiedStageCache(stage=name, code=code, keyed_on=keyed_on, module=fn.__module__, function=fn.__qualname__),
            persist_result=True,
            retries=retries,
            **task_kwargs,
        )

    return decorate


def input_folders(parameters: dict[str, Any]) -> list[str]:
    """The stage folders (relative to the root) among a task's inputs."""
    return sorted({a.path for a in iter_artifacts(parameters)})


def results_storage(root: Path | None = None) -> Path | str:
    """Where Prefect keeps result and cache records: ``<root>/.prefect/results``.

    For a root mirroring a bucket: the name of a saved ``RemoteFileSystem`` block whose basepath is
    ``<URL>/.prefect/results``, so every machine sharing the bucket shares the cache. A name, not
    the block itself, because Prefect accepts only saved blocks and this is also evaluated when
    the flow module is imported, with no server to save to; ``prepare_results_storage`` saves it.
    """
    root = root or artifacts_root()
    if remote := storage.remote_of(root):
        return f"remote-file-system/{results_block_name(remote)}"
    return root / ".prefect" / "results"


def results_block_name(remote: storage.RemoteRoot) -> str:
    return "recflow-results-" + hashlib.sha256(remote.url.encode()).hexdigest()[:12]


def prepare_results_storage(results: Path | str) -> Path | str:
    """Before a flow runs: create a local results folder, or save the block a bucket's results storage names."""
    if isinstance(results, Path):
        results.mkdir(parents=True, exist_ok=True)
    elif (remote := storage.configured_remote()) and results == f"remote-file-system/{results_block_name(remote)}":
        prefect_result_storage(remote).save(results_block_name(remote), overwrite=True)  # no credentials in it
    return results


def produce(stage_name: str, build: Callable[[Path], dict[str, Any]], key: str | None = None, inputs: list[str] | None = None) -> Artifact:
    """Run ``build(out_dir)`` into the running task's content-addressed folder and describe it.

    ``build`` writes its files and returns a small JSON-able summary (kept as ``summary.json``
    and as the descriptor's ``meta``); ``inputs.json`` lists the stage folders the task read
    (``recflow gc`` keeps the inputs of every folder a kept run refers to). If an intact folder
    for this key already exists (the cache record was lost but the files were not), it is
    reused instead of rebuilt. Outside a task (``recflow export``), ``key`` and ``inputs`` are given.
    """
    import json

    from recflow.runtime.store import building, describe, stage_dir, verify_stage_dir, write_json_atomic
    from tasks.operations import refreshing

    ctx = TaskRunContext.get()
    key = key or current_key()
    folder = stage_dir(stage_name, key)
    if refreshing() or verify_stage_dir(folder) is None:  # a refresh (weekly rebuild) rewrites it
        with building(stage_name, key) as scratch:
            summary = build(scratch)
            write_json_atomic(scratch / "summary.json", summary)
            write_json_atomic(scratch / INPUTS_FILE, inputs if inputs is not None else input_folders(ctx.parameters))
    summary = json.loads((folder / "summary.json").read_text())
    return describe(stage_name, key, **summary)


def prefect_result_storage(remote: storage.RemoteRoot) -> Any:
    """Prefect's result and cache records under ``<URL>/.prefect/results``, through fsspec (credentials from the environment)."""
    from prefect.filesystems import RemoteFileSystem

    return RemoteFileSystem(basepath=remote.url_of(".prefect/results"))
