//! 差评 follow-up: every 差评 of a period with its rectification deadline in
//! working days on the official calendar, and the figures leadership asks
//! for: valid 差评 (invalid ones after 申诉 excluded), 整改中, 已整改, 无法整改,
//! 差评整改率, mean working days to rectify, and overdue items.
//!
//! The deadline counts working days from the day after the rating (国庆 and
//! 春节 skipped, 调休 Saturdays counted); "overdue" is judged at the as-of
//! date passed in, never at today's date.

use super::AggregateError;
use crate::calendar::WorkCalendar;
use crate::config::{Category, FollowUpRules, StepDays};
use crate::model::FollowUp;
use crate::period::Period;
use chrono::{NaiveDate, NaiveDateTime};
use polars::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

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
    /// 评价渠道 code.
    pub channel: u8,
    /// Follow-up state.
    pub status: String,
    /// Rectification deadline.
    pub deadline: NaiveDate,
    /// When rectification was completed.
    pub rectified_at: Option<NaiveDateTime>,
    /// Working days from the rating to its rectification.
    pub days_to_rectify: Option<u32>,
    /// Not rectified and past the deadline at the as-of date.
    pub overdue: bool,
    /// Resident's comment (escaped and masked by render).
    pub comment: String,
    /// Reason tags.
    pub reason_tags: String,
    /// 匿名评价.
    pub anonymous: bool,
    /// A 回访 (回访结果) is recorded.
    pub revisited: bool,
    /// Each configured step with its deadline (整改's is `deadline` above).
    pub steps: Vec<StepDue>,
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
    /// 整改中.
    pub in_progress: u64,
    /// 无法整改.
    pub cannot_rectify: u64,
    /// Mean working days from rating to rectification, over rectified 差评 with a date.
    pub mean_days_to_rectify: Option<f64>,
}

/// Extracts the 差评 rows (levels 1–2) rated within `period` (all of them
/// with `None`) with one deadline of `deadline_days` for every category (the
/// single `deadline_working_days` rule).
pub fn bad_ratings(
    ratings: LazyFrame,
    period: Option<Period>,
    calendar: &WorkCalendar,
    deadline_days: u32,
    as_of: NaiveDate,
) -> Result<Vec<BadRating>, AggregateError> {
    bad_ratings_with(ratings, period, calendar, &Deadlines::uniform(deadline_days), as_of)
}

/// Extracts the 差评 rows (levels 1–2) rated within `period` (all of them
/// with `None`), each with its per-step deadlines from `deadlines` on `calendar`.
pub fn bad_ratings_with(
    ratings: LazyFrame,
    period: Option<Period>,
    calendar: &WorkCalendar,
    deadlines: &Deadlines,
    as_of: NaiveDate,
) -> Result<Vec<BadRating>, AggregateError> {
    let ratings = match period {
        Some(p) => super::ratings::within_by(ratings, "rated_at", p),
        None => ratings,
    };
    let df = ratings
        .filter(col("level").lt_eq(lit(2)))
        .select([
            col("rating_id"),
            col("rated_at").cast(DataType::Int64),
            col("org_code"),
            col("category"),
            col("level"),
            col("channel"),
            col("follow_up"),
            col("comment"),
            col("reason_tags"),
            col("rectified_at").cast(DataType::Int64),
            col("anonymous"),
            col("revisit"),
        ])
        .sort(["rated_at", "rating_id"], SortMultipleOptions::default())
        .collect()?;
    let id = df.column("rating_id")?.str()?;
    let at = df.column("rated_at")?.i64()?;
    let org = df.column("org_code")?.str()?;
    let cat = df.column("category")?.str()?;
    let level = df.column("level")?.i32()?;
    let channel = df.column("channel")?.i32()?;
    let status = df.column("follow_up")?.str()?;
    let comment = df.column("comment")?.str()?;
    let tags = df.column("reason_tags")?.str()?;
    let rect = df.column("rectified_at")?.i64()?;
    let anonymous = df.column("anonymous")?.bool()?;
    let revisit = df.column("revisit")?.str()?;
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let Some(rated_at) = at.get(i).and_then(chrono::DateTime::from_timestamp_millis).map(|t| t.naive_utc()) else { continue };
        let st = status.get(i).unwrap_or(FollowUp::Pending.name()).to_string();
        let category = cat.get(i).unwrap_or_default();
        let days = deadlines.for_category(category);
        let revisited = revisit.get(i).is_some_and(|r| !r.trim().is_empty());
        let steps = step_dues(calendar, rated_at.date(), days, FollowUp::parse(&st), revisited, as_of);
        // 整改 always has a deadline: the category's, else `deadline_working_days`.
        let deadline = calendar.add_working_days(rated_at.date(), days.rectify.unwrap_or(deadlines.fallback_rectify));
        let rectified_at = rect.get(i).and_then(chrono::DateTime::from_timestamp_millis).map(|t| t.naive_utc());
        let days_to_rectify = rectified_at.map(|r| calendar.working_days_between(rated_at.date(), r.date()));
        let closed = matches!(FollowUp::parse(&st), Some(FollowUp::Rectified | FollowUp::Invalid | FollowUp::CannotRectify));
        out.push(BadRating {
            rating_id: id.get(i).unwrap_or_default().into(),
            rated_at,
            org_code: org.get(i).unwrap_or_default().into(),
            category: category.into(),
            level: level.get(i).unwrap_or(0) as u8,
            channel: channel.get(i).unwrap_or(0) as u8,
            overdue: !closed && deadline < as_of,
            status: st,
            deadline,
            rectified_at,
            days_to_rectify,
            comment: comment.get(i).unwrap_or_default().into(),
            reason_tags: tags.get(i).unwrap_or_default().into(),
            anonymous: anonymous.get(i).unwrap_or(false),
            revisited,
            steps,
        });
    }
    Ok(out)
}

/// A follow-up step: 核实, 整改, 反馈 (回访).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// 核实: the office confirms or rejects the 差评.
    Verify,
    /// 整改: the office rectifies it.
    Rectify,
    /// 反馈: the office reports back to the resident (回访).
    Feedback,
}

impl Step {
    /// Every step, in the order they happen.
    pub const ALL: [Step; 3] = [Step::Verify, Step::Rectify, Step::Feedback];

    /// The Chinese name.
    pub fn name(self) -> &'static str {
        match self {
            Step::Verify => "核实",
            Step::Rectify => "整改",
            Step::Feedback => "反馈",
        }
    }

    /// Whether a 差评 in `state` (with a 回访 recorded or not) has done this step.
    /// An invalid 差评 has nothing left to do; an unknown state has done nothing.
    pub fn done(self, state: Option<FollowUp>, revisited: bool) -> bool {
        match (self, state) {
            (_, Some(FollowUp::Invalid)) => true,
            (Step::Verify, Some(s)) => s != FollowUp::Pending,
            (Step::Rectify, Some(s)) => matches!(s, FollowUp::Rectified | FollowUp::CannotRectify),
            (Step::Feedback, _) => revisited,
            (_, None) => false,
        }
    }
}

/// One step of one 差评: its deadline and whether it is done or overdue.
#[derive(Debug, Clone, Serialize)]
pub struct StepDue {
    /// The step.
    pub step: Step,
    /// Its deadline on the working-day calendar.
    pub deadline: NaiveDate,
    /// Done at the as-of date.
    pub done: bool,
    /// Not done and past the deadline at the as-of date.
    pub overdue: bool,
}

fn step_dues(
    calendar: &WorkCalendar,
    day: NaiveDate,
    days: StepDays,
    state: Option<FollowUp>,
    revisited: bool,
    as_of: NaiveDate,
) -> Vec<StepDue> {
    let configured = [(Step::Verify, days.verify), (Step::Rectify, days.rectify), (Step::Feedback, days.feedback)];
    configured
        .into_iter()
        .filter_map(|(step, n)| {
            let deadline = calendar.add_working_days(day, n?);
            let done = step.done(state, revisited);
            Some(StepDue { step, deadline, done, overdue: !done && deadline < as_of })
        })
        .collect()
}

/// Deadlines per category and step, resolved once from `[follow_up]`.
#[derive(Debug, Clone, Default)]
pub struct Deadlines {
    /// Steps of a category nobody configured.
    default: StepDays,
    /// Steps of each configured category (and its sub-categories), resolved.
    by_category: HashMap<String, StepDays>,
    /// The single `deadline_working_days`, for 整改 when nothing else says.
    fallback_rectify: u32,
}

impl Deadlines {
    /// One 整改 deadline for every category, no other step.
    pub fn uniform(rectify_days: u32) -> Deadlines {
        Deadlines {
            default: StepDays { rectify: Some(rectify_days), ..StepDays::default() },
            by_category: HashMap::new(),
            fallback_rectify: rectify_days,
        }
    }

    /// Resolves `[follow_up]` for every category of `categories`: its own
    /// entry, then its parent's (up the tree), then `steps`, then
    /// `deadline_working_days` for 整改.
    pub fn from_rules(rules: &FollowUpRules, categories: &[Category]) -> Deadlines {
        let fallback_rectify = rules.deadline_working_days;
        let default = rules.steps.or(StepDays { rectify: Some(fallback_rectify), ..StepDays::default() });
        let parent: HashMap<&str, &str> = categories.iter().map(|c| (c.code.as_str(), c.parent.as_str())).collect();
        let mut by_category = HashMap::new();
        for c in categories {
            let mut days = StepDays::default();
            let mut code = c.code.as_str();
            // The tree is checked at load, but a cycle must not hang a report.
            for _ in 0..=categories.len() {
                if let Some(own) = rules.category.get(code) {
                    days = days.or(*own);
                }
                match parent.get(code) {
                    Some(p) if !p.is_empty() => code = p,
                    _ => break,
                }
            }
            by_category.insert(c.code.clone(), days.or(default));
        }
        Deadlines { default, by_category, fallback_rectify }
    }

    /// The steps of a category (the default for one not in the tree).
    pub fn for_category(&self, code: &str) -> StepDays {
        self.by_category.get(code).copied().unwrap_or(self.default)
    }
}

/// One step's figures over the valid 差评 of a scope.
#[derive(Debug, Clone, Serialize)]
pub struct StepSummary {
    /// The step.
    pub step: Step,
    /// Its Chinese name.
    pub name: &'static str,
    /// Valid 差评 with this step configured.
    pub total: u64,
    /// Of which the deadline is at or before the as-of date.
    pub due: u64,
    /// Of the due ones, done.
    pub done_due: u64,
    /// Not done past the deadline.
    pub overdue: u64,
    /// done_due / due (`None` when nothing is due): done by the as-of date, the feeds carry no date for 核实 and 反馈.
    pub done_rate: Option<f64>,
}

/// Per-step follow-up and the 实名差评回访率 of a scope.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepsSummary {
    /// One row per step that has a deadline for some 差评, in step order.
    pub steps: Vec<StepSummary>,
    /// Valid 差评 given under a name (not anonymous).
    pub named: u64,
    /// Of which the 回访 is due: the 反馈 deadline (else the 整改 one) is at or before the as-of date.
    pub named_due: u64,
    /// Of the due ones, with a 回访 recorded.
    pub named_revisited: u64,
    /// 实名差评回访率 = named_revisited / named_due (`None` when nothing is due).
    pub revisit_rate: Option<f64>,
    /// The rate is below the expected 100 %.
    pub shortfall: bool,
}

/// Per-step figures and the 实名差评回访率 over the valid 差评 of a scope.
pub fn steps_summary<'a>(bad: impl Iterator<Item = &'a BadRating>, as_of: NaiveDate) -> StepsSummary {
    let mut rows: BTreeMap<Step, StepSummary> = BTreeMap::new();
    let mut s = StepsSummary::default();
    for b in bad.filter(|b| FollowUp::parse(&b.status) != Some(FollowUp::Invalid)) {
        for d in &b.steps {
            let row = rows.entry(d.step).or_insert(StepSummary {
                step: d.step,
                name: d.step.name(),
                total: 0,
                due: 0,
                done_due: 0,
                overdue: 0,
                done_rate: None,
            });
            row.total += 1;
            if d.deadline <= as_of {
                row.due += 1;
                row.done_due += u64::from(d.done);
            }
            row.overdue += u64::from(d.overdue);
        }
        if !b.anonymous {
            s.named += 1;
            let feedback = b.steps.iter().find(|d| d.step == Step::Feedback).map_or(b.deadline, |d| d.deadline);
            if feedback <= as_of {
                s.named_due += 1;
                s.named_revisited += u64::from(b.revisited);
            }
        }
    }
    s.steps = rows
        .into_values()
        .map(|mut r| {
            r.done_rate = (r.due > 0).then(|| r.done_due as f64 / r.due as f64);
            r
        })
        .collect();
    s.revisit_rate = (s.named_due > 0).then(|| s.named_revisited as f64 / s.named_due as f64);
    s.shortfall = s.named_due > s.named_revisited;
    s
}

/// Summarises 差评 within a scope.
pub fn follow_up_summary<'a>(bad: impl Iterator<Item = &'a BadRating>, as_of: NaiveDate) -> FollowUpSummary {
    let mut s = FollowUpSummary::default();
    let mut rectified_due = 0;
    let (mut days_sum, mut days_n) = (0u64, 0u64);
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
            if let Some(d) = b.days_to_rectify {
                days_sum += d as u64;
                days_n += 1;
            }
        }
        match state {
            Some(FollowUp::InProgress) => s.in_progress += 1,
            Some(FollowUp::CannotRectify) => s.cannot_rectify += 1,
            _ => {}
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
    s.mean_days_to_rectify = (days_n > 0).then(|| days_sum as f64 / days_n as f64);
    s
}

/// Where valid 差评 concentrate: counts by category, reason tag and channel,
/// most first (invalid ones after 申诉 are left out).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Concentration {
    /// (category code, count).
    pub by_category: Vec<(String, u64)>,
    /// (reason code, count); a 差评 with several tags counts for each.
    pub by_reason: Vec<(String, u64)>,
    /// (channel code, count).
    pub by_channel: Vec<(String, u64)>,
}

/// Counts valid 差评 by category, reason tag and channel.
pub fn concentration<'a>(bad: impl Iterator<Item = &'a BadRating>) -> Concentration {
    let (mut cat, mut reason, mut channel): (BTreeMap<String, u64>, BTreeMap<String, u64>, BTreeMap<String, u64>) = Default::default();
    for b in bad.filter(|b| FollowUp::parse(&b.status) != Some(FollowUp::Invalid)) {
        *cat.entry(b.category.clone()).or_default() += 1;
        *channel.entry(b.channel.to_string()).or_default() += 1;
        for tag in b.reason_tags.split([',', '，']).map(str::trim).filter(|t| !t.is_empty()) {
            *reason.entry(tag.to_string()).or_default() += 1;
        }
    }
    let sorted = |m: BTreeMap<String, u64>| {
        let mut v: Vec<(String, u64)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    };
    Concentration { by_category: sorted(cat), by_reason: sorted(reason), by_channel: sorted(channel) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("date")
    }

    fn bad(status: &str, deadline: NaiveDate, overdue: bool, days: Option<u32>) -> BadRating {
        BadRating {
            rating_id: status.into(),
            rated_at: d(2025, 9, 26).and_hms_opt(10, 0, 0).expect("time"),
            org_code: String::new(),
            category: String::new(),
            level: 1,
            channel: 2,
            status: status.into(),
            deadline,
            rectified_at: None,
            days_to_rectify: days,
            overdue,
            comment: String::new(),
            reason_tags: String::new(),
            anonymous: false,
            revisited: false,
            steps: Vec::new(),
        }
    }

    #[test]
    fn rectification_rate_counts_valid_due_only() {
        let due = d(2025, 10, 13);
        let later = d(2025, 12, 1);
        let items = [
            bad("已整改", due, false, Some(4)),
            bad("已整改", due, false, Some(6)),
            bad("整改中", due, true, None),
            bad("无效", due, false, None),
            bad("无法整改", due, false, None),
            bad("待核实", later, false, None),
        ];
        let s = follow_up_summary(items.iter(), d(2025, 11, 1));
        assert_eq!((s.total, s.invalid, s.valid), (6, 1, 5));
        // Due by 11-01: the two rectified, the one in progress, the one that cannot be: 4.
        assert_eq!(s.due, 4);
        assert!((s.rectified_rate - 0.5).abs() < 1e-12);
        assert_eq!((s.overdue, s.in_progress, s.cannot_rectify), (1, 1, 1));
        assert_eq!(s.mean_days_to_rectify, Some(5.0));
    }

    fn shipped_calendar() -> WorkCalendar {
        let (cal, errors) = WorkCalendar::from_csv(include_bytes!("../../reference/calendar.csv"));
        assert!(errors.is_empty(), "{errors:?}");
        cal
    }

    fn categories() -> Vec<Category> {
        let cat = |code: &str, parent: &str| Category { code: code.into(), name: code.into(), parent: parent.into(), synonyms: Vec::new() };
        vec![cat("social", ""), cat("elderly_care", "social"), cat("health", "")]
    }

    #[test]
    fn step_deadlines_across_national_day_2026() {
        // A 差评 on Tue 2026-09-29. Working days after it: 09-30 (1); 10-01…07
        // 国庆 off; 10-08 Thu (2), 10-09 Fri (3), 10-10 Sat 调休 (4), 10-12 Mon (5);
        // then 10-13…16 (6–9), 10-19…23 (10–14), 10-26 Mon (15).
        let cal = shipped_calendar();
        let day = d(2026, 9, 29);
        assert_eq!(cal.add_working_days(day, 1), d(2026, 9, 30));
        assert_eq!(cal.add_working_days(day, 5), d(2026, 10, 12));
        assert_eq!(cal.add_working_days(day, 15), d(2026, 10, 26));
        let steps = StepDays { verify: Some(1), rectify: Some(5), feedback: Some(15) };
        // At 10-13: verified (有效), not rectified, no 回访 yet.
        let dues = step_dues(&cal, day, steps, Some(FollowUp::Valid), false, d(2026, 10, 13));
        let got: Vec<(Step, NaiveDate, bool, bool)> = dues.iter().map(|s| (s.step, s.deadline, s.done, s.overdue)).collect();
        assert_eq!(
            got,
            [
                (Step::Verify, d(2026, 9, 30), true, false),
                (Step::Rectify, d(2026, 10, 12), false, true),
                (Step::Feedback, d(2026, 10, 26), false, false),
            ]
        );
    }

    #[test]
    fn deadlines_resolve_category_then_parent_then_default() {
        let mut rules = FollowUpRules { deadline_working_days: 15, ..FollowUpRules::default() };
        rules.steps = StepDays { verify: Some(1), rectify: None, feedback: Some(15) };
        rules.category.insert("social".into(), StepDays { rectify: Some(5), ..StepDays::default() });
        rules.category.insert("elderly_care".into(), StepDays { verify: Some(2), ..StepDays::default() });
        let dl = Deadlines::from_rules(&rules, &categories());
        // Own 核实 2, the parent's 整改 5, the default 反馈 15.
        assert_eq!(dl.for_category("elderly_care"), StepDays { verify: Some(2), rectify: Some(5), feedback: Some(15) });
        assert_eq!(dl.for_category("social"), StepDays { verify: Some(1), rectify: Some(5), feedback: Some(15) });
        // Nothing configured: `steps`, and 整改 from deadline_working_days.
        assert_eq!(dl.for_category("health"), StepDays { verify: Some(1), rectify: Some(15), feedback: Some(15) });
        assert_eq!(dl.for_category("unknown"), dl.for_category("health"));
        // The old single setting alone: 整改 only.
        assert_eq!(Deadlines::uniform(15).for_category("health"), StepDays { rectify: Some(15), ..StepDays::default() });
    }

    #[test]
    fn per_step_overdue_and_named_revisit_rate() {
        let cal = shipped_calendar();
        let steps = StepDays { verify: Some(1), rectify: Some(5), feedback: Some(15) };
        let as_of = d(2026, 11, 1);
        let item = |id: &str, day: NaiveDate, status: &str, anonymous: bool, revisited: bool| {
            let mut b = bad(status, cal.add_working_days(day, 5), false, None);
            b.rating_id = id.into();
            b.anonymous = anonymous;
            b.revisited = revisited;
            b.steps = step_dues(&cal, day, steps, FollowUp::parse(status), revisited, as_of);
            b.overdue = b.steps.iter().any(|s| s.step == Step::Rectify && s.overdue);
            b
        };
        let items = [
            // 09-29: 核实 09-30, 整改 10-12, 反馈 10-26 — all due by 11-01.
            item("a", d(2026, 9, 29), "已整改", false, true),
            item("b", d(2026, 9, 29), "整改中", false, false),
            item("c", d(2026, 9, 29), "待核实", true, false),
            item("x", d(2026, 9, 29), "无效", false, false),
            // 10-28: 核实 10-29 due; 整改 11-04 and 反馈 11-18 not yet.
            item("e", d(2026, 10, 28), "待核实", false, false),
        ];
        let s = steps_summary(items.iter(), as_of);
        let rows: Vec<(Step, u64, u64, u64, u64)> = s.steps.iter().map(|r| (r.step, r.total, r.due, r.done_due, r.overdue)).collect();
        // Invalid "x" is left out: 4 valid 差评.
        // 核实: due a b c e; done a b; overdue c e.  整改: due a b c; done a; overdue b c.
        // 反馈: due a b c; done a; overdue b c.
        assert_eq!(rows, [(Step::Verify, 4, 4, 2, 2), (Step::Rectify, 4, 3, 1, 2), (Step::Feedback, 4, 3, 1, 2)]);
        // Named: a b e; 回访 due (反馈 ≤ 11-01): a b; revisited: a → 50 %, a shortfall.
        assert_eq!((s.named, s.named_due, s.named_revisited, s.revisit_rate, s.shortfall), (3, 2, 1, Some(0.5), true));
    }
}
