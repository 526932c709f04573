"""The ML-25M preset (configs/ml-25m*.yaml) and bench.scale's helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.scale import growth_exponent, shape
from recflow.experiments.config import load_config
from recflow.experiments.summary import item_scope_lines

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_ml25m_preset_reads_the_release_and_runs_every_registered_model():
    from recflow.models import MODELS

    cfg = load_config(CONFIGS / "ml-25m.yaml")
    assert cfg.dataset.name == "ml-25m" and cfg.dataset.synth is None
    assert sorted(m.name for m in cfg.models) == sorted(MODELS)
    assert cfg.model("ease").top_items == 6_000 and cfg.model("edlae").top_items == 6_000


def test_synth_overlay_gives_ml25m_shape_and_keeps_the_models():
    cfg = load_config([CONFIGS / "ml-25m.yaml", CONFIGS / "ml-25m-synth.yaml"])
    assert (cfg.dataset.synth.n_ratings, cfg.dataset.synth.n_users, cfg.dataset.synth.n_items) == (25_000_000, 162_541, 59_047)
    assert cfg.models == load_config(CONFIGS / "ml-25m.yaml").models


def test_item_subsets_are_stated_in_the_summary_lines():
    cfg = load_config(CONFIGS / "ml-25m.yaml")
    assert item_scope_lines(cfg.models) == [
        "ease: fitted on the 6,000 most popular training items only (top_items); every other item is never recommended",
        "edlae: fitted on the 6,000 most popular training items only (top_items); every other item is never recommended",
        "mult_vae: fitted on the 6,000 most popular training items only (top_items); every other item is never recommended",
    ]
    assert item_scope_lines(load_config(None, ["models=[{name: ease}]"]).models) == []


def test_growth_exponent_is_the_log_log_slope():
    assert growth_exponent(10, 3.0, 100, 30.0) == pytest.approx(1.0)
    assert growth_exponent(10, 1.0, 20, 4.0) == pytest.approx(2.0)
    assert growth_exponent(1e7, 5.0, 2.5e7, 5.0) == 0.0


def test_scaled_shape_keeps_ratings_per_user_and_item():
    assert shape(25_000_000) == {"n_ratings": 25_000_000, "n_users": 162_541, "n_items": 59_047}
    assert shape(1_000_000) == {"n_ratings": 1_000_000, "n_users": 6_502, "n_items": 2_362}
