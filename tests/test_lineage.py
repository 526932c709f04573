"""Code lineage: a task's cache key follows every project module it can run, and only those."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from recflow.experiments.config import MODEL_PARAMS
from recflow.models import MODELS
from recflow.runtime.lineage import Lineage, ModuleSource, closure, imported_names
from recflow.runtime.store import Artifact
from tasks import caching

REPO = Path(__file__).resolve().parents[1]


def sources(**modules: str) -> dict[str, ModuleSource]:
    return {name.replace("__", "."): ModuleSource(name.replace("__", "."), src) for name, src in modules.items()}


# ----------------------------------------------------------------------------- the import graph


def test_imports_inside_functions_count():
    src = "import os\n\ndef f():\n    from pkg.b import thing\n    import pkg.c as c\n"
    assert imported_names("pkg.a", src) == {"os", "pkg.b", "pkg.b.thing", "pkg.c"}


def test_imports_under_type_checking_do_not_count():
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\nelse:\n    import pkg.c\n"
    assert imported_names("pkg.a", src) == {"typing", "typing.TYPE_CHECKING", "pkg.c"}


def test_relative_imports_resolve_against_the_package():
    src = "from . import schema\nfrom .releases import X\nfrom ..store import Y\n"
    assert imported_names("pkg.data.ingest", src) == {"pkg.data.schema", "pkg.data.releases", "pkg.data.releases.X", "pkg.store", "pkg.store.Y"}


def test_closure_follows_a_module_imported_inside_a_function():
    mods = sources(pkg__a="def run():\n    from pkg.b import helper\n", pkg__b="import pkg.c\n", pkg__c="", pkg__d="")
    assert closure(["pkg.a"], mods) == ["pkg.a", "pkg.b", "pkg.c"]


def test_closure_ignores_modules_outside_the_project():
    mods = sources(pkg__a="import numpy\nfrom pkg.b import x\n", pkg__b="")
    assert closure(["pkg.a"], mods) == ["pkg.a", "pkg.b"]


def test_a_registry_does_not_pull_in_its_own_submodules():
    mods = sources(
        pkg__models="from pkg.models.one import One\nfrom pkg.models.two import Two\nimport pkg.util\n",
        pkg__models__one="import pkg.shared\n",
        pkg__models__two="",
        pkg__shared="",
        pkg__util="",
    )
    mods["pkg.models"] = ModuleSource("pkg.models", mods["pkg.models"].source, is_package=True)
    assert closure(["pkg.models"], mods, registries={"pkg.models"}) == ["pkg.models", "pkg.util"]
    assert closure(["pkg.models.one"], mods, registries={"pkg.models"}) == ["pkg.models.one", "pkg.shared"]


def test_lineage_rereads_an_edited_file(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("def f():\n    import pkg.b\n")
    (tmp_path / "pkg" / "b.py").write_text("X = 1\n")
    lineage = Lineage.from_root(tmp_path, packages=("pkg",))
    before = lineage.digest(["pkg.a"])
    assert lineage.digest(["pkg.a"]) == before
    (tmp_path / "pkg" / "b.py").write_text("X = 22\n")
    assert lineage.digest(["pkg.a"]) != before


# ----------------------------------------------------------------------------- the project's tasks


@pytest.fixture
def project_copy(tmp_path, monkeypatch) -> Path:
    """The project's Python files in a temp folder, with the cache keys reading their sources from there."""
    copy = tmp_path / "project"
    for package in ("recflow", "tasks", "flows"):
        shutil.copytree(REPO / package, copy / package, ignore=lambda d, names: [n for n in names if not (n.endswith(".py") or (Path(d) / n).is_dir())])
    monkeypatch.setattr(caching, "LINEAGE", Lineage.from_root(copy))
    return copy


def artifact(stage: str, **meta) -> Artifact:
    return Artifact(stage=stage, key="k", fingerprint=f"{stage}-fp", path=f"{stage}/k", meta=meta)


#: params for models without usable defaults: an ensemble of two models no other test here edits
EXAMPLE_PARAMS = {"rank_fusion": dict(members=("item_knn", "popular"))}


def model_keys() -> dict[str, dict[str, str]]:
    """Every model's train, evaluate and index key for fixed inputs."""
    from tasks.evaluate import evaluate
    from tasks.index import index
    from tasks.train import train

    keys: dict[str, dict[str, str]] = {}
    for name in MODELS:
        params = MODEL_PARAMS[name](**EXAMPLE_PARAMS.get(name, {}))
        model = artifact("train", model=name, **({"members": list(params.members)} if name in EXAMPLE_PARAMS else {}))
        keys[name] = {
            "train": train.cache_policy.key_for({"data": artifact("ingest"), "params": params}),
            "evaluate": evaluate.cache_policy.key_for({"model": model, "config": {}}),
            "index": index.cache_policy.key_for({"model": model, "config": {}}),
        }
    return keys


def changed_models(before: dict, after: dict, stage: str) -> set[str]:
    return {name for name in before if before[name][stage] != after[name][stage]}


def edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n_EDITED = True\n")


@pytest.mark.parametrize("stage", ["train", "evaluate", "index"])
def test_editing_embeddings_reruns_item2vec_and_deepwalk_only(project_copy, stage):
    before = model_keys()
    edit(project_copy / "recflow" / "models" / "embeddings.py")
    assert changed_models(before, model_keys(), stage) == {"item2vec", "deepwalk"}


def test_editing_the_keras_training_loop_reruns_the_keras_models_only(project_copy):
    before = model_keys()
    edit(project_copy / "recflow" / "models" / "keras_training.py")
    assert changed_models(before, model_keys(), "train") == {"two_tower", "dssm", "hybrid", "mult_vae"}


def test_editing_the_shared_towers_reruns_the_models_that_build_them(project_copy):
    before = model_keys()
    edit(project_copy / "recflow" / "models" / "towers.py")
    assert changed_models(before, model_keys(), "train") == {"two_tower", "dssm", "hybrid"}


def test_editing_two_tower_reruns_only_two_tower(project_copy):
    before = model_keys()
    edit(project_copy / "recflow" / "models" / "two_tower.py")
    assert changed_models(before, model_keys(), "train") == {"two_tower"}


def test_editing_one_model_reruns_only_that_model(project_copy):
    before = model_keys()
    edit(project_copy / "recflow" / "models" / "bpr.py")
    assert changed_models(before, model_keys(), "train") == {"bpr"}


def test_editing_ease_reruns_ease_and_edlae_which_builds_on_it(project_copy):
    before = model_keys()
    edit(project_copy / "recflow" / "models" / "ease.py")
    assert changed_models(before, model_keys(), "train") == {"ease", "edlae"}


@pytest.mark.parametrize("stage", ["train", "evaluate"])
def test_editing_a_member_reruns_the_ensembles_that_fuse_it(project_copy, stage):
    before = model_keys()
    edit(project_copy / "recflow" / "models" / "item_knn.py")
    assert changed_models(before, model_keys(), stage) == {"item_knn", "rank_fusion"}


def test_editing_what_genres_calls_reruns_the_index_tasks(project_copy):
    before = model_keys()
    edit(project_copy / "recflow" / "utils" / "numeric.py")  # genres calls its cosine_neighbours
    assert changed_models(before, model_keys(), "index") == set(MODELS)


def test_editing_nothing_changes_no_key(project_copy):
    assert model_keys() == model_keys()


# ----------------------------------------------------------------------------- keys from names, wherever the code lies


def test_a_task_key_never_reads_the_function_object(monkeypatch):
    """cloudpickle 3.1.3 sends task functions by value: on a worker they have no source. The key must not care."""
    import inspect

    before = model_keys()

    def no_source(obj):
        raise OSError("could not get source code")

    monkeypatch.setattr(inspect, "getsource", no_source)
    assert model_keys() == before


def test_a_task_that_travelled_through_cloudpickle_keeps_its_key():
    import cloudpickle

    from tasks.train import train

    inputs = {"data": artifact("ingest"), "params": MODEL_PARAMS["popular"]()}
    travelled = cloudpickle.loads(cloudpickle.dumps(train))
    assert travelled.cache_policy.key_for(inputs) == train.cache_policy.key_for(inputs)


def test_a_copy_of_the_project_at_another_path_gives_the_same_keys(tmp_path, monkeypatch):
    """What a wheel installed elsewhere holds: the same module names and sources, under another folder."""
    before = model_keys()
    copy = tmp_path / "elsewhere"
    for package in ("recflow", "tasks", "flows"):
        shutil.copytree(REPO / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(caching, "LINEAGE", Lineage.from_root(copy))
    assert model_keys() == before


def test_another_flows_folder_on_the_path_is_not_the_projects(tmp_path, monkeypatch):
    """``flows`` is a namespace package: any ``flows/`` folder on ``sys.path`` (pytest's ``tests/flows``) joins it."""
    import importlib
    import sys

    from recflow.runtime.lineage import package_dirs

    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "test_something.py").write_text("")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    importlib.invalidate_caches()
    assert package_dirs() == {"recflow": REPO / "recflow", "tasks": REPO / "tasks", "flows": REPO / "flows"}
