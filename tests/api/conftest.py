"""Fixtures of the ``recflow api`` tests: the hand-made root of ``serving_root`` and a live server over it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from recflow.api.service import Service
from recflow.api.sources import ChampionRecords
from tests.api.serving_root import LiveServer, build_index_run, build_run, promote


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("api-root")
    build_run(root, "run-a", "ease", ease_l2=10.0)
    build_run(root, "run-b", "item_knn", ease_l2=10.0)
    build_index_run(root, "run-c")
    promote(root, "run-a", 1, "ease")
    return root


def _serving(root: Path):
    promote(root, "run-a", 1, "ease")
    service = Service(ChampionRecords(root), root, interval=0.05, depth=20)
    with LiveServer(service) as server, httpx.Client(base_url=server.url, timeout=10) as client:
        server.client = client
        yield server
    promote(root, "run-a", 1, "ease")


@pytest.fixture(scope="module")
def live(tiny_root):
    """A server over the champion (v1, run A), polling every 50 ms, shared by the tests that only query it."""
    yield from _serving(tiny_root)


@pytest.fixture
def own_live(tiny_root):
    """A server of the test's own, for tests that move the champion (put back to v1 afterwards)."""
    yield from _serving(tiny_root)
