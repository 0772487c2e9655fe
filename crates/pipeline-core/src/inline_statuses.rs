//! Statuses a key's scheduler keeps inside its one document instead of in
//! rows of their own.
//!
//! SQLite bills rows written, not bytes, and every step of the scheduler
//! rewrites its document row anyway. A status kept in that document costs
//! no row written when its write is held and none when it ends, and a key
//! whose statuses all fit never creates its status table (creating a table
//! writes rows too). The table layout wrote a row each time a write was
//! held and again when it ended.
//!
//! The document is read and written by every step, so it stays small: at
//! most [`MAX_ENTRIES`] statuses and [`MAX_BYTES`] of them (a held write's
//! message, and so an inline body, counts). Beyond that the oldest move to
//! the table, ended ones first: one row written, once. A status the table
//! already holds stays there (objects created by earlier versions keep
//! theirs), and a superseded write kept compactly
//! ([`crate::superseded`]) leaves the document.
//!
//! A status that expires in the document leaves a fingerprint of its id
//! there ([`crate::superseded::Member`], about 30 bytes): the key must
//! remember the id as seen longer than its status is shown (see
//! [`crate::engine::Op::Prune`]), and the document is rewritten by the
//! prune anyway, so remembering it costs no row. At most
//! [`MAX_FORGOTTEN`] are kept; past that, an expiring status moves to the
//! table instead, which keeps it until the id is no longer seen.
//!
//! [`place`] decides; the store runs what it returns for the table.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::engine::{Op, UploadRecord};
use crate::message::WriteMessage;
use crate::superseded::Member;

/// The most statuses the document holds. More: fewer rows written by keys
/// that end many writes a day, a larger document for every step to read
/// and write. Sixteen holds every status of a key written up to sixteen
/// times a day, and a hot key's statuses for its last sixteen commits.
pub const MAX_ENTRIES: usize = 16;

/// The most bytes (JSON) of statuses the document holds: a held write's
/// message with an inline body larger than this goes to the table at once.
/// More: fewer rows for keys with bodies of tens of KB, more bytes parsed
/// and written per step.
pub const MAX_BYTES: usize = 32 * 1024;

/// The most fingerprints of expired statuses the document keeps. A key
/// whose statuses expire in the document is written at most about
/// [`MAX_ENTRIES`] times per status retention, so with the default
/// windows (24 h of statuses, 9 days of seen ids) it keeps some 150.
/// More: a larger document for every step; fewer: keys with short status
/// retentions move more expiring statuses to the table (a row written,
/// and deleted later).
pub const MAX_FORGOTTEN: usize = 256;

/// One status kept in the document, with its held write's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InlineStatus {
    pub record: UploadRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<WriteMessage>,
}

impl InlineStatus {
    fn bytes(&self) -> usize {
        serde_json::to_string(self).map_or(usize::MAX, |s| s.len())
    }
}

/// What [`place`] leaves for the table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Placed {
    /// The step's operations the table runs: those of statuses it holds,
    /// compactly stored superseded writes, everything that is not a
    /// status, and the statuses moved out of the document (a row and its
    /// message each).
    pub table: Vec<Op>,
    /// The document's statuses changed: it must be written.
    pub changed: bool,
}

/// Applies one step's `ops` (without its `PutMeta`) to the document's
/// statuses `inline`, and returns what the table runs.
///
/// `in_table(id)`: whether the table holds a full row for `id` (asked only
/// for ids the step writes a full status of and the document lacks).
/// `compact(record)`: whether a status is stored compactly
/// ([`crate::superseded`]) rather than as a full row.
pub fn place(
    inline: &mut Vec<InlineStatus>,
    forgotten: &mut Vec<Member>,
    ops: Vec<Op>,
    in_table: impl Fn(&str) -> bool,
    compact: impl Fn(&UploadRecord) -> bool,
) -> Placed {
    let mut here: HashSet<String> = inline.iter().map(|e| e.record.id.clone()).collect();
    for op in &ops {
        if let Op::PutUpload(r) = op {
            if !compact(r) && !here.contains(&r.id) && !in_table(&r.id) {
                here.insert(r.id.clone());
            }
        }
    }
    let at = |inline: &[InlineStatus], id: &str| inline.iter().position(|e| e.record.id == id);
    let mut out = Placed::default();
    // Messages put before their write's status in the same step.
    let mut early: HashMap<String, WriteMessage> = HashMap::new();
    for op in ops {
        match op {
            Op::PutUpload(r) if compact(&r) => {
                if let Some(i) = at(inline, &r.id) {
                    inline.remove(i);
                    out.changed = true;
                }
                out.table.push(Op::PutUpload(r));
            }
            Op::PutUpload(r) if here.contains(&r.id) => {
                match at(inline, &r.id) {
                    Some(i) => inline[i].record = r,
                    None => {
                        let message = early.remove(&r.id);
                        inline.push(InlineStatus { record: r, message });
                    }
                }
                out.changed = true;
            }
            Op::PutBody(m) if here.contains(&m.id) => {
                match at(inline, &m.id) {
                    Some(i) => inline[i].message = Some(m),
                    None => {
                        early.insert(m.id.clone(), m);
                    }
                }
                out.changed = true;
            }
            Op::DeleteBody(id) if here.contains(&id) => {
                if let Some(i) = at(inline, &id) {
                    inline[i].message = None;
                }
                early.remove(&id);
                out.changed = true;
            }
            Op::Prune {
                uploads_before,
                forget_before,
                ..
            } => {
                let known = forgotten.len();
                forgotten.retain(|m| m.at >= forget_before);
                out.changed |= forgotten.len() != known;
                let (expired, kept): (Vec<_>, Vec<_>) =
                    std::mem::take(inline).into_iter().partition(|e| {
                        e.record.state.is_terminal() && e.record.updated_ms < uploads_before
                    });
                *inline = kept;
                for e in expired {
                    out.changed = true;
                    let m = Member::of(&e.record.id, e.record.accepted_ms);
                    if forgotten.contains(&m) {
                        continue;
                    }
                    if forgotten.len() < MAX_FORGOTTEN {
                        forgotten.push(m);
                    } else {
                        // The table keeps it until `forget_before` passes.
                        out.table.push(Op::PutUpload(e.record));
                    }
                }
                out.table.push(op);
            }
            other => out.table.push(other),
        }
    }
    // A message whose status left the document earlier in the step (the
    // engine never orders a step so): the table stores it with its row, or
    // fails the step for want of one, rather than drop it.
    out.table.extend(early.into_values().map(Op::PutBody));
    spill(inline, &mut out);
    out
}

/// Moves statuses to the table until the document is within its bounds:
/// ended ones first (the least recently changed first), then held ones
/// (the oldest accepted first).
fn spill(inline: &mut Vec<InlineStatus>, out: &mut Placed) {
    let mut sizes: Vec<usize> = inline.iter().map(InlineStatus::bytes).collect();
    while inline.len() > MAX_ENTRIES || sizes.iter().sum::<usize>() > MAX_BYTES {
        let Some(i) = (0..inline.len()).min_by_key(|&i| {
            let r = &inline[i].record;
            if r.state.is_terminal() {
                (0, r.updated_ms)
            } else {
                (1, r.accepted_ms)
            }
        }) else {
            break;
        };
        let e = inline.remove(i);
        sizes.remove(i);
        out.table.push(Op::PutUpload(e.record));
        if let Some(m) = e.message {
            out.table.push(Op::PutBody(m));
        }
        out.changed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{new_record, Via};
    use crate::id::WriteOp;
    use crate::message::BodyRef;
    use crate::status::UploadState;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn record(n: u32, state: UploadState, at: i64) -> UploadRecord {
        new_record(
            &format!("id-{n}"),
            at,
            10,
            WriteOp::Put,
            Via::Queue,
            state,
            at,
        )
    }

    fn message(n: u32, body_bytes: usize) -> WriteMessage {
        WriteMessage {
            v: 1,
            id: format!("id-{n}"),
            key: "k".into(),
            accepted_ms: i64::from(n),
            op: WriteOp::Put,
            size: body_bytes as u64,
            meta: Default::default(),
            body: BodyRef::Inline {
                data: "A".repeat(body_bytes),
            },
            idempotency_key: None,
            condition: None,
            callback_url: None,
        }
    }

    fn superseded(r: &UploadRecord) -> bool {
        r.state == UploadState::Superseded
    }

    /// The table as a map: id to (status, message); runs what `place`
    /// leaves for it as the SQLite store does (a message put or dropped in
    /// the step that writes its status row rides in that row's write).
    #[derive(Default)]
    struct Table(BTreeMap<String, (UploadRecord, Option<WriteMessage>)>);

    impl Table {
        fn run(&mut self, ops: Vec<Op>) {
            let rows: HashSet<String> = ops
                .iter()
                .filter_map(|op| match op {
                    Op::PutUpload(r) if !superseded(r) => Some(r.id.clone()),
                    _ => None,
                })
                .collect();
            let mut with_row: HashMap<String, Option<WriteMessage>> = HashMap::new();
            for op in &ops {
                match op {
                    Op::PutBody(m) if rows.contains(&m.id) => {
                        with_row.insert(m.id.clone(), Some(m.clone()));
                    }
                    Op::DeleteBody(id) if rows.contains(id) => {
                        with_row.insert(id.clone(), None);
                    }
                    _ => {}
                }
            }
            for op in ops {
                match op {
                    Op::PutUpload(r) if superseded(&r) => {
                        self.0.remove(&r.id);
                    }
                    Op::PutUpload(r) => {
                        let kept = self.0.remove(&r.id).and_then(|(_, m)| m);
                        let m = with_row.get(&r.id).cloned().unwrap_or(kept);
                        self.0.insert(r.id.clone(), (r, m));
                    }
                    Op::PutBody(m) if rows.contains(&m.id) => {}
                    Op::DeleteBody(id) if rows.contains(&id) => {}
                    Op::PutBody(m) => {
                        let e = self.0.get_mut(&m.id).expect("a message without its row");
                        e.1 = Some(m);
                    }
                    Op::DeleteBody(id) => {
                        if let Some(e) = self.0.get_mut(&id) {
                            e.1 = None;
                        }
                    }
                    // As the SQLite store: a row stays until its id is
                    // no longer seen.
                    Op::Prune { forget_before, .. } => self.0.retain(|_, (r, _)| {
                        !(r.state.is_terminal() && r.updated_ms < forget_before)
                    }),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn a_write_held_and_committed_writes_no_status_row() {
        let mut inline = Vec::new();
        let held = place(
            &mut inline,
            &mut Vec::new(),
            vec![
                Op::PutBody(message(1, 100)),
                Op::PutUpload(record(1, UploadState::Scheduled, 5)),
            ],
            |_| false,
            superseded,
        );
        assert_eq!((held.table, held.changed), (vec![], true));
        assert!(inline[0].message.is_some());
        let ended = place(
            &mut inline,
            &mut Vec::new(),
            vec![
                Op::PutUpload(record(1, UploadState::Committed, 6)),
                Op::DeleteBody("id-1".into()),
            ],
            |_| false,
            superseded,
        );
        assert_eq!((ended.table, ended.changed), (vec![], true));
        assert_eq!(inline[0].record.state, UploadState::Committed);
        assert_eq!(inline[0].message, None);
    }

    #[test]
    fn a_message_whose_status_left_the_document_in_the_step_is_not_dropped() {
        let mut inline = Vec::new();
        let m = message(1, 10);
        place(
            &mut inline,
            &mut Vec::new(),
            vec![Op::PutUpload(record(1, UploadState::Committed, 5))],
            |_| false,
            superseded,
        );
        let placed = place(
            &mut inline,
            &mut Vec::new(),
            vec![
                Op::Prune {
                    uploads_before: 10,
                    forget_before: 0,
                    idem_before: 0,
                },
                Op::PutBody(m.clone()),
            ],
            |_| false,
            superseded,
        );
        assert!(inline.is_empty());
        assert_eq!(placed.table.last(), Some(&Op::PutBody(m)));
    }

    #[test]
    fn a_status_the_table_holds_stays_there() {
        let mut inline = Vec::new();
        let r = record(1, UploadState::Committed, 6);
        let placed = place(
            &mut inline,
            &mut Vec::new(),
            vec![Op::PutUpload(r.clone()), Op::DeleteBody("id-1".into())],
            |id| id == "id-1",
            superseded,
        );
        assert_eq!(
            placed.table,
            vec![Op::PutUpload(r), Op::DeleteBody("id-1".into())]
        );
        assert!(!placed.changed && inline.is_empty());
    }

    #[test]
    fn the_oldest_ended_status_moves_out_first() {
        let mut inline = Vec::new();
        let mut ops = vec![
            Op::PutBody(message(0, 10)),
            Op::PutUpload(record(0, UploadState::Scheduled, 0)),
        ];
        for n in 1..=MAX_ENTRIES as u32 {
            ops.push(Op::PutUpload(record(
                n,
                UploadState::Committed,
                100 - i64::from(n),
            )));
        }
        let placed = place(&mut inline, &mut Vec::new(), ops, |_| false, superseded);
        assert_eq!(inline.len(), MAX_ENTRIES);
        // The least recently changed ended one, not the older held write.
        assert_eq!(
            placed.table,
            vec![Op::PutUpload(record(
                MAX_ENTRIES as u32,
                UploadState::Committed,
                100 - MAX_ENTRIES as i64
            ))]
        );
    }

    #[test]
    fn a_message_too_large_for_the_document_goes_to_the_table_with_its_row() {
        let mut inline = Vec::new();
        let m = message(1, MAX_BYTES);
        let r = record(1, UploadState::Scheduled, 5);
        let placed = place(
            &mut inline,
            &mut Vec::new(),
            vec![Op::PutBody(m.clone()), Op::PutUpload(r.clone())],
            |_| false,
            superseded,
        );
        assert!(inline.is_empty());
        assert_eq!(placed.table, vec![Op::PutUpload(r), Op::PutBody(m)]);
    }

    /// One status change of a step, over a few ids.
    #[derive(Debug, Clone)]
    enum Change {
        Hold { n: u32, body: usize },
        End { n: u32, state: u8 },
        Prune { before: i64 },
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            (0u32..40, 0usize..6000).prop_map(|(n, body)| Change::Hold { n, body }),
            (0u32..40, 0u8..3).prop_map(|(n, state)| Change::End { n, state }),
            (0i64..400).prop_map(|before| Change::Prune { before }),
        ]
    }

    /// How far behind the status window the seen-id window ends, in the
    /// property test's time (steps are 10 apart).
    const FORGET_LAG: i64 = 100;

    proptest! {
        /// Whatever the steps, the document and the table together hold
        /// exactly what one flat map of statuses would (status and
        /// message of every id), except that an expired status may be
        /// gone: then the document remembers its id (a fingerprint) until
        /// the seen-id window passes it. The document stays within its
        /// bounds and holds no expired status, and an id is never in both.
        #[test]
        fn document_and_table_together_hold_what_a_flat_map_would(
            steps in proptest::collection::vec(proptest::collection::vec(change(), 1..5), 1..40),
            table_first in proptest::collection::btree_set(0u32..40, 0..5),
        ) {
            let mut inline = Vec::new();
            let mut forgotten = Vec::new();
            let mut table = Table::default();
            let mut flat: BTreeMap<String, (UploadRecord, Option<WriteMessage>)> = BTreeMap::new();
            // Expired statuses (which may be gone) and the seen-id window.
            let mut expired: BTreeMap<String, UploadRecord> = BTreeMap::new();
            let mut forget_from = i64::MIN;
            // Statuses an earlier version left in the table.
            for n in &table_first {
                let r = record(*n, UploadState::Scheduled, 0);
                table.0.insert(r.id.clone(), (r.clone(), None));
                flat.insert(r.id.clone(), (r, None));
            }
            for (t, step) in steps.into_iter().enumerate() {
                let now = 10 * (t as i64 + 1);
                let mut ops = Vec::new();
                for c in step {
                    match c {
                        Change::Hold { n, body } => {
                            let r = record(n, UploadState::Scheduled, now);
                            let m = message(n, body);
                            expired.remove(&r.id);
                            flat.insert(r.id.clone(), (r.clone(), Some(m.clone())));
                            ops.push(Op::PutBody(m));
                            ops.push(Op::PutUpload(r));
                        }
                        Change::End { n, state } => {
                            let state = [UploadState::Committed, UploadState::Failed, UploadState::Superseded][state as usize];
                            let r = record(n, state, now);
                            expired.remove(&r.id);
                            if state == UploadState::Superseded {
                                flat.remove(&r.id);
                            } else {
                                flat.insert(r.id.clone(), (r.clone(), None));
                            }
                            ops.push(Op::PutUpload(r));
                            ops.push(Op::DeleteBody(format!("id-{n}")));
                        }
                        Change::Prune { before } => {
                            let forget_before = before - FORGET_LAG;
                            forget_from = forget_from.max(forget_before);
                            flat.retain(|id, (r, _)| {
                                let gone = r.state.is_terminal() && r.updated_ms < before;
                                if gone {
                                    expired.insert(id.clone(), r.clone());
                                }
                                !gone
                            });
                            ops.push(Op::Prune { uploads_before: before, forget_before, idem_before: 0 });
                        }
                    }
                }
                let held: HashSet<String> = table.0.keys().cloned().collect();
                let placed = place(&mut inline, &mut forgotten, ops, |id| held.contains(id), superseded);
                table.run(placed.table);
                prop_assert!(inline.len() <= MAX_ENTRIES);
                prop_assert!(forgotten.len() <= MAX_FORGOTTEN);
                prop_assert!(inline.iter().map(InlineStatus::bytes).sum::<usize>() <= MAX_BYTES);
                let mut both: BTreeMap<String, (UploadRecord, Option<WriteMessage>)> = BTreeMap::new();
                for (id, e) in &table.0 {
                    if !expired.contains_key(id) {
                        both.insert(id.clone(), e.clone());
                    }
                }
                for e in &inline {
                    prop_assert!(!table.0.contains_key(&e.record.id), "{} in both", e.record.id);
                    prop_assert!(!expired.contains_key(&e.record.id), "{} expired in the document", e.record.id);
                    both.insert(e.record.id.clone(), (e.record.clone(), e.message.clone()));
                }
                prop_assert_eq!(&both, &flat);
                // Every expired id inside the seen-id window is still seen:
                // its row in the table, or its fingerprint.
                for (id, r) in &expired {
                    if r.accepted_ms < forget_from {
                        continue;
                    }
                    let row = table.0.get(id).map(|(t, _)| t);
                    let fp = forgotten.contains(&Member::of(id, r.accepted_ms));
                    prop_assert!(row == Some(r) || fp, "{} expired and forgotten too early", id);
                }
            }
        }
    }

    /// One step over the document (no table rows held).
    fn step(inline: &mut Vec<InlineStatus>, forgotten: &mut Vec<Member>, ops: Vec<Op>) -> Placed {
        place(inline, forgotten, ops, |_| false, superseded)
    }

    fn prune(uploads_before: i64, forget_before: i64) -> Op {
        Op::Prune {
            uploads_before,
            forget_before,
            idem_before: 0,
        }
    }

    #[test]
    fn past_its_fingerprints_the_document_moves_expiring_statuses_to_the_table() {
        let mut inline = Vec::new();
        let mut forgotten: Vec<Member> = (0..MAX_FORGOTTEN as i64)
            .map(|i| Member {
                at: 1000 + i,
                fp: i,
            })
            .collect();
        let r = record(1, UploadState::Committed, 5);
        step(&mut inline, &mut forgotten, vec![Op::PutUpload(r.clone())]);
        let placed = step(&mut inline, &mut forgotten, vec![prune(10, 0)]);
        assert!(inline.is_empty());
        assert_eq!(forgotten.len(), MAX_FORGOTTEN);
        assert_eq!(placed.table, vec![Op::PutUpload(r), prune(10, 0)]);
        // Once older fingerprints leave the window, the next one fits.
        let r2 = record(2, UploadState::Committed, 6);
        step(&mut inline, &mut forgotten, vec![Op::PutUpload(r2.clone())]);
        let placed = step(&mut inline, &mut forgotten, vec![prune(10, 1100)]);
        assert_eq!(placed.table, vec![prune(10, 1100)]);
        assert!(forgotten.contains(&Member::of(&r2.id, r2.accepted_ms)));
        assert_eq!(forgotten.len(), MAX_FORGOTTEN - 100 + 1);
    }
}
