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
//! publication replays them in order. The transaction log is written by
//! delta-rs (its commit is an atomic put of the next log entry), so a reader
//! never sees a half-applied batch.

use super::{RecordKind, Store, StoreError};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

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
    #[cfg_attr(not(feature = "delta"), allow(dead_code))]
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
    #[cfg_attr(not(feature = "delta"), allow(dead_code))]
    fn batch_months(&self, batch_seq: i64) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare_cached("SELECT DISTINCT month FROM batch_files WHERE batch_seq = ?1 ORDER BY month")?;
        let rows = stmt.query_map(params![batch_seq], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    #[cfg_attr(not(feature = "delta"), allow(dead_code))]
    fn record_delta_version(&self, batch_seq: i64, kind: RecordKind, version: i64) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO delta_versions (batch_seq, kind, delta_version, published_at) VALUES (?1, ?2, ?3, ?4)",
            params![batch_seq, kind.dir(), version, Utc::now().to_rfc3339()],
        )?;
        Ok(())
    }

    /// The highest Delta version state.db records for `kind`'s table.
    #[cfg_attr(not(feature = "delta"), allow(dead_code))]
    fn last_recorded_version(&self, kind: RecordKind) -> Result<Option<i64>, StoreError> {
        let v = self.conn.query_row("SELECT MAX(delta_version) FROM delta_versions WHERE kind = ?1", params![kind.dir()], |r| r.get(0))?;
        Ok(v)
    }

    #[cfg_attr(not(feature = "delta"), allow(dead_code))]
    fn forget_delta_versions(&self, kind: RecordKind) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM delta_versions WHERE kind = ?1", params![kind.dir()])?;
        Ok(())
    }
}

#[cfg(feature = "delta")]
pub use delta::{PublishError, Published};

#[cfg(feature = "delta")]
mod delta {
    use super::super::{RecordKind, Store, StoreError, crash_point};
    use deltalake_core::arrow::array::RecordBatch;
    use deltalake_core::arrow::compute::cast;
    use deltalake_core::arrow::datatypes::SchemaRef;
    use deltalake_core::kernel::transaction::{CommitBuilder, TableReference};
    use deltalake_core::kernel::{Action, DataType, StructField};
    use deltalake_core::parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    use deltalake_core::protocol::{DeltaOperation, SaveMode};
    use deltalake_core::writer::{DeltaWriter, RecordBatchWriter};
    use deltalake_core::{DeltaTable, DeltaTableError, ensure_table_uri};
    use futures::TryStreamExt;
    use polars::prelude::*;
    use std::collections::{BTreeSet, HashMap};
    use std::path::{Path, PathBuf};

    /// Why a publication failed. The embedded store is untouched either way;
    /// the batches stay unpublished and the next publication replays them.
    #[derive(Debug, thiserror::Error)]
    pub enum PublishError {
        /// The store could not be read or the catalog not updated.
        #[error("{0}")]
        Store(#[from] StoreError),
        /// delta-rs failed to read or write the table.
        #[error("Delta table {}: {source}. Check the folder's free space and permissions; the next collect or `manyi publish` catches it up", table.display())]
        Delta {
            /// The table folder.
            table: PathBuf,
            /// What delta-rs said.
            source: DeltaTableError,
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
        Io {
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

    /// The table's columns, in the order of the curated files plus `month`.
    fn columns(kind: RecordKind) -> Vec<StructField> {
        use DataType as T;
        let spec: &[(&str, T)] = match kind {
            RecordKind::Ratings => &[
                ("rating_id", T::STRING),
                ("source", T::STRING),
                ("rated_at", T::TIMESTAMP_NTZ),
                ("org_code", T::STRING),
                ("category", T::STRING),
                ("service_item", T::STRING),
                ("department", T::STRING),
                ("channel", T::INTEGER),
                ("level", T::INTEGER),
                ("reason_tags", T::STRING),
                ("comment", T::STRING),
                ("anonymous", T::BOOLEAN),
                ("rater_hash", T::STRING),
                ("follow_up", T::STRING),
                ("rectified_at", T::TIMESTAMP_NTZ),
                ("revisit", T::STRING),
                ("default_rating", T::BOOLEAN),
                ("batch_seq", T::LONG),
                ("month", T::STRING),
            ],
            RecordKind::Responses => &[
                ("response_id", T::STRING),
                ("source", T::STRING),
                ("survey", T::STRING),
                ("submitted_at", T::TIMESTAMP_NTZ),
                ("org_code", T::STRING),
                ("question", T::STRING),
                ("option", T::STRING),
                ("text", T::STRING),
                ("skipped", T::BOOLEAN),
                ("batch_seq", T::LONG),
                ("month", T::STRING),
            ],
        };
        // Wall time without zone, as in the curated files: `timestamp_ntz`.
        spec.iter().map(|(name, t)| StructField::new(*name, t.clone(), true)).collect()
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
            // each added the months' files, and delta-rs's conflict check let
            // both commits through, so a reader saw ratings twice. The OS
            // lock is released when the file closes, also on a crash.
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
            let mut version = None;
            for (seq, as_of_ms) in pending {
                let months = self.batch_months(seq)?;
                let parts = months
                    .iter()
                    .map(|m| Ok((m.clone(), self.month_batches(kind, m, as_of_ms, dir)?)))
                    .collect::<Result<Vec<_>, PublishError>>()?;
                let v = match (version, parts.is_empty()) {
                    // Nothing stored by this batch: the table is as it was.
                    (Some(v), true) => v,
                    _ => on_own_runtime(replace_months(dir, kind, parts, seq))?,
                };
                crash_point("after-delta-commit");
                self.record_delta_version(seq, kind, v)?;
                version = Some(v);
                done.batches += 1;
            }
            done.version = version;
            Ok(done)
        }

        /// One month as the catalog resolves it at `as_of_ms` (latest
        /// version of each record), as arrow-rs batches with a `month` column.
        fn month_batches(&self, kind: RecordKind, month: &str, as_of_ms: i64, dir: &Path) -> Result<Vec<RecordBatch>, PublishError> {
            let as_of = chrono::DateTime::from_timestamp_millis(as_of_ms).unwrap_or_default();
            let months = [month.to_string()];
            let lf = match kind {
                RecordKind::Ratings => self.ratings(&months, as_of)?,
                RecordKind::Responses => self.responses(&months, as_of)?,
            };
            let polars_err = |e: PolarsError| PublishError::Store(StoreError::Parquet(e));
            let mut df = lf
                .with_column(lit(month.to_string()).alias("month"))
                .sort([kind.id_column()], SortMultipleOptions::default().with_maintain_order(true))
                .collect()
                .map_err(polars_err)?;
            // polars keeps its own arrow; the plainest bridge to arrow-rs
            // (no unsafe FFI) is the Parquet encoding both understand.
            let mut buf = Vec::new();
            ParquetWriter::new(&mut buf).finish(&mut df).map_err(polars_err)?;
            let data_err =
                |e: &dyn std::fmt::Display| PublishError::Data { table: dir.to_path_buf(), message: format!("month {month}: {e}") };
            let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
            let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(bytes::Bytes::from(buf), options)
                .and_then(|b| b.build())
                .map_err(|e| data_err(&e))?;
            reader.collect::<Result<Vec<_>, _>>().map_err(|e| data_err(&e))
        }
    }

    /// Renames a table folder to `<name>.replaced-<UTC time>`; nothing to do if absent.
    /// Waits for and holds the exclusive lock `<root>/.publish.lock`.
    // `File::lock` is Rust 1.89; this module builds only with the `delta`
    // feature, whose deltalake-core needs Rust 1.95 anyway.
    #[allow(clippy::incompatible_msrv)]
    fn lock_publication(root: &Path) -> Result<std::fs::File, PublishError> {
        let io = |source| PublishError::Lock { root: root.to_path_buf(), source };
        std::fs::create_dir_all(root).map_err(io)?;
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(root.join(".publish.lock")).map_err(io)?;
        file.lock().map_err(io)?;
        Ok(file)
    }

    fn move_aside(dir: &Path) -> Result<(), PublishError> {
        if !dir.exists() {
            return Ok(());
        }
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let aside = dir.with_file_name(format!("{name}.replaced-{}", chrono::Utc::now().format("%Y%m%dT%H%M%S%3fZ")));
        std::fs::rename(dir, &aside).map_err(|source| PublishError::Io { table: dir.to_path_buf(), source })
    }

    /// Runs a delta-rs future to completion on a thread of its own: the
    /// caller may itself be on a tokio worker (`serve`, `intake`), where
    /// blocking on another runtime is not allowed.
    fn on_own_runtime<T: Send>(fut: impl std::future::Future<Output = Result<T, PublishError>> + Send) -> Result<T, PublishError> {
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| PublishError::Io { table: PathBuf::from("(tokio runtime)"), source })?;
                rt.block_on(fut)
            });
            handle.join().unwrap_or_else(|_| {
                Err(PublishError::Data { table: PathBuf::from("(publication)"), message: "the publishing thread panicked".into() })
            })
        })
    }

    /// The highest commit in the table's `_delta_log` (its version), read
    /// from the file names (`00000000000000000014.json`); none without one.
    fn last_commit(dir: &Path) -> Option<i64> {
        let entries = std::fs::read_dir(dir.join("_delta_log")).ok()?;
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".json")).and_then(|n| n.parse::<i64>().ok()))
            .max()
    }

    /// Opens the table, creating it (version 0, no rows) when absent.
    async fn open_or_create(dir: &Path, kind: RecordKind) -> Result<DeltaTable, DeltaTableError> {
        // delta-rs takes a URL; a relative `manyi.toml` path is made absolute first.
        let dir = std::path::absolute(dir).map_err(|e| DeltaTableError::InvalidTableLocation(format!("{}: {e}", dir.display())))?;
        let url = ensure_table_uri(dir.to_string_lossy())?;
        // Loading a folder that holds no commit yet makes delta-kernel log an
        // ERROR (“No files in log segment”) before delta-rs calls it “not a
        // table”: a clerk's first `manyi publish` would look failed. So a
        // table without a single commit file is created without that load.
        let table = if last_commit(&dir).is_some() {
            let table = DeltaTable::try_from_url(url).await?;
            if table.version().is_some() {
                return Ok(table);
            }
            table
        } else {
            deltalake_core::DeltaTableBuilder::from_url(url)?.build()?
        };
        table
            .create()
            .with_table_name(kind.dir())
            .with_comment("manyi curated records: the latest version of each, one Delta commit per manyi batch")
            .with_columns(columns(kind))
            .with_partition_columns(["month"])
            .with_save_mode(SaveMode::ErrorIfExists)
            .await
    }

    /// One Delta commit: every file of the months in `parts` removed, the
    /// months' rows added. Returns the new version.
    async fn replace_months(dir: &Path, kind: RecordKind, parts: Vec<(String, Vec<RecordBatch>)>, seq: i64) -> Result<i64, PublishError> {
        let delta = |source| PublishError::Delta { table: dir.to_path_buf(), source };
        let table = open_or_create(dir, kind).await.map_err(delta)?;
        if parts.is_empty() {
            return version_of(&table, dir);
        }
        let months: BTreeSet<String> = parts.iter().map(|(m, _)| m.clone()).collect();
        let mut actions: Vec<Action> = table
            .get_active_add_actions_by_partitions(&[])
            .try_filter(|f| {
                futures::future::ready(f.partition_values_map().get("month").and_then(|v| v.as_deref()).is_some_and(|m| months.contains(m)))
            })
            .map_ok(|f| Action::Remove(f.remove_action(true)))
            .try_collect()
            .await
            .map_err(delta)?;
        let mut writer = RecordBatchWriter::for_table(&table).map_err(delta)?;
        let schema = writer.arrow_schema();
        for batch in parts.into_iter().flat_map(|(_, b)| b) {
            let batch = conform(&batch, &schema).map_err(|message| PublishError::Data { table: dir.to_path_buf(), message })?;
            writer.write(batch).await.map_err(delta)?;
        }
        actions.extend(writer.flush().await.map_err(delta)?.into_iter().map(Action::Add));
        // The data files are written, the log entry is not: a crash here
        // leaves files no reader lists (a later vacuum removes them).
        crash_point("before-delta-commit");
        let quoted: Vec<String> = months.iter().map(|m| format!("'{m}'")).collect();
        let operation = DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: Some(vec!["month".into()]),
            predicate: Some(format!("month IN ({})", quoted.join(", "))),
        };
        let app = HashMap::from([("manyi.batch_seq".to_string(), serde_json::Value::from(seq))]);
        let snapshot: &dyn TableReference = table.snapshot().map_err(delta)?;
        let done = CommitBuilder::default()
            .with_actions(actions)
            .with_app_metadata(app)
            .build(Some(snapshot), table.log_store(), operation)
            .await
            .map_err(delta)?;
        i64::try_from(done.version()).map_err(|e| PublishError::Data { table: dir.to_path_buf(), message: e.to_string() })
    }

    fn version_of(table: &DeltaTable, dir: &Path) -> Result<i64, PublishError> {
        let v = table.version().unwrap_or_default();
        i64::try_from(v).map_err(|e| PublishError::Data { table: dir.to_path_buf(), message: e.to_string() })
    }

    /// The batch with the table's column types, in the table's order
    /// (milliseconds widened to the microseconds of `timestamp_ntz`, …).
    fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, String> {
        let mut columns = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let column = batch.column_by_name(field.name()).ok_or_else(|| format!("the curated rows have no column “{}”", field.name()))?;
            columns.push(cast(column, field.data_type()).map_err(|e| format!("column “{}”: {e}", field.name()))?);
        }
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
    }
}
