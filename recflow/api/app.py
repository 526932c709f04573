"""The HTTP routes of ``recflow api`` (FastAPI; OpenAPI docs at ``/docs``).

Each route reads ``service.current`` once (``recflow.api.service``) and answers from that
version alone. Answers are plain dicts encoded by orjson into a ``Response`` (no pydantic
serialisation on the hot path; the response models below only document the shapes in the
OpenAPI schema). A precomputed answer is a table lookup on the event loop; anything that scores
(an uncached user, a fold-in, similar items, a batch) runs in the thread pool, so one slow
request does not hold up the loop.

Errors are JSON ``{"error": <what happened and what to do>, "status": <code>, ...}``: 404 for an
unknown user (unless ``fallback=popular``), item or title (with the closest ids or titles), 409
for a fold-in on a model that cannot (naming the run's models that can), 422 for a malformed
request (``k`` out of range, both or neither of ``item_id`` and ``title``), 503 until a version
is loaded.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from fastapi import Body, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field

from recflow.api.service import Service
from recflow.api.versions import FoldInNotSupported, ServedVersion, UnknownItems
from recflow.retrieval.search import NotServable, NoVector, RetrievalError, UnknownItem, UnknownUser
from recflow.retrieval.titles import TitleNotFound

MAX_K = 1000
MAX_BATCH = 1000
JSON = "application/json"


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        self.status, self.message, self.extra = status, message, extra
        super().__init__(message)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, media_type=JSON)


def _error(status: int, message: str, **extra: Any) -> Response:
    return _json({"error": message, "status": status, **extra}, status)


def as_api_error(exc: Exception) -> ApiError:
    """The HTTP status and message of a failed query (what ``recflow recommend`` prints, with its code)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, FoldInNotSupported):
        return ApiError(409, str(exc), models_that_can=exc.capable)
    if isinstance(exc, UnknownItems):
        return ApiError(404, str(exc), unknown_item_ids=exc.unknown)
    if isinstance(exc, UnknownItem):
        return ApiError(404, str(exc), nearest_item_ids=exc.suggestions)
    if isinstance(exc, TitleNotFound):
        return ApiError(404, str(exc), closest_titles=exc.suggestions)
    if isinstance(exc, UnknownUser):
        return ApiError(404, str(exc).replace("--fallback popular", "fallback=popular"))
    if isinstance(exc, NoVector):
        return ApiError(404, str(exc))
    if isinstance(exc, NotServable):
        return ApiError(409, str(exc))
    if isinstance(exc, (RetrievalError, ValueError)):
        return ApiError(422, str(exc).replace("--mode", "mode"))
    raise exc


# -- request and response shapes (the OpenAPI schema; the hot path encodes dicts) ---------------
class Item(BaseModel):
    rank: int
    item_id: int
    title: str
    score: float


class Recommendation(BaseModel):
    user_id: int | None = None
    model: str
    version: int | None = Field(None, description="the registered version (None when serving a named run)")
    run_id: str | None = Field(None, description="the pipeline run whose files serve")
    model_run_id: str | None = None
    via: str = Field(..., description="how the scores were made: model scores, exact dot product, an index, history fold-in, popularity fallback")
    note: str | None = None
    items: list[Item]


class HistoryRequest(BaseModel):
    items: list[int] = Field(..., min_length=1, max_length=10_000, description="the raw item ids the user interacted with (any order)")
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = Field(True, description="leave the history's own items out")


class BatchRequest(BaseModel):
    user_ids: list[int] = Field(..., min_length=1, max_length=MAX_BATCH)
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = True
    fallback: Literal["popular"] | None = None


class BatchAnswer(BaseModel):
    model: str
    version: int | None
    run_id: str | None
    results: list[dict[str, Any]] = Field(..., description="per user: a recommendation, or {user_id, error, status}")


def create_app(service: Service) -> FastAPI:
    """The FastAPI app over ``service`` (started and stopped with the app's lifespan)."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="recflow api",
        description="Recommendations from the champion (or a named run) of a recflow pipeline; the served version follows the champion alias.",
        lifespan=lifespan,
    )
    app.state.service = service

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.message, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "body"))
            got = e.get("input")
            problems.append(f"{where or 'request'}: {e.get('msg')}" + (f" (got {got!r})" if got is not None and not isinstance(got, (dict, list)) else ""))
        return _error(422, "; ".join(problems), problems=[{"field": ".".join(map(str, e.get("loc", ()))), "message": e.get("msg")} for e in exc.errors()])

    def served() -> ServedVersion:
        version = service.current
        if version is None:
            raise ApiError(503, f"no version loaded yet ({service.last_error or 'loading'}); GET /health says when it is ready")
        return version

    async def answer(fn, *args) -> Response:
        try:
            return _json(await run_in_threadpool(fn, *args))
        except Exception as exc:  # a query that cannot be answered: its status and message
            raise as_api_error(exc) from None

    @app.get("/recommend", response_model=Recommendation, summary="top-k items a user has not rated")
    async def recommend(
        user_id: int = Query(..., description="the user's id in the dataset"),
        k: int = Query(10, ge=1, le=MAX_K),
        exclude_seen: bool = Query(True, description="leave out what the user rated anywhere in the split"),
        fallback: Literal["popular"] | None = Query(None, description="'popular': unknown and cold users get the most popular items"),
    ) -> Response:
        version = served()
        if exclude_seen:
            hit = version.precomputed(user_id, k)
            if hit is not None:
                return _json(hit)
        return await answer(version.recommend, user_id, k, exclude_seen, fallback)

    @app.post("/recommend", response_model=Recommendation, summary="top-k items for a user known only by their items (history fold-in)")
    async def recommend_history(request: HistoryRequest = Body(...)) -> Response:
        version = served()
        return await answer(version.recommend_history, request.items, request.k, request.exclude_seen)

    @app.post("/recommend/batch", response_model=BatchAnswer, summary="top-k items for many users at once")
    async def recommend_batch(request: BatchRequest = Body(...)) -> Response:
        version = served()

        def run() -> dict[str, Any]:
            results = []
            for user in request.user_ids:
                try:
                    results.append(version.recommend(user, request.k, request.exclude_seen, request.fallback))
                except Exception as exc:
                    err = as_api_error(exc)
                    results.append({"user_id": user, "error": err.message, "status": err.status})
            return {**version.header, "results": results}

        return await answer(run)

    @app.get("/similar", response_model=Recommendation, summary="items most similar to one item (cosine, through its index)")
    async def similar(
        item_id: int | None = Query(None, description="the item's id"),
        title: str | None = Query(None, description="or its title: any case, year optional, typos forgiven"),
        k: int = Query(10, ge=1, le=MAX_K),
        mode: str | None = Query(None, description="an item space (hybrid's content, cf or hybrid); default the primary"),
    ) -> Response:
        if (item_id is None) == (title is None or not title.strip()):
            raise ApiError(422, "give exactly one of item_id or title")
        version = served()
        return await answer(version.similar, k, item_id, title, mode)

    @app.get("/health", summary="ready once a version is loaded (503 before)")
    async def health() -> Response:
        body = service.health()
        return _json(body, 200 if body["status"] == "ready" else 503)

    @app.get("/metadata", summary="what is served: dataset, model, version, run, protocol, metrics with CIs, trained at")
    async def metadata() -> Response:
        return _json({**served().metadata(), "health": service.health()})

    return app
