// tunery dashboard: draws a plotly figure's simple cases on a <canvas> while plotly.js loads.
//
// plotly.js (4.8 MB) takes Chromium about 0.7 s to execute on a first visit, on the main
// thread; the experiment page (dashboard.js) draws the plots on its first screen with
// tuneryPreview.draw from the same figure JSON the API serves, then hands each chart to
// Plotly.react once plotly.js has run. A preview is a picture: no hover, zoom or legend
// toggling until plotly takes over. It handles what the first screen's figures use: scatter
// and scattergl traces (markers, lines, "hv" steps, gaps, dashes, per-point colours, "x" markers), horizontal
// bars, titles with a <sup> subtitle, legends, an empty figure's message; on linear axes.
// Anything else (log, date or category axes, other trace types) returns false: no preview.
"use strict";

(function () {
  const COLORWAY = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  const SCATTER = new Set(["scatter", "scattergl"]);
  const FONT = "12px system-ui, -apple-system, 'Segoe UI', sans-serif";

  function supported(fig) {
    const layout = fig.layout || {};
    for (const axis of [layout.xaxis, layout.yaxis]) {
      if (axis && axis.type && axis.type !== "linear") return false;
    }
    return fig.data.every((t) => (SCATTER.has(t.type) && (!t.xaxis || t.xaxis === "x") && (!t.yaxis || t.yaxis === "y")) ||
      (t.type === "bar" && t.orientation === "h"));
  }

  function niceTicks(lo, hi, count) {
    const span = hi - lo;
    if (!(span > 0)) return [lo];
    const raw = span / Math.max(count, 1);
    const power = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
    return ticks;
  }

  function label(v) {
    if (Math.abs(v) >= 1000 && Math.abs(v) < 1e6 && v % 100 === 0) return `${v / 1000}k`;
    if (Math.abs(v) >= 1e6 || (v !== 0 && Math.abs(v) < 1e-3)) return v.toExponential(1);
    return String(Number(v.toPrecision(6)));
  }

  function extent(values, given, pad) {
    if (given) return [...given];
    let lo = Infinity, hi = -Infinity;
    for (const v of values) {
      if (v === null || v === undefined || Number.isNaN(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (lo === Infinity) return [0, 1];
    if (lo === hi) return [lo - 1, hi + 1];
    const margin = (hi - lo) * pad;
    return [lo - margin, hi + margin];
  }

  function titleLines(text) {
    const [main, ...rest] = String(text || "").split(/<br\s*\/?>/i);
    const strip = (s) => s.replace(/<[^>]+>/g, "");
    return [strip(main), strip(rest.join(" "))];
  }

  function legendEntries(fig) {
    const named = fig.data.filter((t) => t.showlegend !== false && t.name);
    return named.length > 1 || fig.data.some((t) => t.showlegend === true) ? named : [];
  }

  function traceColor(t, index) {
    const line = t.line && t.line.color;
    const shade = t.marker && t.marker.color;
    const marker = Array.isArray(shade) ? shade[0] : shade; // the legend shows the first point's
    return line || marker || COLORWAY[index % COLORWAY.length];
  }

  function draw(chart, fig) {
    if (!supported(fig)) return false;
    const width = chart.clientWidth, height = chart.clientHeight;
    if (!width || !height) return false;
    const ratio = window.devicePixelRatio || 1;
    const canvas = document.createElement("canvas");
    canvas.className = "preview";
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    const ctx = canvas.getContext("2d");
    ctx.scale(ratio, ratio);
    ctx.font = FONT;
    const layout = fig.layout || {};
    const margin = { l: 60, r: 20, t: 60, b: 50, ...(layout.margin || {}) };

    const [main, sub] = titleLines(layout.title && layout.title.text);
    ctx.fillStyle = "#444";
    ctx.textAlign = "center";
    ctx.font = "17px system-ui, -apple-system, 'Segoe UI', sans-serif";
    ctx.fillText(main, width / 2, sub ? 24 : 32);
    if (sub) {
      ctx.font = "11px system-ui, -apple-system, 'Segoe UI', sans-serif";
      ctx.fillText(sub, width / 2, 42);
    }
    ctx.font = FONT;
    if (!fig.data.length) {
      const note = (layout.annotations || [])[0];
      if (note) ctx.fillText(titleLines(note.text)[0], width / 2, height / 2);
      chart.replaceChildren(canvas);
      return true;
    }

    const bars = fig.data.filter((t) => t.type === "bar");
    const scatters = fig.data.filter((t) => SCATTER.has(t.type));
    const categories = [];
    for (const t of bars) for (const c of t.y) if (!categories.includes(c)) categories.push(c);
    const legend = legendEntries(fig);
    const legendWidth = legend.length ? 50 + Math.max(...legend.map((t) => ctx.measureText(t.name).width)) : 0;
    // as plotly's automargin: room for the category labels
    const left = Math.max(margin.l, 12 + Math.max(0, ...categories.map((c) => ctx.measureText(String(c)).width)));
    const box = { x: left, y: margin.t, w: width - left - margin.r - legendWidth, h: height - margin.t - margin.b };
    if (box.w < 40 || box.h < 40) return false;
    const xs = [], ys = [];
    for (const t of scatters) { xs.push(...t.x); ys.push(...t.y); }
    for (const t of bars) xs.push(0, ...t.x);
    const markers = scatters.some((t) => (t.mode || "").includes("markers"));
    const xr = extent(xs, layout.xaxis && layout.xaxis.range, bars.length ? 0.08 : (markers ? 0.02 : 0));
    if (bars.length) xr[0] = Math.min(0, xr[0]);
    const yr = bars.length ? [-0.5, categories.length - 0.5] : extent(ys, layout.yaxis && layout.yaxis.range, 0.04);
    const px = (v) => box.x + ((v - xr[0]) / (xr[1] - xr[0])) * box.w;
    const py = (v) => box.y + box.h - ((v - yr[0]) / (yr[1] - yr[0])) * box.h;

    // grid, ticks and axis titles
    ctx.strokeStyle = "#eee";
    ctx.lineWidth = 1;
    ctx.fillStyle = "#444";
    ctx.textAlign = "center";
    for (const v of niceTicks(xr[0], xr[1], Math.max(2, Math.floor(box.w / 80)))) {
      const x = Math.round(px(v)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, box.y); ctx.lineTo(x, box.y + box.h); ctx.stroke();
      ctx.fillText(label(v), x, box.y + box.h + 16);
    }
    ctx.textAlign = "right";
    if (bars.length) {
      categories.forEach((c, k) => ctx.fillText(String(c), box.x - 6, py(k) + 4));
    } else {
      for (const v of niceTicks(yr[0], yr[1], Math.max(2, Math.floor(box.h / 40)))) {
        const y = Math.round(py(v)) + 0.5;
        ctx.beginPath(); ctx.moveTo(box.x, y); ctx.lineTo(box.x + box.w, y); ctx.stroke();
        ctx.fillText(label(v), box.x - 6, y + 4);
      }
    }
    ctx.textAlign = "center";
    ctx.font = "14px system-ui, -apple-system, 'Segoe UI', sans-serif";
    const xTitle = layout.xaxis && layout.xaxis.title && layout.xaxis.title.text;
    const yTitle = layout.yaxis && layout.yaxis.title && layout.yaxis.title.text;
    if (xTitle) ctx.fillText(xTitle, box.x + box.w / 2, height - 10);
    if (yTitle) {
      ctx.save(); ctx.translate(16, box.y + box.h / 2); ctx.rotate(-Math.PI / 2); ctx.fillText(yTitle, 0, 0); ctx.restore();
    }
    ctx.font = FONT;

    // the traces, clipped to the plot area
    ctx.save();
    ctx.beginPath(); ctx.rect(box.x, box.y, box.w, box.h); ctx.clip();
    fig.data.forEach((t, index) => {
      const color = traceColor(t, index);
      ctx.globalAlpha = t.opacity ?? 1;
      if (t.type === "bar") {
        const thickness = (box.h / categories.length) * 0.8;
        ctx.fillStyle = color;
        t.x.forEach((v, k) => {
          const y = py(categories.indexOf(t.y[k]));
          ctx.fillRect(px(0), y - thickness / 2, px(v) - px(0), thickness);
        });
        return;
      }
      const mode = t.mode || "lines+markers";
      if (mode.includes("lines")) {
        const line = t.line || {};
        ctx.strokeStyle = color;
        ctx.lineWidth = line.width ?? 2;
        ctx.setLineDash(line.dash === "dot" ? [2, 3] : line.dash === "dash" ? [6, 4] : []);
        ctx.beginPath();
        let open = false, lastY = 0;
        for (let k = 0; k < t.x.length; k++) {
          const xv = t.x[k], yv = t.y[k];
          if (xv === null || yv === null || xv === undefined || yv === undefined) { open = false; continue; }
          const x = px(xv), y = py(yv);
          if (!open) ctx.moveTo(x, y);
          else if (line.shape === "hv") { ctx.lineTo(x, lastY); ctx.lineTo(x, y); }
          else ctx.lineTo(x, y);
          open = true; lastY = y;
        }
        ctx.stroke();
        ctx.setLineDash([]);
      }
      if (mode.includes("markers")) {
        const marker = t.marker || {};
        const r = (marker.size ?? 6) / 2;
        const colors = Array.isArray(marker.color) ? marker.color : null;
        for (let k = 0; k < t.x.length; k++) {
          if (t.x[k] === null || t.y[k] === null) continue;
          const x = px(t.x[k]), y = py(t.y[k]);
          if (marker.symbol === "x") {
            ctx.strokeStyle = colors ? colors[k] : color; ctx.lineWidth = 2;
            ctx.beginPath(); ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y + r); ctx.moveTo(x - r, y + r); ctx.lineTo(x + r, y - r); ctx.stroke();
          } else {
            ctx.fillStyle = colors ? colors[k] : color;
            ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.fill();
          }
        }
      }
    });
    ctx.restore();
    ctx.globalAlpha = 1;
    for (const t of bars) {
      if (!t.text) continue;
      ctx.fillStyle = "#444"; ctx.textAlign = "left";
      t.x.forEach((v, k) => ctx.fillText(String(t.text[k]), px(v) + 4, py(categories.indexOf(t.y[k])) + 4));
    }

    // legend
    ctx.textAlign = "left";
    legend.forEach((t, k) => {
      const x = box.x + box.w + 12, y = box.y + 8 + k * 19;
      ctx.strokeStyle = traceColor(t, fig.data.indexOf(t)); ctx.fillStyle = ctx.strokeStyle; ctx.lineWidth = 2;
      if ((t.mode || "").includes("lines")) { ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x + 30, y); ctx.stroke(); }
      else { ctx.beginPath(); ctx.arc(x + 15, y, 3, 0, 2 * Math.PI); ctx.fill(); }
      ctx.fillStyle = "#444"; ctx.fillText(t.name, x + 38, y + 4);
    });
    chart.replaceChildren(canvas);
    return true;
  }

  window.tuneryPreview = { draw, supported };
})();
