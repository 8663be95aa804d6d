//! Report runs: prepare (one scan of the store down to the grain) → build
//! (every office's roll-ups, view and rendering, pure, on every core) →
//! write (the browsable copies) → deliver, in the order of `offices.toml`.

use super::RunOptions;
use super::deliver::{DeliveryCtx, RobotParts, Undelivered, deliver_office, deliver_to_robots, mailer_for, robots_for};
use crate::aggregate::{self, BadRating};
use crate::config::JobDef;
use crate::config::{Config, Office, OfficeRole, RobotConfig, RobotKind, Scope, SurveyDef};
use crate::deliver::Mailer;
use crate::deliver::robot::{RobotClient, RobotMessage};
use crate::deliver::robot_text::{self, SummaryCard};
use crate::model::OrgLevel;
use crate::render::{self, Footer, ReportKind, Templates};
use crate::schedule::Period;
use crate::store::Store;
use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use polars::prelude::*;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// Offices whose report could not be built (the others were still
    /// written and delivered; the run fails naming these).
    pub not_built: Vec<NotBuilt>,
}

/// An office whose report failed to build, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotBuilt {
    /// Office id.
    pub office: String,
    /// Office name.
    pub name: String,
    /// The error, with its causes.
    pub error: String,
}

/// Wall time of each phase of a report run, in seconds. The pipeline reads
/// the clock around the stages (they never do), so a slow run can be told
/// apart from a slow SMTP server in the ledger.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ReportTimings {
    /// Reading the store and grouping down to the grain, with the 差评 list.
    pub scan: f64,
    /// The rest of reading once per run: the questionnaire's answers,
    /// provenance, the watch list and the offices' ranking (shared by every
    /// report, so not in `aggregate`).
    pub prepare: f64,
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

/// Offices built together before their reports are written and delivered:
/// memory follows the chunk, not the number of offices.
const BUILD_CHUNK: usize = 32;

/// Adds the seconds `f` takes to `acc`.
fn timed<T>(acc: &mut f64, f: impl FnOnce() -> T) -> T {
    let clock = Instant::now();
    let out = f();
    *acc += clock.elapsed().as_secs_f64();
    out
}

pub(super) fn run_report(
    cfg: &Config,
    store: &mut Store,
    job: &JobDef,
    period: Period,
    as_of: DateTime<Utc>,
    opts: RunOptions,
    run_id: &str,
) -> Result<RunSummary> {
    let template = job.template.as_deref().context("a report job needs a template")?;
    let templates = super::templates(&cfg.templates_dir)?;
    let (prep, scan, prepare) = Prepared::read(cfg, store, job, template, period, as_of)?;
    let mut summary = RunSummary {
        run_id: run_id.into(),
        report_id: prep.footer.report_id.clone(),
        period: period.key(),
        city: aggregate::Counts::default().stats(),
        reports: Vec::new(),
        timings: ReportTimings { scan, prepare, ..ReportTimings::default() },
        not_built: Vec::new(),
    };
    // One folder per report id (job, period, as-of): a rerun with another
    // as-of never touches what an earlier run reported.
    let reports_dir = store.root().join("reports").join(&job.name).join(period.key()).join(&summary.report_id);
    let outbox = store.root().join("outbox");
    // One mailer for the whole run, so the connection is reused across offices.
    let mut out = Outlet {
        ctx: DeliveryCtx { cfg, store: &*store, job, key: period.key(), outbox: &outbox, opts, run_id },
        mailer: mailer_for(cfg, opts)?,
        robots: robots_for(cfg, opts)?,
        reports_dir: &reports_dir,
    };
    let offices: Vec<&Office> = cfg.offices.iter().filter(|o| job.offices.is_empty() || job.offices.contains(&o.id)).collect();
    // Every leadership office gets the same report: built once.
    let mut leadership = None;
    let mut chunks = offices.chunks(BUILD_CHUNK);
    // The next chunk is built on every core while this thread writes and
    // delivers the one before: writing is mostly waiting for fsync and the
    // outbox, which the cores would otherwise sit through idle.
    std::thread::scope(|s| -> Result<()> {
        let build = |chunk, leadership_wanted: bool| {
            let (prep, templates) = (&prep, &templates);
            s.spawn(move || build_chunk(prep, templates, chunk, leadership_wanted))
        };
        let mut next = chunks.next().map(|c| (c, build(c, true)));
        while let Some((chunk, handle)) = next.take() {
            let mut built = handle.join().map_err(|_| anyhow::anyhow!("building the reports panicked"))?;
            built.merge_into(&mut leadership, &mut summary);
            next = chunks.next().map(|c| (c, build(c, leadership.is_none())));
            for office in chunk {
                // An office whose report failed to build is skipped here (it is in
                // `not_built`): one bad record or template must not stop the
                // reports of every other office.
                let own;
                let report = match office.role {
                    OfficeRole::Leadership => leadership.as_ref(),
                    OfficeRole::Office => {
                        own = built.offices.remove(office.id.as_str());
                        own.as_ref()
                    }
                };
                if let Some(report) = report {
                    out.send(office, report, &mut summary)?;
                }
            }
        }
        Ok(())
    })?;
    Ok(summary)
}

/// Where a run's reports go: the browsable copies, the outbox or SMTP, the robots.
struct Outlet<'a> {
    ctx: DeliveryCtx<'a>,
    mailer: Option<Mailer>,
    robots: Option<RobotClient>,
    reports_dir: &'a Path,
}

impl Outlet<'_> {
    /// Writes an office's browsable copy and delivers its report.
    fn send(&mut self, office: &Office, report: &Report, summary: &mut RunSummary) -> Result<()> {
        let rendered = &report.rendered;
        let run_id = self.ctx.run_id;
        let html_path = timed(&mut summary.timings.write, || write_report(self.reports_dir, office, rendered, run_id))?;
        let outcome = timed(&mut summary.timings.deliver, || -> Result<ReportOutcome> {
            let mut outcome = deliver_office(&self.ctx, self.mailer.as_mut(), office, rendered)?;
            let parts = |robot: &RobotConfig| report_parts(robot, report);
            deliver_to_robots(&self.ctx, self.robots.as_mut(), office, &parts, &mut outcome)?;
            Ok(outcome)
        })?;
        summary.reports.push(ReportOutcome { html_path, ..outcome });
        Ok(())
    }
}

/// A chunk's reports, built, with what building them took.
struct ChunkBuilt<'o> {
    /// The offices' reports by id.
    offices: HashMap<&'o str, Report>,
    /// The leadership report and the city's totals, when this chunk built it.
    leadership: Option<(Report, aggregate::Stats)>,
    not_built: Vec<NotBuilt>,
    t_aggregate: f64,
    t_render: f64,
    rendered: usize,
    /// Wall time of building the chunk.
    wall: f64,
}

impl ChunkBuilt<'_> {
    /// Moves the chunk's leadership report (if any), failures and timings
    /// into the run's.
    fn merge_into(&mut self, leadership: &mut Option<Report>, summary: &mut RunSummary) {
        if let Some((report, total)) = self.leadership.take() {
            summary.city = total;
            *leadership = Some(report);
        }
        summary.not_built.append(&mut self.not_built);
        let t = &mut summary.timings;
        t.aggregate += self.t_aggregate;
        t.render += self.t_render;
        t.rendered += self.rendered;
        t.build += self.wall;
    }
}

/// Builds a chunk's reports on every core. With `leadership_wanted`, the
/// chunk's first leadership office is built (the others reuse it).
fn build_chunk<'o>(prep: &Prepared<'_>, templates: &Templates, chunk: &[&'o Office], mut leadership_wanted: bool) -> ChunkBuilt<'o> {
    let clock = Instant::now();
    let todo: Vec<&Office> =
        chunk.iter().copied().filter(|o| o.role == OfficeRole::Office || std::mem::take(&mut leadership_wanted)).collect();
    // Reports differ in size (the leadership report is several times an
    // office's), so work is handed out one report at a time, not split evenly.
    let results: Vec<Result<Built>> = todo.par_iter().with_max_len(1).map(|o| prep.build(templates, o)).collect();
    let mut out = ChunkBuilt {
        offices: HashMap::new(),
        leadership: None,
        not_built: Vec::new(),
        t_aggregate: 0.0,
        t_render: 0.0,
        rendered: 0,
        wall: 0.0,
    };
    for (office, result) in todo.iter().zip(results) {
        let b = match result {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(office = %office.id, error = %format!("{e:#}"), "the report of this office could not be built; the others go on");
                out.not_built.push(NotBuilt { office: office.id.clone(), name: office.name.clone(), error: format!("{e:#}") });
                continue;
            }
        };
        out.t_aggregate += b.t_aggregate;
        out.t_render += b.t_render;
        out.rendered += 1;
        if office.role == OfficeRole::Leadership {
            out.leadership = Some((b.report, b.total));
        } else {
            out.offices.insert(office.id.as_str(), b.report);
        }
    }
    out.wall = clock.elapsed().as_secs_f64();
    out
}

/// Writes the browsable copy of an office's report; returns its HTML file.
/// It shows the charts from files beside it instead of cid: parts.
///
/// Each file is written whole by `store::write_whole` (a temporary sibling,
/// fsynced, renamed); the folder is fsynced once for all of them (not after
/// every file), which halved the fsyncs of a report run.
fn write_report(dir: &Path, office: &Office, rendered: &render::Rendered, run_id: &str) -> Result<PathBuf> {
    crate::store::make_folder(dir)?;
    let prefix = format!("{}_", office.id);
    let html_path =
        write_report_file_unsynced(&dir.join(format!("{}.html", office.id)), rendered.browsable_html(&prefix).as_bytes(), run_id)?;
    for i in &rendered.images {
        write_report_file_unsynced(&dir.join(format!("{prefix}{}", i.filename)), &i.png, run_id)?;
    }
    write_report_file_unsynced(&dir.join(format!("{}.txt", office.id)), rendered.text.as_bytes(), run_id)?;
    for a in &rendered.attachments {
        write_report_file_unsynced(&dir.join(format!("{prefix}{}", a.filename)), &a.bytes, run_id)?;
    }
    crate::store::sync_folder(dir);
    Ok(html_path)
}

/// Writes a report file unless the same bytes are there. A different file
/// already at the path (same report id, so same job, period and as-of, but
/// other bytes: a template or code change) is kept, and the new one is
/// written beside it under the run id, so nothing reported is overwritten.
pub(super) fn write_report_file(path: &Path, bytes: &[u8], run_id: &str) -> Result<PathBuf> {
    let dir = crate::store::folder_of(path);
    crate::store::make_folder(dir)?;
    let written = write_report_file_unsynced(path, bytes, run_id)?;
    crate::store::sync_folder(dir);
    Ok(written)
}

/// [`write_report_file`] without the fsync of the folder: the caller syncs
/// it once after writing all its files.
fn write_report_file_unsynced(path: &Path, bytes: &[u8], run_id: &str) -> Result<PathBuf> {
    match std::fs::read(path) {
        Ok(existing) if existing == bytes => Ok(path.to_path_buf()),
        Ok(_) => {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let beside = path.with_file_name(format!("{run_id}.{name}"));
            tracing::warn!(original = %path.display(), new = %beside.display(), "a rerun with the same report id rendered different bytes; the original is kept");
            crate::store::write_whole(&beside, bytes)?;
            Ok(beside)
        }
        Err(_) => {
            crate::store::write_whole(path, bytes)?;
            Ok(path.to_path_buf())
        }
    }
}

/// One office's report as delivered: the email, and the robots' summary card.
struct Report {
    rendered: render::Rendered,
    card: SummaryCard,
}

/// What an office's robot gets of its report: the summary card; for
/// 企业微信 the trend chart and the XLSX too (钉钉 takes no files; its card
/// points to the email's attachments).
fn report_parts(robot: &RobotConfig, report: &Report) -> RobotParts {
    let (title, text) = robot_text::card_markdown(&report.card, robot.kind);
    let mut parts = vec![("", RobotMessage::Markdown { title, text, mention: false })];
    if robot.kind == RobotKind::Wecom {
        if let Some(trend) = report.rendered.images.iter().find(|i| i.filename == "trend.png") {
            parts.push(("/chart", RobotMessage::Image { png: trend.png.clone() }));
        }
        if let Some(xlsx) = report.rendered.attachments.iter().find(|a| a.filename.ends_with(".xlsx")) {
            parts.push(("/xlsx", RobotMessage::File { filename: xlsx.filename.clone(), bytes: xlsx.bytes.clone() }));
        }
    }
    parts
}

/// One office's report, built, with what building it took.
struct Built {
    report: Report,
    /// Totals of the office's scope (the city's for leadership).
    total: aggregate::Stats,
    t_aggregate: f64,
    t_render: f64,
}

/// What every report of a run is built from, read once.
struct Prepared<'a> {
    cfg: &'a Config,
    template: &'a str,
    period: Period,
    as_of_date: NaiveDate,
    /// The trend window at the report grain: every report is a roll-up of it.
    grain: aggregate::Grain,
    /// The period's 差评, and each one's org lineage, looked up once.
    bad: Vec<BadRating>,
    bad_index: UnitIndex<'a>,
    survey_def: Option<&'a SurveyDef>,
    /// The period's answers to the job's questionnaire, read once for every office.
    responses: Option<DataFrame>,
    footer: Footer,
    city: String,
    rules: aggregate::Rules,
    everything: Scope,
    /// Every ranked unit's (rank, ranked peers, peer word), for the robots'
    /// cards; empty when no office has a robot.
    ranks: HashMap<String, (usize, usize, String)>,
    /// The city's watch list (连续落后); each report shows its scope's entries.
    watch: Vec<aggregate::WatchEntry>,
    /// Offices ranked among themselves this period, for the leadership report.
    offices: Vec<aggregate::Row>,
    /// Channel counts and flagged bursts of the period.
    scrutiny: ScrutinyData<'a>,
}

/// Rows (差评, channel cells) indexed by every unit of their org lineage,
/// so an office's rows are found by its scope's few codes instead of
/// checking every row of the city against every office (the leadership
/// report alone asks for each of 222 offices).
struct UnitIndex<'a> {
    len: usize,
    by_unit: HashMap<&'a str, Vec<usize>>,
}

impl<'a> UnitIndex<'a> {
    fn new(lineages: &[&'a [(String, OrgLevel)]]) -> UnitIndex<'a> {
        let mut by_unit: HashMap<&'a str, Vec<usize>> = HashMap::new();
        for (i, lineage) in lineages.iter().enumerate() {
            for (code, _) in *lineage {
                let rows = by_unit.entry(code.as_str()).or_default();
                // A lineage names each unit once, but keep indices unique anyway.
                if rows.last() != Some(&i) {
                    rows.push(i);
                }
            }
        }
        UnitIndex { len: lineages.len(), by_unit }
    }

    /// Indices (ascending, so rows keep their order) of the rows inside
    /// `scope`: exactly those `aggregate::lineage_in_scope` accepts.
    fn in_scope<'r>(&self, scope: &Scope, category: impl Fn(usize) -> &'r str) -> Vec<usize> {
        let mut rows: Vec<usize> = if scope.orgs.is_empty() {
            (0..self.len).collect()
        } else {
            let mut v: Vec<usize> = scope.orgs.iter().filter_map(|s| self.by_unit.get(s.as_str())).flatten().copied().collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        if !scope.categories.is_empty() {
            rows.retain(|&i| scope.categories.iter().any(|c| c == category(i)));
        }
        rows
    }
}

/// The period's ratings by org, category and channel (indexed by their org
/// lineage) and the runs the burst rules flagged, read once per run.
struct ScrutinyData<'a> {
    cells: Vec<aggregate::ChannelCell>,
    index: UnitIndex<'a>,
    bursts: Vec<aggregate::Burst>,
}

impl<'a> ScrutinyData<'a> {
    /// `ratings` is the period's ratings as of the run (read once by the caller).
    fn read(cfg: &'a Config, ratings: &LazyFrame, period: Period) -> Result<ScrutinyData<'a>> {
        let cells = aggregate::channel_cells(ratings.clone(), period)?;
        let lineage: Vec<&[(String, OrgLevel)]> = cells.iter().map(|c| cfg.orgs.lineage(&c.org_code)).collect();
        let index = UnitIndex::new(&lineage);
        let bursts = if cfg.file.bursts.enabled {
            let marks = aggregate::burst_candidates(ratings.clone(), period)?;
            aggregate::bursts(&marks, &cfg.file.bursts)
        } else {
            Vec::new()
        };
        Ok(ScrutinyData { cells, index, bursts })
    }

    /// The channel mix of a scope.
    fn mix(&self, scope: &Scope) -> aggregate::ChannelMix {
        let rows = self.index.in_scope(scope, |i| self.cells[i].category.as_str());
        aggregate::channel_mix(rows.into_iter().map(|i| &self.cells[i]))
    }
}

impl<'a> Prepared<'a> {
    /// Reads the store as of `as_of`; returns the seconds the scan took, and
    /// those of the rest, too.
    fn read(
        cfg: &'a Config,
        store: &Store,
        job: &'a JobDef,
        template: &'a str,
        period: Period,
        as_of: DateTime<Utc>,
    ) -> Result<(Prepared<'a>, f64, f64)> {
        let clock = Instant::now();
        let as_of_local = as_of.with_timezone(&cfg.tz);
        let as_of_date = as_of_local.date_naive();
        // One scan of the trend window down to the grain.
        let mut buckets = vec![period, period.previous()];
        buckets.extend(period.trailing_months(12));
        let bucket_frames = buckets.iter().map(|b| Ok((*b, store.ratings(&b.month_keys(), as_of)?))).collect::<Result<Vec<_>>>()?;
        let refs = aggregate::RefFrames::new(&cfg.orgs, &cfg.categories)?;
        let grain = aggregate::grain(bucket_frames, &refs)?;
        let deadline_days = cfg.file.follow_up.deadline_working_days;
        let deadlines = aggregate::Deadlines::from_rules(&cfg.file.follow_up, &cfg.categories);
        // One read of the period (each read checks the catalog against the
        // files), shared by the 差评 list, the channels and the burst rules.
        let period_ratings = store.ratings(&period.month_keys(), as_of)?;
        let bad = aggregate::bad_ratings_with(period_ratings.clone(), Some(period), &cfg.calendar, &deadlines, as_of_date)?;
        let scrutiny = ScrutinyData::read(cfg, &period_ratings, period)?;
        let scan = clock.elapsed().as_secs_f64();
        let survey_def = job.questionnaire.as_ref().and_then(|q| cfg.surveys.get(q));
        let responses = match survey_def {
            Some(def) => {
                let lf = store.responses(&period.month_keys(), as_of)?.filter(col("survey").eq(lit(def.id.clone())));
                Some(aggregate::survey_answers(lf, period)?)
            }
            None => None,
        };
        let provenance = store.provenance(as_of)?;
        let footer = Footer {
            quarantined: provenance.iter().map(|p| p.quarantined).sum(),
            sources: provenance,
            as_of: as_of_local.format("%Y-%m-%d %H:%M:%S").to_string(),
            report_id: render::report_id(&job.name, &period.key(), as_of),
            deadline_days,
            delta_version: if cfg.delta_dir().is_some() { store.delta_version_at(as_of)? } else { None },
        };
        let city = cfg.orgs.at_level(OrgLevel::City).next().map(|u| u.name.clone()).unwrap_or_else(|| cfg.file.organisation.clone());
        let rules = aggregate::Rules::from(&cfg.file.metrics);
        let bad_lineage: Vec<&[(String, OrgLevel)]> = bad.iter().map(|b| cfg.orgs.lineage(&b.org_code)).collect();
        let bad_index = UnitIndex::new(&bad_lineage);
        let ranks = if cfg.offices.iter().any(|o| !o.robots.is_empty()) { unit_ranks(cfg, &grain, period, rules) } else { HashMap::new() };
        let office_scopes: Vec<(String, String, Scope)> =
            cfg.offices.iter().filter(|o| o.role == OfficeRole::Office).map(|o| (o.id.clone(), o.name.clone(), o.scope.clone())).collect();
        let watch = aggregate::watch_list(&grain, &cfg.orgs, &cfg.categories, &office_scopes, period, rules);
        let offices = aggregate::office_rows(&grain, &cfg.orgs, &office_scopes, period, rules);
        let prep = Prepared {
            cfg,
            template,
            period,
            as_of_date,
            grain,
            bad,
            bad_index,
            survey_def,
            responses,
            footer,
            city,
            rules,
            everything: Scope::default(),
            ranks,
            scrutiny,
            watch,
            offices,
        };
        Ok((prep, scan, clock.elapsed().as_secs_f64() - scan))
    }

    /// Builds one office's report (roll-ups, view, templates, charts,
    /// workbook). Touches only the grain and the config: safe on any core.
    fn build(&self, templates: &Templates, office: &Office) -> Result<Built> {
        let cfg = self.cfg;
        let (kind, scope, audience) = match office.role {
            OfficeRole::Leadership => (ReportKind::Leadership, &self.everything, self.city.as_str()),
            OfficeRole::Office => (ReportKind::Office, &office.scope, office.name.as_str()),
        };
        let clock = Instant::now();
        let mut tables = aggregate::rating_tables(&self.grain, &cfg.orgs, &cfg.categories, scope, self.period, 12, self.rules);
        tables.watch = self.watch_of(office);
        if kind == ReportKind::Leadership {
            tables.offices = self.offices.clone();
        }
        let total = tables.total;
        let bad_in: Vec<&BadRating> = self.bad_in(scope).collect();
        let follow_up = aggregate::follow_up_summary(bad_in.iter().copied(), self.as_of_date);
        let steps = aggregate::steps_summary(bad_in.iter().copied(), self.as_of_date);
        let survey = match (self.survey_def, &self.responses) {
            (Some(def), Some(df)) => Some(aggregate::survey_tables_of(df, def, &cfg.orgs, &cfg.categories, scope)?),
            _ => None,
        };
        let concentration = aggregate::concentration(bad_in.iter().copied());
        let overdue_by_office = if kind == ReportKind::Leadership { self.overdue_by_office() } else { Vec::new() };
        let shown_bad: Vec<&BadRating> = if kind == ReportKind::Office { bad_in } else { Vec::new() };
        let input = render::ViewInput {
            kind,
            audience,
            tables,
            bad: &shown_bad,
            follow_up,
            concentration,
            overdue_by_office,
            survey,
            footer: self.footer.clone(),
            period: self.period,
            scheme: cfg.surveys.get(self.template),
        };
        let mut view = render::build_view(cfg, input);
        view.scrutiny = self.scrutiny_view(kind, scope, audience, steps);
        let card = self.card(office, &view);
        let t_aggregate = clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let rendered = templates.render(self.template, &view)?;
        Ok(Built { report: Report { rendered, card }, total, t_aggregate, t_render: clock.elapsed().as_secs_f64() })
    }

    /// The robots' summary card of a report: its headline figures, and the
    /// office's rank when its scope is one ranked unit.
    fn card(&self, office: &Office, view: &render::ReportView) -> SummaryCard {
        let total = &view.ratings.total;
        let rank = match (office.role, office.scope.orgs.as_slice(), office.scope.categories.is_empty()) {
            (OfficeRole::Office, [code], true) => self.ranks.get(code).cloned(),
            _ => None,
        };
        SummaryCard {
            title: view.subject.clone(),
            n: total.n,
            satisfied_rate: total.satisfied_rate,
            good_rate: total.good_rate,
            bad: total.bad,
            change_pp: view.change_pp,
            significant: view.change_significant,
            previous_label: view.previous_label.clone(),
            previous_n: view.ratings.previous.n,
            rank,
            due: view.follow_up.due,
            overdue: view.follow_up.overdue,
            rectified_rate: view.follow_up.rectified_rate,
            report_id: view.footer.report_id.clone(),
        }
    }

    /// Steps, channels and (leadership) bursts of a report: the scope's own
    /// channel mix first, then, for leadership, each office's.
    fn scrutiny_view(&self, kind: ReportKind, scope: &Scope, audience: &str, steps: aggregate::StepsSummary) -> render::ScrutinyView {
        let mut channels = vec![(audience.to_string(), self.scrutiny.mix(scope))];
        let mut bursts: &[aggregate::Burst] = &[];
        if kind == ReportKind::Leadership {
            let offices = self.cfg.offices.iter().filter(|o| o.role == OfficeRole::Office);
            channels.extend(offices.map(|o| (o.name.clone(), self.scrutiny.mix(&o.scope))));
            bursts = &self.scrutiny.bursts;
        }
        let input = render::ScrutinyInput { steps, channels, bursts, scheme: self.cfg.surveys.get(self.template) };
        render::build_scrutiny(self.cfg, input)
    }

    /// The watch entries an office sees: all of them for leadership; for an
    /// office its own entry and the units inside its org scope.
    fn watch_of(&self, office: &Office) -> Vec<aggregate::WatchEntry> {
        if office.role == OfficeRole::Leadership {
            return self.watch.clone();
        }
        let scope = &office.scope;
        let inside = |code: &str| {
            scope.categories.is_empty() && !scope.orgs.is_empty() && scope.orgs.iter().any(|s| self.cfg.orgs.is_within(code, s))
        };
        self.watch.iter().filter(|e| if e.level == "科室/单位" { e.code == office.id } else { inside(&e.code) }).cloned().collect()
    }

    /// The period's 差评 inside `scope`, in their order.
    fn bad_in(&self, scope: &Scope) -> impl Iterator<Item = &BadRating> {
        self.bad_index.in_scope(scope, |i| self.bad[i].category.as_str()).into_iter().map(|i| &self.bad[i])
    }

    /// Overdue 差评 per office, worst first, for the leadership report.
    fn overdue_by_office(&self) -> Vec<render::OfficeOverdue> {
        let mut v: Vec<render::OfficeOverdue> = self
            .cfg
            .offices
            .iter()
            .filter(|o| o.role == OfficeRole::Office)
            .map(|o| {
                let s = aggregate::follow_up_summary(self.bad_in(&o.scope), self.as_of_date);
                render::OfficeOverdue { name: o.name.clone(), due: s.due, overdue: s.overdue, rectified_rate: s.rectified_rate }
            })
            .collect();
        v.sort_by(|a, b| b.overdue.cmp(&a.overdue).then_with(|| a.name.cmp(&b.name)));
        v
    }
}

/// Every district, street and community ranked city-wide: code → (rank,
/// ranked peers, what the peers are). One extra roll-up of the whole city,
/// done only when some office has a robot.
fn unit_ranks(cfg: &Config, grain: &aggregate::Grain, period: Period, rules: aggregate::Rules) -> HashMap<String, (usize, usize, String)> {
    let city = aggregate::rating_tables(grain, &cfg.orgs, &cfg.categories, &Scope::default(), period, 12, rules);
    let mut ranks = HashMap::new();
    for (rows, peers) in [(&city.districts, "区"), (&city.streets, "街道"), (&city.communities, "社区")] {
        let ranked = rows.iter().filter(|r| r.rank.is_some()).count();
        for r in rows {
            if let Some(k) = r.rank {
                ranks.insert(r.code.clone(), (k, ranked, peers.to_string()));
            }
        }
    }
    ranks
}
