"""Where the ``champion`` alias points, and the files that serve the version it names.

A ``Pointer`` is what the poller compares: its ``key`` changes exactly when another version
should serve. Two ways to read the alias:

* ``records`` (the default): ``<root>/serving/champions/recflow-<dataset>.json``, which recflow
  rewrites whenever ``recflow run`` moves the alias (``recflow.experiments.serving.champion``).
  Reading it is a file read: no MLflow import, so start-up and polling stay cheap.
* ``registry``: the MLflow registry's alias itself (``MlflowClient.get_model_version_by_alias``),
  so an alias moved by hand in the MLflow UI is seen too. MLflow is imported by the poller, never
  on the request path; the version's ``pipeline_run_id`` tag names the run record whose files serve.

Either way the files are the run record's (``recflow.experiments.serving.records.sources_for``):
the same catalogue, index and model folders the registered pyfunc bundles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recflow.experiments.serving.records import ALIAS, ServingNotFound, read_record, registered_model_name, runs_dir, sources_for
from recflow.experiments.serving.resolve import find_champion, find_run


@dataclass(frozen=True)
class Pointer:
    """A version to serve: ``key`` identifies it; ``sources`` / ``info`` are a ``Retriever``'s; ``record`` its run record."""

    key: str
    sources: dict[str, Path | None]
    info: dict[str, Any]
    record: dict[str, Any] = field(repr=False)
    version: int | None = None


def _pointer(root: Path, record: dict[str, Any], model: str | None, version: int | None, served_from: str) -> Pointer:
    sources, info = sources_for(record, root, model)
    for key, path in sources.items():
        if path is not None and not path.exists():
            raise ServingNotFound(f"{path} ({key}) is missing: the artifacts were removed; rerun `recflow run`")
    info = {**info, "version": version, "registered_model": record.get("registered_model"), "served_from": served_from}
    key = f"{record['run_id']}:{info['recommend_model']}:{version}"
    return Pointer(key, sources, info, record, version)


class AliasSource:
    """What ``recflow api`` serves: ``current()`` reads where the alias points now (cheap: it is polled)."""

    #: whether the alias can move (a named run never does: nothing to poll)
    moves: bool = True

    def current(self) -> Pointer:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class ChampionRecords(AliasSource):
    """The champion of a dataset as recflow records it (``serving/champions/*.json``); no MLflow."""

    def __init__(self, root: Path, dataset: str | None = None, model: str | None = None, default_dataset: str | None = None) -> None:
        self.root, self.dataset, self.model, self.default_dataset = Path(root), dataset, model, default_dataset

    def current(self) -> Pointer:
        champion = find_champion(self.root, self.dataset, self.default_dataset)
        record = read_record(self.root / champion["record"])
        version = int(champion["version"])
        return _pointer(self.root, record, self.model, version, f"{champion['registered_model']}@{ALIAS} v{version}")

    def describe(self) -> str:
        return f"champion records under {self.root / 'serving' / 'champions'}"


class RegistryAlias(AliasSource):
    """The ``champion`` alias of ``recflow-<dataset>`` in the MLflow registry (MLflow imported here, by the poller only)."""

    def __init__(
        self, root: Path, dataset: str | None = None, model: str | None = None, tracking_uri: str | None = None, default_dataset: str | None = None
    ) -> None:
        self.root, self.model, self.tracking_uri = Path(root), model, tracking_uri
        if dataset is None:  # the dataset of the recorded champion, when there is one
            dataset = find_champion(self.root, None, default_dataset)["registered_model"].removeprefix("recflow-")
        self.name = registered_model_name(dataset)

    def current(self) -> Pointer:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=self.tracking_uri)
        try:
            version = client.get_model_version_by_alias(self.name, ALIAS)
        except MlflowException as exc:
            raise ServingNotFound(f"{self.name} has no '{ALIAS}' alias in the registry at {client.tracking_uri}: {exc}") from None
        run_id = version.tags.get("pipeline_run_id")
        path = runs_dir(self.root) / f"{run_id}.json"
        if not run_id or not path.is_file():
            raise ServingNotFound(f"{self.name} v{version.version} names pipeline run {run_id!r}, which has no run record under {runs_dir(self.root)}")
        record = read_record(path)
        return _pointer(self.root, record, self.model or version.tags.get("model"), int(version.version), f"{self.name}@{ALIAS} v{version.version} (registry)")

    def describe(self) -> str:
        return f"the registry alias {self.name}@{ALIAS}"


class FixedRun(AliasSource):
    """A named pipeline (or model) run: served as is, never swapped."""

    moves = False

    def __init__(self, root: Path, run: str, model: str | None = None) -> None:
        self.root, self.run, self.model = Path(root), run, model

    def current(self) -> Pointer:
        record, run_model = find_run(self.root, self.run)
        return _pointer(self.root, record, self.model or run_model, None, f"run {record['run_id']}")

    def describe(self) -> str:
        return f"run {self.run}"
