//! Percent-encoding of keys, counter names and query values.
//!
//! Keys travel in the path, so each character is encoded on its own (UTF-8
//! bytes as `%XX`) except `/` and the RFC 3986 unreserved set, which the
//! Worker must see as they are. Counter names and query values are single
//! components, so `/` is encoded there too.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but the unreserved characters `A-Z a-z 0-9 - . _ ~`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// As [`COMPONENT`], keeping `/` (the key's own separator).
const KEY: &AsciiSet = &COMPONENT.remove(b'/');

/// As [`COMPONENT`], keeping `:` (legal in a path segment and in counter names).
const SEGMENT: &AsciiSet = &COMPONENT.remove(b':');

/// Encodes an object key for the path after `/objects/`.
#[must_use]
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY).to_string()
}

/// Encodes a counter name for the path segment after `/counters/`.
#[must_use]
pub fn encode_counter_name(name: &str) -> String {
    utf8_percent_encode(name, SEGMENT).to_string()
}

/// Encodes a query-string value (or name).
#[must_use]
pub fn encode_query_value(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

/// Builds `?a=1&b=2` from the pairs whose value is present, or `""`.
pub(crate) fn query_string(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(name, value)| {
            value
                .as_ref()
                .map(|v| format!("{}={}", encode_query_value(name), encode_query_value(v)))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_slashes_and_unreserved() {
        assert_eq!(encode_key("a/b-c_d.e~f/G9"), "a/b-c_d.e~f/G9");
    }

    #[test]
    fn keys_encode_everything_else_per_character() {
        assert_eq!(encode_key("a b"), "a%20b");
        assert_eq!(encode_key("a?b#c%d"), "a%3Fb%23c%25d");
        assert_eq!(encode_key("x+y&z="), "x%2By%26z%3D");
        assert_eq!(encode_key("é"), "%C3%A9");
        assert_eq!(encode_key("日本/🎉"), "%E6%97%A5%E6%9C%AC/%F0%9F%8E%89");
        assert_eq!(encode_key("tab\there"), "tab%09here");
    }

    #[test]
    fn counter_names_encode_slashes_but_keep_colons() {
        assert_eq!(encode_counter_name("a:b.c-d_e"), "a:b.c-d_e");
        assert_eq!(encode_counter_name("a/b"), "a%2Fb");
        assert_eq!(encode_counter_name("a b"), "a%20b");
    }

    #[test]
    fn query_values_encode_slashes_and_separators() {
        assert_eq!(encode_query_value("a/b c&d=e"), "a%2Fb%20c%26d%3De");
        assert_eq!(encode_query_value("ünï"), "%C3%BCn%C3%AF");
    }

    #[test]
    fn query_string_skips_absent_values() {
        assert_eq!(query_string(&[]), "");
        assert_eq!(query_string(&[("a", None)]), "");
        assert_eq!(
            query_string(&[
                ("prefix", Some("p/".into())),
                ("cursor", None),
                ("limit", Some("5".into()))
            ]),
            "?prefix=p%2F&limit=5"
        );
    }
}
