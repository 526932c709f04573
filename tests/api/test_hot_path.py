"""The hot path of ``recflow api`` (``recflow.api.app.HotPath``): ``GET /recommend`` and ``GET /similar?item_id=``
in their plain form are answered before FastAPI's routing, byte for byte as the FastAPI routes answer them;
any other form goes to the routes. Index-served runs search on the event loop, as ``recflow recommend`` ranks."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

import recflow.api.app as app_module
from recflow.api.app import RECOMMEND_QUERY, SIMILAR_QUERY, plain_query
from recflow.api.service import Service
from recflow.api.sources import FixedRun
from tests.api.serving_root import COLD_USER, USER_IDS, LiveServer
from tests.api.test_api import item_ids, retriever_of


def test_a_plain_recommend_query_gives_its_parameters():
    assert plain_query(b"user_id=10", **RECOMMEND_QUERY) == {"user_id": 10}
    assert plain_query(b"user_id=-3&k=1000&exclude_seen=False&fallback=popular", **RECOMMEND_QUERY) == {
        "user_id": -3,
        "k": 1000,
        "exclude_seen": False,
        "fallback": "popular",
    }
    assert plain_query(b"k=4&item_id=101", **SIMILAR_QUERY) == {"k": 4, "item_id": 101}


@pytest.mark.parametrize(
    "query",
    [b"", b"k=5", b"user_id=10&k=0", b"user_id=10&k=1001", b"user_id=1e1", b"user_id=10&user_id=11", b"user_id=%31", b"user_id=10&exclude_seen=yes"]
    + [b"user_id=10&fallback=random", b"user_id=10&fallback=", b"user_id=10&other=1", b"user_id=10&", b"user_id=" + b"9" * 19],
)
def test_any_other_form_is_left_to_the_fastapi_route(query):
    assert plain_query(query, **RECOMMEND_QUERY) is None


@pytest.fixture
def hot_hits(monkeypatch):
    """How many requests the hot path answered (``plain_query`` returning parameters)."""
    hits = []

    def counting(query, **form):
        got = plain_query(query, **form)
        hits.append(got is not None)
        return got

    monkeypatch.setattr(app_module, "plain_query", counting)
    return hits


QUERIES = [
    ("/recommend", {"user_id": 10, "k": 5}),  # precomputed
    ("/recommend", {"user_id": 20, "k": 25}),  # deeper than the table: scored in the pool
    ("/recommend", {"user_id": 30, "k": 4, "exclude_seen": "false"}),
    ("/recommend", {"user_id": 5}),  # unknown: 404
    ("/recommend", {"user_id": COLD_USER}),  # cold: 404
    ("/recommend", {"user_id": COLD_USER, "k": 3, "fallback": "popular"}),
    ("/similar", {"item_id": 101, "k": 4}),
    ("/similar", {"item_id": 99}),  # unknown: 404 with the nearest ids
]


@pytest.mark.parametrize(("path", "params"), QUERIES)
def test_the_hot_path_answers_byte_for_byte_as_the_route(live, hot_hits, path, params):
    """The plain query takes the hot path; the same query with a parameter FastAPI ignores takes the route."""
    hot = live.client.get(path, params=params)
    assert hot_hits == [True]
    routed = live.client.get(path, params={**params, "via": "the route"})
    assert hot_hits == [True, False]
    assert (hot.status_code, hot.headers["content-type"], hot.content) == (routed.status_code, routed.headers["content-type"], routed.content)


def test_an_index_served_run_searches_on_the_loop_as_the_cli_ranks(tiny_root):
    """Run C answers through its index without a precomputed table: each request searches, on the event loop."""
    expected = retriever_of(tiny_root, "run-c")
    with LiveServer(Service(FixedRun(tiny_root, "run-c"), tiny_root, precompute="none")) as server, httpx.Client(base_url=server.url) as client:
        assert server.service.current.searches_inline
        meta = client.get("/metadata").json()
        assert (meta["recommend_via"], meta["precomputed"]["users"]) == ("index", 0)
        for user in USER_IDS[:10].tolist():
            for k, exclude_seen in ((3, True), (12, True), (5, False)):
                got = client.get("/recommend", params={"user_id": user, "k": k, "exclude_seen": str(exclude_seen).lower()})
                answer = expected.recommend(user, k, exclude_seen=exclude_seen)
                assert got.status_code == 200 and got.json()["via"] == "flat index"
                assert item_ids(got) == answer.item_ids.tolist()
                np.testing.assert_allclose([r["score"] for r in got.json()["items"]], answer.scores, rtol=1e-6)
        similar = client.get("/similar", params={"item_id": 103, "k": 4})
        assert item_ids(similar) == expected.similar_item(103, 4).item_ids.tolist()
        assert client.get("/recommend", params={"user_id": COLD_USER}).status_code == 404
