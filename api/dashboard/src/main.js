// The live dashboard: metrics snapshots from the SSE stream, drawn as numbers and charts.
// The stream needs an API key: the page asks for one, keeps it in sessionStorage (this tab
// only, gone when it closes) and sends it as `?key=` (EventSource cannot send headers).
import { createCharts } from "./charts.js";
import { connectMetrics } from "./stream.js";
import "./style.css";

const STREAM_URL = "/api/v1/metrics/stream";
/** Asked, with the key in a header, when the stream is refused: 401 means the key is not valid. */
const SNAPSHOT_URL = "/api/v1/metrics";
const KEY_STORAGE = "batchgate.apiKey";
/** How long to wait before trying again when the key has too many streams open. */
const TOO_MANY_STREAMS_RETRY_MS = 5000;
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
  rejected_in_flight_1m: [(s, w) => w.outcomes?.rejected_in_flight, count],
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

const CONNECTION_LABELS = { connecting: "connecting…", key: "API key needed" };

function showConnection(state) {
  const pill = document.getElementById("connection");
  pill.dataset.state = state;
  pill.textContent = CONNECTION_LABELS[state] ?? state;
  document.body.dataset.connection = state;
}

/** A message above the tiles (`reason` in `data-reason` for tests and styling); "" hides it. */
function showNotice(reason, text = "") {
  const notice = document.getElementById("notice");
  notice.dataset.reason = reason;
  notice.textContent = text;
  notice.hidden = !reason;
}

function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) ?? "";
  } catch {
    return ""; // storage disabled: the key is asked for on every load
  }
}

function storeKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // storage disabled: the key lives as long as the page
  }
}

async function errorCode(response) {
  try {
    return (await response.json())?.error?.code ?? "";
  } catch {
    return "";
  }
}

function start() {
  const charts = createCharts(document);
  const form = document.getElementById("key-form");
  const input = document.getElementById("api-key");
  const message = document.getElementById("key-message");
  let stream = null;

  function askForKey(reason, text) {
    if (stream) stream.stop();
    stream = null;
    showConnection("key");
    showNotice("");
    message.dataset.reason = reason;
    message.textContent = text;
    form.hidden = false;
    input.value = "";
    input.focus();
  }

  /** The stream was refused and EventSource cannot say why: ask the snapshot with the key. */
  async function whyRefused(key) {
    let response;
    try {
      response = await fetch(SNAPSHOT_URL, { headers: { "X-API-Key": key }, cache: "no-store" });
    } catch {
      return {}; // nothing answers: retry as usual
    }
    if (response.status === 401) {
      storeKey("");
      askForKey("invalid_key", "That API key was refused (unknown or revoked). Enter a valid key.");
      return { stop: true };
    }
    // The key is good and the API answers, yet the stream was refused: the key holds as many
    // live streams as it may (429 too_many_streams).
    if (response.ok || (await errorCode(response)) === "metrics_not_ready") {
      showNotice(
        "too_many_streams",
        "Too many live streams are open with this API key (each key may hold only a few at once): " +
          `close another dashboard tab or window. Retrying in ${TOO_MANY_STREAMS_RETRY_MS / 1000} s.`,
      );
      return { retryMs: TOO_MANY_STREAMS_RETRY_MS };
    }
    return {}; // a 502/503 while the replicas restart: retry as usual
  }

  function connect(key) {
    if (stream) stream.stop();
    form.hidden = true;
    stream = connectMetrics(`${STREAM_URL}?key=${encodeURIComponent(key)}`, {
      onState(state) {
        showConnection(state);
        if (state === "connected") showNotice("");
      },
      onSnapshot(snapshot) {
        showMetrics(snapshot);
        charts.update(snapshot);
      },
      onRefused: () => whyRefused(key),
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    input.value = "";
    storeKey(key);
    connect(key);
  });

  const key = storedKey();
  if (key) connect(key);
  else askForKey("", "");
}

start();
