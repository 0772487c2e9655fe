//! `pipeline-bench`: the write pipeline against the naive direct write and
//! the synchronous (rate-limited) write, side by side, in one run on the
//! real Worker. See `docs/BENCHMARKS.md` for a run and how to read it.
//!
//! Scenarios: [`ingest`] (the `202` path against `/healthz` and a bare
//! queue send), [`storm`] (hot keys through the three approaches),
//! [`large`] (10 and 50 MiB through the staged path, runtime memory) and
//! [`wasm`] (the Worker's size), [`stats_scale`] (what reading `/stats`
//! costs as sources grow) and [`cost`] (billable operations per upload and
//! their price, [`prices`]). [`report`] checks the figures against the
//! benchmark's targets and turns them into a table and JSON with every
//! input ([`env`]).

pub mod charts;
pub mod cost;
pub mod ctx;
pub mod env;
pub mod ingest;
pub mod large;
pub mod load;
pub mod prices;
pub mod report;
pub mod rss;
pub mod stats;
pub mod stats_scale;
pub mod storm;
pub mod wasm;
