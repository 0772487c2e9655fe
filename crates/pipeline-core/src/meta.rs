//! The HTTP and custom metadata kept with an object.
//!
//! A write's metadata is taken from its request headers when it is accepted,
//! carried through the queue and the scheduler, stored with the object in R2,
//! and given back as response headers on a read. Doing the header mapping and
//! its limits in one place keeps the accepting and the serving sides in
//! agreement, and refuses a write whose metadata could not be stored before
//! it is queued rather than when it is committed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::id::sealed_id_len;

/// The content type served when a write gave none.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// R2's limit on custom metadata, names plus values, in bytes: the limit of
/// production R2, and the one writes are checked against.
///
/// The local runtime's R2 (miniflare, under `wrangler dev`) allows only
/// 2048 bytes. Holding writes to that would refuse metadata production
/// stores; so locally, a write whose metadata is over 2048 bytes but within
/// this limit is accepted and then fails at its commit.
pub const MAX_CUSTOM_METADATA_BYTES: usize = 8192;

/// Custom metadata names the pipeline writes itself and so refuses from
/// clients.
pub const RESERVED_CUSTOM_KEYS: [&str; 3] = ["upload-id", "accepted-at", "committed-at"];

/// The length of the pipeline's times in metadata (`accepted-at`,
/// `committed-at`): RFC 3339 UTC with milliseconds, for years 1000 to 9999.
const TIME_BYTES: usize = "2026-01-01T00:00:00.000Z".len();

/// Bytes of custom metadata the pipeline stores itself with an object at
/// `key`: `upload-id` (the sealed id, whose length grows with the key's),
/// `accepted-at` and `committed-at`, names and values.
#[must_use]
pub fn pipeline_metadata_bytes(key: &str) -> usize {
    let [upload_id, accepted_at, committed_at] = RESERVED_CUSTOM_KEYS;
    upload_id.len()
        + sealed_id_len(key.len())
        + accepted_at.len()
        + TIME_BYTES
        + committed_at.len()
        + TIME_BYTES
}

/// Bytes of custom metadata (names plus values) a client may send with a
/// write to `key`: what is left of [`MAX_CUSTOM_METADATA_BYTES`] after the
/// pipeline's own entries ([`pipeline_metadata_bytes`]). From 8049 bytes
/// for a one-byte key down to 6685 for a key of 1024 bytes.
#[must_use]
pub fn custom_metadata_budget(key: &str) -> usize {
    MAX_CUSTOM_METADATA_BYTES.saturating_sub(pipeline_metadata_bytes(key))
}

/// The longest value accepted for each of the HTTP metadata headers.
const MAX_HTTP_VALUE_BYTES: usize = 1024;

/// The prefix of custom metadata request and response headers.
const CUSTOM_PREFIX: &str = "x-meta-";

/// The metadata of one object: its HTTP headers and custom `X-Meta-*` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectMeta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// Custom metadata, by lower-cased name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, String>,
}

/// Appends `value` to a repeated header's value, the way HTTP folds them.
fn join(slot: &mut Option<String>, value: &str) {
    match slot {
        Some(existing) => {
            existing.push_str(", ");
            existing.push_str(value);
        }
        None => *slot = Some(value.to_owned()),
    }
}

/// Whether `b` may appear in a custom metadata name (an HTTP token, lower
/// case).
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+.^_`|~-".contains(&b)
}

/// Whether `value` could be sent back as a header value: no ASCII control
/// characters other than horizontal tab (obs-text is left alone).
fn is_header_value(value: &str) -> bool {
    !value
        .chars()
        .any(|c| matches!(c, '\0'..='\x08' | '\n'..='\x1f' | '\x7f'))
}

impl ObjectMeta {
    /// Takes the metadata of a write to `key` from its request headers.
    ///
    /// Header names are case-insensitive; a repeated header's values are
    /// joined with `", "`; an empty HTTP metadata header counts as absent. A
    /// missing `Content-Type` stays `None` here (see
    /// [`ObjectMeta::content_type_or_default`]).
    ///
    /// # Errors
    ///
    /// [`ApiError::InvalidHeader`] when an `X-Meta-` name is empty, not a
    /// token or reserved ([`RESERVED_CUSTOM_KEYS`]); when a
    /// value holds control characters; when an HTTP metadata value is over
    /// 1024 bytes; or when the custom metadata (names plus values) is over
    /// [`custom_metadata_budget`] for `key`, so that it would not fit R2's
    /// limit next to the pipeline's own entries.
    pub fn from_headers<'a>(
        key: &str,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<ObjectMeta, ApiError> {
        let mut meta = ObjectMeta::default();
        for (name, value) in headers {
            if let Some(custom) = strip_prefix_ignore_case(name, CUSTOM_PREFIX) {
                let custom = custom.to_ascii_lowercase();
                if custom.is_empty() || !custom.bytes().all(is_name_byte) {
                    return Err(ApiError::InvalidHeader(
                        "an X-Meta-* header's name must be X-Meta- followed by a non-empty HTTP token"
                            .into(),
                    ));
                }
                if let Some(reserved) = RESERVED_CUSTOM_KEYS.iter().find(|r| **r == custom) {
                    return Err(ApiError::InvalidHeader(format!(
                        "X-Meta-{reserved}: the custom metadata `{reserved}` is reserved for the pipeline"
                    )));
                }
                if !is_header_value(value) {
                    return Err(ApiError::InvalidHeader(
                        "an X-Meta-* header's value holds control characters".into(),
                    ));
                }
                meta.custom
                    .entry(custom)
                    .and_modify(|v| {
                        v.push_str(", ");
                        v.push_str(value);
                    })
                    .or_insert_with(|| value.to_owned());
                continue;
            }
            let Some((header, slot)) = meta.http_slot(name) else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            if !is_header_value(value) {
                return Err(ApiError::InvalidHeader(format!(
                    "{header} holds control characters"
                )));
            }
            join(slot, value);
        }
        for (header, value) in meta.http_fields() {
            if value.is_some_and(|v| v.len() > MAX_HTTP_VALUE_BYTES) {
                return Err(ApiError::InvalidHeader(format!(
                    "{header} is longer than {MAX_HTTP_VALUE_BYTES} bytes"
                )));
            }
        }
        let budget = custom_metadata_budget(key);
        if meta.custom_bytes() > budget {
            return Err(ApiError::InvalidHeader(format!(
                "the X-Meta-* headers hold more than the {budget} bytes of names and values \
                 allowed with this key (R2 keeps {MAX_CUSTOM_METADATA_BYTES} bytes of custom \
                 metadata, the pipeline's own entries included)"
            )));
        }
        Ok(meta)
    }

    /// Bytes of the custom metadata, names plus values.
    #[must_use]
    pub fn custom_bytes(&self) -> usize {
        self.custom.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    /// The content type to serve: the stored one, else
    /// [`DEFAULT_CONTENT_TYPE`].
    #[must_use]
    pub fn content_type_or_default(&self) -> &str {
        self.content_type.as_deref().unwrap_or(DEFAULT_CONTENT_TYPE)
    }

    /// The headers a read answers with for this metadata: `Content-Type`
    /// (default applied), the other HTTP headers that are set, and
    /// `X-Meta-<name>` for each custom entry.
    #[must_use]
    pub fn response_headers(&self) -> Vec<(String, String)> {
        let mut out = vec![(
            "Content-Type".to_owned(),
            self.content_type_or_default().to_owned(),
        )];
        out.extend(
            self.http_fields()
                .into_iter()
                .skip(1)
                .filter_map(|(name, value)| Some((name.to_owned(), value?.to_owned()))),
        );
        out.extend(
            self.custom
                .iter()
                .map(|(k, v)| (format!("X-Meta-{k}"), v.clone())),
        );
        out
    }

    /// The HTTP metadata fields with their canonical header names,
    /// `Content-Type` first.
    fn http_fields(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("Content-Type", self.content_type.as_deref()),
            ("Content-Encoding", self.content_encoding.as_deref()),
            ("Content-Language", self.content_language.as_deref()),
            ("Content-Disposition", self.content_disposition.as_deref()),
            ("Cache-Control", self.cache_control.as_deref()),
        ]
    }

    /// The canonical name of the HTTP header `name` and the field that keeps
    /// it, if it is one kept.
    fn http_slot(&mut self, name: &str) -> Option<(&'static str, &mut Option<String>)> {
        let is = |canonical: &str| name.eq_ignore_ascii_case(canonical);
        if is("content-type") {
            Some(("Content-Type", &mut self.content_type))
        } else if is("content-encoding") {
            Some(("Content-Encoding", &mut self.content_encoding))
        } else if is("content-language") {
            Some(("Content-Language", &mut self.content_language))
        } else if is("content-disposition") {
            Some(("Content-Disposition", &mut self.content_disposition))
        } else if is("cache-control") {
            Some(("Cache-Control", &mut self.cache_control))
        } else {
            None
        }
    }
}

/// `s` without its leading `prefix`, compared ASCII case-insensitively.
fn strip_prefix_ignore_case<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

/// Checks an `Idempotency-Key` header: 1 to 255 visible ASCII characters.
///
/// # Errors
///
/// [`ApiError::InvalidHeader`] when the value is empty, longer than 255
/// bytes, or holds anything outside `0x21..=0x7E`.
pub fn validate_idempotency_key(value: &str) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > 255 || !value.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(ApiError::InvalidHeader(
            "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key of the length most tests use.
    const KEY: &str = "photos/2026/cat.jpg";
    use proptest::collection::btree_map;
    use proptest::prelude::*;

    fn invalid_header(r: Result<ObjectMeta, ApiError>) -> bool {
        matches!(r, Err(ApiError::InvalidHeader(_)))
    }

    #[test]
    fn takes_kept_headers_case_insensitively() {
        let meta = ObjectMeta::from_headers(
            KEY,
            [
                ("Content-Type", "text/plain"),
                ("CONTENT-ENCODING", "gzip"),
                ("content-language", "fr"),
                ("Content-Disposition", "attachment"),
                ("Cache-Control", "no-cache"),
                ("X-Meta-Owner", "Alice"),
                ("x-meta-TAG", "a"),
                ("X-Meta-tag", "b"),
                ("Authorization", "Bearer t"),
                ("Content-Length", "5"),
            ],
        );
        let mut custom = BTreeMap::new();
        custom.insert("owner".to_owned(), "Alice".to_owned());
        custom.insert("tag".to_owned(), "a, b".to_owned());
        assert_eq!(
            meta,
            Ok(ObjectMeta {
                content_type: Some("text/plain".into()),
                content_encoding: Some("gzip".into()),
                content_language: Some("fr".into()),
                content_disposition: Some("attachment".into()),
                cache_control: Some("no-cache".into()),
                custom,
            })
        );
    }

    #[test]
    fn repeated_http_headers_are_joined() {
        let meta = ObjectMeta::from_headers(
            KEY,
            [("cache-control", "no-cache"), ("Cache-Control", "no-store")],
        );
        assert_eq!(
            meta.map(|m| m.cache_control),
            Ok(Some("no-cache, no-store".into()))
        );
    }

    #[test]
    fn default_content_type() {
        let meta = ObjectMeta::default();
        assert_eq!(meta.content_type_or_default(), DEFAULT_CONTENT_TYPE);
        assert_eq!(
            meta.response_headers(),
            vec![("Content-Type".to_owned(), DEFAULT_CONTENT_TYPE.to_owned())]
        );
        assert_eq!(
            ObjectMeta::from_headers(KEY, [("content-type", "")]),
            Ok(ObjectMeta::default())
        );
    }

    #[test]
    fn refuses_bad_custom_names() {
        assert!(invalid_header(ObjectMeta::from_headers(
            KEY,
            [("X-Meta-", "v")]
        )));
        assert!(invalid_header(ObjectMeta::from_headers(
            KEY,
            [("X-Meta-a b", "v")]
        )));
        assert!(invalid_header(ObjectMeta::from_headers(
            KEY,
            [("X-Meta-a/b", "v")]
        )));
        assert!(invalid_header(ObjectMeta::from_headers(
            KEY,
            [("X-Meta-é", "v")]
        )));
        for reserved in RESERVED_CUSTOM_KEYS {
            let name = format!("X-Meta-{}", reserved.to_uppercase());
            assert!(invalid_header(ObjectMeta::from_headers(
                KEY,
                [(name.as_str(), "v")]
            )));
        }
        assert!(ObjectMeta::from_headers(KEY, [("X-Meta-a!#$%&'*+.^_`|~-9", "v")]).is_ok());
    }

    #[test]
    fn refuses_control_characters() {
        assert!(invalid_header(ObjectMeta::from_headers(
            KEY,
            [("X-Meta-a", "x\ny")]
        )));
        assert!(invalid_header(ObjectMeta::from_headers(
            KEY,
            [("Content-Type", "x\ry")]
        )));
        assert!(ObjectMeta::from_headers(KEY, [("X-Meta-a", "x\ty")]).is_ok());
        assert!(invalid_header(ObjectMeta::from_headers(
            KEY,
            [("X-Meta-a", "x\u{7f}")]
        )));
        // Latin-1 decoded UTF-8 (obs-text) passes through untouched.
        assert!(ObjectMeta::from_headers(KEY, [("X-Meta-a", "\u{e2}\u{80}\u{a6}")]).is_ok());
    }

    #[test]
    fn enforces_sizes() {
        let at_limit = "t".repeat(MAX_HTTP_VALUE_BYTES);
        let over = "t".repeat(MAX_HTTP_VALUE_BYTES + 1);
        assert!(ObjectMeta::from_headers(KEY, [("Content-Type", at_limit.as_str())]).is_ok());
        assert!(invalid_header(ObjectMeta::from_headers(
            KEY,
            [("Content-Type", over.as_str())]
        )));
        // Joined values count together.
        let half = "t".repeat(600);
        assert!(invalid_header(ObjectMeta::from_headers(
            KEY,
            [
                ("Cache-Control", half.as_str()),
                ("Cache-Control", half.as_str()),
            ]
        )));

        let budget = custom_metadata_budget(KEY);
        let fits = "v".repeat(budget - 1);
        let too_big = "v".repeat(budget);
        assert!(ObjectMeta::from_headers(KEY, [("X-Meta-k", fits.as_str())]).is_ok());
        assert!(invalid_header(ObjectMeta::from_headers(
            KEY,
            [("X-Meta-k", too_big.as_str())]
        )));
    }

    /// The custom metadata R2 gets for a commit of `meta` to `key`, as the
    /// scheduler builds it: the client's entries and the pipeline's own,
    /// with a real sealed id. Returns its size in bytes.
    fn stored_bytes(meta: &ObjectMeta, key: &str, accepted_ms: i64, committed_ms: i64) -> usize {
        use crate::id::{Claims, IdSealer, WriteOp};
        use crate::time::rfc3339_ms;
        let claims = Claims {
            key: key.to_owned(),
            accepted_ms,
            size: 1,
            op: WriteOp::Put,
        };
        let mut custom = meta.custom.clone();
        custom.insert(
            "upload-id".into(),
            IdSealer::new(b"secret").seal(&claims, [5; 12]),
        );
        custom.insert("accepted-at".into(), rfc3339_ms(accepted_ms));
        custom.insert("committed-at".into(), rfc3339_ms(committed_ms));
        custom.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    #[test]
    fn the_pipelines_entries_are_counted_exactly() {
        let now = 1_795_000_000_123;
        for len in [1, 20, 86, 87, 200, 1024] {
            let key = "k".repeat(len);
            let empty = ObjectMeta::default();
            assert_eq!(
                stored_bytes(&empty, &key, now, now + 1500),
                pipeline_metadata_bytes(&key),
                "key of {len} bytes"
            );
        }
        assert_eq!(custom_metadata_budget("k"), 8049);
        assert_eq!(custom_metadata_budget(&"k".repeat(1024)), 6685);
    }

    #[test]
    fn a_long_key_leaves_less_room_for_custom_metadata() {
        // With a fixed 256-byte reserve, 7936 bytes were accepted with any
        // key; with a key of 87 bytes or more they no longer fit R2's 8192.
        let key = "k".repeat(87);
        let value = "v".repeat(7936 - 1);
        let refused = ObjectMeta::from_headers(&key, [("X-Meta-n", value.as_str())]);
        assert!(invalid_header(refused));
        let budget = custom_metadata_budget(&key);
        assert!(budget < 7936, "{budget}");
        let at_budget = "v".repeat(budget - 1);
        let meta = ObjectMeta::from_headers(&key, [("X-Meta-n", at_budget.as_str())]);
        let meta = meta.expect("metadata at the budget is accepted");
        assert_eq!(
            stored_bytes(&meta, &key, 0, 1000),
            MAX_CUSTOM_METADATA_BYTES
        );
        let over = "v".repeat(budget);
        assert!(invalid_header(ObjectMeta::from_headers(
            &key,
            [("X-Meta-n", over.as_str())]
        )));
    }

    fn any_key() -> impl Strategy<Value = String> {
        prop_oneof![
            (1usize..=1024).prop_map(|n| "k".repeat(n)),
            "[a-z/é🦀]{1,256}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the key's length and the metadata's size, what passes
        /// validation fits R2's limit with the real id and times, and what
        /// is refused for its size would not have.
        #[test]
        fn accepted_metadata_fits_with_the_real_id(
            key in any_key(),
            names in proptest::collection::vec("[a-z0-9-]{1,12}", 1..4),
            delta in -64i64..64,
            far in any::<bool>(),
            accepted_ms in 0i64..253_402_300_799_999,
            later_ms in 0i64..86_400_000,
        ) {
            let committed_ms = (accepted_ms + later_ms).min(253_402_300_799_999);
            let budget = custom_metadata_budget(&key) as i64;
            let target = if far { budget + delta * 100 } else { budget + delta };
            // Spread `target` bytes over the names.
            let names: Vec<String> = names.into_iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            let name_bytes: i64 = names.iter().map(|n| n.len() as i64).sum();
            let values = (target - name_bytes).max(0);
            let share = values / names.len() as i64;
            let headers: Vec<(String, String)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let extra = if i == 0 { values - share * names.len() as i64 } else { 0 };
                    (format!("X-Meta-{n}"), "v".repeat((share + extra) as usize))
                })
                .collect();
            let parsed = ObjectMeta::from_headers(&key, headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let sent: usize = names.iter().map(String::len).sum::<usize>() + values as usize;
            match parsed {
                Ok(meta) => {
                    prop_assert_eq!(meta.custom_bytes(), sent);
                    prop_assert!(stored_bytes(&meta, &key, accepted_ms, committed_ms) <= MAX_CUSTOM_METADATA_BYTES);
                }
                Err(e) => {
                    prop_assert_eq!(e.code(), "invalid_header");
                    let meta = ObjectMeta {
                        custom: headers.iter().map(|(k, v)| (k["X-Meta-".len()..].to_owned(), v.clone())).collect(),
                        ..ObjectMeta::default()
                    };
                    prop_assert!(stored_bytes(&meta, &key, accepted_ms, committed_ms) > MAX_CUSTOM_METADATA_BYTES);
                }
            }
        }

        #[test]
        fn times_in_metadata_have_a_fixed_length(ms in 0i64..253_402_300_799_999) {
            prop_assert_eq!(crate::time::rfc3339_ms(ms).len(), TIME_BYTES);
        }
    }

    #[test]
    fn json_is_compact() {
        assert_eq!(
            serde_json::to_string(&ObjectMeta::default())
                .ok()
                .as_deref(),
            Some("{}")
        );
        let meta = ObjectMeta {
            content_type: Some("text/plain".into()),
            ..ObjectMeta::default()
        };
        let json = serde_json::to_string(&meta).unwrap_or_default();
        assert_eq!(json, r#"{"content_type":"text/plain"}"#);
        assert_eq!(serde_json::from_str::<ObjectMeta>(&json).ok(), Some(meta));
        assert_eq!(
            serde_json::from_str::<ObjectMeta>("{}").ok(),
            Some(ObjectMeta::default())
        );
    }

    #[test]
    fn idempotency_keys() {
        assert_eq!(validate_idempotency_key("abc-123_!~"), Ok(()));
        assert_eq!(validate_idempotency_key(&"k".repeat(255)), Ok(()));
        for bad in ["", "a b", "é", "a\t", &"k".repeat(256)] {
            assert!(
                matches!(
                    validate_idempotency_key(bad),
                    Err(ApiError::InvalidHeader(_))
                ),
                "{bad:?}"
            );
        }
    }

    /// A value a client might paste by mistake; no refusal may quote it.
    const SECRET: &str = "sk-live-7f3a9c1e5d";

    #[track_caller]
    fn assert_quotes_nothing(headers: &[(String, String)]) {
        let refused =
            ObjectMeta::from_headers(KEY, headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let Err(e) = refused else {
            panic!("{headers:?} was accepted");
        };
        assert!(
            !e.to_string().to_ascii_lowercase().contains(SECRET),
            "{e} quotes the request"
        );
    }

    #[test]
    fn refusals_quote_no_header_name_or_value_the_client_chose() {
        let long = format!("{SECRET}{}", "v".repeat(MAX_CUSTOM_METADATA_BYTES));
        let long_http = format!("{SECRET}{}", "v".repeat(MAX_HTTP_VALUE_BYTES));
        let cases = [
            // Control characters in a value, under a name the client chose.
            vec![(format!("X-Meta-{SECRET}"), format!("{SECRET}\n"))],
            vec![(format!("x-meta-{}", SECRET.to_uppercase()), "\u{1}".into())],
            // A name that is not a token.
            vec![(format!("X-Meta-{SECRET} x"), SECRET.into())],
            vec![(format!("X-Meta-{SECRET}/é"), SECRET.into())],
            // Too much custom metadata.
            vec![(format!("X-Meta-{SECRET}"), long)],
            // A reserved name next to a chosen one.
            vec![
                (format!("X-Meta-{SECRET}"), SECRET.into()),
                ("X-Meta-Upload-Id".into(), SECRET.into()),
            ],
            // HTTP metadata: control characters, too long.
            vec![("content-type".into(), format!("{SECRET}\r"))],
            vec![("Cache-Control".into(), long_http)],
        ];
        for headers in &cases {
            assert_quotes_nothing(headers);
        }
        let idem = format!("{SECRET} with a space");
        let e = validate_idempotency_key(&idem).map(|()| "accepted".to_owned());
        assert!(e.is_err_and(|e| !e.to_string().contains(SECRET)));
    }

    fn http_value() -> impl Strategy<Value = Option<String>> {
        proptest::option::of("[ -~]{1,40}")
    }

    fn any_meta() -> impl Strategy<Value = ObjectMeta> {
        (
            http_value(),
            http_value(),
            http_value(),
            http_value(),
            http_value(),
            btree_map("[a-z0-9!#$%&'*+.^_`|~-]{1,20}", "[ -~\t]{0,40}", 0..8),
        )
            .prop_map(|(ct, ce, cl, cd, cc, custom)| ObjectMeta {
                content_type: ct,
                content_encoding: ce,
                content_language: cl,
                content_disposition: cd,
                cache_control: cc,
                custom: custom
                    .into_iter()
                    .filter(|(k, _)| !RESERVED_CUSTOM_KEYS.contains(&k.as_str()))
                    .collect(),
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn response_headers_round_trip(meta in any_meta()) {
            let headers = meta.response_headers();
            let parsed = ObjectMeta::from_headers(KEY, headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            let expected = ObjectMeta {
                content_type: Some(meta.content_type_or_default().to_owned()),
                ..meta.clone()
            };
            prop_assert_eq!(parsed, Ok(expected));
        }

        #[test]
        fn json_round_trip(meta in any_meta()) {
            let json = serde_json::to_string(&meta).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(serde_json::from_str::<ObjectMeta>(&json).ok(), Some(meta));
        }

        #[test]
        fn refusals_never_quote_the_headers(
            names in proptest::collection::vec("[xX]-[mM][eE][tT][aA]-[a-z0-9 /.-]{0,6}|Content-Type|cache-control|[a-z-]{1,8}", 1..6),
            values in proptest::collection::vec("[ -~\t\n\x01\x7f]{0,20}", 1..6),
            big in any::<bool>(),
        ) {
            let mut headers: Vec<(String, String)> = names
                .iter()
                .zip(values.iter().cycle())
                .map(|(n, v)| (format!("{n}{SECRET}"), format!("{v}{SECRET}{v}")))
                .collect();
            if big {
                headers.push((format!("X-Meta-{SECRET}"), SECRET.repeat(600)));
            }
            if let Err(e) = ObjectMeta::from_headers(KEY, headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
                prop_assert!(!e.to_string().to_ascii_lowercase().contains(SECRET), "{}", e);
            }
        }

        #[test]
        fn from_headers_never_panics(headers in proptest::collection::vec(("\\PC{0,12}", "\\PC{0,12}"), 0..8)) {
            let _ = ObjectMeta::from_headers(KEY, headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
    }
}

/// Fuzzing: header mapping never panics, and whatever it accepts
/// fits R2's limits and never claims a reserved name.
#[cfg(test)]
mod fuzz {
    use super::*;

    const KEY: &str = "photos/2026/cat.jpg";
    use proptest::prelude::*;

    fn header_name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[xX]-[mM][eE][tT][aA]-[a-zA-Z0-9!#$%&'*+.^_`|~-]{0,12}",
            Just("X-Meta-upload-id".to_owned()),
            Just("x-meta-ACCEPTED-AT".to_owned()),
            Just("Content-Type".to_owned()),
            Just("cache-control".to_owned()),
            "\\PC{0,12}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn accepted_metadata_obeys_the_limits(
            headers in proptest::collection::vec((header_name(), "\\PC{0,12}|[ -~]{0,1500}"), 0..12)
        ) {
            if let Ok(meta) = ObjectMeta::from_headers(KEY, headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
                prop_assert!(meta.custom_bytes() <= custom_metadata_budget(KEY));
                for k in meta.custom.keys() {
                    prop_assert!(!RESERVED_CUSTOM_KEYS.contains(&k.as_str()));
                    prop_assert!(!k.is_empty() && k.bytes().all(is_name_byte));
                }
                for (_, v) in meta.http_fields() {
                    prop_assert!(v.is_none_or(|v| v.len() <= MAX_HTTP_VALUE_BYTES && is_header_value(v)));
                }
            }
        }

        #[test]
        fn idempotency_keys_are_one_to_255_visible_ascii(v in "\\PC{0,300}") {
            let ok = !v.is_empty() && v.len() <= 255 && v.bytes().all(|b| (0x21..=0x7e).contains(&b));
            prop_assert_eq!(validate_idempotency_key(&v).is_ok(), ok);
        }
    }
}
