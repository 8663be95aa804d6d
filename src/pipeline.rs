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
use crate::schedule::{JobDef, JobKind, Period};
use crate::store::{BatchMeta, DeliveryRecord, Store};
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use polars::prelude::*;
use std::path::PathBuf;

/// What one source's collect did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceSummary {
    /// Source name.
    pub source: String,
    /// Files read from the inbox.
    pub files: usize,
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
}

/// Collects every configured source (or only `only`).
pub fn collect_all(cfg: &Config, store: &mut Store, only: Option<&str>) -> Result<Vec<SourceSummary>> {
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
        out.push(collect_source(cfg, store, src).with_context(|| format!("collecting source “{}”", src.name))?);
    }
    Ok(out)
}

fn collect_source(cfg: &Config, store: &mut Store, src: &SourceConfig) -> Result<SourceSummary> {
    let inbox = cfg.resolve(&src.inbox);
    let mut sum = SourceSummary { source: src.name.clone(), ..Default::default() };
    let files = collect::list_inbox(&inbox)?;
    for (k, fetched) in files.iter().enumerate() {
        sum.files += 1;
        let now_utc = Utc::now();
        let now_local = now_utc.with_timezone(&cfg.tz).naive_local();
        let batch_id = format!("{}-{}-{k:03}", src.name, now_utc.format("%Y%m%dT%H%M%S%3fZ"));
        let landing = store.land(&src.name, now_local.date(), &batch_id, &fetched.ext, &fetched.bytes)?;
        match ingest_file(cfg, store, src, fetched, &batch_id, landing, now_local) {
            Ok(Some(outcome)) => {
                sum.fetched += outcome.0;
                sum.new += outcome.1.new;
                sum.updated += outcome.1.updated;
                sum.unchanged += outcome.1.unchanged;
                sum.quarantined += outcome.2;
                sum.quarantine_files.extend(outcome.3);
                collect::finish_file(&inbox, fetched, None)?;
            }
            Ok(None) => {}
            Err(FileFailure::Rejected(reason)) => {
                tracing::warn!(source = %src.name, file = %fetched.name, %reason, "file rejected");
                sum.rejected_files += 1;
                collect::finish_file(&inbox, fetched, Some(&reason))?;
            }
            Err(FileFailure::Other(e)) => return Err(e.context(format!("file {}", fetched.path.display()))),
        }
    }
    tracing::info!(source = %src.name, files = sum.files, new = sum.new, updated = sum.updated, unchanged = sum.unchanged, quarantined = sum.quarantined, "collected");
    Ok(sum)
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

fn ingest_file(
    cfg: &Config,
    store: &mut Store,
    src: &SourceConfig,
    fetched: &Fetched,
    batch_id: &str,
    landing: PathBuf,
    now_local: chrono::NaiveDateTime,
) -> std::result::Result<Option<FileOutcome>, FileFailure> {
    let parsed = collect::read_table(&fetched.name, &fetched.bytes).and_then(|table| match src.kind {
        SourceKind::RatingFile => collect::parse_ratings(cfg, src, &fetched.name, &table, now_local),
        SourceKind::WjxExport => collect::parse_wjx_export(cfg, src, &fetched.name, &table),
    });
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
        SourceKind::RatingFile => store.commit_ratings(&meta, &parsed.ratings)?,
        SourceKind::WjxExport => store.commit_responses(&meta, &parsed.responses)?,
    };
    Ok(Some((parsed.rows_read, outcome, parsed.rejected.len(), quarantine)))
}

/// Options of a report run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Render and write to the outbox, record nothing as sent.
    pub dry_run: bool,
    /// Send even to recipients who already received this period's report.
    pub resend: bool,
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
}

/// What a job run did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    /// A collect job: one summary per source.
    Collect(Vec<SourceSummary>),
    /// A report job.
    Report(RunSummary),
}

/// Runs a job for a period, recording the run in the ledger.
pub fn run_job(
    cfg: &Config,
    store: &mut Store,
    job: &JobDef,
    period: Period,
    as_of: Option<DateTime<Utc>>,
    opts: RunOptions,
    trigger: &str,
) -> Result<JobOutcome> {
    let as_of = as_of.unwrap_or_else(Utc::now);
    let run_id = format!("{}-{}", job.name, Utc::now().format("%Y%m%dT%H%M%S%6fZ"));
    store.run_started(&run_id, &job.name, &period.key(), as_of, trigger)?;
    let result = match job.kind {
        JobKind::Collect => collect_all(cfg, store, None).map(JobOutcome::Collect),
        JobKind::Report => run_report(cfg, store, job, period, as_of, opts, &run_id).map(JobOutcome::Report),
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
    let as_of_local = as_of.with_timezone(&cfg.tz);
    let as_of_date = as_of_local.date_naive();

    // One scan of the trend window down to the grain; every report is a roll-up of it.
    let months: Vec<String> = period.trailing_months(13).iter().map(|p| p.key()).collect();
    let mut frames = Vec::new();
    for m in &months {
        frames.push(
            store
                .ratings(std::slice::from_ref(m), as_of)?
                .select([col("org_code"), col("category"), col("level")])
                .with_column(lit(m.clone()).alias("month")),
        );
    }
    let all = concat(frames, UnionArgs::default())?;
    let grain = aggregate::grain(all, &cfg.orgs)?;
    let bad = aggregate::bad_ratings(
        store.ratings(&[period.key()], as_of)?,
        &cfg.calendar,
        cfg.file.follow_up.deadline_working_days,
        as_of_date,
    )?;
    let survey_def = job.questionnaire.as_ref().and_then(|q| cfg.surveys.get(q));
    let responses = match survey_def {
        Some(def) => Some(store.responses(&[period.key()], as_of)?.filter(col("survey").eq(lit(def.id.clone())))),
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
    let min_n = cfg.file.metrics.min_n as u64;

    let reports_dir = store.root().join("reports").join(&job.name).join(period.key());
    let outbox = store.root().join("outbox");
    let mut summary = RunSummary {
        run_id: run_id.into(),
        report_id,
        period: period.key(),
        city: aggregate::Counts::default().stats(),
        reports: Vec::new(),
    };
    // One mailer for the whole run, so the connection is reused across offices.
    let mut mailer = match (&cfg.file.mail.smtp, opts.dry_run) {
        (Some(smtp), false) => Some(deliver::Mailer::new(smtp, &cfg.file.mail.from, &cfg.base_dir)?),
        _ => None,
    };
    let mut ctx = DeliveryCtx { cfg, store: &*store, job, period, outbox: &outbox, opts, run_id, mailer: mailer.as_mut() };
    let everything = Scope::default();
    let mut leadership_cache = None;
    for office in cfg.offices.iter().filter(|o| job.offices.is_empty() || job.offices.contains(&o.id)) {
        let (kind, scope, audience) = match office.role {
            OfficeRole::Leadership => (ReportKind::Leadership, &everything, city.clone()),
            OfficeRole::Office => (ReportKind::Office, &office.scope, office.name.clone()),
        };
        let rendered = match (&leadership_cache, kind) {
            (Some(r), ReportKind::Leadership) => Clone::clone(r),
            _ => {
                let tables = aggregate::rating_tables(&grain, &cfg.orgs, &cfg.categories, scope, period, 12, min_n);
                let bad_in: Vec<&BadRating> =
                    bad.iter().filter(|b| aggregate::in_scope(&cfg.orgs, scope, &b.org_code, &b.category)).collect();
                let fu = aggregate::follow_up_summary(bad_in.iter().copied(), as_of_date);
                let survey = match (survey_def, &responses) {
                    (Some(def), Some(lf)) => Some(aggregate::survey_tables(lf.clone(), def, &cfg.orgs, scope)?),
                    _ => None,
                };
                if kind == ReportKind::Leadership {
                    summary.city = tables.total;
                }
                let shown_bad: Vec<&BadRating> = if kind == ReportKind::Office { bad_in } else { Vec::new() };
                let view = render::build_view(cfg, kind, &audience, tables, &shown_bad, fu, survey, footer.clone(), period);
                let r = templates.render(template, &view)?;
                if kind == ReportKind::Leadership {
                    leadership_cache = Some(r.clone());
                }
                r
            }
        };
        let html_path = reports_dir.join(format!("{}.html", office.id));
        crate::store::write_atomic(&html_path, rendered.html.as_bytes())?;
        crate::store::write_atomic(&reports_dir.join(format!("{}.txt", office.id)), rendered.text.as_bytes())?;
        let outcome = deliver_office(&mut ctx, office, &rendered)?;
        summary.reports.push(ReportOutcome { office: office.id.clone(), name: office.name.clone(), html_path, ..outcome });
    }
    Ok(summary)
}

/// What one delivery needs besides the report: where, and how.
struct DeliveryCtx<'a> {
    cfg: &'a Config,
    store: &'a Store,
    job: &'a JobDef,
    period: Period,
    outbox: &'a std::path::Path,
    opts: RunOptions,
    run_id: &'a str,
    mailer: Option<&'a mut deliver::Mailer>,
}

fn deliver_office(ctx: &mut DeliveryCtx<'_>, office: &crate::config::Office, rendered: &render::Rendered) -> Result<ReportOutcome> {
    let (job, period, opts, run_id, store) = (ctx.job, ctx.period, ctx.opts, ctx.run_id, ctx.store);
    let hash = deliver::content_hash(rendered);
    let mut to = Vec::new();
    let mut already = 0;
    for r in &office.recipients {
        match store.delivery(&job.name, &period.key(), &office.id, r)? {
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
                period: period.key(),
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
        let mut key = vec![job.name.as_str(), office.id.as_str(), resend_mark.as_str()];
        let p = period.key();
        let mut owned = vec![p];
        owned.extend(batch.iter().cloned());
        key.extend(owned.iter().map(String::as_str));
        deliver::message_id(from, &key)
    };
    let Some(mailer) = ctx.mailer.as_deref_mut().filter(|_| !opts.dry_run) else {
        let msg = deliver::build_message(from, &to, rendered, &id_for(&to))?;
        let name = if opts.dry_run {
            format!("dry-run_{}_{}_{}", job.name, period.key(), office.id)
        } else {
            format!("{}_{}_{}", job.name, period.key(), office.id)
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
