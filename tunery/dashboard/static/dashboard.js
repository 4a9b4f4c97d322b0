// tunery dashboard: fills the server-rendered pages from the JSON API (/api) and keeps them
// live by polling. Plots are plotly figures the API builds (tunery.visualization.figures).
// The experiment page draws its first screen before plotly.js runs (preview.js draws the plots
// on a canvas meanwhile) and runs plotly.js (tunery's partial bundle, ~0.15 s of main thread
// in Chromium, then ~0.1-0.3 s per chart) only when a plot is pointed at, focused or needs
// it, or once the page has been interactive for PLOTLY_IDLE_MS: the time to interactive of
// the page is that of its first screen.
"use strict";

const POLL_MS = 2000;
const LAZY_MARGIN_PX = 0;
const PAGE_SIZE = 50;
// Lighthouse's time to interactive waits for 5 s without a long task; plotly.js unasked runs
// once the main thread has been that long without one since the page was ready (a user who
// points at a plot sooner gets it sooner).
const PLOTLY_IDLE_MS = 5000;
let busyUntil = 0; // the end of the last long task seen (browsers that report them)
try {
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) busyUntil = Math.max(busyUntil, e.startTime + e.duration);
  }).observe({ type: "longtask" });
} catch (e) { /* no long-task timing: the wait counts from the page being ready */ }

function whenIdle(ms, then) {
  const check = () => {
    const quiet = performance.now() - Math.max(busyUntil, window.tuneryReady || 0);
    if (quiet >= ms) then(); else setTimeout(check, ms - quiet + 50);
  };
  check();
}
const body = document.body;

async function api(path, options) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function fmt(value) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(6).replace(/\.?0+$/, "");
  return String(value);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function when(iso) {
  return iso && !iso.startsWith("0001-") ? iso.replace("T", " ").slice(0, 19) : "–";
}

function badge(condition, reason) {
  const main = el("span", { class: `badge c-${condition}` }, condition);
  if (reason !== "WarmStart") return main;
  // a warm-start trial: a result imported from elsewhere, never run by this experiment
  return el("span", {}, main, " ", el("span", { class: "badge c-WarmStart", title: "warm start: imported result, not run" }, "warm start"));
}

function setLive(on) {
  const live = document.getElementById("live");
  if (live) live.textContent = on ? "● live" : "";
}

// plotly.js (the page's <link id="plotly-js">: preloaded by the trial page, prefetched by the
// experiment page) is run only once the gate opens: at once by the trial page, or on the
// experiment page by a plot that cannot do without it, a pointer or focus on a plot, or
// PLOTLY_IDLE_MS without a long task after the first screen is drawn.
let openPlotlyGate = null;
const plotlyAllowed = new Promise((resolve) => { openPlotlyGate = resolve; });
let plotlyPromise = null;
function plotlyReady() {
  if (!plotlyPromise) {
    plotlyPromise = plotlyAllowed.then(() => new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = document.getElementById("plotly-js")?.href || "/vendor/plotly.min.js";
      script.onload = () => resolve(window.Plotly);
      script.onerror = () => reject(new Error("plotly.js did not load"));
      document.head.append(script);
    }));
  }
  return plotlyPromise;
}

const nextTask = () => new Promise((resolve) => setTimeout(resolve, 0));
const PLOTLY_CONFIG = { responsive: true, displaylogo: false };

function inView(node) {
  const box = node.getBoundingClientRect();
  return box.bottom >= -LAZY_MARGIN_PX && box.top <= window.innerHeight + LAZY_MARGIN_PX;
}

function markReady() {
  if (!body.dataset.ready) {
    body.dataset.ready = "1";
    window.tuneryReady = performance.now();
  }
}

function showError(where, error) {
  const box = el("p", { class: "error" }, error.message || String(error));
  where.replaceChildren(box);
}

// -- experiments list ---------------------------------------------------------------------------

function experimentsPage() {
  const tbody = document.querySelector("#experiments tbody");
  const search = document.getElementById("search");
  const status = document.getElementById("status-filter");
  let rows = [];
  let sort = { key: "start", desc: true };

  function render() {
    const needle = search.value.trim().toLowerCase();
    const shown = rows.filter((r) =>
      (!status.value || r.condition === status.value) &&
      (!needle || `${r.name} ${r.algorithm} ${r.objective}`.toLowerCase().includes(needle)));
    shown.sort((a, b) => {
      const x = a[sort.key], y = b[sort.key];
      if (x === y) return 0;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * (sort.desc ? -1 : 1);
    });
    tbody.replaceChildren(...shown.map((r) => {
      const max = r.maxTrials || r.trials;
      const done = r.finishedTrials;
      const bar = el("progress", { max: Math.max(max, 1), value: Math.min(done, max) });
      return el("tr", { "data-name": r.name },
        el("td", {}, el("a", { href: `/experiments/${encodeURIComponent(r.name)}` }, r.name)),
        el("td", { title: r.message }, badge(r.condition)),
        el("td", {}, r.algorithm + (r.earlyStopping ? ` + ${r.earlyStopping}` : "")),
        el("td", { class: "num" }, bar, ` ${r.trials}/${r.maxTrials ?? "∞"}`),
        el("td", { class: "num" }, r.bestValue === null ? "–" : `${r.objective} ${fmt(r.bestValue)}`),
        el("td", {}, when(r.start)),
        el("td", { class: "num" }, duration(r.durationSeconds)));
    }));
    document.getElementById("count").textContent = `${shown.length} of ${rows.length}`;
    document.getElementById("empty").hidden = rows.length > 0;
  }

  async function load() {
    try {
      rows = await api("/api/experiments");
      render();
      setLive(rows.some((r) => !r.completed));
    } catch (error) {
      showError(tbody, error);
    }
    markReady();
  }

  search.addEventListener("input", render);
  status.addEventListener("change", render);
  for (const th of document.querySelectorAll("#experiments th[data-sort]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.sort;
      sort = { key, desc: sort.key === key ? !sort.desc : false };
      render();
    });
  }
  load();
  setInterval(load, POLL_MS);
}

// -- one experiment -----------------------------------------------------------------------------

function experimentPage() {
  const name = body.dataset.name;
  const base = `/api/experiments/${body.dataset.url}`;
  const table = { sort: "number", order: "asc", offset: 0, condition: "", search: "" };
  let signature = null;
  let summary = null;
  let columns = [];
  let contourChoice = { x: null, y: null };
  let pointedAt = null; // the figure whose pointer or focus opened the gate: plotly draws it first

  // Draws a plot: `shown` settles once it is on screen (a canvas preview while plotly.js has
  // not run, where preview.js can draw it; else by plotly), `interactive` once plotly.js has
  // drawn it (data-rendered: its trace count, or "error"). A later draw of it supersedes.
  function plot(kind) {
    const figure = document.getElementById(`plot-${kind}`);
    const chart = figure.querySelector(".chart");
    let query = "";
    if (kind === "contour" && contourChoice.x && contourChoice.y) {
      query = `?x=${encodeURIComponent(contourChoice.x)}&y=${encodeURIComponent(contourChoice.y)}`;
    }
    const token = String(Number(figure.dataset.token || 0) + 1);
    figure.dataset.token = token;
    figure.dataset.timing = ""; // ms: fetched and previewed, + drawn by plotly
    const started = performance.now();
    const fetched = api(`${base}/plots/${kind}${query}`);
    const shown = fetched.then((fig) => {
      if (window.Plotly || !window.tuneryPreview || !window.tuneryPreview.draw(chart, fig)) return false;
      figure.dataset.preview = String(fig.data.length);
      figure.dataset.timing = `${Math.round(performance.now() - started)}`;
      return true;
    });
    const interactive = shown.then(async (previewed) => {
      if (!previewed) openPlotlyGate();
      const Plotly = await plotlyReady();
      if (previewed && figure !== pointedAt) await nextTask(); // one chart per task, so clicks get in between
      if (figure.dataset.token !== token) return; // a newer draw of this plot took over
      const fig = await fetched;
      const drawing = performance.now();
      chart.querySelector("canvas.preview")?.remove();
      await Plotly.react(chart, fig.data, fig.layout, PLOTLY_CONFIG);
      figure.dataset.timing = `${figure.dataset.timing || Math.round(drawing - started)}+${Math.round(performance.now() - drawing)}`;
      figure.dataset.rendered = String(fig.data.length);
      figure.dataset.error = "";
    }).catch((error) => {
      figure.dataset.rendered = "error";
      figure.dataset.error = error.message;
      showError(chart, error);
    });
    // a plot preview.js cannot draw is shown when plotly has drawn it
    return { shown: shown.then((previewed) => previewed || interactive, () => interactive), interactive };
  }

  function renderSummary(s) {
    const box = document.getElementById("summary");
    const stat = (label, value) => el("div", { class: "stat" }, el("span", { class: "label" }, label), el("span", { class: "value" }, value));
    const best = s.bestTrial ? el("a", { href: `/trials/${encodeURIComponent(s.bestTrial)}` }, `${s.objective} ${fmt(s.bestValue)}`) : "–";
    box.replaceChildren(
      stat("status", badge(s.condition)),
      stat("algorithm", s.algorithm + (s.earlyStopping ? ` + ${s.earlyStopping}` : "")),
      stat("objective", `${s.type} ${s.objective}` + (s.goal !== null ? ` (goal ${fmt(s.goal)})` : "")),
      stat("trials", `${s.trials}/${s.maxTrials ?? "∞"}` + (s.running ? ` (${s.running} running)` : "")),
      stat("best", best),
      stat("started", when(s.start)),
      stat("duration", duration(s.durationSeconds)),
      el("p", { class: "muted message" }, s.message || ""));
  }

  function contourSelectors(s) {
    const xs = document.getElementById("contour-x");
    const ys = document.getElementById("contour-y");
    if (xs.options.length || s.parameters.length < 2) return;
    for (const select of [xs, ys]) {
      select.append(el("option", { value: "" }, "auto"));
      for (const p of s.parameters) select.append(el("option", { value: p.name }, p.name));
      select.addEventListener("change", () => {
        contourChoice = { x: xs.value || null, y: ys.value || null };
        if (contourChoice.x && contourChoice.y && contourChoice.x !== contourChoice.y) plot("contour");
      });
    }
  }

  async function loadTable() {
    const params = new URLSearchParams({
      sort: table.sort, order: table.order, offset: table.offset, limit: PAGE_SIZE,
    });
    if (table.condition) params.set("condition", table.condition);
    if (table.search) params.set("search", table.search);
    const url = `${base}/trials?${params}`;
    document.getElementById("csv").href = url;
    const page = await api(url);
    columns = page.columns.filter((c) => c !== "start" && c !== "completion");
    const thead = document.querySelector("#trials thead");
    thead.replaceChildren(el("tr", {}, ...columns.map((c) => {
      const arrow = c === table.sort ? (table.order === "asc" ? " ▲" : " ▼") : "";
      const th = el("th", { "data-column": c }, c.replace(/^(params|metrics)\./, "") + arrow);
      if (c.startsWith("params.")) th.classList.add("param");
      if (c.startsWith("metrics.")) th.classList.add("metric");
      th.addEventListener("click", () => {
        table.order = table.sort === c && table.order === "asc" ? "desc" : "asc";
        table.sort = c;
        table.offset = 0;
        loadTable();
      });
      return th;
    })));
    const tbody = document.querySelector("#trials tbody");
    tbody.replaceChildren(...page.rows.map((row) => el("tr", { "data-name": row.name }, ...columns.map((c) => {
      if (c === "name") return el("td", {}, el("a", { href: `/trials/${encodeURIComponent(row.name)}` }, row.name));
      if (c === "condition") return el("td", {}, badge(row.condition, row.reason));
      if (c === "durationSeconds") return el("td", { class: "num" }, duration(row[c]));
      if (c === "message") return el("td", { class: "message", title: row[c] }, row[c]);
      const value = row[c];
      const numeric = typeof value === "number" || (typeof value === "string" && value !== "" && !isNaN(Number(value)));
      return el("td", { class: numeric ? "num" : "" }, numeric ? fmt(Number(value)) : fmt(value));
    }))));
    const last = Math.min(page.offset + PAGE_SIZE, page.matched);
    document.getElementById("page-info").textContent =
      `${page.matched ? page.offset + 1 : 0}–${last} of ${page.matched} (${page.total} trials)`;
    document.getElementById("prev").disabled = page.offset === 0;
    document.getElementById("next").disabled = last >= page.matched;
    document.getElementById("trials").dataset.matched = String(page.matched);
  }

  const tableFailed = (e) => showError(document.querySelector("#trials tbody"), e);

  // The first visit asks for the summary, the trial table and the plots on screen at once and
  // is ready (markReady) when all are shown; plotly.js runs after that and takes the plots over
  // (window.tuneryPlotly: the first screen's plots drawn by plotly, hover and zoom working).
  async function refresh(first) {
    const figures = [...document.querySelectorAll(".plots figure")];
    let early = null;
    if (first) {
      figures.forEach((f) => { f.dataset.stale = "1"; });
      const draws = figures.filter(inView).map(drawIfStale);
      early = { draws, table: loadTable().catch(tableFailed) };
      api("/api/config").then((config) => { if (config.actions) setupActions(); }).catch(() => {});
    }
    try {
      summary = await api(base);
    } catch (error) {
      showError(document.getElementById("summary"), error);
      markReady();
      return;
    }
    renderSummary(summary);
    setLive(!summary.completed);
    const next = JSON.stringify([summary.trials, summary.counts, summary.condition, summary.bestValue]);
    const changed = next !== signature;
    signature = next;
    if (first) {
      contourSelectors(summary);
      await Promise.all([early.table, ...early.draws.map((d) => d.shown)]);
      markReady();
      wantPlotlyOnIntent();
      Promise.all(early.draws.map((d) => d.interactive)).then(() => {
        window.tuneryPlotly = performance.now();
        body.dataset.plotly = "1";
      });
      api(`${base}/yaml`).then((text) => { document.getElementById("yaml").textContent = text; });
      const observer = new IntersectionObserver((entries) => {
        for (const entry of entries) {
          entry.target.dataset.visible = entry.isIntersecting ? "1" : "0";
          if (entry.isIntersecting) drawIfStale(entry.target);
        }
      }, { rootMargin: `${LAZY_MARGIN_PX}px` });
      figures.forEach((f) => observer.observe(f));
    } else if (changed || (!summary.completed && summary.running > 0)) {
      // Plots are drawn when on screen (a 10,000-trial parallel-coordinates plot takes a
      // while); the others are marked stale and drawn when scrolled to.
      figures.forEach((f) => { f.dataset.stale = "1"; });
      const visible = figures.filter((f) => f.dataset.visible === "1");
      await Promise.all([...visible.map((f) => drawIfStale(f).interactive), loadTable().catch(tableFailed)]);
    }
  }

  // plotly.js runs when a plot is pointed at or focused (hover, zoom and legend are plotly's),
  // or once the main thread has been idle for PLOTLY_IDLE_MS.
  function wantPlotlyOnIntent() {
    const plots = document.querySelector(".plots");
    const INTENT = ["pointerover", "pointerdown", "touchstart", "focusin"];
    const intent = (event) => {
      pointedAt = event.target.closest?.("figure.plot") || null;
      for (const type of INTENT) plots.removeEventListener(type, intent, true);
      openPlotlyGate();
    };
    for (const type of INTENT) plots.addEventListener(type, intent, { capture: true, passive: true });
    whenIdle(PLOTLY_IDLE_MS, openPlotlyGate);
  }

  function drawIfStale(figure) {
    if (figure.dataset.stale !== "1") return { shown: Promise.resolve(false), interactive: Promise.resolve() };
    figure.dataset.stale = "0";
    return plot(figure.dataset.kind);
  }

  function setupActions() {
    const result = document.getElementById("action-result");
    document.getElementById("actions").hidden = false;
    const act = async (method, path, payload) => {
      result.textContent = "…";
      try {
        const answer = await api(`${base}${path}`, {
          method,
          headers: { "Content-Type": "application/json", "X-Tunery-Action": "1" },
          body: payload ? JSON.stringify(payload) : undefined,
        });
        result.textContent = JSON.stringify(answer);
        return true;
      } catch (error) {
        result.textContent = error.message;
        return false;
      }
    };
    document.getElementById("stop").addEventListener("click", () => act("POST", "/stop"));
    document.getElementById("raise").addEventListener("click", () =>
      act("POST", "/budget", { maxTrialCount: Number(document.getElementById("budget").value) }));
    document.getElementById("delete").addEventListener("click", async () => {
      if (window.confirm(`Delete experiment ${name}, its trials and their logs?`) && await act("DELETE", "")) {
        window.location.href = "/";
      }
    });
  }

  const search = document.getElementById("trial-search");
  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => { table.search = search.value.trim(); table.offset = 0; loadTable(); }, 200);
  });
  document.getElementById("trial-condition").addEventListener("change", (e) => {
    table.condition = e.target.value; table.offset = 0; loadTable();
  });
  document.getElementById("prev").addEventListener("click", () => { table.offset = Math.max(0, table.offset - PAGE_SIZE); loadTable(); });
  document.getElementById("next").addEventListener("click", () => { table.offset += PAGE_SIZE; loadTable(); });

  refresh(true);
  setInterval(() => refresh(false), POLL_MS);
}

// -- one trial ----------------------------------------------------------------------------------

function trialPage() {
  const base = `/api/trials/${body.dataset.url}`;
  openPlotlyGate();
  plotlyReady();
  let logNext = null;
  let logComplete = false;
  let observationsShown = -1;

  function renderTrial(t) {
    const stat = (label, value) => el("div", { class: "stat" }, el("span", { class: "label" }, label), el("span", { class: "value" }, value));
    const started = t.start ? Date.parse(t.start) : null;
    const ended = t.completion ? Date.parse(t.completion) : Date.now();
    document.getElementById("trial-summary").replaceChildren(
      stat("condition", badge(t.condition, t.reason)),
      stat("reason", t.reason),
      stat(t.objective, fmt(t.objectiveValue)),
      stat("started", when(t.start)),
      stat("duration", started ? duration((ended - started) / 1000) : "–"),
      stat("GPUs", t.gpus.length ? t.gpus.join(",") : "none"),
      el("p", { class: "muted message" }, t.message));
    document.querySelector("#parameters tbody").replaceChildren(...Object.entries(t.parameters).map(([k, v]) =>
      el("tr", {}, el("th", {}, k), el("td", { class: "num" }, v))));
    document.querySelector("#metrics tbody").replaceChildren(...t.metrics.map((m) =>
      el("tr", {}, el("th", {}, m.name), el("td", { class: "num" }, m.min), el("td", { class: "num" }, m.max), el("td", { class: "num" }, m.latest))));
  }

  async function loadObservations() {
    const log = await api(`${base}/observations`);
    if (log.total === observationsShown) return;
    observationsShown = log.total;
    document.querySelector("#observations tbody").replaceChildren(...log.observations.map((o) =>
      el("tr", {}, el("td", {}, when(o.time)), el("td", {}, o.metric), el("td", { class: "num" }, o.step), el("td", { class: "num" }, o.value))));
    const byMetric = new Map();
    log.observations.forEach((o) => {
      if (!byMetric.has(o.metric)) byMetric.set(o.metric, { x: [], y: [] });
      const series = byMetric.get(o.metric);
      series.x.push(series.x.length + 1);
      series.y.push(o.numeric);
    });
    const traces = [...byMetric].map(([metric, s]) => ({ type: "scatter", mode: "lines+markers", name: metric, x: s.x, y: s.y }));
    const figure = document.getElementById("plot-observations");
    const Plotly = await plotlyReady();
    await Plotly.react(figure.querySelector(".chart"), traces, {
      title: { text: "Reported metrics" }, template: "plotly_white", margin: { l: 60, r: 20, t: 40, b: 50 },
      xaxis: { title: { text: "report number" } },
    }, { responsive: true, displaylogo: false });
    figure.dataset.rendered = String(traces.length);
  }

  async function loadLog(done) {
    const pre = document.getElementById("log");
    const query = logNext === null ? "" : `?offset=${logNext}`;
    const chunk = await api(`${base}/log${query}`);
    if (!chunk.available) {
      logComplete = done;
      document.getElementById("log-state").textContent = done ? "(no output recorded)" : "(waiting for output)";
      return;
    }
    if (logNext === null && chunk.offset > 0) pre.textContent = `… ${chunk.offset} earlier bytes not shown\n`;
    if (chunk.text) {
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent += chunk.text;
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }
    logNext = chunk.next;
    logComplete = chunk.done && chunk.next >= chunk.size;
    document.getElementById("log-state").textContent = chunk.done ? `(${chunk.size} bytes)` : "(live tail)";
  }

  let finished = false;
  async function refresh(first) {
    try {
      const trial = await api(base);
      renderTrial(trial);
      setLive(!trial.done);
      const logState = document.getElementById("log-state");
      await Promise.all([
        loadObservations(),
        loadLog(trial.done).catch((error) => { logState.textContent = `(${error.message})`; logComplete = true; }),
      ]);
      finished = trial.done && logComplete;
    } catch (error) {
      showError(document.getElementById("trial-summary"), error);
    }
    if (first) markReady();
  }
  refresh(true);
  const poll = setInterval(() => { if (finished) clearInterval(poll); else refresh(false); }, 1000);
}

const pages = { experiments: experimentsPage, experiment: experimentPage, trial: trialPage };
(pages[body.dataset.page] || markReady)();
