"""Plots logged with runs. matplotlib's Agg backend: no display needed."""

from __future__ import annotations

from pathlib import Path


def loss_curve(history: list[dict], path: Path, title: str = "") -> Path | None:
    """Per-epoch loss (left axis) and any validation metrics (right axis); None when there is no history."""
    rows = [h for h in history if "epoch" in h]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    loss_keys = [k for k in rows[0] if "loss" in k or k.endswith("rmse") and k.startswith("train")]
    for key in loss_keys:
        ax.plot(epochs, [h.get(key) for h in rows], marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    other = [k for k in rows[0] if k.startswith("valid")]
    if other:
        ax2 = ax.twinx()
        for key in other:
            ax2.plot(epochs, [h.get(key) for h in rows], linestyle="--", marker="s", label=key, color="tab:green")
        ax2.set_ylabel("validation")
        ax2.legend(loc="upper right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
