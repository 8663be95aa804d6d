//! manyi's own Delta Lake writer: the small subset of the Delta protocol
//! its two tables need, written with what the crate already has (polars
//! writes the Parquet data files, serde_json the transaction log).
//!
//! What is written (the shape delta-rs 1.1 wrote for the same tables, so a
//! table begun by an older manyi is continued as is):
//!
//! - version 0: `commitInfo` (CREATE TABLE), `protocol` (reader 3 / writer 7
//!   with the `timestampNtz` feature on both sides: the timestamps are wall
//!   time without zone) and `metaData` (schema, `partitionColumns: [month]`);
//! - every later version: `commitInfo` (WRITE, mode Overwrite, the replaced
//!   months as predicate, `manyi.batch_seq`), a `remove` for each current
//!   file of the replaced months and an `add` (with statistics) for each new file.
//!
//! Not written: checkpoints, deletion vectors, column mapping, change data
//! feed, or any other table feature. A table whose log asks for one of them
//! (another tool changed it) is refused with a message that names
//! `manyi publish --rebuild`, never written over blindly.
//!
//! A commit is the creation of `_delta_log/<version>.json` with all its
//! content at once (a hard link of a complete, synced temporary file), which
//! fails if the version exists: two writers can never both commit version N.

use super::RecordKind;
use super::publish::PublishError;
use polars::prelude::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The partition column; its values live in the log and the folder names,
/// not in the data files.
pub(super) const PARTITION: &str = "month";

/// The Delta types of manyi's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnType {
    String,
    /// Wall time without zone, microseconds (`timestamp_ntz`).
    TimestampNtz,
    Integer,
    Long,
    Boolean,
}

impl ColumnType {
    fn delta_name(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::TimestampNtz => "timestamp_ntz",
            ColumnType::Integer => "integer",
            ColumnType::Long => "long",
            ColumnType::Boolean => "boolean",
        }
    }

    fn polars(self) -> DataType {
        match self {
            ColumnType::String => DataType::String,
            ColumnType::TimestampNtz => DataType::Datetime(TimeUnit::Microseconds, None),
            ColumnType::Integer => DataType::Int32,
            ColumnType::Long => DataType::Int64,
            ColumnType::Boolean => DataType::Boolean,
        }
    }
}

/// The table's columns in order, the partition column `month` last.
fn columns(kind: RecordKind) -> &'static [(&'static str, ColumnType)] {
    use ColumnType as T;
    match kind {
        RecordKind::Ratings => &[
            ("rating_id", T::String),
            ("source", T::String),
            ("rated_at", T::TimestampNtz),
            ("org_code", T::String),
            ("category", T::String),
            ("service_item", T::String),
            ("department", T::String),
            ("channel", T::Integer),
            ("level", T::Integer),
            ("reason_tags", T::String),
            ("comment", T::String),
            ("anonymous", T::Boolean),
            ("rater_hash", T::String),
            ("follow_up", T::String),
            ("rectified_at", T::TimestampNtz),
            ("revisit", T::String),
            ("default_rating", T::Boolean),
            ("batch_seq", T::Long),
            (PARTITION, T::String),
        ],
        RecordKind::Responses => &[
            ("response_id", T::String),
            ("source", T::String),
            ("survey", T::String),
            ("submitted_at", T::TimestampNtz),
            ("org_code", T::String),
            ("question", T::String),
            ("option", T::String),
            ("text", T::String),
            ("skipped", T::Boolean),
            ("batch_seq", T::Long),
            (PARTITION, T::String),
        ],
    }
}

/// The columns of a data file: the table's without the partition column.
fn data_columns(kind: RecordKind) -> impl Iterator<Item = (&'static str, ColumnType)> {
    columns(kind).iter().copied().filter(|(name, _)| *name != PARTITION)
}

/// The curated rows of `lf` with the data file's columns, names and types.
pub(super) fn conform(lf: LazyFrame, kind: RecordKind) -> LazyFrame {
    lf.select(data_columns(kind).map(|(name, t)| col(name).cast(t.polars())).collect::<Vec<_>>())
}

/// The `schemaString` of the table's metaData (Delta's JSON schema).
fn schema_string(kind: RecordKind) -> String {
    let fields: Vec<Value> =
        columns(kind).iter().map(|(name, t)| json!({"name": name, "type": t.delta_name(), "nullable": true, "metadata": {}})).collect();
    json!({"type": "struct", "fields": fields}).to_string()
}

/// A data file the table currently lists.
#[derive(Debug, Clone)]
struct ActiveFile {
    /// The `partitionValues` of its add action, repeated in its remove.
    partition_values: Value,
    size: i64,
}

impl ActiveFile {
    fn month(&self) -> Option<&str> {
        self.partition_values.get(PARTITION).and_then(Value::as_str)
    }
}

/// A Delta table as its log describes it, for one publisher holding the
/// publication lock.
pub(super) struct DeltaTable {
    dir: PathBuf,
    kind: RecordKind,
    /// The latest version; `None` while the table has no commit.
    version: Option<i64>,
    /// Current data files by their (log-encoded) path.
    active: BTreeMap<String, ActiveFile>,
}

/// Milliseconds since the epoch, as the log's times are.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl DeltaTable {
    /// Reads the table at `dir` by replaying its log; a folder without a
    /// log is a table with no commit yet.
    ///
    /// A checkpoint another tool wrote summarises JSON commits that are
    /// still there: they are replayed, and the file count the checkpoint
    /// names (`_last_checkpoint`) must match. Once commits before it are
    /// cleaned up the table is refused: reading the checkpoint's Parquet
    /// would need polars' struct and map types, which manyi does not build.
    pub(super) fn open(dir: &Path, kind: RecordKind) -> Result<Self, PublishError> {
        let mut table = DeltaTable { dir: dir.to_path_buf(), kind, version: None, active: BTreeMap::new() };
        let log = read_log_dir(dir)?;
        if log.versions.is_empty() {
            if log.checkpoint.is_some() {
                return Err(table.refused("its log holds a checkpoint but no commit file manyi can replay"));
            }
            return Ok(table);
        }
        let last = log.versions.len() as i64 - 1;
        if let Some(missing) = (0..=last).find(|v| log.versions.get(*v as usize) != Some(v)) {
            let why = match log.checkpoint {
                Some(_) => format!(
                    "its log starts from a checkpoint (commit {missing} was cleaned up by another tool); manyi replays only the JSON commits"
                ),
                None => format!("commit {missing} is missing from _delta_log"),
            };
            return Err(table.refused(&why));
        }
        let mut seen = Seen::default();
        for &v in &log.versions {
            table.replay(v, &mut seen)?;
            // Another tool checkpointed the table: its checkpoint must list
            // the same files the JSON commits do, or the two disagree.
            if let Some((cv, Some(files))) = log.checkpoint
                && cv == v
                && files != table.active.len() as i64
            {
                return Err(
                    table.refused(&format!("its checkpoint at version {v} lists {files} files, its commits {}", table.active.len()))
                );
            }
        }
        if !(seen.protocol && seen.metadata) {
            return Err(table.refused("its log has no protocol or metaData action"));
        }
        table.version = Some(last);
        Ok(table)
    }

    fn refused(&self, why: &str) -> PublishError {
        PublishError::Refused { table: self.dir.clone(), message: why.to_string() }
    }

    fn log_dir(&self) -> PathBuf {
        self.dir.join("_delta_log")
    }

    /// Applies one commit file to the state.
    fn replay(&mut self, version: i64, seen: &mut Seen) -> Result<(), PublishError> {
        let path = self.log_dir().join(format!("{version:020}.json"));
        let text = std::fs::read_to_string(&path).map_err(|source| PublishError::File { path: path.clone(), source })?;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let action: Value = serde_json::from_str(line)
                .map_err(|e| self.refused(&format!("commit {version}, line {}: not a JSON action ({e})", i + 1)))?;
            if let Some(p) = action.get("protocol") {
                check_protocol(p).map_err(|why| self.refused(&format!("commit {version}: {why}")))?;
                seen.protocol = true;
            } else if let Some(m) = action.get("metaData") {
                check_metadata(m, self.kind).map_err(|why| self.refused(&format!("commit {version}: {why}")))?;
                seen.metadata = true;
            } else if let Some(add) = action.get("add") {
                let (path, file) =
                    active_file(add).ok_or_else(|| self.refused(&format!("commit {version}: an add action without path")))?;
                self.active.insert(path, file);
            } else if let Some(path) = action.get("remove").and_then(|r| r.get("path")).and_then(Value::as_str) {
                self.active.remove(path);
            }
            // commitInfo, txn, domainMetadata, cdc: nothing to track.
        }
        Ok(())
    }

    /// Commits version 0 (the empty table) when the table has no commit;
    /// returns the table's version.
    pub(super) fn create_if_absent(&mut self) -> Result<i64, PublishError> {
        if let Some(v) = self.version {
            return Ok(v);
        }
        let name = self.kind.dir();
        let created = now_ms();
        let actions = [
            json!({"commitInfo": {
                "timestamp": created,
                "operation": "CREATE TABLE",
                "operationParameters": {"mode": "ErrorIfExists", "location": self.dir.to_string_lossy()},
                "engineInfo": engine_info(),
            }}),
            json!({"protocol": {
                "minReaderVersion": 3,
                "minWriterVersion": 7,
                "readerFeatures": ["timestampNtz"],
                "writerFeatures": ["timestampNtz"],
            }}),
            json!({"metaData": {
                "id": random_uuid(),
                "name": name,
                "description": "manyi curated records: the latest version of each, one Delta commit per manyi batch",
                "format": {"provider": "parquet", "options": {}},
                "schemaString": schema_string(self.kind),
                "partitionColumns": [PARTITION],
                "createdTime": created,
                "configuration": {},
            }}),
        ];
        std::fs::create_dir_all(self.log_dir()).map_err(|source| PublishError::File { path: self.log_dir(), source })?;
        commit(&self.log_dir(), 0, &actions)?;
        self.version = Some(0);
        Ok(0)
    }

    /// Writes one month's rows (the data columns, see [`conform`]) as a new
    /// data file of batch `seq`, not yet in the log; returns its add action.
    pub(super) fn write_month(&self, month: &str, seq: i64, n: usize, df: &mut DataFrame) -> Result<Value, PublishError> {
        if !is_month(month) {
            return Err(PublishError::Data { table: self.dir.clone(), message: format!("“{month}” is not a YYYY-MM month") });
        }
        let relative = format!("{PARTITION}={month}/part-{seq:08}-{n:03}-{:016x}.parquet", rand::random::<u64>());
        let path = self.dir.join(&relative);
        let file_err = |source| PublishError::File { path: path.clone(), source };
        let folder = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(folder).map_err(file_err)?;
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path).map_err(file_err)?;
        let polars_err = |e: PolarsError| PublishError::Data { table: self.dir.clone(), message: format!("month {month}: {e}") };
        // zstd, like the curated files.
        ParquetWriter::new(&mut file).with_compression(ParquetCompression::Zstd(None)).finish(df).map_err(polars_err)?;
        // On disk before any commit names it.
        file.sync_all().map_err(file_err)?;
        sync_dir(folder)?;
        let size = file.metadata().map_err(file_err)?.len();
        let stats = stats(df, self.kind).map_err(polars_err)?;
        Ok(json!({"add": {
            "path": encode_path(&relative),
            "partitionValues": {PARTITION: month},
            "size": size,
            "modificationTime": now_ms(),
            "dataChange": true,
            "stats": stats.to_string(),
        }}))
    }

    /// One commit: every current file of `months` removed, `adds` added.
    /// Returns the new version. The table must exist ([`Self::create_if_absent`]).
    pub(super) fn replace_months(&mut self, months: &BTreeSet<String>, adds: Vec<Value>, seq: i64) -> Result<i64, PublishError> {
        let version = self.version.map_or(0, |v| v + 1);
        let now = now_ms();
        let quoted: Vec<String> = months.iter().map(|m| format!("'{m}'")).collect();
        let mut actions = vec![json!({"commitInfo": {
            "timestamp": now,
            "operation": "WRITE",
            "operationParameters": {
                "mode": "Overwrite",
                "partitionBy": json!([PARTITION]).to_string(),
                "predicate": format!("{PARTITION} IN ({})", quoted.join(", ")),
            },
            "engineInfo": engine_info(),
            "manyi.batch_seq": seq,
        }})];
        let replaced: Vec<String> =
            self.active.iter().filter(|(_, f)| f.month().is_some_and(|m| months.contains(m))).map(|(p, _)| p.clone()).collect();
        for path in &replaced {
            let f = &self.active[path];
            actions.push(json!({"remove": {
                "path": path,
                "dataChange": true,
                "deletionTimestamp": now,
                "extendedFileMetadata": true,
                "partitionValues": f.partition_values,
                "size": f.size,
            }}));
        }
        actions.extend(adds);
        commit(&self.log_dir(), version, &actions)?;
        // The commit is on disk: the state follows it.
        for path in &replaced {
            self.active.remove(path);
        }
        for add in actions.iter().filter_map(|a| a.get("add")) {
            if let Some((path, file)) = active_file(add) {
                self.active.insert(path, file);
            }
        }
        self.version = Some(version);
        Ok(version)
    }
}

/// Which actions the replay has met.
#[derive(Default)]
struct Seen {
    protocol: bool,
    metadata: bool,
}

fn active_file(add: &Value) -> Option<(String, ActiveFile)> {
    let path = add.get("path")?.as_str()?.to_string();
    let partition_values = add.get("partitionValues").cloned().unwrap_or_else(|| json!({}));
    let size = add.get("size").and_then(Value::as_i64).unwrap_or_default();
    Some((path, ActiveFile { partition_values, size }))
}

/// The protocol must ask for nothing beyond what manyi writes.
fn check_protocol(p: &Value) -> Result<(), String> {
    let number = |k: &str| p.get(k).and_then(Value::as_i64).unwrap_or_default();
    let features = |k: &str| -> Vec<String> {
        p.get(k).and_then(Value::as_array).map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    let (reader, writer) = (number("minReaderVersion"), number("minWriterVersion"));
    let unknown: Vec<String> =
        features("readerFeatures").into_iter().chain(features("writerFeatures")).filter(|f| f != "timestampNtz").collect();
    // Reader 1 or 3 (3: named features); writer up to 2 (append-only and
    // invariants, checked in the metadata) or 7 (named features).
    if !matches!(reader, 1 | 3) || !matches!(writer, 1 | 2 | 7) || !unknown.is_empty() {
        return Err(format!(
            "the table asks for Delta protocol reader {reader} / writer {writer}{} that manyi does not write",
            if unknown.is_empty() { String::new() } else { format!(" with features {}", unknown.join(", ")) }
        ));
    }
    Ok(())
}

/// The metadata must be the table manyi publishes: same columns, partitioned by month.
fn check_metadata(m: &Value, kind: RecordKind) -> Result<(), String> {
    let partitions: Vec<&str> =
        m.get("partitionColumns").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if partitions != [PARTITION] {
        return Err(format!("the table is partitioned by {partitions:?}, not by month"));
    }
    let schema: Option<Value> = m.get("schemaString").and_then(Value::as_str).and_then(|s| serde_json::from_str(s).ok());
    let found: Vec<(String, String)> = schema
        .as_ref()
        .and_then(|s| s.get("fields"))
        .and_then(Value::as_array)
        .map(|fields| {
            fields
                .iter()
                .map(|f| {
                    let text = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                    (text("name"), text("type"))
                })
                .collect()
        })
        .unwrap_or_default();
    let wanted: Vec<(String, String)> = columns(kind).iter().map(|(n, t)| (n.to_string(), t.delta_name().to_string())).collect();
    if found != wanted {
        return Err("its columns are not those of manyi's table (the schema was changed by another tool)".into());
    }
    let config = m.get("configuration");
    if config.and_then(|c| c.get("delta.appendOnly")).and_then(Value::as_str) == Some("true") {
        return Err("the table is append-only (delta.appendOnly), and a manyi batch replaces months".into());
    }
    Ok(())
}

/// What `_delta_log` holds: the commit versions (sorted) and the latest
/// checkpoint another tool wrote, with its number of files when it says.
struct LogDir {
    versions: Vec<i64>,
    checkpoint: Option<(i64, Option<i64>)>,
}

/// Lists `_delta_log`, removing temporary files a crashed commit left (the
/// caller holds the publication lock, so none is in use).
fn read_log_dir(dir: &Path) -> Result<LogDir, PublishError> {
    let log = dir.join("_delta_log");
    let mut out = LogDir { versions: Vec::new(), checkpoint: None };
    let entries = match std::fs::read_dir(&log) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(PublishError::File { path: log, source }),
    };
    let mut checkpoints = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(v) = commit_version(&name) {
            out.versions.push(v);
        } else if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        } else if let Some(v) = name.split('.').next().filter(|_| name.contains(".checkpoint.")).and_then(|n| n.parse::<i64>().ok()) {
            checkpoints.push(v);
        }
    }
    out.versions.sort_unstable();
    let last_checkpoint = std::fs::read_to_string(log.join("_last_checkpoint")).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok());
    out.checkpoint = match last_checkpoint {
        Some(c) => c.get("version").and_then(Value::as_i64).map(|v| (v, c.get("numOfAddFiles").and_then(Value::as_i64))),
        None => checkpoints.into_iter().max().map(|v| (v, None)),
    };
    Ok(out)
}

/// The version of a commit file name (`00000000000000000014.json`).
pub(super) fn commit_version(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Writes the commit file of `version` with `actions`, one JSON per line.
/// The file appears complete or not at all, and never replaces an existing
/// one: a version another writer committed first is a [`PublishError::Conflict`].
pub(super) fn commit(log_dir: &Path, version: i64, actions: &[Value]) -> Result<(), PublishError> {
    let name = format!("{version:020}.json");
    let target = log_dir.join(&name);
    let tmp = log_dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let tmp_err = |source| PublishError::File { path: tmp.clone(), source };
    let mut body = String::new();
    for a in actions {
        body.push_str(&a.to_string());
        body.push('\n');
    }
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(tmp_err)?;
    file.write_all(body.as_bytes()).map_err(tmp_err)?;
    file.sync_all().map_err(tmp_err)?;
    drop(file);
    // A hard link is created whole or not at all and fails if the name is
    // taken: no reader sees a partial commit, no writer replaces another's.
    let linked = std::fs::hard_link(&tmp, &target);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_dir(log_dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(PublishError::Conflict { table: log_dir.parent().unwrap_or(log_dir).to_path_buf(), version })
        }
        Err(source) => Err(PublishError::File { path: target, source }),
    }
}

/// Makes a folder's new entries durable.
fn sync_dir(dir: &Path) -> Result<(), PublishError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|source| PublishError::File { path: dir.to_path_buf(), source })
}

fn engine_info() -> String {
    format!("manyi/{}", env!("CARGO_PKG_VERSION"))
}

fn is_month(m: &str) -> bool {
    let b = m.as_bytes();
    b.len() == 7 && b[4] == b'-' && b.iter().enumerate().all(|(i, c)| i == 4 || c.is_ascii_digit())
}

/// A random (version 4) UUID for the table id.
fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A relative path as the log's `path` (a URI reference): bytes outside the
/// unreserved set, `/` and `=` are percent-encoded.
fn encode_path(relative: &str) -> String {
    let mut out = String::with_capacity(relative.len());
    for b in relative.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Longest string kept in the min/max statistics; longer values are left
/// out for that column (a truncated max would need Delta's tie-break rules).
const STATS_STRING_CHARS: usize = 32;

/// The `stats` of an add action: row count, nulls per column, and min/max
/// of the columns readers skip files by (timestamps, numbers, booleans,
/// short strings).
fn stats(df: &DataFrame, kind: RecordKind) -> PolarsResult<Value> {
    let (mut min, mut max, mut nulls) = (serde_json::Map::new(), serde_json::Map::new(), serde_json::Map::new());
    for (name, t) in data_columns(kind) {
        let s = df.column(name)?.as_materialized_series();
        nulls.insert(name.into(), json!(s.null_count()));
        if s.null_count() == s.len() {
            continue;
        }
        let (lo, hi) = (s.min_reduce()?, s.max_reduce()?);
        let pair = match t {
            ColumnType::Integer | ColumnType::Long => (json!(lo.value().extract::<i64>()), json!(hi.value().extract::<i64>())),
            ColumnType::Boolean => (json!(lo.value().extract_bool()), json!(hi.value().extract_bool())),
            ColumnType::TimestampNtz => (
                json!(lo.value().extract::<i64>().and_then(|v| ntz_stat(v, false))),
                json!(hi.value().extract::<i64>().and_then(|v| ntz_stat(v, true))),
            ),
            ColumnType::String => {
                let short = |v: &AnyValue| v.extract_str().filter(|s| s.chars().count() <= STATS_STRING_CHARS).map(str::to_string);
                match (short(lo.value()), short(hi.value())) {
                    (Some(a), Some(b)) => (json!(a), json!(b)),
                    _ => continue,
                }
            }
        };
        if !pair.0.is_null() && !pair.1.is_null() {
            min.insert(name.into(), pair.0);
            max.insert(name.into(), pair.1);
        }
    }
    Ok(json!({"numRecords": df.height(), "minValues": min, "maxValues": max, "nullCount": nulls}))
}

/// A `timestamp_ntz` statistic as delta-rs writes it (`2026-10-01 08:35:56`,
/// milliseconds when not zero). The log keeps milliseconds, so a maximum with
/// microseconds is rounded up: a reader must never skip a file holding a match.
fn ntz_stat(micros: i64, round_up: bool) -> Option<String> {
    let ms = if round_up { micros.div_euclid(1000) + i64::from(micros.rem_euclid(1000) != 0) } else { micros.div_euclid(1000) };
    let t = chrono::DateTime::from_timestamp_millis(ms)?.naive_utc();
    let format = if ms.rem_euclid(1000) == 0 { "%Y-%m-%d %H:%M:%S" } else { "%Y-%m-%d %H:%M:%S%.3f" };
    Some(t.format(format).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_of(dir: &Path) -> PathBuf {
        let log = dir.join("_delta_log");
        std::fs::create_dir_all(&log).expect("log dir");
        log
    }

    #[test]
    fn a_second_commit_of_the_same_version_fails_and_leaves_the_first() {
        let tmp = tempfile::tempdir().expect("tmp");
        let log = log_of(tmp.path());
        commit(&log, 3, &[json!({"commitInfo": {"who": "first"}})]).expect("first commit");
        let err = commit(&log, 3, &[json!({"commitInfo": {"who": "second"}})]).expect_err("the version exists");
        assert!(matches!(err, PublishError::Conflict { version: 3, .. }), "{err}");
        let text = std::fs::read_to_string(log.join("00000000000000000003.json")).expect("commit file");
        assert!(text.contains("first") && !text.contains("second"), "{text}");
        let left: Vec<_> = std::fs::read_dir(&log).expect("ls").flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
    }

    #[test]
    fn two_threads_committing_the_same_version_one_wins() {
        let tmp = tempfile::tempdir().expect("tmp");
        let log = log_of(tmp.path());
        let results: Vec<bool> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    s.spawn({
                        let log = log.clone();
                        move || commit(&log, 0, &[json!({"commitInfo": {"writer": i}})]).is_ok()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
    }

    fn month_frame(ids: &[&str], micros: &[i64]) -> DataFrame {
        let n = ids.len();
        df! {
            "rating_id" => ids,
            "source" => vec!["office-drop"; n],
            "rated_at" => micros,
            "org_code" => vec!["369901001001"; n],
            "category" => vec!["meals"; n],
            "service_item" => vec![""; n],
            "department" => vec![""; n],
            "channel" => vec![1i32; n],
            "level" => (1..=n as i32).collect::<Vec<_>>(),
            "reason_tags" => vec![""; n],
            "comment" => vec!["a comment far longer than the thirty-two characters kept"; n],
            "anonymous" => vec![false; n],
            "rater_hash" => vec![None::<&str>; n],
            "follow_up" => vec![""; n],
            "rectified_at" => vec![None::<i64>; n],
            "revisit" => vec![""; n],
            "default_rating" => vec![true; n],
            "batch_seq" => vec![7i64; n],
        }
        .expect("frame")
    }

    fn conformed(df: DataFrame) -> DataFrame {
        conform(df.lazy(), RecordKind::Ratings).collect().expect("conform")
    }

    #[test]
    fn months_are_replaced_and_the_log_replays_to_the_same_files() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("ratings");
        let mut t = DeltaTable::open(&dir, RecordKind::Ratings).expect("open");
        assert_eq!(t.create_if_absent().expect("create"), 0);
        let mut oct = conformed(month_frame(&["a", "b"], &[1_000_000, 2_000_500]));
        let mut nov = conformed(month_frame(&["c"], &[3_000_000]));
        let adds = vec![t.write_month("2026-10", 1, 0, &mut oct).expect("oct"), t.write_month("2026-11", 1, 1, &mut nov).expect("nov")];
        let months: BTreeSet<String> = ["2026-10".into(), "2026-11".into()].into();
        assert_eq!(t.replace_months(&months, adds, 1).expect("commit"), 1);
        let mut oct2 = conformed(month_frame(&["a"], &[1_000_000]));
        let add = t.write_month("2026-10", 2, 0, &mut oct2).expect("oct again");
        let stats: Value = serde_json::from_str(add["add"]["stats"].as_str().expect("stats")).expect("json");
        assert_eq!(stats["numRecords"], 1);
        assert_eq!(stats["minValues"]["rated_at"], "1970-01-01 00:00:01");
        assert_eq!(stats["maxValues"]["level"], 1);
        assert_eq!(stats["nullCount"]["rater_hash"], 1);
        assert!(stats["minValues"].get("comment").is_none(), "long strings have no min/max");
        assert!(stats["maxValues"].get("rectified_at").is_none(), "an all-null column has no min/max");
        assert_eq!(t.replace_months(&["2026-10".to_string()].into(), vec![add], 2).expect("commit 2"), 2);

        let again = DeltaTable::open(&dir, RecordKind::Ratings).expect("reopen");
        assert_eq!(again.version, Some(2));
        assert_eq!(again.active.keys().collect::<Vec<_>>(), t.active.keys().collect::<Vec<_>>());
        let months: Vec<_> = again.active.values().filter_map(|f| f.month()).collect();
        assert_eq!(months, ["2026-10", "2026-11"], "October replaced, November kept");
        let text = std::fs::read_to_string(dir.join("_delta_log/00000000000000000002.json")).expect("commit 2");
        assert_eq!(text.matches("\"remove\"").count(), 1, "{text}");
    }

    #[test]
    fn a_log_cleaned_up_after_a_checkpoint_is_refused_with_the_rebuild_advice() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("ratings");
        let mut t = DeltaTable::open(&dir, RecordKind::Ratings).expect("open");
        t.create_if_absent().expect("create");
        t.replace_months(&BTreeSet::new(), Vec::new(), 1).expect("commit 1");
        let log = dir.join("_delta_log");
        std::fs::write(log.join("00000000000000000001.checkpoint.parquet"), b"PAR1").expect("checkpoint");
        std::fs::write(log.join("_last_checkpoint"), r#"{"version":1,"size":3}"#).expect("last checkpoint");
        assert_eq!(DeltaTable::open(&dir, RecordKind::Ratings).expect("complete JSON log").version, Some(1));
        std::fs::remove_file(log.join("00000000000000000000.json")).expect("clean up commit 0");
        let err = DeltaTable::open(&dir, RecordKind::Ratings).err().expect("refused");
        assert!(err.to_string().contains("manyi publish --rebuild") && err.to_string().contains("checkpoint"), "{err}");
    }

    #[test]
    fn a_table_asking_for_an_unknown_feature_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("ratings");
        DeltaTable::open(&dir, RecordKind::Ratings).expect("open").create_if_absent().expect("create");
        let protocol = json!({"protocol": {"minReaderVersion": 3, "minWriterVersion": 7,
            "readerFeatures": ["timestampNtz", "deletionVectors"], "writerFeatures": ["timestampNtz", "deletionVectors"]}});
        commit(&dir.join("_delta_log"), 1, &[protocol]).expect("commit 1");
        let err = DeltaTable::open(&dir, RecordKind::Ratings).err().expect("refused");
        assert!(err.to_string().contains("deletionVectors"), "{err}");
    }

    #[test]
    fn maxima_are_rounded_up_to_the_millisecond() {
        assert_eq!(ntz_stat(1_500, true).as_deref(), Some("1970-01-01 00:00:00.002"));
        assert_eq!(ntz_stat(1_500, false).as_deref(), Some("1970-01-01 00:00:00.001"));
        assert_eq!(encode_path("month=2026-10/part 1.parquet"), "month=2026-10/part%201.parquet");
    }
}
