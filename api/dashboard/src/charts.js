// The four charts, drawn with uPlot; each figure reports what it shows in data attributes.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

const HEIGHT = 210;
const COLORS = {
  p50: "#4c9be8",
  p95: "#f0a33a",
  p99: "#e0565b",
  rps: "#4c9be8",
  tokens: "#8bc34a",
  queue: "#b07ce8",
  batches: "#4c9be8",
};
const AXIS = { stroke: "#9aa4b2", grid: { stroke: "#2a3240", width: 1 }, ticks: { stroke: "#2a3240" } };
const clock = (t) => new Date(t * 1000).toLocaleTimeString("en-GB");
const TIME_AXIS = { ...AXIS, space: 80, values: (u, splits) => splits.map(clock) };

// uPlot draws points while they have room (30 slots do): a lone slot amid gaps stays visible.
function line(label, color, extra = {}) {
  return { label, stroke: color, width: 2, points: { size: 5 }, spanGaps: false, ...extra };
}

// The last five minutes until data arrives; then half a slot of room on each side, so the
// newest and oldest points are not cut in half.
function timeRange(u, min, max) {
  const now = Date.now() / 1000;
  return min == null || max == null ? [now - 300, now] : [min - 5, max + 5];
}

function emptyRange(min, max) {
  return min == null || max == null ? [0, 1] : null;
}

/** A chart in `figure` (its `.plot` child), kept as wide as the figure. */
class Chart {
  constructor(figure, options, columns) {
    this.figure = figure;
    const plot = figure.querySelector(".plot");
    this.plot = new uPlot({ width: plot.clientWidth || 400, height: HEIGHT, ...options }, columns, plot);
    new ResizeObserver(() => this.plot.setSize({ width: plot.clientWidth, height: HEIGHT })).observe(plot);
  }

  /** Show `columns` ([xs, ...ys]); the figure says how many x values and non-null y values it has. */
  set(columns) {
    this.plot.setData(columns);
    const values = columns.slice(1).reduce((n, ys) => n + ys.filter((y) => y != null).length, 0);
    this.figure.dataset.points = String(columns[0].length);
    this.figure.dataset.values = String(values);
  }
}

function timeChart(figure, series, axes, scales = {}) {
  const options = {
    series: [{}, ...series],
    axes: [TIME_AXIS, ...axes.map((a) => ({ ...AXIS, ...a }))],
    scales: { x: { time: true, range: timeRange }, ...scales },
    legend: { live: false },
    cursor: { drag: { x: false, y: false } },
  };
  return new Chart(figure, options, [[], ...series.map(() => [])]);
}

/** Build the charts inside the page's `[data-chart]` figures. */
export function createCharts(root) {
  const figure = (name) => root.querySelector(`[data-chart="${name}"]`);

  const latency = timeChart(
    figure("latency"),
    [line("p50", COLORS.p50), line("p95", COLORS.p95), line("p99", COLORS.p99)],
    [{ label: "ms", size: 56 }],
    { y: { range: (u, min, max) => emptyRange(min, max) ?? [0, max * 1.1] } },
  );
  const throughput = timeChart(
    figure("throughput"),
    [line("req/s", COLORS.rps), line("tokens/s", COLORS.tokens, { scale: "tokens", dash: [6, 4] })],
    [{ label: "req/s", size: 56 }, { label: "tokens/s", scale: "tokens", side: 1, size: 64, grid: { show: false } }],
    {
      y: { range: (u, min, max) => emptyRange(min, max) ?? [0, Math.max(1, max * 1.1)] },
      tokens: { range: (u, min, max) => emptyRange(min, max) ?? [0, Math.max(1, max * 1.1)] },
    },
  );
  const queue = timeChart(
    figure("queue_depth"),
    [line("queue depth", COLORS.queue, { fill: "rgba(176, 124, 232, 0.15)", paths: uPlot.paths.stepped({ align: 1 }) })],
    [{ label: "requests", size: 56 }],
    { y: { range: (u, min, max) => emptyRange(min, max) ?? [0, Math.max(1, max * 1.1)] } },
  );

  let sizeLabels = [];
  const batchSizes = new Chart(
    figure("batch_sizes"),
    {
      series: [
        { label: "batch size", value: (u, i) => (i == null ? "" : (sizeLabels[i] ?? "")) },
        {
          label: "requests",
          stroke: COLORS.batches,
          fill: "rgba(76, 155, 232, 0.6)",
          paths: uPlot.paths.bars({ size: [0.7, 48] }),
          points: { show: false },
        },
      ],
      scales: {
        x: { time: false, range: (u, min, max) => emptyRange(min, max) ?? [min - 0.5, max + 0.5] },
        y: { range: (u, min, max) => emptyRange(min, max) ?? [0, Math.max(1, max * 1.1)] },
      },
      axes: [
        {
          ...AXIS,
          label: "requests per batch",
          grid: { show: false },
          splits: () => sizeLabels.map((_, i) => i),
          values: (u, splits) => splits.map((i) => sizeLabels[i] ?? ""),
        },
        { ...AXIS, label: "requests", size: 56 },
      ],
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
    },
    [[], []],
  );

  return {
    /** Redraw every chart from one snapshot. */
    update(snapshot) {
      const series = snapshot.series ?? [];
      const xs = series.map((p) => p.t);
      const column = (key) => series.map((p) => p[key] ?? null);
      latency.set([xs, column("p50_ms"), column("p95_ms"), column("p99_ms")]);
      throughput.set([xs, column("throughput_rps"), column("tokens_per_s")]);
      queue.set([xs, column("queue_depth")]);

      const sizes = Object.entries(snapshot.windows?.["1m"]?.batch_sizes ?? {})
        .map(([size, count]) => [Number(size), count])
        .sort((a, b) => a[0] - b[0]);
      sizeLabels = sizes.map(([size]) => String(size));
      batchSizes.set([sizes.map((_, i) => i), sizes.map(([, count]) => count)]);
    },
  };
}
