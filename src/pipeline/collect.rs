//! Collect runs: each source's payloads landed, quarantined and committed.
//!
//! The collect stage reads and parses (inbox files) or pages (APIs, with the
//! watermark arithmetic); this module is where what it hands over meets the
//! store: landing before committing, committing before archiving.

use crate::collect::{self, ApiBatch, ApiPager, Fetched};
use crate::config::{Config, SourceConfig, SourceKind};
use crate::store::{BatchMeta, BatchOutcome, PartedBatch, QuarantineRow, RecordKind, Store};
use anyhow::{Context, Result, bail};
use chrono::Utc;
use std::path::PathBuf;

/// What one source's collect did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceSummary {
    /// Source name.
    pub source: String,
    /// Files read from the inbox (file sources).
    pub files: usize,
    /// Pages fetched (API sources).
    pub pages: usize,
    /// Files rejected whole (moved to `rejected/` with a reason).
    pub rejected_files: usize,
    /// The names of the files rejected whole (they make the run fail).
    pub rejected_names: Vec<String>,
    /// Rows read.
    pub fetched: usize,
    /// New records.
    pub new: usize,
    /// Records stored as a new version.
    pub updated: usize,
    /// Records already stored unchanged.
    pub unchanged: usize,
    /// Rows quarantined.
    pub quarantined: usize,
    /// Quarantine files written.
    pub quarantine_files: Vec<PathBuf>,
    /// Files and API batches with more than `max_quarantine_share` of their
    /// rows quarantined, each with its share and top reasons (they make the
    /// run fail; their good rows were committed).
    pub over_quarantined: Vec<String>,
    /// The source's watermark after the run (API sources).
    pub watermark: Option<String>,
    /// Why the source failed, if it did; what was committed before stays.
    pub error: Option<String>,
    /// Values of coded fields nothing maps (field → value → rows), over every payload.
    pub unrecognised: collect::Unrecognised,
    /// Notes on payloads (a mapped optional column the file lacks …).
    pub notes: Vec<String>,
    /// Payloads read but not committed (level direction unknown or looking
    /// inverted), each with why; a file stays in the inbox to be read again.
    pub held: Vec<String>,
}

impl SourceSummary {
    fn add(&mut self, outcome: &BatchOutcome) {
        self.new += outcome.new;
        self.updated += outcome.updated;
        self.unchanged += outcome.unchanged;
    }

    fn absorb(&mut self, parsed: &collect::Parsed) {
        collect::merge_unrecognised(&mut self.unrecognised, &parsed.unrecognised);
        self.notes.extend(parsed.notes.iter().cloned());
    }
}

/// Why a payload's ratings look inverted, or `None` (the guard is off, or
/// the counts say nothing).
fn inversion_evidence(src: &SourceConfig, what: &str, guard: collect::GuardCounts) -> Option<String> {
    if !src.inversion_guard || !guard.suspicious() {
        return None;
    }
    let codes = src.level_codes().map(|c| c.name()).unwrap_or("-");
    Some(format!(
        "{what}: {good} of the {carrying} ratings that carry a reason code or a comment were read as 满意/非常满意 (only {bad} as \
         不满意/非常不满意) with level_codes = \"{codes}\", but in real data 差评 carry them far more often: the level numbers look \
         inverted, so nothing of it was stored. Check level_codes of source “{name}” (\"gbt39046\": 1 = 非常满意; \"ascending\": \
         1 = 非常不满意) and run collect again; if this feed really tags 好评 with reasons, set inversion_guard = false",
        good = guard.good,
        carrying = guard.carrying,
        bad = guard.bad,
        name = src.name,
    ))
}

/// Progress of long collect work, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The source at work.
    pub source: &'a str,
    /// Records read so far in this run.
    pub done: u64,
    /// Records expected, when the source says.
    pub total: Option<u64>,
}

/// Collects every configured source (or only `only`); fails if any source failed.
pub fn collect_all(cfg: &Config, store: &mut Store, only: Option<&str>) -> Result<Vec<SourceSummary>> {
    let sums = collect_all_with(cfg, store, only, &|_| {})?;
    let failed: Vec<String> = sums.iter().filter_map(|s| s.error.as_ref().map(|e| format!("source “{}”: {e}", s.source))).collect();
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(sums)
}

/// Collects every configured source (or only `only`), reporting progress. A
/// source that fails is recorded in its summary (`error`) and the others
/// still run; each source's committed batches stay committed.
pub fn collect_all_with(cfg: &Config, store: &mut Store, only: Option<&str>, progress: &dyn Fn(Progress)) -> Result<Vec<SourceSummary>> {
    if let Some(name) = only
        && !cfg.file.sources.iter().any(|s| s.name == name)
    {
        bail!(
            "no source named “{name}” in the configuration (sources: {})",
            cfg.file.sources.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let mut out = Vec::new();
    for src in cfg.file.sources.iter().filter(|s| only.is_none_or(|n| n == s.name)) {
        let mut sum = SourceSummary { source: src.name.clone(), ..Default::default() };
        let res = match src.kind {
            SourceKind::RatingFile | SourceKind::WjxExport => collect_source(cfg, store, src, &mut sum, progress),
            SourceKind::HaochapingApi | SourceKind::WjxApi => collect_api(cfg, store, src, &mut sum, progress),
            // The intake server commits its own submissions every few seconds.
            SourceKind::Intake => Ok(()),
        };
        if let Err(e) = res {
            tracing::error!(source = %src.name, error = %format!("{e:#}"), "collect failed");
            sum.error = Some(format!("{e:#}"));
        }
        if src.kind.is_api() {
            sum.watermark = store.watermark(&src.name)?;
        }
        out.push(sum);
    }
    // Catches up what an earlier run left unpublished (a crash, a full disk).
    super::publish::after_commit(cfg, store);
    Ok(out)
}

/// A parsed payload, or why it could not be parsed.
type ParseResult = std::result::Result<collect::Parsed, collect::CollectError>;

fn collect_source(cfg: &Config, store: &mut Store, src: &SourceConfig, sum: &mut SourceSummary, progress: &dyn Fn(Progress)) -> Result<()> {
    let inbox = cfg.resolve(&src.inbox);
    let files = collect::list_inbox(&inbox)?;
    // Reading, landing and parsing a file touch nothing but the file and its
    // landing folder, so the next file is read, landed and parsed on another
    // core while this one is committed: a province's monthly drop is a dozen
    // files of close to a million rows, and the two halves take about as
    // long as each other. (Landing on the committing thread, its fsyncs of
    // some 100 MB a file were a fifth of that thread's time.) The channel
    // holds nothing (a rendezvous), so what is in memory is what the
    // committer holds (a part, or a small file) and what the reader holds
    // (the next part being parsed, and the bytes of its file). A file landed ahead of a
    // failed commit stays landed and in the inbox, as after a crash between
    // landing and commit; the next run lands and commits it afresh.
    let landing = store.landing(&src.name, Utc::now().with_timezone(&cfg.tz).date_naive());
    let part_rows = part_rows();
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel(0);
        let files = &files;
        scope.spawn(move || {
            for (k, file) in files.iter().enumerate() {
                let now_utc = Utc::now();
                let batch_id = format!("{}-{k:03}", collect_stamp(&src.name, now_utc));
                // A file of more than `part_rows` good ratings goes to the
                // committer a part at a time as it is parsed, so that memory
                // follows the part, not the file (a year's export of a
                // province is tens of millions of rows).
                let mut send_part = |part| {
                    tx.send(FromReader::Part { batch_id: batch_id.clone(), part })
                        .map_err(|_| collect::CollectError::BadFile { file: file.name.clone(), reason: "the commit stopped".into() })
                };
                let now_local = now_utc.with_timezone(&cfg.tz).naive_local();
                let item = land_and_parse(cfg, src, file, &batch_id, &landing, now_local, part_rows, &mut send_part).map(
                    |(fetched, parsed, landed)| {
                        Box::new(LandedFile {
                            file: Landed { fetched, batch_id: batch_id.clone(), landing: landed, now: now_local },
                            parsed,
                        })
                    },
                );
                let failed = item.is_err();
                if tx.send(FromReader::File(item)).is_err() || failed {
                    break;
                }
            }
        });
        let mut messages = rx.into_iter();
        while let Some(mut message) = messages.next() {
            // One file: its parts, if it is large, then the file itself.
            // The batch is begun by the first of them, so that a file
            // parsed whole holds the store's write lock only for its commit.
            let (kind, batch_id) = match message {
                FromReader::Part { ref batch_id, .. } => (RecordKind::Ratings, batch_id.clone()),
                FromReader::File(Ok(ref landed)) => (record_kind(src), landed.file.batch_id.clone()),
                FromReader::File(Err(e)) => return Err(e),
            };
            let mut batch = store.begin_batch(kind, &batch_id)?;
            let mut rejections = Rejections::default();
            // Rows of this file handed over in parts, for the progress bar:
            // a year's export in one file is a minute of work.
            let mut parted = 0;
            let file = loop {
                match message {
                    FromReader::Part { part, .. } => parted += add_part(&mut batch, &mut rejections, &src.name, part)?,
                    FromReader::File(file) => break file,
                }
                progress(Progress { source: &src.name, done: (sum.fetched + parted) as u64, total: None });
                message = messages.next().ok_or_else(|| anyhow::anyhow!("the file reader stopped within a file"))?;
            };
            sum.files += 1;
            let (mut file, mut holding) = (*file?, false);
            let committed = loop {
                match ingest_file(src, &inbox, sum, file, batch, rejections, !holding)? {
                    Ingested::Done(committed) => break committed,
                    Ingested::Again { file: landed, repeated } => {
                        tracing::info!(source = %src.name, file = %landed.fetched.name, ids = repeated.len(),
                            "ids come again in later parts of the file with other content: reading it again, each such id kept to its last occurrence");
                        (file, batch, rejections) = reread_holding(cfg, src, store, landed, &repeated, part_rows)?;
                        holding = true;
                    }
                }
            };
            if committed {
                super::publish::after_commit(cfg, store);
            }
            progress(Progress { source: &src.name, done: sum.fetched as u64, total: None });
        }
        Ok(())
    })?;
    tracing::info!(source = %src.name, files = sum.files, new = sum.new, updated = sum.updated, unchanged = sum.unchanged, quarantined = sum.quarantined, "collected");
    // A held file stored nothing and waits in the inbox, a file rejected
    // whole stored nothing, a file mostly quarantined stored little: the run
    // must not look successful.
    let mut failures = Vec::new();
    if !sum.held.is_empty() {
        failures.push(format!("{} file(s) held in the inbox, nothing of them stored:\n    {}", sum.held.len(), sum.held.join("\n    ")));
    }
    if !sum.rejected_names.is_empty() {
        failures.push(format!(
            "{} file(s) rejected whole, nothing of them stored: {} (moved to {}, the reason beside each in a .reason.txt)",
            sum.rejected_names.len(),
            sum.rejected_names.join(", "),
            inbox.join("rejected").display()
        ));
    }
    failures.extend(sum.over_quarantined.iter().cloned());
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

/// A payload's rejected rows counted by their exact (field, reason), so
/// that 81 rows with the same unknown channel word count as one reason,
/// without holding the rows (a large file's go to its quarantine file a
/// part at a time).
#[derive(Debug, Default)]
struct Rejections {
    /// Rows rejected.
    rows: usize,
    /// (field, reason, rows) in the order each was first seen.
    reasons: Vec<(String, String, usize)>,
    /// field → reason → its place in `reasons`.
    index: std::collections::HashMap<String, std::collections::HashMap<String, usize>>,
}

impl Rejections {
    /// Reasons told apart: a reason quotes the value, and a file of a
    /// million unreadable dates has a million; rows past this many reasons
    /// are counted, their reasons not kept.
    const MAX_REASONS: usize = 10_000;

    fn add(&mut self, rows: &[QuarantineRow]) {
        for r in rows {
            self.rows += 1;
            if let Some(&i) = self.index.get(r.field.as_str()).and_then(|m| m.get(r.reason.as_str())) {
                self.reasons[i].2 += 1;
            } else if self.reasons.len() < Self::MAX_REASONS {
                self.index.entry(r.field.clone()).or_default().insert(r.reason.clone(), self.reasons.len());
                self.reasons.push((r.field.clone(), r.reason.clone(), 1));
            }
        }
    }

    /// The `n` most frequent reasons, as "<rows> row(s) <field>: <reason>";
    /// equal counts in the order the rows came in.
    fn top(&self, n: usize) -> Vec<String> {
        let mut counts: Vec<&(String, String, usize)> = self.reasons.iter().collect();
        counts.sort_by_key(|c| std::cmp::Reverse(c.2));
        counts.iter().take(n).map(|(f, why, k)| format!("{k} row(s) {f}: {why}")).collect()
    }
}

/// Why a file or API batch (`what`) of `rows` rows fails the run: more than
/// `limit` of them quarantined. Names the share, the quarantine file and
/// the three most frequent reasons.
fn over_quarantined(what: &str, rejected: &Rejections, rows: usize, limit: f64, quarantine: Option<&std::path::Path>) -> Option<String> {
    let bad = rejected.rows;
    if bad == 0 || (bad as f64) <= limit * rows as f64 {
        return None;
    }
    Some(format!(
        "{what}: {bad} of {rows} rows quarantined ({:.1}%, more than max_quarantine_share {:.1}%); the {} good rows were committed. \
         Top reasons: {}. The rows and their reasons are in {}; correct them at the source and send them again",
        100.0 * bad as f64 / rows as f64,
        100.0 * limit,
        rows - bad,
        rejected.top(3).join("; "),
        quarantine.map(|q| q.display().to_string()).unwrap_or_default()
    ))
}

/// An inbox file durably landed and parsed, its bytes dropped, waiting to
/// be committed.
struct LandedFile {
    file: Landed,
    parsed: ParseResult,
}

/// What the file reader hands the committer: a large file's parts as they
/// are parsed, then each file.
enum FromReader {
    /// Good ratings or rejected rows of the file landed as `batch_id`, in file order.
    Part { batch_id: String, part: collect::Part },
    /// A file landed and parsed to its end (its ratings after the last
    /// part), or why it could not be read.
    File(Result<Box<LandedFile>>),
}

/// What names a collect's batches (and their landed payloads and Parquet
/// files): the source, the time to the millisecond and the process. Two
/// collects of one source started in the same millisecond (two terminals,
/// an operator and `serve`) gave the same batch ids, and the second's
/// commit failed on `batches.batch_id`.
fn collect_stamp(source: &str, now: chrono::DateTime<Utc>) -> String {
    format!("{source}-{}-{}", now.format("%Y%m%dT%H%M%S%3fZ"), std::process::id())
}

/// Ratings a file hands to the store at a time: polars' row group, so that
/// a monthly file's Parquet row groups are as whole as written at once.
/// `MANYI_PART_ROWS` sets it for the tests, which cannot afford files of a
/// quarter of a million rows.
fn part_rows() -> usize {
    const PART_ROWS: usize = 512 * 512;
    std::env::var("MANYI_PART_ROWS").ok().and_then(|v| v.parse().ok()).filter(|&n| n > 0).unwrap_or(PART_ROWS)
}

/// The kind of record a file source's payloads hold.
fn record_kind(src: &SourceConfig) -> RecordKind {
    match src.kind {
        SourceKind::WjxExport | SourceKind::WjxApi => RecordKind::Responses,
        SourceKind::RatingFile | SourceKind::HaochapingApi | SourceKind::Intake => RecordKind::Ratings,
    }
}

/// Commits what parsed of a landed file into `batch` (which holds the
/// parts a large file sent ahead), and archives it (or moves it to
/// `rejected/`) only after the commit. Whether it committed.
fn ingest_file(
    src: &SourceConfig,
    inbox: &std::path::Path,
    sum: &mut SourceSummary,
    file: LandedFile,
    batch: PartedBatch<'_>,
    rejections: Rejections,
    may_read_again: bool,
) -> Result<Ingested> {
    crate::store::crash_point("after-land");
    // What the parse noticed (unknown words, notes), told once: a file read
    // again tells it from its second reading.
    let noticed = file.parsed.as_ref().ok().map(|p| (p.unrecognised.clone(), p.notes.clone()));
    let LandedFile { file: landed, parsed } = file;
    let outcome = commit_file(batch, rejections, src, &landed, parsed, may_read_again);
    if let Some((unrecognised, notes)) = noticed
        && !matches!(outcome, Err(FileFailure::Repeats(..)))
    {
        collect::merge_unrecognised(&mut sum.unrecognised, &unrecognised);
        sum.notes.extend(notes);
    }
    if let Err(FileFailure::Repeats(repeated)) = outcome {
        return Ok(Ingested::Again { file: landed, repeated });
    }
    match outcome {
        Ok(outcome) => {
            sum.fetched += outcome.rows_read;
            sum.add(&outcome.batch);
            if let Some(note) = superseded_note(&landed.fetched.name, &outcome.batch) {
                tracing::warn!(source = %src.name, file = %landed.fetched.name, rows = outcome.batch.superseded, "{note}");
                sum.notes.push(note);
            }
            sum.quarantined += outcome.quarantined;
            sum.quarantine_files.extend(outcome.quarantine_file);
            sum.over_quarantined.extend(outcome.over_quarantined);
            crate::store::crash_point("after-commit");
            if collect::finish_file(inbox, &landed.fetched, None)?.is_none() {
                tracing::info!(source = %src.name, file = %landed.fetched.name, "already archived by another collect of this inbox");
            }
            return Ok(Ingested::Done(true));
        }
        Err(FileFailure::Held(reason)) => {
            // Left in the inbox: after the setting is fixed it is read again.
            tracing::warn!(source = %src.name, file = %landed.fetched.name, %reason, "file held");
            sum.held.push(reason);
        }
        Err(FileFailure::Rejected(reason)) => {
            tracing::warn!(source = %src.name, file = %landed.fetched.name, %reason, "file rejected");
            sum.rejected_files += 1;
            sum.rejected_names.push(landed.fetched.name.clone());
            if collect::finish_file(inbox, &landed.fetched, Some(&reason))?.is_none() {
                tracing::info!(source = %src.name, file = %landed.fetched.name, "already moved by another collect of this inbox");
            }
        }
        Err(FileFailure::Other(e)) => return Err(e.context(format!("file {}", landed.fetched.path.display()))),
        // Returned above.
        Err(FileFailure::Repeats(_)) => {}
    }
    Ok(Ingested::Done(false))
}

/// What [`ingest_file`] did with a file.
enum Ingested {
    /// Committed (`true`), or held or rejected (`false`).
    Done(bool),
    /// Nothing committed: ids came again in later parts with other content
    /// (see [`PartedBatch::repeated_in_parts`]); read the file again
    /// holding them ([`reread_holding`]).
    Again { file: Landed, repeated: std::collections::BTreeSet<Box<str>> },
}

/// An inbox file landed, to be committed as batch `batch_id`: what reading
/// it again needs.
struct Landed {
    fetched: Fetched,
    batch_id: String,
    landing: PathBuf,
    /// The collect time the file was parsed at (local), for reading it again alike.
    now: chrono::NaiveDateTime,
}

/// Ids held to their last occurrence at most, when a file is read again
/// ([`reread_holding`]): each waits in memory as a rating until the file's
/// end. A file with more (its every row twice, with other content, far
/// apart) is committed as first read, its repeats as shadowed versions.
const HOLD_MAX: usize = 100_000;

/// Reads a landed file again into a new batch, as [`land_and_parse`] read
/// it but for the ids of `repeated`: their ratings are held back and go
/// with the file's last part, where the last occurrence of each wins. So
/// such an id is stored once, as in a file read whole, with the same
/// counts, and the same file sent again is "unchanged" throughout.
fn reread_holding<'s>(
    cfg: &Config,
    src: &SourceConfig,
    store: &'s mut Store,
    file: Landed,
    repeated: &std::collections::BTreeSet<Box<str>>,
    part_rows: usize,
) -> Result<(LandedFile, PartedBatch<'s>, Rejections)> {
    let mut batch = store.begin_batch(RecordKind::Ratings, &file.batch_id)?;
    let mut rejections = Rejections::default();
    let mut held = HeldRatings::new(repeated);
    let mut failed = None;
    let parsed = {
        let mut sink = |part| {
            let part = match part {
                collect::Part::Ratings(ratings) => collect::Part::Ratings(held.hold(ratings)),
                rejected => rejected,
            };
            add_part(&mut batch, &mut rejections, &src.name, part).map(drop).map_err(|e| {
                failed = Some(e);
                collect::CollectError::BadFile { file: file.fetched.name.clone(), reason: "the commit stopped".into() }
            })
        };
        parse_landed(cfg, src, &file.fetched, &file.landing, file.now, part_rows, &mut sink)?
    };
    if let Some(e) = failed {
        return Err(e.into());
    }
    let parsed = parsed.map(|mut p| {
        p.ratings = held.hold(std::mem::take(&mut p.ratings));
        p.ratings.extend(held.all());
        p
    });
    Ok((LandedFile { file, parsed }, batch, rejections))
}

/// What a clerk should hear about rows of one file that share an id with a
/// later row of other content: only the later was stored. An office export
/// lists each rating once, so this is ids that are not unique — a column
/// that is not the 办件编号, or ids Excel cut to 15 digits — and each such
/// row is a rating lost unless someone looks. (A platform's pages bring a
/// record's newer state that way, so API batches say nothing.)
fn superseded_note(file: &str, batch: &crate::store::BatchOutcome) -> Option<String> {
    (batch.superseded > 0).then(|| {
        format!(
            "{file}: {} row(s) have the 办件编号 and 评价次数 of a later row with other content (e.g. {}); only the later row of \
             each was stored. If they are different ratings, the file's ids are not unique (a long number cut by Excel to 15 \
             digits looks like this): export the id column as text and send the file again",
            batch.superseded,
            batch.superseded_ids.join(", ")
        )
    })
}

/// Hands a part of a file to its batch: good ratings to be written,
/// rejected rows to its quarantine file (and counted). Returns the rows.
fn add_part(
    batch: &mut PartedBatch<'_>,
    rejections: &mut Rejections,
    source: &str,
    part: collect::Part,
) -> std::result::Result<usize, crate::store::StoreError> {
    match part {
        collect::Part::Ratings(ratings) => {
            batch.add_ratings(&ratings)?;
            Ok(ratings.len())
        }
        collect::Part::Rejected { headers, rows } => {
            rejections.add(&rows);
            batch.quarantine_rows(source, &headers, &rows)?;
            Ok(rows.len())
        }
    }
}

/// The ratings of some ids held back while a file is read, every good
/// occurrence in file order: committed together with the file's last part,
/// the store keeps the last of each and counts the others unchanged, as it
/// does for an id repeated within one part.
struct HeldRatings<'a> {
    ids: &'a std::collections::BTreeSet<Box<str>>,
    kept: Vec<crate::model::Rating>,
}

impl<'a> HeldRatings<'a> {
    fn new(ids: &'a std::collections::BTreeSet<Box<str>>) -> Self {
        HeldRatings { ids, kept: Vec::new() }
    }

    /// `ratings` without the held ids, whose ratings are kept instead.
    fn hold(&mut self, ratings: Vec<crate::model::Rating>) -> Vec<crate::model::Rating> {
        let (kept, rest): (Vec<_>, Vec<_>) = ratings.into_iter().partition(|r| self.ids.contains(&r.rating_id));
        self.kept.extend(kept);
        rest
    }

    /// The held ratings.
    fn all(self) -> Vec<crate::model::Rating> {
        self.kept
    }
}

/// Parses a file from its landed copy `landed`: a rating file over
/// [`stream_bytes`] whose first megabyte is CSV in UTF-8 or GBK as a
/// stream, any other whole (an XLSX, text that is neither, a small file).
/// `now` is the collect time it is parsed at (local).
fn parse_landed(
    cfg: &Config,
    src: &SourceConfig,
    fetched: &Fetched,
    landed: &std::path::Path,
    now: chrono::NaiveDateTime,
    part_rows: usize,
    part: &mut collect::PartSink<'_>,
) -> Result<ParseResult> {
    use std::io::BufRead;
    let reading = || format!("reading {}", landed.display());
    let size = std::fs::metadata(landed).with_context(reading)?.len();
    if src.kind == SourceKind::RatingFile && size > stream_bytes() {
        let mut reader = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(landed).with_context(reading)?);
        let head = reader.fill_buf().with_context(reading)?;
        let name = fetched.name.as_str();
        if collect::looks_utf8(head) {
            tracing::info!(source = %src.name, file = %name, "large UTF-8 file: read as a stream");
            return Ok(collect::parse_rating_csv_stream(cfg, src, name, reader, now, part_rows, part));
        }
        if let Some(gbk) = collect::looks_gbk(head) {
            tracing::info!(source = %src.name, file = %name, "large GBK file: decoded as it is read");
            return Ok(collect::parse_rating_gbk_stream(cfg, src, name, reader, gbk, now, part_rows, part));
        }
    }
    let bytes = std::fs::read(landed).with_context(reading)?;
    let whole = Fetched { bytes, ..fetched.clone() };
    Ok(parse_payload(cfg, src, &whole, now, part_rows, part))
}

/// Lands an inbox file and parses it, handing a large file's parts to
/// `part` as they are read. Returns the file (its bytes dropped: a
/// province's monthly file is some 100 MB, and it waits through the commit
/// while the next file is read beside it), what parsed and the landed copy.
///
/// A rating file larger than [`stream_bytes`] whose first megabyte is CSV
/// in UTF-8 or GBK is never read into memory: it is landed by a copy in the
/// kernel and read from the landed copy as a stream (GBK decoded as it is
/// read), so that a file of any size (a province's year in one export:
/// tens of millions of rows, gigabytes) costs the memory of a part. Any
/// other file is read whole, landed from its bytes and parsed from them.
#[allow(clippy::too_many_arguments)]
fn land_and_parse(
    cfg: &Config,
    src: &SourceConfig,
    file: &collect::InboxFile,
    batch_id: &str,
    landing: &crate::store::Landing,
    now_local: chrono::NaiveDateTime,
    part_rows: usize,
    part: &mut collect::PartSink<'_>,
) -> Result<(Fetched, ParseResult, PathBuf)> {
    let size = std::fs::metadata(&file.path).with_context(|| format!("reading {}", file.path.display()))?.len();
    if src.kind == SourceKind::RatingFile && size > stream_bytes() {
        let landed = landing.put_copy(batch_id, &file.ext, &file.path)?;
        landing.sync();
        let fetched = Fetched { path: file.path.clone(), name: file.name.clone(), ext: file.ext.clone(), bytes: Vec::new() };
        let parsed = parse_landed(cfg, src, &fetched, &landed, now_local, part_rows, part)?;
        return Ok((fetched, parsed, landed));
    }
    let mut fetched = file.read()?;
    let landed = landing.put(batch_id, &fetched.ext, &fetched.bytes)?;
    landing.sync();
    let parsed = parse_payload(cfg, src, &fetched, now_local, part_rows, part);
    fetched.bytes = Vec::new();
    Ok((fetched, parsed, landed))
}

/// The size from which a UTF-8 rating file is read as a stream (see
/// [`land_and_parse`]): 64 MiB, about half a million rows. Smaller files
/// are read whole, as their encoding is best judged on the whole text
/// (a UTF-8 file with a few broken bytes is told from a GBK one).
/// `MANYI_STREAM_BYTES` sets it for the tests.
fn stream_bytes() -> u64 {
    std::env::var("MANYI_STREAM_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(64 << 20)
}

/// How many pages an API source's fetcher may run ahead of the commits: a
/// whole commit's worth and a quarter more, so that while one commit of
/// `commit_every` pages is written the fetcher gathers the whole next one
/// (with 32 pages of room and commits of 100 it stopped a third of the way
/// and waited for the commit, 135 k against 205 k ratings a second on the
/// benchmark). Bounded, as each page waits in memory as received: a page
/// of 1,000 ratings is about 0.35 MB.
fn pages_ahead(commit_every: u32) -> usize {
    let every = commit_every as usize;
    (every + every / 4).clamp(32, 256)
}

/// Fetches an API source page by page from its watermark (minus the overlap):
/// every page is landed as received, and at each commit point the pager
/// marks (every `commit_every` pages, and at the end) the records are
/// committed with the watermark in one transaction. A page that cannot be
/// fetched intact fails the pending batch: nothing of it is committed and
/// the watermark stays where the last commit put it.
fn collect_api(cfg: &Config, store: &mut Store, src: &SourceConfig, sum: &mut SourceSummary, progress: &dyn Fn(Progress)) -> Result<()> {
    let now_utc = Utc::now();
    let now_local = now_utc.with_timezone(&cfg.tz).naive_local();
    let pager = ApiPager::new(cfg, src, store.watermark(&src.name)?, now_local)?;
    let run_id = collect_stamp(&src.name, now_utc);
    // Three threads, each handing on to the next through a bounded channel:
    // the fetcher gets and reads the next pages, the lander lands each page
    // as received, and this thread commits. The platform's answer, reading
    // a page, the landing's fsyncs and the commit's otherwise wait for each
    // other (landing on this thread, its fsyncs were a fifth of the
    // committing thread's time). The pager works out each watermark itself
    // and fetches nothing that depends on a commit, so pages fetched or
    // landed ahead of a failed commit are simply not committed: the next
    // run fetches them again from the watermark.
    //
    // Each channel holds `pages_ahead` steps, so the fetcher keeps going
    // while a commit of `commit_every` pages is written (with one step of
    // room it stopped two pages in, and the commits were not overlapped at
    // all).
    let ahead = pages_ahead(src.api.as_ref().map_or(1, |a| a.commit_every));
    let landing = store.landing(&src.name, now_local.date());
    std::thread::scope(|scope| -> Result<()> {
        let (fetched_tx, fetched_rx) = std::sync::mpsc::sync_channel(ahead);
        let (landed_tx, landed_rx) = std::sync::mpsc::sync_channel(ahead);
        scope.spawn(move || {
            for step in pager {
                if fetched_tx.send(step).is_err() {
                    break;
                }
            }
        });
        let run_id = &run_id;
        scope.spawn(move || {
            for step in fetched_rx {
                let landed = step.map_err(anyhow::Error::from).and_then(|step| {
                    let path = landing.put(&format!("{run_id}-p{:04}", step.number), "json", &step.bytes)?;
                    // A commit names its pages' landing: their names must
                    // be durable before it is written. The folder is synced
                    // once for all the pages the commit takes.
                    if step.commit.is_some() {
                        landing.sync();
                    }
                    Ok((step, path))
                });
                let failed = landed.is_err();
                if landed_tx.send(landed).is_err() || failed {
                    break;
                }
            }
        });
        // The batch's landing file named in the catalog: its first page's.
        let mut first_landing = None;
        for landed in landed_rx {
            let (step, landing) = landed?;
            crate::store::crash_point("after-land");
            sum.pages += 1;
            first_landing.get_or_insert(landing);
            sum.fetched += step.count;
            progress(Progress { source: &src.name, done: sum.fetched as u64, total: step.total });
            if let Some(batch) = step.commit {
                commit_api_batch(store, src, &format!("{run_id}-c{:03}", batch.chunk), batch, first_landing.take(), sum)?;
                super::publish::after_commit(cfg, store);
                crate::store::crash_point("after-commit");
            }
        }
        Ok(())
    })?;
    tracing::info!(source = %src.name, pages = sum.pages, new = sum.new, updated = sum.updated, unchanged = sum.unchanged, quarantined = sum.quarantined, "collected");
    if !sum.over_quarantined.is_empty() {
        bail!("{}", sum.over_quarantined.join("; "));
    }
    Ok(())
}

/// Quarantines and commits what an API source fetched since the last commit
/// point, with the watermark the pager worked out, in one transaction.
fn commit_api_batch(
    store: &mut Store,
    src: &SourceConfig,
    batch_id: &str,
    batch: ApiBatch,
    landing: Option<PathBuf>,
    sum: &mut SourceSummary,
) -> Result<()> {
    sum.absorb(&batch.parsed);
    if batch.is_empty() {
        return Ok(());
    }
    let what = format!("pages {:?} (landed, watermark not moved)", batch.pages);
    if let Some(why) = inversion_evidence(src, &what, batch.parsed.guard) {
        sum.held.push(why.clone());
        bail!("{why}");
    }
    let parsed = batch.parsed;
    let quarantine = store.quarantine(&src.name, batch_id, &parsed.headers, &parsed.rejected)?;
    if let Some(q) = &quarantine {
        tracing::warn!(source = %src.name, pages = ?batch.pages, rows = parsed.rejected.len(), quarantine = %q.display(), "records quarantined");
        sum.quarantine_files.push(q.clone());
    }
    let what = format!("batch {batch_id} (pages {:?})", batch.pages);
    let mut rejections = Rejections::default();
    rejections.add(&parsed.rejected);
    let rows = parsed.rows_read.max(rejections.rows + parsed.ratings.len() + parsed.responses.len());
    sum.over_quarantined.extend(over_quarantined(&what, &rejections, rows, src.max_quarantine_share, quarantine.as_deref()));
    let meta = BatchMeta {
        batch_id: batch_id.into(),
        source: src.name.clone(),
        landing,
        quarantine,
        quarantined: parsed.rejected.len(),
        watermark: batch.watermark,
    };
    let outcome = match src.kind {
        SourceKind::WjxApi | SourceKind::WjxExport => store.commit_responses(&meta, &parsed.responses)?,
        _ => store.commit_ratings(&meta, &parsed.ratings)?,
    };
    sum.add(&outcome);
    sum.quarantined += parsed.rejected.len();
    Ok(())
}

enum FileFailure {
    Rejected(String),
    Held(String),
    /// Ids came again in later parts with other content (see
    /// [`Ingested::Again`]); the file as parsed, to be read again.
    Repeats(std::collections::BTreeSet<Box<str>>),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for FileFailure {
    fn from(e: E) -> Self {
        FileFailure::Other(e.into())
    }
}

/// What committing one inbox file did.
struct FileOutcome {
    /// Rows read (good and rejected).
    rows_read: usize,
    /// New, updated and unchanged records.
    batch: BatchOutcome,
    /// Rows quarantined.
    quarantined: usize,
    /// The quarantine file, when rows were rejected.
    quarantine_file: Option<PathBuf>,
    /// Why the file fails the run although committed (see [`over_quarantined`]).
    over_quarantined: Option<String>,
}

/// Reads a file's table and normalises its rows (no side effects but the
/// parts of a large rating file handed to `part`).
fn parse_payload(
    cfg: &Config,
    src: &SourceConfig,
    fetched: &Fetched,
    now_local: chrono::NaiveDateTime,
    part_rows: usize,
    part: &mut collect::PartSink<'_>,
) -> ParseResult {
    let (file, bytes) = (fetched.name.as_str(), fetched.bytes.as_slice());
    match src.kind {
        SourceKind::WjxExport | SourceKind::WjxApi => {
            collect::read_table(file, bytes).and_then(|t| collect::parse_wjx_export(cfg, src, file, &t))
        }
        SourceKind::RatingFile | SourceKind::HaochapingApi | SourceKind::Intake => {
            collect::parse_rating_file_in_parts(cfg, src, file, bytes, now_local, part_rows, part)
        }
    }
}

/// Quarantines a parsed file's rejected rows and commits the rest into
/// `batch`; dropped uncommitted (the file held or refused), the batch
/// takes the parts it was handed with it.
fn commit_file(
    mut batch: PartedBatch<'_>,
    mut rejections: Rejections,
    src: &SourceConfig,
    landed: &Landed,
    parsed: ParseResult,
    may_read_again: bool,
) -> std::result::Result<FileOutcome, FileFailure> {
    let fetched = &landed.fetched;
    let parsed = match parsed {
        Ok(p) => p,
        Err(collect::CollectError::BadFile { file, reason }) => return Err(FileFailure::Rejected(format!("{file}: {reason}"))),
        Err(collect::CollectError::Held { file, reason }) => return Err(FileFailure::Held(format!("{file}: {reason}"))),
        Err(e) => return Err(e.into()),
    };
    if let Some(why) = inversion_evidence(src, &format!("file {} (it stays in the inbox)", fetched.name), parsed.guard) {
        return Err(FileFailure::Held(why));
    }
    rejections.add(&parsed.rejected);
    batch.quarantine_rows(&src.name, &parsed.headers, &parsed.rejected)?;
    match record_kind(src) {
        RecordKind::Ratings => batch.add_ratings(&parsed.ratings)?,
        RecordKind::Responses => batch.add_responses(&src.name, &parsed.responses)?,
    };
    let repeated = batch.repeated_in_parts();
    if may_read_again && !repeated.is_empty() {
        if repeated.len() <= HOLD_MAX {
            return Err(FileFailure::Repeats(repeated.clone()));
        }
        tracing::warn!(source = %src.name, file = %fetched.name, ids = repeated.len(),
            "too many ids come again in later parts with other content to hold them: each is stored as a version of its own, the last counting");
    }
    let quarantine = batch.close_quarantine()?;
    if let Some(q) = &quarantine {
        tracing::warn!(source = %src.name, file = %fetched.name, rows = rejections.rows, quarantine = %q.display(), "rows quarantined");
    }
    // `rows_read` counts a large file's rows that went ahead in parts; the
    // sum, the records of a payload that does not count its rows.
    let rows = parsed.rows_read.max(rejections.rows + parsed.ratings.len() + parsed.responses.len());
    let over = over_quarantined(&fetched.name, &rejections, rows, src.max_quarantine_share, quarantine.as_deref());
    let meta = BatchMeta {
        batch_id: landed.batch_id.clone(),
        source: src.name.clone(),
        landing: Some(landed.landing.clone()),
        quarantine: quarantine.clone(),
        quarantined: rejections.rows,
        watermark: None,
    };
    let batch = batch.finish(&meta)?;
    Ok(FileOutcome {
        rows_read: parsed.rows_read,
        batch,
        quarantined: rejections.rows,
        quarantine_file: quarantine,
        over_quarantined: over,
    })
}
