//! Counter arithmetic and request-body parsing: a change is either applied
//! whole or refused with the value untouched.

use crate::error::ApiError;

/// Which way a counter moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Increment,
    Decrement,
}

/// Parses the optional `{"by": n}` body. An empty body means `by = 1`.
///
/// # Errors
/// [`ApiError::InvalidBody`] when the body is not a JSON object, has unknown
/// shape, or `by` is not an integer that fits `i64`.
pub fn parse_by(body: &[u8]) -> Result<i64, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(1);
    }
    // The parser's message is not passed on: it may quote the body.
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::InvalidBody(format!(
            "body is not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let obj = value.as_object().ok_or_else(|| {
        ApiError::InvalidBody("body must be a JSON object like {\"by\": 1}".into())
    })?;
    match obj.get("by") {
        None => Ok(1),
        Some(by) => by.as_i64().ok_or_else(|| {
            ApiError::InvalidBody("`by` must be an integer between -2^63 and 2^63-1".into())
        }),
    }
}

/// Applies `by` to `value` in `direction`.
///
/// # Errors
/// [`ApiError::CounterOverflow`] when the result does not fit `i64`.
pub fn apply(value: i64, by: i64, direction: Direction) -> Result<i64, ApiError> {
    let next = match direction {
        Direction::Increment => value.checked_add(by),
        Direction::Decrement => value.checked_sub(by),
    };
    next.ok_or_else(|| {
        ApiError::CounterOverflow("the result does not fit a signed 64-bit integer".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_by_with_default_one() {
        assert_eq!(parse_by(b"").unwrap(), 1);
        assert_eq!(parse_by(b"{}").unwrap(), 1);
        assert_eq!(parse_by(br#"{"by": -7}"#).unwrap(), -7);
        assert_eq!(
            parse_by(br#"{"by": 9223372036854775807}"#).unwrap(),
            i64::MAX
        );
    }

    #[test]
    fn refuses_non_integer_or_non_json_bodies() {
        for body in [
            &br#"{"by":"x"}"#[..],
            b"nope",
            br#"{"by": 1.5}"#,
            br#"{"by": 9223372036854775808}"#,
            b"[1]",
            b"3",
        ] {
            assert_eq!(
                parse_by(body).unwrap_err().code(),
                "invalid_body",
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn overflow_is_refused_both_ways() {
        assert_eq!(
            apply(i64::MAX, 1, Direction::Increment).unwrap_err().code(),
            "counter_overflow"
        );
        assert_eq!(
            apply(i64::MIN, 1, Direction::Decrement).unwrap_err().code(),
            "counter_overflow"
        );
        assert_eq!(
            apply(0, i64::MIN, Direction::Decrement).unwrap_err().code(),
            "counter_overflow"
        );
        assert_eq!(apply(5, 3, Direction::Decrement).unwrap(), 2);
    }
}

/// Fuzzing: the counter body parser never panics, accepts exactly
/// the integers that fit `i64`, and arithmetic never wraps.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn refusals_never_quote_the_body(before in "[ -~]{0,8}", after in "[ -~]{0,8}") {
            const SECRET: &str = "sk-live-7f3a9c1e5d";
            for body in [
                format!("{before}{SECRET}{after}"),
                format!("{{\"by\": \"{before}{SECRET}{after}\"}}"),
                format!("{{\"{SECRET}\": 1, \"by\": {before}{SECRET}}}"),
                format!("[\"{SECRET}\"]"),
            ] {
                if let Err(e) = parse_by(body.as_bytes()) {
                    prop_assert!(!e.to_string().contains(SECRET), "{}", e);
                }
            }
        }

        #[test]
        fn parsing_arbitrary_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            match parse_by(&body) {
                Ok(_) => {}
                Err(e) => prop_assert_eq!(e.code(), "invalid_body"),
            }
        }

        #[test]
        fn parsing_arbitrary_json_text_never_panics(body in "\\{\"by\": ?[-0-9.eE+\"a-z\\[\\]{}]{0,30}\\}") {
            let _ = parse_by(body.as_bytes());
        }

        #[test]
        fn every_i64_round_trips(by in any::<i64>()) {
            let body = format!("{{\"by\": {by}}}");
            prop_assert_eq!(parse_by(body.as_bytes()).ok(), Some(by));
        }

        #[test]
        fn integers_beyond_i64_are_refused(extra in 1u64..1_000_000) {
            let big = i128::from(i64::MAX) + i128::from(extra);
            let small = i128::from(i64::MIN) - i128::from(extra);
            for v in [big, small] {
                let body = format!("{{\"by\": {v}}}");
                prop_assert!(parse_by(body.as_bytes()).is_err());
            }
        }

        #[test]
        fn arithmetic_is_checked(value in any::<i64>(), by in any::<i64>(), inc in any::<bool>()) {
            let dir = if inc { Direction::Increment } else { Direction::Decrement };
            let exact = if inc { i128::from(value) + i128::from(by) } else { i128::from(value) - i128::from(by) };
            match apply(value, by, dir) {
                Ok(v) => prop_assert_eq!(i128::from(v), exact),
                Err(e) => {
                    prop_assert_eq!(e.code(), "counter_overflow");
                    prop_assert!(i64::try_from(exact).is_err());
                }
            }
        }
    }
}
