"""A normal ``recflow run`` speaks for itself: the libraries' start-up and housekeeping lines go to the
run's log file, and a run whose stderr is a pipe prints a line at least every 10 s."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# TensorFlow's C++ and absl lines, CUDA probes, MLflow's migrations and model validation
NOISE = re.compile(
    r"absl::InitializeLog|^[IWE]\d{4} |cudart_stub|cuInit|oneDNN|TF_ENABLE_ONEDNN_OPTS|alembic|"
    r"mlflow\.store\.db|Creating initial MLflow database|Updating database tables|"
    r"Validating input example|INFO mlflow|WARNING mlflow"
)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """``recflow run`` on the smoke preset with a TensorFlow model, stdout and stderr pipes read line by
    line with the time each line arrived."""
    home = tmp_path_factory.mktemp("quiet") / "artifacts"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECFLOW_", "MLFLOW_", "PREFECT_API"))}
    env.update(RECFLOW_HOME=str(home), PYTHONPATH=str(REPO), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180")
    command = [
        sys.executable,
        "-m",
        "recflow.cli.main",
        "run",
        "--config",
        "configs/smoke.yaml",
        "--set",
        "models=[{name: popular}, {name: two_tower, epochs: 1}]",
    ]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str, str]] = []

    def read(stream, name):
        for line in stream:
            lines.append((time.monotonic(), name, line.rstrip("\n")))

    readers = [threading.Thread(target=read, args=(proc.stdout, "out")), threading.Thread(target=read, args=(proc.stderr, "err"))]
    for reader in readers:
        reader.start()
    proc.wait(timeout=900)
    for reader in readers:
        reader.join()
    lines.sort()
    return proc.returncode, lines, home


def test_the_run_succeeds_and_prints_no_library_noise(smoke_run):
    code, lines, _ = smoke_run
    assert code == 0, "\n".join(text for _, _, text in lines[-40:])
    assert [text for _, _, text in lines if NOISE.search(text)] == []
    assert not any("Traceback" in text for _, _, text in lines)


def test_the_summary_names_the_log_file_that_holds_the_library_lines(smoke_run):
    _, lines, home = smoke_run
    named = [text.split(": ", 1)[1] for _, stream, text in lines if stream == "out" and text.startswith("log (tracebacks, TensorFlow, MLflow): ")]
    assert len(named) == 1
    log = Path(named[0])
    assert log.parent == home / "logs"
    text = log.read_text()
    assert "Creating initial MLflow database tables" in text
    assert "absl::InitializeLog" in text or "cudart_stub" in text or "oneDNN" in text  # TensorFlow's start-up


def test_a_line_arrives_at_least_every_ten_seconds_when_stderr_is_a_pipe(smoke_run):
    _, lines, _ = smoke_run
    times = [t for t, _, _ in lines]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) <= 10.0 + 2.0  # the interval, plus scheduling slack on a loaded machine
    assert any("working" in text for _, _, text in lines)
