//! Object keys, counter names and list prefixes as the API accepts them.
//!
//! Every route that names an object, a counter or a listing prefix checks it
//! here first, so a bad name is refused with the right `400` before any work
//! is done, and the pipeline's own data under [`RESERVED_PREFIX`] can never be
//! reached, overwritten or listed through the public API.

use percent_encoding::percent_decode_str;

use crate::error::ApiError;

/// The prefix under which the pipeline keeps its own data in the bucket.
pub const RESERVED_PREFIX: &str = "_pipeline/";

/// The longest key accepted, in UTF-8 bytes (R2's own limit).
pub const MAX_KEY_BYTES: usize = 1024;

/// The longest counter name accepted, in bytes.
const MAX_COUNTER_NAME_BYTES: usize = 256;

/// Whether `c` is a control character (C0, DEL or C1).
fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// Decodes the raw, still percent-encoded path after `/objects/` into a key
/// and validates it.
///
/// # Errors
///
/// [`ApiError::InvalidKey`] when `raw` holds a malformed escape (`%zz`, a
/// lone `%`), decodes to bytes that are not UTF-8, or decodes to a key that
/// [`validate_key`] refuses.
pub fn decode_key(raw: &str) -> Result<String, ApiError> {
    let bytes = raw.as_bytes();
    let malformed = bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !matches!(
                (bytes.get(i + 1), bytes.get(i + 2)),
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit()
            )
    });
    if malformed {
        return Err(ApiError::InvalidKey(
            "key contains a malformed percent-escape".into(),
        ));
    }
    let key = String::from_utf8(percent_decode_str(raw).collect())
        .map_err(|_| ApiError::InvalidKey("key is not valid UTF-8 once decoded".into()))?;
    validate_key(&key)?;
    Ok(key)
}

/// Checks a decoded key against the rules of `docs/API.md` ("Object keys").
///
/// # Errors
///
/// [`ApiError::InvalidKey`], naming the broken rule, when the key is empty or
/// longer than [`MAX_KEY_BYTES`], holds a control character, starts with `/`,
/// has an empty, `.` or `..` segment, or lies under [`RESERVED_PREFIX`].
pub fn validate_key(key: &str) -> Result<(), ApiError> {
    let invalid = |msg: &str| Err(ApiError::InvalidKey(msg.into()));
    if key.is_empty() {
        return invalid("key must not be empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(ApiError::InvalidKey(format!(
            "key is longer than the {MAX_KEY_BYTES} bytes allowed"
        )));
    }
    if key.chars().any(is_control) {
        return invalid("key must not contain control characters");
    }
    if key.starts_with('/') {
        return invalid("key must not start with '/'");
    }
    if key.split('/').any(|seg| matches!(seg, "" | "." | "..")) {
        return invalid("key must not contain an empty, '.' or '..' path segment");
    }
    let reserved = RESERVED_PREFIX.trim_end_matches('/');
    if key == reserved || key.starts_with(RESERVED_PREFIX) {
        return Err(ApiError::InvalidKey(format!(
            "keys under '{RESERVED_PREFIX}' are reserved for the pipeline"
        )));
    }
    Ok(())
}

/// Checks a counter name: 1 to 256 bytes of `[A-Za-z0-9._:-]`.
///
/// # Errors
///
/// [`ApiError::InvalidName`] when the name is empty, too long or holds any
/// other character.
pub fn validate_counter_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > MAX_COUNTER_NAME_BYTES {
        return Err(ApiError::InvalidName(format!(
            "counter name must be 1 to {MAX_COUNTER_NAME_BYTES} bytes"
        )));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-');
    if !name.bytes().all(allowed) {
        return Err(ApiError::InvalidName(
            "counter name may only contain A-Z, a-z, 0-9, '.', '_', ':' and '-'".into(),
        ));
    }
    Ok(())
}

/// Checks the `prefix` query parameter of a listing (empty is allowed).
///
/// # Errors
///
/// [`ApiError::InvalidParameter`] when the prefix is longer than
/// [`MAX_KEY_BYTES`] or holds a control character.
pub fn validate_list_prefix(prefix: &str) -> Result<(), ApiError> {
    if prefix.len() > MAX_KEY_BYTES {
        return Err(ApiError::InvalidParameter(format!(
            "`prefix` is longer than the {MAX_KEY_BYTES} bytes allowed"
        )));
    }
    if prefix.chars().any(is_control) {
        return Err(ApiError::InvalidParameter(
            "`prefix` must not contain control characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_keys() {
        for key in [
            "a",
            "a/b/c.txt",
            "photos/2024/été.jpg",
            "x/_pipeline/y",
            "_pipelinex/y",
            "a.b/..c/d..",
            "with space",
        ] {
            assert_eq!(validate_key(key), Ok(()), "{key}");
        }
        assert_eq!(validate_key(&"k".repeat(MAX_KEY_BYTES)), Ok(()));
    }

    #[test]
    fn refusals_never_quote_the_key_name_or_prefix() {
        const SECRET: &str = "sk-live-7f3a9c1e5d";
        let long = format!("{SECRET}{}", "k".repeat(MAX_KEY_BYTES));
        for raw in [
            format!("{SECRET}%zz"),
            format!("{SECRET}%FF"),
            format!("{SECRET}%00"),
            format!("/{SECRET}"),
            format!("{SECRET}//x"),
            format!("_pipeline/{SECRET}"),
            long.clone(),
        ] {
            let e = decode_key(&raw).expect_err(&raw);
            assert!(!e.to_string().contains(SECRET), "{e}");
        }
        for name in [format!("{SECRET}!"), long.clone()] {
            let e = validate_counter_name(&name).expect_err(&name);
            assert!(!e.to_string().contains(SECRET), "{e}");
        }
        for prefix in [format!("{SECRET}\u{1}"), long] {
            let e = validate_list_prefix(&prefix).expect_err(&prefix);
            assert!(!e.to_string().contains(SECRET), "{e}");
        }
    }

    #[test]
    fn refuses_bad_keys() {
        let too_long = "k".repeat(MAX_KEY_BYTES + 1);
        for key in [
            "",
            too_long.as_str(),
            "a\nb",
            "a\u{0}",
            "a\u{7f}",
            "a\u{85}",
            "/a",
            "a//b",
            "a/",
            "./a",
            "a/./b",
            "a/..",
            "..",
            ".",
            "_pipeline",
            "_pipeline/",
            "_pipeline/state",
        ] {
            assert!(
                matches!(validate_key(key), Err(ApiError::InvalidKey(_))),
                "{key:?}"
            );
        }
    }

    #[test]
    fn multibyte_length_counts_bytes() {
        // 'é' is two bytes: 512 of them is exactly the limit.
        assert_eq!(validate_key(&"é".repeat(512)), Ok(()));
        assert!(validate_key(&"é".repeat(513)).is_err());
    }

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(decode_key("a%20b").as_deref(), Ok("a b"));
        assert_eq!(decode_key("caf%C3%A9").as_deref(), Ok("café"));
        assert_eq!(decode_key("a%2Fb").as_deref(), Ok("a/b"));
        assert_eq!(decode_key("plain/key").as_deref(), Ok("plain/key"));
    }

    #[test]
    fn refuses_bad_encodings() {
        for raw in [
            "a%zz",
            "a%",
            "a%4",
            "%g0",
            "%C3",
            "%FF",
            "a%2F..%2Fb",
            "%5Fpipeline/x",
            "",
            "%00",
        ] {
            assert!(
                matches!(decode_key(raw), Err(ApiError::InvalidKey(_))),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn counter_names() {
        for ok in ["a", "A-z_0.9:x", &"n".repeat(256)] {
            assert_eq!(validate_counter_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", &"n".repeat(257)] {
            assert!(
                matches!(validate_counter_name(bad), Err(ApiError::InvalidName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn list_prefixes() {
        assert_eq!(validate_list_prefix(""), Ok(()));
        assert_eq!(validate_list_prefix("photos/"), Ok(()));
        assert!(matches!(
            validate_list_prefix("a\tb"),
            Err(ApiError::InvalidParameter(_))
        ));
        assert!(matches!(
            validate_list_prefix(&"p".repeat(1025)),
            Err(ApiError::InvalidParameter(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn decode_never_panics(raw in "\\PC*") {
            let _ = decode_key(&raw);
        }

        #[test]
        fn valid_keys_round_trip_through_encoding(key in "[a-zA-Z0-9 é_-]{1,8}(/[a-zA-Z0-9 é_.-]{1,8}){0,4}") {
            prop_assume!(validate_key(&key).is_ok());
            let raw = utf8_percent_encode(&key, NON_ALPHANUMERIC).to_string();
            prop_assert_eq!(decode_key(&raw), Ok(key));
        }

        #[test]
        fn accepted_keys_obey_every_rule(key in "[a-z./_\\x00-\\x1f]{0,12}") {
            if validate_key(&key).is_ok() {
                prop_assert!(!key.is_empty() && !key.starts_with('/'));
                prop_assert!(!key.chars().any(is_control));
                prop_assert!(key.split('/').all(|s| !matches!(s, "" | "." | "..")));
                prop_assert!(!key.starts_with(RESERVED_PREFIX) && key != "_pipeline");
            }
        }
    }
}

/// Fuzzing: any percent-encoded bytes, valid escapes or not,
/// decode without panicking, and an accepted key is exactly the decoded
/// bytes and obeys every rule.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn encode_all(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("%{b:02X}")).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn any_escaped_bytes_decode_safely(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let raw = encode_all(&bytes);
            match decode_key(&raw) {
                Ok(key) => {
                    prop_assert_eq!(key.as_bytes(), &bytes[..]);
                    prop_assert!(validate_key(&key).is_ok());
                }
                Err(e) => prop_assert_eq!(e.code(), "invalid_key"),
            }
        }

        #[test]
        fn mixes_of_escapes_slashes_and_dots_decode_safely(raw in "([a-z]|%[0-9A-Fa-fgz]{0,2}|/|\\.|%2[eEfF]|%5[fF]|_pipeline){0,40}") {
            match decode_key(&raw) {
                Ok(key) => {
                    prop_assert!(!key.starts_with(RESERVED_PREFIX) && key != "_pipeline");
                    prop_assert!(key.split('/').all(|s| !matches!(s, "" | "." | "..")));
                    prop_assert!(!key.chars().any(is_control));
                }
                Err(e) => prop_assert_eq!(e.code(), "invalid_key"),
            }
        }

        #[test]
        fn counter_names_and_prefixes_never_panic(s in "\\PC{0,300}") {
            if validate_counter_name(&s).is_ok() {
                prop_assert!(!s.is_empty() && s.len() <= 256);
                prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b)));
            }
            let _ = validate_list_prefix(&s);
        }
    }
}
