"""``recflow run`` operated as a user does: Ctrl-C at any moment, two runs on one root with different Prefect homes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recflow.runtime.rootlock import RootLock

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SMOKE = "configs/smoke.yaml"
SLOW_BIAS = "models.bias.epochs=100000000"  # ALS epochs on the smoke data: trains for many minutes


def start_run(home: Path, prefect_home: Path, *args: str) -> subprocess.Popen:
    """``recflow run`` in its own process group, as a terminal starts it (Ctrl-C reaches the whole group)."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},  # each run starts its own embedded server
        "PYTHONPATH": str(REPO),
        "RECFLOW_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_LOGGING_LEVEL": "INFO",  # the test watches the task runs finish
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",  # a busy test machine
    }
    return subprocess.Popen(
        [sys.executable, "-m", "recflow.cli.main", "run", "-c", SMOKE, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def read_until(proc: subprocess.Popen, needle: str, timeout: float = 300) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    pytest.fail(f"never saw {needle!r}; output:\n{''.join(lines)}")


def ctrl_c(proc: subprocess.Popen) -> tuple[float, list[str]]:
    """SIGINT to the run's process group; seconds until it exited, and what it printed after the signal."""
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    elapsed = time.monotonic() - sent
    return elapsed, proc.stdout.read().splitlines()


def group_is_gone(pgid: int, timeout: float = 5.0) -> bool:
    """No process of the run's group (its embedded Prefect server included) outlives it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def held_root(tmp_path):
    """The root held by another process for the whole test."""
    home = tmp_path / "artifacts"
    code = "import sys\nfrom recflow.runtime.rootlock import RootLock\nRootLock(sys.argv[1]).acquire()\nprint('held', flush=True)\nsys.stdin.readline()"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(home)], env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline() == "held\n"
    yield home, holder
    holder.kill()
    holder.wait()


def test_ctrl_c_while_waiting_for_the_root_stops_the_run_at_once(tmp_path, held_root):
    home, holder = held_root
    run = start_run(home, tmp_path / "prefect")
    waiting = read_until(run, "waiting for it to finish")[-1]
    assert f"is in use by pid {holder.pid} on " in waiting
    elapsed, after = ctrl_c(run)
    assert elapsed < 5
    assert run.returncode == 130
    assert after == [f"interrupted: run stopped, it holds no lock on {home} (finished stages stay cached)"]
    assert group_is_gone(run.pid)


def test_ctrl_c_while_a_model_trains_stops_the_run_within_seconds_and_frees_the_root(tmp_path):
    home = tmp_path / "artifacts"
    run = start_run(home, tmp_path / "prefect", "--set", SLOW_BIAS)
    read_until(run, "Task run 'train[popular]' - Finished")
    time.sleep(2)  # bias is now in its (very long) training loop in a worker thread
    assert RootLock(home).holder().pid == run.pid
    elapsed, after = ctrl_c(run)
    assert elapsed < 5
    assert run.returncode == 130
    assert [line for line in after if line.startswith("interrupted:")] == [
        f"interrupted: run stopped, it holds no lock on {home} (finished stages stay cached)"
    ]
    assert after[-1].startswith("interrupted:")
    assert group_is_gone(run.pid)
    lock = RootLock(home)
    assert lock.try_acquire()
    lock.release()


def test_two_runs_on_one_root_with_different_prefect_homes_run_one_after_the_other(tmp_path):
    home = tmp_path / "artifacts"
    first = start_run(home, tmp_path / "prefect-a")
    deadline = time.monotonic() + 60
    while (RootLock(home).holder() or None) is None or RootLock(home).holder().pid != first.pid:
        assert time.monotonic() < deadline, "the first run never took the root"
        time.sleep(0.1)
    second = start_run(home, tmp_path / "prefect-b")
    waiting = read_until(second, "waiting for it to finish")[-1]
    assert f"is in use by pid {first.pid} on " in waiting
    first_out, _ = first.communicate(timeout=600)
    second_out, _ = second.communicate(timeout=600)
    assert first.returncode == 0, first_out
    assert second.returncode == 0, second_out
    assert re.search(r"^tasks: [1-9]\d* ran, 0 cached$", first_out, re.MULTILINE), first_out
    assert re.search(r"^tasks: 0 ran, [1-9]\d* cached$", second_out, re.MULTILINE), second_out  # it began after the first had written everything
