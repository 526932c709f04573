"""The index slice of a run config: which ANN kinds are built and what they are tuned to reach."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from recflow.utils.config import Strict

IndexKind = Literal["flat", "ivf_flat", "hnsw", "ivf_pq", "hnswlib"]


class IndexConfig(Strict):
    """ANN indexes over each model's embeddings, tuned against exact search (``recflow.retrieval.index``)."""

    kinds: list[IndexKind] = Field(["flat", "ivf_flat", "hnsw", "ivf_pq", "hnswlib"], min_length=1)
    target_recall: float = Field(0.99, gt=0, le=1, description="recall@k against exact search each index is tuned to reach")
    k: int = Field(10, gt=0, description="the k of the tuned recall@k")
    exact_below: int = Field(20_000, ge=0, description="spaces with fewer vectors are served by the exact index")
    n_queries: int = Field(1000, ge=4, description="queries sampled from the vectors: half tune, half held out for the report")
    latency_queries: int = Field(200, gt=0, description="single queries timed per setting")
    hnsw_m: list[int] = Field([16, 32], min_length=1, description="HNSW links per node tried (hnsw and hnswlib)")
    ef_construction: int = Field(200, gt=0)
    ef_search: list[int] = Field([16, 32, 64, 128, 256, 512], min_length=1)
    nlist: int | None = Field(None, gt=0, description="IVF cells; default 4 sqrt(n), at most n / 39")
    nprobe: list[int] = Field([1, 2, 4, 8, 16, 32, 64, 128], min_length=1)
    pq_k_factor: list[int] = Field([1, 2, 4, 8, 16, 32, 64], min_length=1, description="IVF-PQ: candidates re-ranked = k x k_factor")
    pq_refine: list[Literal["none", "sq8", "fp16", "flat"]] = Field(
        ["fp16", "flat"], min_length=1, description="IVF-PQ: the copies candidates are re-ranked by, tried in order until one reaches the target"
    )
    min_ivf_vectors: int = Field(1000, gt=0, description="IVF kinds are skipped below this many vectors")
    build_threads: int = Field(1, gt=0, description="1: bitwise-reproducible graphs")
    seed: int = 0
