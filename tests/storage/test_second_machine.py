"""A machine that never ran the pipeline answers from ``RECFLOW_HOME=s3://...`` and the tracking store alone.

One run on the loopback S3 server (moto) with its tracking store outside the mirror (a team's
tracking server stands there); then a second machine: a fresh, empty ``RECFLOW_CACHE_DIR``, hence
an empty mirror, and nothing else. ``recflow recommend`` and ``recflow compare`` answer there.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from flows.pipeline import run_pipeline
from recflow.cli.main import app
from recflow.runtime import storage
from recflow.runtime.store import artifacts_root

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SMOKE = "configs/smoke.yaml"


@pytest.fixture(scope="module")
def first_machine(s3):
    result = run_pipeline(SMOKE)
    assert result["serving"]["champion"]["moved"], result["serving"]
    return result


@pytest.fixture
def second_machine(first_machine, tmp_path, monkeypatch):
    """Another machine's empty mirror: only the bucket's URL and the tracking store are shared."""
    monkeypatch.setenv("RECFLOW_CACHE_DIR", str(tmp_path / "second-machine-cache"))
    assert not artifacts_root().exists()
    return first_machine


def test_the_run_record_champion_pointer_and_run_log_are_in_the_bucket(s3, first_machine):
    names = {path[len(s3.path()) + 1 :].split("/")[0] + "/" + path.rsplit("/", 1)[1] for path in s3.fs.find(s3.path("serving"))}
    assert names == {f"serving/{first_machine['tracking']['run_id']}.json", "serving/recflow-synthetic-smoke.json"}
    (log,) = s3.fs.find(s3.path("logs"))
    assert log.endswith("-smoke.log")


def test_recommend_on_a_machine_that_never_ran_the_pipeline(second_machine):
    result = CliRunner().invoke(app, ["recommend", "--user", "1", "-k", "3"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    champion = second_machine["serving"]["champion"]
    assert lines[0] == f"Top 3 for user 1  [{champion['model']}, model scores; recflow-synthetic-smoke@champion v{champion['version']}]"
    assert [line.split()[0] for line in lines if line.split()[0].isdigit()] == ["1", "2", "3"]  # three movies, ranked
    assert (artifacts_root() / "serving" / "champions" / "recflow-synthetic-smoke.json").is_file()


def test_compare_on_a_machine_that_never_ran_the_pipeline(second_machine):
    result = CliRunner().invoke(app, ["compare", "--last", "1"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "popular" in result.output and "bias" in result.output
    assert f"champion recflow-synthetic-smoke v{second_machine['serving']['champion']['version']}" in result.output


def test_a_local_root_publishes_nothing(tmp_path):
    path = tmp_path / "serving" / "runs" / "r.json"
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    storage.publish_file(tmp_path, path)  # no bucket: nothing to do, nothing raised
    storage.fetch_folder(tmp_path, "serving")
    assert path.read_text() == "{}"
