"""The thread budget a TensorFlow model trains with: the process's OpenMP budget when it has one."""

import os

import pytest

from recflow.models.keras_training import thread_budget


def test_omp_num_threads_sets_the_budget(monkeypatch):
    # a Dask worker process is started with OMP_NUM_THREADS=1 (distributed's pre-spawn-environ)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert thread_budget() == 1


def test_without_omp_num_threads_the_budget_is_the_cpus_the_process_may_use(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert thread_budget() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["", "0", "-2", "two", "1,2"])
def test_a_budget_that_is_not_a_positive_integer_is_ignored(monkeypatch, value):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert thread_budget() == len(os.sched_getaffinity(0))
