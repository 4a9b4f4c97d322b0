"""Dashboard speed on a big experiment: 10,000 trials x 100 observations (issue 18, point 5).

Seeds a SQLite store through the Store API (an experiment with four parameters, medianstop,
every trial Succeeded or EarlyStopped, each with 100 reports: 1,000,000 observation rows;
kept in ``--store`` and reused when it already holds the experiment), serves it with
``tunery dashboard`` in a subprocess, then

- the experiment page in headless Chromium (``/usr/bin/chromium``, driven by Playwright),
  :func:`page_load` defines each time (among them Lighthouse's time to interactive, from the
  page's long tasks), for a cold server (first load) and then ``--loads`` warm loads, each a
  first visit in a fresh browser profile (so plotly.js is fetched and run again) followed by
  a repeat visit;
- API latency: each endpoint the experiment page calls, ``--requests`` times over one
  connection of a fresh server; p50 / p95 / max, plus the first (cold) request, which reads
  the trials and computes the series the later ones share.

With ``--baseline DIR`` (a tree from ``git archive <rev> | tar -x -C DIR``) the same is
measured on that tree's server too, in the same run, the page loads alternating.

Run: ``python -m bench.dashboard [--trials 10000] [--observations 100] [--store PATH]
[--requests 50] [--loads 5] [--baseline DIR]``; the report is Markdown. The store is kept in
the temp dir (``--store`` to choose), seeded once per size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from controller.status import build_status
from controller.trial_view import TrialView
from tunery.experiment import load_experiment
from tunery.store import open_store
from tunery.store.base import Store, TrialRecord
from tunery.trials import Observation, TrialCondition, summarize_metrics

ROOT = Path(__file__).resolve().parent.parent
NAME = "big"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCUMENT = {
    "apiVersion": "kubeflow.org/v1beta1",
    "kind": "Experiment",
    "metadata": {"name": NAME},
    "spec": {
        "objective": {"type": "minimize", "objectiveMetricName": "loss"},
        "algorithm": {"algorithmName": "random"},
        "earlyStopping": {"algorithmName": "medianstop"},
        "parallelTrialCount": 8,
        "maxTrialCount": 10000,
        "parameters": [
            {
                "name": "lr",
                "parameterType": "double",
                "feasibleSpace": {"min": "0.00001", "max": "1", "distribution": "logUniform"},
            },
            {
                "name": "dropout",
                "parameterType": "double",
                "feasibleSpace": {"min": "0", "max": "0.8"},
            },
            {"name": "layers", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "8"}},
            {
                "name": "optimizer",
                "parameterType": "categorical",
                "feasibleSpace": {"list": ["sgd", "adam", "rmsprop"]},
            },
        ],
        "trialTemplate": {
            "primaryContainerName": "main",
            "trialParameters": [{"name": "lr", "reference": "lr"}],
            "trialSpec": {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "main",
                                    "image": "x",
                                    "command": ["train", "${trialParameters.lr}"],
                                }
                            ],
                            "restartPolicy": "Never",
                        }
                    }
                },
            },
        },
    },
}
ENDPOINTS = (
    "",
    "/trials?sort=number&order=asc&offset=0&limit=50",
    "/trials?sort=metrics.loss&order=desc&offset=0&limit=50",
    "/plots/history",
    "/plots/intermediate",
    "/plots/parallel",
    "/plots/importance",
    "/plots/slice",
    "/plots/contour",
    "/plots/edf",
    "/plots/timeline",
    "/yaml",
)


def seed(store: Store, trials: int, observations: int) -> None:
    """The experiment with ``trials`` finished trials of ``observations`` reports each."""
    document = load_experiment(DOCUMENT).to_document()
    store.create_experiment(NAME, document)
    rng = random.Random(0)
    records = []
    for i in range(trials):
        lr = 10 ** rng.uniform(-5, 0)
        dropout = rng.uniform(0, 0.8)
        layers = rng.randint(1, 8)
        optimizer = rng.choice(["sgd", "adam", "rmsprop"])
        floor = 0.05 + 0.3 * (abs(lr - 0.01) ** 0.5) + 0.2 * dropout + 0.02 * abs(layers - 4)
        floor += {"sgd": 0.1, "adam": 0.0, "rmsprop": 0.05}[optimizer]
        stopped = i > 20 and rng.random() < 0.4  # marked EarlyStopped; same log length
        steps = observations
        start = T0 + dt.timedelta(seconds=30 * (i // 8))
        curve = [
            Observation.of(
                "loss",
                floor + 2.0 / (step + 1) + rng.gauss(0, 0.01),
                step,
                start + dt.timedelta(seconds=step * 0.2),
            )
            for step in range(steps)
        ]
        summary = summarize_metrics(curve, ["loss"])["loss"]
        condition = TrialCondition.EARLY_STOPPED if stopped else TrialCondition.SUCCEEDED
        record = TrialRecord(
            f"{NAME}-{i:05d}",
            NAME,
            {
                "lr": repr(lr),
                "dropout": repr(dropout),
                "layers": str(layers),
                "optimizer": optimizer,
            },
            condition=condition,
            reason="TrialEarlyStopped" if stopped else "TrialSucceeded",
            message="stopped by medianstop" if stopped else "Trial has succeeded",
            created_at=start,
            start_time=start,
            completion_time=start + dt.timedelta(seconds=steps * 0.2 + 1),
            runner_handle={"gpus": [i % 8]},
            observation={
                "metrics": [
                    {
                        "name": "loss",
                        "min": summary.min,
                        "max": summary.max,
                        "latest": summary.latest,
                    }
                ]
            },
        )
        records.append(store.create_trial(record))
        store.add_observations(record.name, curve)
    now = T0 + dt.timedelta(seconds=30 * (trials // 8 + 1))
    objective = load_experiment(document).objective()
    status = build_status(
        {"startTime": T0.isoformat()},
        TrialView.of(records, objective),
        ("Succeeded", "ExperimentMaxTrialsReached", "Experiment has succeeded"),
        now,
    )
    store.update_experiment(NAME, status=status)


def ensure_store(path: Path, trials: int, observations: int) -> tuple[str, float | None]:
    url = f"sqlite:///{path}"
    store = open_store(url)
    try:
        try:
            if len(store.list_trials(NAME)) == trials:
                return url, None
            store.delete_experiment(NAME)
        except KeyError:
            pass
        started = time.perf_counter()
        seed(store, trials, observations)
        return url, time.perf_counter() - started
    finally:
        store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(base: str, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/api/config", timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"the dashboard did not answer at {base}")


def serve(url: str, port: int, root: Path = ROOT) -> subprocess.Popen[bytes]:
    """``tunery dashboard`` of the tree at ``root`` (this one, or a baseline's)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tunery.cli", "dashboard", "--db", url, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def api_latency(base: str, requests: int) -> list[dict[str, Any]]:
    import httpx

    rows = []
    with httpx.Client(timeout=60) as client:
        for endpoint in ENDPOINTS:
            samples = []
            for _ in range(requests + 1):
                started = time.perf_counter()
                client.get(f"{base}/api/experiments/{NAME}{endpoint}").raise_for_status()
                samples.append(1000 * (time.perf_counter() - started))
            cold, warm = samples[0], samples[1:]
            rows.append(
                {
                    "endpoint": endpoint or "(summary)",
                    "first": cold,
                    "p50": statistics.median(warm),
                    "p95": percentile(warm, 0.95),
                    "max": max(warm),
                }
            )
    return rows


LONG_TASKS = """window.tuneryLongTasks = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) window.tuneryLongTasks.push([e.startTime, e.duration]);
}).observe({ type: "longtask", buffered: true });"""

FIRST_SCREEN_DRAWN = """() => {
  const figures = [...document.querySelectorAll(".plots figure")];
  const onScreen = figures.filter((f) => f.getBoundingClientRect().top < window.innerHeight);
  return document.querySelectorAll("#trials tbody tr").length > 0
    && document.querySelector("#summary .badge") !== null
    && onScreen.length > 0 && onScreen.every((f) => f.dataset.preview || f.dataset.rendered);
}"""

QUIET_MS = 5000
TIME_TO_INTERACTIVE = """(quietMs) => {
  // Lighthouse's time to interactive, from the page's own records: the first window of
  // quietMs after first contentful paint with no long task (PerformanceObserver 'longtask')
  // and at most 2 requests in flight (Resource Timing); TTI is the end of the last long task
  // before that window, or FCP. null while the window has not been seen whole yet.
  const paint = performance.getEntriesByName("first-contentful-paint")[0];
  if (!paint) return null;
  const fcp = paint.startTime;
  const tasks = window.tuneryLongTasks.map(([s, d]) => [s, s + d]);
  const nav = performance.getEntriesByType("navigation")[0];
  const requests = [[0, nav ? nav.responseEnd : 0],
    ...performance.getEntriesByType("resource").map((r) => [r.startTime, r.responseEnd])];
  const edges = requests.flatMap(([s, e]) => [[s, 1], [e, -1]])
    .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const busy = [];
  let inFlight = 0, since = null;
  for (const [t, d] of edges) {
    inFlight += d;
    if (inFlight > 2 && since === null) since = t;
    if (inFlight <= 2 && since !== null) { busy.push([since, t]); since = null; }
  }
  let start = fcp;
  for (let moved = true; moved;) {
    moved = false;
    for (const [s, e] of [...tasks, ...busy]) {
      if (e > start && s < start + quietMs) { start = e; moved = true; }
    }
  }
  if (performance.now() < start + quietMs) return null;
  const before = tasks.filter(([, e]) => e <= start).map(([, e]) => e);
  const longest = Math.max(0, ...tasks.filter(([s]) => s < start + quietMs)
    .map(([s, e]) => e - s));
  return { fcp, tti: Math.max(fcp, ...before), longest };
}"""


def page_load(page: Any, url: str) -> dict[str, float]:
    """One first visit of ``url`` in ``page`` (a fresh browser profile: plotly.js fetched and
    run), times in seconds from navigation start unless said otherwise:

    - ``shown``: the page usable and its first screen drawn (``window.tuneryReady``): the
      summary, the trial table (sortable, filterable, links) and every plot on the first
      screen drawn, as a canvas preview or by plotly; checked, not trusted;
    - ``tti``: time to interactive (:data:`TIME_TO_INTERACTIVE`), once 5 s passed quietly;
      Lighthouse's definition, which knows nothing of the page's data, so it may come before
      ``shown`` (no long task at all: TTI is the first contentful paint, the page's header);
      ``interactive`` is the later of the two;
    - ``longest``: the longest main-thread task from navigation to the end of that window;
    - ``plotly``: the first screen's plots drawn by plotly (hover, zoom;
      ``window.tuneryPlotly``), the pointer kept off the plots (the page may run plotly.js
      only when asked to);
    - ``every``: seconds to scroll through every plot, each drawn by plotly;

    then on a repeat visit (plotly.js from the browser's cache): ``repeat``, ``shown`` again,
    and ``hover``: at once the pointer moves onto the optimization history; seconds until
    plotly has drawn it (its hover and zoom work)."""
    ready = "window.tuneryReady !== undefined"
    page.goto(url)
    page.wait_for_function(ready, timeout=60000)
    if not page.evaluate(FIRST_SCREEN_DRAWN):
        raise RuntimeError("ready, but the summary, table or first-screen plots are not")
    shown = page.evaluate("window.tuneryReady")
    interactive = page.wait_for_function(
        TIME_TO_INTERACTIVE, arg=QUIET_MS, timeout=60000, polling=250
    ).json_value()
    page.wait_for_function("window.tuneryPlotly !== undefined", timeout=60000)
    plotly = page.evaluate("window.tuneryPlotly")
    scrolling = page.evaluate("performance.now()")
    for figure in page.query_selector_all("figure.plot"):
        figure.scroll_into_view_if_needed()
        page.wait_for_function(
            "f => f.dataset.rendered && f.dataset.stale === '0'", arg=figure, timeout=60000
        )
        if figure.get_attribute("data-rendered") == "error":
            raise RuntimeError(f"{figure.get_attribute('id')} did not render")
    every = page.evaluate("performance.now()") - scrolling
    page.evaluate("window.scrollTo(0, 0)")
    page.goto(url)
    page.wait_for_function(ready, timeout=60000)
    repeat = page.evaluate("window.tuneryReady")
    box = page.locator("#plot-history .chart").bounding_box()
    hovered = page.evaluate("performance.now()")
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    drawn = page.wait_for_function(
        "() => document.getElementById('plot-history').dataset.rendered && performance.now()",
        timeout=60000,
    ).json_value()
    if page.locator("#plot-history .main-svg").count() == 0:
        raise RuntimeError("the optimization history is not drawn by plotly after a hover")
    return {
        "shown": shown / 1000,
        "tti": interactive["tti"] / 1000,
        "interactive": max(interactive["tti"], shown) / 1000,
        "longest": interactive["longest"] / 1000,
        "plotly": plotly / 1000,
        "hover": (drawn - hovered) / 1000,
        "every": every / 1000,
        "repeat": repeat / 1000,
    }


def page_loads(
    servers: dict[str, Callable[[], str]], loads: int
) -> dict[str, list[dict[str, float]]]:
    """:func:`page_load` of the experiment page on each of ``servers`` (code label -> a
    function starting that code's server, returning its base URL): first once each on a cold
    server (started just before), then ``loads`` times each, alternating."""
    from playwright.sync_api import sync_playwright

    times: dict[str, list[dict[str, float]]] = {label: [] for label in servers}
    bases: dict[str, str] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(loads + 1):
            for label, start in servers.items():
                base = bases.get(label) or bases.setdefault(label, start())
                context = browser.new_context(viewport={"width": 1400, "height": 900})
                context.add_init_script(LONG_TASKS)
                times[label].append(page_load(context.new_page(), f"{base}/experiments/{NAME}"))
                context.close()
        browser.close()
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=10000)
    parser.add_argument("--observations", type=int, default=100)
    parser.add_argument("--store", type=Path, default=None, help="default: in the temp dir")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a tree (git archive <rev> | tar -x -C DIR) measured alongside, loads alternating",
    )
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)

    store_path = args.store or Path(tempfile.gettempdir()) / (
        f"tunery-bench-dashboard-{args.trials}x{args.observations}.db"
    )
    url, seeded = ensure_store(store_path.resolve(), args.trials, args.observations)
    trees = {"this tree": ROOT}
    if args.baseline:
        trees["baseline"] = args.baseline.resolve()
    running: list[subprocess.Popen[bytes]] = []

    def starter(root: Path) -> Callable[[], str]:
        def start() -> str:
            port = free_port()
            running.append(serve(url, port, root))
            base = f"http://127.0.0.1:{port}"
            wait_up(base)
            return base

        return start

    loads: dict[str, list[dict[str, float]]] = {}
    latency: dict[str, list[dict[str, Any]]] = {}
    load_before = os.getloadavg()[0]
    try:
        if Path(CHROMIUM).exists():
            loads = page_loads({label: starter(root) for label, root in trees.items()}, args.loads)
        for label, root in trees.items():
            for server in running:
                server.terminate()
                server.wait(10)
            running.clear()
            base = starter(root)()  # a fresh server: the API's first requests are cold again
            latency[label] = api_latency(base, args.requests)
    finally:
        for server in running:
            server.terminate()
            server.wait(10)
    load_after = os.getloadavg()[0]

    import fastapi
    import plotly
    import sklearn

    now = dt.datetime.now(dt.UTC)
    print(
        f"_{now:%Y-%m-%d %H:%M} UTC · {platform.node()} ({os.cpu_count()} cores) · Python "
        f"{platform.python_version()} · fastapi {fastapi.__version__} · plotly "
        f"{plotly.__version__} · scikit-learn {sklearn.__version__} · SQLite store, "
        f"{args.trials} trials x {args.observations} observations"
        + (f" (seeded in {seeded:.0f} s)" if seeded else "")
        + f"; load average {load_before:.1f} at the start, {load_after:.1f} at the end._"
    )
    print(
        f"`python -m bench.dashboard --trials {args.trials} --observations {args.observations}"
        f" --requests {args.requests} --loads {args.loads}"
        + (" --baseline DIR`" if args.baseline else "`")
        + "\n"
    )
    print(
        "| code | endpoint (`/api/experiments/big...`) | first (cold) ms | p50 ms | p95 ms "
        "| max ms |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for label, rows in latency.items():
        for row in rows:
            print(
                f"| {label} | `{row['endpoint']}` | {row['first']:.0f} | {row['p50']:.1f} | "
                f"{row['p95']:.1f} | {row['max']:.1f} |"
            )
    for label, rows in latency.items():
        worst = max(row["p95"] for row in rows)
        print(f"\n{label}: worst p95 {worst:.1f} ms (target <= 100 ms).")
    if not loads:
        print(f"\nNo page timings: Chromium is not installed at {CHROMIUM}.")
        return
    print("\nExperiment page in headless Chromium (seconds from navigation start):\n")
    print(
        "| code | load | usable, first screen drawn | TTI (Lighthouse) | interactive: later of "
        "the two | longest task | first screen by plotly, no pointer | scroll through every "
        "plot (s) | repeat visit: usable | then a hover: plotly draws it in (s) |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, times in loads.items():
        for k, t in enumerate(times):
            which = "cold server" if k == 0 else f"warm server #{k}"
            print(
                f"| {label} | {which} | {t['shown']:.2f} | {t['tti']:.2f} |"
                f" {t['interactive']:.2f} | {t['longest']:.2f} |"
                f" {t['plotly']:.2f} | {t['every']:.2f} | {t['repeat']:.2f} | {t['hover']:.2f} |"
            )
    for label, times in loads.items():
        warm = times[1:]
        if not warm:
            continue

        def median(key: str, warm: list[dict[str, float]] = warm) -> float:
            return statistics.median(w[key] for w in warm)

        print(
            f"\n{label}, warm server, median of {len(warm)}: usable with its first screen"
            f" drawn in {median('shown'):.2f} s, TTI {median('tti'):.2f} s, interactive (the"
            f" later) {median('interactive'):.2f} s (target <= 1 s; cold server"
            f" {times[0]['interactive']:.2f} s), longest task {median('longest'):.2f} s; the"
            f" first screen drawn by plotly {median('plotly'):.2f} s with no pointer on it;"
            f" repeat visit usable in {median('repeat'):.2f} s, a hover then drawn by plotly in"
            f" {median('hover'):.2f} s."
        )


if __name__ == "__main__":
    main()
