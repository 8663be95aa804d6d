//! Publication of the curated store as Delta Lake tables (`[publish] delta`).
//!
//! A direct scan of `data/curated/` sees every version of every record and
//! any file a crash orphaned: only this catalog knows which version is the
//! latest at a given time. The Delta tables carry that knowledge to engines
//! that do not know manyi (Spark, Trino, DuckDB, Python `deltalake`):
//!
//! ```text
//! <delta>/ratings/month=YYYY-MM/part-….parquet     latest version of each rating
//! <delta>/ratings/_delta_log/000…N.json           one commit per manyi batch
//! <delta>/responses/…                              the same for questionnaire answers
//! ```
//!
//! Each committed manyi batch becomes **one** Delta commit that replaces the
//! months the batch touched (remove every file of those months, add the
//! months as the catalog resolves them at the batch's commit time); other
//! months are not rewritten. `delta_versions` records, per batch, the Delta
//! version that reflects it, so a report with as-of T is the table `VERSION
//! AS OF N` where N is the version of the last batch committed by T.
//!
//! The Delta table is a copy, never the record: a publication that fails
//! (disk full, a crash) leaves its batches without a version and the next
//! publication replays them in order. The transaction log is manyi's own
//! (`store::delta_log`, the protocol subset the tables need): a commit file
//! appears whole or not at all and never replaces another, so a reader never
//! sees a half-applied batch.

use super::delta_log::{self, DeltaTable};
use super::{RecordKind, Store, StoreError, crash_point};
use chrono::{DateTime, Utc};
use polars::prelude::*;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Creates the catalog table of published Delta versions.
pub(super) fn init(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS delta_versions (
            batch_seq INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            delta_version INTEGER NOT NULL,
            published_at TEXT NOT NULL
        );",
    )
}

/// A committed batch and the Delta version that reflects it, for `manyi history`.
#[derive(Debug, Clone)]
pub struct PublishedBatch {
    /// Catalog sequence number.
    pub batch_seq: i64,
    /// The batch id (names its curated files).
    pub batch_id: String,
    /// `ratings` or `responses`.
    pub kind: String,
    /// Commit time (UTC, RFC 3339).
    pub committed_at: String,
    /// The Delta version reflecting it; `None` while not yet published.
    pub delta_version: Option<i64>,
}

impl Store {
    /// The Delta version of the ratings table that shows exactly what was
    /// committed by `as_of`: the version recorded for the last ratings batch
    /// committed by then. `None` when nothing is published (yet) for it.
    pub fn delta_version_at(&self, as_of: DateTime<Utc>) -> Result<Option<i64>, StoreError> {
        let v = self
            .conn
            .query_row(
                "SELECT d.delta_version FROM batches b LEFT JOIN delta_versions d USING (batch_seq)
                 WHERE b.kind = 'ratings' AND b.committed_at_ms <= ?1 ORDER BY b.batch_seq DESC LIMIT 1",
                params![as_of.timestamp_millis()],
                |r| r.get::<_, Option<i64>>(0),
            )
            .optional()?;
        Ok(v.flatten())
    }

    /// The latest `limit` batches with their Delta versions, newest first.
    pub fn published_batches(&self, limit: usize) -> Result<Vec<PublishedBatch>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT b.batch_seq, b.batch_id, b.kind, b.committed_at, d.delta_version
             FROM batches b LEFT JOIN delta_versions d USING (batch_seq) ORDER BY b.batch_seq DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64], |r| {
            Ok(PublishedBatch {
                batch_seq: r.get(0)?,
                batch_id: r.get(1)?,
                kind: r.get(2)?,
                committed_at: r.get(3)?,
                delta_version: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Batches of `kind` with no Delta version yet, oldest first, each with
    /// the time to read the store at (see [`Store::publish_delta`]).
    fn unpublished(&self, kind: RecordKind) -> Result<Vec<(i64, i64)>, StoreError> {
        // Never publish an older state over a newer one: should a later batch
        // already be published (another process), read at its time at least.
        let floor: i64 = self.conn.query_row(
            "SELECT COALESCE(MAX(b.committed_at_ms), 0) FROM delta_versions d JOIN batches b USING (batch_seq) WHERE d.kind = ?1",
            params![kind.dir()],
            |r| r.get(0),
        )?;
        let mut stmt = self.conn.prepare(
            "SELECT b.batch_seq, b.committed_at_ms FROM batches b LEFT JOIN delta_versions d USING (batch_seq)
             WHERE b.kind = ?1 AND d.batch_seq IS NULL ORDER BY b.batch_seq",
        )?;
        let rows = stmt.query_map(params![kind.dir()], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?.max(floor))))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The partition months a batch wrote.
    fn batch_months(&self, batch_seq: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT DISTINCT month FROM batch_files WHERE batch_seq = ?1 ORDER BY month")?;
        let rows = stmt.query_map(params![batch_seq], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn record_delta_version(&self, batch_seq: i64, kind: RecordKind, version: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO delta_versions (batch_seq, kind, delta_version, published_at) VALUES (?1, ?2, ?3, ?4)",
            params![batch_seq, kind.dir(), version, Utc::now().to_rfc3339()],
        )?;
        Ok(())
    }

    /// The highest Delta version state.db records for `kind`'s table.
    fn last_recorded_version(&self, kind: RecordKind) -> Result<Option<i64>, StoreError> {
        let v = self.conn.query_row("SELECT MAX(delta_version) FROM delta_versions WHERE kind = ?1", params![kind.dir()], |r| r.get(0))?;
        Ok(v)
    }

    fn forget_delta_versions(&self, kind: RecordKind) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM delta_versions WHERE kind = ?1", params![kind.dir()])?;
        Ok(())
    }
}

/// Why a publication failed. The embedded store is untouched either way;
/// the batches stay unpublished and the next publication replays them.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The store could not be read or the catalog not updated.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A file of the table could not be read or written.
    #[error("Delta table file {}: {source}. Check the folder's free space and permissions; the next collect or `manyi publish` catches it up", path.display())]
    File {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The table's log is not one manyi can continue (another tool changed
    /// the table, or part of its log is gone).
    #[error("Delta table {}: {message}. Run `manyi publish --rebuild` to write it afresh from the store (the old folder is kept beside it as <name>.replaced-<time>)", table.display())]
    Refused {
        /// The table folder.
        table: PathBuf,
        /// What manyi found.
        message: String,
    },
    /// Another writer committed the version manyi was about to write.
    #[error("Delta table {}: version {version} was committed by another writer while manyi published; only manyi should write this table. Run `manyi publish` again, or `manyi publish --rebuild` if another tool writes to it", table.display())]
    Conflict {
        /// The table folder.
        table: PathBuf,
        /// The version already taken.
        version: i64,
    },
    /// The month's rows could not be turned into the table's columns.
    #[error("Delta table {}: {message}", table.display())]
    Data {
        /// The table folder.
        table: PathBuf,
        /// What did not fit.
        message: String,
    },
    /// The folder of a table being rebuilt could not be moved aside.
    #[error("Delta table {}: cannot move it aside for the rebuild: {source}", table.display())]
    MoveAside {
        /// The table folder.
        table: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The lock that keeps two processes from publishing at once could not be taken.
    #[error("Delta tables in {}: cannot take the publication lock .publish.lock: {source}", root.display())]
    Lock {
        /// The folder of the Delta tables.
        root: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What one publication did for one table.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// `ratings` or `responses`.
    pub table: String,
    /// Batches given a Delta version.
    pub batches: usize,
    /// The table's version afterwards (`None`: nothing to publish and no table yet).
    pub version: Option<i64>,
}

impl Store {
    /// Brings the Delta tables under `root` (`ratings/`, `responses/`)
    /// up to the catalog: each batch without a Delta version, oldest
    /// first, becomes one Delta commit replacing the months it touched,
    /// read as the catalog resolves them at the batch's commit time.
    /// With `rebuild`, each table folder is first moved aside
    /// (`<name>.replaced-<time>`) and every batch is replayed.
    pub fn publish_delta(&mut self, root: &Path, rebuild: bool) -> Result<Vec<Published>, PublishError> {
        // One publisher per process: the intake committer and a collect
        // may finish batches at the same moment.
        static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = ONE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // … and one across processes (a collect, `manyi publish`, the
        // intake in `serve`): two publishers replaying the same batches
        // would each add the months' files. The OS lock is released when
        // the file closes, also on a crash.
        let _across = lock_publication(root)?;
        let mut out = Vec::new();
        for kind in [RecordKind::Ratings, RecordKind::Responses] {
            let dir = root.join(kind.dir());
            // A table folder deleted, or restored from an older backup,
            // lacks commits state.db says it has: publishing only the
            // new batches would give readers a table missing months.
            // Replay every batch instead, as `--rebuild` does.
            let recorded = self.last_recorded_version(kind)?;
            let lost = recorded.is_some_and(|r| last_commit(&dir).is_none_or(|v| v < r));
            if lost && !rebuild {
                tracing::warn!(
                    table = %dir.display(),
                    recorded = recorded.unwrap_or_default(),
                    on_disk = last_commit(&dir).unwrap_or(-1),
                    "the Delta table lacks versions state.db records (deleted or restored from an older copy): republishing every batch"
                );
            }
            if rebuild || lost {
                move_aside(&dir)?;
                self.forget_delta_versions(kind)?;
            }
            out.push(self.publish_kind(kind, &dir)?);
        }
        Ok(out)
    }

    fn publish_kind(&mut self, kind: RecordKind, dir: &Path) -> Result<Published, PublishError> {
        let mut done = Published { table: kind.dir().into(), ..Default::default() };
        let pending = self.unpublished(kind)?;
        if pending.is_empty() {
            return Ok(done);
        }
        // Read once: under the lock only this loop writes the table.
        let mut table = DeltaTable::open(dir, kind)?;
        // Batches read at the same instant are one Delta commit: the parts
        // of a large file commit together (see `PartedBatch`), and each read
        // at that instant sees all of them, so a commit a part would write
        // the same months again for every part (nine times a month for a
        // province's monthly file of 2.3 M rows).
        for group in pending.chunk_by(|a, b| a.1 == b.1) {
            let as_of_ms = group[0].1;
            let mut months = Vec::new();
            for &(seq, _) in group {
                months.extend(self.batch_months(seq)?);
            }
            months.sort();
            months.dedup();
            let last = group[group.len() - 1].0;
            let v = match (done.version, months.is_empty()) {
                // Nothing stored by these batches: the table is as it was.
                (Some(v), true) => v,
                _ => self.publish_batch(&mut table, kind, last, as_of_ms, &months)?,
            };
            crash_point("after-delta-commit");
            for &(seq, _) in group {
                self.record_delta_version(seq, kind, v)?;
            }
            done.version = Some(v);
            done.batches += group.len();
        }
        Ok(done)
    }

    /// One Delta commit for batch `seq`: each of its months written as a new
    /// data file, then the log entry that swaps them for the months' old files.
    fn publish_batch(
        &self,
        table: &mut DeltaTable,
        kind: RecordKind,
        seq: i64,
        as_of_ms: i64,
        months: &[String],
    ) -> Result<i64, PublishError> {
        let created = table.create_if_absent()?;
        if months.is_empty() {
            return Ok(created);
        }
        let mut adds = Vec::with_capacity(months.len());
        for (n, month) in months.iter().enumerate() {
            let mut df = self.month_frame(kind, month, as_of_ms)?;
            adds.push(table.write_month(month, seq, n, &mut df)?);
        }
        // The data files are written, the log entry is not: a crash here
        // leaves files no reader lists (a later vacuum removes them).
        crash_point("before-delta-commit");
        let months: BTreeSet<String> = months.iter().cloned().collect();
        table.replace_months(&months, adds, seq)
    }

    /// One month as the catalog resolves it at `as_of_ms` (latest version of
    /// each record), with the data file's columns and types.
    fn month_frame(&self, kind: RecordKind, month: &str, as_of_ms: i64) -> Result<DataFrame, PublishError> {
        let as_of = chrono::DateTime::from_timestamp_millis(as_of_ms).unwrap_or_default();
        let months = [month.to_string()];
        let lf = match kind {
            RecordKind::Ratings => self.ratings(&months, as_of)?,
            RecordKind::Responses => self.responses(&months, as_of)?,
        };
        let sorted = lf.sort([kind.id_column()], SortMultipleOptions::default().with_maintain_order(true));
        delta_log::conform(sorted, kind).collect().map_err(|e| PublishError::Store(StoreError::Parquet(e)))
    }
}

/// Waits for and holds the exclusive lock `<root>/.publish.lock`.
fn lock_publication(root: &Path) -> Result<std::fs::File, PublishError> {
    let io = |source| PublishError::Lock { root: root.to_path_buf(), source };
    std::fs::create_dir_all(root).map_err(io)?;
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(root.join(".publish.lock")).map_err(io)?;
    file.lock().map_err(io)?;
    Ok(file)
}

/// Renames a table folder to `<name>.replaced-<UTC time>`; nothing to do if absent.
fn move_aside(dir: &Path) -> Result<(), PublishError> {
    if !dir.exists() {
        return Ok(());
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let aside = dir.with_file_name(format!("{name}.replaced-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ")));
    std::fs::rename(dir, &aside).map_err(|source| PublishError::MoveAside { table: dir.to_path_buf(), source })
}

/// The highest commit in the table's `_delta_log` (its version), read
/// from the file names (`00000000000000000014.json`); none without one.
fn last_commit(dir: &Path) -> Option<i64> {
    let entries = std::fs::read_dir(dir.join("_delta_log")).ok()?;
    entries.flatten().filter_map(|e| e.file_name().to_str().and_then(delta_log::commit_version)).max()
}
