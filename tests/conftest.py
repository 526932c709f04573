"""Shared fixtures: one Prefect test server for the session, a fresh artifacts root and MLflow store per test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.pg import postgres_server  # noqa: F401  (a real PostgreSQL server for the session)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("RECFLOW_PROGRESS", "0")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


#: every test under these folders carries the marker, so ``-m "not cluster and not storage"`` leaves them out (``make test-fast``)
FOLDER_MARKERS = {"cluster": "cluster", "storage": "storage", "ui": "ui"}


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects
def pytest_collection_modifyitems(config, items):
    """Markers by folder; and under pytest-xdist (``make test`` runs ``-n auto --dist loadgroup``), each
    module runs on one worker, so its module-scoped fixtures (a Dask cluster, a scheduled server) start
    once, and every ``ui`` test runs on one worker, as they share the session's live servers and browser."""
    for item in items:
        folder = item.path.relative_to(REPO / "tests").parts[0]
        if folder in FOLDER_MARKERS:
            item.add_marker(FOLDER_MARKERS[folder])
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        relative = item.path.relative_to(REPO / "tests")
        group = "ui" if relative.parts[0] == "ui" else relative.as_posix()
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def mlflow_tracking_uri_is_restored():
    """``mlflow.set_tracking_uri`` also writes ``$MLFLOW_TRACKING_URI``: undo it so no later test (or the
    servers the ``ui`` tests start) inherits a store that a finished test left behind."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if "mlflow" in sys.modules:  # not imported: nothing can have leaked
        import mlflow

        mlflow.set_tracking_uri(before)  # sets, or (None) unsets, both the module's URI and the variable


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """../shared/datasets beside the repo; tests that need it skip on a user's fresh clone."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip("../shared/datasets is absent")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def recflow_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "artifacts"
    home.mkdir()
    monkeypatch.setenv("RECFLOW_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.chdir(REPO)
    return home
