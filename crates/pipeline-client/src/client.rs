//! [`Client`]: one typed method per route of `docs/API.md`.
//!
//! Blocking (`ureq`) on purpose: callers drive concurrency with plain
//! threads, and a blocking call keeps every request's timing visible.
//! [`Client::new`] never retries and never follows redirects, so what a test
//! sees is exactly what the Worker answered; [`Client::builder`] makes a
//! client with timeouts and a [`RetryPolicy`] of the caller's choosing.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::encode::{encode_counter_name, encode_key, query_string};
use crate::error::{body_excerpt, from_error_response, ClientError};
use crate::headers::Headers;
use crate::retry::RetryPolicy;
use crate::types::{
    Accepted, Counter, ListPage, ObjectResponse, Stats, SyncCommitted, UploadState, UploadStatus,
};

/// The longest long-poll the API allows (`?wait=`), in seconds.
pub const MAX_WAIT_SECONDS: u32 = 30;

/// Headers and flags of a PUT.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// `Content-Type`; absent means the Worker's default.
    pub content_type: Option<String>,
    /// Any other headers: `Content-Encoding`, `Cache-Control`, `X-Meta-*`, …
    pub headers: Vec<(String, String)>,
    /// `Idempotency-Key`.
    pub idempotency_key: Option<String>,
}

impl PutOptions {
    /// Options with a `Content-Type`.
    #[must_use]
    pub fn content_type(content_type: &str) -> Self {
        Self {
            content_type: Some(content_type.to_owned()),
            ..Self::default()
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets `Idempotency-Key`.
    #[must_use]
    pub fn idempotency_key(mut self, key: &str) -> Self {
        self.idempotency_key = Some(key.to_owned());
        self
    }
}

/// Conditional, range and consistency options of a GET or HEAD.
#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    /// `Range`, e.g. `bytes=0-9`.
    pub range: Option<String>,
    /// `If-Match`.
    pub if_match: Option<String>,
    /// `If-None-Match`.
    pub if_none_match: Option<String>,
    /// `If-Modified-Since` (an HTTP date).
    pub if_modified_since: Option<String>,
    /// `If-Unmodified-Since` (an HTTP date).
    pub if_unmodified_since: Option<String>,
    /// `?consistency=latest`.
    pub consistency_latest: bool,
}

/// Query of `GET /objects`.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// `prefix`.
    pub prefix: Option<String>,
    /// `delimiter`.
    pub delimiter: Option<String>,
    /// `cursor` from the previous page.
    pub cursor: Option<String>,
    /// `limit` (1 to 1000).
    pub limit: Option<u32>,
}

/// Any answer, error statuses included, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// The HTTP status.
    pub status: u16,
    /// All headers.
    pub headers: Headers,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body as text (lossy UTF-8).
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Errors
    ///
    /// [`ClientError::Unexpected`] when the body is not JSON.
    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| self.unexpected(format!("not JSON: {e}")))
    }

    /// `error.code` of a JSON error body, if the body is one.
    #[must_use]
    pub fn error_code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v.get("error")?.get("code")?.as_str().map(str::to_owned)
    }

    fn unexpected(&self, reason: String) -> ClientError {
        ClientError::Unexpected {
            status: self.status,
            reason,
            body: body_excerpt(&self.body),
            headers: self.headers.clone(),
        }
    }

    /// `Ok(self)` when the status is one of `expected`; an API error for
    /// other 4xx/5xx; [`ClientError::Unexpected`] for other statuses.
    fn expect(self, expected: &[u16]) -> Result<Self, ClientError> {
        if expected.contains(&self.status) {
            Ok(self)
        } else {
            Err(self.into_error(expected))
        }
    }

    /// The error for an answer whose status is not one of `expected`: an
    /// API error for 4xx/5xx, [`ClientError::Unexpected`] otherwise.
    fn into_error(self, expected: &[u16]) -> ClientError {
        if self.status >= 400 {
            from_error_response(self.status, self.headers, &self.body)
        } else {
            self.unexpected(format!("expected status {expected:?}"))
        }
    }

    fn decode<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| self.unexpected(format!("body does not match the contract: {e}")))
    }
}

/// Receives one line per request sent and per retry decision (`--verbose`
/// output, logs). The lines name the method, URL, status and timing; they
/// never contain the token or any header value.
pub type TraceFn = Arc<dyn Fn(&str) + Send + Sync>;

/// Builds a [`Client`] with chosen timeouts and retries.
///
/// Defaults: connect timeout 5 s, read timeout 60 s (longer than the
/// longest status long-poll), write timeout 60 s, no overall limit per
/// request, [`RetryPolicy::default`] (3 retries of idempotent requests on
/// `429` and `503`, honouring `Retry-After`), no token.
///
/// ```no_run
/// use std::time::Duration;
/// use pipeline_client::{Client, RetryPolicy};
///
/// let url = std::env::var("R2P_URL").unwrap_or_else(|_| "http://127.0.0.1:8787".into());
/// let client = Client::builder(&url)
///     .token(std::env::var("R2P_TOKEN").ok().as_deref())
///     .connect_timeout(Duration::from_secs(3))
///     .read_timeout(Duration::from_secs(45))
///     .retry(RetryPolicy::default().max_retries(5))
///     .build();
/// # let _ = client;
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    base: String,
    token: Option<String>,
    connect_timeout: Duration,
    read_timeout: Duration,
    write_timeout: Duration,
    timeout: Option<Duration>,
    retry: RetryPolicy,
    trace: Option<TraceFn>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// A builder for the Worker at `base_url` (e.g. `http://127.0.0.1:8787`;
    /// a trailing `/` is ignored).
    #[must_use]
    pub fn new(base_url: &str) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            token: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(u64::from(MAX_WAIT_SECONDS) + 30),
            write_timeout: Duration::from_secs(60),
            timeout: None,
            retry: RetryPolicy::default(),
            trace: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` on every request (`None`: no
    /// token; reads work when the deployment's reads are public).
    #[must_use]
    pub fn token(mut self, token: Option<&str>) -> Self {
        self.token = token.map(str::to_owned);
        self
    }

    /// The time allowed to open a connection.
    #[must_use]
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// The longest silence while reading an answer. Status long-polls are
    /// shortened to fit within it (5 s less), so waits keep working with
    /// a short read timeout.
    #[must_use]
    pub fn read_timeout(mut self, d: Duration) -> Self {
        self.read_timeout = d;
        self
    }

    /// The longest stall while sending a request body.
    #[must_use]
    pub fn write_timeout(mut self, d: Duration) -> Self {
        self.write_timeout = d;
        self
    }

    /// An overall limit for each request, connection to last byte (none by
    /// default). Mind large uploads and downloads when setting it.
    #[must_use]
    pub fn timeout(mut self, d: Option<Duration>) -> Self {
        self.timeout = d;
        self
    }

    /// When to retry `429` and `503` answers; see [`RetryPolicy`].
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Calls `trace` with one line per request and per retry.
    #[must_use]
    pub fn trace(mut self, trace: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.trace = Some(Arc::new(trace));
        self
    }

    /// The client.
    #[must_use]
    pub fn build(self) -> Client {
        let mut agent = ureq::AgentBuilder::new()
            .timeout_connect(self.connect_timeout)
            .timeout_read(self.read_timeout)
            .timeout_write(self.write_timeout)
            .redirects(0)
            .max_idle_connections_per_host(64);
        if let Some(t) = self.timeout {
            agent = agent.timeout(t);
        }
        let budget = self
            .timeout
            .map_or(self.read_timeout, |t| t.min(self.read_timeout));
        Client {
            base: self.base,
            token: self.token,
            agent: agent.build(),
            retry: self.retry,
            trace: self.trace,
            poll_cap: poll_cap(budget),
        }
    }
}

/// The longest `?wait=` that fits in a request time limit of `budget`,
/// leaving 5 s for the answer to travel.
fn poll_cap(budget: Duration) -> u32 {
    u32::try_from(budget.saturating_sub(Duration::from_secs(5)).as_secs())
        .unwrap_or(MAX_WAIT_SECONDS)
        .min(MAX_WAIT_SECONDS)
}

/// Whether repeating a request could take effect twice (see [`RetryPolicy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// A repeat is harmless.
    Idempotent,
    /// A repeat could make a second write or counter step.
    NonIdempotent,
    /// Sent once whatever the policy (raw requests, one-shot readers).
    Once,
}

/// A request body.
enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `Content-Length: len`, the bytes read from a fresh reader per attempt.
    Stream {
        len: u64,
        open: &'a mut dyn FnMut() -> io::Result<Box<dyn Read + 'a>>,
    },
}

/// An object's bytes as a stream (`GET /objects/{key}` without buffering);
/// from [`Client::get_object_stream`]. Read it with [`Read`].
pub struct ObjectStream {
    /// `200` or `206` (`304` has no body).
    pub status: u16,
    /// All response headers.
    pub headers: Headers,
    reader: Box<dyn Read + Send + Sync + 'static>,
}

impl std::fmt::Debug for ObjectStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStream")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl ObjectStream {
    /// The `Content-Length` header: the number of bytes that follow.
    #[must_use]
    pub fn content_length(&self) -> Option<u64> {
        self.headers
            .get("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    /// The `ETag` header.
    #[must_use]
    pub fn etag(&self) -> Option<&str> {
        self.headers.get("etag")
    }

    /// The `Content-Type` header.
    #[must_use]
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get("content-type")
    }
}

impl Read for ObjectStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

/// A blocking client for one Worker.
///
/// Cheap to clone and safe to share between threads (connections are pooled).
///
/// ```no_run
/// use pipeline_client::Client;
///
/// let client = Client::builder("http://127.0.0.1:8787")
///     .token(Some("dev-token"))
///     .build();
/// client.healthz()?;
/// # Ok::<(), pipeline_client::ClientError>(())
/// ```
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
    retry: RetryPolicy,
    trace: Option<TraceFn>,
    /// The longest `?wait=` that fits in the request time limits.
    poll_cap: u32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// A transport error's text without the URL that ureq puts first (the
/// caller names the request itself).
fn transport_text(url: &str, t: &ureq::Transport) -> String {
    let text = t.to_string();
    match text
        .strip_prefix(url)
        .and_then(|rest| rest.strip_prefix(": "))
    {
        Some(rest) => rest.to_owned(),
        None => text,
    }
}

fn headers_of(resp: &ureq::Response) -> Headers {
    Headers::new(resp.headers_names().into_iter().flat_map(|name| {
        resp.all(&name)
            .into_iter()
            .map(|v| (name.clone(), v.to_owned()))
            .collect::<Vec<_>>()
    }))
}

impl Client {
    /// A client for `base_url` (e.g. `http://127.0.0.1:8787`) that sends
    /// `Authorization: Bearer <token>` on every request when `token` is given.
    ///
    /// It never retries ([`RetryPolicy::never`]): every answer is exactly
    /// what the Worker sent, as tests need. Use [`Client::builder`] for
    /// retries and timeouts of your own.
    #[must_use]
    pub fn new(base_url: &str, token: Option<&str>) -> Self {
        ClientBuilder::new(base_url)
            .token(token)
            .retry(RetryPolicy::never())
            .build()
    }

    /// A [`ClientBuilder`] for `base_url`.
    #[must_use]
    pub fn builder(base_url: &str) -> ClientBuilder {
        ClientBuilder::new(base_url)
    }

    /// The same client with an overall time limit per request (instead of
    /// the default connect/read/write timeouts), on a connection pool of its
    /// own: to notice that an answer is held up, or to bound a request that
    /// might hang.
    #[must_use]
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(timeout)
            .redirects(0)
            .max_idle_connections_per_host(64)
            .build();
        Self {
            agent,
            poll_cap: poll_cap(timeout),
            ..self.clone()
        }
    }

    /// The same client with another token (or none); shares the connection pool.
    #[must_use]
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    /// The same client with another retry policy; shares the connection pool.
    #[must_use]
    pub fn with_retry(&self, policy: RetryPolicy) -> Self {
        Self {
            retry: policy,
            ..self.clone()
        }
    }

    /// The base URL, without a trailing slash.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The retry policy in force.
    #[must_use]
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    fn trace(&self, line: impl FnOnce() -> String) {
        if let Some(t) = &self.trace {
            t(&line());
        }
    }

    /// A request with the bearer token (unless `headers` has an
    /// `Authorization` of its own) and `headers`.
    fn request(&self, method: &str, url: &str, headers: &[(&str, &str)]) -> ureq::Request {
        let mut req = self.agent.request(method, url);
        let has_auth = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        if let (Some(token), false) = (&self.token, has_auth) {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        for (name, value) in headers {
            req = req.set(name, value);
        }
        req
    }

    /// Sends a request, retrying `429`/`503` as the policy and `replay`
    /// allow, and returns the last answer unread.
    fn exchange(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        mut body: Body<'_>,
        replay: Replay,
    ) -> Result<ureq::Response, ClientError> {
        let url = format!("{}{}", self.base, path_and_query);
        let retry_allowed = match replay {
            Replay::Idempotent => self.retry.allows(true),
            Replay::NonIdempotent => self.retry.allows(false),
            Replay::Once => false,
        };
        let mut retry = 0;
        loop {
            let req = self.request(method, &url, headers);
            let started = Instant::now();
            let result = match &mut body {
                Body::Empty => req.call(),
                Body::Bytes(bytes) => req.send_bytes(bytes),
                Body::Stream { len, open } => {
                    let reader = open().map_err(|e| {
                        ClientError::Body(format!("{method} {url}: opening the body: {e}"))
                    })?;
                    req.set("Content-Length", &len.to_string()).send(reader)
                }
            };
            let resp = match result {
                Ok(r) | Err(ureq::Error::Status(_, r)) => r,
                Err(ureq::Error::Transport(t)) => {
                    let t = transport_text(&url, &t);
                    self.trace(|| format!("{method} {url} -> transport error: {t}"));
                    return Err(ClientError::Transport(format!("{method} {url}: {t}")));
                }
            };
            let status = resp.status();
            self.trace(|| {
                format!(
                    "{method} {url} -> {status} ({} ms)",
                    started.elapsed().as_millis()
                )
            });
            if retry_allowed {
                if let Some(delay) = self.retry.delay(retry, status, &headers_of(&resp)) {
                    // Read the (small) error body so the connection is reused.
                    let _ = io::copy(&mut resp.into_reader().take(64 * 1024), &mut io::sink());
                    retry += 1;
                    self.trace(|| {
                        format!(
                            "retry {retry}/{} of {method} {url} in {} ms after {status}",
                            self.retry.retries(),
                            delay.as_millis()
                        )
                    });
                    std::thread::sleep(delay);
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// [`Client::exchange`], then the whole body read.
    fn send(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
        replay: Replay,
    ) -> Result<RawResponse, ClientError> {
        let resp = self.exchange(method, path_and_query, headers, body, replay)?;
        Self::collect(method, &format!("{}{path_and_query}", self.base), resp)
    }

    /// Sends any request and returns the answer whatever its status; never
    /// retried.
    ///
    /// `path_and_query` is sent as given (it must start with `/`); the client
    /// adds its bearer token unless `headers` has an `Authorization` header.
    /// `body: Some(b)` sends `b` with a `Content-Length`, `None` sends no body.
    ///
    /// ```no_run
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", None);
    /// let resp = client.raw("PATCH", "/objects/a.txt", &[], Some(b"x"))?;
    /// assert_eq!(resp.status, 405);
    /// assert_eq!(resp.error_code().as_deref(), Some("method_not_allowed"));
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClientError::Transport`] only: no HTTP answer was received.
    pub fn raw(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<RawResponse, ClientError> {
        let body = body.map_or(Body::Empty, Body::Bytes);
        self.send(method, path_and_query, headers, body, Replay::Once)
    }

    /// Like [`Client::raw`], but sends `body` with `Transfer-Encoding:
    /// chunked` and no `Content-Length` (a body whose length is unknown).
    ///
    /// # Errors
    ///
    /// [`ClientError::Transport`] only: no HTTP answer was received.
    pub fn raw_chunked(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<RawResponse, ClientError> {
        let url = format!("{}{}", self.base, path_and_query);
        // ureq sends a reader without a Content-Length chunked.
        let result = self
            .request(method, &url, headers)
            .send(io::Cursor::new(body));
        let resp = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => {
                let t = transport_text(&url, &t);
                return Err(ClientError::Transport(format!("{method} {url}: {t}")));
            }
        };
        Self::collect(method, &url, resp)
    }

    fn collect(method: &str, url: &str, resp: ureq::Response) -> Result<RawResponse, ClientError> {
        let status = resp.status();
        let headers = headers_of(&resp);
        let mut body = Vec::new();
        resp.into_reader()
            .read_to_end(&mut body)
            .map_err(|e| ClientError::Transport(format!("{method} {url}: reading body: {e}")))?;
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    fn object_path(key: &str, query: &str) -> String {
        format!("/objects/{}{query}", encode_key(key))
    }

    /// The headers of a PUT, and whether it carries an `Idempotency-Key`.
    fn put_headers(opts: &PutOptions) -> (Vec<(&str, &str)>, bool) {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(ct) = &opts.content_type {
            headers.push(("Content-Type", ct));
        }
        if let Some(ik) = &opts.idempotency_key {
            headers.push(("Idempotency-Key", ik));
        }
        headers.extend(opts.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        let keyed = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("idempotency-key"));
        (headers, keyed)
    }

    /// An asynchronous write is idempotent only with an `Idempotency-Key`.
    fn async_replay(keyed: bool) -> Replay {
        if keyed {
            Replay::Idempotent
        } else {
            Replay::NonIdempotent
        }
    }

    fn accepted(resp: RawResponse) -> Result<Accepted, ClientError> {
        let resp = resp.expect(&[202])?;
        let mut accepted: Accepted = resp.decode()?;
        accepted.location = resp.headers.get("location").map(str::to_owned);
        Ok(accepted)
    }

    /// `PUT /objects/{key}`: an asynchronous write, `202`.
    ///
    /// Retried on `429`/`503` only with an `Idempotency-Key` (or when the
    /// policy allows non-idempotent retries; see [`RetryPolicy`]).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use pipeline_client::{Client, PutOptions};
    ///
    /// let client = Client::builder("http://127.0.0.1:8787").token(Some("dev-token")).build();
    /// let opts = PutOptions::content_type("text/plain").idempotency_key("greeting-v1");
    /// let accepted = client.put_object("greetings/hello.txt", b"hello", &opts)?;
    /// println!("{} is {}", accepted.id, accepted.state.as_str());
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] for an error answer (e.g. `400 invalid_key`,
    /// `401 unauthorized`, `413 payload_too_large`), [`ClientError::Unexpected`]
    /// for any other status or a body off contract, [`ClientError::Transport`].
    pub fn put_object(
        &self,
        key: &str,
        body: &[u8],
        opts: &PutOptions,
    ) -> Result<Accepted, ClientError> {
        let (headers, keyed) = Self::put_headers(opts);
        let path = Self::object_path(key, "");
        let resp = self.send(
            "PUT",
            &path,
            &headers,
            Body::Bytes(body),
            Self::async_replay(keyed),
        )?;
        Self::accepted(resp)
    }

    /// `PUT /objects/{key}` with a body of `len` bytes streamed from a
    /// reader: nothing is held in memory. `open` is called once per attempt
    /// and must return a reader positioned at the body's first byte (e.g.
    /// open the file again), so retries resend the whole body.
    ///
    /// ```no_run
    /// use std::fs::File;
    /// use std::path::Path;
    /// use pipeline_client::{Client, PutOptions};
    ///
    /// let client = Client::builder("http://127.0.0.1:8787").token(Some("dev-token")).build();
    /// let path = Path::new("video.mp4");
    /// let len = std::fs::metadata(path).map_err(|e| pipeline_client::ClientError::Body(e.to_string()))?.len();
    /// let accepted = client.put_object_stream("videos/v.mp4", len, &PutOptions::default(), || {
    ///     File::open(path)
    /// })?;
    /// # let _ = accepted;
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Client::put_object`]; [`ClientError::Body`] when `open` fails.
    pub fn put_object_stream<R: Read>(
        &self,
        key: &str,
        len: u64,
        opts: &PutOptions,
        mut open: impl FnMut() -> io::Result<R>,
    ) -> Result<Accepted, ClientError> {
        let (headers, keyed) = Self::put_headers(opts);
        let path = Self::object_path(key, "");
        let mut boxed = || open().map(|r| Box::new(r) as Box<dyn Read>);
        let body = Body::Stream {
            len,
            open: &mut boxed,
        };
        let resp = self.send("PUT", &path, &headers, body, Self::async_replay(keyed))?;
        Self::accepted(resp)
    }

    /// `PUT /objects/{key}` with a body of `len` bytes read once from
    /// `reader` (a pipe, a socket). Sent exactly once, never retried: the
    /// reader cannot be rewound. Prefer [`Client::put_object_stream`] when
    /// the body can be read again.
    ///
    /// ```no_run
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", Some("dev-token"));
    /// let data = std::io::Cursor::new(vec![0u8; 1 << 20]);
    /// client.put_object_reader("blobs/zeros", data, 1 << 20, &Default::default())?;
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Client::put_object`].
    pub fn put_object_reader<R: Read>(
        &self,
        key: &str,
        reader: R,
        len: u64,
        opts: &PutOptions,
    ) -> Result<Accepted, ClientError> {
        let (headers, _) = Self::put_headers(opts);
        let path = Self::object_path(key, "");
        let mut once = Some(reader);
        let mut open = || {
            once.take()
                .map(|r| Box::new(r) as Box<dyn Read>)
                .ok_or_else(|| io::Error::other("the reader was already consumed"))
        };
        let body = Body::Stream {
            len,
            open: &mut open,
        };
        Self::accepted(self.send("PUT", &path, &headers, body, Replay::Once)?)
    }

    /// `PUT /objects/{key}?mode=sync`: a synchronous write, `201`.
    ///
    /// Retried on `429` (slot taken) and `503` as the policy allows.
    ///
    /// ```no_run
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", Some("dev-token"));
    /// let written = client.put_object_sync("config.json", br#"{"v":2}"#, &Default::default())?;
    /// println!("etag {} at {}", written.etag, written.committed_at);
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Client::put_object`]; notably `429 rate_limited` (its headers are
    /// in [`ClientError::headers`]) and `409 newer_write_pending`.
    pub fn put_object_sync(
        &self,
        key: &str,
        body: &[u8],
        opts: &PutOptions,
    ) -> Result<SyncCommitted, ClientError> {
        let (headers, _) = Self::put_headers(opts);
        let path = Self::object_path(key, "?mode=sync");
        self.send(
            "PUT",
            &path,
            &headers,
            Body::Bytes(body),
            Replay::Idempotent,
        )?
        .expect(&[201])?
        .decode()
    }

    /// `PUT /objects/{key}?mode=sync` with a streamed body, as
    /// [`Client::put_object_stream`].
    ///
    /// ```no_run
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", Some("dev-token"));
    /// let written = client.put_object_stream_sync("big.bin", 3, &Default::default(), || {
    ///     Ok(std::io::Cursor::new(b"abc"))
    /// })?;
    /// # let _ = written;
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Client::put_object_sync`]; [`ClientError::Body`] when `open` fails.
    pub fn put_object_stream_sync<R: Read>(
        &self,
        key: &str,
        len: u64,
        opts: &PutOptions,
        mut open: impl FnMut() -> io::Result<R>,
    ) -> Result<SyncCommitted, ClientError> {
        let (headers, _) = Self::put_headers(opts);
        let path = Self::object_path(key, "?mode=sync");
        let mut boxed = || open().map(|r| Box::new(r) as Box<dyn Read>);
        let body = Body::Stream {
            len,
            open: &mut boxed,
        };
        self.send("PUT", &path, &headers, body, Replay::Idempotent)?
            .expect(&[201])?
            .decode()
    }

    /// `DELETE /objects/{key}`: an asynchronous delete, `202`. Not retried
    /// unless the policy allows non-idempotent retries.
    ///
    /// ```no_run
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", Some("dev-token"));
    /// let accepted = client.delete_object("greetings/hello.txt")?;
    /// assert_eq!(accepted.size, 0);
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Client::put_object`].
    pub fn delete_object(&self, key: &str) -> Result<Accepted, ClientError> {
        let path = Self::object_path(key, "");
        Self::accepted(self.send("DELETE", &path, &[], Body::Empty, Replay::NonIdempotent)?)
    }

    /// `DELETE /objects/{key}?mode=sync`: a synchronous delete, `204`.
    ///
    /// ```no_run
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", Some("dev-token"));
    /// client.delete_object_sync("greetings/hello.txt")?;
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Client::put_object_sync`].
    pub fn delete_object_sync(&self, key: &str) -> Result<(), ClientError> {
        let path = Self::object_path(key, "?mode=sync");
        self.send("DELETE", &path, &[], Body::Empty, Replay::Idempotent)?
            .expect(&[204])
            .map(|_| ())
    }

    fn read_headers(opts: &GetOptions) -> (&'static str, Vec<(&'static str, &str)>) {
        let query = if opts.consistency_latest {
            "?consistency=latest"
        } else {
            ""
        };
        let mut headers: Vec<(&str, &str)> = Vec::new();
        for (name, value) in [
            ("Range", &opts.range),
            ("If-Match", &opts.if_match),
            ("If-None-Match", &opts.if_none_match),
            ("If-Modified-Since", &opts.if_modified_since),
            ("If-Unmodified-Since", &opts.if_unmodified_since),
        ] {
            if let Some(v) = value {
                headers.push((name, v));
            }
        }
        (query, headers)
    }

    fn read_object(
        &self,
        method: &str,
        key: &str,
        opts: &GetOptions,
    ) -> Result<ObjectResponse, ClientError> {
        let (query, headers) = Self::read_headers(opts);
        let path = Self::object_path(key, query);
        let resp = self
            .send(method, &path, &headers, Body::Empty, Replay::Idempotent)?
            .expect(&[200, 206, 304])?;
        Ok(ObjectResponse {
            status: resp.status,
            headers: resp.headers,
            body: resp.body,
        })
    }

    /// `GET /objects/{key}`: `200`, `206` or `304` as [`ObjectResponse`],
    /// the body read into memory (see [`Client::get_object_stream`] for
    /// large objects).
    ///
    /// ```no_run
    /// use pipeline_client::{Client, GetOptions};
    ///
    /// let client = Client::builder("http://127.0.0.1:8787").build();
    /// let whole = client.get_object("greetings/hello.txt", &GetOptions::default())?;
    /// let first = client.get_object(
    ///     "greetings/hello.txt",
    ///     &GetOptions { range: Some("bytes=0-0".into()), ..GetOptions::default() },
    /// )?;
    /// assert_eq!(first.status, 206);
    /// assert_eq!(&whole.body[..1], &first.body[..]);
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] for `404 object_not_found`, `412
    /// precondition_failed`, `416 range_not_satisfiable` (with its
    /// `Content-Range`), `401` when reads are private; otherwise as
    /// [`Client::put_object`].
    pub fn get_object(&self, key: &str, opts: &GetOptions) -> Result<ObjectResponse, ClientError> {
        self.read_object("GET", key, opts)
    }

    /// `GET /objects/{key}` as a stream: the headers are read, the bytes are
    /// left for the caller to [`Read`] (nothing is buffered).
    ///
    /// ```no_run
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", None);
    /// let mut stream = client.get_object_stream("videos/v.mp4", &Default::default())?;
    /// let mut file = std::fs::File::create("v.mp4").map_err(|e| pipeline_client::ClientError::Body(e.to_string()))?;
    /// let copied = std::io::copy(&mut stream, &mut file).map_err(|e| pipeline_client::ClientError::Transport(e.to_string()))?;
    /// assert_eq!(Some(copied), stream.content_length());
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Client::get_object`].
    pub fn get_object_stream(
        &self,
        key: &str,
        opts: &GetOptions,
    ) -> Result<ObjectStream, ClientError> {
        let (query, headers) = Self::read_headers(opts);
        let path = Self::object_path(key, query);
        let resp = self.exchange("GET", &path, &headers, Body::Empty, Replay::Idempotent)?;
        let status = resp.status();
        if matches!(status, 200 | 206 | 304) {
            return Ok(ObjectStream {
                status,
                headers: headers_of(&resp),
                reader: Box::new(resp.into_reader()),
            });
        }
        let url = format!("{}{path}", self.base);
        Err(Self::collect("GET", &url, resp)?.into_error(&[200, 206, 304]))
    }

    /// `HEAD /objects/{key}`: as [`Client::get_object`], without a body.
    ///
    /// ```no_run
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", None);
    /// let head = client.head_object("greetings/hello.txt", &Default::default())?;
    /// println!("etag {:?}", head.etag());
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Client::get_object`]; a HEAD error has no body, so a bodiless
    /// error status comes back as [`ClientError::Unexpected`] with its status.
    pub fn head_object(&self, key: &str, opts: &GetOptions) -> Result<ObjectResponse, ClientError> {
        self.read_object("HEAD", key, opts)
    }

    /// `GET /objects?prefix=&delimiter=&cursor=&limit=`: one page.
    ///
    /// ```no_run
    /// use pipeline_client::{Client, ListOptions};
    ///
    /// let client = Client::builder("http://127.0.0.1:8787").build();
    /// let page = client.list_objects(&ListOptions {
    ///     prefix: Some("greetings/".into()),
    ///     delimiter: Some("/".into()),
    ///     ..ListOptions::default()
    /// })?;
    /// for object in &page.objects {
    ///     println!("{} {}", object.size, object.key);
    /// }
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] for `400 invalid_parameter`; otherwise as
    /// [`Client::put_object`].
    pub fn list_objects(&self, opts: &ListOptions) -> Result<ListPage, ClientError> {
        let query = query_string(&[
            ("prefix", opts.prefix.clone()),
            ("delimiter", opts.delimiter.clone()),
            ("cursor", opts.cursor.clone()),
            ("limit", opts.limit.map(|l| l.to_string())),
        ]);
        self.send(
            "GET",
            &format!("/objects{query}"),
            &[],
            Body::Empty,
            Replay::Idempotent,
        )?
        .expect(&[200])?
        .decode()
    }

    /// Every page of a listing, following the cursor until not truncated.
    ///
    /// ```no_run
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", None);
    /// let pages = client.list_all(&Default::default())?;
    /// let keys: usize = pages.iter().map(|p| p.objects.len()).sum();
    /// println!("{keys} objects");
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Client::list_objects`], and [`ClientError::Unexpected`] when a
    /// truncated page has no cursor or more than 100,000 pages are seen.
    pub fn list_all(&self, opts: &ListOptions) -> Result<Vec<ListPage>, ClientError> {
        let mut pages = Vec::new();
        let mut opts = opts.clone();
        loop {
            let page = self.list_objects(&opts)?;
            let next = page.cursor.clone();
            let truncated = page.truncated;
            pages.push(page);
            if !truncated {
                return Ok(pages);
            }
            if pages.len() >= 100_000 {
                return Err(ClientError::Unexpected {
                    status: 200,
                    reason: "listing never ends".into(),
                    body: String::new(),
                    headers: Headers::default(),
                });
            }
            match next {
                Some(c) if !c.is_empty() => opts.cursor = Some(c),
                _ => {
                    return Err(ClientError::Unexpected {
                        status: 200,
                        reason: "truncated page without a cursor".into(),
                        body: String::new(),
                        headers: Headers::default(),
                    })
                }
            }
        }
    }

    /// `GET /uploads/{id}`, with `?wait=<seconds>` when `wait` is given (the
    /// answer comes once the state is terminal or the wait ends; the wait
    /// is sent as given, so keep it under the client's read timeout).
    ///
    /// ```no_run
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", None);
    /// # let id = "";
    /// let status = client.upload_status(id, Some(10))?;
    /// println!("{}", status.state.as_str());
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] for `404 upload_not_found` and `400
    /// invalid_parameter`; otherwise as [`Client::put_object`].
    pub fn upload_status(&self, id: &str, wait: Option<u32>) -> Result<UploadStatus, ClientError> {
        let query = query_string(&[("wait", wait.map(|w| w.to_string()))]);
        self.send(
            "GET",
            &format!("/uploads/{}{query}", encode_counter_name(id)),
            &[],
            Body::Empty,
            Replay::Idempotent,
        )?
        .expect(&[200])?
        .decode()
    }

    /// Follows an upload until its state is terminal, calling `on_change`
    /// with the first status seen and then with every status whose state
    /// differs from the previous one. Each poll is a long-poll of at most
    /// `poll` (and at most 30 s, and at most what the client's read timeout
    /// allows): the answer comes at once when the write ends, while changes
    /// between non-terminal states (`queued` to `scheduled`) are seen at the
    /// next poll. `timeout: None` waits as long as it takes.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", None);
    /// # let id = "";
    /// let last = client.watch_upload(id, Some(Duration::from_secs(60)), Duration::from_secs(2), |s| {
    ///     println!("{} {}", s.key, s.state.as_str());
    /// })?;
    /// assert!(last.state.is_terminal());
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClientError::NotTerminal`] when `timeout` passes first; any error
    /// of [`Client::upload_status`].
    pub fn watch_upload(
        &self,
        id: &str,
        timeout: Option<Duration>,
        poll: Duration,
        mut on_change: impl FnMut(&UploadStatus),
    ) -> Result<UploadStatus, ClientError> {
        let start = Instant::now();
        let poll_secs = u32::try_from(poll.as_secs())
            .unwrap_or(MAX_WAIT_SECONDS)
            .min(self.poll_cap);
        let mut last: Option<UploadState> = None;
        loop {
            let left = timeout.map(|t| t.saturating_sub(start.elapsed()));
            let left_secs =
                left.map_or(u32::MAX, |l| u32::try_from(l.as_secs()).unwrap_or(u32::MAX));
            let wait = poll_secs.min(left_secs).max(u32::from(self.poll_cap > 0));
            let asked = Instant::now();
            let status = self.upload_status(id, Some(wait))?;
            if last.as_ref() != Some(&status.state) {
                on_change(&status);
                last = Some(status.state.clone());
            }
            if status.state.is_terminal() {
                return Ok(status);
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return Err(ClientError::NotTerminal {
                    id: id.to_owned(),
                    last_state: status.state.as_str().to_owned(),
                    waited_ms: start.elapsed().as_millis(),
                });
            }
            // A poll that came back early without a terminal state must not
            // turn into a busy loop.
            let pause = if wait == 0 {
                Duration::from_millis(500)
            } else {
                Duration::from_millis(20)
            };
            if asked.elapsed() < pause {
                let pause = left.map_or(pause, |l| pause.min(l));
                std::thread::sleep(pause);
            }
        }
    }

    /// Long-polls `GET /uploads/{id}?wait=` until the state is terminal
    /// (`committed`, `superseded` or `failed`), for at most `timeout`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", None);
    /// # let id = "";
    /// let status = client.wait_terminal(id, Duration::from_secs(30))?;
    /// println!("ended {}", status.state.as_str());
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClientError::NotTerminal`] when `timeout` passes first; any error
    /// of [`Client::upload_status`].
    pub fn wait_terminal(&self, id: &str, timeout: Duration) -> Result<UploadStatus, ClientError> {
        self.watch_upload(
            id,
            Some(timeout),
            Duration::from_secs(u64::from(MAX_WAIT_SECONDS)),
            |_| {},
        )
    }

    /// Waits until the write `id` is committed, for at most `timeout`: the
    /// client-side form of "write and wait" (the status long-poll repeated
    /// until a terminal state or the deadline).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use pipeline_client::{Client, ClientError, PutOptions};
    ///
    /// let client = Client::builder("http://127.0.0.1:8787").token(Some("dev-token")).build();
    /// let accepted = client.put_object("greetings/hello.txt", b"hello", &PutOptions::default())?;
    /// match client.wait_committed(&accepted.id, Duration::from_secs(30)) {
    ///     Ok(status) => println!("committed, etag {:?}", status.etag),
    ///     Err(ClientError::NotCommitted(status)) => println!("ended {}", status.state.as_str()),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClientError::NotCommitted`] (with the final status) when the write
    /// ended `superseded` or `failed`; [`ClientError::NotTerminal`] when
    /// `timeout` passes first; any error of [`Client::upload_status`].
    pub fn wait_committed(&self, id: &str, timeout: Duration) -> Result<UploadStatus, ClientError> {
        let status = self.wait_terminal(id, timeout)?;
        if status.state == UploadState::Committed {
            Ok(status)
        } else {
            Err(ClientError::NotCommitted(Box::new(status)))
        }
    }

    fn counter_path(name: &str, action: &str) -> String {
        format!("/counters/{}{action}", encode_counter_name(name))
    }

    /// `GET /counters/{name}`.
    ///
    /// ```no_run
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", None);
    /// let visits = client.counter("visits")?;
    /// println!("{} = {}", visits.name, visits.value);
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] for `400 invalid_name`; otherwise as
    /// [`Client::put_object`].
    pub fn counter(&self, name: &str) -> Result<Counter, ClientError> {
        let path = Self::counter_path(name, "");
        self.send("GET", &path, &[], Body::Empty, Replay::Idempotent)?
            .expect(&[200])?
            .decode()
    }

    fn step(&self, name: &str, action: &str, by: Option<i64>) -> Result<Counter, ClientError> {
        let body = by.map(|n| serde_json::json!({ "by": n }).to_string());
        let headers: &[(&str, &str)] = if body.is_some() {
            &[("Content-Type", "application/json")]
        } else {
            &[]
        };
        let path = Self::counter_path(name, action);
        let bytes = body.as_deref().unwrap_or("").as_bytes();
        self.send(
            "POST",
            &path,
            headers,
            Body::Bytes(bytes),
            Replay::NonIdempotent,
        )?
        .expect(&[200])?
        .decode()
    }

    /// `POST /counters/{name}/increment`, with `{"by": n}` when `by` is given
    /// (else an empty body). Not retried unless the policy allows
    /// non-idempotent retries.
    ///
    /// ```no_run
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", Some("dev-token"));
    /// let after = client.increment("visits", Some(5))?;
    /// println!("{}", after.value);
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] for `400 invalid_name`/`invalid_body`, `401`,
    /// `422 counter_overflow`; otherwise as [`Client::put_object`].
    pub fn increment(&self, name: &str, by: Option<i64>) -> Result<Counter, ClientError> {
        self.step(name, "/increment", by)
    }

    /// `POST /counters/{name}/decrement`, as [`Client::increment`].
    ///
    /// ```no_run
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", Some("dev-token"));
    /// let after = client.decrement("visits", None)?;
    /// # let _ = after;
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Client::increment`].
    pub fn decrement(&self, name: &str, by: Option<i64>) -> Result<Counter, ClientError> {
        self.step(name, "/decrement", by)
    }

    /// `DELETE /counters/{name}`: reset to 0, `204`.
    ///
    /// ```no_run
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", Some("dev-token"));
    /// client.reset_counter("visits")?;
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Client::increment`].
    pub fn reset_counter(&self, name: &str) -> Result<(), ClientError> {
        let path = Self::counter_path(name, "");
        self.send("DELETE", &path, &[], Body::Empty, Replay::Idempotent)?
            .expect(&[204])
            .map(|_| ())
    }

    /// `GET /stats`.
    ///
    /// ```no_run
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", None);
    /// let stats = client.stats()?;
    /// println!("{} in flight", stats.inflight);
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Client::put_object`].
    pub fn stats(&self) -> Result<Stats, ClientError> {
        self.send("GET", "/stats", &[], Body::Empty, Replay::Idempotent)?
            .expect(&[200])?
            .decode()
    }

    /// `GET /healthz`: `Ok(())` for `200 {"ok": true}`.
    ///
    /// ```no_run
    /// # let client = pipeline_client::Client::new("http://127.0.0.1:8787", None);
    /// client.healthz()?;
    /// # Ok::<(), pipeline_client::ClientError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClientError::Unexpected`] for any other answer; transport errors.
    pub fn healthz(&self) -> Result<(), ClientError> {
        let resp = self
            .send("GET", "/healthz", &[], Body::Empty, Replay::Idempotent)?
            .expect(&[200])?;
        let v = resp.json()?;
        if v.get("ok") == Some(&serde_json::Value::Bool(true)) {
            Ok(())
        } else {
            Err(resp.unexpected("expected {\"ok\": true}".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(status: u16, body: &str) -> RawResponse {
        RawResponse {
            status,
            headers: Headers::new([("Location", "/uploads/x")]),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn expected_statuses_pass_errors_parse() {
        assert!(raw(202, "{}").expect(&[202]).is_ok());
        let e = raw(400, r#"{"error":{"code":"invalid_key","message":"m"}}"#)
            .expect(&[202])
            .unwrap_err();
        assert_eq!(e.code(), Some("invalid_key"));
        let e = raw(200, "{}").expect(&[202]).unwrap_err();
        assert!(matches!(e, ClientError::Unexpected { status: 200, .. }));
    }

    #[test]
    fn accepted_takes_location_from_the_header() {
        let a = Client::accepted(raw(
            202,
            r#"{"id":"x","key":"k","state":"queued","accepted_at":"t","size":3,"status_url":"/uploads/x"}"#,
        ))
        .unwrap();
        assert_eq!(a.location.as_deref(), Some("/uploads/x"));
        assert_eq!(a.size, 3);
    }

    #[test]
    fn a_body_off_contract_is_unexpected() {
        let e = Client::accepted(raw(202, r#"{"id":"x"}"#)).unwrap_err();
        assert!(
            matches!(e, ClientError::Unexpected { status: 202, .. }),
            "{e}"
        );
    }

    #[test]
    fn error_code_reads_error_bodies_only() {
        assert_eq!(
            raw(404, r#"{"error":{"code":"not_found","message":"m"}}"#).error_code(),
            Some("not_found".into())
        );
        assert_eq!(raw(404, "nope").error_code(), None);
    }

    #[test]
    fn paths_are_encoded() {
        assert_eq!(
            Client::object_path("a b/c", "?mode=sync"),
            "/objects/a%20b/c?mode=sync"
        );
        assert_eq!(
            Client::counter_path("a/b", "/increment"),
            "/counters/a%2Fb/increment"
        );
    }

    /// A one-thread HTTP server on loopback answering each connection with
    /// the next of `answers` (then closing it); returns its URL and the
    /// request lines it saw, in order, once `answers` are used up.
    fn scripted_server(
        answers: Vec<&'static str>,
    ) -> (String, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for answer in answers {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                seen.push(line.trim_end().to_owned());
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim_end().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0u8; len];
                reader.read_exact(&mut body).unwrap();
                let mut stream = stream;
                stream.write_all(answer.as_bytes()).unwrap();
            }
            seen
        });
        (url, handle)
    }

    const RATE_LIMITED: &str = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nX-RateLimit-Reset-After-Ms: 30\r\nContent-Type: application/json\r\nContent-Length: 47\r\nConnection: close\r\n\r\n{\"error\":{\"code\":\"rate_limited\",\"message\":\"x\"}}";
    const UNAVAILABLE: &str =
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndown";
    const ACCEPTED: &str = "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 90\r\nConnection: close\r\n\r\n{\"id\":\"i\",\"key\":\"k\",\"state\":\"queued\",\"accepted_at\":\"t\",\"size\":3,\"status_url\":\"/uploads/i\"}";

    fn fast_retries() -> RetryPolicy {
        RetryPolicy::default()
            .max_retries(3)
            .initial_backoff(Duration::from_millis(10))
    }

    #[test]
    fn a_keyed_async_put_is_retried_after_429_and_503_and_resends_the_body() {
        let (url, server) = scripted_server(vec![RATE_LIMITED, UNAVAILABLE, ACCEPTED]);
        let c = Client::builder(&url).retry(fast_retries()).build();
        let mut opened = 0;
        let a = c
            .put_object_stream("k", 3, &PutOptions::default().idempotency_key("ik"), || {
                opened += 1;
                Ok(std::io::Cursor::new(b"abc"))
            })
            .unwrap();
        assert_eq!(a.id, "i");
        assert_eq!(opened, 3, "the body is opened once per attempt");
        assert_eq!(server.join().unwrap(), vec!["PUT /objects/k HTTP/1.1"; 3]);
    }

    #[test]
    fn an_async_put_without_idempotency_key_is_not_retried() {
        let (url, server) = scripted_server(vec![UNAVAILABLE]);
        let c = Client::builder(&url).retry(fast_retries()).build();
        let e = c
            .put_object("k", b"abc", &PutOptions::default())
            .unwrap_err();
        assert_eq!(e.status(), Some(503));
        assert_eq!(server.join().unwrap().len(), 1);

        // Unless the caller says so.
        let (url, server) = scripted_server(vec![UNAVAILABLE, ACCEPTED]);
        let c = Client::builder(&url)
            .retry(fast_retries().retry_non_idempotent(true))
            .build();
        assert!(c.put_object("k", b"abc", &PutOptions::default()).is_ok());
        assert_eq!(server.join().unwrap().len(), 2);
    }

    #[test]
    fn client_new_never_retries_and_retries_stop_at_the_limit() {
        let (url, server) = scripted_server(vec![RATE_LIMITED]);
        let e = Client::new(&url, None).stats().unwrap_err();
        assert_eq!(e.code(), Some("rate_limited"));
        assert_eq!(server.join().unwrap(), vec!["GET /stats HTTP/1.1"]);

        let (url, server) = scripted_server(vec![UNAVAILABLE; 3]);
        let c = Client::builder(&url)
            .retry(fast_retries().max_retries(2))
            .build();
        assert_eq!(c.stats().unwrap_err().status(), Some(503));
        assert_eq!(server.join().unwrap().len(), 3);
    }

    #[test]
    fn long_polls_fit_in_the_request_time_limit() {
        assert_eq!(poll_cap(Duration::from_secs(60)), MAX_WAIT_SECONDS);
        assert_eq!(poll_cap(Duration::from_secs(12)), 7);
        assert_eq!(poll_cap(Duration::from_secs(3)), 0);
    }

    #[test]
    fn transport_errors_name_the_request() {
        // Port 9 (discard) on loopback is closed here: connection refused.
        let c = Client::new("http://127.0.0.1:9/", None);
        assert_eq!(c.base_url(), "http://127.0.0.1:9");
        let e = c.healthz().unwrap_err();
        assert!(
            matches!(e, ClientError::Transport(ref m) if m.contains("/healthz")),
            "{e}"
        );
    }
}
