//! The nightly 差评 alert: each office hears of the 差评 in its scope first
//! committed since the last successful alert run.

use super::RunOptions;
use super::deliver::{DeliveryCtx, RobotParts, Undelivered, deliver_office, deliver_to_robots, mailer_for, robots_for};
use super::report::write_report_file;
use crate::aggregate::{self, BadRating};
use crate::config::JobDef;
use crate::config::{Config, OfficeRole, RobotConfig, RobotKind};
use crate::deliver::robot::RobotMessage;
use crate::deliver::robot_text;
use crate::render::{self, AlertView};
use crate::store::Store;
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

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
pub(super) fn run_alert(
    cfg: &Config,
    store: &mut Store,
    job: &JobDef,
    as_of: DateTime<Utc>,
    opts: RunOptions,
    run_id: &str,
) -> Result<AlertSummary> {
    let template = job.template.as_deref().context("an alert job needs a template")?;
    let templates = super::templates(&cfg.templates_dir)?;
    let since = store.last_ok_as_of(&job.name)?.filter(|t| *t < as_of).unwrap_or(as_of - chrono::Duration::days(1));
    let as_of_local = as_of.with_timezone(&cfg.tz);
    let lf = store.ratings_new_between(since, as_of)?;
    // 整改 deadlines by category when `[follow_up.category.*]` says so.
    let deadlines = aggregate::Deadlines::from_rules(&cfg.file.follow_up, &cfg.categories);
    let bad = aggregate::bad_ratings_with(lf, None, &cfg.calendar, &deadlines, as_of_local.date_naive())?;
    // The delivery key is the window's end to the millisecond, like as-of:
    // each night's alert is its own message, and two runs never share a key.
    let key = as_of_local.format("%Y-%m-%dT%H%M%S%3f").to_string();
    let dir = store.root().join("reports").join(&job.name).join(&key);
    let outbox = store.root().join("outbox");
    let mut summary = AlertSummary { since, until: as_of, new_bad: bad.len(), offices: Vec::new(), quiet: 0, failed: Vec::new() };
    let mut mailer = mailer_for(cfg, opts)?;
    let mut robots = robots_for(cfg, opts)?;
    let ctx = DeliveryCtx { cfg, store: &*store, job, key: key.clone(), outbox: &outbox, opts, run_id };
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
        let mut outcome = deliver_office(&ctx, mailer.as_mut(), office, &rendered)?;
        let parts = |robot: &RobotConfig| alert_parts(cfg, robot, &view, as_of_local.date_naive());
        deliver_to_robots(&ctx, robots.as_mut(), office, &parts, &mut outcome)?;
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

/// What an office's robot gets of its alert: the markdown, most urgent
/// first; for 企业微信 a text @-ing the robot's mobiles too, since its
/// markdown cannot mention by mobile (钉钉's markdown can, and does).
fn alert_parts(cfg: &Config, robot: &RobotConfig, view: &AlertView, today: chrono::NaiveDate) -> RobotParts {
    let (title, text) = robot_text::alert_markdown(view, robot.kind, &robot.mention_mobiles, &cfg.calendar, today);
    let mut parts = vec![("", RobotMessage::Markdown { title, text, mention: true })];
    if robot.kind == RobotKind::Wecom && !robot.mention_mobiles.is_empty() && !view.items.is_empty() {
        let content = format!("{}：新增差评{}条，请及时处理。", view.audience, view.items.len());
        parts.push(("/mention", RobotMessage::Text { content, mention: true }));
    }
    parts
}
