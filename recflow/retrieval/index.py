"""Nearest-neighbour indexes over embeddings: build, tune against exact search, save natively.

Cosine similarity by normalisation: vectors and queries are L2-normalised, every index ranks by
inner product, and a returned score is the cosine. Five kinds:

``flat``      ``faiss.IndexFlatIP``: exact; the ground truth the others are measured against.
``ivf_flat``  ``faiss.IndexIVFFlat``: k-means cells (``nlist``), ``nprobe`` cells searched.
``hnsw``      ``faiss.IndexHNSWFlat``: graph of ``M`` links per node, ``efSearch`` candidates.
``ivf_pq``    ``faiss.IndexIVFPQ`` (codes of ``d/4`` bytes) wrapped in ``faiss.IndexRefine``: the
              ``k * k_factor`` best by PQ are re-ranked by a finer copy of the vectors. ``pq_refine``
              lists the copies tried in order, a later one only when the earlier fall short: fp16
              (half the bytes of float32) first, then float32 (``flat``: exact re-ranking, for
              spaces whose neighbours differ by less than fp16 resolves, e.g. item2vec's);
              ``none`` keeps only the PQ codes.
``hnswlib``   ``hnswlib.Index(space="ip")``: the same graph search as ``hnsw``, another library.

Tuning (``tune_space``): queries are split in half. On the first half each kind walks its grid
(build variants x search settings, search settings cheapest first, stopping once recall is
near 1), measuring recall@k against exact search and single-query latency; the kind keeps the
setting with the highest queries/s among those reaching halfway from ``target_recall`` to 1
(0.995 for 0.99: headroom for the held-out estimate), else among those reaching the target,
else its most accurate one. That setting is then measured on the held-out half, and those numbers are what
is reported and what picks the served kind: exact below ``exact_below`` vectors (a single exact
query there costs well under a millisecond, and exact has no recall to lose), else the fastest
kind whose held-out recall reaches the target.

Recall counts ties as hits: a returned row is correct when its true cosine is at least the k-th
exact cosine (minus 1e-6), so duplicate vectors cannot make a perfect answer look wrong.
Queries/s is measured one query at a time (the serving pattern), with one search thread.

Saved natively, never pickled: ``faiss.write_index`` (``<kind>.faiss``) and hnswlib's
``save_index`` (``hnswlib.bin``); ``IndexSpec`` (JSON) holds what is needed to read them back.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recflow.evaluation.plots import new_figure, safe_plot
from recflow.utils.numeric import normalise_rows as normalise
from recflow.utils.progress import track

KINDS = ("flat", "ivf_flat", "hnsw", "ivf_pq", "hnswlib")
# one colour per kind in the recall-vs-QPS plot (matplotlib's tab10, which has more than len(KINDS))
KIND_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
HNSWLIB_FILE = "hnswlib.bin"
#: tuning stops raising a search parameter once recall reaches this (more only costs time)
STOP_RECALL = 0.999

_faiss_lock = threading.RLock()
_pinned_threads: int | None = None


# ----------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """faiss's OpenMP thread count for a block (process-wide, so held under a lock); no lock where ``pin_faiss_threads(n)`` set it."""
    import faiss

    if _pinned_threads == max(int(n), 1):
        yield
        return
    with _faiss_lock:
        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(max(int(n), 1))
        try:
            yield
        finally:
            faiss.omp_set_num_threads(before)


def pin_faiss_threads(n: int) -> None:
    """Set faiss's OpenMP thread count for the whole process (``recflow api``: 1, so a query never wakes
    an OpenMP team that spins beside the event loop); ``faiss_threads(n)`` then neither locks nor resets
    it, so queries in several threads search side by side instead of queueing on the lock."""
    global _pinned_threads
    import faiss

    with _faiss_lock:
        faiss.omp_set_num_threads(max(int(n), 1))
        _pinned_threads = max(int(n), 1)


def default_nlist(n: int) -> int:
    """4 sqrt(n) cells, but at least 39 training points per cell (faiss's own minimum advice)."""
    return int(max(1, min(round(4 * np.sqrt(n)), n // 39)))


def pq_subquantizers(dim: int) -> int:
    """The largest divisor of ``dim`` that is at most ``dim / 4``: one code byte per 4+ dimensions."""
    for m in range(max(dim // 4, 1), 0, -1):
        if dim % m == 0:
            return m
    return 1


# ----------------------------------------------------------------------------- one index


@dataclass
class IndexSpec:
    """What a saved index is: enough to load and search it again (JSON-able)."""

    kind: str
    dim: int
    n: int
    build: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)
    file: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class VectorIndex:
    """One built index over unit vectors: ``search`` gives row numbers and cosines."""

    def __init__(self, spec: IndexSpec, impl: Any) -> None:
        self.spec = spec
        self.impl = impl
        if spec.search:
            self.configure(**spec.search)

    # -- building ---------------------------------------------------------------------
    @classmethod
    def build(cls, kind: str, vectors: np.ndarray, seed: int = 0, threads: int = 1, **build: Any) -> VectorIndex:
        """Build ``kind`` over ``vectors`` (unit rows). ``build``: nlist, M, ef_construction, pq_m, refine."""
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; known: {KINDS}")
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        n, dim = x.shape
        if n == 0:
            raise ValueError("cannot index zero vectors")
        if kind == "hnswlib":
            import hnswlib

            impl = hnswlib.Index(space="ip", dim=dim)
            impl.init_index(max_elements=n, M=int(build["M"]), ef_construction=int(build["ef_construction"]), random_seed=int(seed))
            impl.add_items(x, np.arange(n), num_threads=int(threads))
            return cls(IndexSpec(kind, dim, n, dict(build)), impl)

        import faiss

        with faiss_threads(threads):
            impl = faiss.index_factory(dim, _factory_string(kind, build), faiss.METRIC_INNER_PRODUCT)
            if kind == "hnsw":
                impl.hnsw.efConstruction = int(build["ef_construction"])
            if kind in ("ivf_flat", "ivf_pq"):
                cls._prepare_training(impl, seed)
                impl.train(_training_sample(x, int(build["nlist"]), seed))
            impl.add(x)
        return cls(IndexSpec(kind, dim, n, dict(build)), impl)

    #: kinds whose built index takes new rows in place (hnswlib: ``resize_index`` + ``add_items``, an existing
    #: label replaced; faiss flat and IVF-flat: ``add`` / ``remove_ids``); faiss's HNSW cannot drop a node and IVF-PQ's refine
    #: store takes no ids, so those rebuild
    EXTENDABLE = ("flat", "ivf_flat", "hnswlib")

    def extend(self, vectors: np.ndarray, threads: int = 1, atol: float = 0.0) -> dict[str, Any]:
        """Grow this index, built over the first ``spec.n`` rows, to every row of ``vectors`` (unit rows), in place.

        A nightly index continues yesterday's instead of rebuilding: rows ``spec.n..`` are added (new items) and
        old rows whose vector moved by more than ``atol`` (max abs difference; a warm fit moves some) are
        replaced, so the index answers over exactly ``vectors``, as one built from scratch would up to the
        kind's own recall. IVF cells keep yesterday's k-means centroids (new rows go to the nearest cell),
        which is what lets the add be cheap; the weekly cold rebuild retrains them. Returns the record of what
        was done (``added``, ``updated``, ``n``); raises ``ValueError`` for a kind that cannot continue
        (``EXTENDABLE``) or another dimension, where the caller rebuilds.
        """
        kind, n_old = self.spec.kind, self.spec.n
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if kind not in self.EXTENDABLE:
            raise ValueError(f"a {kind} index cannot take new rows in place; rebuild it")
        if x.ndim != 2 or x.shape[1] != self.spec.dim or len(x) < n_old:
            raise ValueError(f"cannot extend a {self.spec.dim}-dim index over {n_old} rows with vectors of shape {x.shape}")
        old = self._vectors(n_old)
        moved = np.flatnonzero(np.abs(old - x[:n_old]).max(axis=1) > atol) if n_old else np.zeros(0, np.int64)
        fresh = np.arange(n_old, len(x))
        if kind == "hnswlib":
            if len(x) > self.impl.get_max_elements():
                self.impl.resize_index(len(x))
            rows = np.concatenate([moved, fresh])
            if len(rows):
                self.impl.add_items(x[rows], rows, num_threads=int(threads))  # an existing label's vector is replaced
        else:
            import faiss

            with faiss_threads(threads):
                if kind == "flat":  # ids are positions: replace moved rows by rewriting the flat store
                    if len(moved):
                        self.impl.reset()
                        self.impl.add(x)
                    else:
                        self.impl.add(x[n_old:])
                else:
                    ivf = faiss.extract_index_ivf(self.impl)
                    ivf.make_direct_map(False)
                    if len(moved):
                        self.impl.remove_ids(faiss.IDSelectorBatch(moved.astype(np.int64)))
                    rows = np.concatenate([moved, fresh]).astype(np.int64)
                    if len(rows):
                        self.impl.add_with_ids(x[rows], rows)
        self.spec.n = len(x)
        return {"continued": True, "added": int(len(fresh)), "updated": int(len(moved)), "n": int(len(x))}

    def _vectors(self, n: int) -> np.ndarray:
        """The first ``n`` stored vectors (hnswlib ``get_items``; faiss ``reconstruct_n``, with a direct map for IVF)."""
        if not n:
            return np.zeros((0, self.spec.dim), np.float32)
        if self.spec.kind == "hnswlib":
            return np.asarray(self.impl.get_items(np.arange(n)), dtype=np.float32)
        import faiss

        if self.spec.kind != "flat":
            faiss.extract_index_ivf(self.impl).make_direct_map(True)
        return np.asarray(self.impl.reconstruct_n(0, n), dtype=np.float32)

    @staticmethod
    def _prepare_training(impl: Any, seed: int) -> None:
        """Seeded k-means; no polysemous code ordering (the factory's default, 10x the training time, used only by Hamming search)."""
        import faiss

        ivf = faiss.downcast_index(faiss.extract_index_ivf(impl))
        ivf.cp.seed = int(seed)
        if isinstance(ivf, faiss.IndexIVFPQ):
            ivf.do_polysemous_training = False
            ivf.pq.cp.seed = int(seed)
            ivf.pq.cp.min_points_per_centroid = 1  # a few thousand vectors train 256 codes well enough; no warning

    # -- searching --------------------------------------------------------------------
    def configure(self, **search: Any) -> VectorIndex:
        """Set search parameters: ``nprobe`` (IVF), ``ef_search`` (HNSW, hnswlib), ``k_factor`` (IVF-PQ re-rank)."""
        kind = self.spec.kind
        if kind in ("ivf_flat", "ivf_pq") and "nprobe" in search:
            import faiss

            faiss.extract_index_ivf(self.impl).nprobe = int(search["nprobe"])
        if kind == "ivf_pq" and "k_factor" in search and hasattr(self.impl, "k_factor"):
            self.impl.k_factor = float(search["k_factor"])
        if kind == "hnsw" and "ef_search" in search:
            self.impl.hnsw.efSearch = int(search["ef_search"])
        if kind == "hnswlib" and "ef_search" in search:
            self.impl.set_ef(int(search["ef_search"]))
        self.spec.search = {**self.spec.search, **search}
        return self

    def search(self, queries: np.ndarray, k: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows and cosines per query (unit rows), best first; ``-1`` / ``-inf`` pad a short answer."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k_eff = min(int(k), self.spec.n)
        rows = np.full((len(q), int(k)), -1, dtype=np.int64)
        scores = np.full((len(q), int(k)), -np.inf, dtype=np.float32)
        if k_eff < 1 or len(q) == 0:
            return rows, scores
        if self.spec.kind == "hnswlib":
            self.impl.set_ef(max(int(self.spec.search.get("ef_search", 10)), k_eff))
            labels, dist = self.impl.knn_query(q, k=k_eff, num_threads=int(threads))
            rows[:, :k_eff] = labels
            scores[:, :k_eff] = 1.0 - dist
        else:
            with faiss_threads(threads):
                sims, labels = self.impl.search(q, k_eff)
            rows[:, :k_eff] = labels
            scores[:, :k_eff] = np.where(labels >= 0, sims, -np.inf)
        return rows, scores

    # -- persistence --------------------------------------------------------------------
    def save(self, folder: Path) -> IndexSpec:
        """Write the index natively into ``folder``; returns the spec (with its file name) to keep."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        name = HNSWLIB_FILE if self.spec.kind == "hnswlib" else f"{self.spec.kind}.faiss"
        if self.spec.kind == "hnswlib":
            self.impl.save_index(str(folder / name))
        else:
            import faiss

            faiss.write_index(self.impl, str(folder / name))
        self.spec.file = name
        return self.spec

    @classmethod
    def load(cls, folder: Path, spec: IndexSpec | dict[str, Any]) -> VectorIndex:
        spec = spec if isinstance(spec, IndexSpec) else IndexSpec(**spec)
        path = Path(folder) / spec.file
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the {spec.kind} index file is missing")
        if spec.kind == "hnswlib":
            import hnswlib

            impl = hnswlib.Index(space="ip", dim=spec.dim)
            impl.load_index(str(path), max_elements=spec.n)
        else:
            import faiss

            impl = faiss.read_index(str(path))
        return cls(IndexSpec(**{**spec.to_json(), "search": dict(spec.search)}), impl)

    def nbytes(self) -> int:
        """Serialised size in bytes (what the file on disk and the index in memory hold)."""
        if self.spec.kind == "hnswlib":
            return int(self.impl.index_file_size())
        import faiss

        return int(faiss.serialize_index(self.impl).nbytes)


def _factory_string(kind: str, build: dict[str, Any]) -> str:
    """The ``faiss.index_factory`` description of a kind (the factory also owns sub-indexes safely)."""
    if kind == "flat":
        return "Flat"
    if kind == "hnsw":
        return f"HNSW{int(build['M'])},Flat"
    if kind == "ivf_flat":
        return f"IVF{int(build['nlist'])},Flat"
    refine = {"none": "", "flat": ",RFlat", "fp16": ",Refine(SQfp16)", "sq8": ",Refine(SQ8)"}[build.get("refine", "fp16")]
    return f"IVF{int(build['nlist'])},PQ{int(build['pq_m'])}x{int(build.get('nbits', 8))}{refine}"


def _training_sample(x: np.ndarray, nlist: int, seed: int) -> np.ndarray:
    """At most 64 points per cell and 256 x 64 for the PQ codebooks: more only slows k-means."""
    cap = max(64 * nlist, 256 * 64)
    if len(x) <= cap:
        return x
    rows = np.sort(np.random.default_rng(seed).choice(len(x), cap, replace=False))
    return np.ascontiguousarray(x[rows])


# ----------------------------------------------------------------------------- measuring


def exact_neighbours(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` rows and cosines (the reference every recall is computed against)."""
    flat = VectorIndex.build("flat", vectors)
    return flat.search(queries, k, threads=2)


def recall_at_k(found: np.ndarray, queries: np.ndarray, vectors: np.ndarray, truth_scores: np.ndarray) -> float:
    """Mean share of each query's exact top-k found, ties counted as hits (see module doc)."""
    k = truth_scores.shape[1]
    kth = truth_scores[:, k - 1 : k]
    valid_truth = np.isfinite(truth_scores).sum(axis=1)
    safe = np.where(found >= 0, found, 0)
    true_cos = np.einsum("qkd,qd->qk", vectors[safe], queries)
    hits = ((found >= 0) & (true_cos >= kth - 1e-6)).sum(axis=1)
    return float(np.mean(np.minimum(hits, valid_truth) / np.maximum(valid_truth, 1)))


def measure_latency(index: VectorIndex, queries: np.ndarray, k: int) -> dict[str, float]:
    """Single-query latency (p50 / p99 in ms) and queries/s over ``queries``, one search thread."""
    index.search(queries[:1], k)  # warm caches and lazy allocations
    times = np.empty(len(queries))
    for i in range(len(queries)):
        start = time.perf_counter()
        index.search(queries[i : i + 1], k)
        times[i] = time.perf_counter() - start
    return {
        "p50_ms": float(np.percentile(times, 50) * 1e3),
        "p99_ms": float(np.percentile(times, 99) * 1e3),
        "qps": float(len(times) / max(times.sum(), 1e-12)),
    }


# ----------------------------------------------------------------------------- tuning


@dataclass
class TuningGrid:
    """What ``tune_space`` tries; ``recflow.retrieval.config.IndexConfig`` carries the same fields."""

    kinds: tuple[str, ...] = KINDS
    target_recall: float = 0.99
    k: int = 10
    exact_below: int = 20_000
    n_queries: int = 1000
    latency_queries: int = 200
    hnsw_m: tuple[int, ...] = (16, 32)
    ef_construction: int = 200
    ef_search: tuple[int, ...] = (16, 32, 64, 128, 256, 512)
    nlist: int | None = None
    nprobe: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    pq_k_factor: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    pq_refine: tuple[str, ...] = ("fp16", "flat")
    min_ivf_vectors: int = 1000
    build_threads: int = 1
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: Any) -> TuningGrid:
        data = cfg.model_dump() if hasattr(cfg, "model_dump") else dict(cfg)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class KindResult:
    """One kind's tuned setting and its held-out measurements (or why it was skipped)."""

    kind: str
    build: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)
    recall: float = float("nan")
    qps: float = float("nan")
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    build_seconds: float = float("nan")
    bytes: int = 0
    target_reached: bool = False
    skipped: str | None = None
    #: every setting tried on the tuning queries: build, search, recall, qps, p50_ms
    curve: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        return {
            "ann_recall_at_k": self.recall,
            "qps": self.qps,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "build_seconds": self.build_seconds,
            "bytes": float(self.bytes),
        }

    def to_json(self, with_curve: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not with_curve:
            out.pop("curve")
        return out


@dataclass
class SpaceTuning:
    """Every kind's result over one set of vectors, the kind chosen and why."""

    n: int
    dim: int
    chosen: str
    reason: str
    results: dict[str, KindResult]
    indexes: dict[str, VectorIndex]


def _variants(kind: str, n: int, dim: int, grid: TuningGrid) -> list[tuple[dict, list[list[dict]]]]:
    """(build, search-setting ladders) pairs; each ladder is walked cheapest first."""
    nlist = min(int(grid.nlist or default_nlist(n)), n)
    if kind == "flat":
        return [({}, [[{}]])]
    if kind in ("hnsw", "hnswlib"):
        ladder = [{"ef_search": int(ef)} for ef in sorted(grid.ef_search)]
        return [({"M": int(m), "ef_construction": int(grid.ef_construction)}, [ladder]) for m in grid.hnsw_m]
    probes = sorted({int(p) for p in grid.nprobe if p <= nlist} | {nlist})
    if kind == "ivf_flat":
        return [({"nlist": nlist}, [[{"nprobe": p} for p in probes]])]
    out = []
    for refine in grid.pq_refine:
        factors = sorted({int(f) for f in grid.pq_k_factor}) if refine != "none" else [1]
        build = {"nlist": nlist, "pq_m": pq_subquantizers(dim), "nbits": 8, "refine": refine}
        out.append((build, [[{"nprobe": p, "k_factor": f} for p in probes] for f in factors]))
    return out


def _skip_reason(kind: str, n: int, grid: TuningGrid) -> str | None:
    if kind in ("ivf_flat", "ivf_pq") and n < grid.min_ivf_vectors:
        return f"{n} vectors < index.min_ivf_vectors={grid.min_ivf_vectors}: too few to train IVF cells"
    if kind == "ivf_pq" and n < 256:
        return f"{n} vectors: too few to train 256-centroid PQ codebooks"
    return None


def tune_kind(kind: str, vectors: np.ndarray, tune: tuple, held: tuple, grid: TuningGrid) -> tuple[VectorIndex | None, KindResult]:
    """Walk ``kind``'s grid on the tuning queries, keep the fastest setting reaching the target,
    and measure it on the held-out queries. ``tune`` / ``held``: (queries, exact top-k cosines)."""
    n, dim = vectors.shape
    result = KindResult(kind)
    reason = _skip_reason(kind, n, grid)
    if reason:
        result.skipped = reason
        return None, result
    k = min(grid.k, n)
    tune_q, tune_truth = tune
    lat_q = tune_q[: grid.latency_queries]
    variants = _variants(kind, n, dim, grid)
    aim = grid.target_recall + (1.0 - grid.target_recall) / 2  # headroom: held-out recall is a second, noisy estimate
    best: tuple | None = None  # ((tier, qps or recall), index, build, search, build_seconds)
    for build, ladders in variants:
        if kind == "ivf_pq" and best is not None and best[0][0] == 2:
            break  # re-rank variants are fallbacks, in order: a coarser one already reached the aim
        started = time.perf_counter()
        index = VectorIndex.build(kind, vectors, seed=grid.seed, threads=grid.build_threads, **build)
        build_seconds = time.perf_counter() - started
        for ladder in ladders:
            for search in ladder:
                index.configure(**search)
                rows, _ = index.search(tune_q, k, threads=2)
                recall = recall_at_k(rows, tune_q, vectors, tune_truth)
                timing = measure_latency(index, lat_q, k)
                result.curve.append({"build": build, "search": search, "recall": recall, **timing})
                tier = 2 if recall >= aim else 1 if recall >= grid.target_recall else 0
                score = (tier, timing["qps"] if tier else recall)
                if best is None or score > best[0]:
                    best = (score, index, dict(build), dict(search), build_seconds)
                if recall >= STOP_RECALL:
                    break
    assert best is not None
    _, index, build, search, build_seconds = best
    index.configure(**search)
    held_q, held_truth = held
    rows, _ = index.search(held_q, k, threads=2)
    result.build, result.search = build, search
    result.recall = recall_at_k(rows, held_q, vectors, held_truth)
    result.__dict__.update(measure_latency(index, held_q[: grid.latency_queries], k))
    result.build_seconds = build_seconds
    result.bytes = index.nbytes()
    result.target_reached = result.recall >= grid.target_recall
    return index, result


def split_queries(pool: np.ndarray, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of the (unit, non-zero) query pool cut in two: tuning half, held-out half."""
    pool = normalise(pool)
    pool = pool[np.linalg.norm(pool, axis=1) > 0]
    if len(pool) < 2:
        raise ValueError(f"need at least 2 non-zero query vectors, got {len(pool)}")
    rng = np.random.default_rng(seed)
    take = rng.permutation(len(pool))[: min(int(n_queries), len(pool))]
    half = len(take) // 2
    return pool[take[:half]], pool[take[half:]]


def tune_space(vectors: np.ndarray, queries: np.ndarray, grid: TuningGrid) -> SpaceTuning:
    """Tune every kind of ``grid.kinds`` over unit ``vectors`` with queries drawn from ``queries``."""
    vectors = normalise(vectors)
    n, dim = vectors.shape
    tune_q, held_q = split_queries(queries, grid.n_queries, grid.seed)
    k = min(grid.k, n)
    tune = (tune_q, exact_neighbours(vectors, tune_q, k)[1])
    held = (held_q, exact_neighbours(vectors, held_q, k)[1])
    results: dict[str, KindResult] = {}
    indexes: dict[str, VectorIndex] = {}
    with _faiss_lock:  # one tuning at a time: concurrent ones would time each other
        for kind in track(grid.kinds, desc=f"index tuning ({n} vectors)"):
            index, result = tune_kind(kind, vectors, tune, held, grid)
            results[kind] = result
            if index is not None:
                indexes[kind] = index
    chosen, reason = choose_kind(results, n, grid)
    return SpaceTuning(n, dim, chosen, reason, results, indexes)


def choose_kind(results: dict[str, KindResult], n: int, grid: TuningGrid) -> tuple[str, str]:
    """Exact below ``exact_below`` vectors, else the fastest kind reaching the target on held-out queries."""
    built = {k: r for k, r in results.items() if r.skipped is None}
    if not built:
        raise ValueError("no index kind could be built")
    target = grid.target_recall
    if "flat" in built and n < grid.exact_below:
        r = built["flat"]
        return "flat", (
            f"exact: {n} vectors < index.exact_below={grid.exact_below}, where exact search answers in {r.p50_ms:.3f} ms (p50) with nothing to lose in recall"
        )
    approx = {k: r for k, r in built.items() if k != "flat" and r.target_reached}
    if not approx:
        kind = "flat" if "flat" in built else max(built, key=lambda k: built[k].recall)
        return kind, f"no approximate kind reached recall@{grid.k} >= {target} on held-out queries; serving {kind}"
    reaching = {**approx, **({"flat": built["flat"]} if "flat" in built else {})}
    kind = max(reaching, key=lambda k: reaching[k].qps)
    r = reaching[kind]
    if kind == "flat":
        return kind, f"exact search ({r.qps:.0f} q/s) is faster than every approximate kind reaching recall@{grid.k} >= {target}"
    exact = f", exact {built['flat'].qps:.0f} q/s" if "flat" in built else ""
    return kind, (f"{kind}: the fastest kind reaching recall@{grid.k} >= {target} on held-out queries ({r.recall:.4f} at {r.qps:.0f} q/s{exact})")


# ----------------------------------------------------------------------------- plot


def _shade(color: str, i: int, n: int) -> tuple[float, float, float]:
    """The ``i``-th of ``n`` shades of ``color``: from the colour itself towards white (at most 60 % of the way)."""
    from matplotlib.colors import to_rgb

    mix = 0.6 * i / max(n - 1, 1)
    return tuple(c + (1.0 - c) * mix for c in to_rgb(color))  # type: ignore[return-value]


@safe_plot
def recall_qps_plot(results: dict[str, KindResult], path: Path, title: str = "", target: float | None = None) -> Path | None:
    """Recall@k against queries/s for every setting tried (tuning queries), one line per kind and build.

    One colour per index kind (fixed by its place in ``KINDS``, so a kind looks the same in every
    plot); the builds of one kind differ by line style and marker. Best-effort (``recflow.evaluation.plots``).
    """
    lines = [(r.kind, r.curve) for r in results.values() if r.curve]
    if not lines:
        return None
    fig = new_figure((6.5, 4))
    ax = fig.add_subplot()
    styles = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1, 1, 1)), "v")]
    for kind, curve in lines:
        color = KIND_COLORS[KINDS.index(kind) % len(KIND_COLORS)] if kind in KINDS else "black"
        groups: dict[str, list[dict]] = {}
        for point in curve:
            label = kind + "".join(f" {k}={v}" for k, v in point["build"].items() if k in ("M",))
            if "k_factor" in point["search"]:
                label += f" k_factor={point['search']['k_factor']}"
            groups.setdefault(label, []).append(point)
        for i, (label, points) in enumerate(groups.items()):
            linestyle, marker = styles[i % len(styles)]
            shade = _shade(color, i, len(groups))  # a kind's builds: its colour, darker to lighter, so seven ivf_pq lines differ
            ax.plot([p["recall"] for p in points], [p["qps"] for p in points], color=shade, linestyle=linestyle, marker=marker, markersize=3, label=label)
    if target is not None:
        ax.axvline(target, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("recall@k vs exact (tuning queries)")
    ax.set_ylabel("queries / s (single query)")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
