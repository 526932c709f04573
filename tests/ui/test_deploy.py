"""prefect.yaml against a real ``prefect server``: ``make deploy`` registers both deployments with their schedules.

``recflow schedules`` builds its deployments from the same file (the same schedules, under names of its
own), and serving then stopping leaves ``make deploy``'s deployments as they were.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
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


def test_recflow_serve_builds_the_same_schedules_under_names_of_its_own():
    served = {d.name: {s.slug: (s.schedule.cron, s.parameters) for s in d.schedules} for d in runner_deployments(deployment_specs())}
    assert served == {f"{name}-served": schedules for name, schedules in EXPECTED.items()}


def test_serving_then_stopping_recflow_serve_leaves_the_deployed_deployments_runnable(deployed, live_env, api, tmp_path):
    # its output goes to a file: a pipe nobody reads fills up and blocks the process on its way out
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        serve = subprocess.Popen(
            [str(Path(sys.executable).parent / "recflow"), "schedules", "-d", "default"],
            cwd=REPO,
            env=live_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            # as from a terminal: a test run started in the background (`cmd &`) ignores SIGINT, and
            # an ignored signal stays ignored across exec, so Python would install no Ctrl-C handler
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        deadline = time.monotonic() + 240
        while "default-served" not in {d["name"] for d in api("/deployments/filter", {"limit": 50})}:
            assert serve.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:] if serve.poll() is not None else "not served in time"
            time.sleep(1)
        serve.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            serve.wait(240)  # Prefect's runner pauses its deployments through the API on the way out: slow on a loaded machine
        except subprocess.TimeoutExpired:
            serve.kill()
            pytest.fail(f"recflow schedules did not stop within 240 s of Ctrl-C; its output:\n{log.read_text()[-3000:]}")
    finally:
        if serve.poll() is None:
            serve.kill()
    after = {d["name"]: d for d in api("/deployments/filter", {"limit": 50})}
    assert after["default-served"]["work_pool_name"] is None
    for name in ("default", "ml-1m"):
        assert not after[name]["paused"]
        assert after[name]["work_pool_name"] == "recflow-process"
        assert after[name]["pull_steps"] == deployed[name]["pull_steps"]
