"""The sampling stage's files: how its outputs are written, read back, and matched to a model's needs.

A sample file is Parquet with JSON metadata (the params that made it and a fingerprint of the
train part), so a model handed the stage's folder can tell whether a file was made from its
own train data with its own settings (``load_matching``) and otherwise recomputes, with a
warning naming the difference. Kept apart from the samplers (``recflow.prep.sampling``): these
functions change with the file format, those with the sampling maths.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recflow.prep.interactions import Interactions
from recflow.prep.sampling import NEGATIVE_KINDS

SAMPLE_FILES = {
    "negatives": "negatives.parquet",
    "triplets": "triplets.parquet",
    "sequences": "sequences.parquet",
    "walks": "walks.parquet",
}
_META_KEY = b"recflow"


def train_fingerprint(train: Interactions) -> str:
    """A short hash of the train interactions and index sizes: ties a sample file to its split."""
    h = hashlib.blake2b(digest_size=12)
    h.update(np.array([train.n_users, train.n_items, len(train)], dtype=np.int64).tobytes())
    for a, dt in ((train.user_idx, np.int32), (train.item_idx, np.int32), (train.ratings, np.float32), (train.timestamps, np.int64)):
        h.update(np.ascontiguousarray(a, dtype=dt).tobytes())
    return h.hexdigest()


def _write(table: pa.Table, path: Path, meta: dict[str, Any]) -> Path:
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), _META_KEY: json.dumps(meta).encode()})
    pq.write_table(table, path)
    return path


def write_samples(
    out_dir: str | Path,
    *,
    train: Interactions | None = None,
    negatives: pd.DataFrame | None = None,
    triplets: pd.DataFrame | None = None,
    sequences: list[np.ndarray] | None = None,
    walks: np.ndarray | None = None,
    params: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Path]:
    """Write the given outputs as ``SAMPLE_FILES`` under ``out_dir``; returns {output: path}.

    Each file carries JSON metadata (``read_meta``): ``params[output]`` (the arguments that made it,
    e.g. ``{"min_rating": 4.0}``) and, when ``train`` is given, ``train_fingerprint(train)``, so a
    model can refuse samples made from other data or with other settings (``load_matching``).
    ``sequences.parquet``: ``user_idx`` int32 + ``item_idx`` list<int32> (one row per list entry).
    ``walks.parquet``: ``walk`` fixed_size_list<int32>[walk_length] (``-1`` = padding).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = params or {}
    base = {"train_fingerprint": train_fingerprint(train)} if train is not None else {}
    written: dict[str, Path] = {}

    def meta(name: str) -> dict[str, Any]:
        return {"output": name, **base, "params": params.get(name, {})}

    if negatives is not None:
        t = pa.Table.from_pandas(negatives[["user_idx", "item_idx", "kind"]], preserve_index=False)
        written["negatives"] = _write(t, out_dir / SAMPLE_FILES["negatives"], meta("negatives"))
    if triplets is not None:
        t = pa.Table.from_pandas(triplets[["user_idx", "pos_idx", "neg_idx"]].astype(np.int32), preserve_index=False)
        written["triplets"] = _write(t, out_dir / SAMPLE_FILES["triplets"], meta("triplets"))
    if sequences is not None:
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        flat = np.concatenate([np.asarray(s, dtype=np.int32) for s in sequences]) if len(sequences) else np.empty(0, np.int32)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        lists = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(flat, pa.int32()))
        t = pa.table({"user_idx": pa.array(np.arange(len(sequences), dtype=np.int32)), "item_idx": lists})
        written["sequences"] = _write(t, out_dir / SAMPLE_FILES["sequences"], meta("sequences"))
    if walks is not None:
        w = np.ascontiguousarray(walks, dtype=np.int32)
        if w.ndim != 2:
            raise ValueError(f"walks must be 2-D, got shape {w.shape}")
        arr = pa.FixedSizeListArray.from_arrays(pa.array(w.reshape(-1), pa.int32()), w.shape[1])
        t = pa.table({"walk": arr})
        m = meta("walks")
        m["walk_length"] = int(w.shape[1])
        written["walks"] = _write(t, out_dir / SAMPLE_FILES["walks"], m)
    return written


def _path(path: str | Path, name: str) -> Path:
    p = Path(path)
    return p / SAMPLE_FILES[name] if p.is_dir() else p


def read_meta(path: str | Path) -> dict[str, Any]:
    """The recflow metadata of a sample file ({} when it has none)."""
    md = pq.read_schema(path).metadata or {}
    return json.loads(md[_META_KEY]) if _META_KEY in md else {}


def read_negatives(path: str | Path) -> pd.DataFrame:
    """``negatives.parquet`` (a file, or the folder holding it) as written by ``write_samples``."""
    t = pq.read_table(_path(path, "negatives"))
    return pd.DataFrame(
        {
            "user_idx": t.column("user_idx").to_numpy().astype(np.int32),
            "item_idx": t.column("item_idx").to_numpy().astype(np.int32),
            "kind": pd.Categorical(t.column("kind").to_pandas().astype(str), categories=list(NEGATIVE_KINDS)),
        }
    )


def read_triplets(path: str | Path) -> pd.DataFrame:
    t = pq.read_table(_path(path, "triplets"))
    return pd.DataFrame({c: t.column(c).to_numpy().astype(np.int32) for c in ("user_idx", "pos_idx", "neg_idx")})


def read_sequences(path: str | Path) -> list[np.ndarray]:
    t = pq.read_table(_path(path, "sequences"))
    col = t.column("item_idx").combine_chunks()
    offsets = col.offsets.to_numpy().astype(np.int64)
    flat = col.values.to_numpy(zero_copy_only=False).astype(np.int32)
    flat = flat[offsets[0] : offsets[-1]]
    return np.split(flat, offsets[1:-1] - offsets[0])


def read_walks(path: str | Path) -> np.ndarray:
    p = _path(path, "walks")
    t = pq.read_table(p)
    col = t.column("walk").combine_chunks()
    width = col.type.list_size
    flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.int32)
    return flat.reshape(-1, width) if width else np.empty((len(col), 0), np.int32)


_READERS = {"negatives": read_negatives, "triplets": read_triplets, "sequences": read_sequences, "walks": read_walks}


def load_matching(samples: str | Path | None, name: str, train: Interactions, expected: dict[str, Any]):
    """Precomputed output ``name`` from the folder ``samples`` when it fits, else ``None``.

    It fits when the file exists, its recorded train fingerprint (if any) is ``train``'s, and every
    key of ``expected`` that its recorded params hold has the expected value. A file that exists
    but does not fit is ignored with a ``UserWarning`` naming the difference (the caller recomputes).
    """
    if samples is None:
        return None
    path = Path(samples) / SAMPLE_FILES[name]
    if not path.is_file():
        return None
    meta = read_meta(path)
    fp = meta.get("train_fingerprint")
    if fp is not None and fp != train_fingerprint(train):
        warnings.warn(f"{path} was made from other train data; recomputing", UserWarning, stacklevel=3)
        return None
    recorded = dict(meta.get("params", {}))
    if "walk_length" in meta:
        recorded.setdefault("walk_length", meta["walk_length"])
    diff = {k: (recorded[k], v) for k, v in expected.items() if k in recorded and recorded[k] != v}
    if diff:
        warnings.warn(f"{path} was made with other settings {diff} (recorded, wanted); recomputing", UserWarning, stacklevel=3)
        return None
    return _READERS[name](path)
