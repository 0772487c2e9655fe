//! Bearer-token checks for state-changing requests, in constant time and
//! closed by default: no configured token means no write is allowed.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// Checks an `Authorization` header against the configured token.
///
/// Both sides are hashed first so the comparison takes the same time
/// whatever the lengths and contents; only the `Bearer` scheme counts.
///
/// # Errors
/// [`ApiError::Unauthorized`] when no token is configured (fail closed), the
/// header is missing or not `Bearer`, or the token differs.
pub fn check_bearer(header: Option<&str>, configured: Option<&str>) -> Result<(), ApiError> {
    let configured = match configured {
        Some(t) if !t.is_empty() => t,
        _ => {
            return Err(ApiError::Unauthorized(
                "this deployment has no API_TOKEN configured; writes are refused".into(),
            ))
        }
    };
    let presented = header
        .and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(configured.as_bytes());
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("invalid bearer token".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_the_configured_bearer_token() {
        assert!(check_bearer(Some("Bearer s3cret"), Some("s3cret")).is_ok());
        assert!(check_bearer(Some("bearer s3cret"), Some("s3cret")).is_ok());
        for bad in [
            None,
            Some("s3cret"),
            Some("Basic s3cret"),
            Some("Bearer s3cre"),
            Some("Bearer "),
        ] {
            let err = check_bearer(bad, Some("s3cret")).unwrap_err();
            assert_eq!(err.code(), "unauthorized");
        }
    }

    #[test]
    fn fails_closed_without_a_configured_token() {
        assert!(check_bearer(Some("Bearer x"), None).is_err());
        assert!(check_bearer(Some("Bearer "), Some("")).is_err());
    }

    #[test]
    fn error_messages_never_echo_the_secret() {
        let err = check_bearer(Some("Bearer wrong"), Some("topsecret")).unwrap_err();
        assert!(!err.to_string().contains("topsecret"));
        assert!(!err.to_string().contains("wrong"));
    }
}
