//! [`Client`]: one typed method per route of `docs/API.md`.
//!
//! Blocking (`ureq`) on purpose: tests drive concurrency with plain threads,
//! and a blocking call keeps every request's timing visible in the test.
//! The client never retries and never follows redirects, so what a test sees
//! is exactly what the Worker answered.

use std::io::Read;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use crate::encode::{encode_counter_name, encode_key, query_string};
use crate::error::{body_excerpt, from_error_response, ClientError};
use crate::headers::Headers;
use crate::types::{
    Accepted, Counter, ListPage, ObjectResponse, Stats, SyncCommitted, UploadStatus,
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
        } else if self.status >= 400 {
            Err(from_error_response(self.status, self.headers, &self.body))
        } else {
            Err(self.unexpected(format!("expected status {expected:?}")))
        }
    }

    fn decode<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| self.unexpected(format!("body does not match the contract: {e}")))
    }
}

/// A blocking client for one Worker.
///
/// Cheap to clone and safe to share between threads (connections are pooled).
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `base_url` (e.g. `http://127.0.0.1:8787`) that sends
    /// `Authorization: Bearer <token>` on every request when `token` is given.
    #[must_use]
    pub fn new(base_url: &str, token: Option<&str>) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            // Long-polls last up to 30 s; a 20 MiB body takes well under that.
            .timeout_read(Duration::from_secs(u64::from(MAX_WAIT_SECONDS) + 30))
            .timeout_write(Duration::from_secs(60))
            .redirects(0)
            .max_idle_connections_per_host(64)
            .build();
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            token: token.map(str::to_owned),
            agent,
        }
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

    /// The base URL, without a trailing slash.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends any request and returns the answer whatever its status.
    ///
    /// `path_and_query` is sent as given (it must start with `/`); the client
    /// adds its bearer token unless `headers` has an `Authorization` header.
    /// `body: Some(b)` sends `b` with a `Content-Length`, `None` sends no body.
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
        let url = format!("{}{}", self.base, path_and_query);
        let mut req = self.agent.request(method, &url);
        let has_auth = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        if let (Some(token), false) = (&self.token, has_auth) {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        for (name, value) in headers {
            req = req.set(name, value);
        }
        let result = match body {
            Some(bytes) => req.send_bytes(bytes),
            None => req.call(),
        };
        Self::collect(method, &url, result)
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
        let mut req = self.agent.request(method, &url);
        let has_auth = headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"));
        if let (Some(token), false) = (&self.token, has_auth) {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        for (name, value) in headers {
            req = req.set(name, value);
        }
        // ureq sends a reader without a Content-Length chunked.
        let result = req.send(std::io::Cursor::new(body));
        Self::collect(method, &url, result)
    }

    fn collect(
        method: &str,
        url: &str,
        result: Result<ureq::Response, ureq::Error>,
    ) -> Result<RawResponse, ClientError> {
        let resp = match result {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => {
                return Err(ClientError::Transport(format!("{method} {url}: {t}")))
            }
        };
        let status = resp.status();
        let headers = Headers::new(resp.headers_names().into_iter().flat_map(|name| {
            resp.all(&name)
                .into_iter()
                .map(|v| (name.clone(), v.to_owned()))
                .collect::<Vec<_>>()
        }));
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

    fn put_request(
        &self,
        key: &str,
        body: &[u8],
        opts: &PutOptions,
        query: &str,
    ) -> Result<RawResponse, ClientError> {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(ct) = &opts.content_type {
            headers.push(("Content-Type", ct));
        }
        if let Some(ik) = &opts.idempotency_key {
            headers.push(("Idempotency-Key", ik));
        }
        headers.extend(opts.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        self.raw("PUT", &Self::object_path(key, query), &headers, Some(body))
    }

    fn accepted(resp: RawResponse) -> Result<Accepted, ClientError> {
        let resp = resp.expect(&[202])?;
        let mut accepted: Accepted = resp.decode()?;
        accepted.location = resp.headers.get("location").map(str::to_owned);
        Ok(accepted)
    }

    /// `PUT /objects/{key}`: an asynchronous write, `202`.
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
        Self::accepted(self.put_request(key, body, opts, "")?)
    }

    /// `PUT /objects/{key}?mode=sync`: a synchronous write, `201`.
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
        self.put_request(key, body, opts, "?mode=sync")?
            .expect(&[201])?
            .decode()
    }

    /// `DELETE /objects/{key}`: an asynchronous delete, `202`.
    ///
    /// # Errors
    ///
    /// As [`Client::put_object`].
    pub fn delete_object(&self, key: &str) -> Result<Accepted, ClientError> {
        Self::accepted(self.raw("DELETE", &Self::object_path(key, ""), &[], None)?)
    }

    /// `DELETE /objects/{key}?mode=sync`: a synchronous delete, `204`.
    ///
    /// # Errors
    ///
    /// As [`Client::put_object_sync`].
    pub fn delete_object_sync(&self, key: &str) -> Result<(), ClientError> {
        self.raw("DELETE", &Self::object_path(key, "?mode=sync"), &[], None)?
            .expect(&[204])
            .map(|_| ())
    }

    fn read_object(
        &self,
        method: &str,
        key: &str,
        opts: &GetOptions,
    ) -> Result<ObjectResponse, ClientError> {
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
        let resp = self
            .raw(method, &Self::object_path(key, query), &headers, None)?
            .expect(&[200, 206, 304])?;
        Ok(ObjectResponse {
            status: resp.status,
            headers: resp.headers,
            body: resp.body,
        })
    }

    /// `GET /objects/{key}`: `200`, `206` or `304` as [`ObjectResponse`].
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

    /// `HEAD /objects/{key}`: as [`Client::get_object`], without a body.
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
        self.raw("GET", &format!("/objects{query}"), &[], None)?
            .expect(&[200])?
            .decode()
    }

    /// Every page of a listing, following the cursor until not truncated.
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

    /// `GET /uploads/{id}`, with `?wait=<seconds>` when `wait` is given.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] for `404 upload_not_found` and `400
    /// invalid_parameter`; otherwise as [`Client::put_object`].
    pub fn upload_status(&self, id: &str, wait: Option<u32>) -> Result<UploadStatus, ClientError> {
        let query = query_string(&[("wait", wait.map(|w| w.to_string()))]);
        self.raw(
            "GET",
            &format!("/uploads/{}{query}", encode_counter_name(id)),
            &[],
            None,
        )?
        .expect(&[200])?
        .decode()
    }

    /// Long-polls `GET /uploads/{id}?wait=` until the state is terminal.
    ///
    /// # Errors
    ///
    /// [`ClientError::NotTerminal`] when `timeout` passes first; any error
    /// of [`Client::upload_status`].
    pub fn wait_terminal(&self, id: &str, timeout: Duration) -> Result<UploadStatus, ClientError> {
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            let wait = u32::try_from(left.as_secs())
                .unwrap_or(MAX_WAIT_SECONDS)
                .clamp(1, MAX_WAIT_SECONDS);
            let status = self.upload_status(id, Some(wait))?;
            if status.state.is_terminal() {
                return Ok(status);
            }
            if start.elapsed() >= timeout {
                return Err(ClientError::NotTerminal {
                    id: id.to_owned(),
                    last_state: status.state.as_str().to_owned(),
                    waited_ms: start.elapsed().as_millis(),
                });
            }
            // A long-poll that came back early without a terminal state must
            // not turn into a busy loop.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn counter_path(name: &str, action: &str) -> String {
        format!("/counters/{}{action}", encode_counter_name(name))
    }

    /// `GET /counters/{name}`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Api`] for `400 invalid_name`; otherwise as
    /// [`Client::put_object`].
    pub fn counter(&self, name: &str) -> Result<Counter, ClientError> {
        self.raw("GET", &Self::counter_path(name, ""), &[], None)?
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
        self.raw(
            "POST",
            &Self::counter_path(name, action),
            headers,
            Some(body.as_deref().unwrap_or("").as_bytes()),
        )?
        .expect(&[200])?
        .decode()
    }

    /// `POST /counters/{name}/increment`, with `{"by": n}` when `by` is given
    /// (else an empty body).
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
    /// # Errors
    ///
    /// As [`Client::increment`].
    pub fn decrement(&self, name: &str, by: Option<i64>) -> Result<Counter, ClientError> {
        self.step(name, "/decrement", by)
    }

    /// `DELETE /counters/{name}`: reset to 0, `204`.
    ///
    /// # Errors
    ///
    /// As [`Client::increment`].
    pub fn reset_counter(&self, name: &str) -> Result<(), ClientError> {
        self.raw("DELETE", &Self::counter_path(name, ""), &[], None)?
            .expect(&[204])
            .map(|_| ())
    }

    /// `GET /stats`.
    ///
    /// # Errors
    ///
    /// As [`Client::put_object`].
    pub fn stats(&self) -> Result<Stats, ClientError> {
        self.raw("GET", "/stats", &[], None)?
            .expect(&[200])?
            .decode()
    }

    /// `GET /healthz`: `Ok(())` for `200 {"ok": true}`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Unexpected`] for any other answer; transport errors.
    pub fn healthz(&self) -> Result<(), ClientError> {
        let resp = self.raw("GET", "/healthz", &[], None)?.expect(&[200])?;
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
