"""Choosing where tasks run: the config's ``runner:`` section and ``recflow run --dask [ADDRESS]`` (no cluster started)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from recflow.cli.main import app
from recflow.experiments.config import ConfigError, load_config
from recflow.runtime.config import RunnerConfig


def test_the_default_runner_is_the_thread_pool():
    from flows.pipeline import runner_options

    assert load_config().runner.kind == "threads"
    assert runner_options(None, None, root=None, dask=None) == {}  # `make run`: no Dask


def test_an_unknown_runner_key_is_an_error_naming_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("runner:\n  workers: 4\n")
    with pytest.raises(ConfigError, match="unknown key 'runner.workers'"):
        load_config(bad)


def test_an_address_without_a_scheme_is_an_error():
    with pytest.raises(ConfigError, match="runner.address=host:8786: .*expected e.g. tcp://host:8786"):
        load_config(None, ["runner.address=host:8786"])


@pytest.mark.parametrize(
    ("dask", "kind", "address"),
    [(None, "threads", None), ("local", "dask", None), ("tcp://10.0.0.5:8786", "dask", "tcp://10.0.0.5:8786")],
)
def test_the_command_lines_dask_option_overrides_the_config(dask, kind, address):
    from tasks.runners import resolved_runner

    runner = resolved_runner(RunnerConfig(n_workers=3), dask)
    assert (runner.kind, runner.address, runner.n_workers) == (kind, address, 3)


def test_a_local_cluster_binds_loopback_with_the_configured_size():
    from tasks.runners import RecflowDaskRunner, task_runner_for

    runner = task_runner_for(RunnerConfig(kind="dask", n_workers=3, threads_per_worker=2), root="/data/artifacts")
    assert isinstance(runner, RecflowDaskRunner) and runner.address is None
    kwargs = runner.cluster_kwargs
    assert (kwargs["n_workers"], kwargs["threads_per_worker"], kwargs["processes"], kwargs["host"]) == (3, 2, True, "127.0.0.1")
    assert kwargs["dashboard_address"].startswith("127.0.0.1:") and kwargs["scheduler_kwargs"] == {"dashboard": False}
    assert runner.duplicate() == runner  # Prefect runs each flow run on a duplicate: nothing may be lost


def test_dask_takes_an_optional_address_on_the_command_line():
    """``--dask`` alone (last, or before another option) means a LocalCluster; a bad address exits 2 before any run."""
    runner = CliRunner()
    result = runner.invoke(app, ["run", "--dask", "host:8786", "--config", "configs/smoke.yaml"])
    assert result.exit_code == 2
    assert "--dask 'host:8786': expected a scheduler address such as tcp://host:8786" in result.output
    bad = runner.invoke(app, ["run", "--dask", "--config", "missing.yaml"])
    assert bad.exit_code == 2 and "config file not found: missing.yaml" in bad.output  # --dask took no value
    last = runner.invoke(app, ["run", "--config", "missing.yaml", "--dask"])
    assert last.exit_code == 2 and "config file not found: missing.yaml" in last.output


def test_workers_get_an_object_storage_root_by_its_url_and_a_local_root_by_its_path(monkeypatch, tmp_path):
    from recflow.runtime.cluster import run_variables
    from recflow.runtime.store import artifacts_root

    monkeypatch.setenv("RECFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RECFLOW_HOME", "s3://bucket/prefix")
    assert run_variables(artifacts_root(), None)["RECFLOW_HOME"] == "s3://bucket/prefix"

    monkeypatch.setenv("RECFLOW_HOME", str(tmp_path / "root"))
    assert run_variables(artifacts_root(), None)["RECFLOW_HOME"] == str((tmp_path / "root").resolve())
