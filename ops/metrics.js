// The operations page's pure logic: reading the Prometheus text of
// GET /metrics, the commit-lag quantiles between two polls, and the path
// of a key's GET /stats/keys/{key}. No DOM: tested with node
// (ops/metrics.test.mjs).

/**
 * Parses the Prometheus text format (0.0.4) into plain samples
 * (`name` -> value, for counters and gauges) and histograms
 * (`base` -> {buckets: [[le, cumulative]...] sorted by le, sum, count}).
 */
export function parseMetrics(text) {
  const samples = {};
  const histograms = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const [, name, labels = "", rawValue] = m;
    const value = parseValue(rawValue);
    if (Number.isNaN(value)) continue;
    const le = /le="([^"]*)"/.exec(labels);
    if (name.endsWith("_bucket") && le) {
      const base = name.slice(0, -"_bucket".length);
      const h = (histograms[base] ??= { buckets: [], sum: 0, count: 0 });
      h.buckets.push([parseValue(le[1]), value]);
    } else if (labels === "") {
      samples[name] = value;
    }
  }
  for (const [base, h] of Object.entries(histograms)) {
    h.buckets.sort((a, b) => a[0] - b[0]);
    h.sum = samples[`${base}_sum`] ?? 0;
    h.count = samples[`${base}_count`] ?? 0;
  }
  return { samples, histograms };
}

function parseValue(s) {
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  return Number(s);
}

/**
 * The q-quantile of the observations that arrived between two readings of
 * a cumulative histogram (`prev` may be null: all of `cur`), interpolated
 * linearly within the bucket as Prometheus' histogram_quantile does. Null
 * when nothing arrived or the readings do not line up (a counter reset).
 */
export function intervalQuantile(q, prev, cur) {
  if (!cur || cur.buckets.length === 0) return null;
  const deltas = [];
  for (let i = 0; i < cur.buckets.length; i++) {
    const [le, n] = cur.buckets[i];
    let before = 0;
    if (prev) {
      const p = prev.buckets[i];
      if (!p || p[0] !== le) return null;
      before = p[1];
    }
    if (n < before) return null;
    deltas.push([le, n - before]);
  }
  const total = deltas[deltas.length - 1][1];
  if (total <= 0) return null;
  const rank = q * total;
  for (let i = 0; i < deltas.length; i++) {
    const [upper, below] = deltas[i];
    if (below < rank) continue;
    const lower = i === 0 ? 0 : deltas[i - 1][0];
    if (upper === Infinity) return lower;
    const underLower = i === 0 ? 0 : deltas[i - 1][1];
    const inBucket = below - underLower;
    if (inBucket <= 0) return upper;
    return lower + (upper - lower) * ((rank - underLower) / inBucket);
  }
  return null;
}

/** `/stats/keys/{key}` with each `/`-separated segment URL-encoded. */
export function keyPath(key) {
  return `/stats/keys/${key.split("/").map(encodeURIComponent).join("/")}`;
}
