//! The embedded store: a data directory of raw landing files, quarantine CSVs,
//! Hive-partitioned Parquet, and the SQLite catalog `state.db`.
//!
//! ```text
//! data/landing/<source>/<yyyy-mm-dd>/<batch>.<ext>        raw, as received
//! data/quarantine/<source>/<batch>.csv                    rejected rows + reason
//! data/curated/ratings/month=YYYY-MM/<batch>.parquet      append-only
//! data/curated/responses/month=YYYY-MM/<batch>.parquet
//! data/state.db                                           catalog, keys, runs, deliveries
//! ```
//!
//! The commit protocol: a batch's Parquet files are written under a temporary
//! name, fsynced and renamed while an IMMEDIATE SQLite transaction is held;
//! the batch row, its file list, the record keys and the source watermark are
//! then committed together. A large file is handed over a part at a time
//! ([`PartedBatch`]): each part is a batch of its own, and all of them are
//! committed in the one transaction. Readers list files from the catalog, never from
//! the directory, so a file left by a crash before the commit is invisible and
//! the batch is simply fetched again.

mod accounts;
mod catalog;
mod delta_log;
mod frames;
mod publish;
mod run_lock;

pub use accounts::{AuditRow, Monitor, UserRow};
pub use catalog::{DeliveryRecord, DeliveryState, LockHolder, NewRun, RunOutcome, RunRecord, UnknownState};
pub use frames::{RATING_COLUMNS, ratings_frame, responses_frame};
pub use publish::PublishedBatch;
pub use publish::{PublishError, Published};
pub use run_lock::{RunLockGuard, RunLockHolder};

use crate::model::{Rating, SurveyResponse};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use polars::prelude::*;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors of the store. Each names the file or table involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file or folder of the data directory could not be written or read.
    #[error("data directory: {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// state.db failed.
    #[error("state.db: {0}")]
    Sql(#[from] rusqlite::Error),
    /// Writing or reading Parquet failed.
    #[error("curated Parquet: {0}")]
    Parquet(#[from] PolarsError),
    /// Another process holds the lock.
    #[error("{0}")]
    Busy(String),
    /// The catalog and the files of the data directory disagree: a report
    /// from them would be wrong without a word (n = 0 from a lost state.db,
    /// another month's rows in a replaced file), so nothing is reported.
    #[error("the data directory is damaged, nothing was reported: {problem}. {remedy}")]
    Inconsistent {
        /// What does not match.
        problem: String,
        /// What the operator should restore.
        remedy: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// Below this many records of one source a batch looks its keys up one by
/// one; from it on, it merges them with one ordered scan of the stored keys
/// (see `commit`).
const MERGE_LOOKUP_MIN: usize = 2_000;

/// The rows of a version query, column by column: for each (source, record
/// id) listed, one batch that holds a version of it.
#[derive(Debug, Default)]
struct VersionIds {
    sources: Vec<String>,
    ids: Vec<String>,
    batches: Vec<i64>,
}

/// A record's row of `stored_keys`, as a batch finds it.
#[derive(Debug, Clone)]
struct StoredKey {
    /// Content hash of the latest version.
    hash: [u8; 16],
    /// The batch of the latest version.
    last_batch: i64,
    /// Versions stored so far.
    versions: i64,
}

/// A Parquet file of a batch, as `batch_files` lists it.
struct BatchFile {
    /// Partition month, `YYYY-MM`.
    month: String,
    /// Path relative to the data directory.
    path: String,
    /// Records in the file.
    rows: usize,
    /// Rows of the Parquet file (a response is several).
    parquet_rows: usize,
}

/// A record a batch writes, with its content hash and what it is to the catalog.
struct Pending<'a, T> {
    record: &'a T,
    /// Its position in the payload.
    pos: usize,
    hash: ContentHash,
    version: Version,
}

/// What committing one record writes, besides its Parquet row and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    /// Never seen: only `record_keys` learns of it.
    First,
    /// Its second version: the first (in batch `first_batch`) and this one
    /// both enter `record_versions`, which lists only ids seen more than once.
    Second {
        /// The batch of the first version.
        first_batch: i64,
    },
    /// A third or later version: the earlier ones are listed already.
    Later,
}

/// What committing a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Catalog sequence number (0 when the batch stored nothing new).
    pub batch_seq: i64,
    /// Records never seen before.
    pub new: usize,
    /// Records seen before with different content: stored as a new version.
    pub updated: usize,
    /// Records seen before with the same content: not stored again.
    pub unchanged: usize,
    /// Of `unchanged`, the records whose id came again later in the same
    /// batch with other content, so that only the later one was stored: a
    /// platform's newer state of a record, or, in a file, ids that are not
    /// unique (different ratings then collapse into one).
    pub superseded: usize,
    /// A few of those ids, for the message that names them.
    pub superseded_ids: Vec<String>,
}

/// Ids [`BatchOutcome::superseded_ids`] keeps.
const SUPERSEDED_SHOWN: usize = 3;

/// A rejected row, kept with its reason.
#[derive(Debug, Clone)]
pub struct QuarantineRow {
    /// Line (or record number) in the landed payload.
    pub line: usize,
    /// The field at fault, if one.
    pub field: String,
    /// Why it was rejected, in words a clerk can act on.
    pub reason: String,
    /// The original values, in the order of `headers`.
    pub values: Vec<String>,
}

/// The two kinds of curated record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// 好差评 ratings.
    Ratings,
    /// Questionnaire responses (long form).
    Responses,
}

impl RecordKind {
    fn id_column(self) -> &'static str {
        match self {
            RecordKind::Ratings => "rating_id",
            RecordKind::Responses => "response_id",
        }
    }

    fn dir(self) -> &'static str {
        match self {
            RecordKind::Ratings => "ratings",
            RecordKind::Responses => "responses",
        }
    }
}

/// The store over one data directory.
pub struct Store {
    root: PathBuf,
    conn: Connection,
}

/// A record the store can key, hash and partition.
trait Curated {
    fn key(&self) -> (&str, &str);
    /// The partition month as (year, month): formatted once per file, not per record.
    fn month(&self) -> (i32, u32);
    fn hash(&self) -> ContentHash;
}

/// A record's content hash as `stored_keys` holds it: the first 16 bytes of
/// its SHA-256 (the view `record_keys` shows them as the 32 hex digits that
/// stores before the compact tables held). Kept inline, not as a `Vec`: a
/// batch holds one per record, 800,000 small allocations in a province's file.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ContentHash([u8; 16]);

impl ContentHash {
    fn of(digest: &[u8; 32]) -> ContentHash {
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        ContentHash(first)
    }
}

impl Curated for Rating {
    fn key(&self) -> (&str, &str) {
        (&self.source, &self.rating_id)
    }
    fn month(&self) -> (i32, u32) {
        (self.rated_at.year(), self.rated_at.month())
    }
    fn hash(&self) -> ContentHash {
        // Field by field, each with its length, straight into SHA-256: the
        // same digest power as hashing a serialisation, without building one
        // (escaping the Chinese text through serde_json was a tenth of the
        // ingest time). Changing this order changes every stored hash, so a
        // re-sent record would count once as a new version: keep it.
        // rater_hash is left out: it is keyed, and a rotated key must not
        // turn every re-sent rating into a new version.
        let mut h = Sha256::new();
        let mut text = |s: &str| {
            h.update((s.len() as u32).to_le_bytes());
            h.update(s.as_bytes());
        };
        text(&self.rating_id);
        text(&self.source);
        text(&self.org_code);
        text(&self.category);
        text(&self.service_item);
        text(&self.department);
        text(&self.reason_tags);
        text(&self.comment);
        text(self.follow_up.map(|f| f.name()).unwrap_or("-"));
        text(&self.revisit);
        let rectified = self.rectified_at.map(|t| t.and_utc().timestamp()).unwrap_or(i64::MIN);
        h.update(self.rated_at.and_utc().timestamp().to_le_bytes());
        h.update(rectified.to_le_bytes());
        h.update([self.channel, self.level.code(), u8::from(self.anonymous)]);
        // Only a default rating adds to the digest, so the hashes of every
        // rating stored before the mark existed stay what they were.
        if self.default_rating {
            h.update(b"default");
        }
        ContentHash::of(&h.finalize().into())
    }
}

/// Responses are keyed by (source, response_id) like ratings.
pub struct SourcedResponse<'a> {
    /// The source it came from.
    pub source: &'a str,
    /// The response.
    pub response: &'a SurveyResponse,
}

impl Curated for SourcedResponse<'_> {
    fn key(&self) -> (&str, &str) {
        (self.source, &self.response.response_id)
    }
    fn month(&self) -> (i32, u32) {
        (self.response.submitted_at.year(), self.response.submitted_at.month())
    }
    fn hash(&self) -> ContentHash {
        content_hash(self.response)
    }
}

fn content_hash<T: serde::Serialize>(v: &T) -> ContentHash {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    ContentHash::of(&Sha256::digest(&bytes).into())
}

impl Store {
    /// Opens (creating if needed) the store in `root`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        let db = root.join("state.db");
        let conn = Connection::open(&db)?;
        catalog::init(&conn)?;
        run_lock::init(&conn)?;
        accounts::init(&conn)?;
        publish::init(&conn)?;
        Ok(Store { root: root.to_path_buf(), conn })
    }

    /// How long this connection's statements wait for another process's
    /// write lock before they fail (ten minutes unless set): the site's
    /// sign-in waits half a minute, then tells the user to try again.
    pub fn set_write_wait(&self, wait: std::time::Duration) -> Result<(), StoreError> {
        Ok(self.conn.busy_timeout(wait)?)
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The landing folder of `source` for `day`, where raw payloads are kept
    /// exactly as received: a handle that another thread can write to while
    /// this one commits (see [`Landing`]).
    pub fn landing(&self, source: &str, day: NaiveDate) -> Landing {
        Landing { dir: self.root.join("landing").join(source).join(day.format("%Y-%m-%d").to_string()) }
    }

    /// Writes the rejected rows of a batch with their reasons (UTF-8 with a
    /// BOM so that Excel opens the Chinese text); returns the path, or `None`
    /// when nothing was rejected.
    pub fn quarantine(
        &self,
        source: &str,
        batch_id: &str,
        headers: &[String],
        rows: &[QuarantineRow],
    ) -> Result<Option<PathBuf>, StoreError> {
        if rows.is_empty() {
            return Ok(None);
        }
        let mut file = QuarantineFile::create(quarantine_path(&self.root, source, batch_id), headers)?;
        file.append(rows)?;
        file.close().map(Some)
    }

    /// Commits a batch of ratings (see the module docs for the protocol).
    pub fn commit_ratings(&mut self, batch: &BatchMeta, ratings: &[Rating]) -> Result<BatchOutcome, StoreError> {
        let mut parts = self.begin_batch(RecordKind::Ratings, &batch.batch_id)?;
        parts.add_ratings(ratings)?;
        parts.finish(batch)
    }

    /// Commits a batch of questionnaire responses.
    pub fn commit_responses(&mut self, batch: &BatchMeta, responses: &[SurveyResponse]) -> Result<BatchOutcome, StoreError> {
        let mut parts = self.begin_batch(RecordKind::Responses, &batch.batch_id)?;
        parts.add_responses(&batch.source, responses)?;
        parts.finish(batch)
    }

    /// Opens a batch that is handed its records a part at a time
    /// ([`PartedBatch::add_ratings`]) and committed whole at the end
    /// ([`PartedBatch::finish`]), so that a file of millions of rows need
    /// not be in memory at once. The IMMEDIATE transaction is held from
    /// here to the end: no other writer commits in between, and nothing of
    /// the batch is visible before [`PartedBatch::finish`].
    pub fn begin_batch(&mut self, kind: RecordKind, batch_id: &str) -> Result<PartedBatch<'_>, StoreError> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let first_seq: i64 = tx.query_row("SELECT COALESCE(MAX(batch_seq), 0) + 1 FROM batches", [], |r| r.get(0))?;
        Ok(PartedBatch {
            root: &self.root,
            tx: Some(tx),
            kind,
            batch_id: batch_id.to_string(),
            first_seq,
            parts: Vec::new(),
            quarantine: None,
            repeated: BTreeSet::new(),
        })
    }

    /// The ratings visible at `as_of` for the given months, latest version of
    /// each, as a lazy frame with the columns of [`RATING_COLUMNS`].
    pub fn ratings(&self, months: &[String], as_of: DateTime<Utc>) -> Result<LazyFrame, StoreError> {
        self.snapshot(RecordKind::Ratings, months, as_of, || ratings_frame::<Rating>(&[], 0))
    }

    /// The questionnaire answers visible at `as_of` for the given months.
    pub fn responses(&self, months: &[String], as_of: DateTime<Utc>) -> Result<LazyFrame, StoreError> {
        self.snapshot(RecordKind::Responses, months, as_of, || responses_frame::<SurveyResponse>("", &[], 0))
    }

    fn snapshot(
        &self,
        kind: RecordKind,
        months: &[String],
        as_of: DateTime<Utc>,
        empty: impl Fn() -> PolarsResult<DataFrame>,
    ) -> Result<LazyFrame, StoreError> {
        let as_of_ms = as_of.timestamp_millis();
        self.settle_writers()?;
        self.check_catalog_not_lost()?;
        let mut listed = Vec::new();
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT f.path, f.parquet_rows FROM batch_files f JOIN batches b USING (batch_seq)
                 WHERE b.kind = ?1 AND f.month = ?2 AND b.committed_at_ms <= ?3 ORDER BY f.batch_seq",
            )?;
            for m in months {
                let rows =
                    stmt.query_map(params![kind.dir(), m, as_of_ms], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?)))?;
                for row in rows {
                    listed.push(row?);
                }
            }
        }
        let paths = self.check_listed_files(&listed)?;
        if paths.is_empty() {
            return Ok(empty()?.lazy());
        }
        self.latest_versions(kind, self.scan(kind, &paths)?, as_of_ms)
    }

    fn scan(&self, kind: RecordKind, paths: &[PathBuf]) -> Result<LazyFrame, StoreError> {
        let sources: Vec<PlRefPath> = paths.iter().map(|p| PlRefPath::try_from_path(p)).collect::<PolarsResult<_>>()?;
        if kind == RecordKind::Ratings {
            // Older files lack newer columns; see `frames::scan_ratings`.
            return Ok(frames::scan_ratings(sources)?);
        }
        let args = ScanArgsParquet { hive_options: HiveOptions::new_disabled(), ..Default::default() };
        Ok(LazyFrame::scan_parquet_files(sources.into_iter().collect(), args)?)
    }

    /// Keeps, of each id seen more than once, the latest version committed
    /// by `as_of_ms`; ids seen once pass untouched.
    fn latest_versions(&self, kind: RecordKind, lf: LazyFrame, as_of_ms: i64) -> Result<LazyFrame, StoreError> {
        let latest = self.version_ids(
            kind,
            "SELECT v.source, v.record_id, MAX(v.batch_seq) FROM record_versions v JOIN batches b USING (batch_seq)
             WHERE v.kind = ?1 AND b.committed_at_ms <= ?2 GROUP BY v.source, v.record_id",
            as_of_ms,
        )?;
        if latest.ids.is_empty() {
            return Ok(lf);
        }
        Ok(with_version_mark(kind, lf, latest)?.filter(col("__seq").is_null().or(col("batch_seq").eq(col("__seq")))).drop(cols(["__seq"])))
    }

    fn version_ids(&self, kind: RecordKind, sql: &str, ms: i64) -> Result<VersionIds, StoreError> {
        let mut out = VersionIds::default();
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows =
            stmt.query_map(params![kind.dir(), ms], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))?;
        for row in rows {
            let (source, id, batch) = row?;
            out.sources.push(source);
            out.ids.push(id);
            out.batches.push(batch);
        }
        Ok(out)
    }

    /// Ratings first committed after `after` and by `until` (latest version
    /// of each): what is new since a previous run, whatever month it is
    /// dated in. A rating whose follow-up changed is not new again.
    pub fn ratings_new_between(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Result<LazyFrame, StoreError> {
        let (after_ms, until_ms) = (after.timestamp_millis(), until.timestamp_millis());
        self.settle_writers()?;
        self.check_catalog_not_lost()?;
        let mut listed = Vec::new();
        {
            let mut stmt = self.conn.prepare_cached(
                "SELECT f.path, f.parquet_rows FROM batch_files f JOIN batches b USING (batch_seq)
                 WHERE b.kind = 'ratings' AND b.committed_at_ms > ?1 AND b.committed_at_ms <= ?2 ORDER BY f.batch_seq",
            )?;
            for row in stmt.query_map(params![after_ms, until_ms], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?)))? {
                listed.push(row?);
            }
        }
        let paths = self.check_listed_files(&listed)?;
        if paths.is_empty() {
            return Ok(ratings_frame::<Rating>(&[], 0)?.lazy());
        }
        let lf = self.latest_versions(RecordKind::Ratings, self.scan(RecordKind::Ratings, &paths)?, until_ms)?;
        let seen = self.version_ids(
            RecordKind::Ratings,
            "SELECT v.source, v.record_id, MIN(v.batch_seq) FROM record_versions v JOIN batches b USING (batch_seq)
             WHERE v.kind = ?1 AND b.committed_at_ms <= ?2 GROUP BY v.source, v.record_id",
            after_ms,
        )?;
        if seen.ids.is_empty() {
            return Ok(lf);
        }
        // Ids with a version committed by `after` were announced before.
        Ok(with_version_mark(RecordKind::Ratings, lf, seen)?.filter(col("__seq").is_null()).drop(cols(["__seq"])))
    }

    /// Waits until no other process is between stamping a batch's commit
    /// time and committing it.
    ///
    /// Why: a writer stamps its batch's commit time inside its transaction,
    /// a moment before the commit lands. A reader whose as-of falls in that
    /// moment would miss the batch now and see it on every rerun with the
    /// same as-of. Taking (and at once releasing) the stamp lock before
    /// reading closes the gap: a writer that stamped before the reader's
    /// as-of has then committed, and one that had not yet stamped stamps a
    /// later time. (Wall clocks are assumed not to step backwards.) The
    /// stamp lock, not SQLite's write lock: a large file holds the write
    /// lock while it is read and handed over part by part (most of a
    /// minute for a year in one file), and a report waited all that time,
    /// or failed after 30 s.
    fn settle_writers(&self) -> Result<(), StoreError> {
        drop(stamp_lock(&self.root)?);
        Ok(())
    }

    /// Refuses a catalog that has lost its batches while curated files exist:
    /// a missing, emptied or replaced state.db would otherwise report n = 0.
    fn check_catalog_not_lost(&self) -> Result<(), StoreError> {
        let batches: i64 = self.conn.query_row("SELECT COUNT(*) FROM batches", [], |r| r.get(0))?;
        if batches > 0 {
            return Ok(());
        }
        let curated = self.root.join("curated");
        let mut files = 0usize;
        for kind in [RecordKind::Ratings, RecordKind::Responses] {
            let Ok(months) = fs::read_dir(curated.join(kind.dir())) else { continue };
            for month in months.flatten() {
                let Ok(entries) = fs::read_dir(month.path()) else { continue };
                files += entries.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "parquet")).count();
            }
        }
        if files == 0 {
            return Ok(());
        }
        Err(StoreError::Inconsistent {
            problem: format!(
                "{} lists no batch, but {} holds {files} Parquet file(s): state.db is missing, empty or not this directory's",
                self.root.join("state.db").display(),
                curated.display()
            ),
            remedy: "Restore data/state.db from its backup (stop `manyi serve` first); do not collect into this directory until then"
                .into(),
        })
    }

    /// Checks each file the catalog lists for a read: it exists and holds
    /// the rows the catalog recorded (the Parquet footer, not the data, is
    /// read). Returns the absolute paths.
    fn check_listed_files(&self, listed: &[(String, Option<i64>)]) -> Result<Vec<PathBuf>, StoreError> {
        let mut paths = Vec::with_capacity(listed.len());
        for (rel, rows) in listed {
            let path = self.root.join(rel);
            let remedy = || format!("Restore {} from a backup of the data directory", path.display());
            let file = fs::File::open(&path).map_err(|e| StoreError::Inconsistent {
                problem: format!("{}: {e} (state.db lists it)", path.display()),
                remedy: remedy(),
            })?;
            let found = ParquetReader::new(file).num_rows().map_err(|e| StoreError::Inconsistent {
                problem: format!("{}: not a readable Parquet file: {e}", path.display()),
                remedy: remedy(),
            })?;
            if let Some(rows) = rows
                && found as i64 != *rows
            {
                return Err(StoreError::Inconsistent {
                    problem: format!(
                        "{} holds {found} rows, state.db recorded {rows} when it was committed (the file was replaced)",
                        path.display()
                    ),
                    remedy: remedy(),
                });
            }
            paths.push(path);
        }
        Ok(paths)
    }

    /// Counts for a report footer, per source, of what was committed up to
    /// `as_of`: batches, **distinct** records stored and **distinct** rows
    /// quarantined.
    ///
    /// A record is stored once however often it is received: `rows_new`
    /// counts each (source, record id) the first time only, so their sum is
    /// the number of distinct records (a new version of a record is not
    /// another record; the figures count each record once too). A rejected
    /// row fetched again (the overlap window of an API, a file sent twice) is
    /// quarantined again: it is counted once by its content, the header and
    /// value of every cell (which includes the record id), whatever its line
    /// or the order of the columns (see [`Store::distinct_quarantined`]).
    pub fn provenance(&self, as_of: DateTime<Utc>) -> Result<Vec<SourceProvenance>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT source, SUM(part_of IS NULL), SUM(rows_new), MAX(committed_at)
             FROM batches WHERE committed_at_ms <= ?1 GROUP BY source ORDER BY source",
        )?;
        let rows = stmt.query_map(params![as_of.timestamp_millis()], |r| {
            Ok(SourceProvenance { source: r.get(0)?, batches: r.get(1)?, records: r.get(2)?, quarantined: 0, last_commit: r.get(3)? })
        })?;
        let mut out: Vec<SourceProvenance> = rows.collect::<Result<_, _>>()?;
        for p in &mut out {
            p.quarantined = self.distinct_quarantined(&p.source, as_of)?;
        }
        Ok(out)
    }

    /// The distinct rows in the quarantine files of `source`'s batches
    /// committed up to `as_of`. A row is its cells keyed by header (the
    /// columns 行号, 问题字段 and 原因, and an API record's 页码 and 页内序号,
    /// left out: the same row has another place in another payload). A quarantine file that is gone or unreadable
    /// counts its batch's `rows_quarantined` as they were recorded.
    fn distinct_quarantined(&self, source: &str, as_of: DateTime<Utc>) -> Result<i64, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT quarantine, rows_quarantined FROM batches
             WHERE source = ?1 AND committed_at_ms <= ?2 AND rows_quarantined > 0 ORDER BY batch_seq",
        )?;
        let batches =
            stmt.query_map(params![source, as_of.timestamp_millis()], |r| Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?)))?;
        let mut seen = std::collections::HashSet::new();
        let mut unreadable = 0i64;
        for batch in batches {
            let (file, rows) = batch?;
            // The file's own folder under this data directory: the path was
            // recorded as the data directory was named then.
            let path = file.as_deref().and_then(|f| Path::new(f).file_name()).map(|n| self.root.join("quarantine").join(source).join(n));
            match path.map(|p| quarantine_keys(&p)) {
                Some(Ok(keys)) => seen.extend(keys),
                Some(Err(e)) => {
                    tracing::warn!(source, error = %e, "quarantine file unreadable; its rows are counted as recorded");
                    unreadable += rows;
                }
                None => unreadable += rows,
            }
        }
        Ok(seen.len() as i64 + unreadable)
    }
}

/// Columns of a quarantine file that say where a row was, not what it was:
/// the page and position of an API record, which change when it is fetched again.
const POSITION_COLUMNS: [&str; 2] = ["页码", "页内序号"];

/// The content key of each row of a quarantine file (see [`Store::distinct_quarantined`]).
fn quarantine_keys(path: &Path) -> Result<Vec<[u8; 32]>, csv::Error> {
    let bytes = fs::read(path)?;
    let body = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&bytes);
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(body);
    let headers = rdr.headers()?.clone();
    let mut keys = Vec::new();
    for rec in rdr.records() {
        let rec = rec?;
        let mut cells: Vec<(&str, &str)> =
            headers.iter().zip(rec.iter()).skip(3).filter(|(name, _)| !POSITION_COLUMNS.contains(name)).collect();
        cells.sort_unstable();
        let mut h = Sha256::new();
        for (name, value) in cells {
            // Lengths first, so that no two rows of cells run into the same bytes.
            for part in [name, value] {
                h.update((part.len() as u64).to_le_bytes());
                h.update(part.as_bytes());
            }
        }
        keys.push(h.finalize().into());
    }
    Ok(keys)
}

fn quarantine_path(root: &Path, source: &str, batch_id: &str) -> PathBuf {
    root.join("quarantine").join(source).join(format!("{batch_id}.csv"))
}

/// A quarantine file written as its rows come (a large file's rejected
/// rows a part at a time, never all in memory), under a temporary name
/// until [`QuarantineFile::close`] syncs it and gives it its own: UTF-8
/// with a BOM so that Excel opens the Chinese text, the row's line, field
/// and reason, then its cells under the payload's headers.
struct QuarantineFile {
    path: PathBuf,
    tmp: PathBuf,
    /// `None` once closed.
    out: Option<csv::Writer<std::io::BufWriter<fs::File>>>,
}

impl QuarantineFile {
    fn create(path: PathBuf, headers: &[String]) -> Result<QuarantineFile, StoreError> {
        make_folder(folder_of(&path))?;
        let tmp = temp_sibling(&path);
        let mut file = std::io::BufWriter::new(fs::File::create(&tmp).map_err(io_err(&tmp))?);
        file.write_all("\u{feff}".as_bytes()).map_err(io_err(&tmp))?;
        let out = csv::WriterBuilder::new().flexible(true).from_writer(file);
        let mut file = QuarantineFile { path, tmp, out: Some(out) };
        file.write(["行号", "问题字段", "原因"].into_iter().chain(headers.iter().map(String::as_str)))?;
        Ok(file)
    }

    fn write<'c>(&mut self, cells: impl IntoIterator<Item = &'c str>) -> Result<(), StoreError> {
        let err = |e: csv::Error| StoreError::Io { path: self.tmp.clone(), source: std::io::Error::other(e) };
        match self.out.as_mut() {
            Some(out) => out.write_record(cells).map_err(err),
            None => Err(err(csv::Error::from(std::io::Error::other("the quarantine file is closed")))),
        }
    }

    fn append(&mut self, rows: &[QuarantineRow]) -> Result<(), StoreError> {
        for r in rows {
            let line = r.line.to_string();
            self.write([line.as_str(), r.field.as_str(), r.reason.as_str()].into_iter().chain(r.values.iter().map(String::as_str)))?;
        }
        Ok(())
    }

    fn close(mut self) -> Result<PathBuf, StoreError> {
        let tmp = self.tmp.clone();
        let Some(out) = self.out.take() else { return Ok(self.path.clone()) };
        let file = out.into_inner().map_err(|e| StoreError::Io { path: tmp.clone(), source: std::io::Error::other(e.to_string()) })?;
        let file = file.into_inner().map_err(|e| StoreError::Io { path: tmp.clone(), source: e.into_error() })?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        sync_folder(folder_of(&self.path));
        Ok(self.path.clone())
    }
}

impl Drop for QuarantineFile {
    /// Not closed (an error, a batch dropped): the temporary goes; closed,
    /// it has its own name already and there is nothing to remove.
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// A batch being committed a part at a time (see [`Store::begin_batch`]).
///
/// Each part is a batch of the catalog of its own (its own `batch_seq`,
/// Parquet files and `batches` row, the first part under the batch's id,
/// the others under `<id>-part<k>`), all committed in the one transaction
/// at the same instant. Within a part the last occurrence of an id wins as
/// in any batch; an id that comes again in a later part with other content
/// is that part's new version of it, which every as-of read resolves to
/// the later part, as the batches commit together. So a file committed in
/// parts reads back exactly as the same file committed whole.
///
/// Dropped without [`PartedBatch::finish`] (an error, a file held at its
/// end), the transaction rolls back; Parquet files already written are
/// removed, and any a crash leaves are not listed and never read.
pub struct PartedBatch<'s> {
    root: &'s Path,
    /// `None` once committed.
    tx: Option<rusqlite::Transaction<'s>>,
    kind: RecordKind,
    batch_id: String,
    first_seq: i64,
    parts: Vec<Part>,
    /// The quarantine file, while rows are being added to it.
    quarantine: Option<QuarantineFile>,
    /// Ids an earlier part wrote that a later part brought with other
    /// content (see [`PartedBatch::repeated_in_parts`]).
    repeated: BTreeSet<Box<str>>,
}

/// One part of a [`PartedBatch`], committed at its end.
struct Part {
    seq: i64,
    /// The batch id of the part: the batch's own for the first.
    id: String,
    out: BatchOutcome,
    files: Vec<BatchFile>,
}

impl PartedBatch<'_> {
    /// Adds a part of ratings.
    pub fn add_ratings(&mut self, ratings: &[Rating]) -> Result<BatchOutcome, StoreError> {
        self.add(ratings, |rs, seq| ratings_frame(rs, seq))
    }

    /// Adds a part of questionnaire responses of `source`.
    pub fn add_responses(&mut self, source: &str, responses: &[SurveyResponse]) -> Result<BatchOutcome, StoreError> {
        let sourced: Vec<SourcedResponse> = responses.iter().map(|r| SourcedResponse { source, response: r }).collect();
        self.add(&sourced, |rs, seq| {
            let plain: Vec<&SurveyResponse> = rs.iter().map(|s| s.response).collect();
            responses_frame(source, &plain, seq)
        })
    }

    /// Adds rejected rows of the batch's payload to its quarantine file
    /// (made by the first, under a temporary name until
    /// [`PartedBatch::close_quarantine`]; removed if the batch is dropped).
    pub fn quarantine_rows(&mut self, source: &str, headers: &[String], rows: &[QuarantineRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let file = match &mut self.quarantine {
            Some(file) => file,
            None => self.quarantine.insert(QuarantineFile::create(quarantine_path(self.root, source, &self.batch_id), headers)?),
        };
        file.append(rows)
    }

    /// Syncs the quarantine file and gives it its name (see
    /// [`Store::quarantine`]): its path, or `None` when no row was rejected.
    pub fn close_quarantine(&mut self) -> Result<Option<PathBuf>, StoreError> {
        self.quarantine.take().map(QuarantineFile::close).transpose()
    }

    /// The ids that an earlier part of this batch wrote and a later part
    /// brought again with other content: each is stored twice, the earlier
    /// one a shadowed version. The figures are right, but the file sent
    /// again stores both once more (the first occurrence differs from what
    /// the last one stored), and its counts say "updated" for a file that
    /// changed nothing. A caller that can read the payload again holding
    /// these ids to their last occurrence drops this batch and does so.
    pub fn repeated_in_parts(&self) -> &BTreeSet<Box<str>> {
        &self.repeated
    }

    /// The batch id of part `k` (from 0): the batch's own, then `<id>-part2` ….
    fn part_id(&self, k: usize) -> String {
        match k {
            0 => self.batch_id.clone(),
            k => format!("{}-part{}", self.batch_id, k + 1),
        }
    }

    fn add<T: Curated + Sync>(
        &mut self,
        records: &[T],
        frame: impl Fn(&[&T], i64) -> PolarsResult<DataFrame> + Sync,
    ) -> Result<BatchOutcome, StoreError> {
        // No part of nothing: a file whose ratings all went in earlier
        // parts ends with none. (A batch with no part at all is still
        // committed, by `finish`.)
        if records.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let seq = self.first_seq + self.parts.len() as i64;
        let part_id = self.part_id(self.parts.len());
        let kind = self.kind;
        let Some(tx) = self.tx.as_ref() else { return Err(rusqlite::Error::InvalidQuery.into()) };
        let mut out = BatchOutcome { batch_seq: seq, ..Default::default() };

        // Classify against what is stored. Within the batch the last occurrence
        // of an id wins, as a platform's later page carries the newer state.
        // Sorting by (key, position) puts each id's occurrences side by side
        // with the last at the end of its run, so one sort both finds the
        // latest occurrences and gives the key order the look-ups want
        // (consecutive look-ups then walk the same B-tree pages, which on a
        // store of ten million keys is several times faster than the order
        // of the file). A hash map of every key cost as much as the sort.
        // A stable sort by key is that (key, position) order, and it finds
        // the runs already in key order: exports mostly list their records
        // by id or time, which made the unstable sort's quicksort (with the
        // position as a tie-break, no input is one sorted run) 4 % of an
        // ingest's CPU for a file of near-sorted ids.
        let mut all: Vec<usize> = (0..records.len()).collect();
        all.sort_by(|&a, &b| records[a].key().cmp(&records[b].key()));
        let mut order: Vec<usize> = Vec::with_capacity(all.len());
        for run in all.chunk_by(|&a, &b| records[a].key() == records[b].key()) {
            if let [earlier @ .., last] = run
                && !earlier.is_empty()
            {
                let kept = records[*last].hash();
                let other = earlier.iter().filter(|&&i| records[i].hash() != kept).count();
                if other > 0 {
                    out.superseded += other;
                    if out.superseded_ids.len() < SUPERSEDED_SHOWN {
                        out.superseded_ids.push(records[*last].key().1.to_string());
                    }
                }
            }
            order.extend(run.last());
        }
        drop(all);
        out.unchanged += records.len() - order.len();
        // An earlier part's keys are in `stored_keys` already (the same
        // transaction): an id it wrote is found here like any stored one.
        let mut found = stored_keys(tx, kind, records, &order)?;
        // In key order, as `write_keys` wants them.
        let mut to_write: Vec<Pending<'_, T>> = Vec::with_capacity(order.len());
        for &i in &order {
            let r = &records[i];
            let hash = r.hash();
            match found[i].take() {
                None => {
                    out.new += 1;
                    to_write.push(Pending { record: r, pos: i, hash, version: Version::First });
                }
                Some(stored) if stored.hash == hash.0 => out.unchanged += 1,
                Some(stored) => {
                    out.updated += 1;
                    if stored.last_batch >= self.first_seq {
                        self.repeated.insert(r.key().1.into());
                    }
                    let version = if stored.versions == 1 { Version::Second { first_batch: stored.last_batch } } else { Version::Later };
                    to_write.push(Pending { record: r, pos: i, hash, version });
                }
            }
        }
        drop(found);
        // The Parquet files keep the records in the order the payload sent them.
        let mut in_payload_order: Vec<&Pending<'_, T>> = to_write.iter().collect();
        in_payload_order.sort_unstable_by_key(|p| p.pos);

        // The Parquet files are encoded and written on a thread of their own
        // while this one writes the keys into the open transaction: the two
        // take about as long as each other on a large batch, and nothing of
        // either is visible before the commit, which waits for both.
        let root = self.root;
        let (files, keys) = std::thread::scope(|scope| {
            let parquet = scope.spawn(|| write_parquet(root, kind, &part_id, seq, &in_payload_order, ROW_GROUP_ROWS, &frame));
            let keys = write_keys(tx, kind, seq, &to_write);
            (parquet.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)), keys)
        });
        // Files written before the keys failed are remembered, so that the
        // rollback removes them (a half-written part's own files are never
        // listed, as after a crash).
        self.parts.push(Part { seq, id: part_id, out: out.clone(), files: files? });
        keys?;
        Ok(out)
    }

    /// Commits every part: a `batches` row each (the landing on each, the
    /// quarantine file and its count on the first, where a batch of one
    /// part has them), their files, the watermark. Returns the counts of
    /// all the parts together, under the last part's `batch_seq`.
    pub fn finish(mut self, batch: &BatchMeta) -> Result<BatchOutcome, StoreError> {
        if self.parts.is_empty() {
            // A payload with no good record is still a batch: its quarantine
            // and landing are listed, and a watermark advances.
            let seq = self.first_seq;
            let id = self.part_id(0);
            self.parts.push(Part { seq, id, out: BatchOutcome { batch_seq: seq, ..Default::default() }, files: Vec::new() });
        }
        crash_point("after-parquet");
        // Held from the stamp to the commit (see `Store::settle_writers`).
        let _stamping = stamp_lock(self.root)?;
        let now = Utc::now();
        let mut total = BatchOutcome::default();
        let Some(tx) = self.tx.as_ref() else { return Err(rusqlite::Error::InvalidQuery.into()) };
        let mut ins_file =
            tx.prepare_cached("INSERT INTO batch_files (batch_seq, month, path, rows, parquet_rows) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for (k, part) in self.parts.iter().enumerate() {
            let meta = match k {
                0 => batch.clone(),
                _ => BatchMeta { batch_id: part.id.clone(), quarantine: None, quarantined: 0, ..batch.clone() },
            };
            let part_of = (k > 0).then_some(self.first_seq);
            insert_batch(tx, part.seq, part_of, self.kind, &meta, &part.out, now)?;
            for f in &part.files {
                ins_file.execute(params![part.seq, f.month, f.path, f.rows as i64, f.parquet_rows as i64])?;
            }
            let mut ids = std::mem::take(&mut total.superseded_ids);
            ids.extend(part.out.superseded_ids.iter().cloned());
            ids.truncate(SUPERSEDED_SHOWN);
            total = BatchOutcome {
                batch_seq: part.seq,
                new: total.new + part.out.new,
                updated: total.updated + part.out.updated,
                unchanged: total.unchanged + part.out.unchanged,
                superseded: total.superseded + part.out.superseded,
                superseded_ids: ids,
            };
        }
        drop(ins_file);
        if let Some(w) = &batch.watermark {
            tx.execute(
                "INSERT INTO watermarks (source, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (source) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![batch.source, w, now.to_rfc3339()],
            )?;
        }
        pause_point("before-commit");
        if let Some(tx) = self.tx.take() {
            tx.commit()?;
        }
        // Committed: `Drop` must not remove the files now listed.
        self.parts.clear();
        Ok(total)
    }
}

impl Drop for PartedBatch<'_> {
    /// A batch dropped uncommitted: the transaction rolls back as it is
    /// dropped, and the files its parts wrote go with it.
    fn drop(&mut self) {
        for file in self.parts.iter().flat_map(|p| &p.files) {
            let _ = fs::remove_file(self.root.join(&file.path));
        }
    }
}

/// The stored key of each record listed in `order` (indices of `records`
/// sorted by key), `None` for a key never stored; records not listed get `None`.
fn stored_keys<T: Curated>(
    tx: &rusqlite::Transaction<'_>,
    kind: RecordKind,
    records: &[T],
    order: &[usize],
) -> Result<Vec<Option<StoredKey>>, StoreError> {
    let mut found: Vec<Option<StoredKey>> = vec![None; records.len()];
    let mut get = tx.prepare_cached("SELECT hash, last_batch, versions FROM stored_keys WHERE stream = ?1 AND record_id = ?2")?;
    let mut range = tx.prepare_cached(
        "SELECT record_id, hash, last_batch, versions FROM stored_keys
         WHERE stream = ?1 AND record_id BETWEEN ?2 AND ?3 ORDER BY record_id",
    )?;
    for group in order.chunk_by(|&a, &b| records[a].key().0 == records[b].key().0) {
        let source = records[group[0]].key().0;
        // A source never stored has no key to find.
        let Some(stream) = key_stream(tx, kind, source)? else {
            continue;
        };
        if group.len() < MERGE_LOOKUP_MIN {
            for &i in group {
                let id = records[i].key().1;
                found[i] = get
                    .query_row(params![stream, id], |row| {
                        Ok(StoredKey { hash: row.get(0)?, last_batch: row.get(1)?, versions: row.get(2)? })
                    })
                    .optional()?;
            }
            continue;
        }
        // A large batch: one ordered scan of the stored keys between
        // its first and last id, merged with its own sorted ids. New
        // ratings mostly carry ids above every stored one, so the scan
        // reads next to nothing; a re-sent file reads its own keys in
        // order instead of seeking each. SQLite's BINARY collation and
        // Rust's `str` order are both byte order, so the merge holds.
        let (lo, hi) = (records[group[0]].key().1, records[group[group.len() - 1]].key().1);
        let mut rows = range.query(params![stream, lo, hi])?;
        let mut next = 0;
        while let Some(row) = rows.next()? {
            let id = row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?;
            while next < group.len() && records[group[next]].key().1 < id {
                next += 1;
            }
            if next < group.len() && records[group[next]].key().1 == id {
                found[group[next]] = Some(StoredKey { hash: row.get(1)?, last_batch: row.get(2)?, versions: row.get(3)? });
                next += 1;
            }
        }
    }
    Ok(found)
}

/// Writes the batch's records as one Parquet file per month partition
/// (atomically, not yet listed in the catalog); returns the files.
/// Rows per Parquet row group: polars' own default (512²).
const ROW_GROUP_ROWS: usize = 512 * 512;

fn write_parquet<T: Curated>(
    root: &Path,
    kind: RecordKind,
    batch_id: &str,
    seq: i64,
    to_write: &[&Pending<'_, T>],
    group_rows: usize,
    frame: impl Fn(&[&T], i64) -> PolarsResult<DataFrame>,
) -> Result<Vec<BatchFile>, StoreError> {
    let mut by_month: BTreeMap<(i32, u32), Vec<&T>> = BTreeMap::new();
    for p in to_write {
        by_month.entry(p.record.month()).or_default().push(p.record);
    }
    let mut files = Vec::new();
    for ((year, month), rows) in by_month {
        let month = format!("{year:04}-{month:02}");
        let dir = root.join("curated").join(kind.dir()).join(format!("month={month}"));
        let path = dir.join(format!("{batch_id}.parquet"));
        // One frame per row group, not one for the month: a province's month
        // as a frame is another copy of every string of its 800,000 ratings
        // beside the ratings themselves. Row groups of polars' default size,
        // so the file is laid out as `ParquetWriter::finish` lays it out.
        let mut buf = Vec::new();
        let mut frames = rows.chunks(group_rows).map(|group| frame(group, seq));
        let Some(first) = frames.next() else { continue };
        let first = first?;
        let mut writer = ParquetWriter::new(&mut buf).with_compression(ParquetCompression::Zstd(None)).batched(first.schema())?;
        writer.write_batch(&first)?;
        let mut parquet_rows = first.height();
        drop(first);
        for df in frames {
            let df = df?;
            writer.write_batch(&df)?;
            parquet_rows += df.height();
        }
        writer.finish()?;
        drop(writer);
        write_atomic(&path, &buf)?;
        let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
        files.push(BatchFile { month, path: rel, rows: rows.len(), parquet_rows });
    }
    Ok(files)
}

/// The batch's row in `batches`: its commit time makes it visible to as-of reads.
fn insert_batch(
    tx: &rusqlite::Transaction<'_>,
    seq: i64,
    part_of: Option<i64>,
    kind: RecordKind,
    batch: &BatchMeta,
    out: &BatchOutcome,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO batches (batch_seq, batch_id, source, kind, committed_at_ms, committed_at, landing, quarantine, rows_new, rows_updated, rows_unchanged, rows_quarantined, part_of)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            seq,
            batch.batch_id,
            batch.source,
            kind.dir(),
            now.timestamp_millis(),
            now.to_rfc3339(),
            batch.landing.as_ref().map(|p| p.to_string_lossy().into_owned()),
            batch.quarantine.as_ref().map(|p| p.to_string_lossy().into_owned()),
            out.new as i64,
            out.updated as i64,
            out.unchanged as i64,
            batch.quarantined as i64,
            part_of
        ],
    )?;
    Ok(())
}

/// Advances `stored_keys` and `record_versions` for the records a batch
/// writes (`to_write`, in key order).
fn write_keys<T: Curated>(
    tx: &rusqlite::Transaction<'_>,
    kind: RecordKind,
    seq: i64,
    to_write: &[Pending<'_, T>],
) -> Result<(), StoreError> {
    let mut ins_ver =
        tx.prepare_cached("INSERT OR IGNORE INTO record_versions (kind, source, record_id, batch_seq) VALUES (?1, ?2, ?3, ?4)")?;
    // The stream of each record's source: a source's records are side by
    // side in key order, so each source is looked up (or made) once.
    let mut streams: Vec<i64> = Vec::with_capacity(to_write.len());
    let mut add_stream = tx.prepare_cached("INSERT OR IGNORE INTO key_streams (kind, source) VALUES (?1, ?2)")?;
    for group in to_write.chunk_by(|a, b| a.record.key().0 == b.record.key().0) {
        let source = group[0].record.key().0;
        add_stream.execute(params![kind.dir(), source])?;
        let stream = key_stream(tx, kind, source)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        streams.extend(std::iter::repeat_n(stream, group.len()));
    }
    // `to_write` is in key order, for the same reason as the look-ups of
    // `stored_keys`. The keys go in `KEYS_PER_UPSERT` to a statement: with
    // one row a statement, binding, stepping and resetting cost about as
    // much as the insert itself (perf: 1.15 s of a million keys, 0.63 s in
    // statements of 64). A batch's keys are distinct, so rows of one
    // statement never conflict with each other.
    let mut many = tx.prepare_cached(&upsert_sql(KEYS_PER_UPSERT))?;
    let mut one = tx.prepare_cached(&upsert_sql(1))?;
    for (rows, streams) in to_write.chunks(KEYS_PER_UPSERT).zip(streams.chunks(KEYS_PER_UPSERT)) {
        if rows.len() == KEYS_PER_UPSERT {
            upsert_keys(&mut many, seq, rows, streams)?;
        } else {
            for (row, stream) in rows.chunks(1).zip(streams.chunks(1)) {
                upsert_keys(&mut one, seq, row, stream)?;
            }
        }
    }
    for p in to_write {
        let (source, id) = p.record.key();
        // Only ids seen more than once enter record_versions, so the
        // as-of read resolves versions over this small set.
        match p.version {
            Version::First => {}
            Version::Second { first_batch } => {
                ins_ver.execute(params![kind.dir(), source, id, first_batch])?;
                ins_ver.execute(params![kind.dir(), source, id, seq])?;
            }
            Version::Later => {
                ins_ver.execute(params![kind.dir(), source, id, seq])?;
            }
        }
    }
    Ok(())
}

/// The number `key_streams` gives (kind, source), if it has one yet.
fn key_stream(tx: &rusqlite::Transaction<'_>, kind: RecordKind, source: &str) -> Result<Option<i64>, StoreError> {
    let mut find = tx.prepare_cached("SELECT stream FROM key_streams WHERE kind = ?1 AND source = ?2")?;
    Ok(find.query_row(params![kind.dir(), source], |r| r.get(0)).optional()?)
}

/// Keys written by one statement of [`write_keys`]: 64 × 3 + 1 parameters
/// stay far below SQLite's limit of 32,766.
const KEYS_PER_UPSERT: usize = 64;

/// The upsert of `rows` keys in one statement: a stored key gets the new
/// hash and one more version. `?1` is the batch.
fn upsert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows).map(|i| format!("(?{}, ?{}, ?{}, ?1, 1)", 2 + 3 * i, 3 + 3 * i, 4 + 3 * i)).collect();
    format!(
        "INSERT INTO stored_keys (stream, record_id, hash, last_batch, versions) VALUES {}
         ON CONFLICT (stream, record_id) DO UPDATE SET hash = excluded.hash, last_batch = excluded.last_batch, versions = versions + 1",
        values.join(", ")
    )
}

/// Runs the statement of [`upsert_sql`] for as many rows as it was made
/// for; `streams` holds the stream of each row's source.
fn upsert_keys<T: Curated>(
    upsert: &mut rusqlite::Statement<'_>,
    seq: i64,
    rows: &[Pending<'_, T>],
    streams: &[i64],
) -> Result<(), StoreError> {
    upsert.raw_bind_parameter(1, seq)?;
    for (i, (p, stream)) in rows.iter().zip(streams).enumerate() {
        upsert.raw_bind_parameter(2 + 3 * i, *stream)?;
        upsert.raw_bind_parameter(3 + 3 * i, p.record.key().1)?;
        upsert.raw_bind_parameter(4 + 3 * i, &p.hash.0[..])?;
    }
    upsert.raw_execute()?;
    Ok(())
}

/// Joins `__seq` (the batch of each listed id, null for ids not listed) onto a frame of records.
fn with_version_mark(kind: RecordKind, lf: LazyFrame, marks: VersionIds) -> PolarsResult<LazyFrame> {
    let id_col = kind.id_column();
    let marks = DataFrame::new(
        marks.ids.len(),
        vec![
            Column::new("source".into(), marks.sources),
            Column::new(id_col.into(), marks.ids),
            Column::new("__seq".into(), marks.batches),
        ],
    )?;
    Ok(lf.join(marks.lazy(), [col("source"), col(id_col)], [col("source"), col(id_col)], JoinArgs::new(JoinType::Left)))
}

/// What a report footer says about one source.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SourceProvenance {
    /// Source name.
    pub source: String,
    /// Batches committed, a file committed in parts counting once.
    pub batches: i64,
    /// Distinct records stored (a record with several versions counts once).
    pub records: i64,
    /// Distinct rows quarantined (a row received twice counts once).
    pub quarantined: i64,
    /// Last commit time (UTC, RFC 3339).
    pub last_commit: String,
}

impl StoreError {
    /// Whether this is SQLite saying another process holds the store's
    /// write lock (after waiting for it): the same write may succeed later.
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Sql(e) if catalog::is_busy(e))
    }
}

/// Describes a batch being committed.
#[derive(Debug, Clone)]
pub struct BatchMeta {
    /// Unique batch id; names the Parquet files.
    pub batch_id: String,
    /// Source name.
    pub source: String,
    /// The landed raw payload.
    pub landing: Option<PathBuf>,
    /// The quarantine file, if rows were rejected.
    pub quarantine: Option<PathBuf>,
    /// Rows rejected.
    pub quarantined: usize,
    /// New watermark of the source, committed with the batch.
    pub watermark: Option<String>,
}

/// One landing folder (a source's payloads of one day), written apart from
/// the store's database so that the collectors land on a thread of their
/// own (API pages one by one, inbox files as they are read) while the
/// committing thread writes Parquet and SQLite: landing is mostly waiting
/// for fsyncs (about 0.5 ms each on the benchmark machine, two a page, and
/// far longer for a 100 MB file), and the committing thread waited for
/// every one of them.
///
/// [`Landing::put`] makes each payload whole under its name (never a
/// half-written file) but leaves the rename to the folder's next
/// [`Landing::sync`]: a caller must sync before it commits anything that
/// names what it landed, so that a commit never outlives its landed
/// payload in a power cut. One folder sync for a commit's hundred pages
/// instead of one a page.
#[derive(Debug, Clone)]
pub struct Landing {
    dir: PathBuf,
}

impl Landing {
    /// Writes `bytes` whole as `<name>.<ext>` in the folder; returns its path.
    pub fn put(&self, name: &str, ext: &str, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let path = self.dir.join(format!("{name}.{ext}"));
        write_whole(&path, bytes)?;
        Ok(path)
    }

    /// [`Landing::put`] of the file at `from`, copied by the kernel: a file
    /// too large to read whole is landed without passing through memory.
    pub fn put_copy(&self, name: &str, ext: &str, from: &Path) -> Result<PathBuf, StoreError> {
        let path = self.dir.join(format!("{name}.{ext}"));
        make_folder(&self.dir)?;
        let tmp = temp_sibling(&path);
        fs::copy(from, &tmp).map_err(io_err(&tmp))?;
        fs::OpenOptions::new().write(true).open(&tmp).and_then(|f| f.sync_all()).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(path)
    }

    /// Makes the names of everything put so far survive a power cut.
    pub fn sync(&self) {
        sync_folder(&self.dir);
    }
}

/// Writes `bytes` so that `path` holds either nothing or all of them: a
/// temporary sibling, fsync, rename, then fsync of the folder so that the
/// rename itself survives a power cut.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_whole(path, bytes)?;
    sync_folder(folder_of(path));
    Ok(())
}

/// The folder `path` is in: `.` for a bare file name, whose `parent()` is
/// the empty path (which neither `stat` nor `open` accepts).
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// [`write_atomic`] without the folder's fsync: the file's bytes are durable
/// before its name points at them, the name itself only after the folder is
/// synced (by [`sync_folder`], once for many files).
pub fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    make_folder(folder_of(path))?;
    let tmp = temp_sibling(path);
    {
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// The stamp lock of the data directory `root`, taken (waiting for it)
/// and held until the file returned is dropped: a commit holds it from
/// stamping its time to committing, a reader takes it for an instant to
/// wait such a commit out (see `Store::settle_writers`). An OS file lock,
/// released by the kernel if its holder dies.
fn stamp_lock(root: &Path) -> Result<fs::File, StoreError> {
    let path = root.join(".commit-stamp.lock");
    let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
    file.lock().map_err(io_err(&path))?;
    Ok(file)
}

/// The temporary name a file is written under beside `path` before it is
/// renamed there: hidden, and this process's, so that two writers never
/// share one and an inbox listing skips it.
fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    folder_of(path).join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Creates `dir` and any missing folders above it, each made durable: a new
/// folder's name is an entry in its parent, and until the parent is synced a
/// power cut can take the folder away with every file synced into it (the
/// first landing of a day went into a new day folder that only the folder
/// itself was synced for). An existing folder costs one `stat`.
pub fn make_folder(dir: &Path) -> Result<(), StoreError> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let parent = folder_of(dir);
    make_folder(parent)?;
    match fs::create_dir(dir) {
        Ok(()) => {
            sync_folder(parent);
            Ok(())
        }
        // Another thread or process made it first: what it made is as good.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        // The OS says only "File exists", which reads as if all were well.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(io_err(dir)(std::io::Error::new(e.kind(), "a file is there where a folder is needed; move it away")))
        }
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Fsyncs a folder so that the renames into it survive a power cut. A
/// filesystem that cannot open or sync a folder (some network mounts) is
/// let be, as it was before: the files themselves are synced.
pub fn sync_folder(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Test hook for the crash tests: when the environment variable
/// `MANYI_CRASH_AT` names `point` (`after-land`, `after-parquet`,
/// `after-commit`, and for the Delta publication `before-delta-commit`,
/// `after-delta-commit`), the process aborts there, as a power cut or a SIGKILL
/// would stop it. Not meant for production use; unset, it does nothing.
pub fn crash_point(point: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if AT.get_or_init(|| std::env::var("MANYI_CRASH_AT").ok()).as_deref() == Some(point) {
        eprintln!("manyi: MANYI_CRASH_AT={point}: aborting as the crash test asked");
        std::process::abort();
    }
}

/// Test hook for the as-of tests: `MANYI_PAUSE_AT=before-commit:MS` makes a
/// commit wait MS milliseconds after stamping its time and before committing,
/// to put a reader's as-of inside that moment. Unset, it does nothing.
pub fn pause_point(point: &str) {
    static AT: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| {
        let v = std::env::var("MANYI_PAUSE_AT").ok()?;
        let (p, ms) = v.split_once(':')?;
        Some((p.to_string(), ms.parse().ok()?))
    });
    if let Some((p, ms)) = at
        && p == point
    {
        std::thread::sleep(std::time::Duration::from_millis(*ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Level;

    fn rating(id: usize, level: u8) -> Rating {
        let at = NaiveDate::from_ymd_opt(2026, 10, 1 + (id % 28) as u32).and_then(|d| d.and_hms_opt(9, 0, 0)).unwrap_or_default();
        let level = Level::from_code(level).unwrap_or(Level::ALL_DESC[0]);
        Rating::example(&format!("R{id:06}"), "drop", "369901001001", "health", at, level)
    }

    #[test]
    fn a_landing_makes_the_folders_it_needs_and_names_one_in_the_way() {
        let dir = tempfile::tempdir().expect("tempdir");
        let landing = dir.path().join("landing/api/2026-11-28");
        let put = Landing { dir: landing.clone() }.put("page-1", "json", b"{}").expect("landed");
        assert_eq!(std::fs::read(&put).expect("read"), b"{}");
        // Again into the folder now there: nothing to make.
        Landing { dir: landing.clone() }.put("page-2", "json", b"[]").expect("landed again");
        let names: Vec<_> = std::fs::read_dir(&landing).expect("dir").filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary left: {names:?}");
        // A file where a folder should be is named in the error.
        std::fs::write(dir.path().join("landing/web"), b"x").expect("file");
        let err = Landing { dir: dir.path().join("landing/web/2026-11-28") }.put("p", "json", b"{}").expect_err("blocked");
        assert!(err.to_string().contains("landing/web"), "{err}");
    }

    fn meta(id: &str) -> BatchMeta {
        BatchMeta { batch_id: id.into(), source: "drop".into(), landing: None, quarantine: None, quarantined: 0, watermark: None }
    }

    /// An id sent twice in one batch is stored once, as its last occurrence
    /// says, whether or not it was stored before.
    #[test]
    fn within_a_batch_the_last_occurrence_of_an_id_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("store");
        let out = store.commit_ratings(&meta("b1"), &[rating(1, 5)]).expect("commit");
        assert_eq!((out.new, out.updated, out.unchanged), (1, 0, 0));
        // R1 (stored at 5) comes as 2 then 1, R2 (new) as 3 then 4, R3 once.
        let batch = [rating(1, 2), rating(2, 3), rating(1, 1), rating(3, 5), rating(2, 4)];
        let out = store.commit_ratings(&meta("b2"), &batch).expect("commit");
        assert_eq!((out.new, out.updated, out.unchanged), (2, 1, 2));
        assert_eq!(october(&store), [("R000001".to_string(), 1), ("R000002".to_string(), 4), ("R000003".to_string(), 5)]);
    }

    /// (id, level) of every rating October reads as, sorted.
    fn october(store: &Store) -> Vec<(String, i32)> {
        let df = store.ratings(&["2026-10".into()], Utc::now()).expect("read").collect().expect("collect");
        let ids = df.column("rating_id").expect("id").str().expect("str").clone();
        let levels = df.column("level").expect("level").i32().expect("i32").clone();
        let mut got: Vec<(String, i32)> =
            (0..df.height()).map(|i| (ids.get(i).unwrap_or_default().to_string(), levels.get(i).unwrap_or(0))).collect();
        got.sort();
        got
    }

    /// A batch handed over in parts reads back as the batch whole: an id
    /// in two parts is the later part's, an id sent again unchanged is not
    /// stored again. Dropped before `finish`, it leaves no batch, key or file.
    #[test]
    fn a_batch_in_parts_reads_as_the_batch_whole_and_dropped_leaves_nothing() {
        let before: Vec<Rating> = (0..6).map(|i| rating(i, 5)).collect();
        // R1 changes in part 1 and again in part 3; R7 is new in part 1 and
        // changes in part 2; R2 comes unchanged in parts 1 and 3.
        let parts: [Vec<Rating>; 3] =
            [vec![rating(1, 2), rating(7, 3), rating(2, 5)], vec![rating(7, 4), rating(8, 1)], vec![rating(1, 1), rating(2, 5)]];
        let whole: Vec<Rating> = parts.iter().flatten().cloned().collect();
        let (a, b) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
        let (mut one, mut many) = (Store::open(a.path()).expect("store"), Store::open(b.path()).expect("store"));
        one.commit_ratings(&meta("b0"), &before).expect("commit");
        many.commit_ratings(&meta("b0"), &before).expect("commit");
        let out = one.commit_ratings(&meta("b1"), &whole).expect("commit");
        // Whole: R1 updated once, R7 and R8 new, R2 unchanged, the three
        // earlier occurrences (R1, R7, R2) unchanged within the batch.
        assert_eq!((out.new, out.updated, out.unchanged), (2, 1, 4));
        let mut batch = many.begin_batch(RecordKind::Ratings, "b1").expect("begin");
        let outs: Vec<(usize, usize, usize)> =
            parts.iter().map(|p| batch.add_ratings(p).expect("part")).map(|o| (o.new, o.updated, o.unchanged)).collect();
        assert_eq!(outs, [(1, 1, 1), (1, 1, 0), (0, 1, 1)]);
        let out = batch.finish(&meta("b1")).expect("finish");
        assert_eq!((out.new, out.updated, out.unchanged), (2, 3, 2));
        assert_eq!(october(&one), october(&many));
        assert_eq!(october(&many).iter().find(|(id, _)| id == "R000001"), Some(&("R000001".to_string(), 1)));
        let ids: Vec<String> = {
            let mut stmt = many.conn.prepare("SELECT batch_id FROM batches ORDER BY batch_seq").expect("prepare");
            stmt.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
        };
        assert_eq!(ids, ["b0", "b1", "b1-part2", "b1-part3"]);
        // Counted where people count batches (a report's 数据来源) as the two that came.
        let sources = many.provenance(Utc::now()).expect("provenance");
        assert_eq!((sources[0].batches, sources[0].records), (2, 8));

        // Dropped: the transaction rolls back and the parts' files go.
        let files = |dir: &Path| walkdir(&dir.join("curated"));
        let (keys, listed) = (key_count(&many), files(b.path()));
        let mut batch = many.begin_batch(RecordKind::Ratings, "b2").expect("begin");
        batch.add_ratings(&[rating(20, 3), rating(1, 4)]).expect("part");
        batch.add_ratings(&[rating(21, 3)]).expect("part");
        assert!(files(b.path()).len() > listed.len(), "the parts wrote their files");
        drop(batch);
        assert_eq!(files(b.path()), listed);
        assert_eq!(key_count(&many), keys);
        assert_eq!(october(&many), october(&one));
    }

    fn key_count(store: &Store) -> i64 {
        store.conn.query_row("SELECT COUNT(*) FROM stored_keys", [], |r| r.get(0)).expect("count")
    }

    fn walkdir(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { out.extend(walkdir(&p)) } else { out.push(p) }
        }
        out.sort();
        out
    }

    /// The inline hash is the first half of the SHA-256, which stores
    /// before the compact tables held as 32 hex digits: keys migrated from
    /// them (`unhex` of that text) must still match unchanged records.
    #[test]
    fn the_inline_content_hash_is_the_first_half_of_the_digest() {
        let digest: [u8; 32] = Sha256::digest("满意".as_bytes()).into();
        assert_eq!(ContentHash::of(&digest).0[..], digest[..16]);
        assert_eq!(hex::encode(ContentHash::of(&digest).0), hex::encode(&digest[..16]));
    }

    /// A month written a row group at a time reads back as the one frame
    /// of the month: every row, in payload order, in as many row groups as
    /// the group size makes.
    #[test]
    fn a_month_written_in_row_groups_reads_back_whole_and_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ratings: Vec<Rating> = [7, 3, 9, 1, 8, 2, 6, 4].iter().map(|&i| rating(i, 1 + (i % 5) as u8)).collect();
        let pending: Vec<Pending<'_, Rating>> =
            ratings.iter().enumerate().map(|(pos, r)| Pending { record: r, pos, hash: r.hash(), version: Version::First }).collect();
        let refs: Vec<&Pending<'_, Rating>> = pending.iter().collect();
        let files = write_parquet(dir.path(), RecordKind::Ratings, "b1", 4, &refs, 3, |rs, seq| ratings_frame(rs, seq)).expect("write");
        assert_eq!(files.len(), 1);
        assert_eq!((files[0].rows, files[0].parquet_rows), (8, 8));
        let mut reader = ParquetReader::new(std::fs::File::open(dir.path().join(&files[0].path)).expect("open"));
        assert_eq!(reader.get_metadata().expect("metadata").row_groups.len(), 3, "8 rows in groups of 3");
        let got = reader.finish().expect("read");
        let want = ratings_frame(&ratings, 4).expect("frame");
        assert!(got.equals_missing(&want), "{got}\n{want}");
    }

    /// Keys are upserted 64 to a statement and the rest one by one: every
    /// key of a batch that is not a multiple of 64 gets its hash, batch and
    /// version count, through a first, a second and a later version.
    #[test]
    fn keys_written_in_statements_of_many_rows_keep_every_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::open(dir.path()).expect("store");
        let n = 2 * KEYS_PER_UPSERT + 22;
        for (batch, level) in [("b1", 5), ("b2", 4), ("b3", 3)] {
            let ratings: Vec<Rating> = (0..n).map(|i| rating(i, level)).collect();
            let out = store.commit_ratings(&meta(batch), &ratings).expect("commit");
            assert_eq!(out.new + out.updated, n, "{batch}");
        }
        let keys: Vec<(String, i64, i64)> = {
            let mut stmt =
                store.conn.prepare("SELECT record_id, last_batch, versions FROM record_keys ORDER BY record_id").expect("prepare");
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).expect("query");
            rows.collect::<Result<_, _>>().expect("rows")
        };
        let want: Vec<(String, i64, i64)> = (0..n).map(|i| (format!("R{i:06}"), 3, 3)).collect();
        assert_eq!(keys, want);
        let versions: i64 = store.conn.query_row("SELECT COUNT(*) FROM record_versions", [], |r| r.get(0)).expect("count");
        assert_eq!(versions, 3 * n as i64);
        // The stored hash is the latest content's: the same batch again is unchanged.
        let again: Vec<Rating> = (0..n).map(|i| rating(i, 3)).collect();
        let out = store.commit_ratings(&meta("b4"), &again).expect("commit");
        assert_eq!((out.new, out.updated, out.unchanged), (0, 0, n));
    }

    /// Both ways of classifying a batch (one look-up per key under
    /// `MERGE_LOOKUP_MIN`, the ordered merge from it on) must agree.
    #[test]
    fn large_and_small_batches_classify_keys_alike() {
        for (size, label) in [(MERGE_LOOKUP_MIN / 4, "look-ups"), (MERGE_LOOKUP_MIN * 2, "merge")] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut store = Store::open(dir.path()).expect("store");
            // Stored: the even ids up to 2 × size.
            let first: Vec<Rating> = (0..size).map(|i| rating(2 * i, 5)).collect();
            let out = store.commit_ratings(&meta("b1"), &first).expect("commit");
            assert_eq!((out.new, out.updated, out.unchanged), (size, 0, 0), "{label}");
            // The batch: every id up to 2 × size, interleaving new odd ids
            // with stored even ones; every fourth stored one changed.
            let second: Vec<Rating> = (0..2 * size).map(|i| rating(i, if i % 8 == 0 { 1 } else { 5 })).collect();
            let out = store.commit_ratings(&meta("b2"), &second).expect("commit");
            assert_eq!((out.new, out.updated, out.unchanged), (size, size / 4, size - size / 4), "{label}");
            // Again: nothing new, nothing changed.
            let out = store.commit_ratings(&meta("b3"), &second).expect("commit");
            assert_eq!((out.new, out.updated, out.unchanged), (0, 0, 2 * size), "{label}");
            // The read sees each id once, the changed ones at level 1.
            let df = store.ratings(&["2026-10".into()], Utc::now()).expect("read").collect().expect("collect");
            assert_eq!(df.height(), 2 * size, "{label}");
            let ones = df.column("level").expect("level").as_materialized_series().equal(1).expect("eq").sum().unwrap_or(0);
            assert_eq!(ones as usize, size / 4, "{label}");
        }
    }

    /// Turns the catalog of `dir` back into the form stores before the
    /// compact key tables wrote: `record_keys` a table of text holding the
    /// same keys, the compact tables empty.
    fn make_catalog_old(dir: &Path) {
        let conn = Connection::open(dir.join("state.db")).expect("open");
        conn.execute_batch(
            "CREATE TABLE old_keys AS SELECT * FROM record_keys;
             DROP VIEW record_keys;
             CREATE TABLE record_keys (
                 kind TEXT NOT NULL, source TEXT NOT NULL, record_id TEXT NOT NULL, hash TEXT NOT NULL,
                 last_batch INTEGER NOT NULL, versions INTEGER NOT NULL,
                 PRIMARY KEY (kind, source, record_id)) WITHOUT ROWID;
             INSERT INTO record_keys SELECT * FROM old_keys;
             DROP TABLE old_keys;
             DELETE FROM stored_keys;
             DELETE FROM key_streams;",
        )
        .expect("old form");
    }

    /// Every row of `record_keys` (kind, source, id, hash, last batch, versions), by id.
    fn key_rows(conn: &Connection) -> Vec<(String, String, String, String, i64, i64)> {
        let mut stmt = conn.prepare("SELECT * FROM record_keys ORDER BY record_id").expect("prepare");
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))).expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    /// A state.db whose keys are the old text table opens with them moved
    /// into the compact tables: the same rows through the view, re-sent
    /// records still unchanged, a changed one a second version.
    #[test]
    fn keys_of_an_old_catalog_are_moved_and_still_match() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first: Vec<Rating> = (0..5).map(|i| rating(i, 5)).collect();
        let before = {
            let mut store = Store::open(dir.path()).expect("store");
            store.commit_ratings(&meta("b1"), &first).expect("commit");
            key_rows(&store.conn)
        };
        assert_eq!(before.len(), 5);
        assert!(before.iter().all(|k| k.3.len() == 32 && k.3.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())));
        make_catalog_old(dir.path());

        let mut store = Store::open(dir.path()).expect("store opens and migrates");
        // The migration's VACUUM ran with its temporary copy on disk and
        // gave the statement journals back to memory (catalog::SCHEMA).
        let temp_store: i64 = store.conn.query_row("PRAGMA temp_store", [], |r| r.get(0)).expect("temp_store");
        assert_eq!(temp_store, 2, "temp_store = MEMORY");
        let kind: String =
            store.conn.query_row("SELECT type FROM sqlite_master WHERE name = 'record_keys'", [], |r| r.get(0)).expect("type");
        assert_eq!(kind, "view");
        assert_eq!(key_rows(&store.conn), before);
        let out = store.commit_ratings(&meta("b2"), &first).expect("commit");
        assert_eq!((out.new, out.updated, out.unchanged), (0, 0, 5));
        let out = store.commit_ratings(&meta("b3"), &[rating(2, 1), rating(7, 3)]).expect("commit");
        assert_eq!((out.new, out.updated, out.unchanged), (1, 1, 0));
        assert_eq!(
            store.conn.query_row("SELECT versions FROM record_keys WHERE record_id = 'R000002'", [], |r| r.get::<_, i64>(0)).expect("v"),
            2
        );
        // Opening again leaves the migrated catalog as it is.
        drop(store);
        let store = Store::open(dir.path()).expect("store");
        let n: i64 = store.conn.query_row("SELECT COUNT(*) FROM stored_keys", [], |r| r.get(0)).expect("count");
        assert_eq!(n, 6);
        // The old table's pages went back to the file system.
        let free: i64 = store.conn.query_row("PRAGMA freelist_count", [], |r| r.get(0)).expect("freelist");
        assert_eq!(free, 0);
    }

    /// A hash that is not 32 hex digits stops the migration with the
    /// record named, and leaves the old table as it was.
    #[test]
    fn an_old_catalog_with_a_damaged_hash_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut store = Store::open(dir.path()).expect("store");
            store.commit_ratings(&meta("b1"), &[rating(1, 5), rating(2, 4)]).expect("commit");
        }
        make_catalog_old(dir.path());
        let conn = Connection::open(dir.path().join("state.db")).expect("open");
        conn.execute("UPDATE record_keys SET hash = 'not-a-hash' WHERE record_id = 'R000002'", []).expect("damage");
        drop(conn);
        let err = Store::open(dir.path()).err().expect("refused").to_string();
        assert!(err.contains("R000002") && err.contains("not-a-hash") && err.contains("backup"), "{err}");
        let conn = Connection::open(dir.path().join("state.db")).expect("open");
        let n: i64 = conn.query_row("SELECT COUNT(*) FROM record_keys", [], |r| r.get(0)).expect("count");
        assert_eq!(n, 2, "the old table is untouched");
    }

    /// Several processes opening one new data directory at the same
    /// instant (a `manyi collect` and `serve` on a fresh install) all get
    /// the store: none fails with "database is locked" while another turns
    /// the new file to WAL.
    #[test]
    fn a_new_store_opened_by_many_at_once_opens_for_all() {
        for round in 0..20 {
            let dir = tempfile::tempdir().expect("tempdir");
            let start = std::sync::Arc::new(std::sync::Barrier::new(6));
            let opens: Vec<_> = (0..6)
                .map(|_| {
                    let (root, start) = (dir.path().to_path_buf(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        Store::open(&root).map(|_| ()).map_err(|e| e.to_string())
                    })
                })
                .collect();
            for open in opens {
                let result = open.join().expect("thread");
                assert!(result.is_ok(), "round {round}: {result:?}");
            }
        }
    }
}
