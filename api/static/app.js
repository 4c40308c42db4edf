// The creditflow operations page: sign in with a token, upload a month, run it, see and download
// the results. Plain DOM and SVG, no libraries, so it works without network access.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "creditflow.token";
const POLL_MS = 1500;
const SVG_NS = "http://www.w3.org/2000/svg";
const DECISION_COLORS = { approve: "#1d7a46", review: "#a56a00", decline: "#b3261e" };

const $ = (id) => document.getElementById(id);

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function badge(status) {
  return el("span", { class: `badge ${status}`, text: status });
}

class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail);
    this.status = status;
    this.body = body;
  }
}

// Send a request with the token; return parsed JSON (or the Response when raw is set).
async function api(path, { method = "GET", body = null, json = undefined, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  const response = await fetch(API + path, { method, headers, body });
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    let parsed = null;
    try {
      parsed = await response.json();
      if (parsed && parsed.detail) detail = parsed.detail;
    } catch (error) {
      // not JSON: keep the status line
    }
    if (response.status === 401) signOut(detail);
    throw new ApiError(response.status, detail, parsed);
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

// --- sign in -------------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const value = $("token-input").value.trim();
  sessionStorage.setItem(TOKEN_KEY, value);
  $("token-input").value = "";
  await showWorkspace();
}

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  $("workspace").hidden = true;
  $("sign-in").hidden = false;
  $("sign-out").hidden = true;
  $("whoami").textContent = "not signed in";
  $("token-error").textContent = message;
}

async function showWorkspace() {
  if (!token()) return signOut();
  try {
    const me = await api("/whoami");
    $("whoami").textContent = `${me.name} (${me.role})`;
    $("token-error").textContent = "";
  } catch (error) {
    signOut(error.message);
    return;
  }
  $("sign-in").hidden = true;
  $("workspace").hidden = false;
  $("sign-out").hidden = false;
  await Promise.allSettled([loadMonths(), loadRuns()]);
}

// --- upload --------------------------------------------------------------------------------

function renderFindings(title, findings) {
  if (!findings || findings.length === 0) return null;
  const table = el("table", { class: "findings" },
    el("thead", {}, el("tr", {}, el("th", { text: "Check" }), el("th", { text: "Column" }),
      el("th", { text: "Rows" }), el("th", { text: "Problem" }), el("th", { text: "What to do" }),
      el("th", { text: "Examples" }))));
  const body = el("tbody");
  for (const finding of findings) {
    const samples = (finding.samples || []).slice(0, 3)
      .map((sample) => Object.entries(sample).map(([k, v]) => `${k}=${v}`).join(" ")).join("; ");
    body.append(el("tr", {}, el("td", { text: finding.check }), el("td", { text: finding.column || "" }),
      el("td", { text: finding.count }), el("td", { text: finding.message }),
      el("td", { text: finding.hint || "" }), el("td", { text: samples })));
  }
  table.append(body);
  return el("div", {}, el("h3", { text: `${title} (${findings.length})` }), table);
}

function renderUpload(result) {
  const box = $("upload-result");
  box.replaceChildren();
  const report = result.report || {};
  box.append(el("p", {}, badge(result.outcome || "rejected"), " ", result.detail));
  const facts = el("dl", { class: "report" });
  const add = (label, value) => {
    if (value !== null && value !== undefined && value !== "") {
      facts.append(el("dt", { text: label }), el("dd", { text: value }));
    }
  };
  add("Month", result.month);
  add("File", result.client_filename);
  add("Format", result.file_format);
  add("Rows", result.rows);
  add("Size", result.size_bytes !== undefined && result.size_bytes !== null ? `${result.size_bytes} bytes` : null);
  add("SHA-256", result.sha256);
  add("Gate", result.message);
  if (report.results) {
    const passed = report.results.filter((item) => item.success).length;
    add("Checks passed", `${passed} of ${report.results.length}`);
  }
  box.append(facts);
  for (const part of [renderFindings("Failed checks", report.failures),
    renderFindings("Warnings", report.warnings)]) {
    if (part) box.append(part);
  }
}

async function upload(event) {
  event.preventDefault();
  const file = $("upload-file").files[0];
  const month = $("upload-month").value.trim();
  if (!file) return;
  const form = new FormData();
  form.append("month", month);
  form.append("file", file);
  $("upload-submit").disabled = true;
  $("upload-progress").textContent = `Uploading ${file.name} (${file.size} bytes) and validating...`;
  $("upload-result").replaceChildren();
  try {
    const result = await api("/uploads", { method: "POST", body: form });
    renderUpload(result);
    if (month !== "history") {
      $("run-month").value = month;
      $("summary-month").value = month;
    }
  } catch (error) {
    if (error.body && error.body.outcome) renderUpload(error.body);
    else $("upload-result").replaceChildren(el("p", { class: "error", text: error.message }));
  } finally {
    $("upload-submit").disabled = false;
    $("upload-progress").textContent = "";
    loadMonths();
  }
}

// --- runs ----------------------------------------------------------------------------------

let pollTimer = null;

function renderRun(run) {
  const status = $("run-status");
  status.replaceChildren(badge(run.status), ` run ${run.run_id} for ${run.month}`);
  if (run.message) {
    status.append(el("span", { class: run.status === "failed" ? "error" : "muted", text: ` ${run.message}` }));
  }
  status.dataset.status = run.status;
  const list = $("run-steps");
  list.replaceChildren();
  for (const step of run.steps) {
    const item = el("li", { "data-step": step.step, "data-status": step.status },
      `${step.step} `, badge(step.status));
    if (step.error) item.append(el("span", { class: "error", text: step.error }));
    list.append(item);
  }
}

async function pollRun(runId) {
  clearTimeout(pollTimer);
  try {
    const run = await api(`/runs/${encodeURIComponent(runId)}`);
    renderRun(run);
    if (run.status === "queued" || run.status === "running") {
      pollTimer = setTimeout(() => pollRun(runId), POLL_MS);
      return;
    }
    $("run-submit").disabled = false;
    loadRuns();
    loadMonths();
    if (run.status === "succeeded") {
      $("summary-month").value = run.month;
      loadSummary();
    }
  } catch (error) {
    $("run-status").append(el("span", { class: "error", text: ` ${error.message}` }));
    pollTimer = setTimeout(() => pollRun(runId), POLL_MS * 2);
  }
}

async function startRun(event) {
  event.preventDefault();
  const request = { month: $("run-month").value.trim(), reuse_model: $("run-reuse").checked };
  if ($("run-from").value) request.from_step = $("run-from").value;
  $("run-submit").disabled = true;
  try {
    const run = await api("/runs", { method: "POST", json: request });
    renderRun(run);
    loadRuns();
    pollRun(run.run_id);
  } catch (error) {
    $("run-status").replaceChildren(el("span", { class: "error", text: error.message }));
    $("run-submit").disabled = false;
  }
}

function shortTime(text) {
  return text ? new Date(text).toLocaleString() : "";
}

async function loadRuns() {
  const body = $("runs-table").tBodies[0];
  try {
    const runs = await api("/runs?limit=10");
    body.replaceChildren(...runs.map((run) => {
      const link = el("button", { type: "button", text: run.run_id.slice(0, 8) });
      link.addEventListener("click", () => pollRun(run.run_id));
      return el("tr", {}, el("td", {}, link), el("td", { text: run.month }),
        el("td", {}, badge(run.status)), el("td", { text: run.requested_by }),
        el("td", { text: shortTime(run.requested_at) }), el("td", { text: shortTime(run.ended_at) }),
        el("td", { text: run.message || "" }));
    }));
  } catch (error) {
    body.replaceChildren(el("tr", {}, el("td", { class: "error", colspan: "7", text: error.message })));
  }
}

async function loadMonths() {
  const body = $("months-table").tBodies[0];
  $("months-error").textContent = "";
  try {
    const months = await api("/months");
    body.replaceChildren(...months.map((month) => {
      const actions = el("td");
      if (month.month !== "history") {
        const show = el("button", { type: "button", text: "Show" });
        show.addEventListener("click", () => { $("summary-month").value = month.month; loadSummary(); });
        const run = el("button", { type: "button", text: "Run" });
        run.addEventListener("click", () => { $("run-month").value = month.month; $("run-month").focus(); });
        actions.append(run, show);
      }
      return el("tr", { "data-month": month.month }, el("td", { text: month.month }),
        el("td", { text: month.rows }),
        el("td", {}, month.load_status ? badge(month.load_status) : "", ` ${shortTime(month.loaded_at)}`),
        el("td", { text: month.running ? "running" : (month.scored ? "yes" : "no") }),
        el("td", { text: month.predictions }), actions);
    }));
  } catch (error) {
    $("months-error").textContent = error.message;
  }
}

// --- results and charts --------------------------------------------------------------------

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function svgText(x, y, text, anchor = "middle") {
  const node = svg("text", { x, y, "text-anchor": anchor });
  node.textContent = text;
  return node;
}

// Vertical bars with a label under each and its value above it.
function barChart(container, bars, { width = 420, height = 220, labelEvery = 1 } = {}) {
  const margin = { top: 18, right: 10, bottom: 34, left: 10 };
  const plotHeight = height - margin.top - margin.bottom;
  const slot = (width - margin.left - margin.right) / Math.max(bars.length, 1);
  const maximum = Math.max(1, ...bars.map((bar) => bar.value));
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  bars.forEach((bar, index) => {
    const barHeight = (bar.value / maximum) * plotHeight;
    const x = margin.left + index * slot;
    const y = margin.top + plotHeight - barHeight;
    const rect = svg("rect", { x: x + slot * 0.1, y, width: slot * 0.8, height: barHeight,
      fill: bar.color || "#1f5fbf", "data-label": bar.label, "data-value": bar.value });
    const title = svg("title");
    title.textContent = `${bar.label}: ${bar.value}`;
    rect.append(title);
    chart.append(rect);
    if (bars.length <= 12) chart.append(svgText(x + slot / 2, y - 4, String(bar.value)));
    if (index % labelEvery === 0) chart.append(svgText(x + slot / 2, height - margin.bottom + 14, bar.label));
  });
  chart.append(svg("line", { x1: margin.left, x2: width - margin.right, y1: margin.top + plotHeight,
    y2: margin.top + plotHeight, stroke: "#5b6474" }));
  container.replaceChildren(chart);
}

async function loadSummary(event) {
  if (event) event.preventDefault();
  const month = $("summary-month").value.trim();
  $("summary-error").textContent = "";
  if (!month) return;
  try {
    const summary = await api(`/predictions/${encodeURIComponent(month)}`);
    const counts = summary.decision_counts;
    $("summary-text").textContent = `${summary.month}: ${summary.rows} applications scored by ` +
      `${summary.model_ids.join(", ")}, mean default probability ` +
      `${(summary.mean_default_probability * 100).toFixed(1)} %` +
      (summary.source === "export" ? " (from the exported file; the warehouse is busy)" : "");
    barChart($("chart-decisions"), Object.entries(counts).map(([label, value]) => ({
      label, value, color: DECISION_COLORS[label] })));
    barChart($("chart-scores"), summary.score_histogram.map((bin) => ({
      label: bin.lower.toFixed(2), value: bin.count })), { labelEvery: 4 });
  } catch (error) {
    $("summary-text").textContent = "";
    $("chart-decisions").replaceChildren();
    $("chart-scores").replaceChildren();
    $("summary-error").textContent = error.message;
  }
}

// Fetch with the token and save the body under the server's file name.
async function download(suffix) {
  const month = $("summary-month").value.trim();
  $("summary-error").textContent = "";
  try {
    const response = await api(`/predictions/${encodeURIComponent(month)}.${suffix}`, { raw: true });
    const blob = await response.blob();
    const link = el("a", { href: URL.createObjectURL(blob), download: `predictions_${month}.${suffix}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (error) {
    $("summary-error").textContent = error.message;
  }
}

async function openReport() {
  const month = $("summary-month").value.trim();
  $("summary-error").textContent = "";
  try {
    const response = await api(`/reports/${encodeURIComponent(month)}`, { raw: true });
    const blob = await response.blob();
    window.open(URL.createObjectURL(new Blob([blob], { type: "text/html" })), "_blank", "noopener");
  } catch (error) {
    $("summary-error").textContent = error.message;
  }
}

// --- wiring --------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut());
  $("upload-form").addEventListener("submit", upload);
  $("run-form").addEventListener("submit", startRun);
  $("summary-form").addEventListener("submit", loadSummary);
  $("download-csv").addEventListener("click", () => download("csv"));
  $("download-parquet").addEventListener("click", () => download("parquet"));
  $("open-report").addEventListener("click", openReport);
  $("months-refresh").addEventListener("click", loadMonths);
  $("runs-refresh").addEventListener("click", loadRuns);
  showWorkspace();
});
