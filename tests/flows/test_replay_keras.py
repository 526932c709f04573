"""The network models warm-start through the pipeline as the others do: two nights of ``recflow replay``
(ml-latest-small's last two months), each network model's second night continuing from its first,
keyed on that fit (a replay of the same nights is all cache hits) and tagged with it in MLflow."""

from __future__ import annotations

import pytest

from tests.flows.replaying import replays

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

TF = "batch_size: 1024, epochs: 2, jit_compile: false"
NETWORKS = (
    f"models=[{{name: two_tower, dim: 8, hidden: [8], {TF}}}, {{name: dssm, dim: 4, hidden: [4], {TF}}},"
    f" {{name: hybrid, dim: 8, hidden: [8], text_components: 0, genre_overlap_queries: null, batch_size: 1024, epochs: 2}},"
    " {name: mult_vae, dim: 8, hidden: [16], epochs: 2}, {name: autorec, hidden: 8, epochs: 2}]"
)
SETTINGS = [NETWORKS, "evaluation.ks=[10]", "evaluation.bootstrap_samples=50", "serving.register_model=false", "index.kinds=[flat]"]
WARM = ["autorec", "dssm", "hybrid", "mult_vae", "two_tower"]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    (first, again), runs, _ = replays(tmp_path_factory, SETTINGS, 2, 1)  # then the last night again
    return first, again, runs


def test_the_second_night_continues_every_network_model_from_the_first(replayed):
    first, _, _ = replayed
    assert all(r.error is None for r in first), [r.error for r in first]
    assert first[0].warm_started == [] and first[1].warm_started == WARM
    assert all(first[1].warm_epochs[name] == 2 for name in WARM)  # warm_min_epochs: the new month is < 1% of train


def test_replaying_the_night_again_reproduces_every_network_model_from_the_cache(replayed):
    first, again, _ = replayed
    assert [r.ran for r in again] == [0]  # the same warm start, so the same cache keys
    assert again[0].model_metrics == first[1].model_metrics


def test_each_warm_network_models_run_names_the_fit_it_continued(replayed):
    _, _, runs = replayed
    tagged = sorted(r.data.tags["model"] for r in runs if "recflow.warm_start_from" in r.data.tags)
    assert tagged == sorted(WARM * 2)  # the second night, replayed twice
    assert all(r.data.tags["recflow.warm_start_from"].startswith("train/") for r in runs if "recflow.warm_start_from" in r.data.tags)
