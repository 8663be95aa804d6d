//! state.db: the batch catalog, record keys, watermarks, the run ledger and
//! the delivery records.

use super::{Store, StoreError};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;

/// A state column value that no version of manyi writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} “{value}” in state.db")]
pub struct UnknownState {
    /// Which column.
    pub what: &'static str,
    /// The text found.
    pub value: String,
}

/// An enum stored in a TEXT column of state.db. The texts are the ones the
/// first release wrote, so existing data directories still read.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// The text stored in state.db.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownState;
            fn from_str(s: &str) -> Result<Self, UnknownState> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownState { what: $what, value: s.to_string() }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // pad, not write: `manyi history` lays these out in columns.
                f.pad(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value.as_str()?.parse().map_err(|e: UnknownState| FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

text_enum! {
    /// Where one recipient's delivery stands (see ARCHITECTURE.md, delivery states).
    DeliveryState, "delivery state" {
        /// Recorded before the SMTP transaction; left behind only by a run that died in it.
        Sending = "sending",
        /// The SMTP server accepted the message.
        Sent = "sent",
        /// Not delivered: refused, or temporary failures after the last attempt, or not attempted.
        Failed = "failed",
        /// Written to the outbox (no SMTP configured).
        Outbox = "outbox",
        /// History only: the report changed after delivery and was not sent again.
        Held = "held",
    }
}

impl DeliveryState {
    /// Whether the recipient has the report: only these are skipped by a rerun.
    pub fn is_delivered(self) -> bool {
        matches!(self, DeliveryState::Sent | DeliveryState::Outbox)
    }
}

text_enum! {
    /// How a run in the ledger ended (or that it has not).
    RunOutcome, "run outcome" {
        /// Started and not ended yet (or its process died: see `Abandoned`).
        Running = "running",
        /// Ended without error.
        Ok = "ok",
        /// Ended with an error, or with recipients not served.
        Failed = "failed",
        /// A missed slot of a job with `catchup = false`: recorded, not run.
        Skipped = "skipped",
        /// Left `running` by a service that died; closed by the next start.
        Abandoned = "abandoned",
    }
}

const SCHEMA: &str = "
PRAGMA synchronous = FULL;
-- A province's record_keys run to hundreds of megabytes; the default 2 MB
-- page cache made every key look-up of a large batch a read from the OS.
PRAGMA cache_size = -65536;
-- Statement journals in memory. Each multi-row key upsert of a batch
-- (`write_keys`) is a statement SQLite may have to undo alone inside the
-- open transaction, so it keeps the original of every page the statement
-- changes in a statement journal; on the default temp store that journal
-- went to a temporary file after its first 64 KiB, and a million keys made
-- 142,000 writes of 286 MB to it (strace), a fifth of an ingest's system
-- time. Each statement's journal is a few pages and is emptied when it
-- ends. The other temporary tables manyi's queries make are small (a
-- GROUP BY of the batches or the multi-version ids).
PRAGMA temp_store = MEMORY;
CREATE TABLE IF NOT EXISTS batches (
    batch_seq        INTEGER PRIMARY KEY,
    batch_id         TEXT NOT NULL UNIQUE,
    source           TEXT NOT NULL,
    kind             TEXT NOT NULL,
    committed_at_ms  INTEGER NOT NULL,
    committed_at     TEXT NOT NULL,
    landing          TEXT,
    quarantine       TEXT,
    rows_new         INTEGER NOT NULL,
    rows_updated     INTEGER NOT NULL,
    rows_unchanged   INTEGER NOT NULL,
    rows_quarantined INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_files (
    batch_seq INTEGER NOT NULL REFERENCES batches(batch_seq),
    month     TEXT NOT NULL,
    path      TEXT NOT NULL,
    rows      INTEGER NOT NULL,
    PRIMARY KEY (batch_seq, month)
);
CREATE INDEX IF NOT EXISTS batch_files_month ON batch_files(month);
-- The key of every record stored, to tell new, changed and unchanged
-- records apart. Compact, because a province holds tens of millions: the
-- (kind, source) pair as a small integer and the content hash (the first 16
-- bytes of a SHA-256) as a 16-byte BLOB. `record_keys`, made in `init`, is
-- the readable view of it with the columns stores before it had.
CREATE TABLE IF NOT EXISTS key_streams (
    stream INTEGER PRIMARY KEY,
    kind   TEXT NOT NULL,
    source TEXT NOT NULL,
    UNIQUE (kind, source)
);
CREATE TABLE IF NOT EXISTS stored_keys (
    stream     INTEGER NOT NULL REFERENCES key_streams(stream),
    record_id  TEXT NOT NULL,
    hash       BLOB NOT NULL,
    last_batch INTEGER NOT NULL,
    versions   INTEGER NOT NULL,
    PRIMARY KEY (stream, record_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS record_versions (
    kind      TEXT NOT NULL,
    source    TEXT NOT NULL,
    record_id TEXT NOT NULL,
    batch_seq INTEGER NOT NULL,
    PRIMARY KEY (kind, source, record_id, batch_seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS watermarks (
    source     TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id     TEXT PRIMARY KEY,
    job        TEXT NOT NULL,
    period     TEXT NOT NULL,
    as_of      TEXT NOT NULL,
    trigger    TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at   TEXT,
    outcome    TEXT NOT NULL,
    counts     TEXT,
    error      TEXT,
    operator   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS service_lock (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    holder       TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    host         TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    job          TEXT NOT NULL,
    period       TEXT NOT NULL,
    office       TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    state        TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    channel      TEXT NOT NULL,
    detail       TEXT,
    run_id       TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (job, period, office, recipient)
);
CREATE TABLE IF NOT EXISTS delivery_history (
    job          TEXT NOT NULL,
    period       TEXT NOT NULL,
    office       TEXT NOT NULL,
    recipient    TEXT NOT NULL,
    state        TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    detail       TEXT,
    run_id       TEXT NOT NULL,
    at           TEXT NOT NULL
);
";

/// How long a statement waits for another process's write lock before it
/// fails with "database is locked": ten minutes. A collect holds the lock
/// while it reads a large file, most of a minute for a province's year in
/// one file, and a report delivering meanwhile (its delivery records), the
/// intake's committer or a second collect must wait that out, not fail at
/// SQLite's customary 30 s. A holder that died freed the lock with its
/// process; only a hung one makes the others wait this long, and then fail.
/// The site's writes wait less ([`super::Store::set_write_wait`]). Short in
/// the unit tests, so that a test can hold the lock longer than a writer
/// waits.
pub(super) const WRITE_WAIT: std::time::Duration =
    if cfg!(test) { std::time::Duration::from_secs(2) } else { std::time::Duration::from_secs(600) };

/// Whether `e` is SQLite saying another connection holds the lock.
pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

pub(super) fn init(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(WRITE_WAIT)?;
    use_wal(conn)?;
    conn.execute_batch(SCHEMA)?;
    add_missing_columns(conn)?;
    if compact_record_keys(conn)? {
        // Once, right after the move: the old table's pages would otherwise
        // stay in the file as free pages (at 10 M keys, 770 MB of a 1.2 GB
        // file) until new keys fill them. Not fatal if it cannot run (no
        // room for its temporary copy, another process reading): the store
        // works the same, only larger.
        tracing::info!("state.db: giving the old key table's pages back to the file system (VACUUM, once)");
        // VACUUM builds the whole new file in SQLite's temporary store,
        // which the schema keeps in memory (see SCHEMA): on disk for it.
        conn.execute_batch("PRAGMA temp_store = FILE")?;
        if let Err(e) = conn.execute_batch("VACUUM") {
            tracing::warn!(error = %e, "state.db: VACUUM after moving the keys failed; the file keeps its free pages");
        }
        conn.execute_batch("PRAGMA temp_store = MEMORY")?;
    }
    Ok(())
}

/// Columns added after the first release, for state.db files made before
/// them: `runs.fire_time` and `runs.slots`; `batch_files.parquet_rows`, the
/// Parquet row count of each file, checked before every read (a response is
/// several rows, so `rows`, the records, cannot serve; NULL in files listed
/// by versions before it, which are checked for presence); `batches.part_of`
/// — a large file is committed in parts, each a batch (`PartedBatch`), and a
/// part after the first names the first's `batch_seq` here, so that a file
/// still counts as one batch where people count them (the reports' 数据来源).
const ADDED_COLUMNS: [(&str, &str, &str); 4] = [
    ("runs", "fire_time", "TEXT"),
    ("runs", "slots", "INTEGER"),
    ("batch_files", "parquet_rows", "INTEGER"),
    ("batches", "part_of", "INTEGER"),
];

/// Turns the file to WAL. Two processes opening a new data directory at
/// once (`serve` and a command on a fresh install) both try; the switch
/// needs the file to itself and SQLite answers the second "database is
/// locked" at once, without waiting, so the wait is here.
fn use_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + WRITE_WAIT;
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(e) => return Err(e),
        }
    }
}

/// Adds the [`ADDED_COLUMNS`] a state.db lacks. Looked at with a plain read
/// first (every opening passes here, and the write lock can be a large
/// file's commit away), then again inside the write lock: two processes
/// opening an old store at once both saw the column missing and the second
/// `ALTER TABLE` failed with "duplicate column name".
fn add_missing_columns(conn: &Connection) -> rusqlite::Result<()> {
    let missing = |conn: &Connection| -> rusqlite::Result<Vec<(&str, &str, &str)>> {
        let mut out = Vec::new();
        for (table, column, ty) in ADDED_COLUMNS {
            let mut has = conn.prepare_cached("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?;
            if !has.exists(rusqlite::params![table, column])? {
                out.push((table, column, ty));
            }
        }
        Ok(out)
    };
    if missing(conn)?.is_empty() {
        return Ok(());
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    for (table, column, ty) in missing(&tx)? {
        tx.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
    }
    tx.commit()
}

/// `record_keys` as stores before the compact key tables wrote it, and as
/// people, scripts and a province's tools still query it: one row per
/// record, kind and source as text, the hash as 32 lower-case hex digits.
const RECORD_KEYS_VIEW: &str = "CREATE VIEW record_keys AS
    SELECT s.kind AS kind, s.source AS source, k.record_id AS record_id, lower(hex(k.hash)) AS hash,
           k.last_batch AS last_batch, k.versions AS versions
    FROM stored_keys k JOIN key_streams s ON s.stream = k.stream";

/// Moves the keys of a state.db made before the compact tables (a
/// `record_keys` table of text) into `key_streams` and `stored_keys`, and
/// puts the view in the table's place.
///
/// Why in one IMMEDIATE transaction: a store opened by two processes at
/// once (`manyi serve` and a command) migrates once, and a power cut
/// half-way leaves the old table whole, to be migrated at the next open.
/// Returns whether it moved keys (then `init` gives the old table's pages
/// back with a VACUUM).
fn compact_record_keys(conn: &Connection) -> rusqlite::Result<bool> {
    // Looked at with a plain read first: every opening of the store passes
    // here, and taking the write lock for the look made a `manyi figures`
    // (or any other reader) wait out a collect's whole commit — most of a
    // minute for a province's year in one file — and fail after 30 s.
    let kind: Option<String> = conn.query_row("SELECT type FROM sqlite_master WHERE name = 'record_keys'", [], |r| r.get(0)).optional()?;
    if kind.as_deref() == Some("view") {
        return Ok(false);
    }
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let existing: Option<String> =
        tx.query_row("SELECT type FROM sqlite_master WHERE name = 'record_keys'", [], |r| r.get(0)).optional()?;
    let moved = match existing.as_deref() {
        Some("view") => false,
        Some("table") => {
            let malformed: Option<(String, String, String)> = tx
                .query_row(
                    "SELECT source, record_id, hash FROM record_keys WHERE length(hash) != 32 OR unhex(hash) IS NULL LIMIT 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            if let Some((source, id, hash)) = malformed {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                    Some(format!(
                        "record_keys: record {id} of source {source} has the hash {hash:?}, not 32 hex digits; \
                         state.db was edited or damaged: restore it from its backup"
                    )),
                ));
            }
            tx.execute_batch(&format!(
                "INSERT OR IGNORE INTO key_streams (kind, source) SELECT DISTINCT kind, source FROM record_keys;
                 INSERT INTO stored_keys (stream, record_id, hash, last_batch, versions)
                     SELECT s.stream, r.record_id, unhex(r.hash), r.last_batch, r.versions
                     FROM record_keys r JOIN key_streams s ON s.kind = r.kind AND s.source = r.source;
                 DROP TABLE record_keys;
                 {RECORD_KEYS_VIEW};"
            ))?;
            tracing::info!("state.db: record_keys moved to the compact key tables");
            true
        }
        _ => {
            tx.execute_batch(RECORD_KEYS_VIEW)?;
            false
        }
    };
    tx.commit()?;
    Ok(moved)
}

/// A run about to start, as the ledger opens it.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// Unique id of the run.
    pub run_id: &'a str,
    /// Job name.
    pub job: &'a str,
    /// Period key.
    pub period: &'a str,
    /// Data cut-off.
    pub as_of: DateTime<Utc>,
    /// schedule, catch-up or manual.
    pub trigger: &'a str,
    /// The scheduled slot a service run stands for (none for manual runs).
    pub fire_time: Option<DateTime<Utc>>,
    /// Slots the run stands for: more than 1 when missed slots were coalesced.
    pub slots: usize,
}

/// The live holder of the service lock.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LockHolder {
    /// Holder id (host, pid, start).
    pub holder: String,
    /// Process id.
    pub pid: i64,
    /// Host name.
    pub host: String,
    /// When it started (UTC).
    pub started_at: String,
    /// Last heartbeat (UTC).
    pub heartbeat_at: String,
}

/// One row of the run ledger.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRecord {
    /// Unique id of this run (not printed in reports: the report id is derived
    /// from job, period and as-of).
    pub run_id: String,
    /// Job name (or `collect`, `demo`).
    pub job: String,
    /// Logical period.
    pub period: String,
    /// Data cut-off.
    pub as_of: String,
    /// schedule, catch-up or manual.
    pub trigger: String,
    /// Start (UTC).
    pub started_at: String,
    /// End (UTC).
    pub ended_at: Option<String>,
    /// How it ended, or that it is running.
    pub outcome: RunOutcome,
    /// JSON counts.
    pub counts: Option<String>,
    /// Error text of a failed run.
    pub error: Option<String>,
    /// The scheduled slot of a service run.
    pub fire_time: Option<String>,
    /// Slots coalesced into this run.
    pub slots: Option<i64>,
}

/// The state of one delivery.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryRecord {
    /// Job name.
    pub job: String,
    /// Period key.
    pub period: String,
    /// Office id.
    pub office: String,
    /// Recipient address.
    pub recipient: String,
    /// Where the delivery stands.
    pub state: DeliveryState,
    /// Hash of the content last delivered (or attempted).
    pub content_hash: String,
    /// smtp or outbox.
    pub channel: String,
    /// Server reply or outbox path.
    pub detail: Option<String>,
    /// Last change (UTC).
    pub updated_at: String,
}

impl Store {
    /// Opens a ledger row for a run that is starting.
    pub fn run_started(&self, run: &NewRun) -> Result<(), StoreError> {
        let operator = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        self.conn.execute(
            "INSERT INTO runs (run_id, job, period, as_of, trigger, started_at, outcome, operator, fire_time, slots)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?10, ?7, ?8, ?9)",
            params![
                run.run_id,
                run.job,
                run.period,
                run.as_of.to_rfc3339_opts(SecondsFormat::Millis, true),
                run.trigger,
                Utc::now().to_rfc3339(),
                operator,
                run.fire_time.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
                run.slots as i64,
                RunOutcome::Running
            ],
        )?;
        Ok(())
    }

    /// Closes the rows of runs a service left `running` when it died: they
    /// did not finish (a collect's uncommitted batch is ignored by readers).
    /// Manual runs are left alone: one may be running beside the service.
    pub fn abandon_unfinished_runs(&self) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "UPDATE runs SET outcome = ?2, ended_at = ?1,
               error = 'the process ended during the run; nothing it had not committed is visible'
             WHERE outcome = ?3 AND trigger IN ('schedule', 'catch-up')",
            params![Utc::now().to_rfc3339(), RunOutcome::Abandoned, RunOutcome::Running],
        )?)
    }

    /// The last slot of each job that a service fired (run, caught up or skipped).
    pub fn last_slots(&self) -> Result<BTreeMap<String, DateTime<Utc>>, StoreError> {
        let mut stmt = self.conn.prepare("SELECT job, MAX(fire_time) FROM runs WHERE fire_time IS NOT NULL GROUP BY job")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (job, t) = row?;
            if let Ok(t) = DateTime::parse_from_rfc3339(&t) {
                out.insert(job, t.with_timezone(&Utc));
            }
        }
        Ok(out)
    }

    /// Takes the service lock of this data directory unless a live holder
    /// has it: `Ok(None)` when taken, `Ok(Some(holder))` when refused. A
    /// holder on this host is alive while its process is (its heartbeat can
    /// wait behind one of its own long commits) and dead as soon as it is
    /// gone; a holder on another host is dead once its heartbeat is older
    /// than `stale_after`.
    pub fn acquire_service_lock(
        &self,
        holder: &str,
        host: &str,
        now: DateTime<Utc>,
        stale_after: TimeDelta,
    ) -> Result<Option<LockHolder>, StoreError> {
        let mut dead_here: Option<String> = None;
        if let Some(h) = self.service_lock_holder()?
            && h.host == host
            && h.holder != holder
        {
            match super::run_lock::alive_here(u32::try_from(h.pid).unwrap_or(0), &h.started_at) {
                Some(true) => return Ok(Some(h)),
                Some(false) => dead_here = Some(h.holder),
                None => {}
            }
        }
        // One statement, so two services starting at once cannot both win.
        let taken = self.conn.execute(
            "INSERT INTO service_lock (id, holder, pid, host, started_at, heartbeat_ms) VALUES (1, ?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, pid = excluded.pid, host = excluded.host,
               started_at = excluded.started_at, heartbeat_ms = excluded.heartbeat_ms
             WHERE service_lock.heartbeat_ms < ?6 OR service_lock.holder = excluded.holder OR service_lock.holder = ?7",
            params![
                holder,
                std::process::id() as i64,
                host,
                now.to_rfc3339(),
                now.timestamp_millis(),
                (now - stale_after).timestamp_millis(),
                dead_here
            ],
        )?;
        if taken == 1 {
            return Ok(None);
        }
        self.service_lock_holder()
    }

    /// Who holds the service lock, if anyone.
    fn service_lock_holder(&self) -> Result<Option<LockHolder>, StoreError> {
        let holder = self
            .conn
            .query_row("SELECT holder, pid, host, started_at, heartbeat_ms FROM service_lock WHERE id = 1", [], |r| {
                let ms: i64 = r.get(4)?;
                Ok(LockHolder {
                    holder: r.get(0)?,
                    pid: r.get(1)?,
                    host: r.get(2)?,
                    started_at: r.get(3)?,
                    heartbeat_at: DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339()).unwrap_or_default(),
                })
            })
            .optional()?;
        Ok(holder)
    }

    /// Renews the lock; false when another service has taken it over (this
    /// one was presumed dead and must stop).
    pub fn heartbeat_service_lock(&self, holder: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("UPDATE service_lock SET heartbeat_ms = ?2 WHERE id = 1 AND holder = ?1", params![holder, now.timestamp_millis()])?;
        Ok(n == 1)
    }

    /// Gives the lock up (only if this holder has it).
    pub fn release_service_lock(&self, holder: &str) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM service_lock WHERE id = 1 AND holder = ?1", params![holder])?;
        Ok(())
    }

    /// Closes a run's ledger row.
    pub fn run_ended(&self, run_id: &str, outcome: RunOutcome, counts: &serde_json::Value, error: Option<&str>) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE runs SET ended_at = ?2, outcome = ?3, counts = ?4, error = ?5 WHERE run_id = ?1",
            params![run_id, Utc::now().to_rfc3339(), outcome, counts.to_string(), error],
        )?;
        Ok(())
    }

    /// The as-of time of a job's last successful run: where a nightly 差评
    /// alert takes up, so that nothing arriving between two runs is missed.
    pub fn last_ok_as_of(&self, job: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let text: Option<String> = self
            .conn
            .query_row(
                "SELECT as_of FROM runs WHERE job = ?1 AND outcome = ?2 ORDER BY started_at DESC LIMIT 1",
                params![job, RunOutcome::Ok],
                |r| r.get(0),
            )
            .optional()?;
        Ok(text.and_then(|t| DateTime::parse_from_rfc3339(&t).ok()).map(|t| t.with_timezone(&Utc)))
    }

    /// The as-of of this job's latest run when that run did not succeed
    /// (failed, or abandoned by a process that died): the window an alert
    /// retry must resume. `None` when the latest run was ok, or there is none.
    /// Skipped slots and runs still running do not count.
    pub fn unfinished_window(&self, job: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let latest: Option<(String, RunOutcome)> = self
            .conn
            .query_row(
                "SELECT as_of, outcome FROM runs WHERE job = ?1 AND outcome IN (?2, ?3, ?4) ORDER BY started_at DESC LIMIT 1",
                params![job, RunOutcome::Ok, RunOutcome::Failed, RunOutcome::Abandoned],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(match latest {
            Some((as_of, outcome)) if outcome != RunOutcome::Ok => DateTime::parse_from_rfc3339(&as_of).ok().map(|t| t.with_timezone(&Utc)),
            _ => None,
        })
    }

    /// The ledger, newest first, optionally for one job.
    pub fn runs(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT run_id, job, period, as_of, trigger, started_at, ended_at, outcome, counts, error, fire_time, slots FROM runs
             WHERE ?1 IS NULL OR job = ?1 ORDER BY started_at DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![job, limit as i64], |r| {
            Ok(RunRecord {
                run_id: r.get(0)?,
                job: r.get(1)?,
                period: r.get(2)?,
                as_of: r.get(3)?,
                trigger: r.get(4)?,
                started_at: r.get(5)?,
                ended_at: r.get(6)?,
                outcome: r.get(7)?,
                counts: r.get(8)?,
                error: r.get(9)?,
                fire_time: r.get(10)?,
                slots: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The delivery state of one (job, period, office, recipient), if any.
    pub fn delivery(&self, job: &str, period: &str, office: &str, recipient: &str) -> Result<Option<DeliveryRecord>, StoreError> {
        let r = self
            .conn
            .query_row(
                "SELECT job, period, office, recipient, state, content_hash, channel, detail, updated_at FROM deliveries
                 WHERE job = ?1 AND period = ?2 AND office = ?3 AND recipient = ?4",
                params![job, period, office, recipient],
                row_to_delivery,
            )
            .optional()?;
        Ok(r)
    }

    /// Records a delivery attempt, keeping the history of every hash.
    pub fn record_delivery(&self, d: &DeliveryRecord, run_id: &str) -> Result<(), StoreError> {
        let now = Utc::now().to_rfc3339();
        self.conn.execute(
            "INSERT INTO deliveries (job, period, office, recipient, state, content_hash, channel, detail, run_id, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (job, period, office, recipient) DO UPDATE SET state = excluded.state, content_hash = excluded.content_hash,
               channel = excluded.channel, detail = excluded.detail, run_id = excluded.run_id, updated_at = excluded.updated_at",
            params![d.job, d.period, d.office, d.recipient, d.state, d.content_hash, d.channel, d.detail, run_id, now],
        )?;
        self.conn.execute(
            "INSERT INTO delivery_history (job, period, office, recipient, state, content_hash, detail, run_id, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![d.job, d.period, d.office, d.recipient, d.state, d.content_hash, d.detail, run_id, now],
        )?;
        Ok(())
    }

    /// Adds a line to the delivery history only (a report held back because
    /// its recipient already has this period's version).
    pub fn record_delivery_history(&self, d: &DeliveryRecord, run_id: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO delivery_history (job, period, office, recipient, state, content_hash, detail, run_id, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![d.job, d.period, d.office, d.recipient, d.state, d.content_hash, d.detail, run_id, Utc::now().to_rfc3339()],
        )?;
        Ok(())
    }

    /// The delivery history of one job, oldest first.
    pub fn delivery_history(&self, job: Option<&str>) -> Result<Vec<(DeliveryRecord, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT job, period, office, recipient, state, content_hash, '', detail, at, run_id FROM delivery_history
             WHERE ?1 IS NULL OR job = ?1 ORDER BY rowid",
        )?;
        let rows = stmt.query_map(params![job], |r| Ok((row_to_delivery(r)?, r.get::<_, String>(9)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every delivery, optionally for one job, newest first.
    pub fn deliveries(&self, job: Option<&str>) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT job, period, office, recipient, state, content_hash, channel, detail, updated_at FROM deliveries
             WHERE ?1 IS NULL OR job = ?1 ORDER BY updated_at DESC, office, recipient",
        )?;
        let rows = stmt.query_map(params![job], row_to_delivery)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A source's watermark.
    pub fn watermark(&self, source: &str) -> Result<Option<String>, StoreError> {
        Ok(self.conn.query_row("SELECT value FROM watermarks WHERE source = ?1", params![source], |r| r.get(0)).optional()?)
    }
}

fn row_to_delivery(r: &rusqlite::Row) -> rusqlite::Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        job: r.get(0)?,
        period: r.get(1)?,
        office: r.get(2)?,
        recipient: r.get(3)?,
        state: r.get(4)?,
        content_hash: r.get(5)?,
        channel: r.get(6)?,
        detail: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("rfc3339").with_timezone(&Utc)
    }

    #[test]
    fn states_keep_the_texts_existing_data_directories_hold() {
        let deliveries = [
            (DeliveryState::Sending, "sending"),
            (DeliveryState::Sent, "sent"),
            (DeliveryState::Failed, "failed"),
            (DeliveryState::Outbox, "outbox"),
            (DeliveryState::Held, "held"),
        ];
        for (state, text) in deliveries {
            assert_eq!(state.as_str(), text);
            assert_eq!(text.parse::<DeliveryState>(), Ok(state));
        }
        let runs = [
            (RunOutcome::Running, "running"),
            (RunOutcome::Ok, "ok"),
            (RunOutcome::Failed, "failed"),
            (RunOutcome::Skipped, "skipped"),
            (RunOutcome::Abandoned, "abandoned"),
        ];
        for (outcome, text) in runs {
            assert_eq!(outcome.as_str(), text);
            assert_eq!(text.parse::<RunOutcome>(), Ok(outcome));
        }
        assert!("delivered".parse::<DeliveryState>().is_err());
        assert_eq!(format!("{:<8}|", DeliveryState::Sent), "sent    |", "history pads it into its column");

        // A row written as text by an older manyi reads back as the enum.
        let tmp = tempfile::tempdir().expect("tmp");
        let store = Store::open(tmp.path()).expect("store");
        store
            .conn
            .execute(
                "INSERT INTO deliveries (job, period, office, recipient, state, content_hash, channel, detail, run_id, updated_at)
                 VALUES ('j', '2026-10', 'o', 'a@b.cn', 'outbox', 'h', 'outbox', NULL, 'r', 'now')",
                [],
            )
            .expect("insert");
        let d = store.delivery("j", "2026-10", "o", "a@b.cn").expect("read").expect("row");
        assert_eq!(d.state, DeliveryState::Outbox);
        assert!(d.state.is_delivered());
    }

    #[test]
    fn the_service_lock_refuses_a_live_holder_and_takes_over_a_dead_one() {
        let tmp = tempfile::tempdir().expect("tmp");
        let a = Store::open(tmp.path()).expect("store a");
        let b = Store::open(tmp.path()).expect("store b");
        let stale = TimeDelta::seconds(30);
        // Services on two hosts (one data directory): the heartbeat decides.
        assert!(a.acquire_service_lock("a", "host-a", at("2026-11-26T00:00:00Z"), stale).expect("lock").is_none());
        assert!(a.heartbeat_service_lock("a", at("2026-11-26T00:00:20Z")).expect("beat"));
        // 25 s after a's last heartbeat it is alive: b is refused and told who holds it.
        let held = b.acquire_service_lock("b", "host-b", at("2026-11-26T00:00:45Z"), stale).expect("lock");
        assert_eq!(held.map(|h| h.holder), Some("a".to_string()));
        // 31 s after it, a is presumed dead: b takes over, and a learns it on its next beat.
        assert!(b.acquire_service_lock("b", "host-b", at("2026-11-26T00:00:51Z"), stale).expect("lock").is_none());
        assert!(!a.heartbeat_service_lock("a", at("2026-11-26T00:00:52Z")).expect("beat"));
        // a's release does not free b's lock; b's does.
        a.release_service_lock("a").expect("release");
        assert!(a.acquire_service_lock("a", "host-a", at("2026-11-26T00:00:53Z"), stale).expect("lock").is_some());
        b.release_service_lock("b").expect("release");
        assert!(a.acquire_service_lock("a", "host-a", at("2026-11-26T00:00:54Z"), stale).expect("lock").is_none());
        a.release_service_lock("a").expect("release");

        // On one host the process table decides. A holder whose process
        // lives (this test's) keeps the lock with a heartbeat an hour old.
        let now = Utc::now();
        assert!(a.acquire_service_lock("a", "here", now, stale).expect("lock").is_none());
        let later = now + TimeDelta::hours(1);
        let held = b.acquire_service_lock("b", "here", later, stale).expect("lock");
        assert_eq!(held.map(|h| h.holder), Some("a".to_string()), "alive, its heartbeat old");
        // A holder whose process is gone is taken over at once, heartbeat fresh.
        a.conn.execute("UPDATE service_lock SET pid = 4194000 WHERE holder = 'a'", []).expect("a gone");
        assert!(b.acquire_service_lock("b", "here", now, stale).expect("lock").is_none(), "gone: taken over");
        assert!(!a.heartbeat_service_lock("a", now).expect("beat"));
    }
}
