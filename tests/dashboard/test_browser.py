"""The dashboard in a real browser: Debian's headless Chromium driven by Playwright.

Skipped, with the reason, where ``/usr/bin/chromium`` or Playwright is missing (``.ci/run``
installs Chromium). A dashboard server (uvicorn, in a thread) serves a copy of the finished
run's store; one test runs a second experiment into the same store and watches the pages
follow it without a reload.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboard.conftest import EXAMPLE, NAME, Run, run_experiment
from tunery.dashboard import DashboardSettings, create_app
from tunery.store import open_store

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
KINDS = (
    "history",
    "intermediate",
    "importance",
    "edf",
    "parallel",
    "slice",
    "contour",
    "rank",
    "timeline",
)

if not CHROMIUM.exists():
    pytest.skip(
        f"Chromium is not installed at {CHROMIUM} (apt-get install chromium; .ci/run does)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(
    finished_run: Run, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Run]]:
    import uvicorn

    folder = tmp_path_factory.mktemp("browser") / "run"
    shutil.copytree(finished_run.folder, folder, symlinks=True)
    run = Run(folder, f"sqlite:///{folder / 'tunery.db'}")
    store = open_store(run.db_url)
    for trial in store.list_trials(NAME):  # the copied logs, not the original run's
        log = Path(trial.runner_handle["log"])
        moved = folder / log.relative_to(finished_run.folder)
        store.update_trial(trial.name, runner_handle={**trial.runner_handle, "log": str(moved)})
    app = create_app(store, DashboardSettings(workdir=run.workdir, db_url=run.db_url))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}", run
    server.should_exit = True
    thread.join(10)
    store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_default_timeout(20000)
    yield page
    context.close()
    assert not errors


def open_page(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready]")


def visible_rows(page: Any, table: str) -> list[str]:
    return page.eval_on_selector_all(f"{table} tbody tr", "rows => rows.map(r => r.dataset.name)")


def test_experiments_page_lists_searches_and_filters(served: tuple[str, Run], page: Any) -> None:
    base, _ = served
    open_page(page, base + "/")
    assert NAME in visible_rows(page, "#experiments")
    row = page.locator(f'#experiments tr[data-name="{NAME}"]')
    assert "Succeeded" in row.inner_text() and "10/10" in row.inner_text()
    page.fill("#search", "no-such-experiment")
    assert visible_rows(page, "#experiments") == []
    page.fill("#search", "median")
    assert NAME in visible_rows(page, "#experiments")
    page.select_option("#status-filter", "Failed")
    assert NAME not in visible_rows(page, "#experiments")
    page.select_option("#status-filter", "Succeeded")
    page.click(f"text={NAME}")
    page.wait_for_url(f"**/experiments/{NAME}")
    page.wait_for_selector("body[data-ready]")


def test_experiment_page_draws_every_plot(served: tuple[str, Run], page: Any) -> None:
    base, _ = served
    open_page(page, f"{base}/experiments/{NAME}")
    assert "Succeeded" in page.inner_text("#summary")
    assert not page.is_visible("#actions")  # read-only: no action buttons
    for kind in KINDS:
        figure = page.locator(f"#plot-{kind}")
        figure.scroll_into_view_if_needed()
        page.wait_for_function(
            "f => f.dataset.rendered && f.dataset.stale === '0'", arg=figure.element_handle()
        )
        assert figure.get_attribute("data-rendered") not in ("error", "0"), figure.get_attribute(
            "data-error"
        )
        assert figure.locator(".main-svg").count() > 0, f"{kind}: plotly drew nothing"
    page.wait_for_function(
        "document.getElementById('yaml').textContent.includes('kind: Experiment')"
    )
    assert len(visible_rows(page, "#trials")) == 10


def test_experiment_page_is_usable_and_drawn_before_plotly_arrives(
    served: tuple[str, Run], page: Any
) -> None:
    """plotly.js is held back: the summary, the table (sorting, links) and the first screen's
    plots (canvas previews, not blank) are there; once it arrives (a pointer on a plot asks for
    it) plotly takes the plots over."""
    base, _ = served
    held: list[Any] = []
    released = threading.Event()

    def hold(route: Any) -> None:
        if released.is_set():
            route.continue_()
        else:
            held.append(route)

    page.route("**/vendor/plotly*.js", hold)
    open_page(page, f"{base}/experiments/{NAME}")
    page.hover("#plot-intermediate .chart")  # asks for plotly.js
    page.wait_for_function("document.querySelector('script[src*=\"/vendor/plotly\"]')")
    assert page.evaluate("window.Plotly === undefined")
    assert "Succeeded" in page.inner_text("#summary")
    assert len(visible_rows(page, "#trials")) == 10
    page.locator('#trials th[data-column="number"]').click()
    page.wait_for_selector('#trials th[data-column="number"]:has-text("▼")')
    first_screen = page.eval_on_selector_all(
        ".plots figure[data-preview]", "fs => fs.map(f => f.dataset.kind)"
    )
    assert "history" in first_screen and "intermediate" in first_screen
    inked = page.eval_on_selector(
        "#plot-history canvas.preview",
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""",
    )
    assert inked > 1000, "the history preview is blank"
    assert page.locator("#plot-history[data-rendered]").count() == 0

    released.set()
    for route in held:
        route.continue_()
    page.wait_for_selector("body[data-plotly]")
    assert held, "the page did not ask for plotly.js"
    for kind in first_screen:
        figure = page.locator(f"#plot-{kind}")
        assert figure.get_attribute("data-rendered") not in (None, "error", "0")
        assert figure.locator(".main-svg").count() > 0
        assert figure.locator("canvas.preview").count() == 0
    href = page.locator("#trials tbody a").first.get_attribute("href")
    page.locator("#trials tbody a").first.click()
    page.wait_for_url(f"**{href}")


def test_experiment_page_runs_plotly_only_when_a_plot_is_pointed_at(
    served: tuple[str, Run], page: Any
) -> None:
    """The first screen is drawn by the previews and plotly.js is not run (only prefetched)
    until the pointer is on a plot; then plotly draws that plot and the others on screen, and
    its hover works."""
    base, _ = served
    scripts: list[str] = []
    page.on("request", lambda r: scripts.append(r.url) if r.resource_type == "script" else None)
    open_page(page, f"{base}/experiments/{NAME}")
    assert page.evaluate("window.Plotly === undefined")
    assert not [url for url in scripts if "/vendor/plotly" in url]
    assert page.locator(".plots figure[data-preview]").count() >= 2
    page.hover("#plot-history .chart")
    page.wait_for_selector("body[data-plotly]")
    assert [url for url in scripts if "/vendor/plotly-" in url], "not the content-hashed URL"
    assert page.locator("#plot-history canvas.preview").count() == 0
    assert page.locator("#plot-history .main-svg").count() > 0
    point = page.locator("#plot-history .scatterlayer .point").first.bounding_box()
    assert point is not None
    page.mouse.move(point["x"] + point["width"] / 2, point["y"] + point["height"] / 2)
    page.wait_for_selector("#plot-history .hoverlayer .hovertext")  # plotly's hover label


def test_trial_table_sorts_filters_and_links_to_trials(served: tuple[str, Run], page: Any) -> None:
    base, run = served
    store = open_store(run.db_url)
    try:
        best = max(
            float(m["latest"])
            for t in store.list_trials(NAME)
            for m in t.observation.get("metrics", [])
        )
        stopped = sum(t.condition.value == "EarlyStopped" for t in store.list_trials(NAME))
    finally:
        store.close()
    open_page(page, f"{base}/experiments/{NAME}")
    header = page.locator('#trials th[data-column="metrics.accuracy"]')
    header.click()
    page.wait_for_selector('#trials th[data-column="metrics.accuracy"]:has-text("▲")')
    page.locator('#trials th[data-column="metrics.accuracy"]').click()
    page.wait_for_selector('#trials th[data-column="metrics.accuracy"]:has-text("▼")')
    cells = page.eval_on_selector_all(
        "#trials tbody tr td:last-child", "cells => cells.map(c => c.textContent)"
    )
    assert float(cells[0]) == pytest.approx(best, rel=1e-5)
    page.select_option("#trial-condition", "EarlyStopped")
    page.wait_for_function(f"document.getElementById('trials').dataset.matched === '{stopped}'")
    badges = page.eval_on_selector_all("#trials tbody .badge", "b => b.map(x => x.textContent)")
    assert badges == ["EarlyStopped"] * stopped
    first = visible_rows(page, "#trials")[0]
    page.fill("#trial-search", first)
    page.wait_for_function("document.getElementById('trials').dataset.matched === '1'")
    page.click(f"#trials a:has-text('{first}')")
    page.wait_for_url(f"**/trials/{first}")
    page.wait_for_selector("body[data-ready]")
    assert page.locator("#parameters tr").count() == 2
    assert "EarlyStopped" in page.inner_text("#trial-summary")
    page.wait_for_function("document.getElementById('log').textContent.includes('epoch=1 ')")
    assert page.locator("#observations tbody tr").count() >= 3
    page.wait_for_selector("#plot-observations[data-rendered='1']")


def running_trials(run: Run, name: str, timeout: float = 30.0) -> list[str]:
    """The names of ``name``'s running trials, waiting until there is one."""
    store = open_store(run.db_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(KeyError):  # not created yet
                found = [t.name for t in store.list_trials(name) if t.condition.value == "Running"]
                if found:
                    return found
            time.sleep(0.1)
    finally:
        store.close()
    raise AssertionError(f"{name} has no running trial after {timeout} s")


def test_a_running_experiment_updates_live(served: tuple[str, Run], browser: Any) -> None:
    base, run = served
    document = yaml.safe_load((EXAMPLE / "median-stop.yaml").read_text())
    document["metadata"]["name"] = "live"
    spec = document["spec"]
    spec.update(maxTrialCount=2, parallelTrialCount=1)
    spec.pop("earlyStopping")
    container = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["command"] = [*container["command"], "--epochs=80"]  # 0.1 s per epoch
    (run.folder / "live.yaml").write_text(yaml.safe_dump(document))
    proc = run_experiment(run.folder, "live.yaml", wait=False)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        running_trials(run, "live")
        experiment = context.new_page()
        experiment.set_default_timeout(60000)
        open_page(experiment, f"{base}/experiments/live")
        assert "Running" in experiment.inner_text("#summary")

        trial = context.new_page()
        trial.set_default_timeout(60000)
        open_page(trial, f"{base}/trials/{running_trials(run, 'live')[0]}")
        trial.wait_for_function(
            "document.getElementById('log-state').textContent === '(live tail)'"
        )
        first = trial.inner_text("#log")
        trial.wait_for_function(
            "n => document.getElementById('log').textContent.length > n + 40", arg=len(first)
        )  # the output grew while we watched
        trial.wait_for_function("document.getElementById('log').textContent.includes('epoch=80 ')")

        experiment.wait_for_function(
            "document.querySelector('#summary .badge').textContent === 'Succeeded'"
        )  # the page followed the run without a reload
        experiment.wait_for_function("document.querySelectorAll('#trials tbody tr').length === 2")
        assert experiment.locator("#plot-history").get_attribute("data-rendered") != "error"
        proc.wait(60)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        context.close()
