"""``recflow recommend`` and ``recflow similar``: answers from the champion (or a named run).

Registered on the typer app in ``recflow.cli.main``. Start-up is the budget (under 2 s on the default
dataset): this module imports typer only; a command imports numpy, pyarrow and faiss / hnswlib
through ``recflow.retrieval.search``, never MLflow (the champion is found through the JSON records
``recflow.experiments.serving`` writes) and never TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

RUN_HELP = "a pipeline run id, or a model's nested run id (default: the champion)"
DATASET_HELP = "whose champion to use (default: configs/default.yaml's dataset, else the only one)"


def _default_dataset() -> str | None:
    path = Path("configs/default.yaml")
    if not path.is_file():
        return None
    import yaml

    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return None
    dataset = raw.get("dataset") if isinstance(raw, dict) else None
    return dataset.get("name") if isinstance(dataset, dict) else None


def _retriever(dataset: str | None, run: str | None, model: str | None, mode: str | None = None):
    from recflow.experiments.serving.resolve import resolve
    from recflow.retrieval.search import Retriever

    sources, info = resolve(dataset=dataset, run=run, model=model, default_dataset=_default_dataset(), mode=mode)
    return Retriever.from_sources(sources, info)


def _print(answer, header: str, served_from: str) -> None:
    typer.echo(f"{header}  [{answer.model}, {answer.via}; {served_from}]")
    if answer.note:
        typer.echo(answer.note)
    width = max([len(str(int(i))) for i in answer.item_ids] + [7])
    typer.echo(f"{'rank':>4}  {'score':>8}  {'item_id':>{width}}  title")
    for row in answer.rows():
        typer.echo(f"{row['rank']:>4}  {row['score']:>8.4f}  {row['item_id']:>{width}}  {row['title']}")


def _fail(exc: Exception, code: int) -> None:
    typer.secho(str(exc).strip("'\""), fg="red", err=True)
    raise typer.Exit(code)


def _answer(dataset: str | None, run: str | None, model: str | None, ask, mode: str | None = None):
    """(retriever, ``ask(retriever)``); a query that cannot be answered exits 1, bad input exits 2."""
    from recflow.experiments.serving.records import ServingNotFound
    from recflow.retrieval.search import RetrievalError
    from recflow.retrieval.titles import TitleNotFound

    try:
        retriever = _retriever(dataset, run, model, mode)
        return retriever, ask(retriever)
    except (RetrievalError, ServingNotFound, TitleNotFound, FileNotFoundError) as exc:
        _fail(exc, 1)
    except ValueError as exc:
        _fail(exc, 2)


def recommend(
    user: int = typer.Option(..., "--user", "-u", help="the user's id in the dataset"),
    k: int = typer.Option(10, "-k", "--k", min=1, help="how many movies"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="a model of the champion's run (or of --run)"),
    run: Optional[str] = typer.Option(None, "--run", help=RUN_HELP),
    fallback: Optional[str] = typer.Option(None, "--fallback", help="'popular': cold and unknown users get the most popular movies"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help=DATASET_HELP),
) -> None:
    """Top-k movies a user has not rated yet, with titles and scores."""
    if fallback not in (None, "popular"):
        _fail(ValueError(f"--fallback takes 'popular', got {fallback!r}"), 2)
    retriever, answer = _answer(dataset, run, model, lambda r: r.recommend(user, k, fallback))
    _print(answer, f"Top {k} for user {user}", retriever.info.get("served_from", ""))


def similar(
    title: str = typer.Option(..., "--title", "-t", help="a movie title: any case, year optional, typos forgiven"),
    k: int = typer.Option(10, "-k", "--k", min=1, help="how many movies"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="a model with item embeddings (default: the champion's, else the run's best)"),
    mode: Optional[str] = typer.Option(None, "--mode", help="an item space: content, cf or hybrid (hybrid's); without --model, a model that has it"),
    run: Optional[str] = typer.Option(None, "--run", help=RUN_HELP),
    dataset: Optional[str] = typer.Option(None, "--dataset", help=DATASET_HELP),
) -> None:
    """Movies most similar to a title (cosine of item embeddings, through the tuned index)."""
    retriever, answer = _answer(dataset, run, model, lambda r: r.similar(title, k, mode), mode)
    _print(answer, f"Movies like {answer.query!r}", retriever.info.get("served_from", ""))
