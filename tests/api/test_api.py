"""``recflow api`` operated: a real uvicorn server on a free loopback port, real HTTP requests.

The root (``conftest.py``): run A (champion v1, EASE) and run B (v2, item-kNN), tiny fitted models.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from recflow.api.service import Service
from recflow.api.sources import ChampionRecords, FixedRun
from recflow.experiments.serving.resolve import resolve
from recflow.models import load_model
from recflow.retrieval.search import Retriever
from tests.api.serving_root import COLD_USER, USER_IDS, LiveServer, free_port, promote

REPO = Path(__file__).resolve().parents[2]


def retriever_of(root: Path, run: str | None = None, model: str | None = None) -> Retriever:
    sources, info = resolve(root, run=run, model=model)
    return Retriever.from_sources(sources, info)


def item_ids(response: httpx.Response) -> list[int]:
    return [row["item_id"] for row in response.json()["items"]]


# -- GET /recommend ----------------------------------------------------------------------------
def test_recommend_gives_the_cli_ranking_with_the_model_version_and_run(live, tiny_root):
    """Precomputed (k <= depth 20) and computed per request (k 25 > depth) alike: what ``recflow recommend`` answers."""
    expected = retriever_of(tiny_root)
    for user in USER_IDS[:12].tolist():
        for k in (5, 25):
            got = live.client.get("/recommend", params={"user_id": user, "k": k})
            assert got.status_code == 200
            body = got.json()
            assert (body["model"], body["version"], body["run_id"], body["model_run_id"]) == ("ease", 1, "run-a", "run-a-ease")
            answer = expected.recommend(user, k)
            assert item_ids(got) == answer.item_ids.tolist()
            np.testing.assert_allclose([r["score"] for r in body["items"]], answer.scores, rtol=1e-6)
            assert [r["title"] for r in body["items"]] == answer.titles


def test_exclude_seen_false_ranks_the_users_rated_items_too(live, tiny_root):
    expected = retriever_of(tiny_root).recommend(10, 5, exclude_seen=False)
    got = live.client.get("/recommend", params={"user_id": 10, "k": 5, "exclude_seen": "false"})
    assert item_ids(got) == expected.item_ids.tolist()
    assert set(item_ids(got)) & set(retriever_of(tiny_root).catalogue.item_ids[retriever_of(tiny_root).catalogue.seen(0)].tolist())


def test_an_unknown_user_is_404_with_a_message_unless_the_popular_fallback_is_asked(live):
    got = live.client.get("/recommend", params={"user_id": 5})
    assert got.status_code == 404
    assert got.json()["error"].startswith("user 5 is unknown") and "fallback=popular" in got.json()["error"]
    popular = live.client.get("/recommend", params={"user_id": 5, "k": 3, "fallback": "popular"})
    assert popular.status_code == 200 and popular.json()["model"] == "popular" and len(popular.json()["items"]) == 3


def test_a_cold_user_is_404_unless_the_popular_fallback_is_asked(live):
    got = live.client.get("/recommend", params={"user_id": COLD_USER})
    assert got.status_code == 404 and "no training ratings" in got.json()["error"]
    assert live.client.get("/recommend", params={"user_id": COLD_USER, "fallback": "popular"}).json()["via"] == "popularity fallback"


@pytest.mark.parametrize("k", [0, 1001, "ten"])
def test_k_out_of_range_is_422_naming_the_parameter(live, k):
    got = live.client.get("/recommend", params={"user_id": 10, "k": k})
    assert got.status_code == 422
    assert got.json()["error"].startswith("k: ") and got.json()["problems"][0]["field"] == "query.k"


def test_an_unknown_fallback_is_422(live):
    got = live.client.get("/recommend", params={"user_id": 10, "fallback": "random"})
    assert got.status_code == 422 and got.json()["error"].startswith("fallback: ")


# -- POST /recommend (history fold-in) ------------------------------------------------------------
def test_a_folded_in_history_ranks_as_the_model_ranks_that_training_user(live, tiny_root):
    """A new user whose items are training user u's training items gets u's own ranking from the model."""
    record = resolve(tiny_root)[0]
    model = load_model(tiny_root / "train" / "run-a-ease" / "model")
    cat = retriever_of(tiny_root).catalogue
    assert record["model"] is not None
    for u in (0, 7, 19):
        history = cat.item_ids[model._seen[u].indices].tolist()
        got = live.client.post("/recommend", json={"items": history[::-1], "k": 6})
        assert got.status_code == 200 and got.json()["via"] == "history fold-in" and got.json()["history"] == len(history)
        items, scores = model.recommend(np.array([u]), k=6)
        assert item_ids(got) == cat.item_ids[items[0]].tolist()
        np.testing.assert_allclose([r["score"] for r in got.json()["items"]], scores[0], rtol=1e-6)


def test_a_history_with_unknown_items_is_404_naming_them(live):
    got = live.client.post("/recommend", json={"items": [101, 99999, 5], "k": 3})
    assert got.status_code == 404 and got.json()["unknown_item_ids"] == [99999, 5]


def test_an_empty_history_is_422(live):
    got = live.client.post("/recommend", json={"items": [], "k": 3})
    assert got.status_code == 422 and got.json()["error"].startswith("items: ")


def test_fold_in_on_a_model_that_cannot_is_409_naming_the_models_that_can(tiny_root):
    service = Service(FixedRun(tiny_root, "run-a", "mf"), tiny_root, depth=5)
    with LiveServer(service) as server:
        got = httpx.post(f"{server.url}/recommend", json={"items": [101, 102]})
    assert got.status_code == 409
    assert got.json()["models_that_can"] == ["ease", "item_knn", "popular"]
    assert "mf cannot score a user from a list of items" in got.json()["error"] and "--model NAME" in got.json()["error"]


# -- GET /similar --------------------------------------------------------------------------------
def test_similar_by_title_and_by_item_id_give_the_cli_answer(live, tiny_root):
    expected = retriever_of(tiny_root).similar("toy story", 4)
    by_title = live.client.get("/similar", params={"title": "toy story", "k": 4})
    by_id = live.client.get("/similar", params={"item_id": 101, "k": 4})
    assert item_ids(by_title) == item_ids(by_id) == expected.item_ids.tolist()
    assert by_title.json()["query"] == "Toy Story (1995)" and by_title.json()["model"] == "mf" and by_title.json()["model_run_id"] == "run-a-mf"


def test_an_unknown_title_is_404_with_the_closest_titles(live):
    got = live.client.get("/similar", params={"title": "Jumanjo Zzz Qq"})
    assert got.status_code == 404 and got.json()["closest_titles"][0] == "Jumanji (1995)"


def test_an_unknown_item_id_is_404_with_the_nearest_ids(live):
    got = live.client.get("/similar", params={"item_id": 99})
    assert got.status_code == 404 and got.json()["nearest_item_ids"] == [101, 102, 103, 104, 105]


@pytest.mark.parametrize("params", [{}, {"item_id": 101, "title": "Heat"}])
def test_similar_needs_exactly_one_of_item_id_and_title(live, params):
    got = live.client.get("/similar", params=params)
    assert got.status_code == 422 and got.json()["error"] == "give exactly one of item_id or title"


def test_an_unknown_mode_is_422(live):
    got = live.client.get("/similar", params={"item_id": 101, "mode": "content"})
    assert got.status_code == 422 and "mode applies to models with several spaces" in got.json()["error"]


# -- POST /recommend/batch -----------------------------------------------------------------------
def test_a_batch_answers_each_user_and_reports_each_failure_in_place(live, tiny_root):
    got = live.client.post("/recommend/batch", json={"user_ids": [10, 5, 20], "k": 3})
    assert got.status_code == 200
    results = got.json()["results"]
    assert [r["user_id"] for r in results] == [10, 5, 20]
    assert [r["item_id"] for r in results[0]["items"]] == retriever_of(tiny_root).recommend(10, 3).item_ids.tolist()
    assert results[1]["status"] == 404 and results[1]["error"].startswith("user 5 is unknown")
    assert got.json()["version"] == 1


def test_a_batch_over_the_limit_is_422(live):
    got = live.client.post("/recommend/batch", json={"user_ids": list(range(1001))})
    assert got.status_code == 422 and got.json()["error"].startswith("user_ids: ")


# -- health, metadata, docs ------------------------------------------------------------------------
class GatedSource(ChampionRecords):
    """The champion records, answered only once ``gate`` is set (a slow first load)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gate = threading.Event()

    def current(self):
        self.gate.wait(30)
        return super().current()


def test_health_is_503_until_a_version_is_loaded_and_so_is_every_query(tiny_root):
    source = GatedSource(tiny_root)
    server = LiveServer(Service(source, tiny_root, interval=0.05))
    server.thread.start()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"{server.url}/health")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert health.status_code == 503 and health.json()["status"] == "loading"
        query = httpx.get(f"{server.url}/recommend", params={"user_id": 10})
        assert query.status_code == 503 and "GET /health" in query.json()["error"]
        source.gate.set()
        server.service.wait_ready(20)
        assert httpx.get(f"{server.url}/health").json()["status"] == "ready"
    finally:
        source.gate.set()
        server.__exit__()


def test_metadata_says_what_serves(live):
    meta = live.client.get("/metadata").json()
    assert {k: meta[k] for k in ("dataset", "registered_model", "model", "version", "run_id", "recommend_via", "similar_model", "metric")} == {
        "dataset": "tiny",
        "registered_model": "recflow-tiny",
        "model": "ease",
        "version": 1,
        "run_id": "run-a",
        "recommend_via": "model",
        "similar_model": "mf",
        "metric": "recall_at_10",
    }
    assert meta["metrics"]["recall_at_10_ci_low"] == pytest.approx(0.3)
    assert meta["protocol"]["split"] == {"protocol": "hand-made"}
    assert meta["trained_at"].startswith("20") and meta["folds_in_history"] is True
    assert meta["fold_in_models"] == ["ease", "item_knn", "popular"]
    assert meta["precomputed"] == {"users": 40, "depth": 20}


def test_the_openapi_docs_list_every_route(live):
    assert live.client.get("/docs").status_code == 200
    paths = live.client.get("/openapi.json").json()["paths"]
    assert set(paths) == {"/recommend", "/recommend/batch", "/similar", "/health", "/metadata"}
    assert set(paths["/recommend"]) == {"get", "post"}


# -- hot swap ---------------------------------------------------------------------------------------
def test_a_promotion_swaps_versions_under_requests_without_a_failure_or_a_mixed_answer(own_live, tiny_root):
    """Four threads query while the champion moves from v1 (EASE, run A) to v2 (item-kNN, run B): every
    answer succeeds and is exactly one version's answer; /metadata shows v2 afterwards."""
    users = USER_IDS[:8].tolist()
    expected = {
        1: {u: retriever_of(tiny_root, "run-a").recommend(u, 5).item_ids.tolist() for u in users},
        2: {u: retriever_of(tiny_root, "run-b").recommend(u, 5).item_ids.tolist() for u in users},
    }
    assert expected[1] != expected[2]
    models = {1: "ease", 2: "item_knn"}
    seen, failures, stop = [], [], threading.Event()

    def query():
        with httpx.Client(base_url=own_live.url, timeout=10) as client:
            n = 0
            while not stop.is_set():
                user = users[n % len(users)]
                n += 1
                try:
                    got = client.get("/recommend", params={"user_id": user, "k": 5})
                    body = got.json()
                    if got.status_code != 200 or body["model"] != models[body["version"]] or item_ids(got) != expected[body["version"]][user]:
                        failures.append((got.status_code, body))
                    seen.append(body["version"])
                except Exception as exc:  # a refused connection, a body without a version: all failures
                    failures.append(repr(exc))

    threads = [threading.Thread(target=query) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(seen) < 20:  # v1 answers under way
        assert time.monotonic() < deadline
        time.sleep(0.01)
    promote(tiny_root, "run-b", 2, "item_knn")
    deadline = time.monotonic() + 20
    while own_live.client.get("/metadata").json()["version"] != 2:
        assert time.monotonic() < deadline, "the server never swapped to v2"
        time.sleep(0.05)
    after = len(seen)
    while len(seen) < after + 20:  # v2 answers under way
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert 1 in seen and seen[-1] == 2 and seen.index(2) > 0
    meta = own_live.client.get("/metadata").json()
    assert (meta["version"], meta["model"], meta["run_id"], meta["health"]["swaps"]) == (2, "item_knn", "run-b", 1)


def test_a_version_that_cannot_load_leaves_the_old_one_serving_and_health_says_why(own_live, tiny_root):
    (tiny_root / "serving" / "runs" / "run-gone.json").write_text('{"run_id": "run-gone", "models": {}, "best": null, "metric": "recall_at_10"}')
    promote(tiny_root, "run-gone", 3, "ease")
    deadline = time.monotonic() + 20
    while own_live.client.get("/health").json()["last_error"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    health = own_live.client.get("/health").json()
    assert health["status"] == "ready" and health["version"] == 1 and "run-gone has no model" in health["last_error"]
    assert own_live.client.get("/recommend", params={"user_id": 10}).json()["version"] == 1


# -- the command --------------------------------------------------------------------------------------
def test_recflow_api_serves_the_champion_without_importing_mlflow_or_tensorflow(tiny_root):
    """The command itself, in its own process: ready on /health, answering, and neither MLflow nor
    TensorFlow in the process (``/health`` would not say so: the process is asked through a probe route)."""
    port = free_port()
    probe = (
        "import sys, threading, time, httpx\n"
        "from recflow.cli.main import app\n"
        "def check():\n"
        "    for _ in range(600):\n"
        "        try:\n"
        f"            if httpx.get('http://127.0.0.1:{port}/health').status_code == 200: break\n"
        "        except httpx.TransportError: pass\n"
        "        time.sleep(0.05)\n"
        f"    r = httpx.get('http://127.0.0.1:{port}/recommend', params={{'user_id': 10, 'k': 3}})\n"
        "    print('STATUS', r.status_code, r.json()['model'], r.json()['version'])\n"
        "    print('HEAVY', sorted(m for m in ('mlflow', 'tensorflow', 'keras') if m in sys.modules), flush=True)\n"
        "    import os; os._exit(0)\n"
        "threading.Thread(target=check, daemon=True).start()\n"
        f"app(['api', '--port', '{port}', '--poll', '0.5'])\n"
    )
    env = {**os.environ, "RECFLOW_HOME": str(tiny_root), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tiny_root, capture_output=True, text=True, timeout=120)
    assert "STATUS 200 ease 1" in out.stdout, out.stderr
    assert "HEAVY []" in out.stdout


def test_recflow_api_refuses_an_unknown_model_with_the_runs_models(tiny_root):
    env = {**os.environ, "RECFLOW_HOME": str(tiny_root), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-m", "recflow.cli.main", "api", "--model", "nope"], env=env, cwd=tiny_root, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 1 and "model 'nope' is not in run run-a; it has: ease, item_knn, mf, popular" in out.stderr
