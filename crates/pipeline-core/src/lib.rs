//! The decisions of the R2 hot-key write pipeline, kept free of the Workers
//! runtime so they are tested natively and fast.
//!
//! The Worker crate (`src/`) is a thin adapter: it turns requests, queue
//! messages and Durable Object events into calls on this crate and turns the
//! answers back into HTTP, R2 and SQL operations.

pub mod auth;
pub mod batch;
pub mod billing;
pub mod coalesce;
pub mod conditional;
pub mod config;
pub mod consumer;
pub mod counter;
pub mod engine;
pub mod error;
pub mod id;
pub mod inline_statuses;
pub mod key;
pub mod message;
pub mod meta;
pub mod metrics;
pub mod ops_page;
pub mod prefer;
pub mod producer;
pub mod protocol;
pub mod queues;
pub mod r2_errors;
pub mod range;
pub mod ratelimit;
pub mod schedule;
pub mod stats;
pub mod status;
pub mod superseded;
pub mod time;
pub mod webhook;
pub mod write_condition;
