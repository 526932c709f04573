"""``recflow api``: the HTTP service over the champion (``recflow.api``), on uvicorn.

Registered on the typer app in ``recflow.cli.main``; imports typer only until the command runs.
The server listens at once and ``/health`` answers 503 until the first version is loaded.
"""

from __future__ import annotations

from typing import Optional

import typer

from recflow.cli.retrieval import DATASET_HELP, _default_dataset


def api(
    host: str = typer.Option("127.0.0.1", "--host", help="the address to listen on (127.0.0.1: this machine only)"),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535),
    dataset: Optional[str] = typer.Option(None, "--dataset", help=DATASET_HELP),
    model: str = typer.Option("champion", "--model", "-m", help="'champion' (the champion's best model), or a model of its run (or of --run) by name"),
    run: Optional[str] = typer.Option(None, "--run", help="serve this pipeline (or model) run instead of the champion; never swapped"),
    poll: float = typer.Option(30.0, "--poll", min=0.01, help="seconds between looks at the champion alias"),
    alias: str = typer.Option("records", "--alias", help="where the alias is read: 'records' (recflow's champion files, no MLflow) or 'registry' (MLflow's)"),
    depth: int = typer.Option(100, "--depth", min=1, help="how many items per user are precomputed at load time"),
    precompute: str = typer.Option("auto", "--precompute", help="auto (when scoring every user is cheap), all or none"),
) -> None:
    """Serve recommendations over HTTP (GET/POST /recommend, /similar, /recommend/batch, /health, /metadata, /docs)."""
    from recflow.api.sources import ChampionRecords, FixedRun, RegistryAlias
    from recflow.experiments.serving.records import ServingNotFound
    from recflow.runtime.store import artifacts_root

    if alias not in ("records", "registry"):
        typer.secho(f"--alias takes 'records' or 'registry', got {alias!r}", fg="red", err=True)
        raise typer.Exit(2)
    if precompute not in ("auto", "all", "none"):
        typer.secho(f"--precompute takes auto, all or none, got {precompute!r}", fg="red", err=True)
        raise typer.Exit(2)
    root = artifacts_root()
    name = None if model == "champion" else model
    try:
        if run is not None:
            source = FixedRun(root, run, name)
        elif alias == "registry":
            source = RegistryAlias(root, dataset, name, default_dataset=_default_dataset())
        else:
            source = ChampionRecords(root, dataset, name, _default_dataset())
        source.current()  # a wrong name fails here, with its message, not in the server's log
    except ServingNotFound as exc:
        typer.secho(str(exc).strip("'\""), fg="red", err=True)
        raise typer.Exit(1) from None
    serve(source, root, host=host, port=port, poll=poll, depth=depth, precompute=precompute)


def serve(source, root, *, host: str, port: int, poll: float, depth: int, precompute: str) -> None:
    """One uvicorn process (httptools, uvloop) over a ``Service`` of ``source``; one process holds one copy of the model."""
    import uvicorn

    from recflow.api.app import create_app
    from recflow.api.service import Service, prepare_process

    prepare_process()
    service = Service(source, root, interval=poll, depth=depth, precompute=precompute)
    typer.echo(f"recflow api: serving {source.describe()} on http://{host}:{port} (docs: /docs)", err=True)
    uvicorn.run(create_app(service), host=host, port=port, log_level="warning", access_log=False, loop="uvloop", http="httptools")
