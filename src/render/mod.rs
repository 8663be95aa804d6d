//! Render: reports as email-safe HTML and plain text, from tera templates in
//! `survey-templates/`.
//!
//! Templates are loaded once per process into [`Templates`]; every filter is
//! registered in [`Templates::load`] and nowhere else. Rendering is a pure
//! function of the [`ReportView`]: no clock, no I/O, so a rerun with the same
//! data and as-of time gives the same bytes — HTML, text, charts, workbook.

mod charts;
mod scrutiny;
mod workbook;

use crate::aggregate::{BadRating, Concentration, FollowUpSummary, RatingTables, Row, Stats, SurveyTables};
use crate::config::{Config, SurveyDef};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use tera::{Tera, Value};

pub use scrutiny::{ChannelRow, FlaggedView, ScrutinyInput, ScrutinyView, build_scrutiny};

/// Errors of rendering.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A template failed to parse.
    #[error("templates in {dir}: {source}")]
    Load {
        /// The templates folder.
        dir: String,
        /// Tera's error (names the template and line).
        #[source]
        source: tera::Error,
    },
    /// A chart could not be drawn.
    #[error("drawing a chart: {0}")]
    Chart(String),
    /// The XLSX attachment could not be written.
    #[error("writing the XLSX attachment: {0}")]
    Workbook(String),
    /// A template failed while rendering.
    #[error("rendering {template}: {detail}")]
    Render {
        /// The template.
        template: String,
        /// Tera's error chain.
        detail: String,
    },
}

/// The loaded templates.
pub struct Templates {
    tera: Tera,
}

impl Templates {
    /// Loads every `*.tera` under `dir` and registers the filters.
    pub fn load(dir: &Path) -> Result<Templates, RenderError> {
        let glob = format!("{}/**/*.tera", dir.display());
        let mut tera = Tera::new(&glob).map_err(|source| RenderError::Load { dir: dir.display().to_string(), source })?;
        // Tera escapes only files ending in .html by default; ours end in
        // .html.tera, and every resident's comment passes through them.
        tera.autoescape_on(vec![".html.tera"]);
        tera.register_filter("pct", pct_filter);
        tera.register_filter("num", num_filter);
        tera.register_filter("mask", mask_filter);
        tera.register_filter("pp", pp_filter);
        // Replaces tera's own `slice`, which deserialises the whole array
        // into a new Vec (a deep copy of every element) to take a few of
        // them: `bad_list | slice(end=30)` copied a section's 6,000 差评 to
        // show 30, and was 15% of building a province's reports.
        tera.register_filter("slice", slice_filter);
        Ok(Templates { tera })
    }

    /// The names of the loaded templates (for `manyi check`).
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tera.get_template_names().map(String::from).collect();
        v.sort();
        v
    }

    /// Renders one report: `<survey>/<kind>.html.tera` and `.txt.tera`.
    fn pair(&self, survey: &str, stem: &str, view: &impl Serialize) -> Result<(String, String), RenderError> {
        let ctx =
            tera::Context::from_serialize(view).map_err(|e| RenderError::Render { template: survey.into(), detail: e.to_string() })?;
        let render = |name: String| {
            self.tera.render(&name, &ctx).map_err(|e| {
                let mut detail = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    detail.push_str(": ");
                    detail.push_str(&s.to_string());
                    src = s.source();
                }
                RenderError::Render { template: name.clone(), detail }
            })
        };
        Ok((render(format!("{survey}/{stem}.html.tera"))?, render(format!("{survey}/{stem}.txt.tera"))?))
    }

    /// Renders a nightly 差评 alert: `<survey>/alert.html.tera` and `.txt.tera`.
    pub fn render_alert(&self, survey: &str, view: &AlertView) -> Result<Rendered, RenderError> {
        let (html, text) = self.pair(survey, "alert", view)?;
        Ok(Rendered { subject: view.subject.clone(), html, text, images: Vec::new(), attachments: Vec::new() })
    }

    /// Renders one report: `<survey>/<kind>.html.tera` and `.txt.tera`, its
    /// charts and its attachments.
    pub fn render(&self, survey: &str, view: &ReportView) -> Result<Rendered, RenderError> {
        let kind = view.kind.template_stem();
        // The templates reference these by cid: a report kind always has the same charts.
        let mut images = vec![InlineImage::new("trend", charts::trend_png(&view.ratings.trend)?)];
        if view.kind == ReportKind::Leadership {
            images.push(InlineImage::new("districts", charts::bars_png("各区满意率", &view.ratings.districts)?));
        }
        images.push(InlineImage::new("categories", charts::bars_png("各服务类别满意率", &view.ratings.categories)?));
        let created = NaiveDateTime::parse_from_str(&view.footer.as_of, "%Y-%m-%d %H:%M:%S").unwrap_or_default();
        let xlsx = Attachment {
            filename: format!("满意度明细_{}.xlsx", view.period_key),
            content_type: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet".into(),
            bytes: workbook::workbook(view, created)?,
        };
        let (html, text) = self.pair(survey, kind, view)?;
        Ok(Rendered { subject: view.subject.clone(), html, text, images, attachments: vec![xlsx, communities_csv(view)] })
    }
}

/// A rendered report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Email subject.
    pub subject: String,
    /// HTML body.
    pub html: String,
    /// Plain-text alternative.
    pub text: String,
    /// PNG images the HTML references as `cid:` (multipart/related parts).
    pub images: Vec<InlineImage>,
    /// Files attached to the message (detail tables).
    pub attachments: Vec<Attachment>,
}

/// A PNG shown inline, referenced from the HTML as `<img src="cid:…">`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineImage {
    /// Content-ID without angle brackets, e.g. `trend@manyi.local`.
    pub cid: String,
    /// File name for the browsable copy, e.g. `trend.png`.
    pub filename: String,
    /// PNG bytes.
    pub png: Vec<u8>,
}

impl InlineImage {
    fn new(name: &str, png: Vec<u8>) -> Self {
        InlineImage { cid: format!("{name}@manyi.local"), filename: format!("{name}.png"), png }
    }
}

impl Rendered {
    /// The HTML for a browser rather than a mail client: `cid:` references
    /// point at the images' files, written beside the HTML as
    /// `<prefix><filename>`.
    pub fn browsable_html(&self, prefix: &str) -> String {
        let mut html = self.html.clone();
        for i in &self.images {
            html = html.replace(&format!("cid:{}", i.cid), &format!("{prefix}{}", i.filename));
        }
        html
    }
}

/// A file attached to the report's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// File name as the reader sees it.
    pub filename: String,
    /// MIME type.
    pub content_type: String,
    /// Contents.
    pub bytes: Vec<u8>,
}

/// The community table as CSV with a BOM, so that Excel on a Chinese
/// Windows opens it without mojibake.
fn communities_csv(view: &ReportView) -> Attachment {
    let mut s =
        String::from("\u{feff}社区代码,社区,所属街道,评价数n,满意率,满意率95%下限,满意率95%上限,好评率,差评率,满意度得分,样本不足\r\n");
    for r in &view.ratings.communities {
        let st = &r.stats;
        // A community without ratings has no rates: "—", as in the mail.
        let figures = if st.n == 0 {
            [NO_DATA; 6].join(",")
        } else {
            format!(
                "{:.4},{:.4},{:.4},{:.4},{:.4},{:.2}",
                st.satisfied_rate, st.satisfied_lo, st.satisfied_hi, st.good_rate, st.bad_rate, st.score
            )
        };
        s.push_str(&format!(
            "{},{},{},{},{figures},{}\r\n",
            r.code,
            r.name.replace(',', "，"),
            r.parent.replace(',', "，"),
            st.n,
            if r.low_n { "是" } else { "" }
        ));
    }
    Attachment {
        filename: format!("社区明细_{}.csv", view.period_key),
        content_type: "text/csv; charset=utf-8".into(),
        bytes: s.into_bytes(),
    }
}

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    /// The city for leadership.
    Leadership,
    /// One office's slice.
    Office,
}

impl ReportKind {
    fn template_stem(self) -> &'static str {
        match self {
            ReportKind::Leadership => "leadership",
            ReportKind::Office => "office",
        }
    }
}

/// Everything a template sees. Names, not codes; numbers, not formatted text
/// (the filters format them), so templates decide presentation.
#[derive(Debug, Clone, Serialize)]
pub struct ReportView {
    /// Which report.
    pub kind: ReportKind,
    /// Email subject.
    pub subject: String,
    /// Publishing body.
    pub organisation: String,
    /// Who the report is for (市名 or office name).
    pub audience: String,
    /// `2026-10`.
    pub period_key: String,
    /// 月报, 季报, 年报 …
    pub period_kind: String,
    /// `2026年10月`.
    pub period_label: String,
    /// Previous period label.
    pub previous_label: String,
    /// The rating tables of the scope.
    pub ratings: RatingTables,
    /// Change of 满意率 in percentage points, and whether a two-proportion test
    /// at 95% calls it significant.
    pub change_pp: f64,
    /// See `change_pp`.
    pub change_significant: bool,
    /// Communities ranked by the Wilson lower bound of 满意率, weakest first (n ≥ min).
    pub weakest: Vec<Row>,
    /// Communities under the minimum n, not ranked.
    pub low_n_count: usize,
    /// The community × category cells with the lowest ranking score (n ≥ min), with names.
    pub weak_cells: Vec<WeakCell>,
    /// The communities as the mail body lists them.
    pub community_table: BodyTable,
    /// The streets as the mail body lists them.
    pub street_table: BodyTable,
    /// The minimum n.
    pub min_n: u64,
    /// Prior weight of the shrunk ranking score.
    pub prior_weight: f64,
    /// 差评 follow-up.
    pub follow_up: FollowUpSummary,
    /// 差评 list (office report): overdue first, then by deadline.
    pub bad_list: Vec<BadView>,
    /// Where valid 差评 concentrate.
    pub concentration: ConcentrationView,
    /// Overdue 差评 per office with any due (leadership report), most
    /// overdue first, at most [`OVERDUE_ROWS`].
    pub overdue_by_office: Vec<OfficeOverdue>,
    /// Offices with 差评 due, listed or not.
    pub overdue_offices: usize,
    /// Questionnaire findings, if the job names a questionnaire.
    pub survey: Option<SurveyTables>,
    /// Footer: sources, counts, as-of, report id.
    pub footer: Footer,
    /// Follow-up steps, 实名差评回访率, channels and bursts (set by the pipeline through [`build_scrutiny`]).
    pub scrutiny: ScrutinyView,
}

/// A community × category cell of the weakest list.
#[derive(Debug, Clone, Serialize)]
pub struct WeakCell {
    /// Community name.
    pub community: String,
    /// Its street's name: community names repeat across a province.
    pub street: String,
    /// Category name.
    pub category: String,
    /// The figures.
    pub stats: Stats,
}

/// A table as a mail body lists it: whole up to [`BODY_ROWS`] rows; past
/// that, its weakest ranked rows, weakest first, and the attachment has all.
#[derive(Debug, Clone, Serialize)]
pub struct BodyTable {
    /// The rows listed.
    pub rows: Vec<Row>,
    /// Rows in the whole table.
    pub total: usize,
    /// Whether rows were left out of the body.
    pub capped: bool,
}

/// Rows a table may have in a mail body. A province's leadership report
/// would otherwise list 2,000 communities and weigh 650 KB of HTML; the
/// weakest hundred is what a reader acts on, and the XLSX has every row.
pub const BODY_ROWS: usize = 100;

/// Offices the leadership report's overdue table lists: a province has
/// over 200, and the ones that matter are the most overdue.
pub const OVERDUE_ROWS: usize = 30;

fn body_table(rows: &[Row]) -> BodyTable {
    if rows.len() <= BODY_ROWS {
        return BodyTable { rows: rows.to_vec(), total: rows.len(), capped: false };
    }
    let mut ranked: Vec<Row> = rows.iter().filter(|r| r.rank.is_some()).cloned().collect();
    ranked.sort_by_key(|r| std::cmp::Reverse(r.rank));
    ranked.truncate(BODY_ROWS);
    BodyTable { rows: ranked, total: rows.len(), capped: true }
}

/// Where 差评 concentrate, with names.
#[derive(Debug, Clone, Serialize)]
pub struct ConcentrationView {
    /// By category.
    pub by_category: Vec<Named>,
    /// By reason tag.
    pub by_reason: Vec<Named>,
    /// By channel.
    pub by_channel: Vec<Named>,
}

/// A 差评 as printed.
#[derive(Debug, Clone, Serialize)]
pub struct BadView {
    /// The rating.
    #[serde(flatten)]
    pub rating: BadRating,
    /// Community name.
    pub community: String,
    /// Category name.
    pub category_name: String,
    /// Rating day as printed: 10月7日 (the year is the report's).
    pub rated_label: String,
    /// Deadline as printed: 11月2日.
    pub deadline_label: String,
}

/// The provenance printed at the bottom of every report.
#[derive(Debug, Clone, Serialize)]
pub struct Footer {
    /// Source summaries.
    pub sources: Vec<crate::store::SourceProvenance>,
    /// Total quarantined rows up to as-of.
    pub quarantined: i64,
    /// As-of time, local, `2026-11-01 02:00:00`.
    pub as_of: String,
    /// Report id: derived from job, period and as-of only.
    pub report_id: String,
    /// Deadline rule, e.g. 15.
    pub deadline_days: u32,
    /// The Delta table version showing exactly this as-of (`[publish] delta`).
    pub delta_version: Option<i64>,
}

/// A nightly 差评 alert for one office.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    /// Email subject.
    pub subject: String,
    /// Publishing body.
    pub organisation: String,
    /// The office.
    pub audience: String,
    /// Window start (local), the previous alert run's as-of.
    pub since: String,
    /// Window end (local), this run's as-of.
    pub until: String,
    /// The new 差评, earliest deadline first.
    pub items: Vec<BadView>,
    /// Deadline rule.
    pub deadline_days: u32,
    /// Id derived from job, office window and as-of.
    pub report_id: String,
}

/// Builds the alert of one office. Pure: the window is an argument.
pub fn build_alert(
    cfg: &Config,
    audience: &str,
    items: &[&BadRating],
    since: NaiveDateTime,
    until: NaiveDateTime,
    report_id: String,
) -> AlertView {
    let mut items: Vec<BadView> = items.iter().map(|b| bad_view(cfg, b)).collect();
    items.sort_by(|a, b| a.rating.deadline.cmp(&b.rating.deadline).then(a.rating.rating_id.cmp(&b.rating.rating_id)));
    let subject = if items.is_empty() {
        format!("【差评提醒】{} · {audience} · 无新增差评", date_label(until.date()))
    } else {
        format!("【差评提醒】{} · {audience} · 新增差评{}条", date_label(until.date()), items.len())
    };
    AlertView {
        subject,
        organisation: cfg.file.organisation.clone(),
        audience: audience.into(),
        since: since.format("%Y-%m-%d %H:%M").to_string(),
        until: until.format("%Y-%m-%d %H:%M").to_string(),
        items,
        deadline_days: cfg.file.follow_up.deadline_working_days,
        report_id,
    }
}

fn bad_view(cfg: &Config, b: &BadRating) -> BadView {
    BadView {
        rating: b.clone(),
        community: cfg.orgs.get(&b.org_code).map(|u| u.name.clone()).unwrap_or_else(|| b.org_code.clone()),
        category_name: cfg.category(&b.category).map(|c| c.name.clone()).unwrap_or_else(|| b.category.clone()),
        rated_label: b.rated_at.format("%-m月%-d日").to_string(),
        deadline_label: b.deadline.format("%-m月%-d日").to_string(),
    }
}

/// Report id from job, period and as-of: the same inputs always give the same id.
pub fn report_id(job: &str, period: &str, as_of: DateTime<Utc>) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{job}|{period}|{}", as_of.timestamp_millis()).as_bytes());
    format!("MY-{}-{}", period.replace('-', ""), &hex::encode(h)[..8])
}

/// What a report is built from: the figures of one scope.
pub struct ViewInput<'a> {
    /// Which report.
    pub kind: ReportKind,
    /// Who it is for (the city's name, or the office's).
    pub audience: &'a str,
    /// The rating tables of the scope.
    pub tables: RatingTables,
    /// The scope's 差评 to list (office reports; empty for leadership).
    pub bad: &'a [&'a BadRating],
    /// Follow-up figures of the scope.
    pub follow_up: FollowUpSummary,
    /// Where the scope's valid 差评 concentrate.
    pub concentration: Concentration,
    /// Overdue 差评 per office (leadership report).
    pub overdue_by_office: Vec<OfficeOverdue>,
    /// Questionnaire findings.
    pub survey: Option<SurveyTables>,
    /// Footer.
    pub footer: Footer,
    /// The period.
    pub period: crate::period::Period,
    /// The rating scheme (reason and channel names).
    pub scheme: Option<&'a SurveyDef>,
}

/// Overdue 差评 of one office, for leadership.
#[derive(Debug, Clone, Serialize)]
pub struct OfficeOverdue {
    /// Office name.
    pub name: String,
    /// Valid 差评 due by the as-of date.
    pub due: u64,
    /// Of which overdue.
    pub overdue: u64,
    /// 差评整改率 of the office.
    pub rectified_rate: f64,
}

/// A count with its name and share, for the 差评 concentration tables.
#[derive(Debug, Clone, Serialize)]
pub struct Named {
    /// Code.
    pub code: String,
    /// Name (the code when unknown).
    pub name: String,
    /// Count.
    pub count: u64,
    /// Share of the valid 差评 (of tags, for reasons).
    pub share: f64,
}

fn named(items: &[(String, u64)], name: impl Fn(&str) -> Option<String>) -> Vec<Named> {
    let total: u64 = items.iter().map(|(_, c)| c).sum();
    items
        .iter()
        .map(|(code, count)| Named {
            code: code.clone(),
            name: name(code).unwrap_or_else(|| code.clone()),
            count: *count,
            share: if total == 0 { 0.0 } else { *count as f64 / total as f64 },
        })
        .collect()
}

/// Builds the view of one report. Pure: the as-of date is an argument.
pub fn build_view(cfg: &Config, input: ViewInput<'_>) -> ReportView {
    let ViewInput { kind, audience, tables, bad, follow_up, concentration, overdue_by_office, survey, footer, period, scheme } = input;
    let (period_label, previous_label) = (period.label(), period.previous().label());
    let min_n = cfg.file.metrics.min_n as u64;
    // The weakest are the last in the ranking by the shrunk rate, so a
    // community with a handful of ratings cannot top or tail the list.
    let mut weakest: Vec<Row> = tables.communities.iter().filter(|r| r.rank.is_some()).cloned().collect();
    weakest.sort_by_key(|r| std::cmp::Reverse(r.rank));
    weakest.truncate(10);
    let low_n_count = tables.communities.iter().filter(|r| r.low_n).count();
    let mut ranked_cells: Vec<&crate::aggregate::Cross> = tables.cross.iter().filter(|c| !c.low_n).collect();
    // Weakest first in the ranking's own direction (the highest shrunk
    // 差评率, or the lowest 满意率 or score). Stable, so equal scores keep
    // the table's (community, category) order.
    let lower = tables.rank_by.lower_is_better();
    ranked_cells.sort_by(|a, b| if lower { b.shrunk.total_cmp(&a.shrunk) } else { a.shrunk.total_cmp(&b.shrunk) });
    let community_name = |code: &str| cfg.orgs.get(code).map(|u| u.name.clone()).unwrap_or_else(|| code.to_string());
    let weak_cells = ranked_cells
        .iter()
        .take(10)
        .map(|c| WeakCell {
            community: community_name(&c.community),
            street: cfg.orgs.ancestor(&c.community, crate::model::OrgLevel::Street).map(|u| u.name.clone()).unwrap_or_default(),
            category: cfg.category(&c.category).map(|k| k.name.clone()).unwrap_or_else(|| c.category.clone()),
            stats: c.stats,
        })
        .collect();
    let mut overdue_by_office: Vec<OfficeOverdue> = overdue_by_office.into_iter().filter(|o| o.due > 0).collect();
    let overdue_offices = overdue_by_office.len();
    overdue_by_office.truncate(OVERDUE_ROWS);
    let community_table = body_table(&tables.communities);
    let street_table = body_table(&tables.streets);
    let change_pp = (tables.total.satisfied_rate - tables.previous.satisfied_rate) * 100.0;
    let satisfied = |s: &Stats| s.levels[2..].iter().sum::<u64>();
    let change_significant =
        crate::aggregate::significant_difference(satisfied(&tables.total), tables.total.n, satisfied(&tables.previous), tables.previous.n);
    let mut bad_list: Vec<BadView> = bad.iter().map(|b| bad_view(cfg, b)).collect();
    bad_list.sort_by(|a, b| {
        b.rating
            .overdue
            .cmp(&a.rating.overdue)
            .then(a.rating.deadline.cmp(&b.rating.deadline))
            .then(a.rating.rating_id.cmp(&b.rating.rating_id))
    });
    let reasons = scheme.map(|s| s.reasons.clone()).unwrap_or_default();
    let channels = scheme.map(|s| s.channels.clone()).unwrap_or_default();
    let concentration = ConcentrationView {
        by_category: named(&concentration.by_category, |c| cfg.category(c).map(|c| c.name.clone())),
        by_reason: named(&concentration.by_reason, |c| reasons.get(c).cloned()),
        by_channel: named(&concentration.by_channel, |c| channels.get(c).cloned()),
    };
    ReportView {
        kind,
        concentration,
        overdue_by_office,
        overdue_offices,
        subject: format!("【满意度{}】{period_label} · {audience}", period.kind_label()),
        period_key: period.key(),
        period_kind: period.kind_label().to_string(),
        organisation: cfg.file.organisation.clone(),
        audience: audience.into(),
        period_label,
        previous_label,
        change_pp,
        change_significant,
        weakest,
        low_n_count,
        weak_cells,
        community_table,
        street_table,
        min_n,
        prior_weight: cfg.file.metrics.prior_weight,
        follow_up,
        bad_list,
        survey,
        footer,
        ratings: tables,
        scrutiny: ScrutinyView::default(),
    }
}

fn arg_f64(v: &Value, name: &str) -> tera::Result<f64> {
    v.as_f64().ok_or_else(|| tera::Error::msg(format!("filter {name} expects a number, got {v}")))
}

/// Tera's `slice` (same arguments and results: `start` inclusive, `end`
/// exclusive, both default to the ends, negative counts from the end, out
/// of range clamps, `start >= end` is empty) that copies only the elements
/// it returns.
fn slice_filter(v: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    let arr = v.as_array().ok_or_else(|| tera::Error::msg(format!("filter slice expects an array, got {v}")))?;
    let index = |name: &str, default: usize| -> tera::Result<usize> {
        let Some(a) = args.get(name) else { return Ok(default) };
        let i = a.as_f64().ok_or_else(|| tera::Error::msg(format!("filter slice: `{name}` must be a number, got {a}")))?;
        // As tera: a negative index counts from the end; `as` saturates at 0.
        Ok(if i >= 0.0 { i as usize } else { (arr.len() as f64 + i) as usize })
    };
    let start = index("start", 0)?;
    let end = index("end", arr.len())?.min(arr.len());
    Ok(Value::Array(if start >= end { Vec::new() } else { arr[start..end].to_vec() }))
}

/// What a figure of an empty cell shows: a rate of nothing is not 0.0%.
pub const NO_DATA: &str = "—";

/// Whether the filter was given `n = 0` (the count the figure is a share of,
/// or a product of counts): the figure does not exist and shows [`NO_DATA`].
/// Without `n` the figure is shown as it is.
fn of_nothing(args: &HashMap<String, Value>) -> bool {
    args.get("n").and_then(Value::as_f64) == Some(0.0)
}

/// 0.9612 → "96.1%"; with `n=0` (`{{ x.satisfied_rate | pct(n=x.n) }}`), "—".
fn pct_filter(v: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    if of_nothing(args) || v.is_null() {
        return Ok(Value::String(NO_DATA.into()));
    }
    Ok(Value::String(format!("{:.1}%", arg_f64(v, "pct")? * 100.0)))
}

/// A change in percentage points with its sign: 0.43 → "+0.4个百分点";
/// with `n=0` (either period empty), "—".
fn pp_filter(v: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    if of_nothing(args) {
        return Ok(Value::String(NO_DATA.into()));
    }
    let x = arg_f64(v, "pp")?;
    let x = if x.abs() < 0.05 { 0.0 } else { x };
    Ok(Value::String(format!("{x:+.1}个百分点")))
}

/// Integers with thousands separators: 12345 → "12,345"; floats to 1
/// decimal; with `n=0` (a score of no ratings), "—".
fn num_filter(v: &Value, args: &HashMap<String, Value>) -> tera::Result<Value> {
    if of_nothing(args) {
        return Ok(Value::String(NO_DATA.into()));
    }
    if let Some(i) = v.as_u64() {
        let s = i.to_string();
        let mut out = String::new();
        for (k, ch) in s.chars().enumerate() {
            if k > 0 && (s.len() - k) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        return Ok(Value::String(out));
    }
    Ok(Value::String(format!("{:.1}", arg_f64(v, "num")?)))
}

/// Masks personal data in resident text (phone and ID numbers, e-mail
/// addresses, self-introduced names; bidirectional controls stripped): see
/// [`crate::privacy::mask`]. Curated text is masked at ingest already; this
/// covers stores written before that and any text that did not pass collect.
pub fn mask_personal(text: &str) -> String {
    crate::privacy::mask(text).into_owned()
}

fn mask_filter(v: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(mask_personal(v.as_str().unwrap_or_default())))
}

/// The Chinese label of a date: 2026年10月3日.
pub fn date_label(d: NaiveDate) -> String {
    use chrono::Datelike;
    format!("{}年{}月{}日", d.year(), d.month(), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Our `slice` against tera's own, through templates, on every
    /// combination of present, negative and out-of-range bounds.
    #[test]
    fn slice_gives_what_teras_slice_gives() {
        let mut ours = Tera::default();
        ours.register_filter("slice", slice_filter);
        let bounds = ["", "-9", "-3", "-1", "0", "1", "2", "4", "5", "9", "1.5"];
        let mut compared = 0;
        for xs in ["[]", "[1]", r#"[{"a":1},{"b":[2,3]},"x",4,null]"#] {
            let mut ctx = tera::Context::new();
            ctx.insert("xs", &serde_json::from_str::<Value>(xs).expect("json"));
            for start in bounds {
                for end in bounds {
                    let args: Vec<String> =
                        [("start", start), ("end", end)].iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={v}")).collect();
                    let t = format!("{{{{ xs | slice({}) | json_encode() }}}}", args.join(", "));
                    let a = ours.render_str(&t, &ctx).expect(&t);
                    let b = Tera::one_off(&t, &ctx, false).expect(&t);
                    assert_eq!(a, b, "{t} on {xs}");
                    compared += 1;
                }
            }
        }
        assert_eq!(compared, 3 * 11 * 11);
        let mut ctx = tera::Context::new();
        ctx.insert("s", "text");
        let err = ours.render_str("{{ s | slice(end=1) }}", &ctx).expect_err("a string is not an array");
        assert!(format!("{:?}", err).contains("slice expects an array"), "{err:?}");
    }

    #[test]
    fn personal_data_is_masked() {
        assert_eq!(mask_personal("电话13812341234请回电"), "电话138****1234请回电");
        assert_eq!(mask_personal("身份证110101199001011234"), "身份证110101********1234");
        assert_eq!(mask_personal("我叫张三丰，态度差"), "我叫张**，态度差");
        assert_eq!(mask_personal("排队2小时"), "排队2小时");
    }

    #[test]
    fn report_id_depends_only_on_job_period_as_of() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).expect("as-of").to_utc();
        let as_of = at("2026-11-01T00:00:00.123Z");
        let id = report_id("monthly-report", "2026-10", as_of);
        // Pinned: an exact rerun with a later binary must find the same folder and footer.
        assert_eq!(id, "MY-202610-f3fb7fa1");
        // The same inputs, built afresh (the same instant written in another zone), give the same id.
        assert_eq!(report_id(&String::from("monthly-report"), &String::from("2026-10"), at("2026-11-01T08:00:00.123+08:00")), id);
        // Any one input changed gives another id; a millisecond of as-of is enough.
        let others = [
            report_id("monthly-report", "2026-10", at("2026-11-01T00:00:00.124Z")),
            report_id("monthly-report", "2026-10", at("2026-11-02T00:00:00.123Z")),
            report_id("quarterly-report", "2026-10", as_of),
            report_id("monthly-report", "2026-09", as_of),
        ];
        for other in &others {
            assert_ne!(other, &id);
        }
        let distinct: std::collections::BTreeSet<&String> = others.iter().collect();
        assert_eq!(distinct.len(), others.len(), "{others:?}");
    }

    fn row(i: usize, rank: Option<usize>) -> Row {
        let stats = crate::aggregate::Counts::default().stats();
        Row {
            code: format!("c{i:04}"),
            name: format!("社区{i}"),
            parent: String::new(),
            stats,
            low_n: rank.is_none(),
            previous: stats,
            change_pp: 0.0,
            significant: false,
            shrunk: 0.0,
            rank,
            apart: crate::aggregate::Apart::of(&Default::default()),
        }
    }

    #[test]
    fn long_tables_list_their_weakest_hundred_in_the_body() {
        // 100 rows: listed whole, in table order.
        let short: Vec<Row> = (0..100).map(|i| row(i, Some(i + 1))).collect();
        let t = body_table(&short);
        assert!(!t.capped);
        assert_eq!((t.rows.len(), t.total), (100, 100));
        assert_eq!(t.rows[0].code, "c0000");
        // 2,000 rows, every tenth too small to rank: the 100 worst-ranked,
        // weakest (rank 1,800) first; unranked rows are not listed.
        let mut rank = 0;
        let long: Vec<Row> = (0..2000)
            .map(|i| {
                if i % 10 == 9 {
                    row(i, None)
                } else {
                    rank += 1;
                    row(i, Some(rank))
                }
            })
            .collect();
        let t = body_table(&long);
        assert!(t.capped);
        assert_eq!((t.rows.len(), t.total), (100, 2000));
        assert_eq!(t.rows[0].rank, Some(1800));
        assert_eq!(t.rows[99].rank, Some(1701));
        assert!(t.rows.iter().all(|r| !r.low_n));
    }
}
