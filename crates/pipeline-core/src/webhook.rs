//! Signed webhooks: which callback URLs a deployment allows, the event a
//! terminal write sends, and its signature per the Standard Webhooks
//! scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature:
//! v1,<base64 HMAC-SHA256(secret, id "." timestamp "." body)>`, the
//! secret written `whsec_<base64>`), so any Standard Webhooks library
//! verifies them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::ApiError;
use crate::status::{UploadState, UploadStatus};

/// How far a receiver should accept a timestamp from its own clock.
pub const TOLERANCE_SECS: i64 = 300;

/// The origins callbacks may go to (`WEBHOOK_ALLOWED_ORIGINS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedCallbacks(Vec<String>);

impl AllowedCallbacks {
    /// Parses a comma list of origins (`https://hooks.example.com`).
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            raw.unwrap_or("")
                .split(',')
                .filter_map(|o| origin_of(o.trim()))
                .collect(),
        )
    }

    /// Whether any origin is allowed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks a callback URL: it must be `https` (plain `http` only to a
    /// loopback host, for local tests) and its origin must be listed.
    ///
    /// # Errors
    /// [`ApiError::InvalidHeader`] otherwise; the URL is not echoed.
    pub fn check(&self, url: &str) -> Result<(), ApiError> {
        let refuse = |why: &str| ApiError::InvalidHeader(format!("Callback-Url {why}"));
        let origin = origin_of(url).ok_or_else(|| refuse("is not an absolute http(s) URL"))?;
        let loopback = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|l| origin == *l || origin.starts_with(&format!("{l}:")));
        if !origin.starts_with("https://") && !loopback {
            return Err(refuse("must use https"));
        }
        if !self.0.contains(&origin) {
            return Err(refuse("is not on WEBHOOK_ALLOWED_ORIGINS"));
        }
        Ok(())
    }
}

/// The origin (`scheme://host[:port]`, lower-cased, default port dropped)
/// of an absolute http(s) URL; `None` for anything else, including URLs
/// with credentials (`https://allowed@elsewhere`).
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?.to_ascii_lowercase();
    if authority.is_empty()
        || authority.contains('@')
        || authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return None;
    }
    let authority = match (scheme.as_str(), authority.rsplit_once(':')) {
        ("https", Some((h, "443"))) | ("http", Some((h, "80")))
            if !h.ends_with(']') || h.starts_with('[') =>
        {
            h.to_string()
        }
        _ => authority,
    };
    Some(format!("{scheme}://{authority}"))
}

/// A webhook event: `{"type": "upload.<state>", "data": <status body>}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: String,
    pub data: serde_json::Value,
}

impl Event {
    /// The event of a terminal status; `None` if it is not terminal.
    pub fn of(status: &UploadStatus) -> Option<Self> {
        let kind = match status.state {
            UploadState::Committed => "upload.committed",
            UploadState::Superseded => "upload.superseded",
            UploadState::Failed => "upload.failed",
            UploadState::Queued | UploadState::Scheduled => return None,
        };
        Some(Self {
            kind: kind.into(),
            data: status.to_json(),
        })
    }
}

/// A `whsec_` secret's key bytes.
///
/// # Errors
/// [`ApiError::Internal`] when the secret is not `whsec_` + base64 (a
/// misconfiguration: reported, never guessed around).
pub fn secret_key(secret: &str) -> Result<Vec<u8>, ApiError> {
    let b64 = secret
        .trim()
        .strip_prefix("whsec_")
        .unwrap_or(secret.trim());
    STANDARD
        .decode(b64)
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::Internal("WEBHOOK_SECRET is not whsec_ followed by base64".into()))
}

/// The `webhook-signature` value for a message.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| {
        // HMAC takes keys of any length; this branch cannot be reached.
        <Hmac<Sha256> as Mac>::new_from_slice(&[0]).expect("a one-byte HMAC key")
    });
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Verifies a delivery as a receiver does: one of the space-separated
/// `v1,` signatures matches (compared in constant time) and the timestamp
/// is within [`TOLERANCE_SECS`] of `now_secs`.
pub fn verify(
    key: &[u8],
    msg_id: &str,
    timestamp: i64,
    body: &str,
    signatures: &str,
    now_secs: i64,
) -> bool {
    if (now_secs - timestamp).abs() > TOLERANCE_SECS {
        return false;
    }
    let want = sign(key, msg_id, timestamp, body);
    signatures
        .split(' ')
        .any(|s| subtle::ConstantTimeEq::ct_eq(s.as_bytes(), want.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_the_standard_webhooks_test_vector() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
            &format!("v1,bogus {sig}"),
            1614265330 + 10
        ));
        assert!(!verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232315}"#,
            &sig,
            1614265330
        ));
        assert!(!verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
            &sig,
            1614265330 + 301
        ));
    }

    #[test]
    fn only_listed_https_origins_and_listed_loopback_are_allowed() {
        let a = AllowedCallbacks::parse(Some(
            "https://hooks.example.com, http://127.0.0.1:9000, http://evil.example",
        ));
        assert!(a.check("https://hooks.example.com/in?x=1").is_ok());
        assert!(a.check("HTTPS://Hooks.Example.com:443/in").is_ok());
        assert!(a.check("http://127.0.0.1:9000/hook").is_ok());
        assert!(
            a.check("http://evil.example/x").is_err(),
            "plain http off loopback"
        );
        assert!(a.check("https://hooks.example.com.evil.example/").is_err());
        assert!(a.check("https://hooks.example.com@evil.example/").is_err());
        assert!(a.check("https://other.example/").is_err());
        assert!(a.check("http://127.0.0.1:9001/").is_err(), "another port");
        assert!(a.check("ftp://hooks.example.com/").is_err());
        assert!(a.check("/relative").is_err());
        assert!(AllowedCallbacks::parse(None)
            .check("https://hooks.example.com/")
            .is_err());
    }

    #[test]
    fn events_name_the_terminal_state() {
        let mut s = UploadStatus {
            id: "i".into(),
            key: "k".into(),
            state: UploadState::Committed,
            accepted_ms: 0,
            size: 1,
            not_before_ms: None,
            committed_ms: Some(1000),
            etag: Some("\"e\"".into()),
            superseded_by: None,
            error_code: None,
            error_message: None,
            current_etag: None,
            callback: None,
        };
        assert_eq!(Event::of(&s).unwrap().kind, "upload.committed");
        assert_eq!(Event::of(&s).unwrap().data["etag"], "\"e\"");
        s.state = UploadState::Scheduled;
        assert!(Event::of(&s).is_none());
    }
}
