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

/// Fuzzing: any header against any token never panics, and only
/// the exact token behind a `Bearer` scheme is accepted.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_header_against_any_token_never_panics(header in proptest::option::of("\\PC{0,80}"), token in proptest::option::of("\\PC{0,40}")) {
            let _ = check_bearer(header.as_deref(), token.as_deref());
        }

        #[test]
        fn only_the_exact_token_is_accepted(token in "[!-~]{1,40}", presented in "[!-~]{0,40}") {
            let ok = check_bearer(Some(&format!("Bearer {presented}")), Some(&token)).is_ok();
            prop_assert_eq!(ok, presented == token);
        }

        #[test]
        fn the_token_outside_a_bearer_scheme_is_refused(token in "[!-~]{1,40}", scheme in "[A-Za-z]{0,10}") {
            prop_assume!(!scheme.eq_ignore_ascii_case("bearer"));
            let other_scheme = format!("{scheme} {token}");
            prop_assert!(check_bearer(Some(&token), Some(&token)).is_err());
            prop_assert!(check_bearer(Some(&other_scheme), Some(&token)).is_err());
        }

        #[test]
        fn nothing_is_accepted_without_a_configured_token(header in "\\PC{0,60}") {
            prop_assert!(check_bearer(Some(&header), None).is_err());
            prop_assert!(check_bearer(Some(&header), Some("")).is_err());
        }

        #[test]
        fn refusals_never_echo_either_side(token in "[a-zA-Z0-9]{12,40}", presented in "[a-zA-Z0-9]{12,40}") {
            if let Err(e) = check_bearer(Some(&format!("Bearer {presented}")), Some(&token)) {
                let m = e.to_string();
                prop_assert!(!m.contains(&token) && !m.contains(&presented), "{}", m);
            }
        }
    }
}
