//! A typed, blocking HTTP client for the write pipeline's API (`docs/API.md`)
//! and a harness that runs the real Worker locally under `wrangler dev`.
//!
//! The end-to-end suite and the benchmark both speak to the Worker through
//! this crate, so every route, header and error shape of the contract is
//! written down once, in Rust types, instead of being re-spelled in each test.
//!
//! - [`Client`]: one method per route, typed success bodies, and
//!   [`ClientError::Api`] carrying the status, the JSON error code and the
//!   response headers of every non-2xx answer. [`Client::raw`] sends anything
//!   at all, for bad-input tests.
//! - [`harness::LocalWorker`]: starts `wrangler dev` in its own process group
//!   on a free port with a fresh persisted state, waits for `/healthz`, and
//!   stops, kills or restarts it by process-group id.

mod client;
mod encode;
mod error;
pub mod harness;
mod headers;
mod types;

pub use client::{Client, GetOptions, ListOptions, PutOptions, RawResponse};
pub use encode::{encode_counter_name, encode_key, encode_query_value};
pub use error::ClientError;
pub use headers::Headers;
pub use types::{
    Accepted, Counter, ErrorBody, ListPage, ListedObject, ObjectResponse, Stats, SyncCommitted,
    UploadState, UploadStatus,
};
