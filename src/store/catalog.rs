//! state.db: the batch catalog, record keys, watermarks, the run ledger and
//! the delivery records.

use super::{Store, StoreError};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
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
CREATE TABLE IF NOT EXISTS record_keys (
    kind       TEXT NOT NULL,
    source     TEXT NOT NULL,
    record_id  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    last_batch INTEGER NOT NULL,
    versions   INTEGER NOT NULL,
    PRIMARY KEY (kind, source, record_id)
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

pub(super) fn init(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.execute_batch(SCHEMA)
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
    /// running, ok, failed.
    pub outcome: String,
    /// JSON counts.
    pub counts: Option<String>,
    /// Error text of a failed run.
    pub error: Option<String>,
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
    /// sent, outbox, failed.
    pub state: String,
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
    pub fn run_started(&self, run_id: &str, job: &str, period: &str, as_of: DateTime<Utc>, trigger: &str) -> Result<(), StoreError> {
        let operator = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        self.conn.execute(
            "INSERT INTO runs (run_id, job, period, as_of, trigger, started_at, outcome, operator) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7)",
            params![run_id, job, period, as_of.to_rfc3339(), trigger, Utc::now().to_rfc3339(), operator],
        )?;
        Ok(())
    }

    /// Closes a run's ledger row.
    pub fn run_ended(&self, run_id: &str, outcome: &str, counts: &serde_json::Value, error: Option<&str>) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE runs SET ended_at = ?2, outcome = ?3, counts = ?4, error = ?5 WHERE run_id = ?1",
            params![run_id, Utc::now().to_rfc3339(), outcome, counts.to_string(), error],
        )?;
        Ok(())
    }

    /// The ledger, newest first, optionally for one job.
    pub fn runs(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT run_id, job, period, as_of, trigger, started_at, ended_at, outcome, counts, error FROM runs
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
