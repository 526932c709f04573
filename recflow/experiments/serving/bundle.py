"""A run's best model as an MLflow pyfunc bundle: the very files the CLI serves from, packaged.

The bundle holds the catalogue, the index, the model files when recommendations need the model,
and ``bundle.json`` (which models answer); its code is ``recflow/experiments/pyfunc.py``, logged as
"models from code", so nothing is pickled. Stage folders are content-addressed, so their paths
identify a bundle (``bundle_fingerprint``): the registry recognises a bundle it already holds.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

PYFUNC_NAME = "serving"
PYFUNC_FILE = Path(__file__).parents[1] / "pyfunc.py"


def serving_signature():
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("long", "user_id", required=False), ColSpec("string", "title", required=False)])
    outputs = Schema(
        [
            ColSpec("long", "query_row"),
            ColSpec("string", "query"),
            ColSpec("long", "rank"),
            ColSpec("long", "item_id"),
            ColSpec("string", "title"),
            ColSpec("double", "score"),
            ColSpec("string", "model"),
        ]
    )
    params = ParamSchema([ParamSpec("k", "long", 10), ParamSpec("mode", "string", ""), ParamSpec("fallback", "string", "")])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def _requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("recflow", "mlflow", "numpy", "pandas", "pyarrow", "scipy", "faiss-cpu", "hnswlib"):
        try:
            out.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:
            out.append(dist)
    return out


def bundle_fingerprint(sources: dict[str, Path | None], info: dict[str, Any], root: Path) -> str:
    """Stage folders are content-addressed, so their paths (and the models served) identify a bundle."""
    from recflow.runtime.store import hash_parts

    paths = {k: str(v.relative_to(root)) if v is not None else None for k, v in sources.items()}
    return hash_parts(paths, info["recommend_model"], info["similar_model"])[:20]


def log_pyfunc(sources: dict[str, Path | None], info: dict[str, Any]) -> Any:
    """Log the bundle into the model's nested run as a pyfunc (registered by the caller, silently)."""
    import os

    import mlflow
    import pandas as pd

    from recflow.retrieval.search import Catalogue

    users = Catalogue(sources["catalogue"]).user_ids
    example = pd.DataFrame({"user_id": users[:1].astype("int64")})
    quiet = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    saved = {k: os.environ.get(k) for k in quiet}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(quiet)
        try:
            bundle = Path(tmp) / "bundle.json"
            bundle.write_text(json.dumps(info, indent=2, default=str))
            artifacts = {"bundle": str(bundle), **{k: str(v) for k, v in sources.items() if v is not None}}
            with mlflow.start_run(run_id=info["model_run_id"]):
                return mlflow.pyfunc.log_model(
                    name=PYFUNC_NAME,
                    python_model=str(PYFUNC_FILE),
                    artifacts=artifacts,
                    signature=serving_signature(),
                    input_example=example,
                    pip_requirements=_requirements(),
                    metadata={"recflow": info},
                )
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
