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
use crate::model::FollowUp;
use crate::period::Period;
use chrono::{NaiveDate, NaiveDateTime};
use polars::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;

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
/// with `None`) with deadlines on `calendar`.
pub fn bad_ratings(
    ratings: LazyFrame,
    period: Option<Period>,
    calendar: &WorkCalendar,
    deadline_days: u32,
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
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let Some(rated_at) = at.get(i).and_then(chrono::DateTime::from_timestamp_millis).map(|t| t.naive_utc()) else { continue };
        let st = status.get(i).unwrap_or(FollowUp::Pending.name()).to_string();
        let deadline = calendar.add_working_days(rated_at.date(), deadline_days);
        let rectified_at = rect.get(i).and_then(chrono::DateTime::from_timestamp_millis).map(|t| t.naive_utc());
        let days_to_rectify = rectified_at.map(|r| calendar.working_days_between(rated_at.date(), r.date()));
        let closed = matches!(FollowUp::parse(&st), Some(FollowUp::Rectified | FollowUp::Invalid | FollowUp::CannotRectify));
        out.push(BadRating {
            rating_id: id.get(i).unwrap_or_default().into(),
            rated_at,
            org_code: org.get(i).unwrap_or_default().into(),
            category: cat.get(i).unwrap_or_default().into(),
            level: level.get(i).unwrap_or(0) as u8,
            channel: channel.get(i).unwrap_or(0) as u8,
            overdue: !closed && deadline < as_of,
            status: st,
            deadline,
            rectified_at,
            days_to_rectify,
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
}
