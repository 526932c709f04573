"""``recflow``: one command line for the pipeline. Heavy imports happen inside commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="MovieLens ratings to tracked recommenders, as a cached Prefect DAG.")


@app.command()
def run(
    config: list[Path] = typer.Option([], "--config", "-c", help="YAML config (default: configs/default.yaml if present); "
                                      "repeat to merge overlays, later files winning (e.g. a `recflow tune` overlay)"),
    set_: list[str] = typer.Option([], "--set", help="override a config key: key=value (models.<name>.<param>=value)"),
    refresh: bool = typer.Option(False, "--refresh", help="rerun every task and rewrite its cache (the weekly rebuild)"),
) -> None:
    """Run the pipeline: ingest, split, features, train and evaluate every model, log to MLflow."""
    from recflow.config import ConfigError, load_config

    if not config and Path("configs/default.yaml").exists():
        config = [Path("configs/default.yaml")]
    try:
        cfg = load_config(config, set_)
    except ConfigError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None

    from recflow.store import artifacts_root

    root = artifacts_root()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline: no telemetry calls
    from flows.pipeline import run_pipeline

    try:
        paths = [str(p) for p in config]
        result = run_pipeline(paths[0] if len(paths) == 1 else (paths or None), set_, root=root, refresh=refresh)
    except Exception as exc:  # the flow's own failure message is the useful part
        typer.secho(f"pipeline failed: {type(exc).__name__}: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    print_summary(cfg, result)


def print_summary(cfg, result: dict) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    metrics = result["metrics"]
    ks = sorted({int(k.rsplit("_at_", 1)[1]) for m in metrics.values() for k in m if k.startswith("recall_at_")})
    columns = [("rmse", "RMSE")] + [(f"{name}_at_{k}", f"{label}@{k}") for k in ks for name, label in (("recall", "R"), ("ndcg", "N"))]
    cold = max((int(m.get("n_cold_test_users", 0)) for m in metrics.values()), default=0)
    caption = "R@k recall, N@k NDCG; the other metrics are in MLflow"
    if cold:
        caption += f"\nusers: test users ranked; {cold} more have no training ratings (not rankable)"
    table = Table(title=f"{cfg.dataset.name} - protocol {result['protocol']}", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
                  caption=caption)
    table.add_column("model", no_wrap=True)
    for _, label in columns:
        table.add_column(label, justify="right")
    table.add_column("users", justify="right")
    for model, values in metrics.items():
        cells = ["-" if values.get(key) is None else f"{values[key]:.4f}" for key, _ in columns]
        table.add_row(model, *cells, str(values.get("n_eval_users", "-")))
    console.print(table)
    t = result["tracking"]
    console.print(f"MLflow: run {t['run_id']} in experiment '{t['experiment']}' at {t['tracking_uri']}")
    if t["tracking_uri"].startswith("sqlite:"):
        console.print(f"  browse: mlflow ui --backend-store-uri {t['tracking_uri']}")
    from recflow.serving import summary_lines

    for line in summary_lines(result.get("serving") or {}):
        console.print(line, highlight=False)
    print(f"tasks: {result['tasks']['ran']} ran, {result['tasks']['cached']} cached")


@app.command()
def synth(
    out: Path = typer.Argument(..., help="folder to write the dataset into"),
    ratings: int = typer.Option(100_000, help="number of ratings"),
    users: int = typer.Option(1_000, help="number of users"),
    items: int = typer.Option(2_000, help="number of items"),
    rank: int = typer.Option(8, help="rank of the planted preference structure"),
    format: str = typer.Option("ml-25m", help="ml-25m (CSV), ml-1m (.dat) or ml-100k (u.data)"),
    seed: int = typer.Option(0),
) -> None:
    """Write a synthetic dataset in a real MovieLens format (up to ML-25M scale)."""
    import time

    from recflow.data import write_synthetic

    started = time.perf_counter()
    write_synthetic(out, n_users=users, n_items=items, n_ratings=ratings, rank=rank, format=format, seed=seed)
    typer.echo(f"wrote {ratings:,} ratings ({format} format) to {out} in {time.perf_counter() - started:.1f} s")


from recflow.retrieval_cli import recommend, similar  # noqa: E402  (typer only; the commands import the rest)

app.command()(recommend)
app.command()(similar)

from recflow.ops_cli import compare, serve, ui  # noqa: E402  (typer only; the commands import the rest)

app.command()(compare)
app.command()(ui)
app.command()(serve)

from recflow.tune_cli import tune  # noqa: E402  (typer only; the command imports the rest)

app.command()(tune)


def main() -> None:  # pragma: no cover
    app(prog_name="recflow")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
