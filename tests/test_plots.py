"""Plots: drawn without pyplot state (safe from many threads at once) and best-effort (never fail a task)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from recflow.evaluation.plots import loss_curve
from recflow.experiments.compare import Champion, Comparison, ModelResult, bar_chart
from recflow.retrieval.index import KindResult, recall_qps_plot

THREADS = 8


def qps_results() -> dict[str, KindResult]:
    def curve(kind, builds):
        return [
            {"build": b, "search": s, "recall": r, "qps": q, "p50_ms": 1.0}
            for b in builds
            for s, r, q in (({"ef_search": 16}, 0.8, 5000.0), ({"ef_search": 64}, 0.95, 2000.0))
        ]

    return {
        "flat": KindResult("flat", curve=[{"build": {}, "search": {}, "recall": 1.0, "qps": 800.0}]),
        "hnsw": KindResult("hnsw", curve=curve("hnsw", [{"M": 16}, {"M": 32}])),
        "hnswlib": KindResult("hnswlib", curve=curve("hnswlib", [{"M": 16}])),
    }


def comparison() -> Comparison:
    started = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = [
        ModelResult(f"r{i}", m, "tiny", "temporal", "p", "nightly", started, {"recall_at_10": v}, is_champion=(i == 0))
        for i, (m, v) in enumerate([("ease", 0.3), ("bias", 0.2), ("popular", 0.1)])
    ]
    return Comparison("recflow/tiny", "1", "recall_at_10", rows, champions={"tiny": Champion("tiny", "recflow-tiny", "1", "r0", "ease", 0.3)})


HISTORY = [{"epoch": e, "loss": 1.0 / e, "valid_rmse": 0.9 + 0.01 * e} for e in (1, 2, 3)]

PLOTTERS = {
    "loss_curve": lambda path: loss_curve(HISTORY, path, title="mf"),
    "recall_qps_plot": lambda path: recall_qps_plot(qps_results(), path, title="mf / items", target=0.9),
    "bar_chart": lambda path: bar_chart(comparison(), "recall_at_10", path),
}


@pytest.mark.slow  # operates a flow, a server or many threads: end-to-end
def test_many_threads_drawing_plots_at_once_all_succeed(tmp_path, caplog):
    """Pyplot's state and matplotlib's mathtext parser (the log-scale ticks of the recall-vs-QPS plot)
    raced here: about one recall-vs-QPS plot in seven failed with 8 threads before plots were
    serialised, so this mix fails the old code almost surely."""
    names = ["recall_qps_plot", "loss_curve", "recall_qps_plot", "bar_chart", "recall_qps_plot", "recall_qps_plot"] * THREADS
    paths = [tmp_path / f"{i}_{name}.png" for i, name in enumerate(names)]
    with caplog.at_level(logging.WARNING, logger="recflow.evaluation.plots"), ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(lambda i: PLOTTERS[names[i]](paths[i]), range(len(names))))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert results == paths
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


@pytest.mark.parametrize("name", PLOTTERS)
def test_a_plot_that_fails_logs_a_warning_and_returns_none(name, tmp_path, caplog, monkeypatch):
    from matplotlib.figure import Figure

    def broken(self, *args, **kwargs):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(Figure, "savefig", broken)
    with caplog.at_level(logging.WARNING, logger="recflow.evaluation.plots"):
        assert PLOTTERS[name](tmp_path / "x.png") is None
    assert any("renderer exploded" in r.getMessage() for r in caplog.records)


def test_the_loss_plot_has_no_validation_axis_without_validation_history(tmp_path, monkeypatch):
    import matplotlib.figure

    drawn = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: drawn.append(self))
    history = [{"epoch": e, "loss": 1.0 / e, "valid_recall_at_10": float("nan")} for e in (1, 2)]
    loss_curve(history, tmp_path / "no_valid.png")
    loss_curve(HISTORY, tmp_path / "valid.png")
    assert [len(fig.axes) for fig in drawn] == [1, 2]


def test_each_index_kind_has_its_own_colour_in_the_recall_qps_plot(tmp_path, monkeypatch):
    import matplotlib.figure

    drawn = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: drawn.append(self))
    recall_qps_plot(qps_results(), tmp_path / "qps.png")
    colours, lines = {}, []
    for line in drawn[0].axes[0].get_lines():
        if not line.get_label().startswith("_"):
            colours.setdefault(line.get_label().split()[0], set()).add(str(line.get_color()))
            lines.append(str(line.get_color()))
    assert sorted(colours) == ["flat", "hnsw", "hnswlib"]
    assert len(set(lines)) == len(lines)  # every build its own shade: seven ivf_pq builds are seven lines, not one red
    kinds = [c for cs in colours.values() for c in cs]
    assert len(set(kinds)) == len(kinds)  # and no two kinds share a colour


@pytest.mark.slow
def test_a_failing_plot_leaves_its_train_and_index_tasks_completed(recflow_home, prefect_harness, monkeypatch, caplog):
    """mf draws a loss curve in train[mf] and a recall-vs-QPS plot in index[mf]: both break, the run completes."""
    from matplotlib.figure import Figure

    from flows.pipeline import run_pipeline

    def broken(self, *args, **kwargs):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr(Figure, "savefig", broken)
    with caplog.at_level(logging.WARNING, logger="recflow.evaluation.plots"):
        result = run_pipeline("configs/smoke.yaml", ["models=[{name: mf}]"], root=recflow_home)
    assert result["tasks"] == {"ran": 6, "cached": 0}  # ingest, split, features, train, evaluate, index
    assert "rmse" in result["metrics"]["mf"]
    skipped = sorted({r.getMessage().split()[1] for r in caplog.records if "renderer exploded" in r.getMessage()})
    assert skipped == ["loss_curve", "recall_qps_plot"]
