"""The HTTP routes of ``recflow api`` (FastAPI; OpenAPI docs at ``/docs``).

Each route reads ``service.current`` once (``recflow.api.service``) and answers from that
version alone. Answers are plain dicts encoded by orjson into a ``Response`` (no pydantic
serialisation on the hot path; the response models below only document the shapes in the
OpenAPI schema).

Where the work runs: a precomputed answer (a table lookup) and an index search (``recommend_via
= index``, ``/similar?item_id=``: a tenth of a millisecond) run on the event loop, where a thread
hop would cost more than the search; anything that scores a whole catalogue (an uncached user of
a ``model`` or ``dot`` ranker, a fold-in, a title lookup, a batch) runs in a thread pool of
``WORKER_THREADS`` threads, so one slow request does not hold up the loop and a burst does not
start dozens of threads fighting for the interpreter lock.

The hot path: ``GET /recommend`` and ``GET /similar?item_id=`` in the plain form clients send
(``?user_id=1&k=10``, decimal numbers, no repeated or unknown parameter) are answered by the
``HotPath`` middleware before FastAPI's routing, dependency solving and validation (measured: a
third of a millisecond of CPU per request, three times the index search). It answers through
the very functions the routes call (``recommend_answer``, ``similar_answer``), so the answer,
errors included, is the same; any other form (``k=0``, ``exclude_seen=yes``, an escaped value)
goes to the FastAPI route, which validates it and answers or says what is wrong.

Errors are JSON ``{"error": <what happened and what to do>, "status": <code>, ...}``: 404 for an
unknown user (unless ``fallback=popular``), item or title (with the closest ids or titles), 409
for a fold-in on a model that cannot (naming the run's models that can), 422 for a malformed
request (``k`` out of range, both or neither of ``item_id`` and ``title``), 503 until a version
is loaded.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import anyio
import orjson
from fastapi import Body, FastAPI, Query, Request
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
#: threads that score off the event loop (the interpreter lock lets one run Python at a time; numpy and the indexes release it)
WORKER_THREADS = 4


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        self.status, self.message, self.extra = status, message, extra
        super().__init__(message)


def _encode(body: Any) -> bytes:
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _json(body: Any, status: int = 200) -> Response:
    return Response(_encode(body), status_code=status, media_type=JSON)


def _error_body(status: int, message: str, **extra: Any) -> bytes:
    return _encode({"error": message, "status": status, **extra})


def _error(status: int, message: str, **extra: Any) -> Response:
    return Response(_error_body(status, message, **extra), status_code=status, media_type=JSON)


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


# -- the answers the routes and the hot path share ------------------------------------------------
def _not_loaded(service: Service) -> ApiError:
    return ApiError(503, f"no version loaded yet ({service.last_error or 'loading'}); GET /health says when it is ready")


class WorkerPool:
    """The bounded thread pool of the work that leaves the event loop (its limiter is made on the server's loop, by ``start``)."""

    def __init__(self, threads: int = WORKER_THREADS) -> None:
        self.threads = int(threads)
        self.limiter: anyio.CapacityLimiter | None = None

    def start(self) -> None:
        self.limiter = anyio.CapacityLimiter(self.threads)

    async def run(self, fn, *args) -> Any:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self.limiter)


async def recommend_answer(service: Service, pool: WorkerPool, user_id: int, k: int, exclude_seen: bool, fallback: str | None) -> tuple[int, bytes]:
    """``GET /recommend``'s status and body: the precomputed table, else an index search on the loop, else the thread pool."""
    version = service.current
    try:
        if version is None:
            raise _not_loaded(service)
        hit = version.precomputed(user_id, k) if exclude_seen else None
        if hit is None and version.searches_inline:
            hit = version.recommend(user_id, k, exclude_seen, fallback)
        if hit is None:
            hit = await pool.run(version.recommend, user_id, k, exclude_seen, fallback)
        return 200, _encode(hit)
    except Exception as exc:  # a query that cannot be answered: its status and message
        err = as_api_error(exc)
        return err.status, _error_body(err.status, err.message, **err.extra)


async def similar_answer(service: Service, pool: WorkerPool, k: int, item_id: int | None, title: str | None, mode: str | None) -> tuple[int, bytes]:
    """``GET /similar``'s status and body: an item id's neighbours on the loop (one index search), a title's in the thread pool."""
    version = service.current
    try:
        if version is None:
            raise _not_loaded(service)
        if item_id is not None and mode is None:
            body = version.similar(k, item_id, None, None)
        else:
            body = await pool.run(version.similar, k, item_id, title, mode)
        return 200, _encode(body)
    except Exception as exc:
        err = as_api_error(exc)
        return err.status, _error_body(err.status, err.message, **err.extra)


_DECIMAL = re.compile(rb"-?[0-9]{1,18}")
_BOOLS = {b"true": True, b"1": True, b"false": False, b"0": False}


def plain_query(query: bytes, ints: tuple[bytes, ...], required: bytes, bools: tuple[bytes, ...] = (), choices: dict[bytes, tuple[bytes, ...]] | None = None):
    """The parameters of a query string in the plain form (``user_id=1&k=10``), or None for any other form.

    Decimal ``ints`` (``k`` within 1..MAX_K), ``true``/``false``/``1``/``0`` ``bools``, ``choices``
    among fixed values; None when a parameter is unknown, repeated, escaped, out of range or
    malformed, or ``required`` is missing: FastAPI then parses the request and says what is wrong.
    """
    got: dict[str, Any] = {}
    if query:
        for part in query.split(b"&"):
            key, _, value = part.partition(b"=")
            name = key.decode("latin-1")
            if name in got:
                return None
            if key in ints:
                if not _DECIMAL.fullmatch(value):
                    return None
                got[name] = int(value)
            elif key in bools:
                flag = _BOOLS.get(value.lower())
                if flag is None:
                    return None
                got[name] = flag
            elif choices and key in choices and value in choices[key]:
                got[name] = value.decode()
            else:
                return None
    if required.decode() not in got or not 1 <= got.get("k", 10) <= MAX_K:
        return None
    return got


#: the plain forms the hot path answers (``plain_query``'s keywords)
RECOMMEND_QUERY: dict[str, Any] = {"ints": (b"user_id", b"k"), "required": b"user_id", "bools": (b"exclude_seen",), "choices": {b"fallback": (b"popular",)}}
SIMILAR_QUERY: dict[str, Any] = {"ints": (b"item_id", b"k"), "required": b"item_id"}


class HotPath:
    """ASGI middleware: ``GET /recommend`` and ``GET /similar?item_id=`` in their plain form, answered before FastAPI's routing.

    The same answers as the routes (``recommend_answer`` / ``similar_answer``, see the module
    docstring), without the framework's per-request cost; every other request passes through.
    """

    def __init__(self, app, service: Service, pool: WorkerPool) -> None:
        self.app, self.service, self.pool = app, service, pool

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path = scope["path"]
            if path == "/recommend":
                q = plain_query(scope["query_string"], **RECOMMEND_QUERY)
                if q is not None:
                    status, body = await recommend_answer(self.service, self.pool, q["user_id"], q.get("k", 10), q.get("exclude_seen", True), q.get("fallback"))
                    return await self._send(send, status, body)
            elif path == "/similar":
                q = plain_query(scope["query_string"], **SIMILAR_QUERY)
                if q is not None:
                    status, body = await similar_answer(self.service, self.pool, q.get("k", 10), q["item_id"], None, None)
                    return await self._send(send, status, body)
        await self.app(scope, receive, send)

    @staticmethod
    async def _send(send, status: int, body: bytes) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def create_app(service: Service) -> FastAPI:
    """The FastAPI app over ``service`` (started and stopped with the app's lifespan)."""
    from contextlib import asynccontextmanager

    pool = WorkerPool(WORKER_THREADS)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        pool.start()
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="recflow api",
        description="Recommendations from the champion (or a named run) of a recflow pipeline; the served version follows the champion alias.",
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry asks the global providers on every request (25 us); recflow exports no traces
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.service = service
    app.add_middleware(HotPath, service=service, pool=pool)

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
            raise _not_loaded(service)
        return version

    async def answer(fn, *args) -> Response:
        try:
            return _json(await pool.run(fn, *args))
        except Exception as exc:  # a query that cannot be answered: its status and message
            raise as_api_error(exc) from None

    def raw(answered: tuple[int, bytes]) -> Response:
        return Response(answered[1], status_code=answered[0], media_type=JSON)

    @app.get("/recommend", response_model=Recommendation, summary="top-k items a user has not rated")
    async def recommend(
        user_id: int = Query(..., description="the user's id in the dataset"),
        k: int = Query(10, ge=1, le=MAX_K),
        exclude_seen: bool = Query(True, description="leave out what the user rated anywhere in the split"),
        fallback: Literal["popular"] | None = Query(None, description="'popular': unknown and cold users get the most popular items"),
    ) -> Response:
        return raw(await recommend_answer(service, pool, user_id, k, exclude_seen, fallback))

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
        return raw(await similar_answer(service, pool, k, item_id, title, mode))

    @app.get("/health", summary="ready once a version is loaded (503 before)")
    async def health() -> Response:
        body = service.health()
        return _json(body, 200 if body["status"] == "ready" else 503)

    @app.get("/metadata", summary="what is served: dataset, model, version, run, protocol, metrics with CIs, trained at")
    async def metadata() -> Response:
        return _json({**served().metadata(), "health": service.health()})

    return app
