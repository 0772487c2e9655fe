//! The key scheduler's storage: `pipeline_core::engine::Store` over the
//! Durable Object's SQLite database.
//!
//! Tables: `kv` (the engine's `Meta` document under `meta`, with the
//! statuses it keeps), `uploads` (the statuses the document does not keep:
//! one row per id, with no secondary index; a held write's message, and so
//! its body, in the row's `message` column), `superseded_sets` (superseded
//! writes, compactly: see below), `garbage` (staged bodies to delete),
//! `idempotency` (indexed by creation for pruning) and `outbox` (events
//! owed to the webhook and event queues). Every step's changes land in one
//! `transactionSync`: all of them or none. Every table but `kv` is created
//! by the first transaction that inserts into it ([`LazyTable`]): a key
//! that never needs one never pays the rows written to create it.
//!
//! Statuses live in the document first ([`pipeline_core::inline_statuses`]):
//! every step rewrites that one row anyway and SQLite bills rows, not
//! bytes, so holding a write and ending it cost no row of their own, and a
//! key written a few times a day never creates `uploads`. The oldest move
//! to `uploads` once the document holds sixteen or 32 KB of them. Objects
//! created by earlier versions keep the rows they have there.
//!
//! An id stays *seen* for the seen-id window (`SEEN_IDS_TTL_SECONDS`),
//! longer than its status is shown, so a late duplicate is told from a
//! write delivered late: a status that expires in the document leaves a
//! fingerprint of its id there (the prune rewrites the document anyway);
//! rows in `uploads` and `superseded_sets` stay until the window passes
//! (deleted once either way, so no row more), and the engine hides their
//! statuses once expired.
//!
//! A held write's message lives with its status, not in a table of its
//! own. Objects created by earlier versions kept messages in a `bodies`
//! table; they gain the column, and what their `bodies` table still holds
//! is read and deleted there.
//!
//! Most writes to a hot key end superseded, and every status is kept for
//! the retention window: at 1,000 writes/s on one key, a full row per id
//! (estimated, not measured: ids of about 100 characters stored twice plus
//! an index, some 350 to 400 bytes) would pass the object's 10 GB within a
//! day, and a row per write is a row written per write. The writes one step
//! supersedes by one write are therefore one row of `superseded_sets`
//! ([`pipeline_core::superseded`]): the superseding id once, and each
//! superseded write as its acceptance time and a 53-bit fingerprint of its
//! id (both known to every reader: the id's sealed claims carry the time).
//! Objects created by earlier versions kept one row per superseded write in
//! `superseded`, pointing into `supersessors`; those rows are still read
//! and pruned there, and new ones go to `superseded_sets`.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use pipeline_core::engine::{
    Callback, IdemRecord, Meta, Op, OutboxEntry, Prunable, Store, StoreError, UploadRecord, Via,
};
use pipeline_core::error::ApiError;
use pipeline_core::id::WriteOp;
use pipeline_core::inline_statuses::{self, InlineStatus};
use pipeline_core::message::WriteMessage;
use pipeline_core::status::{CallbackState, UploadState};
use pipeline_core::superseded::{self, Member, SupersededSet, SET_SPAN_MS};
use serde::{Deserialize, Serialize};
use worker::{SqlStorage, SqlStorageValue};

use super::scheduler_io::SchedulerHost;
use super::sql::{exec, first, get_doc, note, put_doc, rows};

/// The `kv` entry of the engine's document.
const META: &str = "meta";

/// The table every scheduler writes from its first write on, created
/// `WITHOUT ROWID` (a row keyed by text is then one b-tree entry, not a
/// table row plus an index entry: one row written instead of two per
/// insert, and SQLite bills rows written). Objects created by earlier
/// versions keep theirs, which answers the same statements.
const CORE_SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID";

/// The status table, created by the first step that stores a status in it
/// ([`LazyTable::Uploads`]; most statuses live in the document instead).
const UPLOADS_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS uploads (id TEXT PRIMARY KEY, \
     accepted_ms INTEGER NOT NULL, size INTEGER NOT NULL, op TEXT NOT NULL, state TEXT NOT NULL, \
     committed_ms INTEGER, etag TEXT, superseded_by TEXT, error_code TEXT, error_message TEXT, \
     updated_ms INTEGER NOT NULL, via TEXT NOT NULL DEFAULT 'queue', staged_key TEXT, \
     current_etag TEXT, callback_url TEXT, callback_state TEXT, \
     callback_attempts INTEGER NOT NULL DEFAULT 0, message TEXT) WITHOUT ROWID";

/// No index finds expired statuses: one would cost a row written each time
/// a write ends (a second row per commit), while the prune that reads every
/// row instead runs at most once per `pipeline_core::engine::prune_spacing`
/// and the oldest terminal time is kept in memory ([`OldestTerminal`]);
/// rows read cost a thousandth of rows written. Objects created by earlier
/// versions had one of these two indexes; dropping it is a schema change,
/// once.
const DROPPED_INDEXES: [&str; 2] = [
    "DROP INDEX IF EXISTS uploads_terminal",
    "DROP INDEX IF EXISTS uploads_by_update",
];

/// Tables a scheduler creates in the transaction that first writes to
/// them. Most keys never need some of them (no `Idempotency-Key`, no
/// staged body, no events, nothing superseded), and creating a table
/// writes rows too: a new key's object used to create all of them, about
/// 17 rows written before its first write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LazyTable {
    /// `uploads`: the statuses the document does not hold
    /// ([`pipeline_core::inline_statuses`]).
    Uploads,
    /// `superseded_sets`: superseded writes, compactly.
    Superseded,
    /// Staged bodies to delete.
    Garbage,
    /// `Idempotency-Key`s and their index.
    Idempotency,
    /// Events owed to the webhook and event queues.
    Outbox,
}

impl LazyTable {
    const ALL: [LazyTable; 5] = [
        LazyTable::Uploads,
        LazyTable::Superseded,
        LazyTable::Garbage,
        LazyTable::Idempotency,
        LazyTable::Outbox,
    ];

    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The table `sqlite_master` shows once it exists (the statements
    /// below create it last, in one transaction with the rest).
    fn name(self) -> &'static str {
        match self {
            LazyTable::Uploads => "uploads",
            LazyTable::Superseded => "superseded_sets",
            LazyTable::Garbage => "garbage",
            LazyTable::Idempotency => "idempotency",
            LazyTable::Outbox => "outbox",
        }
    }

    fn schema(self) -> &'static [&'static str] {
        match self {
            LazyTable::Uploads => &[UPLOADS_SCHEMA],
            LazyTable::Superseded => &[
                "CREATE TABLE IF NOT EXISTS superseded_sets (first_at INTEGER NOT NULL, \
                 tag INTEGER NOT NULL, by_id TEXT NOT NULL, members TEXT NOT NULL, \
                 PRIMARY KEY (first_at, tag)) WITHOUT ROWID",
            ],
            LazyTable::Garbage => {
                &["CREATE TABLE IF NOT EXISTS garbage (staged_key TEXT PRIMARY KEY) WITHOUT ROWID"]
            }
            LazyTable::Idempotency => &[
                "CREATE TABLE IF NOT EXISTS idempotency (idem_key TEXT PRIMARY KEY, id TEXT NOT NULL, \
                 created_ms INTEGER NOT NULL) WITHOUT ROWID",
                "CREATE INDEX IF NOT EXISTS idempotency_by_creation ON idempotency (created_ms)",
            ],
            LazyTable::Outbox => &["CREATE TABLE IF NOT EXISTS outbox (n INTEGER PRIMARY KEY \
                 AUTOINCREMENT, msg_id TEXT NOT NULL UNIQUE, entry TEXT NOT NULL)"],
        }
    }

    /// The lazy table `op` inserts into, if any (deletes from a table
    /// that does not exist are skipped instead).
    fn written_by(op: &Op) -> Option<LazyTable> {
        match op {
            Op::PutUpload(r) if compact(r) => Some(LazyTable::Superseded),
            Op::PutUpload(_) => Some(LazyTable::Uploads),
            Op::PutOutbox(_) => Some(LazyTable::Outbox),
            Op::AddGarbage(_) => Some(LazyTable::Garbage),
            Op::PutIdem(_) => Some(LazyTable::Idempotency),
            _ => None,
        }
    }
}

/// The table objects created by earlier versions kept held writes'
/// messages in; never created now.
const LEGACY_BODIES_TABLE: &str = "bodies";

/// The [`Tables`] bit of [`LEGACY_BODIES_TABLE`] (above every
/// [`LazyTable`]'s).
const LEGACY_BODIES: u8 = 1 << 7;

/// The table objects created by earlier versions kept superseded writes
/// in, one row each (`at`, `fp`, `by_n`), with their superseding ids in
/// `supersessors` (`n`, `id`, `last_ms`); created by the test route that
/// stands for such an object, read and pruned, never written otherwise.
const LEGACY_SUPERSEDED_TABLE: &str = "superseded";

/// The [`Tables`] bit of [`LEGACY_SUPERSEDED_TABLE`].
const LEGACY_SUPERSEDED: u8 = 1 << 6;

/// Which [`LazyTable`]s exist (and whether [`LEGACY_BODIES_TABLE`] does),
/// as this instance knows it: read from
/// `sqlite_master` at first use, updated after each transaction that
/// created one, and read again after a transaction failed (its creations
/// rolled back with it).
#[derive(Debug, Default)]
pub struct Tables(std::cell::Cell<Option<u8>>);

impl Tables {
    /// The set of existing lazy tables.
    ///
    /// # Errors
    /// [`StoreError`] from SQLite.
    fn present(&self, sql: &SqlStorage) -> Result<u8, StoreError> {
        if let Some(bits) = self.0.get() {
            return Ok(bits);
        }
        #[derive(Deserialize)]
        struct NameRow {
            name: String,
        }
        let names = rows::<NameRow>(
            sql,
            "SELECT name FROM sqlite_master WHERE type = 'table'",
            vec![],
        )
        .map_err(err)?;
        let has = |table: &str| names.iter().any(|n| n.name == table);
        let legacy = if has(LEGACY_BODIES_TABLE) {
            LEGACY_BODIES
        } else {
            0
        } | if has(LEGACY_SUPERSEDED_TABLE) {
            LEGACY_SUPERSEDED
        } else {
            0
        };
        let bits = LazyTable::ALL
            .iter()
            .filter(|t| names.iter().any(|n| n.name == t.name()))
            .fold(legacy, |acc, t| acc | t.bit());
        self.0.set(Some(bits));
        Ok(bits)
    }

    fn added(&self, bits: u8) {
        if let Some(have) = self.0.get() {
            self.0.set(Some(have | bits));
        }
    }

    fn forget(&self) {
        self.0.set(None);
    }
}

/// The oldest `updated_ms` of a terminal status row, as this instance knows
/// it: read (every row: there is no index on it) at first use and after
/// each prune, then lowered by each step that ends a write, and read again
/// after a transaction failed. Unknown: `None`; known: `Some(oldest)`.
#[derive(Debug, Default)]
pub struct OldestTerminal(std::cell::Cell<Option<Option<i64>>>);

impl OldestTerminal {
    fn get(&self, sql: &SqlStorage, have: u8) -> Result<Option<i64>, StoreError> {
        if let Some(known) = self.0.get() {
            return Ok(known);
        }
        if have & LazyTable::Uploads.bit() == 0 {
            self.0.set(Some(None));
            return Ok(None);
        }
        let oldest = first::<MinRow>(
            sql,
            &format!("SELECT MIN(updated_ms) AS t FROM uploads WHERE {TERMINAL}"),
            vec![],
        )
        .map_err(err)?
        .and_then(|r| r.t);
        self.0.set(Some(oldest));
        Ok(oldest)
    }

    /// After `ops` were applied to the table.
    fn applied(&self, ops: &[Op]) {
        if ops.iter().any(|op| matches!(op, Op::Prune { .. })) {
            self.0.set(None);
            return;
        }
        let Some(mut oldest) = self.0.get() else {
            return;
        };
        for op in ops {
            if let Op::PutUpload(r) = op {
                if r.state.is_terminal() && !compact(r) {
                    oldest = Some(oldest.map_or(r.updated_ms, |t| t.min(r.updated_ms)));
                }
            }
        }
        self.0.set(Some(oldest));
    }

    fn forget(&self) {
        self.0.set(None);
    }
}

/// The `kv` row [`META`]: the engine's document, and the statuses kept in
/// it ([`pipeline_core::inline_statuses`]). Objects created by earlier
/// versions have documents without statuses; the engine reads the same
/// document either way (it ignores `statuses`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Doc {
    #[serde(flatten)]
    meta: Meta,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    statuses: Vec<InlineStatus>,
    /// Fingerprints of the ids whose statuses expired in the document,
    /// remembered as seen at least until the seen-id window passes them
    /// (the first prune after that drops them; a key never written again
    /// keeps its last few).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    forgotten: Vec<Member>,
}

/// The scheduler's document, parsed once per change instead of at every
/// read: a step reads it several times (its state, each write's status,
/// the fingerprints of expired ones), up to 32 KB of JSON each time, and
/// admission looks up every write of a batch. Only this instance writes
/// its storage, so the copy stays true: set by each transaction that ran
/// (to the document it left), forgotten when one failed (rolled back) and
/// by the test probes that write the document directly.
#[derive(Debug, Default)]
pub struct DocCache(RefCell<Option<Rc<Doc>>>);

impl DocCache {
    /// The document (default when never written).
    ///
    /// # Errors
    /// [`StoreError`] when it cannot be read or parsed.
    fn get(&self, sql: &SqlStorage) -> Result<Rc<Doc>, StoreError> {
        if let Some(d) = self.0.borrow().as_ref() {
            return Ok(d.clone());
        }
        let d = Rc::new(get_doc::<Doc>(sql, META).map_err(err)?.unwrap_or_default());
        *self.0.borrow_mut() = Some(d.clone());
        Ok(d)
    }

    fn set(&self, doc: Doc) {
        *self.0.borrow_mut() = Some(Rc::new(doc));
    }

    pub(super) fn forget(&self) {
        *self.0.borrow_mut() = None;
    }
}

/// The status of `id` the document holds, if it holds one.
fn inline_status<'a>(doc: &'a Doc, id: &str) -> Option<&'a InlineStatus> {
    doc.statuses.iter().find(|e| e.record.id == id)
}

/// Runs one step's `ops` (inside the caller's transaction): the document
/// and the statuses it keeps first ([`inline_statuses::place`] decides
/// which stay there), then what is left for the tables, creating the lazy
/// tables those insert into that `have` lacks. Returns the tables created
/// and the operations the tables ran.
fn run_all(
    sql: &SqlStorage,
    ops: &[Op],
    have: u8,
    mut doc: Doc,
) -> Result<(u8, Vec<Op>, Doc), StoreError> {
    let mut meta = None;
    let mut rest = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::PutMeta(m) => meta = Some(m.as_ref().clone()),
            other => rest.push(other.clone()),
        }
    }
    let in_table = if have & LazyTable::Uploads.bit() != 0 {
        rows_held(sql, &doc.statuses, &rest)?
    } else {
        HashSet::new()
    };
    let placed = inline_statuses::place(
        &mut doc.statuses,
        &mut doc.forgotten,
        rest,
        |id| in_table.contains(id),
        compact,
    );
    let write_doc = meta.is_some() || placed.changed;
    if let Some(m) = meta {
        doc.meta = m;
    }
    if write_doc {
        put_doc(sql, META, &doc).map_err(err)?;
    }
    let ops = placed.table;
    let mut created = 0;
    for table in ops.iter().filter_map(LazyTable::written_by) {
        if (have | created) & table.bit() == 0 {
            for stmt in table.schema() {
                exec(sql, stmt, vec![]).map_err(err)?;
            }
            created |= table.bit();
        }
    }
    let step = Step {
        have: have | created,
        messages: messages_by_row(&ops),
        superseded: RefCell::new(Some(superseded::sets(
            ops.iter()
                .filter_map(|op| match op {
                    Op::PutUpload(r) if compact(r) => Some((
                        r.superseded_by.clone().unwrap_or_default(),
                        Member::of(&r.id, r.accepted_ms),
                    )),
                    _ => None,
                })
                .collect(),
        ))),
    };
    ops.iter().try_for_each(|op| run(sql, op, &step))?;
    Ok((created, ops, doc))
}

/// Of the ids whose full status `ops` writes and the document lacks, those
/// the `uploads` table holds a row for.
fn rows_held(
    sql: &SqlStorage,
    inline: &[InlineStatus],
    ops: &[Op],
) -> Result<HashSet<String>, StoreError> {
    let mut held = HashSet::new();
    for op in ops {
        if let Op::PutUpload(r) = op {
            if compact(r) || inline.iter().any(|e| e.record.id == r.id) {
                continue;
            }
            let query = "SELECT id FROM uploads WHERE id = ?";
            if first::<serde::de::IgnoredAny>(sql, query, vec![r.id.as_str().into()])
                .map_err(err)?
                .is_some()
            {
                held.insert(r.id.clone());
            }
        }
    }
    Ok(held)
}

/// What one step's operations share: the tables that exist, and the
/// messages its status rows carry.
struct Step {
    have: u8,
    /// For each id whose full status row this step writes and whose
    /// message it puts (`Some`) or drops (`None`): what the row's `message`
    /// column becomes. That row write stores or clears the message, so
    /// the `PutBody` or `DeleteBody` itself writes nothing.
    messages: HashMap<String, Option<String>>,
    /// The sets of the writes this step stores compactly, until the
    /// first of them is run (which stores them all).
    superseded: RefCell<Option<Vec<SupersededSet>>>,
}

impl Step {
    fn has(&self, t: LazyTable) -> bool {
        self.have & t.bit() != 0
    }
}

/// The messages put or dropped in `ops` for ids whose full status row
/// `ops` also writes ([`Step::messages`]).
fn messages_by_row(ops: &[Op]) -> HashMap<String, Option<String>> {
    let rows: HashSet<&str> = ops
        .iter()
        .filter_map(|op| match op {
            Op::PutUpload(r) if !compact(r) => Some(r.id.as_str()),
            _ => None,
        })
        .collect();
    let mut messages = HashMap::new();
    for op in ops {
        match op {
            Op::PutBody(m) if rows.contains(m.id.as_str()) => {
                messages.insert(m.id.clone(), Some(m.encode()));
            }
            Op::DeleteBody(id) if rows.contains(id.as_str()) => {
                messages.insert(id.clone(), None);
            }
            _ => {}
        }
    }
    messages
}

const TERMINAL: &str = "state IN ('committed','superseded','failed')";

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// Creates the document's table, and brings over what an earlier version
/// of the scheduler kept: an `uploads` table without the later columns or
/// with an index since dropped (a table this version creates has every
/// column, so none of the `ALTER TABLE`s runs: each would write a row and
/// read the whole schema), the document as four `kv` entries `key`,
/// `state`, `retry`, `stats` of the same shapes.
///
/// # Errors
/// [`StoreError`] from SQLite.
pub fn open(sql: &SqlStorage, tables: &Tables) -> Result<(), StoreError> {
    exec(sql, CORE_SCHEMA, vec![]).map_err(err)?;
    if tables.present(sql)? & LazyTable::Uploads.bit() != 0 {
        for stmt in DROPPED_INDEXES {
            exec(sql, stmt, vec![]).map_err(err)?;
        }
        for (column, decl) in [
            ("via", "TEXT NOT NULL DEFAULT 'queue'"),
            ("staged_key", "TEXT"),
            ("current_etag", "TEXT"),
            ("callback_url", "TEXT"),
            ("callback_state", "TEXT"),
            ("callback_attempts", "INTEGER NOT NULL DEFAULT 0"),
            ("message", "TEXT"),
        ] {
            let probe = format!("SELECT {column} FROM uploads LIMIT 0");
            if sql.exec(&probe, None).is_err() {
                let add = format!("ALTER TABLE uploads ADD COLUMN {column} {decl}");
                exec(sql, &add, vec![]).map_err(err)?;
            }
        }
    }
    if get_doc::<Meta>(sql, META).map_err(err)?.is_none() {
        if let Some(state) = get_doc(sql, "state").map_err(err)? {
            let meta = Meta {
                stored: None,
                key: get_doc(sql, "key").map_err(err)?,
                state,
                retry: get_doc(sql, "retry").map_err(err)?.unwrap_or_default(),
                stats: get_doc(sql, "stats").map_err(err)?.unwrap_or_default(),
                recent_commits: Vec::new(),
            };
            put_doc(sql, META, &meta).map_err(err)?;
        }
    }
    Ok(())
}

/// A row of `uploads` as SQLite returns it.
#[derive(Deserialize)]
struct UploadRow {
    id: String,
    accepted_ms: i64,
    size: i64,
    op: String,
    via: String,
    state: String,
    committed_ms: Option<i64>,
    etag: Option<String>,
    superseded_by: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    updated_ms: i64,
    staged_key: Option<String>,
    current_etag: Option<String>,
    callback_url: Option<String>,
    callback_state: Option<String>,
    callback_attempts: Option<i64>,
}

impl UploadRow {
    fn record(self) -> Result<UploadRecord, StoreError> {
        let bad = |what: &str, v: &str| StoreError(format!("stored {what} `{v}` of {}", self.id));
        Ok(UploadRecord {
            op: WriteOp::parse(&self.op).ok_or_else(|| bad("op", &self.op))?,
            via: match self.via.as_str() {
                "sync" => Via::Sync,
                "queue" => Via::Queue,
                v => return Err(bad("via", v)),
            },
            state: UploadState::parse(&self.state).ok_or_else(|| bad("state", &self.state))?,
            size: u64::try_from(self.size).map_err(|_| bad("size", &self.size.to_string()))?,
            id: self.id,
            accepted_ms: self.accepted_ms,
            committed_ms: self.committed_ms,
            etag: self.etag,
            superseded_by: self.superseded_by,
            error_code: self.error_code,
            error_message: self.error_message,
            updated_ms: self.updated_ms,
            staged_key: self.staged_key,
            current_etag: self.current_etag,
            callback: match self.callback_url {
                Some(url) => Some(Callback {
                    url,
                    state: self
                        .callback_state
                        .as_deref()
                        .and_then(CallbackState::parse)
                        .unwrap_or(CallbackState::Pending),
                    attempts: u32::try_from(self.callback_attempts.unwrap_or(0)).unwrap_or(0),
                }),
                None => None,
            },
        })
    }
}

/// A stored set of superseded writes ([`SupersededSet`]).
#[derive(Deserialize)]
struct SetRow {
    first_at: i64,
    by_id: String,
    members: String,
}

/// A superseded row of an object created by an earlier version, joined
/// with its supersessor's id.
#[derive(Deserialize)]
struct LegacySupersededRow {
    by_id: String,
}

/// Whether a row is kept compactly: a queued write that ended superseded
/// (without a callback: its URL and delivery state need the full row).
fn compact(r: &UploadRecord) -> bool {
    r.state == UploadState::Superseded
        && r.via == Via::Queue
        && r.staged_key.is_none()
        && r.superseded_by.is_some()
        && r.callback.is_none()
}

/// Stores a superseded write compactly: drops a full row it had, and, the
/// first time in a step, stores every set of the step's compact writes
/// (one row per set, whatever its number of writes).
fn put_superseded(sql: &SqlStorage, r: &UploadRecord, step: &Step) -> Result<(), worker::Error> {
    if step.has(LazyTable::Uploads) {
        let delete = "DELETE FROM uploads WHERE id = ?";
        note(&sql.exec(delete, vec![r.id.as_str().into()])?, delete);
    }
    let Some(sets) = step.superseded.borrow_mut().take() else {
        return Ok(());
    };
    let insert =
        "INSERT OR REPLACE INTO superseded_sets (first_at, tag, by_id, members) VALUES (?, ?, ?, ?)";
    for set in sets {
        note(
            &sql.exec(
                insert,
                vec![
                    set.first_at().into(),
                    set.tag().into(),
                    set.by_id.as_str().into(),
                    set.encode_members().into(),
                ],
            )?,
            insert,
        );
    }
    Ok(())
}

#[derive(Deserialize)]
struct OutboxRow {
    entry: String,
}

#[derive(Deserialize)]
struct MessageRow {
    message: String,
}

#[derive(Deserialize)]
struct IdemRow {
    id: String,
    created_ms: i64,
}

#[derive(Deserialize)]
struct GarbageRow {
    staged_key: String,
}

#[derive(Deserialize)]
struct MinRow {
    t: Option<i64>,
}

fn via_str(via: Via) -> &'static str {
    match via {
        Via::Queue => "queue",
        Via::Sync => "sync",
    }
}

fn int(n: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Inserts or replaces `r`'s full status row. `message`: what the row's
/// message becomes when this step puts or drops it; otherwise the row
/// keeps the message it had.
fn put_row(
    sql: &SqlStorage,
    r: &UploadRecord,
    message: Option<&Option<String>>,
) -> Result<(), ApiError> {
    let (message_sql, message_arg): (&str, SqlStorageValue) = match message {
        Some(m) => ("?", m.clone().into()),
        None => (
            "(SELECT message FROM uploads WHERE id = ?)",
            r.id.as_str().into(),
        ),
    };
    let query = format!(
        "INSERT OR REPLACE INTO uploads (id, accepted_ms, size, op, via, state, committed_ms, \
         etag, superseded_by, error_code, error_message, updated_ms, staged_key, current_etag, \
         callback_url, callback_state, callback_attempts, message) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, {message_sql})"
    );
    exec(
        sql,
        &query,
        vec![
            r.id.as_str().into(),
            r.accepted_ms.into(),
            int(r.size),
            r.op.as_str().into(),
            via_str(r.via).into(),
            r.state.as_str().into(),
            r.committed_ms.into(),
            r.etag.clone().into(),
            r.superseded_by.clone().into(),
            r.error_code.clone().into(),
            r.error_message.clone().into(),
            r.updated_ms.into(),
            r.staged_key.clone().into(),
            r.current_etag.clone().into(),
            r.callback.as_ref().map(|c| c.url.clone()).into(),
            r.callback
                .as_ref()
                .map(|c| c.state.as_str().to_string())
                .into(),
            i64::from(r.callback.as_ref().map_or(0, |c| c.attempts)).into(),
            message_arg,
        ],
    )
}

/// Stores the message of a held write whose status row an earlier step
/// wrote. There is always such a row (the engine holds a write and writes
/// its row in one step); if there were none, the step fails rather than
/// drop the message.
fn put_message(sql: &SqlStorage, m: &WriteMessage, step: &Step) -> Result<(), ApiError> {
    if !step.has(LazyTable::Uploads) {
        return Err(ApiError::Internal(format!(
            "no status row to hold the message of {}",
            m.id
        )));
    }
    let query = "UPDATE uploads SET message = ? WHERE id = ?";
    let cursor = sql
        .exec(query, vec![m.encode().into(), m.id.as_str().into()])
        .map_err(|e| crate::http::internal("sql", e))?;
    note(&cursor, query);
    if cursor.rows_written() == 0 {
        return Err(ApiError::Internal(format!(
            "no status row to hold the message of {}",
            m.id
        )));
    }
    Ok(())
}

/// Deletes `id`'s message from the `bodies` table of an object created by
/// an earlier version, if it has one.
fn drop_legacy_body(sql: &SqlStorage, id: &str, step: &Step) -> Result<(), ApiError> {
    if step.have & LEGACY_BODIES == 0 {
        return Ok(());
    }
    exec(sql, "DELETE FROM bodies WHERE id = ?", vec![id.into()])
}

/// Runs one operation; `have`: the lazy tables that exist (an insert's
/// table was created by [`run_all`]; a delete from one that does not exist
/// has nothing to delete).
fn run(sql: &SqlStorage, op: &Op, step: &Step) -> Result<(), StoreError> {
    let has = |t: LazyTable| step.has(t);
    match op {
        Op::RemoveOutbox(_) if !has(LazyTable::Outbox) => Ok(()),
        Op::RemoveGarbage(_) if !has(LazyTable::Garbage) => Ok(()),
        // Written with the document's statuses by `run_all`.
        Op::PutMeta(_) => Ok(()),
        Op::PutUpload(r) if compact(r) => {
            put_superseded(sql, r, step).map_err(|e| crate::http::internal("sql", e))
        }
        Op::PutUpload(r) => put_row(sql, r, step.messages.get(&r.id)),
        Op::PutOutbox(e) => exec(
            sql,
            "INSERT OR IGNORE INTO outbox (msg_id, entry) VALUES (?, ?)",
            vec![
                e.msg_id.as_str().into(),
                serde_json::to_string(e).unwrap_or_default().into(),
            ],
        ),
        Op::RemoveOutbox(id) => exec(
            sql,
            "DELETE FROM outbox WHERE msg_id = ?",
            vec![id.as_str().into()],
        ),
        // Stored with the status row this step writes.
        Op::PutBody(m) if step.messages.contains_key(&m.id) => Ok(()),
        Op::DeleteBody(id) if step.messages.contains_key(id) => drop_legacy_body(sql, id, step),
        Op::PutBody(m) => put_message(sql, m, step),
        Op::DeleteBody(id) if !has(LazyTable::Uploads) => drop_legacy_body(sql, id, step),
        Op::DeleteBody(id) => exec(
            sql,
            "UPDATE uploads SET message = NULL WHERE id = ? AND message IS NOT NULL",
            vec![id.as_str().into()],
        )
        .and_then(|()| drop_legacy_body(sql, id, step)),
        Op::AddGarbage(k) => exec(
            sql,
            "INSERT OR IGNORE INTO garbage (staged_key) VALUES (?)",
            vec![k.as_str().into()],
        ),
        Op::RemoveGarbage(k) => exec(
            sql,
            "DELETE FROM garbage WHERE staged_key = ?",
            vec![k.as_str().into()],
        ),
        Op::PutIdem(r) => exec(
            sql,
            "INSERT OR REPLACE INTO idempotency (idem_key, id, created_ms) VALUES (?, ?, ?)",
            vec![
                r.idem_key.as_str().into(),
                r.id.as_str().into(),
                r.created_ms.into(),
            ],
        ),
        // The document forgot its expired statuses already (keeping their
        // fingerprints); the tables keep theirs until their ids are no
        // longer seen, which costs no row: each is deleted once either way.
        Op::Prune {
            forget_before,
            idem_before,
            ..
        } => {
            if has(LazyTable::Uploads) {
                exec(
                    sql,
                    &format!("DELETE FROM uploads WHERE {TERMINAL} AND updated_ms < ?"),
                    vec![(*forget_before).into()],
                )
            } else {
                Ok(())
            }
        }
        .and_then(|()| {
            if !has(LazyTable::Superseded) {
                return Ok(());
            }
            // A set goes once its last possible member is past the window.
            exec(
                sql,
                "DELETE FROM superseded_sets WHERE first_at < ?",
                vec![(*forget_before - SET_SPAN_MS).into()],
            )
        })
        .and_then(|()| {
            if step.have & LEGACY_SUPERSEDED == 0 {
                return Ok(());
            }
            exec(
                sql,
                "DELETE FROM superseded WHERE at < ?",
                vec![(*forget_before).into()],
            )?;
            exec(
                sql,
                "DELETE FROM supersessors WHERE last_ms < ?",
                vec![(*forget_before).into()],
            )
        })
        .and_then(|()| {
            if !has(LazyTable::Idempotency) {
                return Ok(());
            }
            exec(
                sql,
                "DELETE FROM idempotency WHERE created_ms < ?",
                vec![(*idem_before).into()],
            )
        }),
    }
    .map_err(err)
}

impl SchedulerHost {
    /// Runs `f` in one SQLite transaction ([`super::sql::atomically`]).
    ///
    /// # Errors
    /// `f`'s error, or the runtime's.
    pub fn atomically(
        &self,
        f: impl FnOnce(&SqlStorage) -> Result<(), StoreError> + 'static,
    ) -> Result<(), StoreError> {
        let raw = self
            .raw_storage
            .as_ref()
            .ok_or_else(|| StoreError("no storage for transactions".into()))?;
        super::sql::atomically(raw, &self.sql, move |sql| f(sql).map_err(|e| e.0))
            .map_err(StoreError)
    }
}

impl SchedulerHost {
    /// Whether lazy table `t` exists.
    fn has(&self, t: LazyTable) -> Result<bool, StoreError> {
        Ok(self.tables.present(&self.sql)? & t.bit() != 0)
    }
}

impl Store for SchedulerHost {
    fn meta(&self) -> Result<Meta, StoreError> {
        Ok(self.doc.get(&self.sql)?.meta.clone())
    }

    fn upload(&self, id: &str, accepted_ms: i64) -> Result<Option<UploadRecord>, StoreError> {
        if let Some(e) = inline_status(&*self.doc.get(&self.sql)?, id) {
            return Ok(Some(e.record.clone()));
        }
        let have = self.tables.present(&self.sql)?;
        if have & LazyTable::Uploads.bit() != 0 {
            let full = first::<UploadRow>(
                &self.sql,
                "SELECT id, accepted_ms, size, op, via, state, committed_ms, etag, superseded_by, \
                 error_code, error_message, updated_ms, staged_key, current_etag, callback_url, \
                 callback_state, callback_attempts FROM uploads WHERE id = ?",
                vec![id.into()],
            )
            .map_err(err)?;
            if let Some(row) = full {
                return row.record().map(Some);
            }
        }
        let member = Member::of(id, accepted_ms);
        let mut by_id = None;
        if have & LazyTable::Superseded.bit() != 0 {
            by_id = rows::<SetRow>(
                &self.sql,
                "SELECT first_at, by_id, members FROM superseded_sets \
                 WHERE first_at >= ? AND first_at <= ? ORDER BY first_at DESC",
                vec![(accepted_ms - SET_SPAN_MS).into(), accepted_ms.into()],
            )
            .map_err(err)?
            .into_iter()
            .find(|s| superseded::holds(s.first_at, &s.members, member))
            .map(|s| s.by_id);
        }
        if by_id.is_none() && have & LEGACY_SUPERSEDED != 0 {
            by_id = first::<LegacySupersededRow>(
                &self.sql,
                "SELECT p.id AS by_id FROM superseded s JOIN supersessors p ON p.n = s.by_n \
                 WHERE s.at = ? AND s.fp = ?",
                vec![accepted_ms.into(), member.fp.into()],
            )
            .map_err(err)?
            .map(|r| r.by_id);
        }
        Ok(by_id.map(|by_id| UploadRecord {
            id: id.to_string(),
            accepted_ms,
            size: 0,
            op: WriteOp::Put,
            via: Via::Queue,
            state: UploadState::Superseded,
            committed_ms: None,
            etag: None,
            superseded_by: Some(by_id),
            error_code: None,
            error_message: None,
            updated_ms: accepted_ms,
            staged_key: None,
            current_etag: None,
            callback: None,
        }))
    }

    fn body(&self, id: &str) -> Result<Option<WriteMessage>, StoreError> {
        if let Some(e) = inline_status(&*self.doc.get(&self.sql)?, id) {
            return Ok(e.message.clone());
        }
        let have = self.tables.present(&self.sql)?;
        let mut found = None;
        if have & LazyTable::Uploads.bit() != 0 {
            found = first::<MessageRow>(
                &self.sql,
                "SELECT message FROM uploads WHERE id = ? AND message IS NOT NULL",
                vec![id.into()],
            )
            .map_err(err)?;
        }
        if found.is_none() && have & LEGACY_BODIES != 0 {
            found = first::<MessageRow>(
                &self.sql,
                "SELECT message FROM bodies WHERE id = ?",
                vec![id.into()],
            )
            .map_err(err)?;
        }
        match found {
            None => Ok(None),
            Some(r) => serde_json::from_str(&r.message)
                .map(Some)
                .map_err(|e| StoreError(format!("stored body of {id}: {e}"))),
        }
    }

    fn idempotency(&self, idem_key: &str) -> Result<Option<IdemRecord>, StoreError> {
        if !self.has(LazyTable::Idempotency)? {
            return Ok(None);
        }
        Ok(first::<IdemRow>(
            &self.sql,
            "SELECT id, created_ms FROM idempotency WHERE idem_key = ?",
            vec![idem_key.into()],
        )
        .map_err(err)?
        .map(|r| IdemRecord {
            idem_key: idem_key.to_string(),
            id: r.id,
            created_ms: r.created_ms,
        }))
    }

    fn garbage(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        if !self.has(LazyTable::Garbage)? {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Ok(rows::<GarbageRow>(
            &self.sql,
            "SELECT staged_key FROM garbage LIMIT ?",
            vec![limit.into()],
        )
        .map_err(err)?
        .into_iter()
        .map(|r| r.staged_key)
        .collect())
    }

    fn outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        if !self.has(LazyTable::Outbox)? {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        rows::<OutboxRow>(
            &self.sql,
            "SELECT entry FROM outbox ORDER BY n LIMIT ?",
            vec![limit.into()],
        )
        .map_err(err)?
        .into_iter()
        .map(|r| {
            serde_json::from_str(&r.entry).map_err(|e| StoreError(format!("outbox entry: {e}")))
        })
        .collect()
    }

    fn forgotten(&self, id: &str, accepted_ms: i64) -> Result<bool, StoreError> {
        let m = Member::of(id, accepted_ms);
        Ok(self.doc.get(&self.sql)?.forgotten.contains(&m))
    }

    fn oldest_prunable(&self) -> Result<Prunable, StoreError> {
        let min = |q: &str| {
            first::<MinRow>(&self.sql, q, vec![])
                .map(|r| r.and_then(|r| r.t))
                .map_err(err)
        };
        let have = self.tables.present(&self.sql)?;
        let full = self.oldest.get(&self.sql, have)?;
        let sets = if have & LazyTable::Superseded.bit() != 0 {
            min("SELECT MIN(first_at) AS t FROM superseded_sets")?.map(|t| t + SET_SPAN_MS)
        } else {
            None
        };
        let legacy = if have & LEGACY_SUPERSEDED != 0 {
            min("SELECT MIN(at) AS t FROM superseded")?
        } else {
            None
        };
        let idem = if self.has(LazyTable::Idempotency)? {
            min("SELECT MIN(created_ms) AS t FROM idempotency")?
        } else {
            None
        };
        // The document's fingerprints wait for a prune that runs anyway:
        // waking a key only to drop them would write a row to save bytes.
        Ok(Prunable {
            seen: [full, sets, legacy].into_iter().flatten().min(),
            idem,
        })
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let have = self.tables.present(&self.sql)?;
        let doc = (*self.doc.get(&self.sql)?).clone();
        let ran = Rc::new(RefCell::new(None));
        let out = ran.clone();
        let result = self.atomically(move |sql| {
            *out.borrow_mut() = Some(run_all(sql, &ops, have, doc)?);
            Ok(())
        });
        match (&result, ran.borrow_mut().take()) {
            (Ok(()), Some((created, table_ops, doc))) => {
                self.tables.added(created);
                self.oldest.applied(&table_ops);
                self.doc.set(doc);
            }
            // Whatever it created was rolled back with it.
            _ => {
                self.tables.forget();
                self.oldest.forget();
                self.doc.forget();
            }
        }
        result
    }
}

/// A check that [`SchedulerHost::atomically`] (and so every
/// [`Store::apply`]) is all or nothing on the runtime: two real operations,
/// then, if asked, a statement that fails. Only in a `test-routes` build
/// (`POST /_test/tx-probe/{key}`).
#[cfg(feature = "test-routes")]
pub mod probe {
    use pipeline_core::engine::{IdemRecord, Op, Store};
    use pipeline_core::error::ApiError;
    use pipeline_core::protocol::Call;
    use serde::{Deserialize, Serialize};

    use super::{
        err, get_doc, put_doc, put_row, run_all, Doc, LazyTable, SetRow, META, UPLOADS_SCHEMA,
    };
    use crate::objects::scheduler_io::SchedulerHost;
    use crate::objects::sql::exec;

    /// Runs the probe; `fail` adds the failing statement.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct TxProbe {
        pub fail: bool,
    }

    /// What the transaction returned and which of its writes are stored.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct TxProbeReply {
        pub error: Option<String>,
        pub garbage_kept: bool,
        pub idempotency_kept: bool,
    }

    impl Call for TxProbe {
        const PATH: &'static str = "/_test/tx-probe";
        type Reply = TxProbeReply;
    }

    /// Runs the probe and removes what it wrote.
    ///
    /// # Errors
    /// Storage errors outside the probed transaction.
    pub fn tx_probe(host: &SchedulerHost, p: &TxProbe) -> Result<TxProbeReply, ApiError> {
        let marker = format!("_pipeline/staging/tx-probe-{}", crate::http::now_ms());
        let ops = [
            Op::AddGarbage(marker.clone()),
            Op::PutIdem(IdemRecord {
                idem_key: marker.clone(),
                id: "tx-probe".into(),
                created_ms: 0,
            }),
        ];
        let fail = p.fail;
        let have = host.tables.present(&host.sql)?;
        let error = host
            .atomically(move |sql| {
                run_all(
                    sql,
                    &ops,
                    have,
                    get_doc(sql, META).map_err(err)?.unwrap_or_default(),
                )?;
                if fail {
                    exec(sql, "INSERT INTO no_such_table (x) VALUES (1)", vec![]).map_err(err)?;
                }
                Ok(())
            })
            .err()
            .map(|e| e.to_string());
        // The tables it created (if it committed) are read again.
        host.tables.forget();
        host.doc.forget();
        let reply = TxProbeReply {
            error,
            garbage_kept: host.garbage(usize::MAX)?.contains(&marker),
            idempotency_kept: host.idempotency(&marker)?.is_some(),
        };
        host.apply(vec![Op::RemoveGarbage(marker.clone())])?;
        if host.has(LazyTable::Idempotency)? {
            exec(
                &host.sql,
                "DELETE FROM idempotency WHERE idem_key = ?",
                vec![marker.into()],
            )?;
        }
        Ok(reply)
    }

    /// Moves every held write's message into a `bodies` table, as objects
    /// created by earlier versions kept them (`POST
    /// /_test/legacy-bodies/{key}`): the upgrade path's test.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct LegacyBodies {}

    /// How many messages moved, and how many the `bodies` table holds.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct LegacyBodiesReply {
        pub moved: i64,
        pub held_in_bodies: i64,
    }

    impl Call for LegacyBodies {
        const PATH: &'static str = "/_test/legacy-bodies";
        type Reply = LegacyBodiesReply;
    }

    #[derive(Deserialize)]
    struct CountRow {
        n: i64,
    }

    /// The count `q` (a `SELECT COUNT(*) AS n ...`) answers.
    fn count(sql: &worker::SqlStorage, q: &str) -> Result<i64, ApiError> {
        Ok(crate::objects::sql::first::<CountRow>(sql, q, vec![])?.map_or(0, |r| r.n))
    }

    /// Moves the messages (in one transaction) and forgets which tables
    /// exist, as a restart would.
    ///
    /// # Errors
    /// Storage errors; then nothing moved.
    pub fn legacy_bodies(host: &SchedulerHost) -> Result<LegacyBodiesReply, ApiError> {
        statuses_to_table(host)?;
        let moved = count(
            &host.sql,
            "SELECT COUNT(*) AS n FROM uploads WHERE message IS NOT NULL",
        )?;
        host.atomically(|sql| {
            for stmt in [
                "CREATE TABLE IF NOT EXISTS bodies (id TEXT PRIMARY KEY, message TEXT NOT NULL) \
                 WITHOUT ROWID",
                "INSERT OR REPLACE INTO bodies (id, message) \
                 SELECT id, message FROM uploads WHERE message IS NOT NULL",
                "UPDATE uploads SET message = NULL WHERE message IS NOT NULL",
            ] {
                exec(sql, stmt, vec![]).map_err(err)?;
            }
            Ok(())
        })?;
        host.tables.forget();
        Ok(LegacyBodiesReply {
            moved,
            held_in_bodies: count(&host.sql, "SELECT COUNT(*) AS n FROM bodies")?,
        })
    }

    /// Creates `uploads` and moves the statuses the document holds into
    /// rows of it, with their messages, as objects created by earlier
    /// versions kept every status (one transaction).
    ///
    /// # Errors
    /// Storage errors; then nothing moved.
    fn statuses_to_table(host: &SchedulerHost) -> Result<(), ApiError> {
        host.atomically(|sql| {
            exec(sql, UPLOADS_SCHEMA, vec![]).map_err(err)?;
            let Some(mut doc) = get_doc::<Doc>(sql, META).map_err(err)? else {
                return Ok(());
            };
            if doc.statuses.is_empty() {
                return Ok(());
            }
            for e in std::mem::take(&mut doc.statuses) {
                let message = e.message.map(|m| m.encode());
                put_row(sql, &e.record, Some(&message)).map_err(err)?;
            }
            put_doc(sql, META, &doc).map_err(err)
        })?;
        // As a restart would: which tables exist, the oldest ended status
        // of the table and the document are read again.
        host.tables.forget();
        host.oldest.forget();
        host.doc.forget();
        Ok(())
    }

    /// Moves every superseded set into the `superseded` and `supersessors`
    /// tables, one row per write, as objects created by earlier versions
    /// kept them (`POST /_test/legacy-superseded/{key}`): the upgrade
    /// path's test.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct LegacySuperseded {}

    /// How many writes moved, and how many rows the old table holds.
    #[derive(Debug, Serialize, Deserialize)]
    pub struct LegacySupersededReply {
        pub moved: i64,
        pub rows_in_superseded: i64,
    }

    impl Call for LegacySuperseded {
        const PATH: &'static str = "/_test/legacy-superseded";
        type Reply = LegacySupersededReply;
    }

    /// Moves the writes (in one transaction) and forgets which tables
    /// exist, as a restart would.
    ///
    /// # Errors
    /// Storage errors; then nothing moved.
    pub fn legacy_superseded(host: &SchedulerHost) -> Result<LegacySupersededReply, ApiError> {
        let sets = if host.has(LazyTable::Superseded)? {
            crate::objects::sql::rows::<SetRow>(
                &host.sql,
                "SELECT first_at, by_id, members FROM superseded_sets",
                vec![],
            )?
        } else {
            Vec::new()
        };
        let moved = sets
            .iter()
            .map(|s| pipeline_core::superseded::members(s.first_at, &s.members).len())
            .sum::<usize>();
        host.atomically(move |sql| {
            for stmt in [
                "CREATE TABLE IF NOT EXISTS supersessors (n INTEGER PRIMARY KEY, \
                 id TEXT NOT NULL UNIQUE, last_ms INTEGER NOT NULL)",
                "CREATE TABLE IF NOT EXISTS superseded (at INTEGER NOT NULL, fp INTEGER NOT NULL, \
                 by_n INTEGER NOT NULL, PRIMARY KEY (at, fp)) WITHOUT ROWID",
            ] {
                exec(sql, stmt, vec![]).map_err(err)?;
            }
            for set in &sets {
                exec(
                    sql,
                    "INSERT INTO supersessors (id, last_ms) VALUES (?, ?) \
                     ON CONFLICT(id) DO UPDATE SET last_ms = MAX(last_ms, excluded.last_ms)",
                    vec![set.by_id.as_str().into(), set.first_at.into()],
                )
                .map_err(err)?;
                for m in pipeline_core::superseded::members(set.first_at, &set.members) {
                    exec(
                        sql,
                        "INSERT OR REPLACE INTO superseded (at, fp, by_n) \
                         SELECT ?, ?, n FROM supersessors WHERE id = ?",
                        vec![m.at.into(), m.fp.into(), set.by_id.as_str().into()],
                    )
                    .map_err(err)?;
                }
            }
            if !sets.is_empty() {
                exec(sql, "DELETE FROM superseded_sets", vec![]).map_err(err)?;
            }
            Ok(())
        })?;
        host.tables.forget();
        let rows_in_superseded = count(&host.sql, "SELECT COUNT(*) AS n FROM superseded")?;
        Ok(LegacySupersededReply {
            moved: i64::try_from(moved).unwrap_or(i64::MAX),
            rows_in_superseded,
        })
    }
}
