"""Long-running processes a cluster test starts (a scheduler, workers) and always stops."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def start(commands: list[list[str]], logs: Path, env: dict[str, str]) -> list[subprocess.Popen]:
    """Each command in its own session (so its children stop with it), output in ``logs/<i>.log``, cwd ``logs``."""
    processes = []
    try:
        for i, command in enumerate(commands):
            with open(logs / f"{i}.log", "wb") as log:
                processes.append(subprocess.Popen(command, env=env, cwd=logs, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    except BaseException:
        stop(processes)
        raise
    return processes


def stop(processes: list[subprocess.Popen]) -> None:
    """SIGTERM to each process group, last started first; SIGKILL to any still there after 15 s."""
    for process in reversed(processes):
        os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
