"""``recflow``: one command line for the pipeline. Heavy imports happen inside commands."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperCommand

HELP = "Your interaction data (MovieLens, a Parquet / CSV log or a SQL table) to tracked, served recommenders, as a cached Prefect DAG."
app = typer.Typer(add_completion=False, no_args_is_help=True, help=HELP)


class OptionalDaskAddress(TyperCommand):
    """``--dask`` with or without a value: alone (last, or before another option) it means ``local``."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        args = list(args)
        for i, arg in enumerate(args):
            if arg == "--dask" and (i + 1 == len(args) or args[i + 1].startswith("-")):
                args.insert(i + 1, "local")
        return super().parse_args(ctx, args)


@app.command(cls=OptionalDaskAddress)
def run(
    config: list[Path] = typer.Option(
        [],
        "--config",
        "-c",
        help="YAML config (default: configs/default.yaml if present); repeat to merge overlays, later files winning (e.g. a `recflow tune` overlay)",
    ),
    set_: list[str] = typer.Option([], "--set", help="override a config key: key=value (models.<name>.<param>=value)"),
    refresh: bool = typer.Option(False, "--refresh", help="rerun every task and rewrite its cache (the weekly rebuild)"),
    dask: Optional[str] = typer.Option(
        None,
        "--dask",
        metavar="[ADDRESS]",
        help="run the tasks on Dask: alone, a LocalCluster of worker processes (config runner: n_workers, threads_per_worker); "
        "with tcp://host:8786, an existing `dask scheduler`",
    ),
) -> None:
    """Run the pipeline: ingest, split, features, train and evaluate every model, log to MLflow."""
    from recflow.experiments.config import ConfigError, load_config

    if not config and Path("configs/default.yaml").exists():
        config = [Path("configs/default.yaml")]
    try:
        cfg = load_config(config, set_)
        if dask not in (None, "local") and "://" not in dask:
            raise ConfigError(f"--dask {dask!r}: expected a scheduler address such as tcp://host:8786, or no value for a LocalCluster")
    except ConfigError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None

    from recflow.runtime.store import artifacts_root
    from recflow.utils import progress, quiet

    root = artifacts_root()
    _fail_fast_without_data(cfg, root)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline: no telemetry calls
    from recflow.runtime.interrupt import Interrupts
    from recflow.runtime.rootlock import RootLock
    from recflow.runtime.runlog import log_path
    from recflow.runtime.servers import ServerError, run_prefect_api

    paths = [str(p) for p in config]
    log_file = log_path(root, "+".join(p.stem for p in config) or "default")
    # Ctrl-C ends the process within seconds even while a model trains in a worker thread (recflow.runtime.interrupt)
    with Interrupts(f"interrupted: run stopped, it holds no lock on {root} (finished stages stay cached)", cleanups=[_stop_prefects_own_servers]) as interrupts:
        # a lost bucket lease ends the run at once (writes are fenced anyway: recflow.runtime.lease)
        RootLock.lost_handlers.append(lambda reason: interrupts.abort(f"run stopped: {reason}", LEASE_LOST_EXIT_CODE))
        try:
            # the root's OS lock before any Prefect server starts (recflow.runtime.rootlock; the flow re-enters it);
            # TensorFlow's and MLflow's own lines go to the run's log file, not to the terminal (recflow.utils.quiet);
            # $PREFECT_API_URL, else `recflow ui`'s server for this root, else an embedded one that dies with this run
            with RootLock(root).held(), quiet.quiet_libraries(log_file), progress.heartbeat(), run_prefect_api(root) as prefect_api:
                from flows.pipeline import failure_lines, run_pipeline

                prefect_api.ready()
                result = run_pipeline(paths[0] if len(paths) == 1 else (paths or None), set_, root=root, refresh=refresh, log_file=log_file, dask=dask)
        except KeyboardInterrupt:
            interrupts.exit()
        except ServerError as exc:
            typer.secho(str(exc), fg="red", err=True)
            raise typer.Exit(1) from None
        except Exception as exc:  # one line per failed task and the log file with the tracebacks
            if interrupts.interrupted:  # Prefect may wrap the interrupt in its own exception
                interrupts.exit()
            from flows.pipeline import failure_lines

            for line in failure_lines(exc):
                typer.secho(line, fg="red", err=True)
            raise typer.Exit(1) from None
    print_summary(result["summary"], result.get("export"))
    typer.echo(f"log (tracebacks, TensorFlow, MLflow): {log_file}")


LEASE_LOST_EXIT_CODE = 3


def _fail_fast_without_data(cfg, root: Path) -> None:
    """Exit 1 in seconds, before any server starts, when the dataset is nowhere on disk and cannot be downloaded
    (offline): the places tried and the fix, not minutes of a run that looks hung."""
    if cfg.dataset.synth is not None or (cfg.dataset.source is not None and cfg.dataset.source.kind != "movielens"):
        return  # synthetic, or a table / SQL source: ingest names its own missing files
    from recflow.data.locate import DatasetNotFoundError, check_available

    try:
        path = cfg.dataset.path or (cfg.dataset.source.path if cfg.dataset.source is not None else None)
        check_available(cfg.dataset.name, path, root / "downloads", download=cfg.dataset.download)
    except DatasetNotFoundError as exc:
        first, *rest = str(exc).splitlines()
        typer.secho(f"locate[{cfg.dataset.name}] failed: {first}", fg="red", err=True)
        for line in rest:
            typer.secho(f"  {line.strip()}", fg="red", err=True)
        raise typer.Exit(1) from None


def _stop_prefects_own_servers() -> None:
    """On an interrupt: Prefect's own temporary servers, if this process started any (ours die with it)."""
    if "tasks.operations" in sys.modules:
        sys.modules["tasks.operations"].stop_embedded_servers()


def print_summary(summary, export=None) -> None:
    """The run summary (``recflow.experiments.summary.RunSummary``) as one row per model: RMSE, recall
    and NDCG at every cutoff (recall at the smallest with ``±`` half its confidence interval: the table
    fits 80 columns), users averaged; then whom the metrics cover and, below 100 users, a warning."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    columns, ci_key = summary.console_columns(), summary.console_ci_key
    with_ci = ci_key is not None and summary.with_ci(ci_key)
    caption = "R@k recall, N@k NDCG" + (f"; {summary.ci_caption()}" if with_ci else "") + "; the rest in MLflow"
    table = Table(title=f"{summary.dataset} - protocol {summary.protocol}", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, caption=caption)
    table.add_column("model", no_wrap=True)
    for _, label in columns:
        table.add_column(label, justify="right", no_wrap=True)
    table.add_column("users", justify="right")
    for row in summary.rows:
        cells = [summary.cell(row, key, with_ci=key == ci_key) for key, _ in columns]
        table.add_row(row.model, *cells, str(row.metrics.get("n_eval_users", "-")))
    console.print(table)
    for line in summary.about:
        console.print(line, style="yellow" if line.startswith("warning") else None, highlight=False)
    t = summary.tracking
    console.print(f"MLflow: run {t['run_id']} in experiment '{t['experiment']}' at {t['tracking_uri']}", soft_wrap=True, highlight=False)
    if browse := browse_line(t):
        console.print(browse, soft_wrap=True, highlight=False)  # one line to copy, whatever the width
    from recflow.experiments.serving.champion import summary_lines

    for line in summary_lines(summary.serving):
        console.print(line, highlight=False)
    if exported := export:
        from recflow.runtime.store import artifacts_root

        m = exported.meta
        console.print(f"export: {m['users']} users x top {m['k']} of {m['model']} in {artifacts_root() / exported.path / m['path']}", highlight=False)
    print(f"tasks: {summary.tasks['ran']} ran, {summary.tasks['cached']} cached")


@app.command()
def replay(
    config: list[Path] = typer.Option(..., "--config", "-c", help="the preset whose release is replayed; repeat to merge overlays"),
    nights: int = typer.Option(3, "--nights", "-n", help="how many of the release's last periods to replay, one night each"),
    period: str = typer.Option("day", "--period", help="day, week or month: one partition and one night per period"),
    set_: list[str] = typer.Option([], "--set", help="override a config key: key=value (e.g. a small model list)"),
) -> None:
    """Replay a preset's release as nights: each appends a partition, runs the pipeline, evaluates time-forward."""
    from recflow.experiments.config import ConfigError, load_config

    if period not in ("day", "week", "month"):
        typer.secho(f"--period {period!r}: expected day, week or month", fg="red", err=True)
        raise typer.Exit(2)
    try:
        load_config([str(p) for p in config], set_)
    except ConfigError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    from recflow.runtime.rootlock import RootLock
    from recflow.runtime.runlog import log_path
    from recflow.runtime.servers import run_prefect_api
    from recflow.runtime.store import artifacts_root
    from recflow.utils import quiet

    root = artifacts_root()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from recflow.experiments.replay import table_lines

    printed: list = []

    def show(row) -> None:
        printed.append(row)
        lines = table_lines(printed)
        typer.echo("\n".join(lines if len(printed) == 1 else lines[-1:]))

    log_file = log_path(root, "replay")
    with RootLock(root).held(), quiet.quiet_libraries(log_file), run_prefect_api(root) as prefect_api:
        from flows.replay import replay as run_replay

        prefect_api.ready()
        try:
            run_replay([str(p) for p in config], nights, period, root=root, overrides=set_, on_night=show)
        except ValueError as exc:
            typer.secho(str(exc), fg="red", err=True)
            raise typer.Exit(2) from None
    typer.echo(f"log (tracebacks, TensorFlow, MLflow): {log_file}")


def browse_line(tracking: dict) -> str | None:
    """Where to look at the run: the experiment's runs table on ``recflow ui``'s MLflow server (or the tracking
    server) when one runs, else how to start one."""
    from recflow.runtime.servers import running_ui
    from recflow.runtime.store import artifacts_root
    from tasks.reporting import mlflow_experiment_url

    ui = running_ui(artifacts_root())
    base = ui["mlflow_url"] if ui and ui.get("mlflow_url") else tracking["tracking_uri"] if tracking["tracking_uri"].startswith("http") else None
    if base and tracking.get("experiment_id"):
        return f"  browse: {mlflow_experiment_url(base, tracking['experiment_id'])}"
    if tracking["tracking_uri"].startswith("sqlite:"):
        return f"  browse: recflow ui (or mlflow ui --backend-store-uri {tracking['tracking_uri']})"
    return None


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


from recflow.cli.retrieval import recommend, similar  # noqa: E402  (typer only; the commands import the rest)

app.command()(recommend)
app.command()(similar)

from recflow.cli.api import api  # noqa: E402  (typer only; the command imports FastAPI, uvicorn and the rest)

app.command()(api)

from recflow.cli.export import export  # noqa: E402  (typer only; the command imports the rest)

app.command()(export)

from recflow.cli.ops import compare, gc_command, serve, ui  # noqa: E402  (typer only; the commands import the rest)

app.command()(compare)
app.command()(ui)
app.command("schedules")(serve)


@app.command("serve", hidden=True, deprecated=True)
def serve_alias(
    deployment: list[str] = typer.Option([], "--deployment", "-d", help="serve only these deployments of prefect.yaml (default: all)"),
) -> None:
    """Deprecated name of `recflow schedules` (it serves schedules, not recommendations: see `recflow recommend`)."""
    typer.secho("`recflow serve` is now `recflow schedules` (it runs prefect.yaml's schedules)", fg="yellow", err=True)
    serve(deployment)


app.command("gc")(gc_command)

from recflow.cli.tune import tune  # noqa: E402  (typer only; the command imports the rest)

app.command()(tune)


def main() -> None:  # pragma: no cover
    app(prog_name="recflow")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
