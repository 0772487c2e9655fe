//! The `Prefer` request header (RFC 7240) on asynchronous writes:
//! `wait=N` holds the answer until the write is terminal or N seconds
//! pass; `respond-async` (the default) answers `202` at once.

use crate::error::ApiError;

/// Longest `Prefer: wait` the contract allows, in seconds.
pub const MAX_PREFER_WAIT_SECS: u32 = 60;

/// What the client prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Preference {
    /// Seconds to hold the answer for a terminal state (`None`: answer at
    /// once).
    pub wait_secs: Option<u32>,
}

/// Parses every `Prefer` value of a request (comma-separated preferences,
/// possibly over several headers joined by commas). `wait` must be an
/// integer from 0 to 60, capped further by `cap_secs`; `respond-async`
/// is accepted; other preferences are ignored, as RFC 7240 asks.
///
/// # Errors
/// [`ApiError::InvalidHeader`] for a `wait` that is not an integer from 0
/// to 60.
pub fn parse(value: Option<&str>, cap_secs: u32) -> Result<Preference, ApiError> {
    let mut pref = Preference::default();
    let Some(value) = value else {
        return Ok(pref);
    };
    for item in value.split(',') {
        // Parameters after ';' belong to the preference; none are used.
        let token = item.split(';').next().unwrap_or("").trim();
        if token.is_empty() {
            continue;
        }
        let (name, val) = match token.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (token, None),
        };
        if name.eq_ignore_ascii_case("wait") {
            let secs = val
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|s| *s <= MAX_PREFER_WAIT_SECS)
                .ok_or_else(|| {
                    ApiError::InvalidHeader("Prefer: wait must be an integer from 0 to 60".into())
                })?;
            pref.wait_secs = Some(secs.min(cap_secs));
        }
    }
    Ok(pref)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wait_and_respond_async_parse() {
        assert_eq!(parse(None, 60).unwrap().wait_secs, None);
        assert_eq!(parse(Some("respond-async"), 60).unwrap().wait_secs, None);
        assert_eq!(parse(Some("wait=10"), 60).unwrap().wait_secs, Some(10));
        assert_eq!(
            parse(Some("respond-async, wait=5"), 60).unwrap().wait_secs,
            Some(5)
        );
        assert_eq!(parse(Some("wait=0"), 60).unwrap().wait_secs, Some(0));
        assert_eq!(
            parse(Some("WAIT = 7 ; x=y"), 60).unwrap().wait_secs,
            Some(7)
        );
        assert_eq!(
            parse(Some("wait=60"), 20).unwrap().wait_secs,
            Some(20),
            "capped by the setting"
        );
        assert_eq!(parse(Some("handling=lenient"), 60).unwrap().wait_secs, None);
    }

    #[test]
    fn bad_waits_are_refused() {
        for bad in [
            "wait=61", "wait=-1", "wait=abc", "wait", "wait=1.5", "wait=",
        ] {
            assert!(parse(Some(bad), 60).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_value_parses_or_is_refused(v in "\\PC{0,60}") {
            if let Ok(p) = parse(Some(&v), 60) {
                prop_assert!(p.wait_secs.is_none_or(|w| w <= 60));
            }
        }
    }
}
