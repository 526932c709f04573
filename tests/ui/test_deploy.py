"""prefect.yaml against a real ``prefect server``: ``make deploy`` registers both deployments with their schedules.

``recflow serve`` builds its deployments from the same file; the last test pins that they agree.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flows.serve import deployment_specs, runner_deployments

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {
    # deployment -> {schedule slug: (cron, parameter overrides)}
    "default": {"nightly-retrain": ("0 2 * * 1-6", {}), "weekly-rebuild": ("0 2 * * 0", {"refresh": True})},
    "ml-1m": {"nightly-retrain": ("30 3 * * 1-6", {}), "weekly-rebuild": ("30 3 * * 0", {"refresh": True})},
}


@pytest.fixture(scope="module")
def deployed(live_env, api) -> dict[str, dict]:
    """``make deploy`` (work pool + ``prefect deploy --all``) from the repo root; the deployments read back."""
    # -o: never reinstall the venv from inside a test (offline), even when the install stamp looks stale
    done = subprocess.run(["make", "-s", "-o", ".venv/.installed", "deploy"], cwd=REPO, env=live_env, capture_output=True, text=True, timeout=500)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return {d["name"]: d for d in api("/deployments/filter", {"limit": 50})}


def _schedules(deployment: dict) -> dict[str, tuple[str, dict]]:
    return {s["slug"]: (s["schedule"]["cron"], s["parameters"]) for s in deployment["schedules"]}


def test_both_configs_are_deployed_with_nightly_and_weekly_schedules(deployed):
    assert {name: _schedules(d) for name, d in deployed.items()} == EXPECTED
    assert all(s["schedule"]["timezone"] == "UTC" and s["active"] for d in deployed.values() for s in d["schedules"])


def test_deployments_run_their_config_on_the_process_pool_one_at_a_time(deployed, api):
    assert deployed["default"]["parameters"] == {"config_path": "configs/default.yaml", "refresh": False}
    assert deployed["ml-1m"]["parameters"] == {"config_path": "configs/ml-1m.yaml", "refresh": False}
    for d in deployed.values():
        assert d["work_pool_name"] == "recflow-process"
        assert d["global_concurrency_limit"]["limit"] == 1
        assert d["concurrency_options"]["collision_strategy"] == "ENQUEUE"
        assert d["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
    pool = api("/work_pools/filter", {"work_pools": {"name": {"any_": ["recflow-process"]}}})[0]
    assert (pool["type"], pool["concurrency_limit"]) == ("process", 1)


def test_recflow_serve_builds_the_same_schedules():
    served = {d.name: {s.slug: (s.schedule.cron, s.parameters) for s in d.schedules} for d in runner_deployments(deployment_specs())}
    assert served == EXPECTED
