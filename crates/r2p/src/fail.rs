//! Failures, their exit codes and their one-line messages.

use pipeline_client::ClientError;

/// Why a command did not succeed; each kind has its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// 1: a local file or stream failed, or an answer broke the contract.
    Local { code: &'static str, message: String },
    /// 2: bad arguments found after parsing.
    Usage(String),
    /// 3: the API answered with an error.
    Api { code: String, message: String },
    /// 4: a wait's deadline passed before a terminal state.
    Timeout(String),
    /// 5: no answer.
    Transport(String),
    /// 6: the write ended `superseded` or `failed` while `committed` was
    /// asked for.
    NotCommitted { state: String, message: String },
    /// Already printed (e.g. per id by `watch`): exit with this code only.
    Reported(u8),
}

impl Failure {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Local { .. } => 1,
            Self::Usage(_) => 2,
            Self::Api { .. } => 3,
            Self::Timeout(_) => 4,
            Self::Transport(_) => 5,
            Self::NotCommitted { .. } => 6,
            Self::Reported(code) => *code,
        }
    }

    /// The error line, without the `r2p: ` prefix: `<code>: <message>`
    /// (`None` when it was already printed).
    pub fn line(&self) -> Option<String> {
        Some(match self {
            Self::Local { code, message } => format!("{code}: {message}"),
            Self::Usage(m) => format!("usage: {m}"),
            Self::Api { code, message } => format!("{code}: {message}"),
            Self::Timeout(m) => format!("timeout: {m}"),
            Self::Transport(m) => format!("transport: {m}"),
            Self::NotCommitted { state, message } => format!("{state}: {message}"),
            Self::Reported(_) => return None,
        })
    }

    /// A local I/O failure.
    pub fn io(what: impl std::fmt::Display, e: &std::io::Error) -> Self {
        Self::Local {
            code: "io",
            message: format!("{what}: {e}"),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api { code, message, .. } => Self::Api { code, message },
            // An error status without the API's JSON body (a proxy, the
            // local runtime's own 503, a HEAD): still an answer of the API.
            ClientError::Unexpected { status, reason, .. } if status >= 400 => Self::Api {
                code: format!("http_{status}"),
                message: reason,
            },
            ClientError::Unexpected { status, reason, .. } => Self::Local {
                code: "unexpected_response",
                message: format!("HTTP {status}: {reason}"),
            },
            ClientError::Transport(m) => Self::Transport(m),
            ClientError::Body(m) => Self::Local {
                code: "io",
                message: m,
            },
            ClientError::NotTerminal { .. } => Self::Timeout(e.to_string()),
            ClientError::NotCommitted(ref status) => Self::NotCommitted {
                state: status.state.as_str().to_owned(),
                message: e.to_string(),
            },
        }
    }
}

/// Replaces every occurrence of `secret` in `text` with `***`. Secrets
/// shorter than 3 characters are left alone: masking them would mangle
/// every line without protecting anything.
pub fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if s.len() >= 3 => text.replace(s, "***"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_client::{Headers, UploadState, UploadStatus};

    fn status(state: UploadState) -> UploadStatus {
        UploadStatus {
            id: "id1".into(),
            key: "k".into(),
            state,
            accepted_at: "t".into(),
            size: 1,
            not_before: None,
            committed_at: None,
            etag: None,
            superseded_by: Some("id2".into()),
            error: None,
        }
    }

    #[test]
    fn each_client_error_maps_to_its_exit_code() {
        let api = ClientError::Api {
            status: 404,
            code: "object_not_found".into(),
            message: "no object".into(),
            headers: Headers::default(),
        };
        let f = Failure::from(api);
        assert_eq!(f.exit_code(), 3);
        assert_eq!(f.line().as_deref(), Some("object_not_found: no object"));

        let f = Failure::from(ClientError::Unexpected {
            status: 503,
            reason: "not JSON".into(),
            body: String::new(),
            headers: Headers::default(),
        });
        assert_eq!(
            (f.exit_code(), f.line()),
            (3, Some("http_503: not JSON".into()))
        );

        let f = Failure::from(ClientError::Unexpected {
            status: 200,
            reason: "bad body".into(),
            body: String::new(),
            headers: Headers::default(),
        });
        assert_eq!(f.exit_code(), 1);

        let f = Failure::from(ClientError::Transport("GET x: refused".into()));
        assert_eq!(
            (f.exit_code(), f.line()),
            (5, Some("transport: GET x: refused".into()))
        );

        let f = Failure::from(ClientError::NotTerminal {
            id: "i".into(),
            last_state: "queued".into(),
            waited_ms: 10,
        });
        assert_eq!(f.exit_code(), 4);
        assert!(
            f.line().is_some_and(|l| l.starts_with("timeout: ")),
            "{f:?}"
        );

        let f = Failure::from(ClientError::NotCommitted(Box::new(status(
            UploadState::Superseded,
        ))));
        assert_eq!(f.exit_code(), 6);
        let line = f.line().unwrap_or_default();
        assert!(line.starts_with("superseded: "), "{line}");
        assert!(line.contains("id2"), "{line}");

        assert_eq!(Failure::Usage("x".into()).exit_code(), 2);
        assert_eq!(Failure::Reported(4).exit_code(), 4);
        assert_eq!(Failure::Reported(4).line(), None);
        assert_eq!(Failure::from(ClientError::Body("b".into())).exit_code(), 1);
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(
            scrub("Bearer s3cret and s3cret", Some("s3cret")),
            "Bearer *** and ***"
        );
        assert_eq!(scrub("abc", None), "abc");
        assert_eq!(scrub("a b", Some("a")), "a b");
    }
}
