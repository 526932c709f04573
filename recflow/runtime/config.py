"""A run's configuration: YAML validated by pydantic, unknown keys rejected by name.

Each stage reads only its own slice (``cfg.split``, ``cfg.features`` ...), and that slice is
part of the stage's cache key, so changing one model's parameter reruns only that model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recflow.models import build_model
from recflow.models.params import MODEL_PARAMS, BiasParams, ModelParams, PopularParams  # noqa: F401 - the config's model entries


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SynthConfig(Strict):
    """A synthetic dataset written in a real MovieLens format (see ``recflow synth``)."""

    n_users: int = Field(500, gt=0)
    n_items: int = Field(300, gt=0)
    n_ratings: int = Field(20_000, gt=0)
    rank: int = Field(8, gt=0)
    format: Literal["ml-100k", "ml-1m", "ml-25m"] = "ml-25m"
    seed: int = 0


class DatasetConfig(Strict):
    name: str = "ml-latest-small"
    path: Path | None = Field(None, description="explicit dataset folder or zip; overrides the search order")
    synth: SynthConfig | None = Field(None, description="generate this synthetic dataset instead of reading one")
    tmdb_path: Path | None = Field(None, description="TMDB movies CSV joined through links.csv")
    download: bool = True
    max_reject_fraction: float = Field(0.001, ge=0, le=1)


class SplitConfig(Strict):
    protocol: Literal["temporal", "user_temporal", "user_random", "leave_last_k", "random", "recbole"] = "temporal"
    test_fraction: float = Field(0.1, gt=0, lt=1)
    valid_fraction: float = Field(0.0, ge=0, lt=1)
    last_k: int = Field(1, gt=0, description="leave_last_k: test items per user (valid takes as many when valid_fraction > 0)")
    min_rating: float | None = Field(None, description="drop ratings below this before splitting (recbole: 3)")
    min_user_interactions: int = Field(0, ge=0)
    min_item_interactions: int = Field(0, ge=0)
    seed: int = 42

    @model_validator(mode="after")
    def _fractions_leave_training(self) -> SplitConfig:
        if self.test_fraction + self.valid_fraction >= 1:
            raise ValueError("test_fraction + valid_fraction must be < 1")
        return self


class FeaturesConfig(Strict):
    activity_bins: list[float] = [0, 5, 20, 100, float("inf")]
    activity_labels: list[str] = ["inactive", "casual", "active", "super"]
    popularity_bins: list[float] = [0, 10, 100, 500, float("inf")]
    popularity_labels: list[str] = ["niche", "moderate", "popular", "blockbuster"]

    @model_validator(mode="after")
    def _labels_match_bins(self) -> FeaturesConfig:
        for bins, labels, what in (
            (self.activity_bins, self.activity_labels, "activity"),
            (self.popularity_bins, self.popularity_labels, "popularity"),
        ):
            if len(labels) != len(bins) - 1:
                raise ValueError(f"{what}_labels needs {len(bins) - 1} labels for {len(bins)} bin edges")
        return self


class SamplingConfig(Strict):
    """Negatives for pairwise (BPR) models, notebook 1's three kinds; sequences and walks follow the models' own settings."""

    n_random: int = Field(1, ge=0, description="unseen items drawn uniformly, per user")
    n_popular: int = Field(5, ge=0, description="unseen items from the popular-and-well-rated pool, per user")
    n_disliked: int = Field(3, ge=0, description="seen items the user rated below the item's mean, per user")
    popular_pool: int = Field(200, gt=0)
    negatives_per_positive: int = Field(4, gt=0)
    positive_threshold: Union[Literal["user_mean"], float] = "user_mean"
    seed: int = 0


class EvaluationConfig(Strict):
    ks: list[int] = [10, 20]
    mask_valid: bool = Field(True, description="exclude validation items from the test ranking (RecBole default)")
    relevance_threshold: float | None = Field(None, description="test ratings below this are not relevant")
    batch_users: int = Field(2048, gt=0)
    bootstrap_samples: int = Field(1000, gt=0, description="resamples of the evaluated users behind each metric's confidence interval")
    ci_level: float = Field(0.95, gt=0, lt=1, description="confidence level of the intervals logged as <metric>_ci_low / _ci_high")
    bootstrap_seed: int = 0


# ----------------------------------------------------------------------------- models
# each model's params are derived from its ``__init__`` beside the registry (``recflow.models.params``)


class TrackingConfig(Strict):
    tracking_uri: str | None = Field(None, description="default: $MLFLOW_TRACKING_URI, else sqlite:///<artifacts>/mlflow.db")
    experiment: str | None = Field(None, description="default: recflow/<dataset name>")


IndexKind = Literal["flat", "ivf_flat", "hnsw", "ivf_pq", "hnswlib"]


class IndexConfig(Strict):
    """ANN indexes over each model's embeddings, tuned against exact search (``recflow.retrieval.index``)."""

    kinds: list[IndexKind] = Field(["flat", "ivf_flat", "hnsw", "ivf_pq", "hnswlib"], min_length=1)
    target_recall: float = Field(0.99, gt=0, le=1, description="recall@k against exact search each index is tuned to reach")
    k: int = Field(10, gt=0, description="the k of the tuned recall@k")
    exact_below: int = Field(20_000, ge=0, description="spaces with fewer vectors are served by the exact index")
    n_queries: int = Field(1000, ge=4, description="queries sampled from the vectors: half tune, half held out for the report")
    latency_queries: int = Field(200, gt=0, description="single queries timed per setting")
    hnsw_m: list[int] = Field([16, 32], min_length=1, description="HNSW links per node tried (hnsw and hnswlib)")
    ef_construction: int = Field(200, gt=0)
    ef_search: list[int] = Field([16, 32, 64, 128, 256, 512], min_length=1)
    nlist: int | None = Field(None, gt=0, description="IVF cells; default 4 sqrt(n), at most n / 39")
    nprobe: list[int] = Field([1, 2, 4, 8, 16, 32, 64, 128], min_length=1)
    pq_k_factor: list[int] = Field([1, 2, 4, 8, 16, 32, 64], min_length=1, description="IVF-PQ: candidates re-ranked = k x k_factor")
    pq_refine: list[Literal["none", "sq8", "fp16", "flat"]] = Field(
        ["fp16", "flat"], min_length=1, description="IVF-PQ: the copies candidates are re-ranked by, tried in order until one reaches the target"
    )
    min_ivf_vectors: int = Field(1000, gt=0, description="IVF kinds are skipped below this many vectors")
    build_threads: int = Field(1, gt=0, description="1: bitwise-reproducible graphs")
    seed: int = 0


class ServingConfig(Strict):
    """Packaging the best model of a run as an MLflow pyfunc and moving the ``champion`` alias (``recflow.experiments.serving``)."""

    register_model: bool = Field(True, description="log the pyfunc and register it as recflow-<dataset>")
    champion_metric: str = Field("recall_at_10", description="what 'best' means, within a run and against the champion")
    greater_is_better: bool = True
    significance_level: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="the alias moves only when a paired bootstrap test over the same users gives p below this (experiments.serving.champion.champion_decision)",
    )


class RunnerConfig(Strict):
    """Where the tasks run: ``threads`` (this process's thread pool, the default) or ``dask``
    (``recflow run --dask [ADDRESS]``; see ``tasks/runners.py``). Part of no cache key: a stage's
    result does not depend on where it ran."""

    kind: Literal["threads", "dask"] = "threads"
    address: str | None = Field(None, description="dask: an existing scheduler, tcp://host:8786; none: a LocalCluster of worker processes on 127.0.0.1")
    n_workers: int = Field(2, gt=0, description="LocalCluster: worker processes")
    threads_per_worker: int = Field(1, gt=0, description="LocalCluster: tasks each worker runs at once")
    memory_limit: str = Field("auto", description="LocalCluster: per worker (e.g. '8GiB'; 'auto': the machine's memory / n_workers)")
    dashboard: bool = Field(False, description="LocalCluster: serve Dask's dashboard on 127.0.0.1 (a free port, logged)")

    @field_validator("address")
    @classmethod
    def _address_is_a_scheduler(cls, address: str | None) -> str | None:
        if address is not None and "://" not in address:
            raise ValueError(f"{address!r} is not a scheduler address; expected e.g. tcp://host:8786")
        return address


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
    runner: RunnerConfig = RunnerConfig()

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
        """A ``@k`` metric the evaluation does not compute would leave every run without a champion."""
        metric = self.serving.champion_metric
        prefix, _, k = metric.rpartition("_at_")
        if prefix and k.isdigit() and int(k) not in self.evaluation.ks:
            raise ValueError(
                f"serving.champion_metric {metric!r} needs k={k} in evaluation.ks {self.evaluation.ks}: "
                f"no run would have it, so no champion would ever be registered; "
                f"add {k} to evaluation.ks or pick one of "
                f"{[f'{prefix}_at_{x}' for x in self.evaluation.ks]}"
            )
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
        raw = yaml.safe_load(Path(path).read_text()) or {}
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
            lines.append(f"  {given[loc]}: {msg}")
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
