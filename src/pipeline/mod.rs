//! The pipeline: the only module that calls more than one stage.
//!
//! collect → store (land, quarantine, commit) → aggregate → render → deliver,
//! with every run and every delivery on record in state.db.
//!
//! - `collect`: each source's payloads landed, quarantined and committed.
//! - `report`: a report run, prepare → build (on every core) → write → deliver.
//! - `alert`: the nightly 差评 alert.
//! - `publish`: the Delta Lake tables brought up to the store after each
//!   committed batch and on `manyi publish`.
//! - `deliver`: the delivery policy (exactly-once records, resend, held,
//!   SMTP batches) and the admins' failure mail.
//!
//! This file holds what every run shares: the ledger around a job
//! (`run_job`), its options and outcome, and the process-wide templates.

mod alert;
mod collect;
mod deliver;
mod publish;
mod report;

pub use alert::AlertSummary;
pub use collect::{Progress, SourceSummary, collect_all, collect_all_with};
pub use deliver::{AdminNotice, DeliveryIncomplete, Undelivered, notify_admins};
pub use publish::{PublishRunError, PublishSummary, after_commit as publish_after_commit, publish};
pub use report::{NotBuilt, ReportOutcome, ReportTimings, RunSummary};

use crate::aggregate;
use crate::config::Config;
use crate::config::{JobDef, JobKind};
use crate::render::Templates;
use crate::schedule::{Fire, Period, Trigger};
use crate::store::{NewRun, RunOutcome, Store};
use anyhow::Result;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

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
    let run_id = new_run_id(&job.name);
    let _lock = lock_job(store, job, period, &run_id)?;
    // An alert run that failed (a recipient refused, the process killed)
    // left its window partly delivered. "Run the job again" must serve only
    // whom it missed: resume that window first, with its own as-of and so its
    // own delivery key, then go on with the new one.
    if job.kind == JobKind::Alert
        && as_of.is_none()
        && let Some(window) = store.unfinished_window(&job.name)?
    {
        tracing::warn!(job = %job.name, as_of = %window.to_rfc3339(), "the last alert run did not finish; resuming its window first");
        run_locked(cfg, store, job, period, window, opts, &new_run_id(&job.name))?;
    }
    // Taken after the lock: a run that waited for another reports on the
    // data as it is when it starts.
    let as_of = as_of.unwrap_or_else(Utc::now);
    let as_of = DateTime::from_timestamp_millis(as_of.timestamp_millis()).unwrap_or(as_of);
    run_locked(cfg, store, job, period, as_of, opts, &run_id)
}

/// Takes the run lock of the job for this period (see `store::run_lock`):
/// one live run per job and period, so two runs never both send; a run that
/// finds the lock held waits, and says so.
fn lock_job(store: &Store, job: &JobDef, period: Period, run_id: &str) -> Result<crate::store::RunLockGuard> {
    // Alerts and collects work by commit time, not by period: one at a time per job.
    let key = match job.kind {
        JobKind::Report => period.key(),
        JobKind::Alert | JobKind::Collect => "-".to_string(),
    };
    let guard = store.lock_run(&job.name, &key, run_id, &|h| {
        tracing::warn!(
            job = %job.name, period = %key, holder = %h.run_id, pid = h.pid, host = %h.host, since = %h.started_at,
            "another run of this job and period is in progress; waiting for it to finish"
        );
    })?;
    if let Some(dead) = &guard.took_over {
        tracing::warn!(job = %job.name, period = %key, dead = %dead.run_id, pid = dead.pid, host = %dead.host,
            "an earlier run of this job and period died without finishing; taking over");
    }
    Ok(guard)
}

/// One run in the ledger, the lock already held.
fn run_locked(
    cfg: &Config,
    store: &mut Store,
    job: &JobDef,
    period: Period,
    as_of: DateTime<Utc>,
    opts: RunOptions,
    run_id: &str,
) -> Result<JobOutcome> {
    store.run_started(&NewRun {
        run_id,
        job: &job.name,
        period: &period.key(),
        as_of,
        trigger: opts.trigger.as_str(),
        fire_time: opts.fire_time,
        slots: opts.slots.max(1),
    })?;
    let result = match job.kind {
        JobKind::Collect => collect_all(cfg, store, None).map(JobOutcome::Collect),
        JobKind::Report => report::run_report(cfg, store, job, period, as_of, opts, run_id).map(JobOutcome::Report),
        JobKind::Alert => alert::run_alert(cfg, store, job, as_of, opts, run_id).map(JobOutcome::Alert),
    };
    if let Ok(JobOutcome::Report(summary)) = &result
        && (summary.reports.iter().any(|r| !r.failed.is_empty()) || !summary.not_built.is_empty())
    {
        let incomplete = DeliveryIncomplete { summary: summary.clone() };
        let counts = serde_json::to_value(summary).unwrap_or_default();
        store.run_ended(run_id, RunOutcome::Failed, &counts, Some(&incomplete.to_string()))?;
        return Err(incomplete.into());
    }
    match &result {
        Ok(v) => store.run_ended(run_id, RunOutcome::Ok, &serde_json::to_value(v).unwrap_or_default(), None)?,
        Err(e) => store.run_ended(run_id, RunOutcome::Failed, &serde_json::Value::Null, Some(&format!("{e:#}")))?,
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
    store.run_ended(&run_id, RunOutcome::Skipped, &serde_json::Value::Null, Some(&why))?;
    Ok(())
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
    Ok(aggregate::breakdown(store.ratings(&period.month_keys(), as_of)?, &refs, period, dims, cfg.file.metrics.include_default)?)
}

/// Each question of `survey` over the whole deployment in `period`, as seen
/// at `as_of`: what `manyi figures --survey` prints.
pub fn survey_figures(
    cfg: &Config,
    store: &Store,
    period: Period,
    survey: &crate::config::SurveyDef,
    as_of: Option<DateTime<Utc>>,
) -> Result<aggregate::SurveyTables> {
    use polars::prelude::{col, lit};
    let as_of = as_of.unwrap_or_else(Utc::now);
    let responses = store.responses(&period.month_keys(), as_of)?.filter(col("survey").eq(lit(survey.id.clone())));
    let everything = crate::config::Scope::default();
    Ok(aggregate::survey_tables(responses, period, survey, &cfg.orgs, &cfg.categories, &everything)?)
}

/// The templates under `dir`, loaded once per process: `serve` runs many
/// jobs, and parsing every template and registering the filters again for
/// each run bought nothing. A load that fails is not kept, so a template
/// fixed while the service runs is picked up by the next run; a template
/// edited after a successful load needs a restart, like the configuration.
fn templates(dir: &Path) -> Result<Arc<Templates>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, Arc<Templates>>>> = OnceLock::new();
    let cache = LOADED.get_or_init(Mutex::default);
    // A panic elsewhere while holding the lock leaves a map that is still whole.
    let mut cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(t) = cache.get(dir) {
        return Ok(Arc::clone(t));
    }
    let loaded = Arc::new(Templates::load(dir)?);
    cache.insert(dir.to_path_buf(), Arc::clone(&loaded));
    Ok(loaded)
}
