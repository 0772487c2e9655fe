//! A typed, blocking HTTP client for the write pipeline's API (`docs/API.md`
//! in the repository): a Cloudflare Worker that puts a queue-buffered write
//! pipeline in front of R2.
//!
//! - [`Client`]: one method per route, typed success bodies, and
//!   [`ClientError::Api`] carrying the status, the JSON error code and the
//!   response headers of every non-2xx answer. [`Client::raw`] sends anything
//!   at all, for bad-input tests.
//! - [`ClientBuilder`]: connect, read and write timeouts per request, an
//!   overall limit, and a [`RetryPolicy`] (exponential backoff with jitter
//!   on `429` and `503`, honouring `Retry-After`; asynchronous writes are
//!   retried only when they carry an `Idempotency-Key`).
//! - [`Client::wait_committed`], [`Client::wait_terminal`] and
//!   [`Client::watch_upload`]: follow an accepted write with the status
//!   long-poll until it is committed, superseded or failed.
//! - Streaming bodies both ways: [`Client::put_object_stream`] sends a file
//!   of any size without reading it into memory, and
//!   [`Client::get_object_stream`] hands out the object's bytes as a reader.
//!
//! The end-to-end suite, the benchmark and the `r2p` command-line tool all
//! speak to the Worker through this crate, so every route, header and error
//! shape of the contract is written down once, in Rust types.
//!
//! # Cargo features
//!
//! - `tls` (default): `https://` URLs, through rustls.
//! - `harness` (off): `harness::LocalWorker`, which starts the real Worker
//!   under `wrangler dev` in its own process group on a free port with a
//!   fresh persisted state, waits for `/healthz`, and stops, kills or
//!   restarts it by process-group id. For tests and benchmarks only.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use pipeline_client::{Client, GetOptions, PutOptions};
//!
//! let client = Client::builder("http://127.0.0.1:8787")
//!     .token(Some("dev-token"))
//!     .build();
//! let accepted = client.put_object("greetings/hello.txt", b"hello", &PutOptions::content_type("text/plain"))?;
//! let status = client.wait_committed(&accepted.id, Duration::from_secs(30))?;
//! let object = client.get_object("greetings/hello.txt", &GetOptions::default())?;
//! assert_eq!(object.body, b"hello");
//! assert_eq!(object.etag(), status.etag.as_deref());
//! # Ok::<(), pipeline_client::ClientError>(())
//! ```

#![deny(missing_docs)]

mod client;
mod encode;
mod error;
#[cfg(feature = "harness")]
pub mod harness;
mod headers;
mod retry;
mod types;

pub use client::{
    Client, ClientBuilder, GetOptions, ListOptions, ObjectStream, PutOptions, RawResponse, TraceFn,
    MAX_WAIT_SECONDS,
};
pub use encode::{encode_counter_name, encode_key, encode_query_value};
pub use error::ClientError;
pub use headers::Headers;
pub use retry::RetryPolicy;
pub use types::{
    Accepted, Counter, ErrorBody, ListPage, ListedObject, ObjectResponse, Stats, SyncCommitted,
    UploadState, UploadStatus,
};
