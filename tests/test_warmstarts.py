"""Which earlier fit a warm fit continues from (``recflow.runtime.warmstarts``): deterministic, so replays reproduce."""

from __future__ import annotations

from recflow.runtime.store import Artifact, write_json_atomic
from recflow.runtime.warmstarts import record_fit, warm_source

PARAMS = {"name": "mf", "factors": 8}


def _folder(root, stage: str, key: str) -> Artifact:
    """A real, intact stage folder (warm_source checks the fit it picks still exists)."""
    from recflow.runtime.store import write_manifest

    folder = root / stage / key
    folder.mkdir(parents=True)
    write_json_atomic(folder / "summary.json", {"key": key})
    return Artifact(stage=stage, key=key, fingerprint=write_manifest(folder), path=f"{stage}/{key}")


def _split(root, key: str, cutoff: int | None, period: str = "day") -> Artifact:
    art = _folder(root, "split", key)
    meta = {"protocol": "time_forward", "time_forward": {"period": period, "cutoff": cutoff}} if cutoff is not None else {"protocol": "random"}
    return art.model_copy(update={"meta": meta})


def test_a_new_night_continues_from_the_latest_earlier_cutoff_and_a_rerun_from_what_it_started_from(tmp_path):
    monday, tuesday, wednesday = (_split(tmp_path, f"s{d}", d * 86_400) for d in (1, 2, 3))
    fit_monday, fit_tuesday = _folder(tmp_path, "train", "m"), _folder(tmp_path, "train", "t")
    assert warm_source(tmp_path, "log", PARAMS, monday) is None  # nothing recorded: cold
    record_fit(tmp_path, "log", PARAMS, monday, fit_monday, None)
    start = warm_source(tmp_path, "log", PARAMS, tuesday)
    assert start is not None and start[0].key == "m" and start[1].key == "s1"
    record_fit(tmp_path, "log", PARAMS, tuesday, fit_tuesday, start)
    assert warm_source(tmp_path, "log", PARAMS, wednesday)[0].key == "t"
    again = warm_source(tmp_path, "log", PARAMS, tuesday)  # tuesday rerun: the same start, so the same cache key
    assert again[0].key == "m"
    assert warm_source(tmp_path, "log", PARAMS, monday) is None  # monday started cold, so its rerun does too


def test_other_parameters_periods_and_protocols_never_warm_start(tmp_path):
    monday, tuesday = _split(tmp_path, "s1", 86_400), _split(tmp_path, "s2", 2 * 86_400)
    record_fit(tmp_path, "log", PARAMS, monday, _folder(tmp_path, "train", "m"), None)
    assert warm_source(tmp_path, "log", {"name": "mf", "factors": 16}, tuesday) is None
    assert warm_source(tmp_path, "other-log", PARAMS, tuesday) is None
    assert warm_source(tmp_path, "log", PARAMS, _split(tmp_path, "w2", 2 * 86_400, period="week")) is None
    assert warm_source(tmp_path, "log", PARAMS, _split(tmp_path, "r", None)) is None


def test_a_collected_earlier_fit_means_a_cold_fit(tmp_path):
    import shutil

    monday, tuesday = _split(tmp_path, "s1", 86_400), _split(tmp_path, "s2", 2 * 86_400)
    record_fit(tmp_path, "log", PARAMS, monday, _folder(tmp_path, "train", "m"), None)
    shutil.rmtree(tmp_path / "train" / "m")
    assert warm_source(tmp_path, "log", PARAMS, tuesday) is None
