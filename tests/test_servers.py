"""``recflow.servers``: where the UIs run, and refusing a port that is taken."""

from __future__ import annotations

import json
import os
import socket

import pytest

from recflow.servers import ProjectServers, ServerError, mlflow_backend_uri, running_ui


def test_running_ui_is_read_while_its_process_lives(tmp_path):
    (tmp_path / ".ui.json").write_text(json.dumps({"mlflow_url": "http://127.0.0.1:5000", "pid": os.getpid()}))
    assert running_ui(tmp_path)["mlflow_url"] == "http://127.0.0.1:5000"


def test_a_stale_ui_file_is_ignored(tmp_path):
    (tmp_path / ".ui.json").write_text(json.dumps({"mlflow_url": "http://127.0.0.1:5000", "pid": 2**22 + 12345}))
    assert running_ui(tmp_path) is None
    assert running_ui(tmp_path / "absent") is None


def test_a_taken_port_is_an_error_naming_it(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServerError, match=f"port {port} .* in use; pass --prefect-port"):
            ProjectServers(tmp_path, prefect_port=port, mlflow_port=0)


def test_mlflow_serves_the_store_recflow_run_logs_to(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mlflow_backend_uri(tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere:5000")
    assert mlflow_backend_uri(tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
