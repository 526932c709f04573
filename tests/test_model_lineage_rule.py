"""Every cached task that could load a model has that model's code in its key, without being told."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import tasks
from recflow.runtime.store import Artifact
from tasks.caching import VerifiedStageCache, loaded_models, stage_key_for


def _train(model: str, members: tuple[str, ...] = ()) -> Artifact:
    return Artifact.model_construct(stage="train", key="k", fingerprint="f", path="train/k", meta={"model": model, "members": list(members)})


def cached_tasks():
    for info in pkgutil.iter_modules(tasks.__path__, "tasks."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if isinstance(getattr(obj, "cache_policy", None), VerifiedStageCache) and obj.__module__ == module.__name__:
                yield f"{info.name}.{name}", obj


def test_a_train_descriptor_among_the_inputs_names_its_model_and_members():
    assert loaded_models({"model": _train("ease")}) == ["recflow.models.ease"]
    assert loaded_models({"x": {"nested": [_train("rank_fusion", ("ease", "item_knn"))]}}) == [
        "recflow.models.rank_fusion",
        "recflow.models.ease",
        "recflow.models.item_knn",
    ]
    assert loaded_models({"split": Artifact.model_construct(stage="split", key="k", fingerprint="f", path="split/k", meta={})}) == []


@pytest.mark.parametrize("name", [n for n, _ in cached_tasks()])
def test_every_cached_task_keys_a_loaded_model_by_that_models_code(name):
    """Handed the same descriptor naming another model, a cached task computes another key: the model's lineage is in it."""
    task = dict(cached_tasks())[name]
    policy = task.cache_policy
    params = list(inspect.signature(task.fn).parameters)
    inputs = dict.fromkeys(params)

    def key(model: str) -> str:
        given = {**inputs, params[0]: _train(model)}
        return stage_key_for(policy.stage, policy.module, policy.function, (), given, given)

    assert key("ease") != key("popular")
