"""``recflow tune``: search one model's hyperparameters on the validation split (flows/tune.py)."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def tune(
    model: str = typer.Option(..., "--model", "-m", help="the model to tune (one that declares a search_space)"),
    config: list[Path] = typer.Option([], "--config", "-c", help="YAML config(s), merged in order as for `recflow run`"),
    set_: list[str] = typer.Option([], "--set", help="override a config key: key=value"),
    trials: int | None = typer.Option(20, "--trials", min=1, help="completed trials the study should reach (a resumed study's count)"),
    minutes: float | None = typer.Option(None, "--minutes", min=0, help="stop asking for trials after this long"),
    metric: str | None = typer.Option(None, "--metric", help="validation metric (default: rmse for rating models, else ndcg_at_10)"),
    seed: int = typer.Option(0, "--seed", help="TPE sampler seed (and the seed of a carved validation part)"),
    valid_fraction: float = typer.Option(0.1, "--valid-fraction", help="per-user share of train carved as validation when the preset has none"),
    parallel: int = typer.Option(1, "--parallel", min=1, help="trials asked and run at once (as tasks)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="overlay YAML to write (default: <artifacts>/tuning/<study>.yaml)"),
) -> None:
    """Tune a model with Optuna (TPE) on the validation split; write a config overlay of the best parameters.

    The test split is never read. Rerun the same command to resume a crashed or finished study.
    """
    from recflow.experiments.config import ConfigError, load_config

    if not config and Path("configs/default.yaml").exists():
        config = [Path("configs/default.yaml")]
    try:
        load_config(config, set_)
        from recflow.experiments.tuning import search_space

        search_space(model)
    except (ConfigError, KeyError, ValueError) as exc:
        typer.secho(str(exc).strip("'\""), fg="red", err=True)
        raise typer.Exit(2) from None
    if trials is None and minutes is None:
        typer.secho("give a budget: --trials and/or --minutes", fg="red", err=True)
        raise typer.Exit(2)

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from recflow.runtime.servers import run_prefect_api
    from recflow.runtime.store import artifacts_root

    try:
        # as `recflow run`: $PREFECT_API_URL, else `recflow ui`'s server (the study shows in its dashboard), else an embedded one
        with run_prefect_api(artifacts_root()) as prefect_api:
            from flows.tune import run_tune

            prefect_api.ready()
            result = run_tune(
                [str(p) for p in config] or None,
                set_,
                model,
                trials=trials,
                minutes=minutes,
                metric=metric,
                seed=seed,
                valid_fraction=valid_fraction,
                out=str(out) if out else None,
                parallel=parallel,
            )
    except Exception as exc:
        typer.secho(f"tuning failed: {type(exc).__name__}: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    params = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in result["best_params"].items())
    typer.echo(f"study {result['study']}: {result['n_completed']} trials completed")
    typer.echo(f"best {result['metric']} (validation) = {result['best_value']:.4f} at trial {result['best_trial']}: {params}")
    typer.echo(f"overlay: {result['overlay']}")
    typer.echo(f"MLflow: run {result['mlflow_run_id']}")
