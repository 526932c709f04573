"""Live servers, a real smoke run against them, and headless Chromium.

One Prefect server and one MLflow server for the whole package (``recflow.runtime.servers``, free ports
on 127.0.0.1, a temporary artifacts root), the smoke pipeline run once through the real CLI
against both, and one browser. Screenshots go to ``$RECFLOW_SCREENSHOTS`` or
``<repo>/artifacts/screenshots`` (git-ignored).

Browser: Debian's ``chromium`` + ``chromedriver`` (``apt-get install chromium chromium-driver``;
``.ci/run`` installs them), driven by Selenium. Override with ``$RECFLOW_CHROMIUM`` /
``$RECFLOW_CHROMEDRIVER``. Without any chromium the ``ui`` tests skip; a chromium without its
driver is an error, since that is a broken install rather than a missing browser.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER_CANDIDATES = ("chromedriver", "/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver")


def find_chromium() -> str | None:
    if os.environ.get("RECFLOW_CHROMIUM"):
        return os.environ["RECFLOW_CHROMIUM"]
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def find_chromedriver() -> str | None:
    if os.environ.get("RECFLOW_CHROMEDRIVER"):
        return os.environ["RECFLOW_CHROMEDRIVER"]
    return next((path for path in map(shutil.which, DRIVER_CANDIDATES) if path), None)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(os.environ.get("RECFLOW_SCREENSHOTS") or REPO / "artifacts" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def browser():
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium found (apt-get install chromium chromium-driver, or set RECFLOW_CHROMIUM)")
    driver_path = find_chromedriver()
    if driver_path is None:
        pytest.fail(f"chromium is at {binary} but chromedriver is missing: apt-get install chromium-driver (or set RECFLOW_CHROMEDRIVER)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-smooth-scrolling", "--window-size=1600,1100"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def live_servers(tmp_path_factory):
    """Prefect + MLflow servers on free loopback ports, state under a temporary artifacts root."""
    from recflow.runtime.servers import ProjectServers

    root = tmp_path_factory.mktemp("ui") / "artifacts"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # else the MLflow server would open that store, not root's
        with ProjectServers(root, prefect_port=0, mlflow_port=0) as servers:
            yield servers


def server_env(servers, **extra: str) -> dict[str, str]:
    """What a user's shell has after ``recflow ui``: runs go to these servers, artifacts to this root."""
    urls = servers.urls
    return {
        **os.environ,
        "PREFECT_API_URL": urls["prefect_api_url"],
        "MLFLOW_TRACKING_URI": urls["mlflow_url"],
        "RECFLOW_HOME": urls["root"],
        "RECFLOW_PROGRESS": "0",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        **extra,
    }


def prefect_api(servers, path: str, body: dict) -> list[dict]:
    request = urllib.request.Request(servers.urls["prefect_api_url"] + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.fixture(scope="session")
def live_env(live_servers) -> dict[str, str]:
    return server_env(live_servers)


@pytest.fixture(scope="session")
def api(live_servers):
    """POST a filter to the live Prefect API: ``api("/artifacts/filter", {...})``."""
    return lambda path, body: prefect_api(live_servers, path, body)


@pytest.fixture(scope="session")
def smoke_run(live_servers):
    """``recflow run --config configs/smoke.yaml`` against the live servers; what it made, read back from both."""
    from mlflow import MlflowClient

    done = subprocess.run(
        [str(Path(sys.executable).parent / "recflow"), "run", "--config", "configs/smoke.yaml"],
        cwd=REPO,
        env=server_env(live_servers),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    flow_run = prefect_api(live_servers, "/flow_runs/filter", {"sort": "START_TIME_DESC", "limit": 1})[0]
    task_runs = prefect_api(live_servers, "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run["id"]]}}, "limit": 100})
    client = MlflowClient(live_servers.urls["mlflow_url"])
    experiment = client.get_experiment_by_name("recflow/synthetic-smoke")
    models = {r.data.tags["model"]: r for r in client.search_runs([experiment.experiment_id]) if "model" in r.data.tags}
    return {"flow_run": flow_run, "task_runs": task_runs, "experiment": experiment, "models": models, "output": done.stdout}
