//! The pipeline: the only module that calls more than one stage.
//!
//! collect → store (land, quarantine, commit) → aggregate → render → deliver,
//! with every run and every delivery on record in state.db.

use crate::aggregate::{self, BadRating};
use crate::collect::{self, Fetched};
use crate::config::{Config, OfficeRole, Scope, SourceConfig, SourceKind};
use crate::deliver;
use crate::model::OrgLevel;
use crate::render::{self, Footer, ReportKind, Templates};
use crate::schedule::{Fire, JobDef, JobKind, Period, Trigger};
use crate::store::{BatchMeta, DeliveryRecord, NewRun, Store};
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use polars::prelude::*;
use std::collections::HashMap;
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
    /// The source's watermark after the run (API sources).
    pub watermark: Option<String>,
    /// Why the source failed, if it did; what was committed before stays.
    pub error: Option<String>,
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
    if let Some(name) = only {
        if !cfg.file.sources.iter().any(|s| s.name == name) {
            bail!(
                "no source named “{name}” in the configuration (sources: {})",
                cfg.file.sources.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
    }
    let mut out = Vec::new();
    for src in cfg.file.sources.iter().filter(|s| only.is_none_or(|n| n == s.name)) {
        let mut sum = SourceSummary { source: src.name.clone(), ..Default::default() };
        let res = match src.kind {
            SourceKind::RatingFile | SourceKind::WjxExport => collect_source(cfg, store, src, &mut sum, progress),
            SourceKind::HaochapingApi | SourceKind::WjxApi => collect_api(cfg, store, src, &mut sum, progress),
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
    Ok(out)
}

fn collect_source(cfg: &Config, store: &mut Store, src: &SourceConfig, sum: &mut SourceSummary, progress: &dyn Fn(Progress)) -> Result<()> {
    let inbox = cfg.resolve(&src.inbox);
    let files = collect::list_inbox(&inbox)?;
    let mut rejected = Vec::new();
    // Reading and parsing a file touches nothing but the file, so the next
    // file is read and parsed on another core while this one is landed and
    // committed: a province's monthly drop is a dozen files of close to a
    // million rows, and the two halves take about as long as each other.
    // The channel holds nothing (a rendezvous), so at most two files are in
    // memory: the one being committed and the next, parsed.
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel(0);
        let files = &files;
        scope.spawn(move || {
            for file in files {
                let item = file.read().map(|fetched| {
                    let now_local = Utc::now().with_timezone(&cfg.tz).naive_local();
                    let parsed = parse_payload(cfg, src, &fetched, now_local);
                    (fetched, parsed)
                });
                if tx.send(item).is_err() {
                    break;
                }
            }
        });
        for (k, item) in rx.into_iter().enumerate() {
            let (fetched, parsed) = item?;
            let fetched = &fetched;
            sum.files += 1;
            let now_utc = Utc::now();
            let now_local = now_utc.with_timezone(&cfg.tz).naive_local();
            let batch_id = format!("{}-{}-{k:03}", src.name, now_utc.format("%Y%m%dT%H%M%S%3fZ"));
            let landing = store.land(&src.name, now_local.date(), &batch_id, &fetched.ext, &fetched.bytes)?;
            crate::store::crash_point("after-land");
            match commit_file(store, src, fetched, parsed, &batch_id, landing) {
                Ok(Some(outcome)) => {
                    sum.fetched += outcome.0;
                    sum.new += outcome.1.new;
                    sum.updated += outcome.1.updated;
                    sum.unchanged += outcome.1.unchanged;
                    sum.quarantined += outcome.2;
                    sum.quarantine_files.extend(outcome.3);
                    crate::store::crash_point("after-commit");
                    collect::finish_file(&inbox, fetched, None)?;
                }
                Ok(None) => {}
                Err(FileFailure::Rejected(reason)) => {
                    tracing::warn!(source = %src.name, file = %fetched.name, %reason, "file rejected");
                    sum.rejected_files += 1;
                    collect::finish_file(&inbox, fetched, Some(&reason))?;
                    rejected.push(fetched.name.clone());
                }
                Err(FileFailure::Other(e)) => return Err(e.context(format!("file {}", fetched.path.display()))),
            }
            progress(Progress { source: &src.name, done: sum.fetched as u64, total: None });
        }
        Ok(())
    })?;
    tracing::info!(source = %src.name, files = sum.files, new = sum.new, updated = sum.updated, unchanged = sum.unchanged, quarantined = sum.quarantined, "collected");
    if !rejected.is_empty() {
        bail!(
            "{} file(s) rejected whole, nothing of them stored: {} (moved to {}, the reason beside each in a .reason.txt)",
            rejected.len(),
            rejected.join(", "),
            inbox.join("rejected").display()
        );
    }
    Ok(())
}

/// Records of an API source fetched since the last commit.
#[derive(Default)]
struct PendingBatch {
    parsed: collect::Parsed,
    first_landing: Option<PathBuf>,
    pages: Vec<u32>,
}

/// Fetches an API source page by page from its watermark (minus the overlap):
/// every page is landed as received, and every `commit_every` pages (and at
/// the end) the records are committed with the watermark in one transaction.
/// A page that cannot be fetched intact fails the pending batch: nothing of
/// it is committed and the watermark stays where the last commit put it.
fn collect_api(cfg: &Config, store: &mut Store, src: &SourceConfig, sum: &mut SourceSummary, progress: &dyn Fn(Progress)) -> Result<()> {
    let api = src.api.as_ref().context("an API source needs a [source.api] table")?;
    let client = collect::HttpSource::new(&src.name, api)?;
    let now_utc = Utc::now();
    let now_local = now_utc.with_timezone(&cfg.tz).naive_local();
    let old_mark = store.watermark(&src.name)?;
    let window = collect::Window::for_run(old_mark.as_deref(), api, now_local);
    let run_id = format!("{}-{}", src.name, now_utc.format("%Y%m%dT%H%M%S%3fZ"));
    let mut mark = old_mark.clone();
    let mut pending = PendingBatch::default();
    let mut chunk = 0u32;
    let mut page = 1u32;
    let mut total = None;
    loop {
        let (number, bytes, parsed, count, page_total) = match src.kind {
            SourceKind::WjxApi => {
                let p = collect::fetch_wjx_page(&client, cfg, src, &window, page)?;
                let parsed = collect::parse_wjx_page(cfg, src, &p).map_err(|e| anyhow::anyhow!("page {page}: {e}"))?;
                (p.number, p.bytes, parsed, p.rows.len(), p.total)
            }
            _ => {
                let p = client.fetch_haochaping(&window, page)?;
                let parsed = collect::parse_haochaping_page(cfg, src, &p, now_local);
                (p.number, p.bytes, parsed, p.records.len(), p.total)
            }
        };
        total = total.or(page_total);
        sum.pages += 1;
        let landing = store.land(&src.name, now_local.date(), &format!("{run_id}-p{number:04}"), "json", &bytes)?;
        crate::store::crash_point("after-land");
        pending.first_landing.get_or_insert(landing);
        pending.pages.push(number);
        pending.parsed.rows_read += parsed.rows_read;
        pending.parsed.ratings.extend(parsed.ratings);
        pending.parsed.responses.extend(parsed.responses);
        pending.parsed.rejected.extend(parsed.rejected);
        if pending.parsed.headers.is_empty() {
            pending.parsed.headers = parsed.headers;
        }
        sum.fetched += count;
        progress(Progress { source: &src.name, done: sum.fetched as u64, total });
        let size = if src.kind == SourceKind::WjxApi { api.page_size.min(50) } else { api.page_size } as usize;
        let last = count == 0 || count < size || total.is_some_and(|t| u64::from(page) * size as u64 >= t);
        let limit = page >= api.page_limit;
        if last || limit || pending.pages.len() >= api.commit_every as usize {
            let batch = std::mem::take(&mut pending);
            chunk += 1;
            mark = commit_api_batch(store, src, &format!("{run_id}-c{chunk:03}"), batch, mark, limit && !last, sum)?;
            crate::store::crash_point("after-commit");
        }
        if last {
            break;
        }
        if limit {
            tracing::warn!(source = %src.name, pages = page, "page limit reached; the rest comes in the next run");
            break;
        }
        page += 1;
    }
    tracing::info!(source = %src.name, pages = sum.pages, new = sum.new, updated = sum.updated, unchanged = sum.unchanged, quarantined = sum.quarantined, "collected");
    Ok(())
}

/// Commits what an API source fetched since the last commit; returns the new
/// watermark (the latest record time committed, never moved backwards).
fn commit_api_batch(
    store: &mut Store,
    src: &SourceConfig,
    batch_id: &str,
    batch: PendingBatch,
    mark: Option<String>,
    catch_up: bool,
    sum: &mut SourceSummary,
) -> Result<Option<String>> {
    let parsed = batch.parsed;
    let latest = parsed.ratings.iter().map(|r| r.rated_at).chain(parsed.responses.iter().map(|r| r.submitted_at)).max();
    let old = mark.as_deref().map(|m| m.trim_end_matches(collect::CATCH_UP)).and_then(collect::parse_timestamp);
    let time = match (latest, old) {
        (Some(l), Some(m)) => Some(l.max(m)),
        (l, m) => l.or(m),
    };
    let suffix = if catch_up { collect::CATCH_UP } else { "" };
    let new_mark = time.map(|t| format!("{}{suffix}", t.format("%Y-%m-%d %H:%M:%S")));
    if parsed.ratings.is_empty() && parsed.responses.is_empty() && parsed.rejected.is_empty() {
        return Ok(mark);
    }
    let quarantine = store.quarantine(&src.name, batch_id, &parsed.headers, &parsed.rejected)?;
    if let Some(q) = &quarantine {
        tracing::warn!(source = %src.name, pages = ?batch.pages, rows = parsed.rejected.len(), quarantine = %q.display(), "records quarantined");
        sum.quarantine_files.push(q.clone());
    }
    let meta = BatchMeta {
        batch_id: batch_id.into(),
        source: src.name.clone(),
        landing: batch.first_landing,
        quarantine,
        quarantined: parsed.rejected.len(),
        watermark: new_mark.clone(),
    };
    let outcome = match src.kind {
        SourceKind::WjxApi | SourceKind::WjxExport => store.commit_responses(&meta, &parsed.responses)?,
        _ => store.commit_ratings(&meta, &parsed.ratings)?,
    };
    sum.new += outcome.new;
    sum.updated += outcome.updated;
    sum.unchanged += outcome.unchanged;
    sum.quarantined += parsed.rejected.len();
    Ok(new_mark)
}

enum FileFailure {
    Rejected(String),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for FileFailure {
    fn from(e: E) -> Self {
        FileFailure::Other(e.into())
    }
}

type FileOutcome = (usize, crate::store::BatchOutcome, usize, Option<PathBuf>);

/// Reads a file's table and normalises its rows (no side effects).
fn parse_payload(
    cfg: &Config,
    src: &SourceConfig,
    fetched: &Fetched,
    now_local: chrono::NaiveDateTime,
) -> std::result::Result<collect::Parsed, collect::CollectError> {
    collect::read_table(&fetched.name, &fetched.bytes).and_then(|table| match src.kind {
        SourceKind::WjxExport | SourceKind::WjxApi => collect::parse_wjx_export(cfg, src, &fetched.name, &table),
        SourceKind::RatingFile | SourceKind::HaochapingApi => collect::parse_ratings(cfg, src, &fetched.name, &table, now_local),
    })
}

/// Quarantines a parsed file's rejected rows and commits the rest.
fn commit_file(
    store: &mut Store,
    src: &SourceConfig,
    fetched: &Fetched,
    parsed: std::result::Result<collect::Parsed, collect::CollectError>,
    batch_id: &str,
    landing: PathBuf,
) -> std::result::Result<Option<FileOutcome>, FileFailure> {
    let parsed = match parsed {
        Ok(p) => p,
        Err(collect::CollectError::BadFile { file, reason }) => return Err(FileFailure::Rejected(format!("{file}: {reason}"))),
        Err(e) => return Err(e.into()),
    };
    let quarantine = store.quarantine(&src.name, batch_id, &parsed.headers, &parsed.rejected)?;
    if let Some(q) = &quarantine {
        tracing::warn!(source = %src.name, file = %fetched.name, rows = parsed.rejected.len(), quarantine = %q.display(), "rows quarantined");
    }
    let meta = BatchMeta {
        batch_id: batch_id.into(),
        source: src.name.clone(),
        landing: Some(landing),
        quarantine: quarantine.clone(),
        quarantined: parsed.rejected.len(),
        watermark: None,
    };
    let outcome = match src.kind {
        SourceKind::RatingFile | SourceKind::HaochapingApi => store.commit_ratings(&meta, &parsed.ratings)?,
        SourceKind::WjxExport | SourceKind::WjxApi => store.commit_responses(&meta, &parsed.responses)?,
    };
    Ok(Some((parsed.rows_read, outcome, parsed.rejected.len(), quarantine)))
}

/// Options of a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Render and write to the outbox, record nothing as sent.
    pub dry_run: bool,
    /// Send even to recipients who already received this period's report.
    pub resend: bool,
    /// Who started the run (manual unless `serve` did).
    pub trigger: Trigger,
    /// The scheduled slot a service run stands for.
    pub fire_time: Option<DateTime<Utc>>,
    /// Slots coalesced into this run (a catch-up after downtime stands for several).
    pub slots: usize,
}

/// One report of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportOutcome {
    /// Office id.
    pub office: String,
    /// Office name.
    pub name: String,
    /// Browsable HTML copy.
    pub html_path: PathBuf,
    /// Outbox file, when a message was written.
    pub eml_path: Option<PathBuf>,
    /// Recipients served in this run.
    pub sent: usize,
    /// Recipients skipped because they already have this period's report.
    pub already_delivered: usize,
    /// Recipients who did not get it, with the reason.
    pub failed: Vec<Undelivered>,
}

/// What a report run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunSummary {
    /// Ledger id of the run.
    pub run_id: String,
    /// Report id printed in the footer.
    pub report_id: String,
    /// The period.
    pub period: String,
    /// City totals of the period.
    pub city: aggregate::Stats,
    /// Each report.
    pub reports: Vec<ReportOutcome>,
    /// Where the run's time went, for the log and the benchmark.
    pub timings: ReportTimings,
}

/// Wall time of each phase of a report run, in seconds. The pipeline reads
/// the clock around the stages (they never do), so a slow run can be told
/// apart from a slow SMTP server in the ledger.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ReportTimings {
    /// Reading the store and grouping down to the grain, with the 差评 list.
    pub scan: f64,
    /// Roll-ups of every office's tables and building the views.
    pub aggregate: f64,
    /// Templates, charts and attachments.
    pub render: f64,
    /// Writing the browsable copies under data/reports.
    pub write: f64,
    /// Outbox or SMTP, with the delivery records.
    pub deliver: f64,
    /// Wall time of building all reports (roll-ups, views, rendering),
    /// spread over the cores; `aggregate` and `render` add up each report's
    /// own time, so they exceed this when several cores worked.
    pub build: f64,
    /// Reports rendered (the leadership report is rendered once however
    /// many leadership offices there are).
    pub rendered: usize,
}

/// What a job run did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // one value per run: boxing would buy nothing
pub enum JobOutcome {
    /// A collect job: one summary per source.
    Collect(Vec<SourceSummary>),
    /// A report job.
    Report(RunSummary),
    /// A 差评 alert job.
    Alert(AlertSummary),
}

/// Runs a job for a period, recording the run in the ledger.
///
/// `as_of` (default: now) is kept to the millisecond, the precision of the
/// commit times it is compared with, so the value the ledger shows is exactly
/// the one to pass to `--as-of` for an identical rerun.
pub fn run_job(
    cfg: &Config,
    store: &mut Store,
    job: &JobDef,
    period: Period,
    as_of: Option<DateTime<Utc>>,
    opts: RunOptions,
) -> Result<JobOutcome> {
    let as_of = as_of.unwrap_or_else(Utc::now);
    let as_of = DateTime::from_timestamp_millis(as_of.timestamp_millis()).unwrap_or(as_of);
    let run_id = new_run_id(&job.name);
    store.run_started(&NewRun {
        run_id: &run_id,
        job: &job.name,
        period: &period.key(),
        as_of,
        trigger: opts.trigger.as_str(),
        fire_time: opts.fire_time,
        slots: opts.slots.max(1),
    })?;
    let result = match job.kind {
        JobKind::Collect => collect_all(cfg, store, None).map(JobOutcome::Collect),
        JobKind::Report => run_report(cfg, store, job, period, as_of, opts, &run_id).map(JobOutcome::Report),
        JobKind::Alert => run_alert(cfg, store, job, as_of, opts, &run_id).map(JobOutcome::Alert),
    };
    if let Ok(JobOutcome::Report(summary)) = &result {
        if summary.reports.iter().any(|r| !r.failed.is_empty()) {
            let incomplete = DeliveryIncomplete { summary: summary.clone() };
            store.run_ended(&run_id, "failed", &serde_json::to_value(summary).unwrap_or_default(), Some(&incomplete.to_string()))?;
            return Err(incomplete.into());
        }
    }
    match &result {
        Ok(v) => store.run_ended(&run_id, "ok", &serde_json::to_value(v).unwrap_or_default(), None)?,
        Err(e) => store.run_ended(&run_id, "failed", &serde_json::Value::Null, Some(&format!("{e:#}")))?,
    }
    result
}

fn new_run_id(job: &str) -> String {
    format!("{job}-{}", Utc::now().format("%Y%m%dT%H%M%S%6fZ"))
}

/// Records a scheduled slot that was not run (the job has `catchup = false`
/// and the service was down at its time), so that no slot passes unrecorded.
pub fn record_skipped(store: &Store, job: &JobDef, period: Period, fire: &Fire) -> Result<()> {
    let run_id = new_run_id(&job.name);
    store.run_started(&NewRun {
        run_id: &run_id,
        job: &job.name,
        period: &period.key(),
        as_of: fire.slot,
        trigger: fire.trigger.as_str(),
        fire_time: Some(fire.slot),
        slots: fire.slots,
    })?;
    let why = format!("missed while the service was down; catchup = false, so not run ({} slot(s))", fire.slots);
    store.run_ended(&run_id, "skipped", &serde_json::Value::Null, Some(&why))?;
    Ok(())
}

/// Emails the admin list (`[mail] admins` of manyi.toml) that a run failed.
/// Returns the outbox file, or `None` when no admin is configured.
pub fn notify_admins(cfg: &Config, store: &Store, job: &str, period: &str, error: &str) -> Result<Option<PathBuf>> {
    let admins = &cfg.file.mail.admins;
    if admins.is_empty() {
        tracing::warn!(job, period, "a run failed and no `[mail] admins` are configured to be told");
        return Ok(None);
    }
    let subject = format!("【manyi】任务失败 / job failed: {job} {period}");
    let text = format!(
        "任务 {job}（期间 {period}）运行失败。\nThe run of job {job} for {period} failed.\n\n{error}\n\n\
         查看运行记录 / see the ledger: manyi history {job}\n重跑 / rerun: manyi run {job} --period {period}\n"
    );
    let html = format!("<pre>{}</pre>", text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;"));
    let message = render::Rendered { subject, html, text, images: Vec::new(), attachments: Vec::new() };
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%3fZ").to_string();
    let msg = deliver::build_message(
        &cfg.file.mail.from,
        admins,
        &message,
        &deliver::message_id(&cfg.file.mail.from, &["failure", job, period, &stamp]),
    )?;
    let name = format!("failure_{job}_{period}_{stamp}");
    Ok(Some(deliver::write_outbox(&store.root().join("outbox"), &name, &msg)?))
}

/// Writes a report file unless the same bytes are there. A different file
/// already at the path (same report id, so same job, period and as-of, but
/// other bytes: a template or code change) is kept, and the new one is
/// written beside it under the run id, so nothing reported is overwritten.
fn write_report_file(path: &std::path::Path, bytes: &[u8], run_id: &str) -> Result<PathBuf> {
    match std::fs::read(path) {
        Ok(existing) if existing == bytes => Ok(path.to_path_buf()),
        Ok(_) => {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let beside = path.with_file_name(format!("{run_id}.{name}"));
            tracing::warn!(original = %path.display(), new = %beside.display(), "a rerun with the same report id rendered different bytes; the original is kept");
            crate::store::write_atomic(&beside, bytes)?;
            Ok(beside)
        }
        Err(_) => {
            crate::store::write_atomic(path, bytes)?;
            Ok(path.to_path_buf())
        }
    }
}

fn run_report(
    cfg: &Config,
    store: &mut Store,
    job: &JobDef,
    period: Period,
    as_of: DateTime<Utc>,
    opts: RunOptions,
    run_id: &str,
) -> Result<RunSummary> {
    let template = job.template.as_deref().context("a report job needs a template")?;
    let templates = Templates::load(&cfg.templates_dir)?;
    let mut timings = ReportTimings::default();
    let clock = std::time::Instant::now();
    let as_of_local = as_of.with_timezone(&cfg.tz);
    let as_of_date = as_of_local.date_naive();

    // One scan of the trend window down to the grain; every report is a roll-up of it.
    let mut buckets = vec![period, period.previous()];
    buckets.extend(period.trailing_months(12));
    let bucket_frames = buckets.iter().map(|b| Ok((*b, store.ratings(&b.month_keys(), as_of)?))).collect::<Result<Vec<_>>>()?;
    let refs = aggregate::RefFrames::new(&cfg.orgs, &cfg.categories)?;
    let grain = aggregate::grain(bucket_frames, &refs)?;
    let bad = aggregate::bad_ratings(
        store.ratings(&period.month_keys(), as_of)?,
        Some(period),
        &cfg.calendar,
        cfg.file.follow_up.deadline_working_days,
        as_of_date,
    )?;
    timings.scan = clock.elapsed().as_secs_f64();
    let survey_def = job.questionnaire.as_ref().and_then(|q| cfg.surveys.get(q));
    let responses = match survey_def {
        Some(def) => Some(store.responses(&period.month_keys(), as_of)?.filter(col("survey").eq(lit(def.id.clone())))),
        None => None,
    };
    let provenance = store.provenance(as_of)?;
    let report_id = render::report_id(&job.name, &period.key(), as_of);
    let footer = Footer {
        quarantined: provenance.iter().map(|p| p.quarantined).sum(),
        sources: provenance,
        as_of: as_of_local.format("%Y-%m-%d %H:%M:%S").to_string(),
        report_id: report_id.clone(),
        deadline_days: cfg.file.follow_up.deadline_working_days,
    };
    let city = cfg.orgs.at_level(OrgLevel::City).next().map(|u| u.name.clone()).unwrap_or_else(|| cfg.file.organisation.clone());
    let rules = aggregate::Rules { min_n: cfg.file.metrics.min_n as u64, prior_weight: cfg.file.metrics.prior_weight };

    // One folder per report id (job, period, as-of): a rerun with another
    // as-of never touches what an earlier run reported.
    let reports_dir = store.root().join("reports").join(&job.name).join(period.key()).join(&report_id);
    let outbox = store.root().join("outbox");
    let mut summary = RunSummary {
        run_id: run_id.into(),
        report_id,
        period: period.key(),
        city: aggregate::Counts::default().stats(),
        reports: Vec::new(),
        timings,
    };
    // One mailer for the whole run, so the connection is reused across offices.
    let mut mailer = mailer_for(cfg, opts)?;
    let mut ctx = DeliveryCtx { cfg, store: &*store, job, key: period.key(), outbox: &outbox, opts, run_id, mailer: mailer.as_mut() };
    let everything = Scope::default();
    let bad_lineage: Vec<&[(String, OrgLevel)]> = bad.iter().map(|b| cfg.orgs.lineage(&b.org_code)).collect();
    // Building a report (its roll-ups, view, charts, workbook) touches only
    // the grain and the config, so the offices are built on every core, a
    // chunk at a time so that memory stays bounded by the chunk, not the
    // number of offices; writing and delivering stay in office order.
    let build = |office: &crate::config::Office| -> Result<(render::Rendered, aggregate::Stats, f64, f64)> {
        let (kind, scope, audience) = match office.role {
            OfficeRole::Leadership => (ReportKind::Leadership, &everything, city.clone()),
            OfficeRole::Office => (ReportKind::Office, &office.scope, office.name.clone()),
        };
        let clock = std::time::Instant::now();
        let tables = aggregate::rating_tables(&grain, &cfg.orgs, &cfg.categories, scope, period, 12, rules);
        let total = tables.total;
        let bad_in: Vec<&BadRating> = bad
            .iter()
            .zip(&bad_lineage)
            .filter(|(b, lineage)| aggregate::lineage_in_scope(scope, lineage, &b.category))
            .map(|(b, _)| b)
            .collect();
        let fu = aggregate::follow_up_summary(bad_in.iter().copied(), as_of_date);
        let survey = match (survey_def, &responses) {
            (Some(def), Some(lf)) => Some(aggregate::survey_tables(lf.clone(), period, def, &cfg.orgs, &cfg.categories, scope)?),
            _ => None,
        };
        let concentration = aggregate::concentration(bad_in.iter().copied());
        let overdue_by_office =
            if kind == ReportKind::Leadership { overdue_by_office(cfg, &bad, &bad_lineage, as_of_date) } else { Vec::new() };
        let shown_bad: Vec<&BadRating> = if kind == ReportKind::Office { bad_in } else { Vec::new() };
        let view = render::build_view(
            cfg,
            render::ViewInput {
                kind,
                audience: &audience,
                tables,
                bad: &shown_bad,
                follow_up: fu,
                concentration,
                overdue_by_office,
                survey,
                footer: footer.clone(),
                period,
                scheme: cfg.surveys.get(template),
            },
        );
        let t_aggregate = clock.elapsed().as_secs_f64();
        let clock = std::time::Instant::now();
        let rendered = templates.render(template, &view)?;
        Ok((rendered, total, t_aggregate, clock.elapsed().as_secs_f64()))
    };
    let offices: Vec<&crate::config::Office> =
        cfg.offices.iter().filter(|o| job.offices.is_empty() || job.offices.contains(&o.id)).collect();
    // Every leadership office gets the same report: built once.
    let mut leadership = None;
    for chunk in offices.chunks(BUILD_CHUNK) {
        let clock = std::time::Instant::now();
        // The first leadership office not yet built is built; the others reuse it.
        let mut leadership_wanted = leadership.is_none();
        let todo: Vec<&crate::config::Office> =
            chunk.iter().copied().filter(|o| o.role == OfficeRole::Office || std::mem::take(&mut leadership_wanted)).collect();
        let mut built: HashMap<&str, render::Rendered> = HashMap::new();
        for (office, result) in todo.iter().zip(parallel_map(&todo, |o| build(o))) {
            let (rendered, total, t_aggregate, t_render) = result?;
            summary.timings.aggregate += t_aggregate;
            summary.timings.render += t_render;
            summary.timings.rendered += 1;
            if office.role == OfficeRole::Leadership {
                summary.city = total;
                leadership = Some(rendered);
            } else {
                built.insert(office.id.as_str(), rendered);
            }
        }
        summary.timings.build += clock.elapsed().as_secs_f64();
        for office in chunk {
            let rendered = match office.role {
                OfficeRole::Leadership => leadership.clone().context("the leadership report was not built")?,
                OfficeRole::Office => built.remove(office.id.as_str()).context("an office report was not built")?,
            };
            // The browsable copy shows the charts from files beside it instead of cid: parts.
            let clock = std::time::Instant::now();
            let prefix = format!("{}_", office.id);
            let html_path =
                write_report_file(&reports_dir.join(format!("{}.html", office.id)), rendered.browsable_html(&prefix).as_bytes(), run_id)?;
            for i in &rendered.images {
                write_report_file(&reports_dir.join(format!("{prefix}{}", i.filename)), &i.png, run_id)?;
            }
            write_report_file(&reports_dir.join(format!("{}.txt", office.id)), rendered.text.as_bytes(), run_id)?;
            for a in &rendered.attachments {
                write_report_file(&reports_dir.join(format!("{}_{}", office.id, a.filename)), &a.bytes, run_id)?;
            }
            summary.timings.write += clock.elapsed().as_secs_f64();
            let clock = std::time::Instant::now();
            let outcome = deliver_office(&mut ctx, office, &rendered)?;
            summary.timings.deliver += clock.elapsed().as_secs_f64();
            summary.reports.push(ReportOutcome { office: office.id.clone(), name: office.name.clone(), html_path, ..outcome });
        }
    }
    Ok(summary)
}

/// Offices built together before their reports are written and delivered.
const BUILD_CHUNK: usize = 32;

/// `f` over `items` on every available core, results in the order of
/// `items`. Scoped threads pulling the next index: reports differ in size
/// (the leadership report is several times an office's), so a static split
/// would leave a core idle.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, f(item)));
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// The SMTP mailer of a run, or none (outbox, or a dry run). One per run,
/// so the connection is reused across offices.
fn mailer_for(cfg: &Config, opts: RunOptions) -> Result<Option<deliver::Mailer>> {
    Ok(match (&cfg.file.mail.smtp, opts.dry_run) {
        (Some(smtp), false) => Some(deliver::Mailer::new(smtp, &cfg.file.mail.from, &cfg.base_dir)?),
        _ => None,
    })
}

/// What one delivery needs besides the report: where, and how.
struct DeliveryCtx<'a> {
    cfg: &'a Config,
    store: &'a Store,
    job: &'a JobDef,
    key: String,
    outbox: &'a std::path::Path,
    opts: RunOptions,
    run_id: &'a str,
    mailer: Option<&'a mut deliver::Mailer>,
}

fn deliver_office(ctx: &mut DeliveryCtx<'_>, office: &crate::config::Office, rendered: &render::Rendered) -> Result<ReportOutcome> {
    let (job, opts, run_id, store) = (ctx.job, ctx.opts, ctx.run_id, ctx.store);
    let key = ctx.key.clone();
    let key = key.as_str();
    let hash = deliver::content_hash(rendered);
    let mut to = Vec::new();
    let mut already = 0;
    for r in &office.recipients {
        match store.delivery(&job.name, key, &office.id, r)? {
            Some(d) if !opts.resend && matches!(d.state.as_str(), "sent" | "outbox") => {
                already += 1;
                if d.content_hash != hash && !opts.dry_run {
                    // Late data changed the report: keep the new hash on record
                    // beside the delivered one, but do not send twice.
                    let held = DeliveryRecord {
                        state: "held".into(),
                        content_hash: hash.clone(),
                        detail: Some(format!("content changed since delivery of {}", d.content_hash)),
                        ..d.clone()
                    };
                    store.record_delivery_history(&held, run_id)?;
                }
            }
            Some(d) if d.state == "sending" => {
                // The run that recorded "sending" died before the server's
                // reply was recorded: send again (at-least-once), with the same
                // Message-ID so that a copy the server did accept shows once.
                tracing::warn!(recipient = %r, office = %office.id, "an earlier run was interrupted while sending to this recipient; sending again");
                to.push(r.clone());
            }
            _ => to.push(r.clone()),
        }
    }
    let mut outcome = ReportOutcome {
        office: office.id.clone(),
        name: office.name.clone(),
        html_path: PathBuf::new(),
        eml_path: None,
        sent: 0,
        already_delivered: already,
        failed: Vec::new(),
    };
    if to.is_empty() {
        return Ok(outcome);
    }
    let record = |recipient: &str, state: &str, channel: &str, detail: Option<String>| {
        store.record_delivery(
            &DeliveryRecord {
                job: job.name.clone(),
                period: key.to_string(),
                office: office.id.clone(),
                recipient: recipient.into(),
                state: state.into(),
                content_hash: hash.clone(),
                channel: channel.into(),
                detail,
                updated_at: String::new(),
            },
            run_id,
        )
    };
    let from = &ctx.cfg.file.mail.from;
    let resend_mark = if opts.resend { Utc::now().to_rfc3339() } else { String::new() };
    let id_for = |batch: &[String]| {
        // Not the content hash: a report rendered again after a crash differs
        // in its as-of time, yet is the same message to its reader.
        let mut parts = vec![job.name.as_str(), office.id.as_str(), resend_mark.as_str(), key];
        parts.extend(batch.iter().map(String::as_str));
        deliver::message_id(from, &parts)
    };
    let Some(mailer) = ctx.mailer.as_deref_mut().filter(|_| !opts.dry_run) else {
        let msg = deliver::build_message(from, &to, rendered, &id_for(&to))?;
        let name = if opts.dry_run {
            format!("dry-run_{}_{}_{}", job.name, key, office.id)
        } else {
            format!("{}_{}_{}", job.name, key, office.id)
        };
        let path = deliver::write_outbox(ctx.outbox, &name, &msg)?;
        if !opts.dry_run {
            for r in &to {
                record(r, "outbox", "outbox", Some(path.display().to_string()))?;
            }
        }
        outcome.sent = to.len();
        outcome.eml_path = Some(path);
        return Ok(outcome);
    };
    let batch_size = ctx.cfg.file.mail.smtp.as_ref().map_or(1, |s| s.batch_size.clamp(1, crate::config::MAX_BATCH));
    for batch in to.chunks(batch_size) {
        let msg = deliver::build_message(from, batch, rendered, &id_for(batch))?;
        // "sending" is on disk before the transaction starts, "sent" after
        // the server's reply: a crash in between is visible on the next run.
        for r in batch {
            record(r, "sending", "smtp", None)?;
        }
        let results: Vec<(String, std::result::Result<String, deliver::SendFailure>)> = match mailer.send(&msg, batch) {
            Ok(reply) => batch.iter().map(|r| (r.clone(), Ok(reply.clone()))).collect(),
            Err(deliver::SendFailure::Permanent { reply }) if batch.len() > 1 => {
                // lettre fails the whole envelope when one RCPT TO is refused,
                // before DATA, so nobody got it: each recipient alone.
                tracing::warn!(office = %office.id, %reply, "a batch was refused; sending to each recipient alone");
                batch.iter().map(|r| (r.clone(), mailer.send(&msg, std::slice::from_ref(r)))).collect()
            }
            Err(f) => batch.iter().map(|r| (r.clone(), Err(f.clone()))).collect(),
        };
        for (r, res) in results {
            match res {
                Ok(reply) => {
                    record(&r, "sent", "smtp", Some(reply))?;
                    outcome.sent += 1;
                }
                Err(f) => {
                    let why = f.to_string();
                    tracing::error!(office = %office.id, recipient = %r, reason = %why, "not delivered");
                    record(&r, "failed", "smtp", Some(why.clone()))?;
                    outcome.failed.push(Undelivered { recipient: r, reason: why });
                }
            }
        }
    }
    Ok(outcome)
}

/// What an alert run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertSummary {
    /// Window start: the previous successful alert's as-of (or a day before this one).
    pub since: DateTime<Utc>,
    /// Window end: this run's as-of.
    pub until: DateTime<Utc>,
    /// New 差评 in the window, all offices.
    pub new_bad: usize,
    /// Offices alerted, with the number of items each.
    pub offices: Vec<(String, usize)>,
    /// Offices left without mail because nothing new was in their scope.
    pub quiet: usize,
    /// Recipients the alert could not reach (office id, who and why).
    pub failed: Vec<(String, Undelivered)>,
}

/// The nightly 差评 alert: every office hears of the 差评 in its scope that
/// were first committed since the last successful alert run, with their
/// deadlines. The window is by commit time, not by rating date, so a late
/// file is still announced, and a follow-up change is not announced again.
fn run_alert(cfg: &Config, store: &mut Store, job: &JobDef, as_of: DateTime<Utc>, opts: RunOptions, run_id: &str) -> Result<AlertSummary> {
    let template = job.template.as_deref().context("an alert job needs a template")?;
    let templates = Templates::load(&cfg.templates_dir)?;
    let since = store.last_ok_as_of(&job.name)?.filter(|t| *t < as_of).unwrap_or(as_of - chrono::Duration::days(1));
    let as_of_local = as_of.with_timezone(&cfg.tz);
    let lf = store.ratings_new_between(since, as_of)?;
    let bad = aggregate::bad_ratings(lf, None, &cfg.calendar, cfg.file.follow_up.deadline_working_days, as_of_local.date_naive())?;
    // To the millisecond, like as-of: two alert runs never share a delivery key.
    let key = as_of_local.format("%Y-%m-%dT%H%M%S%3f").to_string();
    let dir = store.root().join("reports").join(&job.name).join(&key);
    let outbox = store.root().join("outbox");
    let mut summary = AlertSummary { since, until: as_of, new_bad: bad.len(), offices: Vec::new(), quiet: 0, failed: Vec::new() };
    let mut mailer = mailer_for(cfg, opts)?;
    // The delivery key is the window's end to the millisecond: each night's alert is its own message.
    let mut ctx = DeliveryCtx { cfg, store: &*store, job, key: key.clone(), outbox: &outbox, opts, run_id, mailer: mailer.as_mut() };
    for office in cfg.offices.iter().filter(|o| o.role == OfficeRole::Office && (job.offices.is_empty() || job.offices.contains(&o.id))) {
        let items: Vec<&BadRating> =
            bad.iter().filter(|b| aggregate::in_scope(&cfg.orgs, &office.scope, &b.org_code, &b.category)).collect();
        if items.is_empty() && !job.send_empty {
            summary.quiet += 1;
            continue;
        }
        let id = render::report_id(&job.name, &format!("{key}/{}", office.id), as_of);
        let view =
            render::build_alert(cfg, &office.name, &items, since.with_timezone(&cfg.tz).naive_local(), as_of_local.naive_local(), id);
        let rendered = templates.render_alert(template, &view)?;
        write_report_file(&dir.join(format!("{}.html", office.id)), rendered.html.as_bytes(), run_id)?;
        write_report_file(&dir.join(format!("{}.txt", office.id)), rendered.text.as_bytes(), run_id)?;
        let outcome = deliver_office(&mut ctx, office, &rendered)?;
        summary.failed.extend(outcome.failed.into_iter().map(|u| (office.id.clone(), u)));
        summary.offices.push((office.id.clone(), items.len()));
    }
    tracing::info!(job = %job.name, new_bad = summary.new_bad, offices = summary.offices.len(), quiet = summary.quiet, "alert");
    if !summary.failed.is_empty() {
        let list: Vec<String> = summary.failed.iter().map(|(o, u)| format!("  {o} → {}: {}", u.recipient, u.reason)).collect();
        bail!("差评 alert not delivered to {} recipient(s); run the job again to retry them:\n{}", summary.failed.len(), list.join("\n"));
    }
    Ok(summary)
}

/// Overdue 差评 per office, worst first, for the leadership report.
/// `lineage[i]` is the org lineage of `bad[i]`, looked up once by the caller.
fn overdue_by_office(
    cfg: &Config,
    bad: &[BadRating],
    lineage: &[&[(String, OrgLevel)]],
    as_of: chrono::NaiveDate,
) -> Vec<render::OfficeOverdue> {
    let mut v: Vec<render::OfficeOverdue> = cfg
        .offices
        .iter()
        .filter(|o| o.role == OfficeRole::Office)
        .map(|o| {
            let s = aggregate::follow_up_summary(
                bad.iter().zip(lineage).filter(|(b, l)| aggregate::lineage_in_scope(&o.scope, l, &b.category)).map(|(b, _)| b),
                as_of,
            );
            render::OfficeOverdue { name: o.name.clone(), due: s.due, overdue: s.overdue, rectified_rate: s.rectified_rate }
        })
        .collect();
    v.sort_by(|a, b| b.overdue.cmp(&a.overdue).then_with(|| a.name.cmp(&b.name)));
    v
}

/// Counts and figures of `period` broken down by `dims` (none: the total),
/// as seen at `as_of`: what `manyi figures` prints.
pub fn figures(
    cfg: &Config,
    store: &Store,
    period: Period,
    dims: &[aggregate::Dim],
    as_of: Option<DateTime<Utc>>,
) -> Result<aggregate::Breakdown> {
    let as_of = as_of.unwrap_or_else(Utc::now);
    let refs = aggregate::RefFrames::new(&cfg.orgs, &cfg.categories)?;
    Ok(aggregate::breakdown(store.ratings(&period.month_keys(), as_of)?, &refs, period, dims)?)
}

/// A recipient who did not get the report in this run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Undelivered {
    /// Address.
    pub recipient: String,
    /// The failure, with the server's reply.
    pub reason: String,
}

/// A report run that rendered everything but could not deliver to every
/// recipient; the delivered ones are on record and will not be sent again.
#[derive(Debug)]
pub struct DeliveryIncomplete {
    /// What the run did.
    pub summary: RunSummary,
}

impl std::fmt::Display for DeliveryIncomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let failed: usize = self.summary.reports.iter().map(|r| r.failed.len()).sum();
        let sent: usize = self.summary.reports.iter().map(|r| r.sent).sum();
        let already: usize = self.summary.reports.iter().map(|r| r.already_delivered).sum();
        writeln!(
            f,
            "delivery incomplete for {}: {failed} recipient(s) did not get their report ({sent} served now, {already} already had it). \
             Run the job again to retry them; recipients already served are not sent again.",
            self.summary.period
        )?;
        for r in &self.summary.reports {
            for u in &r.failed {
                writeln!(f, "  {} {} → {}: {}", r.office, r.name, u.recipient, u.reason)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for DeliveryIncomplete {}
