"""Execution knobs (threads, logging, batch sizes of a loop) stay out of cache keys; what changes results stays in."""

from __future__ import annotations

import inspect

import pytest

import tasks.evaluate
import tasks.train
from recflow.experiments.config import load_config
from recflow.models import MODELS


def _params(entry: str):
    return load_config(None, [f"models=[{entry}]"]).models[0]


def test_verbose_and_threads_leave_the_fits_key_and_dim_stays():
    key = tasks.train.keyed_on_results
    quiet, chatty = _params("{name: two_tower}"), _params("{name: two_tower, verbose: true, threads: 2}")
    assert key({"params": quiet}) == key({"params": chatty})
    assert key({"params": quiet}) != key({"params": _params("{name: two_tower, dim: 8}")})
    assert key({"params": quiet}) != key({"params": _params("{name: two_tower, jit_compile: false}")})  # XLA changes floating-point results


def test_batch_users_leaves_the_evaluations_key_and_ks_stay():
    key = tasks.evaluate.keyed_on_results
    cfg = load_config(None, []).evaluation
    assert key({"config": cfg}) == key({"config": cfg.model_copy(update={"batch_users": 7})})
    assert key({"config": cfg}) != key({"config": cfg.model_copy(update={"ks": [5]})})


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_declared_execution_param_is_a_param_of_the_model(name):
    params = set(inspect.signature(MODELS[name].__init__).parameters)
    assert MODELS[name].execution_params <= params, MODELS[name].execution_params - params
