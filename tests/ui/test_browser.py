"""What a person sees after a run: the Prefect flow-run page and the MLflow run comparison, in headless Chromium.

Each test opens one page, waits until the expected text is rendered (both UIs are single-page
apps that fill in after load), checks run names, task names and metric values, and saves a
screenshot named after what it shows.
"""

from __future__ import annotations

import json
import time

import pytest

pytestmark = [pytest.mark.ui, pytest.mark.slow, pytest.mark.timeout(900)]

WAIT_S = 60


def page_text(browser) -> str:
    return browser.find_element("tag name", "body").text


def wait_for_text(browser, *needles: str, timeout: float = WAIT_S) -> str:
    """The page's text once every needle is in it; on time-out, an assertion naming what is missing."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(browser, timeout, poll_frequency=0.5).until(lambda b: all(n in page_text(b) for n in needles))
    except TimeoutException:
        text = page_text(browser)
        missing = [n for n in needles if n not in text]
        raise AssertionError(f"{browser.current_url}: not on the page after {timeout} s: {missing}\n--- page text ---\n{text[:3000]}") from None
    return page_text(browser)


def click_text(browser, text: str) -> None:
    from selenium.webdriver.common.by import By

    # the innermost element whose whole text is ``text`` (a tab, a button, a link)
    found = browser.find_elements(By.XPATH, f"//*[normalize-space(.)='{text}' and not(*[normalize-space(.)='{text}'])]")
    visible = [e for e in found if e.is_displayed()]
    assert visible, f"{browser.current_url}: nothing to click labelled {text!r}"
    visible[0].click()


def mlflow_shown(value: float) -> str:
    """How MLflow's compare table prints a metric: 3 decimals, trailing zeros dropped."""
    return f"{round(value, 3):.3f}".rstrip("0").rstrip(".")


def test_prefect_flow_run_page_shows_the_run_and_its_tasks(browser, live_servers, smoke_run, screenshots):
    flow_run = smoke_run["flow_run"]
    browser.get(f"{live_servers.urls['prefect_url']}/runs/flow-run/{flow_run['id']}")
    wait_for_text(browser, flow_run["name"], "Completed", f"{len(smoke_run['task_runs'])} Task runs")
    browser.save_screenshot(str(screenshots / "prefect-flow-run.png"))

    click_text(browser, "Task Runs")
    names = [
        "locate[synthetic-smoke]",
        "ingest[synthetic-smoke]",
        "split[user_random]",
        "features",
        "train[popular]",
        "train[bias]",
        "evaluate[popular]",
        "evaluate[bias]",
        "track[mlflow]",
        "report",
        "catalogue",
        "champion",
    ]  # the tail (MLflow, run report, catalogue, champion) is tasks too
    text = wait_for_text(browser, *names)
    assert "dataset:synthetic-smoke" in text
    browser.save_screenshot(str(screenshots / "prefect-task-runs.png"))


def test_prefect_artifact_page_shows_every_models_metrics(browser, live_servers, smoke_run, screenshots, api):
    artifact = api("/artifacts/filter", {"artifacts": {"key": {"any_": ["recflow-synthetic-smoke-metrics"]}}, "sort": "CREATED_DESC", "limit": 1})[0]
    assert artifact["flow_run_id"] == smoke_run["flow_run"]["id"]
    rows = {row["model"]: row for row in json.loads(artifact["data"])}
    browser.get(f"{live_servers.urls['prefect_url']}/artifacts/artifact/{artifact['id']}")
    expected = [str(rows["bias"]["recall_at_10"]), str(rows["popular"]["recall_at_10"]), str(rows["bias"]["rmse"])]
    wait_for_text(browser, "recflow-synthetic-smoke-metrics", "popular", "bias", *expected)
    browser.save_screenshot(str(screenshots / "prefect-metrics-artifact.png"))


_SCROLLED_INTO_VIEW = """
const cell = [...document.querySelectorAll('td, td *')].filter(e => e.textContent.trim() === arguments[0]).pop();
if (!cell) return false;
cell.scrollIntoView({block: 'center', inline: 'center'});
const r = cell.getBoundingClientRect();
let box = cell.parentElement;
while (box && getComputedStyle(box).overflowX === 'visible') box = box.parentElement;
const b = box ? box.getBoundingClientRect() : {left: 0, right: innerWidth};
return r.left >= Math.max(0, b.left) && r.right <= Math.min(innerWidth, b.right) && r.top >= 0 && r.bottom <= innerHeight;
"""


def test_prefect_metrics_artifact_shows_each_metrics_confidence_interval(browser, live_servers, smoke_run, screenshots, api):
    artifact = api("/artifacts/filter", {"artifacts": {"key": {"any_": ["recflow-synthetic-smoke-metrics"]}}, "sort": "CREATED_DESC", "limit": 1})[0]
    bias = next(row for row in json.loads(artifact["data"]) if row["model"] == "bias")
    assert bias["recall_at_10_ci"].startswith("[")
    browser.get(f"{live_servers.urls['prefect_url']}/artifacts/artifact/{artifact['id']}")
    wait_for_text(browser, "recall_at_10_ci", bias["recall_at_10_ci"])
    # the table scrolls sideways: bring the champion metric's CI cell into view as a person would
    assert browser.execute_script(_SCROLLED_INTO_VIEW, bias["recall_at_10_ci"]), f"{bias['recall_at_10_ci']} is not on screen"
    browser.save_screenshot(str(screenshots / "prefect-metrics-artifact-ci.png"))


def test_prefect_trend_artifact_shows_each_models_metric_and_interval_per_run(browser, live_servers, smoke_run, screenshots, api):
    artifact = api("/artifacts/filter", {"artifacts": {"key": {"any_": ["recflow-synthetic-smoke-trend"]}}, "sort": "CREATED_DESC", "limit": 1})[0]
    assert artifact["flow_run_id"] == smoke_run["flow_run"]["id"]
    rows = {row["model"]: row for row in json.loads(artifact["data"])}
    bias = smoke_run["models"]["bias"].data.metrics
    assert rows["bias"]["recall_at_10_ci"] == f"[{bias['recall_at_10_ci_low']:.4f}, {bias['recall_at_10_ci_high']:.4f}]"
    browser.get(f"{live_servers.urls['prefect_url']}/artifacts/artifact/{artifact['id']}")
    wait_for_text(
        browser,
        "recflow-synthetic-smoke-trend",
        "run_date",
        "recall_at_10_ci",
        rows["bias"]["recall_at_10_ci"],
        rows["popular"]["recall_at_10_ci"],
        rows["bias"]["pipeline_run"],
    )
    browser.save_screenshot(str(screenshots / "prefect-trend-artifact.png"))


def test_mlflow_shows_the_trend_plot_logged_by_compare_trend(browser, live_servers, live_env, smoke_run, screenshots):
    import subprocess
    import sys
    from pathlib import Path

    from mlflow import MlflowClient

    from tasks.reporting import TRAINING_VIEW

    done = subprocess.run(
        [str(Path(sys.executable).parent / "recflow"), "compare", "--trend", "--log"], env=live_env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "trend logged to MLflow" in done.stdout, done.stdout + done.stderr
    experiment = smoke_run["experiment"]
    run = MlflowClient(live_servers.urls["mlflow_url"]).search_runs(
        [experiment.experiment_id], "tags.`recflow.kind` = 'trend'", order_by=["attributes.start_time DESC"], max_results=1
    )[0]
    assert run.info.run_name == "trend recall_at_10"
    browser.get(
        f"{live_servers.urls['mlflow_url']}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
        f"/artifacts/trend/trend_recflow-synthetic-smoke_recall_at_10.png?{TRAINING_VIEW}"
    )
    wait_for_text(browser, "trend recall_at_10", "trend_recflow-synthetic-smoke_recall_at_10.png")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # MLflow loads the artifact and shows it as a blob: image
    WebDriverWait(browser, WAIT_S).until(
        lambda b: any(
            i.is_displayed() and (i.get_attribute("src") or "").startswith("blob:") and b.execute_script("return arguments[0].naturalWidth", i) > 0
            for i in b.find_elements(By.TAG_NAME, "img")
        )
    )
    browser.save_screenshot(str(screenshots / "mlflow-trend-plot.png"))


# MLflow's compare tables are virtualised grids: a names grid kept level with a scrolling values
# grid, each cell absolutely positioned at its row's ``top``. To read a row as a person would: wheel
# the values grid until the row's name is in view, then take every cell at that ``top``.
_VISIBLE_ROW_TOP = """
const own = e => [...e.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent).join('').trim();
const cellOf = e => { while (e && !(e.style && e.style.position === 'absolute' && e.style.top)) e = e.parentElement; return e; };
const label = [...document.querySelectorAll('.ReactVirtualized__Grid *')].filter(e => own(e) === arguments[0]).pop();
if (!label || !cellOf(label)) return null;
const r = label.getBoundingClientRect(), g = label.closest('.ReactVirtualized__Grid').getBoundingClientRect();
return r.top >= g.top && r.bottom <= g.bottom ? cellOf(label).style.top : null;
"""
_VALUES_GRID = """
return [...document.querySelectorAll('.ReactVirtualized__Grid')].filter(g => getComputedStyle(g).overflowY === 'auto').pop();
"""
_ROW_CELLS = """
return [...document.querySelectorAll('.ReactVirtualized__Grid [style]')]
  .filter(e => e.style.position === 'absolute' && e.style.top === arguments[0])
  .map(e => [e.textContent.trim(), Math.round(e.getBoundingClientRect().top)]);
"""


def mlflow_metric_row(browser, metric: str) -> list[str]:
    """The cells of ``metric``'s row in the compare page's Metrics table: its name and one value per run."""
    import time

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

    grid = browser.execute_script(_VALUES_GRID)
    assert grid is not None, f"{browser.current_url}: no metrics table"
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", grid)
    for _ in range(40):
        top = browser.execute_script(_VISIBLE_ROW_TOP, metric)
        if top is not None:
            # the names grid follows the values grid a wheel event late, and at the very bottom the values grid
            # (with its horizontal scrollbar) scrolls 15px further than the names grid: back off a little, then
            # 1px nudges until the row is level on screen
            for dy in (-30, 1, -1, 1, -1, 1):
                ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(grid), 0, dy).perform()
                time.sleep(0.4)
                cells = browser.execute_script(_ROW_CELLS, top)
                ys = [y for _, y in cells]
                if max(ys) - min(ys) <= 2:
                    return [text for text, _ in cells]
            raise AssertionError(f"row {metric!r} is not level on screen: {cells}")
        ActionChains(browser).scroll_from_origin(ScrollOrigin.from_element(grid), 0, 90).perform()
        time.sleep(0.2)
    raise AssertionError(f"{browser.current_url}: no row {metric!r} in the metrics table")


def test_mlflow_compare_page_shows_both_models_metrics(browser, live_servers, smoke_run, screenshots):
    from tasks.reporting import mlflow_compare_url

    models = smoke_run["models"]
    url = mlflow_compare_url(live_servers.urls["mlflow_url"], smoke_run["experiment"].experiment_id, [r.info.run_id for r in models.values()])
    browser.get(url)
    text = wait_for_text(browser, f"Comparing {len(models)} Runs", "Run Name:", "popular", "bias", "coverage_at_10")
    assert models["bias"].info.run_id in text and models["popular"].info.run_id in text
    recall = mlflow_metric_row(browser, "recall_at_10")
    assert sorted(recall) == sorted(["recall_at_10", *(mlflow_shown(models[m].data.metrics["recall_at_10"]) for m in ("popular", "bias"))])
    browser.save_screenshot(str(screenshots / "mlflow-compare-runs.png"))
    rmse = mlflow_metric_row(browser, "rmse")
    assert "rmse" in rmse and mlflow_shown(models["bias"].data.metrics["rmse"]) in rmse  # popular only ranks: NaN


def test_mlflow_compare_pages_default_plot_is_on_the_algorithm_and_family_coloured_by_the_champion_metric(browser, live_servers, smoke_run, screenshots):
    """The parallel-coordinates plot MLflow draws before anyone picks its axes."""
    from selenium.webdriver.support.ui import WebDriverWait

    from tasks.reporting import mlflow_compare_url

    models = smoke_run["models"]
    browser.get(mlflow_compare_url(live_servers.urls["mlflow_url"], smoke_run["experiment"].experiment_id, [r.info.run_id for r in models.values()]))
    wait_for_text(browser, f"Comparing {len(models)} Runs")
    titles = "return [...document.querySelectorAll('.parcoords .axis-title')].map(e => e.textContent)"
    WebDriverWait(browser, WAIT_S, poll_frequency=0.5).until(lambda b: len(b.execute_script(titles)) >= 3)
    axes = browser.execute_script(titles)
    assert axes[:2] == ["algorithm", "family"] and axes[-1] == "champion_metric/recall_at_10", axes
    browser.execute_script("document.querySelector('.parcoords').scrollIntoView({block: 'center'})")
    time.sleep(0.5)
    browser.save_screenshot(str(screenshots / "mlflow-compare-parallel-coordinates.png"))


def test_mlflow_opens_the_experiment_in_its_model_training_view(browser, live_servers, smoke_run, screenshots):
    from mlflow import MlflowClient

    from tasks.reporting import mlflow_experiment_url

    experiment = smoke_run["experiment"]
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    parent = MlflowClient(live_servers.urls["mlflow_url"]).get_run(smoke_run["models"]["bias"].data.tags["mlflow.parentRunId"])
    browser.get(mlflow_experiment_url(live_servers.urls["mlflow_url"], experiment.experiment_id))
    text = wait_for_text(browser, "Model training", "Runs", parent.info.run_name)
    assert "Token Usage" not in text and "Traces\n0" not in text  # not the GenAI overview
    assert "/runs" in browser.current_url
    browser.save_screenshot(str(screenshots / "mlflow-experiment-training-view.png"))


def test_run_summary_links_prefect_to_mlflow(live_servers, smoke_run, api):
    summary = api("/artifacts/filter", {"artifacts": {"key": {"any_": ["recflow-synthetic-smoke-summary"]}}, "sort": "CREATED_DESC", "limit": 1})[0]
    bias = smoke_run["models"]["bias"]
    assert f"{live_servers.urls['mlflow_url']}/#/experiments/{bias.info.experiment_id}/runs/{bias.info.run_id}" in summary["data"]


def test_prefect_run_graph_draws_every_task_as_its_own_node(browser, live_servers, smoke_run, screenshots, api):
    """The graph API the UI draws from encapsulates no task in another; the page shows the graph."""
    import urllib.request

    flow_run = smoke_run["flow_run"]
    with urllib.request.urlopen(f"{live_servers.urls['prefect_api_url']}/flow_runs/{flow_run['id']}/graph-v2", timeout=30) as response:
        nodes = json.load(response)["nodes"]
    assert {node["label"]: node["encapsulating"] for _, node in nodes if node["encapsulating"]} == {}
    assert len(nodes) == len(smoke_run["task_runs"])
    browser.get(f"{live_servers.urls['prefect_url']}/runs/flow-run/{flow_run['id']}")
    wait_for_text(browser, flow_run["name"], "Completed")
    browser.find_element("css selector", "canvas")  # the run graph
    browser.save_screenshot(str(screenshots / "prefect-run-graph.png"))


def test_mlflow_home_opens_a_recflow_experiment_in_the_training_view(browser, live_servers, smoke_run, screenshots):
    """From MLflow's own home page, as a new user clicks: a browser that never chose a view lands on the runs table."""
    experiment = smoke_run["experiment"]
    browser.get(live_servers.urls["mlflow_url"] + "/")
    browser.execute_script("window.localStorage.clear()")  # a first visit: no view chosen yet
    browser.get(live_servers.urls["mlflow_url"] + "/")
    wait_for_text(browser, experiment.name)
    click_text(browser, experiment.name)
    parent = smoke_run["models"]["bias"].data.tags["mlflow.parentRunId"]
    from mlflow import MlflowClient

    text = wait_for_text(browser, "Runs", MlflowClient(live_servers.urls["mlflow_url"]).get_run(parent).info.run_name)
    assert "Token Usage" not in text and "/runs" in browser.current_url  # not the GenAI overview
    browser.save_screenshot(str(screenshots / "mlflow-home-to-training-view.png"))


def test_mlflow_runs_table_shows_the_metric_columns_and_each_models_headline_on_the_parent(browser, live_servers, smoke_run, screenshots):
    from tasks.reporting import mlflow_experiment_url

    browser.get(mlflow_experiment_url(live_servers.urls["mlflow_url"], smoke_run["experiment"].experiment_id))
    wait_for_text(browser, "recall_at_10", "ndcg_at_10", "recall_at_10/bias", "recall_at_10/popular")
    browser.save_screenshot(str(screenshots / "mlflow-runs-table-metric-columns.png"))


def test_mlflow_chart_search_for_recall_at_10_finds_the_model_metric_first(browser, live_servers, smoke_run, screenshots):
    from selenium.webdriver.common.by import By

    from recflow.experiments.tracking import CHAMPION_METRIC_PREFIX
    from tasks.reporting import mlflow_experiment_url

    browser.get(mlflow_experiment_url(live_servers.urls["mlflow_url"], smoke_run["experiment"].experiment_id) + "&compareRunsMode=CHART")
    wait_for_text(browser, "Model metrics")
    search = next(e for e in browser.find_elements(By.CSS_SELECTOR, "input") if "chart" in (e.get_attribute("placeholder") or "").lower())
    search.send_keys("recall_at_10")
    text = wait_for_text(browser, "recall_at_10")
    from mlflow import MlflowClient

    # the chart view lists the runs beside the charts: a run named after the metric (``trend recall_at_10``,
    # logged by ``compare --trend --log``) is a run, not a chart
    runs = {r.info.run_name for r in MlflowClient(live_servers.urls["mlflow_url"]).search_runs([smoke_run["experiment"].experiment_id])}
    titles = [line for line in text.splitlines() if "recall_at_10" in line and line not in runs]
    assert titles and titles[0].removeprefix(CHAMPION_METRIC_PREFIX).startswith("recall_at_10"), titles  # the model metric, or its champion alias
    assert not any("index" in t for t in titles), titles  # no index metric matches a model metric's name
    browser.save_screenshot(str(screenshots / "mlflow-chart-search-recall.png"))
