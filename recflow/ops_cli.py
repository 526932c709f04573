"""Operations commands of ``recflow``: ``compare``, ``ui`` and ``serve`` (registered in ``recflow.cli``).

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
    log: bool = typer.Option(True, "--log/--no-log", help="log the report (markdown + PNG bar charts) to MLflow"),
    tracking_uri: Optional[str] = typer.Option(None, "--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///<artifacts>/mlflow.db"),
) -> None:
    """Rank recent model runs from MLflow, best first, against the current champion; log the report."""
    from rich.console import Console
    from rich.table import Table

    from recflow.compare import CompareError, compare as run_compare, log_report, table_header, table_rows

    try:
        result = run_compare(experiment, metric, last, tracking_uri)
    except CompareError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    console = Console(width=max(Console().width, 150))
    table = Table(title=f"{result.experiment}: best {metric} first")
    for i, name in enumerate(table_header(result)):
        table.add_column(name, justify="right" if i == 0 or name in result.shown_metrics else "left")
    for cells in table_rows(result):
        table.add_row(*cells)
    console.print(table)
    for champion in result.champions.values():
        console.print(f"champion {champion.registered_model} v{champion.version}: {champion.model or '?'} "
                      f"(run {champion.run_id[:8]}) {metric} = {'-' if champion.value is None else f'{champion.value:.4f}'}")
    for note in result.notes:
        console.print(note)
    if log:
        run_id = log_report(result)
        console.print(f"report logged to MLflow: run {run_id} ('compare {metric}'), artifacts comparison/")


def ui(
    prefect_port: int = typer.Option(4200, help="Prefect UI and API port (0: any free port)"),
    mlflow_port: int = typer.Option(5000, help="MLflow UI port (0: any free port)"),
) -> None:
    """Start `prefect server` and `mlflow server` on 127.0.0.1 with this project's stores; Ctrl-C stops both."""
    import signal
    import time

    from recflow.servers import ProjectServers, ServerError

    try:
        servers = ProjectServers(prefect_port=prefect_port, mlflow_port=mlflow_port)
        typer.echo(f"starting prefect server and mlflow server for {servers.root} ...")
        servers.__enter__()
    except ServerError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop ends like Ctrl-C
    urls = servers.urls
    typer.echo(
        f"Prefect UI  {urls['prefect_url']}\n"
        f"MLflow UI   {urls['mlflow_url']}\n\n"
        f"`recflow run` and `recflow serve` on {servers.root} use this Prefect server; elsewhere (make deploy, a worker):\n"
        f"  export PREFECT_API_URL={urls['prefect_api_url']}\n"
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
    """Serve prefect.yaml's deployments and schedules from this one process (no work pool, no worker), as `<name>-served`."""
    from recflow.servers import ui_prefect_api
    from recflow.store import artifacts_root

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the configs are paths relative to the repository; the artifacts root stays where it was chosen
    os.environ["RECFLOW_HOME"] = str(artifacts_root())
    if not os.environ.get("PREFECT_API_URL") and (ui_api := ui_prefect_api(artifacts_root())):
        os.environ.update(ui_api)  # before Prefect is imported: `recflow ui`'s server for this root
    from flows.serve import REPO, DeploymentSpecError, serve as serve_deployments

    os.chdir(REPO)
    if not os.environ.get("PREFECT_API_URL"):
        typer.secho("PREFECT_API_URL is not set: schedules need a running server (`recflow ui` or `prefect server start`), "
                    "e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api", fg="yellow", err=True)
    try:
        serve_deployments(deployment or None)
    except DeploymentSpecError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
