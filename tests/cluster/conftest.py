"""Fixtures of the cluster tests (helpers: ``tests.cluster.wheel``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.wheel import wheel_venv


@pytest.fixture(scope="module")
def wheel_python(tmp_path_factory) -> Path:
    """The python of a venv, outside the checkout, whose recflow comes from the project's wheel."""
    return wheel_venv(tmp_path_factory.mktemp("wheel-worker"))
