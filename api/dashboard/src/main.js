// The live dashboard: metrics snapshots from the SSE stream, drawn as numbers and charts.
import { createCharts } from "./charts.js";
import { connectMetrics } from "./stream.js";
import "./style.css";

const STREAM_URL = "/api/v1/metrics/stream";
const DRIFT_STATES = new Set(["ok", "warn", "drift", "insufficient_data"]);

const number = (digits) => (v) => v.toLocaleString("en-US", { maximumFractionDigits: digits });
const count = number(0);
const rate = (v) => number(v < 10 ? 2 : 1)(v);
const ms = (v) => number(v < 10 ? 1 : 0)(v);
const percent = (v) => `${(v * 100).toFixed(1)} %`;
const clock = (v) => new Date(v * 1000).toLocaleTimeString("en-GB");

/** Every `[data-metric]` of the page: how to read it from a snapshot and how to show it. */
const METRICS = {
  generated_at: [(s) => s.generated_at, clock],
  queue_depth: [(s) => s.queue_depth, count],
  throughput_rps_1m: [(s, w) => w.throughput_rps, rate],
  tokens_per_s_1m: [(s, w) => w.tokens_per_s?.total, rate],
  requests_1m: [(s, w) => w.requests, count],
  p50_ms_1m: [(s, w) => w.latency_ms?.end_to_end?.p50, ms],
  p95_ms_1m: [(s, w) => w.latency_ms?.end_to_end?.p95, ms],
  p99_ms_1m: [(s, w) => w.latency_ms?.end_to_end?.p99, ms],
  cache_hit_ratio_1m: [(s, w) => w.cache_hit_ratio, percent],
  batch_fill_ratio_1m: [(s, w) => w.batch_fill_ratio, percent],
  succeeded_1m: [(s, w) => w.outcomes?.succeeded, count],
  cached_1m: [(s, w) => w.outcomes?.cached, count],
  failed_1m: [(s, w) => w.outcomes?.failed, count],
  rejected_rate_limit_1m: [(s, w) => w.outcomes?.rejected_rate_limit, count],
  rejected_backpressure_1m: [(s, w) => w.outcomes?.rejected_backpressure, count],
};

/** The drift status of a snapshot: `drift` may be null, a status string, or an object with a `status`. */
function driftStatus(drift) {
  const status = typeof drift === "string" ? drift : drift?.status;
  return DRIFT_STATES.has(status) ? status : "n/a";
}

function showMetrics(snapshot) {
  const window1m = snapshot.windows?.["1m"] ?? {};
  for (const element of document.querySelectorAll("[data-metric]")) {
    const [read, format] = METRICS[element.dataset.metric] ?? [];
    if (!read) continue;
    const value = read(snapshot, window1m);
    const known = typeof value === "number" && Number.isFinite(value);
    element.textContent = known ? format(value) : "—";
    element.dataset.value = known ? String(value) : "";
    if (element.classList.contains("bad-if-positive")) element.classList.toggle("bad", known && value > 0);
  }
  const drift = document.getElementById("drift");
  const status = driftStatus(snapshot.drift);
  drift.dataset.drift = status;
  drift.textContent = status.replace("_", " ");
}

function showConnection(state) {
  const pill = document.getElementById("connection");
  pill.dataset.state = state;
  pill.textContent = state === "connecting" ? "connecting…" : state;
  document.body.dataset.connection = state;
}

function start() {
  const charts = createCharts(document);
  connectMetrics(STREAM_URL, {
    onState: showConnection,
    onSnapshot(snapshot) {
      showMetrics(snapshot);
      charts.update(snapshot);
    },
  });
}

start();
