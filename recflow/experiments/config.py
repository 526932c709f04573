"""A run's configuration: YAML validated by pydantic, unknown keys rejected by name.

Each slice lives beside the code it parameterises (``recflow.data.config``, ``recflow.prep.config``,
``recflow.evaluation.config``, ``recflow.retrieval.config``, ``recflow.experiments.config``, each model's
params in ``recflow.models.params``, and the tracking and serving slices here); ``RunConfig`` only
assembles them and ``load_config`` reads YAML. It lives in the experiments layer because an
experiment is what a run config defines: tracking logs it and tuning varies it. Each stage reads only
its own slice, and that slice is part of the stage's cache key, so changing one model's parameter
reruns only that model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from recflow.data.config import DatasetConfig, SynthConfig  # noqa: F401 - the slices a run config assembles
from recflow.evaluation.config import EvaluationConfig
from recflow.evaluation.specs import greater_is_better, validate_champion_metric
from recflow.models import build_model
from recflow.models.params import MODEL_PARAMS, BiasParams, ModelParams, PopularParams  # noqa: F401 - the config's model entries
from recflow.prep.config import FeaturesConfig, SamplingConfig, SplitConfig
from recflow.retrieval.config import IndexConfig, IndexKind  # noqa: F401
from recflow.runtime.config import RunnerConfig
from recflow.utils.config import Strict


class TrackingConfig(Strict):
    tracking_uri: str | None = Field(None, description="default: $MLFLOW_TRACKING_URI, else sqlite:///<artifacts>/mlflow.db")
    experiment: str | None = Field(None, description="default: recflow/<dataset name>")


class ServingConfig(Strict):
    """Packaging the best model of a run as an MLflow pyfunc and moving the ``champion`` alias (``recflow.experiments.serving``)."""

    register_model: bool = Field(True, description="log the pyfunc and register it as recflow-<dataset>")
    champion_metric: str = Field("recall_at_10", description="what 'best' means, within a run and against the champion")
    greater_is_better: bool = Field(
        True, description="the champion metric's direction: filled from the metric registry; a value that contradicts it is an error"
    )
    significance_level: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="the alias moves only when a paired bootstrap test over the same users gives p below this (experiments.serving.champion.champion_decision)",
    )

    @model_validator(mode="before")
    @classmethod
    def _direction_from_the_registry(cls, data: Any) -> Any:
        """``greater_is_better`` is the champion metric's own direction; stating the opposite is an error, not an override."""
        if not isinstance(data, dict):
            return data
        metric = data.get("champion_metric", cls.model_fields["champion_metric"].default)
        known = greater_is_better(metric) if isinstance(metric, str) else None
        stated = data.get("greater_is_better")
        if known is not None and stated is not None and bool(stated) != known:
            raise ValueError(f"greater_is_better: {stated} contradicts {metric!r}, for which {'higher' if known else 'lower'} is better; leave it out")
        if known is not None:
            data = {**data, "greater_is_better": known}
        return data


#: source kinds that grow: their default split protocol is time_forward
GROWING_SOURCES = ("table", "sql")


class ExportConfig(Strict):
    """The batch export after ``champion`` (``tasks/export.py``): every warm user's top-K of the champion as Parquet."""

    enabled: bool = Field(True, description="write the export after every run (cached: reruns only when the champion's files change)")
    k: int = Field(100, gt=0, le=10_000, description="items per user")
    partitions: int = Field(16, gt=0, le=4096, description="Hive buckets of user_id mod partitions, one per loader worker")


class RunConfig(Strict):
    dataset: DatasetConfig = DatasetConfig()
    split: SplitConfig = SplitConfig()
    features: FeaturesConfig = FeaturesConfig()
    sampling: SamplingConfig = SamplingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    models: list[ModelParams] = Field(default_factory=lambda: [PopularParams(), BiasParams()])
    tracking: TrackingConfig = TrackingConfig()
    index: IndexConfig = IndexConfig()
    serving: ServingConfig = ServingConfig()
    export: ExportConfig = ExportConfig()
    runner: RunnerConfig = RunnerConfig()
    warm_start: bool = Field(
        True,
        description="on a time_forward split, models that declare warm_starts continue from their fit on the previous cut-off "
        "(recflow.runtime.warmstarts); never in a refresh (weekly-rebuild)",
    )

    @model_validator(mode="before")
    @classmethod
    def _growing_sources_split_time_forward(cls, raw: Any) -> Any:
        """A source that grows (``dataset.source.kind`` ``table`` or ``sql``) is split ``time_forward`` unless
        the config names a protocol: the question a nightly retrain answers. MovieLens presets keep theirs."""
        if not isinstance(raw, dict):
            return raw
        dataset = raw.get("dataset")
        source = dataset.get("source") if isinstance(dataset, dict) else getattr(dataset, "source", None)
        kind = source.get("kind") if isinstance(source, dict) else getattr(source, "kind", None)
        split = raw.get("split")
        if kind in GROWING_SOURCES and (split is None or (isinstance(split, dict) and "protocol" not in split)):
            return {**raw, "split": {**(split or {}), "protocol": "time_forward"}}
        return raw

    @model_validator(mode="after")
    def _model_names_unique(self) -> RunConfig:
        names = [m.name for m in self.models]
        if len(names) != len(set(names)):
            raise ValueError(f"models listed twice: {sorted({n for n in names if names.count(n) > 1})}")
        return self

    @model_validator(mode="after")
    def _ensembles_combine_listed_models(self) -> RunConfig:
        """An ensemble's members must be models of this run (it reuses their fits) that are not ensembles themselves."""
        listed = {m.name: build_model(m).member_names() for m in self.models}  # builds check each model's own params
        for name, members in listed.items():
            missing = [m for m in members if m not in listed]
            if missing:
                raise ValueError(f"model {name!r} combines {missing}, which the config does not list: add them to models")
            nested = [m for m in members if listed[m]]
            if nested:
                raise ValueError(f"model {name!r} combines {nested}, which combine other models themselves: list their members instead")
        return self

    @model_validator(mode="after")
    def _champion_metric_is_measured(self) -> RunConfig:
        """A metric the evaluation does not compute would leave every run without a champion."""
        try:
            validate_champion_metric(self.serving.champion_metric, self.evaluation.ks)
        except ValueError as exc:
            raise ValueError(f"serving.champion_metric: {exc}") from None
        return self

    def model(self, name: str) -> ModelParams:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)


class ConfigError(ValueError):
    """A config that does not validate; the message names the file and every offending key."""


def load_config(path: str | Path | list[str | Path] | tuple | None = None, overrides: list[str] | None = None) -> RunConfig:
    """A validated config from zero or more YAML files and ``--set`` overrides, later ones winning.

    Several files merge in order (``merge_configs``): mappings key by key, the ``models`` list by
    model name, anything else replaced; so a tuning overlay (``recflow tune``) holding only
    ``models: [{name: ease, l2: 812.5}]`` changes that one parameter of a preset. The merged
    result is validated once, so an unknown key in any file is still an error naming the file.
    """
    paths = [] if path is None else [path] if isinstance(path, (str, Path)) else list(path)
    raw: dict[str, Any] = {}
    for p in paths:
        raw = merge_configs(raw, _read_yaml(p))
    source = " + ".join(str(p) for p in paths) or "<defaults>"
    for item in overrides or []:
        apply_override(raw, item)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc, overrides)) from None


def _read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(Path(path).read_text())
        if raw is None:  # an empty (or all-comment) file: running the built-in defaults instead is a silent substitution
            raise ConfigError(f"{path}: the config file is empty; refused (leave out --config to run the defaults on purpose)")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}" + presets_hint(Path(path))) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if "models" in raw and not isinstance(raw["models"], list):
        raise ConfigError(f"{path}: 'models' must be a list of {{name: ..., <param>: ...}} entries")
    try:
        RunConfig.model_validate(merge_configs({}, raw))  # name the file that brings an unknown key
    except ValidationError as exc:
        unknown = [".".join(str(p) for p in e["loc"]) for e in exc.errors() if e["type"] == "extra_forbidden"]
        if unknown:
            raise ConfigError("\n".join([f"{path}: invalid config", *(f"  unknown key '{u}'" for u in unknown)])) from None
    return raw


def merge_configs(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` on ``base`` (neither changed): mappings merge recursively, ``models`` entries merge
    by ``name`` (an overlay entry updates the same-named model, a new name is appended), anything
    else is replaced."""
    out = dict(base)
    for key, value in overlay.items():
        if key == "models" and isinstance(out.get(key), list) and isinstance(value, list):
            models = [dict(m) if isinstance(m, dict) else m for m in out[key]]
            for entry in value:
                name = entry.get("name") if isinstance(entry, dict) else None
                match = next((m for m in models if isinstance(m, dict) and name is not None and m.get("name") == name), None)
                if match is None:
                    models.append(entry)
                else:
                    match.update(entry)
            out[key] = models
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_configs(out[key], value)
        else:
            out[key] = value
    return out


PRESETS_DIR = Path(__file__).resolve().parents[2] / "configs"


def presets_hint(path: Path) -> str:
    """The presets a mistyped ``--config`` may have meant: the YAML files beside it, else the project's."""
    folder = path.parent if path.parent.is_dir() and any(path.parent.glob("*.yaml")) else PRESETS_DIR
    found = sorted(folder.glob("*.yaml"))
    return ("\npresets: " + ", ".join(str(p if folder != PRESETS_DIR else p.relative_to(PRESETS_DIR.parent)) for p in found)) if found else ""


def error_key(loc: tuple) -> str:
    """A validation error's key as a user writes it: ``models.bias.reg_user``, not ``models.1.bias.reg_user``."""
    parts = list(loc)
    if len(parts) > 2 and parts[0] == "models" and isinstance(parts[1], int):
        del parts[1]
    return ".".join(str(p) for p in parts)


def format_validation_error(source: str, exc: ValidationError, overrides: list[str] | None = None) -> str:
    """One line per bad key, each blamed on where its value came from: the ``--set`` that gave it, else the file(s)."""
    given = {item.split("=", 1)[0].strip(): item for item in overrides or [] if "=" in item}
    lines, blamed = [], set()
    for err in exc.errors():
        loc = error_key(err["loc"])
        msg = str(err["ctx"]["error"]) if err["type"] == "value_error" and "error" in err.get("ctx", {}) else err["msg"]
        if loc in given:
            blamed.add(f"--set {given[loc]}")
            lines.append(f"  {given[loc]}: unknown key '{loc}'" if err["type"] == "extra_forbidden" else f"  {given[loc]}: {msg}")
        elif err["type"] == "extra_forbidden":
            blamed.add(source)
            lines.append(f"  unknown key '{loc}'")
        else:
            blamed.add(source)
            lines.append(f"  {loc}: {msg}" if loc else f"  {msg}")
    return "\n".join([f"{' + '.join(sorted(blamed))}: invalid config", *lines])


def apply_override(raw: dict[str, Any], item: str) -> None:
    """``a.b.c=value``; ``models.<name>.<param>=value`` addresses a model by name (added if absent)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    dotted, text = item.split("=", 1)
    value = yaml.safe_load(text) if text != "" else None
    keys = dotted.strip().split(".")
    node: Any = raw
    for i, key in enumerate(keys[:-1]):
        if isinstance(node, dict) and key == "models" and i == 0:
            models = node.setdefault("models", [dict(m) for m in (p.model_dump() for p in RunConfig().models)])
            name = keys[1]
            entry = next((m for m in models if isinstance(m, dict) and m.get("name") == name), None)
            if entry is None:
                entry = {"name": name}
                models.append(entry)
            if len(keys) == 2:
                raise ConfigError(f"--set {dotted}: name a parameter, e.g. models.{name}.<param>=value")
            node = entry
            for sub in keys[2:-1]:
                node = node.setdefault(sub, {})
            break
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
    if dotted == "models":
        raw["models"] = value
        return
    node[keys[-1]] = value
