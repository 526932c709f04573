"""What a pipeline run produced for each model, as the flow's tail (MLflow, report, catalogue, champion) reads it.

A model's stages fail independently: an index that fails to build does not undo the model's
training and evaluation, so an outcome keeps every descriptor that was produced beside the
failures. Consumers ask what they need (``evaluated`` to log or show metrics, ``servable`` to
serve or promote) instead of guessing from which keys a dict has.
"""

from __future__ import annotations

from dataclasses import dataclass

from recflow.runtime.store import Artifact


@dataclass(frozen=True)
class StageFailure:
    """One failed task: its stage (``train``, ``index``, ``track[mlflow]`` ...), its model if any, and the exception's message."""

    stage: str
    message: str
    model: str | None = None
    #: lines printed under ``line()`` as they are: where a user error says what was tried and the fix
    details: tuple[str, ...] = ()

    @property
    def task(self) -> str:
        return f"{self.stage}[{self.model}]" if self.model else self.stage

    def line(self, width: int = 400) -> str:
        """One line whatever the message (some span lines, some start with a blank one), cut at ``width``."""
        text = " ".join(self.message.split()) or "failed"
        return f"{self.task} failed: {text if len(text) <= width else text[: width - 3] + '...'}"


@dataclass(frozen=True)
class ModelOutcome:
    """One model's descriptors (``None`` where the stage did not complete) and the failures of its stages."""

    name: str
    train: Artifact | None = None
    evaluate: Artifact | None = None
    index: Artifact | None = None
    failures: tuple[StageFailure, ...] = ()

    @property
    def evaluated(self) -> bool:
        """Trained and evaluated: its metrics can be logged and shown, whatever happened to its index."""
        return self.train is not None and self.evaluate is not None

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    @property
    def servable(self) -> bool:
        """Every stage it has completed: only such a model is served or promoted."""
        return self.evaluated and not self.failed

    @property
    def error(self) -> str:
        return "; ".join(f"{f.stage}: {f.message}" for f in self.failures)


class PipelineFailed(RuntimeError):
    """Raised at the end of a run that had failed tasks (after everything that could still be tracked was).

    ``str()`` is one line per failed task, then where the tracebacks are; it survives pickling
    (Prefect may persist a flow's exception) because everything is in ``args``.
    """

    def __init__(self, failures: tuple[StageFailure, ...] | list[StageFailure], log_file: str | None = None) -> None:
        super().__init__(tuple(failures), log_file)
        self.failures: tuple[StageFailure, ...] = tuple(failures)
        self.log_file = log_file

    def lines(self) -> list[str]:
        lines = [text for f in self.failures for text in (f.line(), *(f"  {d}" for d in f.details))]
        return lines + ([f"tracebacks: {self.log_file}"] if self.log_file else [])

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        return f"PipelineFailed({'; '.join(f.line() for f in self.failures)!r})"
