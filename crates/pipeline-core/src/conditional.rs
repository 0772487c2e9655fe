//! Conditional requests (RFC 9110 §13): `If-Match`, `If-None-Match`,
//! `If-Modified-Since`, `If-Unmodified-Since` and `If-Range`.
//!
//! A read compares these headers with the object's entity tag and
//! modification time before sending anything; getting the order of
//! evaluation, strong versus weak comparison, and the tolerance of odd
//! header values right is fiddly, so it is done once here, as pure functions
//! of the header values, the `ETag` and the `Last-Modified` second.

use std::time::{Duration, UNIX_EPOCH};

/// The outcome of evaluating a request's preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Serve the request normally.
    Proceed,
    /// Answer `304 Not Modified` (GET and HEAD only).
    NotModified,
    /// Answer `412 Precondition Failed`.
    Failed,
}

/// The conditional header values of a request, as received.
#[derive(Debug, Default, Clone, Copy)]
pub struct Conditions<'a> {
    pub if_match: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
    pub if_unmodified_since: Option<&'a str>,
}

/// The latest second an IMF-fixdate can show (9999-12-31T23:59:59Z).
const MAX_HTTP_DATE_SECS: i64 = 253_402_300_799;

/// One entity tag: its weakness and its opaque part (without quotes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a str,
}

impl EntityTag<'_> {
    fn strong_eq(&self, other: &EntityTag<'_>) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    fn weak_eq(&self, other: &EntityTag<'_>) -> bool {
        self.opaque == other.opaque
    }
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `etagc`: `%x21 / %x23-7E / obs-text`.
fn is_etagc(c: char) -> bool {
    c == '!' || ('#'..='~').contains(&c) || !c.is_ascii()
}

/// Parses one entity tag at the start of `s`, returning it and the rest.
fn parse_tag(s: &str) -> Option<(EntityTag<'_>, &str)> {
    let (weak, rest) = match s.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let body = rest.strip_prefix('"')?;
    let (opaque, after) = body.split_once('"')?;
    opaque
        .chars()
        .all(is_etagc)
        .then_some((EntityTag { weak, opaque }, after))
}

/// Parses a whole value holding exactly one entity tag (OWS around allowed).
fn parse_single(s: &str) -> Option<EntityTag<'_>> {
    let (tag, rest) = parse_tag(s.trim_matches(is_ows))?;
    rest.is_empty().then_some(tag)
}

/// Parses `1#entity-tag`: OWS around commas and empty elements are allowed;
/// anything else makes the whole list malformed (`None`).
fn parse_list(s: &str) -> Option<Vec<EntityTag<'_>>> {
    let mut tags = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches(|c| c == ',' || is_ows(c));
        if rest.is_empty() {
            break;
        }
        let (tag, after) = parse_tag(rest)?;
        tags.push(tag);
        rest = after.trim_start_matches(is_ows);
        if !rest.is_empty() && !rest.starts_with(',') {
            return None;
        }
    }
    (!tags.is_empty()).then_some(tags)
}

/// Whether an `If-Match` / `If-None-Match` value matches `etag`: `*` always
/// does, a list does when one of its tags is equal under `eq`, a malformed
/// value never does.
fn list_matches(value: &str, etag: &str, eq: fn(&EntityTag<'_>, &EntityTag<'_>) -> bool) -> bool {
    if value.trim_matches(is_ows) == "*" {
        return true;
    }
    match (parse_single(etag), parse_list(value)) {
        (Some(ours), Some(theirs)) => theirs.iter().any(|t| eq(t, &ours)),
        _ => false,
    }
}

/// Parses an HTTP date into Unix seconds; `None` when it is not one.
fn parse_date(value: &str) -> Option<i64> {
    let time = httpdate::parse_http_date(value).ok()?;
    let secs = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs).ok()
}

/// Evaluates a request's preconditions against a representation with the
/// quoted entity tag `etag`, last modified at `last_modified_secs` (Unix
/// seconds), in the order of RFC 9110 §13.2.2.
///
/// `is_get_or_head` selects `304` (GET, HEAD) rather than `412` when
/// `If-None-Match` matches, and whether `If-Modified-Since` applies at all.
/// An `etag` that is not a valid entity tag matches no listed tag.
#[must_use]
pub fn evaluate(
    c: &Conditions<'_>,
    etag: &str,
    last_modified_secs: i64,
    is_get_or_head: bool,
) -> Precondition {
    if let Some(value) = c.if_match {
        if !list_matches(value, etag, |a, b| a.strong_eq(b)) {
            return Precondition::Failed;
        }
    } else if let Some(date) = c.if_unmodified_since.and_then(parse_date) {
        if last_modified_secs > date {
            return Precondition::Failed;
        }
    }
    if let Some(value) = c.if_none_match {
        if list_matches(value, etag, |a, b| a.weak_eq(b)) {
            return if is_get_or_head {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if is_get_or_head {
        if let Some(date) = c.if_modified_since.and_then(parse_date) {
            if last_modified_secs <= date {
                return Precondition::NotModified;
            }
        }
    }
    Precondition::Proceed
}

/// Whether an `If-Range` value lets a `Range` apply (RFC 9110 §13.1.5):
/// absent, a strong entity tag equal to `etag`, or an HTTP date equal to
/// `last_modified_secs`. A weak tag, a mismatch or garbage means the range
/// is ignored and the whole object is sent.
#[must_use]
pub fn if_range_allows(if_range: Option<&str>, etag: &str, last_modified_secs: i64) -> bool {
    let Some(value) = if_range else {
        return true;
    };
    match (parse_single(value), parse_single(etag)) {
        (Some(theirs), Some(ours)) => theirs.strong_eq(&ours),
        (Some(_), None) => false,
        (None, _) => parse_date(value) == Some(last_modified_secs),
    }
}

/// Formats Unix seconds as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`)
/// for `Last-Modified`; times before 1970 or after 9999 are clamped.
#[must_use]
pub fn http_date(unix_secs: i64) -> String {
    let secs = unix_secs.clamp(0, MAX_HTTP_DATE_SECS).unsigned_abs();
    let time = UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(UNIX_EPOCH);
    httpdate::fmt_http_date(time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Precondition::{Failed, NotModified, Proceed};

    const ETAG: &str = "\"abc\"";
    const T: i64 = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
    const T_DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const BEFORE: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const AFTER: &str = "Sun, 06 Nov 1994 08:49:38 GMT";

    fn get(c: Conditions<'_>) -> Precondition {
        evaluate(&c, ETAG, T, true)
    }

    fn if_match(v: &str) -> Conditions<'_> {
        Conditions {
            if_match: Some(v),
            ..Conditions::default()
        }
    }

    fn if_none_match(v: &str) -> Conditions<'_> {
        Conditions {
            if_none_match: Some(v),
            ..Conditions::default()
        }
    }

    #[test]
    fn no_conditions_proceed() {
        assert_eq!(get(Conditions::default()), Proceed);
        assert_eq!(evaluate(&Conditions::default(), ETAG, T, false), Proceed);
    }

    #[test]
    fn if_match_is_strong() {
        assert_eq!(get(if_match("*")), Proceed);
        assert_eq!(get(if_match("\"abc\"")), Proceed);
        assert_eq!(get(if_match("\"x\", \"abc\"")), Proceed);
        assert_eq!(get(if_match(" ,\"x\" ,, \"abc\" , ")), Proceed);
        assert_eq!(get(if_match("W/\"abc\"")), Failed);
        assert_eq!(get(if_match("\"abd\"")), Failed);
        assert_eq!(get(if_match("abc")), Failed);
        assert_eq!(get(if_match("")), Failed);
        assert_eq!(get(if_match("\"abc\" garbage")), Failed);
        assert_eq!(get(if_match("\"abc")), Failed);
        // A weak representation never matches strongly.
        assert_eq!(
            evaluate(&if_match("W/\"abc\""), "W/\"abc\"", T, true),
            Failed
        );
        assert_eq!(evaluate(&if_match("*"), "W/\"abc\"", T, true), Proceed);
    }

    #[test]
    fn commas_inside_quotes_are_part_of_the_tag() {
        assert_eq!(evaluate(&if_match("\"a,b\""), "\"a,b\"", T, true), Proceed);
        assert_eq!(
            evaluate(&if_match("\"a\", \"b\""), "\"a,b\"", T, true),
            Failed
        );
        assert_eq!(
            evaluate(&if_none_match("\"x\", \"a,b\""), "\"a,b\"", T, true),
            NotModified
        );
    }

    #[test]
    fn if_none_match_is_weak() {
        assert_eq!(get(if_none_match("*")), NotModified);
        assert_eq!(get(if_none_match("\"abc\"")), NotModified);
        assert_eq!(get(if_none_match("W/\"abc\"")), NotModified);
        assert_eq!(get(if_none_match("\"x\", W/\"abc\"")), NotModified);
        assert_eq!(get(if_none_match("\"x\"")), Proceed);
        assert_eq!(get(if_none_match("garbage \"abc\"")), Proceed);
        assert_eq!(evaluate(&if_none_match("\"abc\""), ETAG, T, false), Failed);
        assert_eq!(evaluate(&if_none_match("\"x\""), ETAG, T, false), Proceed);
    }

    #[test]
    fn if_unmodified_since() {
        let c = |d| Conditions {
            if_unmodified_since: Some(d),
            ..Conditions::default()
        };
        assert_eq!(get(c(T_DATE)), Proceed);
        assert_eq!(get(c(AFTER)), Proceed);
        assert_eq!(get(c(BEFORE)), Failed);
        assert_eq!(get(c("not a date")), Proceed);
        // Ignored when If-Match is present.
        let both = Conditions {
            if_match: Some("*"),
            if_unmodified_since: Some(BEFORE),
            ..Conditions::default()
        };
        assert_eq!(get(both), Proceed);
    }

    #[test]
    fn if_modified_since() {
        let c = |d| Conditions {
            if_modified_since: Some(d),
            ..Conditions::default()
        };
        assert_eq!(get(c(T_DATE)), NotModified);
        assert_eq!(get(c(AFTER)), NotModified);
        assert_eq!(get(c(BEFORE)), Proceed);
        assert_eq!(get(c("Sunday, 06-Nov-94 08:49:37 GMT")), NotModified);
        assert_eq!(get(c("Sun Nov  6 08:49:37 1994")), NotModified);
        assert_eq!(get(c("yesterday")), Proceed);
        // Only for GET and HEAD.
        assert_eq!(evaluate(&c(AFTER), ETAG, T, false), Proceed);
        // Ignored when If-None-Match is present, even if it does not match.
        let both = Conditions {
            if_none_match: Some("\"x\""),
            if_modified_since: Some(AFTER),
            ..Conditions::default()
        };
        assert_eq!(get(both), Proceed);
    }

    #[test]
    fn order_of_evaluation() {
        // A failed If-Match wins over a matching If-None-Match.
        let c = Conditions {
            if_match: Some("\"x\""),
            if_none_match: Some("*"),
            ..Conditions::default()
        };
        assert_eq!(get(c), Failed);
        // A failed If-Unmodified-Since wins over a matching If-None-Match.
        let c = Conditions {
            if_unmodified_since: Some(BEFORE),
            if_none_match: Some("*"),
            ..Conditions::default()
        };
        assert_eq!(get(c), Failed);
    }

    #[test]
    fn if_range() {
        assert!(if_range_allows(None, ETAG, T));
        assert!(if_range_allows(Some("\"abc\""), ETAG, T));
        assert!(if_range_allows(Some(" \"abc\" "), ETAG, T));
        assert!(!if_range_allows(Some("W/\"abc\""), ETAG, T));
        assert!(!if_range_allows(Some("\"abd\""), ETAG, T));
        assert!(!if_range_allows(Some("\"abc\", \"abc\""), ETAG, T));
        assert!(if_range_allows(Some(T_DATE), ETAG, T));
        assert!(!if_range_allows(Some(AFTER), ETAG, T));
        assert!(!if_range_allows(Some("garbage"), ETAG, T));
        assert!(!if_range_allows(Some(""), ETAG, T));
    }

    #[test]
    fn formats_dates() {
        assert_eq!(http_date(T), T_DATE);
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(-5), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(i64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(parse_date(&http_date(T)), Some(T));
    }

    fn opaque() -> impl Strategy<Value = String> {
        "[!#-~]{0,16}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn never_panics(
            a in "\\PC{0,24}", b in "\\PC{0,24}", cc in "\\PC{0,32}", d in "\\PC{0,32}",
            e in "\\PC{0,24}", secs in any::<i64>(), get_or_head in any::<bool>(),
        ) {
            let c = Conditions {
                if_match: Some(&a),
                if_none_match: Some(&b),
                if_modified_since: Some(&cc),
                if_unmodified_since: Some(&d),
            };
            let _ = evaluate(&c, &e, secs, get_or_head);
            let _ = evaluate(&c, "\"abc\"", secs, get_or_head);
            let _ = if_range_allows(Some(&a), &e, secs);
            let _ = if_range_allows(Some(&cc), "\"abc\"", secs);
            let _ = http_date(secs);
        }

        #[test]
        fn an_etag_matches_itself(o in opaque(), others in proptest::collection::vec(opaque(), 0..4), secs in any::<i64>()) {
            let etag = format!("\"{o}\"");
            let mut list: Vec<String> = others.iter().map(|x| format!("\"{x}\"")).collect();
            list.push(etag.clone());
            let list = list.join(", ");
            prop_assert_eq!(evaluate(&if_match(&etag), &etag, secs, true), Proceed);
            prop_assert_eq!(evaluate(&if_match(&list), &etag, secs, false), Proceed);
            prop_assert_eq!(evaluate(&if_none_match(&etag), &etag, secs, true), NotModified);
            prop_assert_eq!(evaluate(&if_none_match(&list), &etag, secs, true), NotModified);
            let weak = format!("W/{etag}");
            prop_assert_eq!(evaluate(&if_none_match(&weak), &etag, secs, true), NotModified);
            prop_assert!(if_range_allows(Some(&etag), &etag, secs));
        }

        #[test]
        fn dates_round_trip(secs in 0..=MAX_HTTP_DATE_SECS) {
            prop_assert_eq!(parse_date(&http_date(secs)), Some(secs));
            prop_assert!(if_range_allows(Some(&http_date(secs)), "\"x\"", secs));
        }
    }
}
