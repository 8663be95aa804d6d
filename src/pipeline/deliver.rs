//! The delivery policy: who still needs a report, exactly-once records per
//! (job, period, office, recipient), SMTP batches or the outbox, and the
//! admins' failure mail. The deliver stage builds and sends messages; it never
//! reads these records, this module decides.
//!
//! Group robots share the records: each message to a robot is recorded as
//! recipient `robot:<name>` (the card or alert), `robot:<name>/chart`,
//! `robot:<name>/xlsx` or `robot:<name>/mention`, channel `wecom` or
//! `dingtalk`, so a rerun after a partial failure sends only the messages
//! that did not arrive.

use super::RunOptions;
use super::report::ReportOutcome;
use crate::config::JobDef;
use crate::config::{Config, Office, RobotConfig};
use crate::deliver::robot::{RobotClient, RobotMessage};
use crate::deliver::{self, Mailer, SendFailure};
use crate::render::Rendered;
use crate::store::{DeliveryRecord, DeliveryState, Store};
use anyhow::Result;
use chrono::Utc;
use std::path::{Path, PathBuf};

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
    pub summary: super::RunSummary,
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
        if !self.summary.not_built.is_empty() {
            writeln!(f, "{} report(s) could not be built, so nobody of these offices got one:", self.summary.not_built.len())?;
            for n in &self.summary.not_built {
                writeln!(f, "  {} {}: {}", n.office, n.name, n.error)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for DeliveryIncomplete {}

/// The SMTP mailer of a run, or none (outbox, or a dry run). One per run,
/// so the connection is reused across offices.
pub(super) fn mailer_for(cfg: &Config, opts: RunOptions) -> Result<Option<Mailer>> {
    Ok(match (&cfg.file.mail.smtp, opts.dry_run) {
        (Some(smtp), false) => Some(Mailer::new(smtp, &cfg.file.mail.from, &cfg.base_dir)?),
        _ => None,
    })
}

/// What every delivery of a run shares: where, and how.
pub(super) struct DeliveryCtx<'a> {
    pub cfg: &'a Config,
    pub store: &'a Store,
    pub job: &'a JobDef,
    /// The delivery key: the period, or an alert's window end.
    pub key: String,
    pub outbox: &'a Path,
    pub opts: RunOptions,
    pub run_id: &'a str,
}

/// One office's report on its way: what its records and messages share.
struct Parcel<'a> {
    office: &'a Office,
    rendered: &'a Rendered,
    hash: String,
    /// Makes a resent message a new one to mail systems (empty otherwise).
    resend_mark: String,
}

/// What a delivery record says beyond its (job, period) key.
struct Entry<'a> {
    office: &'a str,
    recipient: &'a str,
    hash: &'a str,
    channel: &'a str,
}

impl DeliveryCtx<'_> {
    fn record(&self, p: &Parcel, recipient: &str, state: DeliveryState, channel: &str, detail: Option<String>) -> Result<()> {
        self.record_entry(&Entry { office: &p.office.id, recipient, hash: &p.hash, channel }, state, detail)
    }

    fn record_entry(&self, e: &Entry<'_>, state: DeliveryState, detail: Option<String>) -> Result<()> {
        let record = DeliveryRecord {
            job: self.job.name.clone(),
            period: self.key.clone(),
            office: e.office.into(),
            recipient: e.recipient.into(),
            state,
            content_hash: e.hash.into(),
            channel: e.channel.into(),
            detail,
            updated_at: String::new(),
        };
        Ok(self.store.record_delivery(&record, self.run_id)?)
    }

    /// Not the content hash: a report rendered again after a crash differs
    /// in its as-of time, yet is the same message to its reader.
    fn message_id(&self, p: &Parcel, batch: &[String]) -> String {
        let mut parts = vec![self.job.name.as_str(), p.office.id.as_str(), p.resend_mark.as_str(), self.key.as_str()];
        parts.extend(batch.iter().map(String::as_str));
        deliver::message_id(&self.cfg.file.mail.from, &parts)
    }
}

/// Delivers an office's report to those of its recipients who do not have
/// it yet: by SMTP when a mailer is given (not in a dry run), else to the outbox.
pub(super) fn deliver_office(
    ctx: &DeliveryCtx<'_>,
    mailer: Option<&mut Mailer>,
    office: &Office,
    rendered: &Rendered,
) -> Result<ReportOutcome> {
    let resend_mark = if ctx.opts.resend { Utc::now().to_rfc3339() } else { String::new() };
    let parcel = Parcel { office, rendered, hash: deliver::content_hash(rendered), resend_mark };
    let (to, already) = recipients_to_serve(ctx, &parcel)?;
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
    match mailer.filter(|_| !ctx.opts.dry_run) {
        Some(mailer) => deliver_by_smtp(ctx, mailer, &parcel, &to, &mut outcome)?,
        None => deliver_to_outbox(ctx, &parcel, &to, &mut outcome)?,
    }
    Ok(outcome)
}

/// The robot client of a run, or none (a dry run, or no `[[robot]]`).
pub(super) fn robots_for(cfg: &Config, opts: RunOptions) -> Result<Option<RobotClient>> {
    if opts.dry_run || cfg.file.robots.is_empty() {
        return Ok(None);
    }
    Ok(Some(RobotClient::new()?))
}

/// The messages of one robot: (recipient suffix, message); the suffix is
/// empty for the main one.
pub(super) type RobotParts = Vec<(&'static str, RobotMessage)>;

/// Sends an office's robots the messages `parts` makes for each of them,
/// skipping those already delivered (unless `--resend`). Without a client
/// (a dry run) the JSON bodies are written to the outbox instead.
pub(super) fn deliver_to_robots(
    ctx: &DeliveryCtx<'_>,
    mut client: Option<&mut RobotClient>,
    office: &Office,
    parts: &dyn Fn(&RobotConfig) -> RobotParts,
    outcome: &mut ReportOutcome,
) -> Result<()> {
    for name in &office.robots {
        let Some(robot) = ctx.cfg.file.robots.iter().find(|r| &r.name == name) else { continue };
        let mut dry = Vec::new();
        for (suffix, msg) in parts(robot) {
            let recipient = format!("robot:{name}{suffix}");
            let hash = deliver::robot::message_hash(&msg);
            let entry = Entry { office: &office.id, recipient: &recipient, hash: &hash, channel: robot.kind.as_str() };
            if already_served(ctx, &entry)? {
                outcome.already_delivered += 1;
                continue;
            }
            match client.as_deref_mut() {
                None => dry.push(dry_run_body(robot, &msg)),
                Some(client) => match send_to_robot(ctx, client, robot, &msg, &entry)? {
                    None => outcome.sent += 1,
                    Some(reason) => outcome.failed.push(Undelivered { recipient, reason }),
                },
            }
        }
        if !dry.is_empty() {
            outcome.sent += dry.len();
            let file = format!("dry-run_{}_{}_{}_robot-{name}.json", ctx.job.name, ctx.key, office.id);
            crate::store::write_atomic(&ctx.outbox.join(file), serde_json::to_string_pretty(&dry)?.as_bytes())?;
        }
    }
    Ok(())
}

/// Whether a robot message is on record as delivered (and not to be resent).
/// A message recorded `sending` by a dead run is sent again, as for email.
fn already_served(ctx: &DeliveryCtx<'_>, e: &Entry<'_>) -> Result<bool> {
    match ctx.store.delivery(&ctx.job.name, &ctx.key, e.office, e.recipient)? {
        Some(d) if !ctx.opts.resend && d.state.is_delivered() => {
            if d.content_hash != e.hash && !ctx.opts.dry_run {
                let held = DeliveryRecord {
                    state: DeliveryState::Held,
                    content_hash: e.hash.into(),
                    detail: Some(format!("content changed since delivery of {}", d.content_hash)),
                    ..d
                };
                ctx.store.record_delivery_history(&held, ctx.run_id)?;
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// One robot message, recorded `sending` before the request and `sent` or
/// `failed` (with the errcode and errmsg) after it; the failure, if any.
fn send_to_robot(
    ctx: &DeliveryCtx<'_>,
    client: &mut RobotClient,
    robot: &RobotConfig,
    msg: &RobotMessage,
    e: &Entry<'_>,
) -> Result<Option<String>> {
    ctx.record_entry(e, DeliveryState::Sending, None)?;
    match client.send(robot, msg) {
        Ok(reply) => {
            ctx.record_entry(e, DeliveryState::Sent, Some(reply))?;
            Ok(None)
        }
        Err(f) => {
            let why = format!("{} {}: {f}", robot.kind.as_str(), msg.what());
            tracing::error!(office = %e.office, recipient = %e.recipient, reason = %why, "robot message not delivered");
            ctx.record_entry(e, DeliveryState::Failed, Some(why.clone()))?;
            Ok(Some(why))
        }
    }
}

/// What a dry run shows of a robot message: where it would go (key hidden) and its body.
fn dry_run_body(robot: &RobotConfig, msg: &RobotMessage) -> serde_json::Value {
    let media = match msg {
        RobotMessage::File { filename, bytes } => format!("(media_id of the upload of {filename}, {} bytes)", bytes.len()),
        _ => String::new(),
    };
    let body = deliver::robot::body(robot, msg, &media).unwrap_or_else(|f| serde_json::json!({ "not sendable": f.to_string() }));
    serde_json::json!({ "robot": robot.name, "kind": robot.kind.as_str(), "url": deliver::robot::redacted_url(robot), "body": body })
}

/// The recipients to serve now, and how many already have the report.
/// A recipient served before is skipped (unless `--resend`); if the report
/// changed since, the new hash is kept on record as `held`.
fn recipients_to_serve(ctx: &DeliveryCtx<'_>, p: &Parcel) -> Result<(Vec<String>, usize)> {
    let mut to = Vec::new();
    let mut already = 0;
    for r in &p.office.recipients {
        match ctx.store.delivery(&ctx.job.name, &ctx.key, &p.office.id, r)? {
            Some(d) if !ctx.opts.resend && d.state.is_delivered() => {
                already += 1;
                if d.content_hash != p.hash && !ctx.opts.dry_run {
                    // Late data changed the report: keep the new hash on record
                    // beside the delivered one, but do not send twice.
                    let held = DeliveryRecord {
                        state: DeliveryState::Held,
                        content_hash: p.hash.clone(),
                        detail: Some(format!("content changed since delivery of {}", d.content_hash)),
                        ..d
                    };
                    ctx.store.record_delivery_history(&held, ctx.run_id)?;
                }
            }
            Some(d) if d.state == DeliveryState::Sending => {
                // The run that recorded "sending" died before the server's
                // reply was recorded: send again (at-least-once), with the same
                // Message-ID so that a copy the server did accept shows once.
                tracing::warn!(recipient = %r, office = %p.office.id, "an earlier run was interrupted while sending to this recipient; sending again");
                to.push(r.clone());
            }
            _ => to.push(r.clone()),
        }
    }
    Ok((to, already))
}

/// One message to every recipient in the outbox; a dry run's is named as
/// such and recorded nowhere.
fn deliver_to_outbox(ctx: &DeliveryCtx<'_>, p: &Parcel, to: &[String], outcome: &mut ReportOutcome) -> Result<()> {
    let (job, key, office) = (&ctx.job.name, &ctx.key, &p.office.id);
    let msg = deliver::build_message(&ctx.cfg.file.mail.from, to, p.rendered, &ctx.message_id(p, to))?;
    let name = if ctx.opts.dry_run { format!("dry-run_{job}_{key}_{office}") } else { format!("{job}_{key}_{office}") };
    let path = deliver::write_outbox(ctx.outbox, &name, &msg)?;
    if !ctx.opts.dry_run {
        for r in to {
            ctx.record(p, r, DeliveryState::Outbox, "outbox", Some(path.display().to_string()))?;
        }
    }
    outcome.sent = to.len();
    outcome.eml_path = Some(path);
    Ok(())
}

/// The recipients in batches of `batch_size` over SMTP, each recorded
/// `sending` before its transaction and `sent` or `failed` after it.
fn deliver_by_smtp(ctx: &DeliveryCtx<'_>, mailer: &mut Mailer, p: &Parcel, to: &[String], outcome: &mut ReportOutcome) -> Result<()> {
    let batch_size = ctx.cfg.file.mail.smtp.as_ref().map_or(1, |s| s.batch_size.clamp(1, crate::config::MAX_BATCH));
    for batch in to.chunks(batch_size) {
        let msg = deliver::build_message(&ctx.cfg.file.mail.from, batch, p.rendered, &ctx.message_id(p, batch))?;
        // "sending" is on disk before the transaction starts, "sent" after
        // the server's reply: a crash in between is visible on the next run.
        for r in batch {
            ctx.record(p, r, DeliveryState::Sending, "smtp", None)?;
        }
        for (r, res) in send_batch(mailer, &msg, batch, &p.office.id) {
            match res {
                Ok(reply) => {
                    ctx.record(p, &r, DeliveryState::Sent, "smtp", Some(reply))?;
                    outcome.sent += 1;
                }
                Err(f) => {
                    let why = f.to_string();
                    tracing::error!(office = %p.office.id, recipient = %r, reason = %why, "not delivered");
                    ctx.record(p, &r, DeliveryState::Failed, "smtp", Some(why.clone()))?;
                    outcome.failed.push(Undelivered { recipient: r, reason: why });
                }
            }
        }
    }
    Ok(())
}

/// Sends one message to a batch; each recipient's result.
fn send_batch(mailer: &mut Mailer, msg: &lettre::Message, batch: &[String], office: &str) -> Vec<(String, Result<String, SendFailure>)> {
    match mailer.send(msg, batch) {
        Ok(reply) => batch.iter().map(|r| (r.clone(), Ok(reply.clone()))).collect(),
        Err(SendFailure::Permanent { reply }) if batch.len() > 1 => {
            // lettre fails the whole envelope when one RCPT TO is refused,
            // before DATA, so nobody got it: each recipient alone.
            tracing::warn!(office, %reply, "a batch was refused; sending to each recipient alone");
            batch.iter().map(|r| (r.clone(), mailer.send(msg, std::slice::from_ref(r)))).collect()
        }
        Err(f) => batch.iter().map(|r| (r.clone(), Err(f.clone()))).collect(),
    }
}

/// How the admins were told of a failed run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminNotice {
    /// Sent over the configured SMTP server; the server's reply.
    Sent(String),
    /// Written to the outbox: no SMTP server is configured, or it could not
    /// take the mail (which may be why the run failed).
    Outbox(PathBuf),
}

/// Emails the admin list (`[mail] admins` of manyi.toml) that a run failed:
/// over the configured SMTP server, or to the outbox without one or when
/// the server does not take it, so the notice is never lost. `None` when
/// no admin is configured.
pub fn notify_admins(cfg: &Config, job: &str, period: &str, error: &str) -> Result<Option<AdminNotice>> {
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
    let html = format!("<pre>{}</pre>", tera::escape_html(&text));
    let message = Rendered { subject, html, text, images: Vec::new(), attachments: Vec::new() };
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%3fZ").to_string();
    let from = &cfg.file.mail.from;
    let msg = deliver::build_message(from, admins, &message, &deliver::message_id(from, &["failure", job, period, &stamp]))?;
    if let Some(smtp) = &cfg.file.mail.smtp {
        let sent = Mailer::new(smtp, from, &cfg.base_dir).map_err(anyhow::Error::from).and_then(|mut m| Ok(m.send(&msg, admins)?));
        match sent {
            Ok(reply) => return Ok(Some(AdminNotice::Sent(reply))),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "the failure mail could not be sent over SMTP; writing it to the outbox"),
        }
    }
    let name = format!("failure_{job}_{period}_{stamp}");
    Ok(Some(AdminNotice::Outbox(deliver::write_outbox(&cfg.data_dir.join("outbox"), &name, &msg)?)))
}
