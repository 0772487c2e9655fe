//! Conditions on writes: `If-Match: "<etag>"` and `If-None-Match: *` on
//! `PUT`/`DELETE /objects/{key}`, for read-modify-write without lost
//! updates.
//!
//! The contract takes exactly these two forms (one quoted strong ETag, or
//! the wildcard); anything else is refused before the write is accepted.
//! Queued writes are evaluated when the key's scheduler commits them,
//! against the object stored then; synchronous writes at once.

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// A write's precondition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WriteCondition {
    /// The stored object's ETag must be this one (quoted, as R2 gives it).
    IfMatch { etag: String },
    /// No object may be stored under the key.
    IfNoneMatch,
}

impl WriteCondition {
    /// Reads the request's `If-Match` and `If-None-Match` values.
    ///
    /// # Errors
    /// [`ApiError::InvalidHeader`] for any form other than one quoted
    /// strong ETag in `If-Match` or `*` in `If-None-Match`, or both.
    pub fn from_headers(
        if_match: Option<&str>,
        if_none_match: Option<&str>,
    ) -> Result<Option<Self>, ApiError> {
        match (if_match.map(str::trim), if_none_match.map(str::trim)) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(ApiError::InvalidHeader(
                "a write takes If-Match or If-None-Match, not both".into(),
            )),
            (Some(v), None) => {
                let inner = v
                    .strip_prefix('"')
                    .and_then(|r| r.strip_suffix('"'))
                    .filter(|i| !i.is_empty() && i.chars().all(is_etagc))
                    .ok_or_else(|| {
                        ApiError::InvalidHeader(
                            "If-Match on a write must be one quoted strong ETag".into(),
                        )
                    })?;
                Ok(Some(WriteCondition::IfMatch {
                    etag: format!("\"{inner}\""),
                }))
            }
            (None, Some("*")) => Ok(Some(WriteCondition::IfNoneMatch)),
            (None, Some(_)) => Err(ApiError::InvalidHeader(
                "If-None-Match on a write must be *".into(),
            )),
        }
    }

    /// Whether the condition holds for the stored object's ETag (`None`:
    /// no object stored). ETags compare without their quotes, so `"x"`
    /// and `x` name the same object.
    pub fn holds(&self, current: Option<&str>) -> bool {
        match self {
            WriteCondition::IfMatch { etag } => current.is_some_and(|c| bare(c) == bare(etag)),
            WriteCondition::IfNoneMatch => current.is_none(),
        }
    }
}

fn bare(etag: &str) -> &str {
    etag.trim_matches('"')
}

/// `etagc` of RFC 9110 without obs-text: visible ASCII but `"`.
fn is_etagc(c: char) -> bool {
    c == '!' || ('#'..='~').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_two_forms_parse_and_nothing_else() {
        assert_eq!(WriteCondition::from_headers(None, None).unwrap(), None);
        assert_eq!(
            WriteCondition::from_headers(Some(" \"abc\" "), None).unwrap(),
            Some(WriteCondition::IfMatch {
                etag: "\"abc\"".into()
            })
        );
        assert_eq!(
            WriteCondition::from_headers(None, Some("*")).unwrap(),
            Some(WriteCondition::IfNoneMatch)
        );
        for bad in ["abc", "W/\"abc\"", "\"a\", \"b\"", "*", "\"\"", "\"a\"b\""] {
            assert!(
                WriteCondition::from_headers(Some(bad), None).is_err(),
                "If-Match {bad}"
            );
        }
        for bad in ["\"abc\"", "", "**"] {
            assert!(
                WriteCondition::from_headers(None, Some(bad)).is_err(),
                "If-None-Match {bad}"
            );
        }
        assert!(WriteCondition::from_headers(Some("\"a\""), Some("*")).is_err());
    }

    #[test]
    fn conditions_hold_against_the_stored_etag() {
        let m = WriteCondition::IfMatch {
            etag: "\"e1\"".into(),
        };
        assert!(m.holds(Some("\"e1\"")));
        assert!(m.holds(Some("e1")));
        assert!(!m.holds(Some("\"e2\"")));
        assert!(!m.holds(None));
        assert!(WriteCondition::IfNoneMatch.holds(None));
        assert!(!WriteCondition::IfNoneMatch.holds(Some("\"e1\"")));
    }

    proptest! {
        #[test]
        fn any_header_value_parses_or_is_refused_without_panic(a in "\\PC{0,40}", b in "\\PC{0,10}") {
            let _ = WriteCondition::from_headers(Some(&a), None);
            let _ = WriteCondition::from_headers(None, Some(&b));
        }
    }
}
