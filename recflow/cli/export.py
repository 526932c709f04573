"""``recflow export``: every warm user's top-K of the champion (or of any run) as partitioned Parquet.

The same content-addressed folder the pipeline's ``export`` task writes (``tasks/export.py``):
an export already there for these files and settings is reused, not rewritten.
"""

from __future__ import annotations

from typing import Optional

import typer

from recflow.cli.retrieval import DATASET_HELP, RUN_HELP, _default_dataset, _fail


def export(
    run: Optional[str] = typer.Option(None, "--run", help=RUN_HELP),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="a model of the champion's run (or of --run); default its best"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help=DATASET_HELP),
    k: int = typer.Option(100, "-k", "--k", min=1, max=10_000, help="items per user"),
    partitions: int = typer.Option(16, "--partitions", min=1, max=4096, help="Hive buckets: user_id mod partitions"),
) -> None:
    """Write every user's top-k (user_id, rank, item_id, score) to Parquet under the artifacts root."""
    from recflow.experiments.config import ExportConfig
    from recflow.experiments.serving.records import ServingNotFound
    from recflow.experiments.serving.resolve import resolve
    from recflow.runtime.store import artifacts_root
    from tasks.export import export_sources

    try:
        sources, info = resolve(dataset=dataset, run=run, model=model, default_dataset=_default_dataset())
    except ServingNotFound as exc:
        _fail(exc, 1)
    done = export_sources(sources, info, ExportConfig(k=k, partitions=partitions))
    meta = done.meta
    typer.echo(
        f"{meta['users']} users x top {meta['k']} of {meta['model']} ({info['served_from']}): {meta['rows']} rows in "
        f"{artifacts_root() / done.path / meta['path']} ({meta['partitioning']})"
    )
