//! How a key's scheduler stores the writes that ended superseded: in sets,
//! one stored row per set, not one per write.
//!
//! Most writes to a hot key end superseded, in bursts: each step that
//! admits a batch's writes supersedes the batch's older writes and the one
//! held before, all by the same newest write. Storing each such write as a
//! row of its own, and the write that superseded it once more, costs one to
//! two rows written per superseded write (SQLite bills rows written). A
//! [`SupersededSet`] holds every write one step superseded by one write:
//! one row, whatever their number.
//!
//! A write is found again by its acceptance time (`at`, sealed in its id)
//! and a 53-bit [`fingerprint`] of its id. Sets are keyed by their first
//! member's time and span at most [`SET_SPAN_MS`], so a lookup reads only
//! the sets that start in the span before the write's time.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The widest span of acceptance times in one set. A lookup reads the sets
/// that start within this long before the write's time: shorter reads
/// fewer sets per lookup, longer splits fewer steps that supersede writes
/// accepted far apart (redeliveries) into several rows.
pub const SET_SPAN_MS: i64 = 60_000;

/// The most writes one set holds (a stored row stays far below the
/// runtime's 2 MB row limit: about 30 bytes per member). A queue batch
/// holds at most 100 messages, so one step rarely comes near it.
pub const SET_MAX_MEMBERS: usize = 1_000;

/// A 53-bit fingerprint of an id (the first bytes of its SHA-256): the
/// widest integer that crosses into the runtime's SQLite binding exactly
/// (JavaScript numbers). Two ids accepted in the same millisecond would
/// have to collide for a status to be misread.
pub fn fingerprint(id: &str) -> i64 {
    let h = Sha256::digest(id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    i64::from_be_bytes(b) & ((1i64 << 53) - 1)
}

/// One superseded write, as a set stores it (also one forgotten write id,
/// as [`crate::inline_statuses`] keeps it: `[at, fp]` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "(i64, i64)", into = "(i64, i64)")]
pub struct Member {
    /// When the write was accepted (ms since the epoch).
    pub at: i64,
    /// [`fingerprint`] of its id.
    pub fp: i64,
}

impl From<(i64, i64)> for Member {
    fn from((at, fp): (i64, i64)) -> Self {
        Member { at, fp }
    }
}

impl From<Member> for (i64, i64) {
    fn from(m: Member) -> Self {
        (m.at, m.fp)
    }
}

impl Member {
    /// The member for the write `id` accepted at `at`.
    pub fn of(id: &str, at: i64) -> Member {
        Member {
            at,
            fp: fingerprint(id),
        }
    }
}

/// Writes one step superseded by one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupersededSet {
    /// The id of the write that superseded them.
    pub by_id: String,
    /// Sorted by time, at most [`SET_MAX_MEMBERS`], spanning at most
    /// [`SET_SPAN_MS`].
    pub members: Vec<Member>,
}

impl SupersededSet {
    /// The first member's acceptance time: the set's stored key.
    pub fn first_at(&self) -> i64 {
        self.members.first().map_or(0, |m| m.at)
    }

    /// The last member's acceptance time.
    pub fn last_at(&self) -> i64 {
        self.members.last().map_or(0, |m| m.at)
    }

    /// The second half of the set's stored key: a fingerprint of what it
    /// holds, so two different sets that start at the same millisecond are
    /// two rows, and the same set stored twice (a step run again) is one.
    pub fn tag(&self) -> i64 {
        fingerprint(&format!("{}\n{}", self.by_id, self.encode_members()))
    }

    /// The members as stored: `at - first_at` and `fp` of each, as
    /// `dt:fp` joined by commas.
    pub fn encode_members(&self) -> String {
        let first = self.first_at();
        let mut out = String::with_capacity(self.members.len() * 24);
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!("{}:{}", m.at - first, m.fp));
        }
        out
    }
}

/// Whether the stored members `encoded` of a set starting at `first_at`
/// include `m`. A malformed entry matches nothing (a stored set is only
/// ever written by [`SupersededSet::encode_members`]).
pub fn holds(first_at: i64, encoded: &str, m: Member) -> bool {
    members(first_at, encoded).contains(&m)
}

/// The members stored as `encoded` in a set starting at `first_at`;
/// malformed entries are skipped (see [`holds`]).
pub fn members(first_at: i64, encoded: &str) -> Vec<Member> {
    encoded
        .split(',')
        .filter_map(|entry| {
            let (dt, fp) = entry.split_once(':')?;
            Some(Member {
                at: first_at + dt.parse::<i64>().ok()?,
                fp: fp.parse().ok()?,
            })
        })
        .collect()
}

/// Sorts the writes one step superseded, `(superseding id, member)`, into
/// sets: one per superseding write, split where a set would span more
/// than [`SET_SPAN_MS`] or hold more than [`SET_MAX_MEMBERS`]. A member
/// given twice is stored once.
pub fn sets(mut writes: Vec<(String, Member)>) -> Vec<SupersededSet> {
    writes.sort();
    writes.dedup();
    let mut out: Vec<SupersededSet> = Vec::new();
    for (by_id, m) in writes {
        match out.last_mut() {
            Some(set)
                if set.by_id == by_id
                    && set.members.len() < SET_MAX_MEMBERS
                    && m.at - set.first_at() <= SET_SPAN_MS =>
            {
                set.members.push(m);
            }
            _ => out.push(SupersededSet {
                by_id,
                members: vec![m],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(at: i64, fp: i64) -> Member {
        Member { at, fp }
    }

    #[test]
    fn one_step_by_one_write_is_one_set() {
        let s = sets(vec![
            ("b".into(), m(1_005, 7)),
            ("b".into(), m(1_000, 9)),
            ("b".into(), m(1_003, 1 << 52)),
        ]);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].first_at(), 1_000);
        assert_eq!(s[0].last_at(), 1_005);
        assert_eq!(s[0].encode_members(), "0:9,3:4503599627370496,5:7");
    }

    #[test]
    fn sets_split_by_superseding_write_span_and_size() {
        let s = sets(vec![
            ("a".into(), m(0, 1)),
            ("b".into(), m(0, 2)),
            ("a".into(), m(SET_SPAN_MS, 3)),
            ("a".into(), m(SET_SPAN_MS + 1, 4)),
        ]);
        let shape: Vec<(&str, usize)> = s
            .iter()
            .map(|s| (s.by_id.as_str(), s.members.len()))
            .collect();
        assert_eq!(shape, vec![("a", 2), ("a", 1), ("b", 1)]);
        let many: Vec<(String, Member)> = (0..SET_MAX_MEMBERS as i64 + 1)
            .map(|i| ("a".to_string(), m(i, i)))
            .collect();
        let s = sets(many);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].members.len(), SET_MAX_MEMBERS);
    }

    #[test]
    fn a_member_given_twice_is_stored_once() {
        let s = sets(vec![("a".into(), m(5, 1)), ("a".into(), m(5, 1))]);
        assert_eq!(s[0].members, vec![m(5, 1)]);
    }

    #[test]
    fn holds_matches_time_and_fingerprint_both() {
        let set = SupersededSet {
            by_id: "b".into(),
            members: vec![m(100, 42), m(130, 43)],
        };
        let enc = set.encode_members();
        assert!(holds(100, &enc, m(100, 42)));
        assert!(holds(100, &enc, m(130, 43)));
        assert!(!holds(100, &enc, m(130, 42)));
        assert!(!holds(100, &enc, m(101, 42)));
        assert!(!holds(100, "", m(100, 42)));
        assert!(!holds(100, "x:y,0", m(100, 42)));
    }

    #[test]
    fn tags_differ_by_content_and_supersessor() {
        let a = SupersededSet {
            by_id: "b".into(),
            members: vec![m(1, 2)],
        };
        let mut b = a.clone();
        b.by_id = "c".into();
        let mut c = a.clone();
        c.members.push(m(3, 4));
        assert_ne!(a.tag(), b.tag());
        assert_ne!(a.tag(), c.tag());
        assert_eq!(a.tag(), a.clone().tag());
        assert!(a.tag() >= 0 && a.tag() < 1 << 53);
    }

    proptest! {
        /// Every write given is found in exactly the sets of its
        /// superseding write, each set within its span and size bounds,
        /// and no write is found in a set it was not put in.
        #[test]
        fn every_write_is_found_in_its_set(
            writes in proptest::collection::vec((0u8..3, 0i64..200_000, 0i64..(1 << 53)), 0..300)
        ) {
            let given: Vec<(String, Member)> = writes
                .iter()
                .map(|(b, at, fp)| (format!("by{b}"), m(*at, *fp)))
                .collect();
            let stored = sets(given.clone());
            for s in &stored {
                prop_assert!(!s.members.is_empty());
                prop_assert_eq!(&members(s.first_at(), &s.encode_members()), &s.members);
                prop_assert!(s.members.len() <= SET_MAX_MEMBERS);
                prop_assert!(s.last_at() - s.first_at() <= SET_SPAN_MS);
            }
            for (by, member) in &given {
                let found: Vec<&SupersededSet> = stored
                    .iter()
                    .filter(|s| holds(s.first_at(), &s.encode_members(), *member))
                    .collect();
                prop_assert!(!found.is_empty());
                prop_assert!(found.iter().all(|s| &s.by_id == by
                    || given.contains(&(s.by_id.clone(), *member))));
                // A lookup reads the sets starting in the span before it.
                prop_assert!(found.iter().all(|s| s.first_at() <= member.at
                    && member.at - s.first_at() <= SET_SPAN_MS));
            }
        }
    }
}
