//! Times on the wire: RFC 3339 UTC with milliseconds, as the contract fixes.
//! Internally every time is Unix epoch milliseconds (`i64`).

use chrono::{DateTime, SecondsFormat, Utc};

/// Formats epoch milliseconds as `2026-11-27T05:00:00.123Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 time back to epoch milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_milliseconds_and_round_trips() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        let ms = 1_795_000_000_123;
        let s = rfc3339_ms(ms);
        assert!(s.ends_with(".123Z"), "{s}");
        assert_eq!(parse_rfc3339_ms(&s), Some(ms));
    }
}

/// Fuzzing: formatting and parsing never panic and round-trip.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parsing_arbitrary_text_never_panics(s in "\\PC{0,40}") {
            let _ = parse_rfc3339_ms(&s);
        }

        #[test]
        fn formatting_any_ms_never_panics(ms in any::<i64>()) {
            let s = rfc3339_ms(ms);
            prop_assert!(s.ends_with('Z'));
        }

        #[test]
        fn times_round_trip(ms in 0i64..253_402_300_799_999) {
            prop_assert_eq!(parse_rfc3339_ms(&rfc3339_ms(ms)), Some(ms));
        }
    }
}
