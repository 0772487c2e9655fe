// Tests of the operations page's pure logic: `node --test ops/`.
import assert from "node:assert/strict";
import { test } from "node:test";

import { intervalQuantile, keyPath, parseMetrics } from "./metrics.js";

// The shape pipeline_core::metrics::render writes.
const TEXT = `# HELP pipeline_uploads_accepted_total Writes given an id.
# TYPE pipeline_uploads_accepted_total counter
pipeline_uploads_accepted_total 42
pipeline_inflight 3
# TYPE pipeline_commit_lag_seconds histogram
pipeline_commit_lag_seconds_bucket{le="0.5"} 1
pipeline_commit_lag_seconds_bucket{le="1"} 10
pipeline_commit_lag_seconds_bucket{le="2.5"} 10
pipeline_commit_lag_seconds_bucket{le="+Inf"} 11
pipeline_commit_lag_seconds_sum 12.5
pipeline_commit_lag_seconds_count 11
other_metric{shard="a"} 7
`;

const hist = (pairs) => ({ buckets: pairs, sum: 0, count: pairs[pairs.length - 1][1] });

test("parseMetrics reads counters, gauges and a histogram", () => {
  const m = parseMetrics(TEXT);
  assert.equal(m.samples.pipeline_uploads_accepted_total, 42);
  assert.equal(m.samples.pipeline_inflight, 3);
  assert.equal(m.samples.other_metric, undefined, "labelled samples are not plain values");
  const h = m.histograms.pipeline_commit_lag_seconds;
  assert.deepEqual(h.buckets, [[0.5, 1], [1, 10], [2.5, 10], [Infinity, 11]]);
  assert.equal(h.sum, 12.5);
  assert.equal(h.count, 11);
});

test("parseMetrics sorts buckets and skips lines it cannot read", () => {
  const m = parseMetrics('x_bucket{le="+Inf"} 2\nx_bucket{le="1"} 1\nnot a sample line\n\n');
  assert.deepEqual(m.histograms.x.buckets, [[1, 1], [Infinity, 2]]);
});

test("intervalQuantile interpolates within the bucket, from zero without a previous reading", () => {
  const cur = hist([[0.5, 0], [1, 10], [Infinity, 10]]);
  assert.equal(intervalQuantile(0.5, null, cur), 0.75);
  assert.equal(intervalQuantile(1, null, cur), 1);
});

test("intervalQuantile counts only what arrived since the previous reading", () => {
  const prev = hist([[0.5, 0], [1, 10], [2.5, 10], [Infinity, 10]]);
  const cur = hist([[0.5, 0], [1, 10], [2.5, 14], [Infinity, 14]]);
  assert.equal(intervalQuantile(0.5, prev, cur), 1.75);
  assert.ok(Math.abs(intervalQuantile(0.99, prev, cur) - 2.485) < 1e-9);
});

test("intervalQuantile: nothing new, a reset or other buckets give null", () => {
  const a = hist([[1, 5], [Infinity, 5]]);
  assert.equal(intervalQuantile(0.5, a, a), null);
  assert.equal(intervalQuantile(0.5, hist([[1, 6], [Infinity, 6]]), a), null);
  assert.equal(intervalQuantile(0.5, hist([[2, 1], [Infinity, 1]]), a), null);
  assert.equal(intervalQuantile(0.5, null, { buckets: [] }), null);
});

test("intervalQuantile in the +Inf bucket is its lower bound", () => {
  const cur = hist([[1, 0], [60, 0], [Infinity, 3]]);
  assert.equal(intervalQuantile(0.5, null, cur), 60);
});

test("keyPath encodes each segment and keeps the slashes", () => {
  assert.equal(keyPath("a b/c?d#e%"), "/stats/keys/a%20b/c%3Fd%23e%25");
  assert.equal(keyPath("e2e/ops/1-2"), "/stats/keys/e2e/ops/1-2");
  assert.equal(keyPath("ü"), "/stats/keys/%C3%BC");
});
