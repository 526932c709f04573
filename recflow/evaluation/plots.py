"""Plots logged with runs.

Every plot is drawn on its own ``matplotlib.figure.Figure`` with an Agg canvas, never through
``pyplot``: pyplot keeps global state (the figure registry, the current figure, the backend switch)
that concurrently running tasks race on, which failed index tasks at random. Every plot is also
best-effort (:func:`safe_plot`): a plot is a picture of results that already exist, so a plot that
fails logs a warning and returns None instead of failing the task that asked for it.

A Figure alone is not enough: matplotlib documents itself as not thread-safe, and shared parts remain
below the Figure (the mathtext parser that renders log-scale tick labels such as ``10^3`` is one
pyparsing grammar per process, and fails when two threads parse at once). So :func:`safe_plot` also
draws one plot at a time in a process; a plot takes a fraction of a second, tasks spend minutes.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_DRAWING = threading.Lock()


def new_figure(figsize: tuple[float, float], dpi: int = 100):
    """A Figure on its own Agg canvas: no pyplot, no backend switch, nothing shared between threads."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def safe_plot(plot: F) -> F:
    """Wrap a plot function: one plot drawn at a time per process; an exception becomes a logged
    warning and a None result."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        try:
            with _DRAWING:
                return plot(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - a picture never fails the task
            log.warning("plot %s skipped: %s: %s", plot.__name__, type(error).__name__, error)
            return None

    return wrapper  # type: ignore[return-value]


@safe_plot
def loss_curve(history: list[dict], path: Path, title: str = "") -> Path | None:
    """Per-epoch loss (left axis) and validation metrics (right axis, only when there are some);
    None when there is no history."""
    rows = [h for h in history if "epoch" in h]
    if not rows:
        return None
    epochs = [h["epoch"] for h in rows]
    fig = new_figure((6, 3.5))
    ax = fig.add_subplot()
    loss_keys = [k for k in rows[0] if "loss" in k or k.endswith("rmse") and k.startswith("train")]
    for key in loss_keys:
        ax.plot(epochs, [h.get(key) for h in rows], marker="o", label=key)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    # a validation axis only for validation keys that hold at least one number (a run without a
    # validation split records none, or only NaN/None placeholders)
    other = [k for k in rows[0] if k.startswith("valid") and any(_is_number(h.get(k)) for h in rows)]
    if other:
        ax2 = ax.twinx()
        colors = ["tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]
        for i, key in enumerate(other):
            ax2.plot(epochs, [h.get(key) for h in rows], linestyle="--", marker="s", label=key, color=colors[i % len(colors)])
        ax2.set_ylabel("validation")
        ax2.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def _is_number(value) -> bool:
    try:
        return value is not None and float(value) == float(value)
    except (TypeError, ValueError):
        return False
