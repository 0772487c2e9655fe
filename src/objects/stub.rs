//! Typed calls to the Durable Objects: each call's path and reply type come
//! from its [`Call`] impl (`pipeline_core::protocol`, or the counter's calls
//! in [`super::counter`]), so a request can only be sent to the path that
//! serves it and decoded as what that path answers.

use pipeline_core::config::STATS_SHARDS;
use pipeline_core::error::ApiError;
use pipeline_core::protocol::{bindings, Call};
use sha2::{Digest, Sha256};
use worker::{Env, Headers, Method, Request, RequestInit, Stub};

use crate::http::internal;

/// A Durable Object to send [`Call`]s to.
pub struct ObjectStub {
    stub: Stub,
    binding: &'static str,
}

/// What became of a call.
pub enum Exchange<T> {
    /// The object answered: its reply or its error.
    Answered(Result<T, ApiError>),
    /// The call did not reach the object, or its answer was lost; the
    /// object may or may not have run it.
    Unreachable(ApiError),
}

impl ObjectStub {
    fn named(env: &Env, binding: &'static str, name: &str) -> Result<Self, ApiError> {
        let stub = env
            .durable_object(binding)
            .and_then(|ns| ns.get_by_name(name))
            .map_err(|e| internal(binding, e))?;
        Ok(Self { stub, binding })
    }

    /// The scheduler of an object key (one per key).
    ///
    /// # Errors
    /// [`ApiError::Internal`] when the binding is missing.
    pub fn scheduler(env: &Env, key: &str) -> Result<Self, ApiError> {
        Self::named(env, bindings::SCHEDULER, key)
    }

    /// The object of a counter name.
    ///
    /// # Errors
    /// As [`ObjectStub::scheduler`].
    pub fn counter(env: &Env, name: &str) -> Result<Self, ApiError> {
        Self::named(env, bindings::COUNTERS, name)
    }

    /// The stats shard `shard` (`0..STATS_SHARDS`).
    ///
    /// # Errors
    /// As [`ObjectStub::scheduler`].
    pub fn stats_shard(env: &Env, shard: u32) -> Result<Self, ApiError> {
        Self::named(env, bindings::STATS, &format!("stats-{shard}"))
    }

    /// The stats shard a source pushes to.
    ///
    /// # Errors
    /// As [`ObjectStub::scheduler`].
    pub fn stats_of(env: &Env, source: &str) -> Result<Self, ApiError> {
        let h = Sha256::digest(source.as_bytes());
        let n = h.iter().take(4).fold(0u32, |a, b| (a << 8) | u32::from(*b));
        Self::stats_shard(env, n % STATS_SHARDS)
    }

    /// Sends `call` and decodes the reply.
    ///
    /// # Errors
    /// The object's own error (decoded with [`ApiError::from_body`]), or
    /// [`ApiError::Unavailable`] when it cannot be reached.
    pub async fn call<C: Call>(&self, call: &C) -> Result<C::Reply, ApiError> {
        match self.exchange(call).await {
            Exchange::Answered(r) => r,
            Exchange::Unreachable(e) => Err(e),
        }
    }

    /// [`ObjectStub::call`], telling an answer apart from a call that may
    /// not have reached the object.
    pub async fn exchange<C: Call>(&self, call: &C) -> Exchange<C::Reply> {
        let req = match request(C::PATH, call) {
            Ok(r) => r,
            Err(e) => return Exchange::Answered(Err(e)),
        };
        #[cfg(feature = "test-routes")]
        let started = crate::http::now_ms();
        let sent = self.stub.fetch_with_request(req).await;
        #[cfg(feature = "test-routes")]
        #[allow(clippy::cast_precision_loss)]
        crate::billing::do_request(self.binding, (crate::http::now_ms() - started) as f64);
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Exchange::Unreachable(ApiError::Unavailable(format!(
                    "{} unreachable: {e}",
                    self.binding
                )))
            }
        };
        let status = resp.status_code();
        // serde_json, not the runtime's JSON.parse: integers above 2^53
        // (counter values) would come back as floats.
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => {
                return Exchange::Unreachable(ApiError::Unavailable(format!(
                    "{} answer lost: {e}",
                    self.binding
                )))
            }
        };
        Exchange::Answered(if status >= 400 {
            Err(ApiError::from_body(status, &text))
        } else {
            serde_json::from_str(&text).map_err(|e| internal("decoding an object's answer", e))
        })
    }
}

/// The `POST` of one call.
fn request<C: Call>(path: &str, call: &C) -> Result<Request, ApiError> {
    let text = serde_json::to_string(call).map_err(|e| internal("encoding an object call", e))?;
    let headers = Headers::new();
    let _ = headers.set("Content-Type", "application/json");
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(text.into()));
    Request::new_with_init(&format!("https://do{path}"), &init)
        .map_err(|e| internal("building an object call", e))
}
