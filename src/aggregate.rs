//! Aggregate: satisfaction figures from curated records.
//!
//! Pure functions: they take lazy frames handed over by the pipeline, the
//! reference data, the period and the as-of date as arguments; they name no
//! file and never read the clock, so the same inputs always give the same
//! figures.
//!
//! Polars does the heavy pass: one group-by over the period's ratings down to
//! the grain community × category × month × level. Everything else (streets,
//! districts, the city, categories, any office's slice) is a roll-up of that
//! small grain in Rust, so a report for 80 offices costs one scan, not 80.

use crate::calendar::WorkCalendar;
use crate::config::{OrgTree, Scope, SurveyDef};
use crate::model::{FollowUp, OrgLevel};
use crate::period::Period;
use chrono::{NaiveDate, NaiveDateTime};
use polars::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;

/// Errors of aggregation: the data did not have the expected shape.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// Polars failed while evaluating the plan.
    #[error("aggregating the curated data failed: {0}")]
    Polars(#[from] PolarsError),
}

/// Counts of one cell: n and the count of each level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Count per level; index 0 is level 1 (非常不满意), index 4 level 5.
    pub levels: [u64; 5],
}

impl Counts {
    /// n, the number of ratings.
    pub fn n(&self) -> u64 {
        self.levels.iter().sum()
    }

    /// Adds another cell's counts.
    pub fn add(&mut self, other: &Counts) {
        for (a, b) in self.levels.iter_mut().zip(other.levels) {
            *a += b;
        }
    }

    /// The figures of DESIGN.md for this cell.
    pub fn stats(&self) -> Stats {
        let n = self.n();
        let c = |k: usize| self.levels[k - 1];
        let share = |x: u64| if n == 0 { 0.0 } else { x as f64 / n as f64 };
        let satisfied = c(3) + c(4) + c(5);
        let points: u64 = (1..=5).map(|k| c(k) * (k as u64 - 1)).sum();
        let (lo, hi) = wilson(satisfied, n);
        Stats {
            n,
            levels: self.levels,
            good: c(4) + c(5),
            bad: c(1) + c(2),
            good_rate: share(c(4) + c(5)),
            mid_rate: share(c(3)),
            bad_rate: share(c(1) + c(2)),
            satisfied_rate: share(satisfied),
            satisfied_lo: lo,
            satisfied_hi: hi,
            score: if n == 0 { 0.0 } else { points as f64 / n as f64 * 25.0 },
        }
    }
}

/// The published figures of one cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    /// Ratings in the cell.
    pub n: u64,
    /// Count per level (index 0 = level 1).
    pub levels: [u64; 5],
    /// 好评 (levels 4–5).
    pub good: u64,
    /// 差评 (levels 1–2).
    pub bad: u64,
    /// 好评率.
    pub good_rate: f64,
    /// 中评率.
    pub mid_rate: f64,
    /// 差评率.
    pub bad_rate: f64,
    /// 满意率 (基本满意以上).
    pub satisfied_rate: f64,
    /// Wilson 95% lower bound of 满意率.
    pub satisfied_lo: f64,
    /// Wilson 95% upper bound of 满意率.
    pub satisfied_hi: f64,
    /// 满意度得分 0–100.
    pub score: f64,
}

/// The 95% Wilson score interval of `k` successes in `n` trials.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let (nf, p) = (n as f64, k as f64 / n as f64);
    let denom = 1.0 + z * z / nf;
    let centre = p + z * z / (2.0 * nf);
    let half = z * (p * (1.0 - p) / nf + z * z / (4.0 * nf * nf)).sqrt();
    (((centre - half) / denom).max(0.0), ((centre + half) / denom).min(1.0))
}

/// The grain: counts per (month, community, category).
#[derive(Debug, Clone, Default)]
pub struct Grain {
    /// (month key, community code, category code) → counts.
    pub cells: BTreeMap<(String, String, String), Counts>,
}

/// Computes the grain over `ratings`, which must carry a `month` column
/// (the pipeline adds it from the partition). Grid codes roll up to their
/// community.
pub fn grain(ratings: LazyFrame, orgs: &OrgTree) -> Result<Grain, AggregateError> {
    let mut aggs = vec![len().alias("n")];
    for k in 1..=5 {
        aggs.push(col("level").eq(lit(k)).cast(DataType::UInt32).sum().alias(format!("c{k}")));
    }
    let df = ratings.group_by([col("month"), col("org_code"), col("category")]).agg(aggs).collect()?;
    let month = df.column("month")?.str()?;
    let org = df.column("org_code")?.str()?;
    let cat = df.column("category")?.str()?;
    let counts: Vec<_> =
        (1..=5).map(|k| df.column(&format!("c{k}")).and_then(|c| c.cast(&DataType::UInt64))).collect::<PolarsResult<_>>()?;
    let counts: Vec<&UInt64Chunked> = counts.iter().map(|c| c.u64()).collect::<PolarsResult<_>>()?;
    let mut g = Grain::default();
    for i in 0..df.height() {
        let (Some(m), Some(o), Some(c)) = (month.get(i), org.get(i), cat.get(i)) else { continue };
        let community = orgs.ancestor(o, OrgLevel::Community).map(|u| u.code.as_str()).unwrap_or(o);
        let mut cell = Counts::default();
        for (k, col) in counts.iter().enumerate() {
            cell.levels[k] = col.get(i).unwrap_or(0);
        }
        g.cells.entry((m.to_string(), community.to_string(), c.to_string())).or_default().add(&cell);
    }
    Ok(g)
}

/// Whether a community and category lie in an office's scope.
pub fn in_scope(orgs: &OrgTree, scope: &Scope, community: &str, category: &str) -> bool {
    (scope.orgs.is_empty() || scope.orgs.iter().any(|s| orgs.is_within(community, s)))
        && (scope.categories.is_empty() || scope.categories.iter().any(|c| c == category))
}

/// One row of a breakdown table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Code of the unit or category.
    pub code: String,
    /// Chinese name.
    pub name: String,
    /// Name of the parent (street of a community, district of a street).
    pub parent: String,
    /// The figures.
    pub stats: Stats,
    /// n under the minimum: shown, flagged, not ranked.
    pub low_n: bool,
}

/// A community × category cell of the main table.
#[derive(Debug, Clone, Serialize)]
pub struct Cross {
    /// Community code.
    pub community: String,
    /// Category code.
    pub category: String,
    /// The figures.
    pub stats: Stats,
    /// n under the minimum.
    pub low_n: bool,
}

/// The rating tables of one period for one scope.
#[derive(Debug, Clone, Serialize)]
pub struct RatingTables {
    /// The period's key.
    pub period: String,
    /// Totals of the scope.
    pub total: Stats,
    /// Totals of the previous period.
    pub previous: Stats,
    /// By district.
    pub districts: Vec<Row>,
    /// By street.
    pub streets: Vec<Row>,
    /// By community.
    pub communities: Vec<Row>,
    /// By service category.
    pub categories: Vec<Row>,
    /// Community × category.
    pub cross: Vec<Cross>,
    /// Monthly totals, oldest first: (month key, figures).
    pub trend: Vec<(String, Stats)>,
}

/// Rolls the grain up to every table of `period` within `scope`.
pub fn rating_tables(
    grain: &Grain,
    orgs: &OrgTree,
    categories: &[crate::config::Category],
    scope: &Scope,
    period: Period,
    trend_months: usize,
    min_n: u64,
) -> RatingTables {
    let key = period.key();
    let prev_key = period.previous().key();
    let mut total = Counts::default();
    let mut previous = Counts::default();
    let mut by_level: [BTreeMap<String, Counts>; 3] = Default::default();
    let mut by_cat: BTreeMap<String, Counts> = BTreeMap::new();
    let mut cross = Vec::new();
    let mut trend: BTreeMap<String, Counts> =
        period.trailing_months(trend_months).into_iter().map(|p| (p.key(), Counts::default())).collect();
    for ((m, community, cat), counts) in &grain.cells {
        if !in_scope(orgs, scope, community, cat) {
            continue;
        }
        if let Some(t) = trend.get_mut(m) {
            t.add(counts);
        }
        if *m == prev_key {
            previous.add(counts);
        }
        if *m != key {
            continue;
        }
        total.add(counts);
        by_cat.entry(cat.clone()).or_default().add(counts);
        for (i, level) in [OrgLevel::District, OrgLevel::Street, OrgLevel::Community].into_iter().enumerate() {
            if let Some(u) = orgs.ancestor(community, level) {
                by_level[i].entry(u.code.clone()).or_default().add(counts);
            }
        }
        let stats = counts.stats();
        cross.push(Cross { community: community.clone(), category: cat.clone(), low_n: stats.n < min_n, stats });
    }
    let row = |code: &String, c: &Counts| {
        let unit = orgs.get(code);
        let stats = c.stats();
        Row {
            code: code.clone(),
            name: unit.map(|u| u.name.clone()).unwrap_or_else(|| code.clone()),
            parent: unit.and_then(|u| orgs.get(&u.parent)).map(|p| p.name.clone()).unwrap_or_default(),
            low_n: stats.n < min_n,
            stats,
        }
    };
    let [d, s, c] = &by_level;
    let cat_rows = categories
        .iter()
        .filter_map(|cat| {
            by_cat.get(&cat.code).map(|counts| {
                let stats = counts.stats();
                Row { code: cat.code.clone(), name: cat.name.clone(), parent: String::new(), low_n: stats.n < min_n, stats }
            })
        })
        .collect();
    RatingTables {
        period: key,
        total: total.stats(),
        previous: previous.stats(),
        districts: d.iter().map(|(k, v)| row(k, v)).collect(),
        streets: s.iter().map(|(k, v)| row(k, v)).collect(),
        communities: c.iter().map(|(k, v)| row(k, v)).collect(),
        categories: cat_rows,
        cross,
        trend: trend.into_iter().map(|(k, v)| (k, v.stats())).collect(),
    }
}

/// One 差评 with its follow-up state and deadline.
#[derive(Debug, Clone, Serialize)]
pub struct BadRating {
    /// Rating id.
    pub rating_id: String,
    /// When it was given.
    pub rated_at: NaiveDateTime,
    /// Community (or grid) code.
    pub org_code: String,
    /// Category code.
    pub category: String,
    /// Level 1 or 2.
    pub level: u8,
    /// Follow-up state.
    pub status: String,
    /// Rectification deadline.
    pub deadline: NaiveDate,
    /// Not rectified and past the deadline at the as-of date.
    pub overdue: bool,
    /// Resident's comment (escaped and masked by render).
    pub comment: String,
    /// Reason tags.
    pub reason_tags: String,
}

/// Follow-up figures of a period.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FollowUpSummary {
    /// Every 差评 of the period, including invalid ones (kept on record).
    pub total: u64,
    /// Count per state name.
    pub by_status: BTreeMap<String, u64>,
    /// 差评 found invalid after 申诉复核 (excluded from 差评 figures, kept on record).
    pub invalid: u64,
    /// 差评 confirmed or still to check (not invalid).
    pub valid: u64,
    /// Rectified.
    pub rectified: u64,
    /// 差评整改率: rectified / valid 差评 whose deadline has passed.
    pub rectified_rate: f64,
    /// Valid 差评 whose deadline is at or before the as-of date.
    pub due: u64,
    /// Overdue (not rectified past the deadline).
    pub overdue: u64,
}

/// Extracts the period's 差评 rows (levels 1–2) with deadlines on `calendar`.
pub fn bad_ratings(
    ratings: LazyFrame,
    calendar: &WorkCalendar,
    deadline_days: u32,
    as_of: NaiveDate,
) -> Result<Vec<BadRating>, AggregateError> {
    let df = ratings
        .filter(col("level").lt_eq(lit(2)))
        .select([
            col("rating_id"),
            col("rated_at").cast(DataType::Int64),
            col("org_code"),
            col("category"),
            col("level"),
            col("follow_up"),
            col("comment"),
            col("reason_tags"),
        ])
        .sort(["rated_at", "rating_id"], SortMultipleOptions::default())
        .collect()?;
    let id = df.column("rating_id")?.str()?;
    let at = df.column("rated_at")?.i64()?;
    let org = df.column("org_code")?.str()?;
    let cat = df.column("category")?.str()?;
    let level = df.column("level")?.i32()?;
    let status = df.column("follow_up")?.str()?;
    let comment = df.column("comment")?.str()?;
    let tags = df.column("reason_tags")?.str()?;
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let Some(rated_at) = at.get(i).and_then(chrono::DateTime::from_timestamp_millis).map(|t| t.naive_utc()) else { continue };
        let st = status.get(i).unwrap_or(FollowUp::Pending.name()).to_string();
        let deadline = calendar.add_working_days(rated_at.date(), deadline_days);
        let closed = matches!(FollowUp::parse(&st), Some(FollowUp::Rectified | FollowUp::Invalid | FollowUp::CannotRectify));
        out.push(BadRating {
            rating_id: id.get(i).unwrap_or_default().into(),
            rated_at,
            org_code: org.get(i).unwrap_or_default().into(),
            category: cat.get(i).unwrap_or_default().into(),
            level: level.get(i).unwrap_or(0) as u8,
            overdue: !closed && deadline < as_of,
            status: st,
            deadline,
            comment: comment.get(i).unwrap_or_default().into(),
            reason_tags: tags.get(i).unwrap_or_default().into(),
        });
    }
    Ok(out)
}

/// Summarises 差评 within a scope.
pub fn follow_up_summary<'a>(bad: impl Iterator<Item = &'a BadRating>, as_of: NaiveDate) -> FollowUpSummary {
    let mut s = FollowUpSummary::default();
    let mut rectified_due = 0;
    for b in bad {
        s.total += 1;
        *s.by_status.entry(b.status.clone()).or_default() += 1;
        let state = FollowUp::parse(&b.status);
        if state == Some(FollowUp::Invalid) {
            s.invalid += 1;
            continue;
        }
        s.valid += 1;
        let rectified = state == Some(FollowUp::Rectified);
        if rectified {
            s.rectified += 1;
        }
        if b.deadline <= as_of {
            s.due += 1;
            if rectified {
                rectified_due += 1;
            }
        }
        if b.overdue {
            s.overdue += 1;
        }
    }
    s.rectified_rate = if s.due == 0 { 0.0 } else { rectified_due as f64 / s.due as f64 };
    s
}

/// Distribution of one questionnaire question.
#[derive(Debug, Clone, Serialize)]
pub struct QuestionStats {
    /// Question id.
    pub id: String,
    /// Number in the questionnaire.
    pub number: u32,
    /// 题干.
    pub text: String,
    /// Respondents who answered (the denominator).
    pub answered: u64,
    /// Respondents who skipped.
    pub skipped: u64,
    /// (option, count, share of answered), in the questionnaire's order.
    pub options: Vec<(String, u64, f64)>,
    /// 满意率 by the survey's satisfied options, when it defines them.
    pub satisfied_rate: Option<f64>,
}

/// Questionnaire figures of a period within a scope.
#[derive(Debug, Clone, Serialize)]
pub struct SurveyTables {
    /// Survey title.
    pub title: String,
    /// Responses in scope.
    pub responses: u64,
    /// Per choice question.
    pub questions: Vec<QuestionStats>,
    /// Free-text answers, as given (render masks and escapes them).
    pub texts: Vec<String>,
}

/// Counts the questionnaire answers of `responses` (long form) within `scope`.
pub fn survey_tables(responses: LazyFrame, survey: &SurveyDef, orgs: &OrgTree, scope: &Scope) -> Result<SurveyTables, AggregateError> {
    let df =
        responses.clone().group_by([col("org_code"), col("question"), col("option"), col("skipped")]).agg([len().alias("n")]).collect()?;
    let org = df.column("org_code")?.str()?;
    let q = df.column("question")?.str()?;
    let opt = df.column("option")?.str()?;
    let skipped = df.column("skipped")?.bool()?;
    let n = df.column("n")?.cast(&DataType::UInt64)?;
    let n = n.u64()?;
    let mut counts: BTreeMap<(String, String, bool), u64> = BTreeMap::new();
    for i in 0..df.height() {
        let (Some(o), Some(qq), Some(op), Some(sk)) = (org.get(i), q.get(i), opt.get(i), skipped.get(i)) else { continue };
        if !scope.orgs.is_empty() && !scope.orgs.iter().any(|s| orgs.is_within(o, s)) {
            continue;
        }
        *counts.entry((qq.to_string(), op.to_string(), sk)).or_default() += n.get(i).unwrap_or(0);
    }
    let mut questions = Vec::new();
    for qd in survey.questions.iter().filter(|q| q.kind == crate::config::QuestionKind::Single) {
        let skipped: u64 = counts.iter().filter(|((qq, _, sk), _)| qq == &qd.id && *sk).map(|(_, v)| v).sum();
        let answered: u64 = counts.iter().filter(|((qq, _, sk), _)| qq == &qd.id && !*sk).map(|(_, v)| v).sum();
        let share = |x: u64| if answered == 0 { 0.0 } else { x as f64 / answered as f64 };
        let options: Vec<(String, u64, f64)> = qd
            .options
            .iter()
            .map(|o| {
                let c = counts.get(&(qd.id.clone(), o.clone(), false)).copied().unwrap_or(0);
                (o.clone(), c, share(c))
            })
            .collect();
        let satisfied_rate =
            (!qd.satisfied.is_empty()).then(|| share(options.iter().filter(|(o, _, _)| qd.satisfied.contains(o)).map(|(_, c, _)| c).sum()));
        questions.push(QuestionStats {
            id: qd.id.clone(),
            number: qd.number,
            text: qd.text.clone(),
            answered,
            skipped,
            options,
            satisfied_rate,
        });
    }
    let responses_n = questions.first().map(|q| q.answered + q.skipped).unwrap_or(0);
    let tdf = responses
        .filter(col("text").neq(lit("")))
        .select([col("org_code"), col("text"), col("response_id")])
        .sort(["response_id"], SortMultipleOptions::default())
        .collect()?;
    let (torg, ttext) = (tdf.column("org_code")?.str()?, tdf.column("text")?.str()?);
    let texts = (0..tdf.height())
        .filter_map(|i| match (torg.get(i), ttext.get(i)) {
            (Some(o), Some(t)) if scope.orgs.is_empty() || scope.orgs.iter().any(|s| orgs.is_within(o, s)) => Some(t.to_string()),
            _ => None,
        })
        .collect();
    Ok(SurveyTables { title: survey.title.clone(), responses: responses_n, questions, texts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_of_a_hand_counted_cell() {
        // 10 ratings: 4×5, 3×4, 1×3, 1×2, 1×1.
        let c = Counts { levels: [1, 1, 1, 3, 4] };
        let s = c.stats();
        assert_eq!(s.n, 10);
        assert!((s.good_rate - 0.7).abs() < 1e-12);
        assert!((s.bad_rate - 0.2).abs() < 1e-12);
        assert!((s.satisfied_rate - 0.8).abs() < 1e-12);
        // points: 4·4 + 3·3 + 1·2 + 1·1 + 1·0 = 28; 28/10·25 = 70.
        assert!((s.score - 70.0).abs() < 1e-12);
    }

    #[test]
    fn wilson_bounds_to_four_decimals() {
        // 8 of 10: p = .8, z = 1.96 → (0.4902, 0.9433) by hand.
        let (lo, hi) = wilson(8, 10);
        assert_eq!(format!("{lo:.4} {hi:.4}"), "0.4902 0.9433");
        assert_eq!(wilson(0, 0), (0.0, 0.0));
    }
}
