//! The `Range` request header of a read (RFC 9110 §14), single byte ranges
//! only.
//!
//! A read must decide, from the header and the object's size alone, whether
//! to send the whole object (`200`), a part of it (`206` with
//! `Content-Range`) or nothing (`416`). RFC 9110 asks a server to ignore a
//! `Range` it does not understand, so anything but exactly one well-formed
//! `bytes=` range is answered in full; multiple ranges are not supported.

/// What a read answers for a `Range` header and an object size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeDecision {
    /// No usable `Range`: send the whole object (`200`).
    Full,
    /// Send bytes `start..=end` (`206`).
    Partial { start: u64, end: u64 },
    /// The range lies wholly past the end of the object (`416`).
    Unsatisfiable,
}

/// A parsed single `range-spec`.
enum Spec {
    /// `first-last`, or `first-` when `last` is `None`.
    Int { first: u64, last: Option<u64> },
    /// `-suffix`.
    Suffix(u64),
}

/// Whether `c` is optional whitespace (`OWS`: space or horizontal tab).
fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Parses a non-empty run of ASCII digits (no sign, no spaces) that fits u64.
fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a header holding exactly one `bytes` range-spec.
fn parse(header: &str) -> Option<Spec> {
    let header = header.trim_matches(is_ows);
    let (unit, set) = header.split_once('=')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    // `1#range-spec` allows empty list elements and OWS around commas.
    let mut specs = set
        .split(',')
        .map(|s| s.trim_matches(is_ows))
        .filter(|s| !s.is_empty());
    let spec = specs.next()?;
    if specs.next().is_some() {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    if first.is_empty() {
        return parse_u64(last).map(Spec::Suffix);
    }
    let first = parse_u64(first)?;
    let last = if last.is_empty() {
        None
    } else {
        let last = parse_u64(last)?;
        if last < first {
            return None;
        }
        Some(last)
    };
    Some(Spec::Int { first, last })
}

/// Decides what to send for the `Range` header `header` of a read of an
/// object of `size` bytes.
#[must_use]
pub fn decide(header: Option<&str>, size: u64) -> RangeDecision {
    let Some(spec) = header.and_then(parse) else {
        return RangeDecision::Full;
    };
    let Some(last_byte) = size.checked_sub(1) else {
        return RangeDecision::Unsatisfiable;
    };
    match spec {
        Spec::Int { first, .. } if first > last_byte => RangeDecision::Unsatisfiable,
        Spec::Int { first, last } => RangeDecision::Partial {
            start: first,
            end: last.map_or(last_byte, |l| l.min(last_byte)),
        },
        Spec::Suffix(0) => RangeDecision::Unsatisfiable,
        Spec::Suffix(n) => RangeDecision::Partial {
            start: size.saturating_sub(n),
            end: last_byte,
        },
    }
}

impl RangeDecision {
    /// The `Content-Range` header value: `bytes a-b/size` for a part,
    /// `bytes */size` when unsatisfiable, none for the whole object.
    #[must_use]
    pub fn content_range(&self, size: u64) -> Option<String> {
        match self {
            RangeDecision::Full => None,
            RangeDecision::Partial { start, end } => Some(format!("bytes {start}-{end}/{size}")),
            RangeDecision::Unsatisfiable => Some(format!("bytes */{size}")),
        }
    }

    /// How many bytes of an object of `size` bytes this decision sends.
    #[must_use]
    pub fn len(&self, size: u64) -> u64 {
        match self {
            RangeDecision::Full => size,
            RangeDecision::Partial { start, end } => end.saturating_sub(*start).saturating_add(1),
            RangeDecision::Unsatisfiable => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use RangeDecision::{Full, Partial, Unsatisfiable};

    fn d(header: &str, size: u64) -> RangeDecision {
        decide(Some(header), size)
    }

    #[test]
    fn closed_ranges() {
        assert_eq!(d("bytes=0-4", 10), Partial { start: 0, end: 4 });
        assert_eq!(d("bytes=3-3", 10), Partial { start: 3, end: 3 });
        assert_eq!(d("bytes=5-100", 10), Partial { start: 5, end: 9 });
        assert_eq!(d("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(d("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(
            d("bytes=0-18446744073709551615", 10),
            Partial { start: 0, end: 9 }
        );
    }

    #[test]
    fn open_ranges() {
        assert_eq!(d("bytes=4-", 10), Partial { start: 4, end: 9 });
        assert_eq!(d("bytes=0-", 1), Partial { start: 0, end: 0 });
        assert_eq!(d("bytes=10-", 10), Unsatisfiable);
        assert_eq!(d("bytes=0-", 0), Unsatisfiable);
    }

    #[test]
    fn suffix_ranges() {
        assert_eq!(d("bytes=-3", 10), Partial { start: 7, end: 9 });
        assert_eq!(d("bytes=-30", 10), Partial { start: 0, end: 9 });
        assert_eq!(d("bytes=-0", 10), Unsatisfiable);
        assert_eq!(d("bytes=-5", 0), Unsatisfiable);
    }

    #[test]
    fn tolerated_syntax() {
        assert_eq!(d("Bytes=0-1", 10), Partial { start: 0, end: 1 });
        assert_eq!(d("BYTES=0-1", 10), Partial { start: 0, end: 1 });
        assert_eq!(d("  bytes=0-1\t", 10), Partial { start: 0, end: 1 });
        assert_eq!(d("bytes= 0-1 ", 10), Partial { start: 0, end: 1 });
        assert_eq!(d("bytes=0-1, ", 10), Partial { start: 0, end: 1 });
    }

    #[test]
    fn ignored_headers() {
        for header in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=5-4",
            "bytes=0-1,3-4",
            "bytes=0-1, 0-1",
            "items=0-1",
            "bytes =0-1",
            "bytes=0 -1",
            "bytes=0- 1",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=--1",
            "bytes=1-2-3",
            "bytes=18446744073709551616-",
            "bytes=-18446744073709551616",
            "bytes=0-18446744073709551616",
            "bytes=0x1-2",
            "bytes=½-1",
        ] {
            assert_eq!(d(header, 10), Full, "{header:?}");
        }
        assert_eq!(decide(None, 10), Full);
    }

    #[test]
    fn content_range_and_len() {
        assert_eq!(Full.content_range(10), None);
        assert_eq!(Full.len(10), 10);
        let part = Partial { start: 2, end: 5 };
        assert_eq!(part.content_range(10).as_deref(), Some("bytes 2-5/10"));
        assert_eq!(part.len(10), 4);
        assert_eq!(
            Unsatisfiable.content_range(10).as_deref(),
            Some("bytes */10")
        );
        assert_eq!(Unsatisfiable.len(10), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn never_panics(header in "\\PC{0,30}", size in any::<u64>()) {
            let _ = decide(Some(&header), size);
        }

        #[test]
        fn partials_lie_inside_the_object(
            header in "(bytes|Bytes)= ?[0-9]{0,20}-[0-9]{0,20}",
            size in prop_oneof![0u64..64, any::<u64>()],
        ) {
            if let Partial { start, end } = decide(Some(&header), size) {
                prop_assert!(start <= end);
                prop_assert!(end < size);
                prop_assert_eq!(Partial { start, end }.len(size), end - start + 1);
            }
        }

        #[test]
        fn closed_ranges_round_trip(size in 1u64..1_000_000, a in any::<u64>(), b in any::<u64>()) {
            let (a, b) = (a % size, b % size);
            let (start, end) = (a.min(b), a.max(b));
            let header = format!("bytes={start}-{end}");
            let decision = decide(Some(&header), size);
            prop_assert_eq!(decision, Partial { start, end });
            prop_assert_eq!(decision.content_range(size), Some(format!("bytes {start}-{end}/{size}")));
        }
    }
}
