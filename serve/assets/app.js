// sweep serve: the dashboard's only script. Written for this project (no
// framework, nothing vendored, nothing loaded from elsewhere).
//
// Safety rule: every string that comes from the database reaches the page
// through a text node or setAttribute on a fixed, non-event attribute; this
// file never assigns innerHTML. Charts are SVG built with createElementNS.
"use strict";

// ------------------------------------------------------------------ DOM

const SVGNS = "http://www.w3.org/2000/svg";
const SAFE_ATTRS = new Set(["class", "id", "href", "title", "type", "value", "min", "max", "step",
  "placeholder", "colspan", "src", "alt", "loading", "for", "name", "checked", "selected", "disabled",
  "aria-label", "data-id", "data-sort", "width", "height", "role", "open", "size"]);

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "on") { for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn); continue; }
    if (k === "style") { for (const [p, x] of Object.entries(v)) el.style.setProperty(p, x); continue; }
    if (!SAFE_ATTRS.has(k) && !(el instanceof SVGElement)) throw new Error("attribute not allowed: " + k);
    if (k.startsWith("on")) throw new Error("event attributes are never set: " + k);
    el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    el.appendChild(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}

function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k.startsWith("on")) throw new Error("event attributes are never set: " + k);
    el.setAttribute(k, String(v));
  }
  append(el, kids);
  return el;
}

function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); return el; }
function replace(el, ...kids) { clear(el); append(el, kids); return el; }

// ------------------------------------------------------------------ format

function num(v, d) {
  if (v === null || v === undefined || Number.isNaN(v)) return "—";
  if (typeof v !== "number") return String(v);
  if (d !== undefined) return v.toFixed(d);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  if (Number.isInteger(v)) return String(v);
  return a >= 100 ? v.toFixed(1) : String(parseFloat(v.toPrecision(4)));
}
function dur(sec) {
  if (sec === null || sec === undefined || !isFinite(sec)) return "—";
  sec = Math.max(0, sec);
  if (sec < 60) return sec.toFixed(sec < 10 ? 1 : 0) + " s";
  const m = Math.floor(sec / 60), hh = Math.floor(m / 60), d = Math.floor(hh / 24);
  if (d > 0) return d + " d " + (hh % 24) + " h";
  if (hh > 0) return hh + " h " + (m % 60) + " min";
  return m + " min " + Math.floor(sec % 60) + " s";
}
function when(t) {
  if (!t) return "—";
  const d = new Date(t * 1000);
  const p = (x) => String(x).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}
function pill(status) { return h("span", { class: "status s-" + (/^[a-z]+$/.test(status) ? status : "other") }, status); }
function scalar(v) { return v === null || v === undefined ? "—" : typeof v === "number" ? num(v) : String(v); }

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
function color(i) {
  const c = PALETTE[i % 10], f = [1, .65, .4][Math.floor(i / 10) % 3];
  const n = parseInt(c.slice(1), 16);
  const r = Math.round(((n >> 16) & 255) * f), g = Math.round(((n >> 8) & 255) * f), b = Math.round((n & 255) * f);
  return `rgb(${r},${g},${b})`;
}
const STATUS_COLOR = { done: "#2ca02c", running: "#ff7f0e", paused: "#1f77b4", pruned: "#9a9a9a", failed: "#d62728", interrupted: "#9467bd", queued: "#7f7f7f" };
// Every trial status, in the order the page lists them (`paused`: waiting at a rung of promotion-based stopping).
const STATUSES = ["running", "paused", "done", "pruned", "failed", "interrupted", "queued"];
// An early-stopping decision's action: continued and stopped as before; paused (waiting at the rung) and
// promoted (paused, then resumed) in the paused colour and in cyan, drawn as a square and a triangle.
const ACTION = {
  continue: { color: "#2ca02c", label: "continued" }, stop: { color: "#d62728", label: "stopped" },
  pause: { color: STATUS_COLOR.paused, label: "paused", shape: "square" }, promote: { color: "#17becf", label: "promoted", shape: "triangle" },
  // PBT: resumed from a better trial's checkpoint, its parameters perturbed (a diamond).
  exploit: { color: "#e377c2", label: "exploited", shape: "diamond" },
};
const FAIL_COLOR = { oom: "#d62728", data: "#8c564b", nan: "#e377c2", config: "#bcbd22", timeout: "#ff9896", crash: "#a50f15",
  protocol: "#c49c94", internal: "#7b4173", interrupted: "#9467bd", preempted: "#17becf", cancelled: "#7f7f7f", pruned: "#9a9a9a" };

// ------------------------------------------------------------------ data

const TOKEN = new URLSearchParams(location.search).get("token");

async function api(path, params) {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (Array.isArray(v)) v.forEach((x) => u.searchParams.append(k, x));
    else if (v !== null && v !== undefined && v !== "") u.searchParams.set(k, v);
  }
  // 202: the sweep's first read is under way (a big sweep, just after the
  // server started); ask again shortly, saying so on the page meanwhile.
  for (let tries = 0; ; tries++) {
    const r = await fetch(u, { headers: TOKEN ? { Authorization: "Bearer " + TOKEN } : {}, cache: "no-store" });
    let body = null;
    try { body = await r.json(); } catch (_) { body = null; }
    if (!r.ok) throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
    if (r.status !== 202 || !(body && body.loading)) { loading(null); return body; }
    if (tries >= 600) throw new Error(body.message);
    window.__loadingAnswers = (window.__loadingAnswers || 0) + 1;
    loading(body.message);
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

function loading(msg) {
  const el = document.getElementById("loading");
  if (!el) return;
  el.hidden = !msg;
  el.textContent = msg || "";
}

function link(path) { return TOKEN ? path + "?token=" + encodeURIComponent(TOKEN) : path; }
function sweepHref(name) { return link("/sweep/" + encodeURIComponent(name)); }
function trialHref(id) { return link("/trial/" + encodeURIComponent(id)); }

// ------------------------------------------------------------------ tooltip

const tip = () => document.getElementById("tip");
function showTip(ev, text) {
  const t = tip();
  t.textContent = text;
  t.hidden = false;
  const w = t.offsetWidth, hgt = t.offsetHeight;
  let x = ev.clientX + 14, y = ev.clientY + 14;
  if (x + w > innerWidth - 4) x = ev.clientX - w - 10;
  if (y + hgt > innerHeight - 4) y = ev.clientY - hgt - 10;
  t.style.left = x + "px"; t.style.top = y + "px";
}
function hideTip() { tip().hidden = true; }
// Elements carry their hover text in a property, never in markup.
function hover(el, text) { el.__tip = text; return el; }
function wireTips(root) {
  root.addEventListener("mousemove", (ev) => {
    let e = ev.target;
    while (e && e !== root && e.__tip === undefined) e = e.parentNode;
    if (e && e.__tip !== undefined) showTip(ev, typeof e.__tip === "function" ? e.__tip() : e.__tip); else hideTip();
  });
  root.addEventListener("mouseleave", hideTip);
}

// ------------------------------------------------------------------ scales

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { const d = Math.abs(lo) || 1; lo -= d * .1; hi += d * .1; }
  const span = hi - lo, raw = span / Math.max(1, n);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((x) => span / x <= n) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}
function logTicks(lo, hi) {
  const a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi));
  const out = [];
  for (let e = a; e <= b; e++) for (const m of (b - a <= 2 ? [1, 2, 5] : [1])) { const v = m * Math.pow(10, e); if (v >= lo * .999 && v <= hi * 1.001) out.push(v); }
  return out.length >= 2 ? out : [lo, hi];
}
function scale(lo, hi, a, b, log) {
  if (log) { lo = Math.log10(lo); hi = Math.log10(hi); }
  if (!(hi > lo)) { const d = Math.abs(lo) * .1 || 1; lo -= d; hi += d; }
  const f = (v) => a + ((log ? Math.log10(v) : v) - lo) / (hi - lo) * (b - a);
  f.inv = (p) => { const v = lo + (p - a) / (b - a) * (hi - lo); return log ? Math.pow(10, v) : v; };
  return f;
}
function extent(vals, log) {
  let lo = Infinity, hi = -Infinity;
  for (const v of vals) if (isFinite(v) && (!log || v > 0)) { if (v < lo) lo = v; if (v > hi) hi = v; }
  if (lo === Infinity) return [0, 1];
  if (lo === hi) { if (log) return [lo / 2, hi * 2]; const d = Math.abs(lo) * .05 || .5; return [lo - d, hi + d]; }
  if (!log) { const pad = (hi - lo) * .04; return [lo - pad, hi + pad]; }
  return [lo / 1.1, hi * 1.1];
}

// ------------------------------------------------------------------ charts

function chartBox(width, height) {
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
  wireTips(svg);
  return svg;
}
function emptyChart(width, height, text) {
  const svg = chartBox(width, height);
  svg.appendChild(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, text));
  return svg;
}
function axes(svg, m, w, hgt, xs, ys, xTicks, yTicks, xLabel, yLabel, xFmt, yFmt) {
  const g = s("g", { class: "grid" }), ax = s("g", { class: "axis" });
  for (const t of yTicks) {
    const y = ys(t);
    g.appendChild(s("line", { x1: m.l, x2: w - m.r, y1: y, y2: y }));
    ax.appendChild(s("text", { x: m.l - 6, y: y + 4, "text-anchor": "end" }, (yFmt || num)(t)));
  }
  for (const t of xTicks) {
    const x = xs(t);
    g.appendChild(s("line", { x1: x, x2: x, y1: m.t, y2: hgt - m.b }));
    ax.appendChild(s("text", { x, y: hgt - m.b + 15, "text-anchor": "middle" }, (xFmt || num)(t)));
  }
  ax.appendChild(s("path", { d: `M${m.l},${m.t}V${hgt - m.b}H${w - m.r}`, fill: "none" }));
  svg.appendChild(g); svg.appendChild(ax);
  if (xLabel) svg.appendChild(s("text", { x: (m.l + w - m.r) / 2, y: hgt - 6, "text-anchor": "middle", class: "label" }, xLabel));
  if (yLabel) svg.appendChild(s("text", { x: 12, y: (m.t + hgt - m.b) / 2, "text-anchor": "middle", class: "label", transform: `rotate(-90 12 ${(m.t + hgt - m.b) / 2})` }, yLabel));
}

// Lines: series [{label, points:[[x,y]], color, width, opacity, id}], hover shows the nearest point.
function lineChart(o) {
  const w = o.width || 640, hgt = o.height || 300, m = { l: 58, r: 14, t: 12, b: 38 };
  const pts = o.series.flatMap((x) => x.points);
  if (!pts.length) return emptyChart(w, hgt, o.empty || "no values yet");
  const [x0, x1] = extent(pts.map((p) => p[0]), o.logX);
  const [y0, y1] = extent(pts.map((p) => p[1]), o.logY);
  const xs = scale(x0, x1, m.l, w - m.r, o.logX), ys = scale(y0, y1, hgt - m.b, m.t, o.logY);
  const svg = chartBox(w, hgt);
  axes(svg, m, w, hgt, xs, ys, o.logX ? logTicks(x0, x1) : niceTicks(x0, x1, 7), o.logY ? logTicks(y0, y1) : niceTicks(y0, y1, 5), o.xLabel, o.yLabel, o.xFmt);
  const lines = s("g", {});
  for (const se of o.series) {
    const p = se.points.filter((q) => isFinite(q[1]) && (!o.logY || q[1] > 0));
    if (!p.length) continue;
    const d = (o.step ? p.map((q, i) => (i ? `H${xs(q[0]).toFixed(1)}V${ys(q[1]).toFixed(1)}` : `M${xs(q[0]).toFixed(1)},${ys(q[1]).toFixed(1)}`)) :
      p.map((q, i) => (i ? "L" : "M") + xs(q[0]).toFixed(1) + "," + ys(q[1]).toFixed(1))).join("");
    const path = s("path", { d, fill: "none", stroke: se.color, "stroke-width": se.width || 1.5, "stroke-opacity": se.opacity ?? 1, "stroke-linejoin": "round" });
    if (o.onClick && se.id) { path.style.cursor = "pointer"; path.addEventListener("click", () => o.onClick(se.id)); }
    lines.appendChild(path);
    if (p.length === 1 || o.dots) for (const q of p) lines.appendChild(s("circle", { cx: xs(q[0]), cy: ys(q[1]), r: 2.5, fill: se.color, "fill-opacity": se.opacity ?? 1 }));
  }
  svg.appendChild(lines);
  // Hover: the nearest point of any series, in screen distance.
  const hot = s("rect", { x: m.l, y: m.t, width: w - m.l - m.r, height: hgt - m.t - m.b, fill: "transparent" });
  const mark = s("circle", { r: 4, fill: "none", stroke: "#1e1e1e", "stroke-width": 1.5, visibility: "hidden" });
  hot.__tip = () => hot.__text || "";
  hot.addEventListener("mousemove", (ev) => {
    const r = svg.getBoundingClientRect(), k = w / r.width;
    const mx = (ev.clientX - r.left) * k, my = (ev.clientY - r.top) * k;
    let best = null, bd = Infinity;
    for (const se of o.series) for (const q of se.points) {
      if (!isFinite(q[1]) || (o.logY && q[1] <= 0)) continue;
      const dx = xs(q[0]) - mx, dy = ys(q[1]) - my, dd = dx * dx + dy * dy;
      if (dd < bd) { bd = dd; best = [se, q]; }
    }
    if (best && bd < 900) {
      mark.setAttribute("cx", xs(best[1][0])); mark.setAttribute("cy", ys(best[1][1])); mark.setAttribute("visibility", "visible");
      hot.__series = best[0];
      hot.__text = (best[0].label ? best[0].label + "\n" : "") + `${o.xLabel || "x"}: ${(o.xFmt || num)(best[1][0])}\n${o.yLabel || "y"}: ${num(best[1][1])}` + (best[1][2] ? "\n" + best[1][2] : "");
    } else { mark.setAttribute("visibility", "hidden"); hot.__text = ""; hot.__series = null; }
  });
  hot.addEventListener("mouseleave", () => mark.setAttribute("visibility", "hidden"));
  if (o.onClick) hot.addEventListener("click", () => { if (hot.__series && hot.__series.id) o.onClick(hot.__series.id); });
  svg.appendChild(hot); svg.appendChild(mark);
  return svg;
}

// Horizontal bars: items [{label, value, color, text}].
function barChart(o) {
  const rowH = 20, w = o.width || 560, m = { l: Math.min(220, 12 + 7 * Math.max(4, ...o.items.map((i) => String(i.label).length))), r: 130, t: 6, b: o.xLabel ? 36 : 24 };
  const hgt = m.t + m.b + rowH * Math.max(1, o.items.length);
  if (!o.items.length) return emptyChart(w, 80, o.empty || "nothing to show yet");
  const max = o.max ?? Math.max(1e-12, ...o.items.map((i) => i.value || 0));
  const xs = scale(0, max, m.l, w - m.r);
  const svg = chartBox(w, hgt);
  axes(svg, m, w, hgt, xs, () => 0, niceTicks(0, max, 5), [], o.xLabel, null, o.xFmt);
  o.items.forEach((it, i) => {
    const y = m.t + i * rowH;
    const g = hover(s("g", {}), it.tip || `${it.label}: ${it.text ?? num(it.value)}`);
    g.appendChild(s("rect", { x: 0, y, width: w, height: rowH, fill: "transparent" }));
    g.appendChild(s("text", { x: m.l - 6, y: y + 14, "text-anchor": "end" }, String(it.label).length > 30 ? String(it.label).slice(0, 29) + "…" : it.label));
    g.appendChild(s("rect", { x: m.l, y: y + 3, width: Math.max(0, xs(it.value || 0) - m.l), height: rowH - 6, fill: it.color || PALETTE[0] }));
    g.appendChild(s("text", { x: xs(it.value || 0) + 4, y: y + 14, class: "label" }, it.text ?? num(it.value)));
    svg.appendChild(g);
  });
  return svg;
}

// Heatmap (confusion matrix): labels along both axes, cells [[i, j, count]].
function heatmap(labels, cells, o) {
  const n = labels.length, cell = Math.max(14, Math.min(44, Math.floor(520 / Math.max(1, n))));
  const lab = Math.min(160, 12 + 7 * Math.max(...labels.map((l) => Math.min(22, String(l).length)), 4));
  const w = lab + n * cell + 12, hgt = lab + n * cell + 12;
  if (!n) return emptyChart(400, 80, "no confusion matrix recorded");
  const svg = chartBox(w, hgt);
  const grid = new Map(cells.map((c) => [c[0] + "," + c[1], c[2]]));
  const rowSum = labels.map((_, i) => cells.filter((c) => c[0] === i).reduce((a, c) => a + c[2], 0));
  const short = (l) => (String(l).length > 22 ? String(l).slice(0, 21) + "…" : String(l));
  labels.forEach((l, i) => {
    svg.appendChild(hover(s("text", { x: lab - 6, y: lab + i * cell + cell / 2 + 4, "text-anchor": "end" }, short(l)), "true: " + l));
    svg.appendChild(hover(s("text", { x: lab + i * cell + cell / 2, y: lab - 6, transform: `rotate(-50 ${lab + i * cell + cell / 2} ${lab - 6})` }, short(l)), "predicted: " + l));
  });
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    const c = grid.get(i + "," + j) || 0, f = rowSum[i] ? c / rowSum[i] : 0;
    const lo = [247, 251, 255], hi = [8, 48, 107];
    const fill = `rgb(${lo.map((a, k) => Math.round(a + (hi[k] - a) * f)).join(",")})`;
    const r = hover(s("rect", { x: lab + j * cell, y: lab + i * cell, width: cell - 1, height: cell - 1, fill }),
      `true: ${labels[i]}\npredicted: ${labels[j]}\ncount: ${c} (${(f * 100).toFixed(1)} % of the row)`);
    svg.appendChild(r);
    if (cell >= 22 && c) svg.appendChild(s("text", { x: lab + j * cell + cell / 2, y: lab + i * cell + cell / 2 + 4, "text-anchor": "middle", fill: f > .5 ? "#fff" : "#1e1e1e", "pointer-events": "none" }, c));
  }
  svg.appendChild(s("text", { x: 4, y: 14, class: "label" }, "true ↓  predicted →"));
  return svg;
}

// ------------------------------------------------------------------ page frame

let timers = [];
function every(ms, fn) {
  let stopped = false, running = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden && !running) {
      running = true;
      try { await fn(); setLive(true); } catch (e) { setLive(false, e.message); }
      running = false;
    }
    setTimeout(tick, ms);
  };
  timers.push(() => { stopped = true; });
  return tick();
}
function setLive(ok, msg) {
  const live = document.getElementById("live"), b = document.getElementById("banner");
  live.className = ok ? "live" : "live stale";
  live.textContent = ok ? "live" : "not updating";
  b.hidden = ok;
  if (!ok) b.textContent = msg || "the server did not answer";
}
function crumbs(...parts) {
  replace(document.getElementById("crumbs"), parts.map((p) => (p.href ? h("a", { href: p.href }, p.text) : h("span", {}, p.text))));
}
function section(title, ...kids) { return h("section", {}, h("h2", {}, title), kids); }
function card(k, v) { return h("div", { class: "card" }, h("div", { class: "k" }, k), h("div", { class: "v" }, v)); }
function figure(caption, el) { return h("figure", { class: "chart" }, caption ? h("figcaption", {}, caption) : null, el); }
function widthOf(el, dflt) { return Math.max(320, Math.min(1240, (el && el.clientWidth) || dflt || 640)); }

// ------------------------------------------------------------------ sweeps page

async function sweepsPage(main) {
  crumbs({ text: "sweeps" });
  document.title = "sweeps · sweep";
  const body = h("div", {});
  replace(main, h("h1", {}, "Sweeps"), h("p", { class: "muted" }, "Every sweep in this database; the page follows it live."), body);
  await every(1000, async () => {
    const d = await api("/api/sweeps");
    if (!d.sweeps.length) { replace(body, h("p", { class: "muted" }, "No sweeps in this database yet: start one with `sweep run FILE`.")); return; }
    const rows = d.sweeps.map(({ sweep: x, best, maximize }) => {
      const live = x.status === "running";
      const start = x.first_start || x.created_at;
      const end = live ? d.now : (x.last_activity || x.updated_at);
      return h("tr", { "data-id": x.name },
        h("td", {}, h("a", { href: sweepHref(x.name) }, x.name), x.description ? h("div", { class: "note" }, x.description) : null),
        h("td", {}, pill(x.status)),
        h("td", { class: "num" }, x.trials),
        h("td", {}, statusBar(x)),
        h("td", {}, x.metric, h("span", { class: "muted" }, maximize ? " ↑" : " ↓")),
        h("td", { class: "num" }, num(best)),
        h("td", {}, when(x.created_at)),
        h("td", { class: "num" }, (live ? "running for " : "took ") + dur(end - start)));
    });
    replace(body, h("div", { class: "scroll" }, h("table", { class: "data", id: "sweeps" },
      h("thead", {}, h("tr", {}, ["sweep", "status", "trials", "by status", "metric", "best", "started", "time"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows))));
  });
}

function statusBar(x) {
  const parts = [["done", x.done], ["running", x.running], ["paused", x.paused], ["pruned", x.pruned], ["failed", x.failed], ["interrupted", x.interrupted], ["queued", x.queued]];
  const w = 160, total = Math.max(1, x.trials);
  const svg = s("svg", { width: w, height: 12, viewBox: `0 0 ${w} 12`, class: "bar" });
  let at = 0;
  for (const [k, n] of parts) {
    if (!n) continue;
    const r = hover(s("rect", { x: at, y: 1, width: n / total * w, height: 10, fill: STATUS_COLOR[k] }), `${k}: ${n}`);
    svg.appendChild(r); at += n / total * w;
  }
  wireTips(svg);
  const text = parts.filter((p) => p[1]).map((p) => `${p[0]} ${p[1]}`).join(" · ");
  return h("div", {}, svg, h("div", { class: "note" }, text || "no trials"));
}

// ------------------------------------------------------------------ sweep page

async function sweepPage(main, name) {
  crumbs({ text: "sweeps", href: link("/") }, { text: "›" }, { text: name });
  document.title = name + " · sweep";
  const st = { sort: "ordinal", desc: false, offset: 0, limit: 50, statuses: new Set(), ranges: [], eqs: [], top: 30, logY: false, selected: new Set(), bestBy: "time", impEpoch: "", params: [] };
  const el = {};
  for (const k of ["head", "cards", "tools", "table", "pager", "curves", "loss", "best", "importance", "parcoords", "slices", "timeline", "rungs"]) el[k] = h("div", { id: "sec-" + k });
  replace(main, el.head, el.cards,
    section("Trials", el.tools, h("div", { class: "scroll" }, el.table), el.pager),
    section("Learning curves", h("div", { class: "grid2" }, el.curves, el.loss)),
    section("Best so far", el.best),
    section("Parameter importance", el.importance),
    section("Parallel coordinates", el.parcoords),
    section("Slice plots", el.slices),
    section("Timeline", el.timeline),
    section("Early stopping", el.rungs));

  let meta = null;
  const query = () => ({
    sort: st.sort, desc: st.desc ? 1 : 0, offset: st.offset, limit: st.limit,
    status: st.statuses.size ? [...st.statuses].join(",") : null,
    range: st.ranges.map((r) => `${r.key}:${r.lo ?? ""}:${r.hi ?? ""}`),
    eq: st.eqs.map((r) => `${r.key}:${r.value}`),
  });

  const refreshTable = async () => {
    const d = await api(`/api/sweeps/${encodeURIComponent(name)}/trials`, query());
    renderTable(d);
  };
  const refreshCurves = async () => {
    const d = await api(`/api/sweeps/${encodeURIComponent(name)}/curves`, { top: st.top, trials: [...st.selected].join(",") || null });
    renderCurves(d);
    if (st.selected.size) {
      const l = await api(`/api/sweeps/${encodeURIComponent(name)}/train_loss`, { trials: [...st.selected].slice(0, 10).join(",") });
      renderLoss(l);
    } else renderLoss(null);
  };
  const refreshFast = async () => {
    meta = await api(`/api/sweeps/${encodeURIComponent(name)}`);
    st.params = meta.params;
    renderHead();
    await refreshTable();
    await refreshCurves();
    // For bench/serve.sh: when the table and the curves first stood on the page.
    if (window.__firstRender === undefined) window.__firstRender = performance.now();
  };
  const refreshSlow = async () => {
    const base = `/api/sweeps/${encodeURIComponent(name)}`;
    const [best, imp, pts, tl, dec] = await Promise.all([
      api(base + "/best"), api(base + "/importance", { epoch: st.impEpoch || null }), api(base + "/points"),
      api(base + "/timeline"), api(base + "/decisions")]);
    renderBest(best); renderImportance(imp); renderParcoords(pts); renderSlices(pts); renderTimeline(tl); renderRungs(dec);
  };

  function renderHead() {
    const x = meta.sweep;
    const start = x.first_start || x.created_at, live = x.status === "running";
    replace(el.head, h("h1", {}, x.name, " ", pill(x.status)),
      x.description ? h("p", { class: "muted" }, x.description) : null,
      h("p", { class: "note" }, "dataset ", x.dataset, " · metric ", x.metric, meta.maximize ? " (higher is better)" : " (lower is better)"));
    replace(el.cards, h("div", { class: "cards" },
      card("trials", x.trials), card("running", x.running), x.paused ? card("paused", x.paused) : null, card("done", x.done), card("pruned", x.pruned),
      card("failed", x.failed + x.interrupted), card("queued", x.queued),
      card("best " + x.metric, meta.best_trial ? h("a", { href: trialHref(meta.best_trial) }, num(meta.best)) : num(meta.best)),
      card("started", when(x.created_at)),
      card(live ? "running for" : "took", dur((live ? meta.now : (x.last_activity || x.updated_at)) - start))));
  }

  function renderTools() {
    const statuses = STATUSES.map((k) =>
      h("label", {}, h("input", { type: "checkbox", checked: st.statuses.has(k), on: { change: (e) => { e.target.checked ? st.statuses.add(k) : st.statuses.delete(k); st.offset = 0; refreshTable(); } } }), k));
    const keySel = h("select", { "aria-label": "parameter" }, st.params.map((p) => h("option", { value: p.name }, p.name)));
    const lo = h("input", { type: "text", placeholder: "min / value", "aria-label": "minimum" }), hi = h("input", { type: "text", placeholder: "max", "aria-label": "maximum" });
    const add = h("button", { on: { click: () => {
      const p = st.params.find((q) => q.name === keySel.value);
      if (!p) return;
      if (p.numeric) st.ranges.push({ key: p.name, lo: lo.value.trim() || null, hi: hi.value.trim() || null });
      else st.eqs.push({ key: p.name, value: lo.value.trim() });
      st.offset = 0; renderTools(); refreshTable();
    } } }, "filter");
    const chips = [...st.ranges.map((r, i) => h("span", { class: "chip" }, `${r.key} ∈ [${r.lo ?? "−∞"}, ${r.hi ?? "∞"}]`,
      h("button", { title: "remove", on: { click: () => { st.ranges.splice(i, 1); st.offset = 0; renderTools(); refreshTable(); } } }, "×"))),
    ...st.eqs.map((r, i) => h("span", { class: "chip" }, `${r.key} = ${r.value}`,
      h("button", { title: "remove", on: { click: () => { st.eqs.splice(i, 1); st.offset = 0; renderTools(); refreshTable(); } } }, "×")))];
    replace(el.tools, h("div", { class: "toolbar" }, h("span", { class: "muted" }, "status:"), statuses),
      st.params.length ? h("div", { class: "toolbar" }, h("span", { class: "muted" }, "parameter:"), keySel, lo, hi, add, chips) : null);
  }

  function renderTable(d) {
    if (!el.tools.firstChild || el.tools.__params !== JSON.stringify(d.params.map((p) => p.name))) { st.params = d.params; renderTools(); el.tools.__params = JSON.stringify(d.params.map((p) => p.name)); }
    const cols = [["id", "trial"], ["status", "status"], ["rung", "rung / decision"], ["device", "device"], ["epoch", "epoch"],
      ["best", "best " + (meta ? meta.sweep.metric : "")], ["last", "last"], ["images_per_s", "img/s"],
      ...d.params.map((p) => ["param:" + p.name, p.name])];
    const head = h("tr", {}, cols.map(([k, label]) => h("th", { class: "sortable" + (["best", "last", "images_per_s", "epoch"].includes(k) || k.startsWith("param:") ? " num" : ""), "data-sort": k,
      on: { click: () => { if (st.sort === k) st.desc = !st.desc; else { st.sort = k; st.desc = false; } st.offset = 0; refreshTable(); } } },
      label, st.sort === k ? h("span", { class: "arrow" }, st.desc ? "▼" : "▲") : null)));
    const rows = d.rows.map((t) => {
      const dec = t.decision ? `${t.decision.method}${t.decision.rung !== null ? " r" + t.decision.rung : ""} · ${t.decision.action}` : "—";
      const tr = h("tr", { "data-id": t.id, class: st.selected.has(t.id) ? "selected" : null },
        h("td", {}, h("a", { href: trialHref(t.id) }, t.id)),
        h("td", {}, pill(t.status)),
        h("td", {}, dec),
        h("td", {}, t.device || "—"),
        h("td", { class: "num" }, `${t.epochs_done}/${t.epochs}`),
        h("td", { class: "num" }, num(t.best)),
        h("td", { class: "num" }, num(t.last)),
        h("td", { class: "num" }, num(t.images_per_s, 0)),
        d.params.map((p) => h("td", { class: p.numeric ? "num" : null }, scalar(t.params[p.name]))));
      tr.addEventListener("click", (e) => {
        if (e.target.tagName === "A") return;
        st.selected.has(t.id) ? st.selected.delete(t.id) : st.selected.add(t.id);
        tr.classList.toggle("selected"); refreshCurves();
      });
      return tr;
    });
    replace(el.table, h("table", { class: "data", id: "trials" }, h("thead", {}, head), h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: cols.length, class: "muted" }, "no trial matches")))));
    const last = Math.min(d.offset + d.limit, d.matched);
    replace(el.pager, h("div", { class: "pager" },
      h("button", { disabled: d.offset === 0, on: { click: () => { st.offset = Math.max(0, st.offset - st.limit); refreshTable(); } } }, "‹ prev"),
      h("span", { id: "page-info" }, d.matched ? `${d.offset + 1}–${last} of ${d.matched}` : "0", d.matched !== d.total ? ` (filtered from ${d.total})` : ""),
      h("button", { disabled: last >= d.matched, on: { click: () => { st.offset += st.limit; refreshTable(); } } }, "next ›"),
      h("span", { class: "note" }, "click rows to compare their train loss")));
  }

  function renderCurves(d) {
    const series = d.series.map((x, i) => {
      const running = x.status === "running", pruned = x.status === "pruned" || x.status === "failed";
      const sel = st.selected.has(x.id);
      return { id: x.id, label: `${x.id} (${x.status})`, points: x.points, color: pruned && !sel ? "#9a9a9a" : color(i),
        width: sel ? 3 : running ? 2.4 : 1.3, opacity: sel || running ? 1 : pruned ? .35 : .75 };
    });
    const w = widthOf(el.curves.parentNode, 1240) / 2 - 16;
    const chart = lineChart({ series, width: Math.max(420, w), height: 300, logY: st.logY, xLabel: "epoch", yLabel: d.metric, dots: true,
      onClick: (id) => { st.selected.has(id) ? st.selected.delete(id) : st.selected.add(id); refreshCurves(); refreshTable(); } });
    chart.id = "curves-chart";
    const topSel = h("select", { "aria-label": "top K", on: { change: (e) => { st.top = +e.target.value; refreshCurves(); } } },
      [10, 30, 100, 300, 1000].map((k) => h("option", { value: k, selected: st.top === k }, "top " + k)));
    const logBtn = h("button", { class: st.logY ? "on" : null, on: { click: () => { st.logY = !st.logY; refreshCurves(); } } }, "log y");
    replace(el.curves, figure(`${d.metric} by epoch: the best ${Math.min(st.top, d.with_values)} of ${d.with_values} trials with values, every running trial emphasised, pruned and failed dimmed`,
      h("div", {}, h("div", { class: "toolbar" }, topSel, logBtn,
        h("span", { class: "legend" }, h("span", {}, h("i", { style: { background: "#ff7f0e", height: "4px" } }), "running (thick)"), h("span", {}, h("i", { style: { background: "#9a9a9a" } }), "pruned / failed"))), chart)));
  }

  function renderLoss(d) {
    if (!d || !d.series.length) { replace(el.loss, figure("train loss per step", emptyChart(560, 300, "select trials (table rows or curves) to see their train loss"))); return; }
    const series = d.series.map((x, i) => ({ id: x.id, label: x.id, points: x.points, color: color(i), width: 1.4 }));
    replace(el.loss, figure("train loss per step of the selected trials", lineChart({ series, width: 560, height: 300, xLabel: "step", yLabel: "train loss", logY: st.logY })));
  }

  function renderBest(d) {
    const pts = st.bestBy === "time" ? d.by_time : d.by_epochs;
    const p = pts.map((q) => [q[0], q[1], "trial " + q[2]]);
    if (p.length && st.bestBy === "time" && d.end_s > p[p.length - 1][0]) p.push([d.end_s, p[p.length - 1][1], "(still best)"]);
    const tools = h("div", { class: "toolbar" }, ["time", "epochs"].map((k) => h("button", { class: st.bestBy === k ? "on" : null, on: { click: () => { st.bestBy = k; refreshSlow(); } } }, k === "time" ? "against wall time" : "against epochs spent")));
    replace(el.best, tools, figure(`best ${d.metric} so far (${d.epochs_spent} epochs recorded)`, lineChart({
      series: [{ label: "best so far", points: p, color: PALETTE[0], width: 2 }], width: widthOf(el.best, 1100), height: 260, step: true, dots: true,
      xLabel: st.bestBy === "time" ? "wall time since the first trial started" : "epochs spent", xFmt: st.bestBy === "time" ? dur : num, yLabel: d.metric })));
  }

  function renderImportance(d) {
    const epochSel = h("select", { "aria-label": "results", on: { change: (e) => { st.impEpoch = e.target.value; refreshSlow(); } } },
      h("option", { value: "" }, "best value of each trial (final)"),
      Array.from({ length: 30 }, (_, i) => h("option", { value: i + 1, selected: String(st.impEpoch) === String(i + 1) }, "value at epoch " + (i + 1))));
    const items = d.params.filter((p) => p.ped_anova !== null).map((p, i) => ({ label: p.name, value: p.ped_anova, color: color(i),
      text: `${(p.ped_anova * 100).toFixed(1)} %` + (p.spearman !== null ? `  ρ ${p.spearman >= 0 ? "+" : ""}${p.spearman.toFixed(2)}` : ""),
      tip: `${p.name}\nPED-ANOVA: ${(p.ped_anova * 100).toFixed(1)} %\nSpearman ρ: ${p.spearman === null ? "— (categorical)" : p.spearman.toFixed(3)}\ntrials: ${p.trials}` }));
    replace(el.importance, h("div", { class: "toolbar" }, epochSel,
      h("span", { class: "note" }, `from ${d.trials_used} trials with a value; PED-ANOVA (share of the divergence of the top 10 % from all trials) and Spearman's rank correlation ρ with ${d.metric}`)),
    figure(null, barChart({ items, width: Math.min(900, widthOf(el.importance, 900)), xLabel: "PED-ANOVA importance", xFmt: (v) => (v * 100).toFixed(0) + " %", empty: "needs at least 4 trials with values and a parameter that varies" })));
  }

  function axisOf(p, vals) {
    if (p.numeric) {
      const [lo, hi] = p.log ? [p.min, p.max] : [p.min, p.max];
      return { name: p.name, numeric: true, log: p.log, lo, hi };
    }
    return { name: p.name, numeric: false, cats: p.values.map(String) };
  }

  function renderParcoords(d) {
    const w = widthOf(el.parcoords, 1100), hgt = 340, m = { l: 40, r: 70, t: 28, b: 20 };
    if (!d.rows.length || !d.params.length) { replace(el.parcoords, figure(null, emptyChart(w, 120, d.params.length ? "no trial has a value yet" : "no parameter varies"))); return; }
    const axesDef = d.params.map(axisOf);
    const vals = d.rows.map((r) => r.value);
    const [v0, v1] = extent(vals);
    axesDef.push({ name: d.metric, numeric: true, log: false, lo: v0, hi: v1, metric: true });
    const n = axesDef.length, xAt = (i) => m.l + i * (w - m.l - m.r) / Math.max(1, n - 1);
    const ys = axesDef.map((a) => a.numeric ? scale(a.lo, a.hi, hgt - m.b, m.t, a.log) : ((v) => {
      const k = a.cats.indexOf(String(v)); return hgt - m.b - (k + .5) / a.cats.length * (hgt - m.t - m.b);
    }));
    const svg = chartBox(w, hgt);
    const cval = scale(v0, v1, 0, 1);
    const paths = d.rows.map((r) => {
      const pts = axesDef.map((a, i) => { const v = a.metric ? r.value : r.p[i]; return v === null || v === undefined ? null : [xAt(i), ys[i](v)]; });
      const dstr = pts.map((p, i) => (p ? (i && pts[i - 1] ? "L" : "M") + p[0].toFixed(1) + "," + p[1].toFixed(1) : "")).join("");
      const f = d.maximize ? cval(r.value) : 1 - cval(r.value);
      const path = hover(s("path", { d: dstr, fill: "none", stroke: `hsl(${210 - 190 * f},70%,${55 - 15 * f}%)`, "stroke-width": 1.1, "stroke-opacity": .55 }),
        `trial ${r.id} (${r.status})\n${d.metric}: ${num(r.value)}\n` + axesDef.slice(0, -1).map((a, i) => `${a.name}: ${scalar(r.p[i])}`).join("\n"));
      path.__row = r;
      return path;
    });
    const lines = s("g", {}, paths);
    svg.appendChild(lines);
    const brushes = axesDef.map(() => null);
    const applyBrush = () => {
      let shown = 0;
      for (const p of paths) {
        const r = p.__row;
        const ok = axesDef.every((a, i) => {
          const b = brushes[i]; if (!b) return true;
          const v = a.metric ? r.value : r.p[i]; if (v === null || v === undefined) return false;
          const y = ys[i](v); return y >= b[0] && y <= b[1];
        });
        p.setAttribute("stroke-opacity", ok ? .6 : .04); if (ok) shown++;
      }
      count.textContent = brushes.some((b) => b) ? `${shown} of ${paths.length} trials in the brushed ranges (drag on an axis; click it to clear)` : `${paths.length} trials; drag on an axis to select a range`;
    };
    axesDef.forEach((a, i) => {
      const x = xAt(i), g = s("g", { class: "axis" });
      g.appendChild(s("line", { x1: x, x2: x, y1: m.t, y2: hgt - m.b, stroke: "#888" }));
      const ticks = a.numeric ? (a.log ? logTicks(a.lo, a.hi) : niceTicks(a.lo, a.hi, 5)) : a.cats;
      for (const t of ticks) {
        const y = ys[i](t);
        if (!(y >= m.t - 1 && y <= hgt - m.b + 1)) continue;
        g.appendChild(s("line", { x1: x - 3, x2: x, y1: y, y2: y }));
        g.appendChild(s("text", { x: x + 4, y: y + 4 }, a.numeric ? num(t) : (String(t).length > 14 ? String(t).slice(0, 13) + "…" : t)));
      }
      g.appendChild(s("text", { x, y: m.t - 10, "text-anchor": "middle", "font-weight": 600 }, a.name + (a.log ? " (log)" : "")));
      const band = s("rect", { x: x - 8, y: m.t, width: 16, height: hgt - m.t - m.b, fill: "transparent", cursor: "crosshair" });
      const sel = s("rect", { x: x - 7, width: 14, fill: "rgba(31,119,180,.18)", stroke: "#1f77b4", visibility: "hidden" });
      let from = null;
      const yOf = (ev) => { const r = svg.getBoundingClientRect(); return Math.max(m.t, Math.min(hgt - m.b, (ev.clientY - r.top) * w / r.width)); };
      band.addEventListener("mousedown", (ev) => { from = yOf(ev); ev.preventDefault(); });
      svg.addEventListener("mousemove", (ev) => {
        if (from === null) return;
        const y = yOf(ev), lo = Math.min(from, y), hi = Math.max(from, y);
        sel.setAttribute("y", lo); sel.setAttribute("height", hi - lo); sel.setAttribute("visibility", "visible");
        brushes[i] = [lo, hi]; applyBrush();
      });
      svg.addEventListener("mouseup", (ev) => {
        if (from === null) return;
        if (Math.abs(yOf(ev) - from) < 3) { brushes[i] = null; sel.setAttribute("visibility", "hidden"); }
        from = null; applyBrush();
      });
      g.appendChild(band); g.appendChild(sel);
      svg.appendChild(g);
    });
    const count = h("span", { class: "note" });
    replace(el.parcoords, figure(`each line a trial (the best ${d.rows.length} of ${d.with_values} with values), coloured by ${d.metric}: red is best`, h("div", {}, svg, count)));
    applyBrush();
  }

  function renderSlices(d) {
    if (!d.params.length || !d.rows.length) { replace(el.slices, h("p", { class: "muted" }, "no parameter varies, or no trial has a value yet")); return; }
    const figs = d.params.map((p, i) => {
      const w = 300, hgt = 220, m = { l: 50, r: 10, t: 10, b: 34 };
      const vals = d.rows.map((r) => r.value);
      const [y0, y1] = extent(vals), ys = scale(y0, y1, hgt - m.b, m.t);
      const svg = chartBox(w, hgt);
      let xs, xt, xf = num;
      if (p.numeric) { const [a, b] = extent(d.rows.map((r) => r.p[i]).filter((v) => v !== null), p.log); xs = scale(a, b, m.l, w - m.r, p.log); xt = p.log ? logTicks(a, b) : niceTicks(a, b, 4); }
      else {
        const cats = p.values.map(String); xs = (v) => m.l + (cats.indexOf(String(v)) + .5) / cats.length * (w - m.l - m.r); xt = cats;
        xf = (v) => (String(v).length > 10 ? String(v).slice(0, 9) + "…" : String(v));
      }
      axes(svg, m, w, hgt, xs, ys, xt, niceTicks(y0, y1, 4), p.name + (p.log ? " (log)" : ""), null, xf);
      const g = s("g", {});
      d.rows.forEach((r, k) => {
        const v = r.p[i]; if (v === null || v === undefined) return;
        const jitter = p.numeric ? 0 : ((k * 2654435761 % 1000) / 1000 - .5) * (w - m.l - m.r) / p.values.length * .5;
        g.appendChild(hover(s("circle", { cx: xs(v) + jitter, cy: ys(r.value), r: 3, fill: STATUS_COLOR[r.status] || PALETTE[0], "fill-opacity": .6 }),
          `trial ${r.id} (${r.status})\n${p.name}: ${scalar(v)}\n${d.metric}: ${num(r.value)}`));
      });
      svg.appendChild(g);
      return figure(`${d.metric} against ${p.name}`, svg);
    });
    const shown = ["done", "running", "pruned", "failed"].concat(d.rows.some((r) => r.status === "paused") ? ["paused"] : []);
    replace(el.slices, h("div", { class: "legend" }, shown.map((k) => h("span", {}, h("i", { style: { background: STATUS_COLOR[k], height: "8px", width: "8px" } }), k))), h("div", { class: "slices" }, figs));
  }

  function renderTimeline(d) {
    const w = widthOf(el.timeline, 1100);
    if (!d.bars.length) { replace(el.timeline, figure(null, emptyChart(w, 100, "no attempt has started yet"))); return; }
    // One lane per slot: attempts on the same device that overlap in time
    // (several CPU workers, all `cpu`) are packed into numbered sub-lanes.
    const dev = (b) => (b.node ? b.node + " " : "") + (b.device || "?");
    const ends = new Map();
    const laneName = new Map();
    for (const b of [...d.bars].sort((x, y) => x.started_at - y.started_at)) {
      const free = ends.get(dev(b)) || [];
      let k = free.findIndex((e) => e <= b.started_at + 1e-6);
      if (k < 0) { k = free.length; free.push(0); }
      free[k] = b.finished_at || d.now;
      ends.set(dev(b), free);
      laneName.set(b, k);
    }
    const laneOf = (b) => dev(b) + ((ends.get(dev(b)) || []).length > 1 ? " #" + (laneName.get(b) + 1) : "");
    const lanes = [...new Set(d.bars.map(laneOf))].sort();
    const rowH = 18, m = { l: Math.min(200, 14 + 7 * Math.max(...lanes.map((l) => l.length))), r: 14, t: 8, b: 34 };
    const hgt = m.t + m.b + rowH * lanes.length;
    const t0 = Math.min(...d.bars.map((b) => b.started_at)), t1 = Math.max(...d.bars.map((b) => b.finished_at || d.now));
    const xs = scale(0, Math.max(1, t1 - t0), m.l, w - m.r);
    const svg = chartBox(w, hgt);
    axes(svg, m, w, hgt, xs, () => 0, niceTicks(0, t1 - t0, 8), [], "wall time since the first attempt", null, dur);
    lanes.forEach((l, i) => svg.appendChild(s("text", { x: m.l - 6, y: m.t + i * rowH + 13, "text-anchor": "end" }, l)));
    const outcome = (b) => b.finished_at === null ? "running" : b.error_class ? b.error_class : (b.trial_status === "pruned" || b.trial_status === "paused" ? b.trial_status : "done");
    for (const b of d.bars) {
      const i = lanes.indexOf(laneOf(b)), o = outcome(b);
      const x = xs(b.started_at - t0), x2 = xs((b.finished_at || d.now) - t0);
      svg.appendChild(hover(s("rect", { x, y: m.t + i * rowH + 2, width: Math.max(1, x2 - x), height: rowH - 4, fill: STATUS_COLOR[o] || FAIL_COLOR[o] || "#d62728", "fill-opacity": .85, stroke: "#fff", "stroke-width": .5 }),
        `trial ${b.trial} attempt ${b.attempt}\n${laneOf(b)}\n${o}\nstarted ${when(b.started_at)}, ${dur((b.finished_at || d.now) - b.started_at)}`));
    }
    const seen = [...new Set(d.bars.map(outcome))];
    replace(el.timeline, h("div", { class: "legend" }, seen.map((k) => h("span", {}, h("i", { style: { background: STATUS_COLOR[k] || FAIL_COLOR[k] || "#d62728", height: "8px" } }), k))),
      figure(`one lane per slot (device, and node under Slurm); ${d.bars.length} attempts`, svg));
  }

  function renderRungs(d) {
    if (!d.rungs.length) { replace(el.rungs, h("p", { class: "muted" }, "no early-stopping decision recorded (the sweep has no [stopping] section, or no trial reached a rung yet)")); return; }
    const figs = d.rungs.map((r) => {
      const w = 300, hgt = 220, m = { l: 50, r: 10, t: 10, b: 30 };
      const vals = r.values.map((v) => v[0]).concat(r.cutoff !== null ? [r.cutoff] : []);
      const [y0, y1] = extent(vals), ys = scale(y0, y1, hgt - m.b, m.t);
      const svg = chartBox(w, hgt);
      axes(svg, m, w, hgt, (x) => m.l + x * (w - m.l - m.r), ys, [], niceTicks(y0, y1, 4), `${r.values.length} decisions`, r.metric);
      r.values.forEach((v, k) => {
        const x = m.l + (.1 + .8 * ((k * 2654435761) % 997) / 997) * (w - m.l - m.r), y = ys(v[0]);
        const a = ACTION[v[1]] || { color: "#7f7f7f", label: String(v[1]) };
        const look = { fill: a.color, "fill-opacity": .7, class: "decision d-" + (ACTION[v[1]] ? v[1] : "other") };
        const mark = a.shape === "square" ? s("rect", { x: x - 3, y: y - 3, width: 6, height: 6, ...look })
          : a.shape === "triangle" ? s("path", { d: `M${x},${y - 4}L${x + 3.8},${y + 3}L${x - 3.8},${y + 3}Z`, ...look })
          : a.shape === "diamond" ? s("path", { d: `M${x},${y - 4.5}L${x + 4},${y}L${x},${y + 4.5}L${x - 4},${y}Z`, ...look })
          : s("circle", { cx: x, cy: y, r: 3.2, ...look });
        svg.appendChild(hover(mark, `trial ${v[2]}\n${r.metric}: ${num(v[0])}\ncutoff: ${num(v[3])}\n${a.label}`));
      });
      if (r.cutoff !== null) svg.appendChild(hover(s("line", { x1: m.l, x2: w - m.r, y1: ys(r.cutoff), y2: ys(r.cutoff), stroke: "#1e1e1e", "stroke-dasharray": "5 3", "stroke-width": 1.5 }), `latest cutoff: ${num(r.cutoff)}`));
      const title = r.method === "asha" || r.method === "hyperband" ? `${r.method} bracket ${r.bracket} rung ${r.rung} (epoch ${r.epochs.join(", ")})`
        : r.method === "pbt" ? `pbt at epoch ${r.epochs.join(", ")}` : `${r.method} at epoch ${r.rung}`;
      const promo = (r.paused || r.promoted ? `, ${r.paused} paused, ${r.promoted} promoted` : "") + (r.exploited ? `, ${r.exploited} exploited` : "");
      return figure(`${title}: ${r.stopped} of ${r.decisions} stopped${promo}`, svg);
    });
    const acts = ["continue", "stop"].concat(d.rungs.some((r) => r.paused || r.promoted) ? ["pause", "promote"] : [], d.rungs.some((r) => r.exploited) ? ["exploit"] : []);
    replace(el.rungs, h("div", { class: "legend" }, acts.map((k) => h("span", {}, h("i", { style: { background: ACTION[k].color, height: "8px" } }), ACTION[k].label)),
      h("span", {}, h("i", { style: { background: "#1e1e1e" } }), "cutoff (dashed)")), h("div", { class: "slices" }, figs));
  }

  every(1000, refreshFast);
  every(5000, refreshSlow);
}

// ------------------------------------------------------------------ trial page

async function trialPage(main, id) {
  const el = {};
  for (const k of ["head", "cards", "params", "curves", "attempts", "lineage", "test", "classes", "confusion", "mis"]) el[k] = h("div", { id: "sec-" + k });
  // PBT: shown only for a trial that took another's checkpoint.
  const lineageSec = section("PBT lineage", el.lineage);
  lineageSec.style.display = "none";
  replace(main, el.head, el.cards,
    section("Parameters", el.params), section("Curves", el.curves), section("Attempts", el.attempts), lineageSec,
    section("Test results", el.test, h("div", { class: "grid2" }, el.classes, el.confusion)),
    section("Misclassified test images", el.mis));
  const openLogs = new Set();
  const refresh = async () => {
    const [d, m] = await Promise.all([api(`/api/trials/${encodeURIComponent(id)}`), api(`/api/trials/${encodeURIComponent(id)}/metrics`)]);
    const t = d.trial;
    crumbs({ text: "sweeps", href: link("/") }, { text: "›" }, { text: t.sweep, href: sweepHref(t.sweep) }, { text: "›" }, { text: t.id });
    document.title = t.id + " · " + t.sweep + " · sweep";
    replace(el.head, h("h1", {}, "trial ", t.id, " ", pill(t.status)), h("p", { class: "note" }, "sweep ", h("a", { href: sweepHref(t.sweep) }, t.sweep), " · #", t.ordinal, " · metric ", t.metric));
    replace(el.cards, h("div", { class: "cards" }, card("epoch", `${t.epochs_done}/${t.epochs}`), card("device", t.device || "—"),
      card("best " + t.metric, num(bestOf(m, t.metric, d.maximize))), card("images/s", num(t.images_per_s, 0)), card("wall time", dur(t.wall_s)),
      card("started", when(t.started_at)), card("finished", when(t.finished_at)), card("attempts", d.attempts.length)));
    replace(el.params, h("table", { class: "kv", id: "params" }, h("tbody", {}, Object.entries(d.params).map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, scalar(v)))))));
    renderCurves(m);
    renderAttempts(d);
    renderLineage(d.lineage || []);
    renderTest(d);
  };
  function renderLineage(rows) {
    lineageSec.style.display = rows.length ? "" : "none";
    const changed = (c) => { try { return Object.entries(JSON.parse(c)).map(([k, v]) => `${k} ${scalar(v[0])} → ${scalar(v[1])}`).join(", "); } catch (e) { return c; } };
    replace(el.lineage, rows.length ? h("table", { class: "data", id: "lineage" }, h("thead", {}, h("tr", {}, ["epoch", "took the checkpoint of", "its value", "this trial's", "changed"].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows.map((l) => h("tr", {}, h("td", { class: "num" }, l.epoch), h("td", {}, h("a", { href: trialHref(l.donor_id) }, l.donor_id)),
        h("td", { class: "num" }, num(l.donor_value)), h("td", { class: "num" }, num(l.value)), h("td", {}, changed(l.changes)))))) : null);
  }
  function bestOf(m, metric, maximize) {
    const split = metric.startsWith("val_") ? "valid" : null, name = split ? metric.slice(4) : metric;
    const ser = m.series.find((x) => x.name === name && (split ? x.split === split : x.split !== "train"));
    if (!ser || !ser.points.length) return null;
    const v = ser.points.map((p) => p[2]).filter(isFinite);
    return v.length ? (maximize ? Math.max(...v) : Math.min(...v)) : null;
  }
  function renderCurves(m) {
    const perEpoch = m.series.filter((x) => x.split !== "train" && x.name !== "lr" && x.name !== "seconds" && x.name !== "images_per_s");
    const names = [...new Set(perEpoch.map((x) => x.name))];
    const figs = names.map((n) => {
      const ser = perEpoch.filter((x) => x.name === n).map((x, i) => ({ label: `${x.split} ${n}`, points: x.points.map((p) => [p[1], p[2]]), color: color(i), width: 2 }));
      return figure(`${n} per epoch (${ser.map((x) => x.label).join(", ")})`, lineChart({ series: ser, width: 560, height: 260, xLabel: "epoch", yLabel: n, dots: true }));
    });
    const train = m.series.filter((x) => x.split === "train" && x.name === "loss");
    if (train.length) figs.unshift(figure("train loss per step", lineChart({ series: train.map((x) => ({ label: "train loss", points: x.points.map((p) => [p[0], p[2], "epoch " + p[1]]), color: PALETTE[0], width: 1.2 })), width: 560, height: 260, xLabel: "step", yLabel: "loss" })));
    replace(el.curves, figs.length ? h("div", { class: "grid2" }, figs) : h("p", { class: "muted" }, "no metric recorded yet"));
  }
  function renderAttempts(d) {
    const rows = d.attempts.map((a) => {
      const det = h("details", { open: openLogs.has(a.attempt) }, h("summary", {}, "log tail"), h("pre", { class: "log" }, "loading…"));
      const load = async () => {
        try {
          const l = await api(`/api/trials/${encodeURIComponent(id)}/log/${a.attempt}`);
          det.lastChild.textContent = l.text === null ? l.missing : (l.truncated ? "… (the last " + l.text.length + " characters of " + l.size + " bytes)\n" : "") + (l.text || "(empty)");
        }
        catch (e) { det.lastChild.textContent = e.message; }
      };
      det.addEventListener("toggle", () => { if (det.open) { openLogs.add(a.attempt); load(); } else openLogs.delete(a.attempt); });
      if (det.open) load();
      const outcome = a.finished_at === null ? "running" : a.error_class || (a.exit_code === 0 ? "ok" : `exit ${a.exit_code ?? "?"}${a.signal ? " signal " + a.signal : ""}`);
      return [h("tr", {}, h("td", { class: "num" }, a.attempt), h("td", {}, (a.node ? a.node + " " : "") + (a.device || "—")), h("td", {}, when(a.started_at)),
        h("td", { class: "num" }, dur((a.finished_at || d.now) - a.started_at)), h("td", {}, outcome), h("td", {}, a.message || ""),
        h("td", { class: "num" }, a.resumed_from_epoch ?? "—")),
      h("tr", {}, h("td", { colspan: 7 }, det))];
    });
    replace(el.attempts, rows.length ? h("table", { class: "data", id: "attempts" }, h("thead", {}, h("tr", {}, ["#", "slot", "started", "took", "outcome", "message", "resumed from"].map((c) => h("th", {}, c)))), h("tbody", {}, rows)) : h("p", { class: "muted" }, "not started yet"));
  }
  function renderTest(d) {
    replace(el.test, d.test ? h("div", { class: "cards" }, card("test accuracy", num(d.test.accuracy)), card("test loss", num(d.test.loss)), card("test images", d.test.n), card("checkpoint of epoch", d.test.epoch)) : h("p", { class: "muted" }, "no test results yet"));
    replace(el.classes, d.classes.length ? figure("accuracy per class (test)", barChart({ items: d.classes.map((c) => ({ label: c.class, value: c.accuracy, color: PALETTE[0], text: `${(c.accuracy * 100).toFixed(1)} % (${c.correct}/${c.total})` })), max: 1, width: 560, xFmt: (v) => (v * 100).toFixed(0) + " %" })) : null);
    const labels = [...new Set(d.confusion.flatMap((c) => [c.true_class, c.pred_class]))].sort();
    const ix = new Map(labels.map((l, i) => [l, i]));
    replace(el.confusion, d.confusion.length ? figure("confusion matrix (test): rows are true classes, shade is the row's share", heatmap(labels, d.confusion.map((c) => [ix.get(c.true_class), ix.get(c.pred_class), c.count]))) : null);
    replace(el.mis, d.misclassified.length ? h("div", { class: "thumbs" }, d.misclassified.map((x) => {
      const u = new URL(`/api/trials/${encodeURIComponent(id)}/image`, location.origin);
      u.searchParams.set("file", x.file); if (TOKEN) u.searchParams.set("token", TOKEN);
      const img = h("img", { src: u.pathname + u.search, alt: x.file, loading: "lazy" });
      img.addEventListener("error", () => { img.replaceWith(h("div", { class: "note" }, "(image not available)")); });
      return hover(h("div", { class: "thumb" }, img, h("div", {}, "true: ", x.true_class), h("div", {}, "predicted: ", x.pred_class), h("div", { class: "muted" }, "p = " + num(x.prob, 3))), x.file);
    })) : h("p", { class: "muted" }, "none recorded"));
    wireTips(el.mis);
  }
  every(2000, refresh);
}

// ------------------------------------------------------------------ router

function start() {
  const main = document.getElementById("main");
  const path = location.pathname;
  let m;
  try {
    if ((m = path.match(/^\/sweep\/([^/]+)$/))) return sweepPage(main, decodeURIComponent(m[1]));
    if ((m = path.match(/^\/trial\/([^/]+)$/))) return trialPage(main, decodeURIComponent(m[1]));
    return sweepsPage(main);
  } catch (e) { setLive(false, e.message); }
}

document.addEventListener("DOMContentLoaded", start);
