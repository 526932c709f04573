"""Operations commands of ``recflow``: ``compare``, ``ui`` and ``schedules`` (registered in ``recflow.cli.main``).

Only typer at import: MLflow, Prefect and matplotlib load inside the command that needs them.
"""

from __future__ import annotations

import os
from typing import Optional

import typer


def compare(
    experiment: Optional[str] = typer.Option(None, "--experiment", "-e", help="MLflow experiment (default: the one with the newest pipeline run)"),
    metric: str = typer.Option("recall_at_10", "--metric", "-m", help="rank on this metric (rmse, mae, *_seconds: lower is better)"),
    last: int = typer.Option(10, "--last", "-n", help="the model runs of the last N pipeline runs"),
    log: bool = typer.Option(False, "--log/--no-log", help="also log the report (markdown + PNG bar charts) to MLflow as a run"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///<artifacts>/mlflow.db"),
    trend: bool = typer.Option(False, "--trend", help="plot each model's metric (with its CI) over the last N pipeline runs as a PNG instead"),
) -> None:
    """Rank recent model runs from MLflow, best first, against the current champion (--log: keep the report in MLflow).

    With --trend: one line per model of the metric over the pipeline runs by date, as a PNG under <artifacts>/trends."""
    from rich.console import Console

    from recflow.experiments.compare import CompareError, log_report
    from recflow.experiments.compare import compare as run_compare

    if trend:
        return _trend(experiment, metric, last, log, tracking_uri)
    try:
        result = run_compare(experiment, metric, last, tracking_uri)
    except CompareError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    console = Console()
    table, hidden = fitted_table(result, console)
    console.print(table)
    if hidden:
        console.print(f"(hidden at width {console.width}: {', '.join(hidden)})")
    for champion in result.champions.values():
        console.print(
            f"champion {champion.registered_model} v{champion.version}: {champion.model or '?'} "
            f"(run {champion.run_id[:8]}) {metric} = {'-' if champion.value is None else f'{champion.value:.4f}'}"
        )
    for note in result.notes:
        console.print(note)
    if log:
        run_id = log_report(result)
        console.print(f"report logged to MLflow: run {run_id} ('compare {metric}'), artifacts comparison/")


def _trend(experiment: Optional[str], metric: str, last: int, log: bool, tracking_uri: Optional[str]) -> None:
    from recflow.experiments.compare import CompareError
    from recflow.experiments.trend import log_trend, trend, write_trend
    from recflow.runtime.store import artifacts_root

    try:
        result = trend(experiment, metric, last, tracking_uri)
    except CompareError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    path = write_trend(result, artifacts_root() / "trends")
    if path is None:
        typer.secho("the trend plot could not be drawn (see the warning above)", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"{result.experiment}: {metric} of {len(result.series)} models over {len(result.runs)} pipeline runs")
    typer.echo(f"trend plot: {path}")
    if log:
        run_id = log_trend(result, path)
        typer.echo(f"trend logged to MLflow: run {run_id} ('trend {metric}'), artifact trend/{path.name}")


def short_metric(metric: str) -> str:
    """The registry's compact label (recall_at_10 -> R@10, rmse -> RMSE, fit_seconds -> fit s); a key no spec describes as it is."""
    from recflow.evaluation.specs import measured

    found = measured(metric)
    return found.short if found is not None else metric


def fitted_table(result, console):
    """The comparison as a rich table no wider than ``console``: (table, names of hidden columns).

    Headers are abbreviated (R@10, vs champ); a dataset or protocol shared by every row moves to the
    title; then, while the table is too wide, columns go in this order: run id, the context metrics
    from the last, the pipeline run's time, dataset, protocol, the pipeline run (what tells rows apart goes last). The rank, model,
    ranking metric and change against the champion always stay.
    """
    from rich import box
    from rich.measure import Measurement
    from rich.table import Table

    from recflow.experiments.compare import table_header, table_rows

    rows = result.rows
    header = table_header(result)
    # the cells recflow.experiments.compare formats (the markdown report's too), by header
    cells = dict(zip(header, zip(*table_rows(result)))) if rows else {h: () for h in header}
    title = f"{result.experiment}: best {result.metric} first"
    shared = []
    columns: list[tuple[str, list[str], bool]] = [  # (header, cells, right-aligned)
        ("#", list(cells["#"]), True),
        ("model", list(cells["model"]), False),
        ("pipeline run", [f"{r.pipeline_run_name} {r.started:%m-%d %H:%M}" for r in rows], False),
    ]
    for key in ("dataset", "protocol"):
        values = [getattr(r, key) for r in rows]
        if len(set(values)) == 1:
            shared.append(f"{key} {values[0]}")
        else:
            columns.append((key, values, False))
    for m in result.shown_metrics:
        columns.append((short_metric(m), list(cells[m]), True))
    vs_champion = next(h for h in header if h.startswith("vs champion"))
    columns.append(("vs champ", list(cells[vs_champion]), True))
    columns.append(("run id", list(cells["run"]), False))
    if shared:
        title += f" ({', '.join(shared)})"
    context = [short_metric(m) for m in result.shown_metrics[1:]]
    # what tells rows apart (their pipeline run, a protocol or dataset that varies) goes last
    drop_order = ["run id", *reversed(context), "pipeline run time", "dataset", "protocol", "pipeline run"]
    unbounded = console.options.update_width(1 << 16)  # the table's natural width, not clamped to the console

    def build(cols):
        table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for name, _, right in cols:
            table.add_column(name, justify="right" if right else "left", no_wrap=True)
        for i in range(len(rows)):
            table.add_row(*(cells[i] for _, cells, _ in cols))
        return table

    hidden: list[str] = []
    table = build(columns)
    for victim in drop_order:
        if Measurement.get(console, unbounded, table).maximum <= console.width:
            break
        if victim == "pipeline run time":
            columns = [(h, [r.pipeline_run_name for r in rows], a) if h == "pipeline run" else (h, c, a) for h, c, a in columns]
            hidden.append("pipeline run time")
        elif any(h == victim for h, _, _ in columns):
            columns = [c for c in columns if c[0] != victim]
            hidden.append(victim)
        table = build(columns)
    return table, hidden


def ui(
    prefect_port: int = typer.Option(4200, help="Prefect UI and API port (0: any free port)"),
    mlflow_port: int = typer.Option(5000, help="MLflow UI port (0: any free port)"),
    host: str = typer.Option("127.0.0.1", help="address both servers bind and are reached at (a team's server host: its own address)"),
    prefect_database: Optional[str] = typer.Option(
        None, help="Prefect's database, e.g. postgresql+asyncpg://user:pw@db:5432/prefect (default: $PREFECT_SERVER_DATABASE_CONNECTION_URL, else sqlite)"
    ),
    mlflow_database: Optional[str] = typer.Option(
        None, help="MLflow's backend store, e.g. postgresql+psycopg://user:pw@db:5432/mlflow (default: $MLFLOW_TRACKING_URI if a database, else sqlite)"
    ),
) -> None:
    """Start `prefect server` and `mlflow server` with this project's stores (PostgreSQL for a team: see docs/deployment.md); Ctrl-C stops both."""
    import signal
    import time

    from recflow.runtime.servers import ProjectServers, ServerError

    try:
        servers = ProjectServers(
            prefect_port=prefect_port, mlflow_port=mlflow_port, host=host, prefect_database=prefect_database, mlflow_database=mlflow_database
        )
        typer.echo(f"starting prefect server ({servers.databases['prefect']}) and mlflow server ({servers.databases['mlflow']}) for {servers.root} ...")
        servers.__enter__()
    except ServerError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop ends like Ctrl-C
    urls = servers.urls
    typer.echo(
        f"Prefect UI  {urls['prefect_url']}\n"
        f"MLflow UI   {urls['mlflow_url']}\n\n"
        f"`recflow run` and `recflow schedules` on {servers.root} use this Prefect server; elsewhere (make deploy, a worker):\n"
        f"  export PREFECT_API_URL={urls['prefect_api_url']} MLFLOW_TRACKING_URI={urls['mlflow_url']}\n"
        f"  make deploy && prefect worker start --pool recflow-process\n"
        f"Logs: {servers.prefect.log_path.parent}   Ctrl-C stops both servers."
    )
    try:
        while all(s.process.poll() is None for s in (servers.prefect, servers.mlflow)):
            time.sleep(1)
        dead = next(s for s in (servers.prefect, servers.mlflow) if s.process.poll() is not None)
        typer.secho(f"{dead.name} exited with code {dead.process.returncode}; see {dead.log_path}", fg="red", err=True)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        typer.echo("stopping both servers ...")
    finally:
        servers.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve(
    deployment: list[str] = typer.Option([], "--deployment", "-d", help="serve only these deployments of prefect.yaml (default: all)"),
) -> None:
    """Run prefect.yaml's schedules from this one process (its deployments served as `<name>-served`; no work pool, no worker)."""
    from recflow.runtime.servers import ui_prefect_api
    from recflow.runtime.store import artifacts_root, shared_root

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the configs are paths relative to the repository; the artifacts root stays where it was chosen
    os.environ["RECFLOW_HOME"] = shared_root(artifacts_root())  # an s3:// root keeps its URL
    if not os.environ.get("PREFECT_API_URL") and (ui_api := ui_prefect_api(artifacts_root())):
        os.environ.update(ui_api)  # before Prefect is imported: `recflow ui`'s server for this root
    from flows.serve import REPO, DeploymentSpecError
    from flows.serve import serve as serve_deployments

    os.chdir(REPO)
    if not os.environ.get("PREFECT_API_URL"):
        typer.secho(
            "PREFECT_API_URL is not set: schedules need a running server (`recflow ui` or `prefect server start`), "
            "e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api",
            fg="yellow",
            err=True,
        )
    try:
        serve_deployments(deployment or None)
    except DeploymentSpecError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None


def gc_command(
    keep_runs: int = typer.Option(10, "--keep-runs", "-n", help="keep the newest N pipeline runs of each experiment (and the champions')"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print what would be freed; delete nothing"),
) -> None:
    """Delete stage folders, scratch and MLflow run artifacts that no kept run or champion needs."""
    from recflow.experiments.gc import GcError, RootBusy, collect
    from recflow.runtime.store import artifacts_root

    root = artifacts_root()
    try:
        gc_plan = collect(root, keep_runs, dry_run)
    except (RootBusy, GcError, ValueError) as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo("\n".join(gc_plan.lines(dry_run)))
