//! Channels and suspicious bursts: how ratings of a period split by 评价渠道
//! (二维码, 移动端, 大厅平板 …), and runs of 好评 that look scripted.
//!
//! Two rules flag a run (thresholds in `[bursts]`, defaults in brackets):
//!
//! - `同一评价人`: at least `rater_min` [5] 非常满意 from one rater hash within
//!   `window_minutes` [10], whatever the community or channel.
//! - `同一渠道同一社区`: at least `channel_min` [10] 好评 (满意 or 非常满意) from
//!   one channel at one community within the window, and at least
//!   `channel_factor` [5] times that pair's usual count for such a window:
//!   its 好评 of the period × window ÷ (days it had any × 480 minutes, an
//!   eight-hour service day). A busy hall tablet is judged against itself.
//!
//! Overlapping windows merge into one run; every rating of a run is flagged
//! with the rule. 系统默认评价 are left out (the system, not a resident, gave
//! them). Flagged ratings stay in every figure: they are for review only.

use super::AggregateError;
use crate::config::BurstRules;
use crate::period::Period;
use chrono::{Duration, NaiveDateTime};
use polars::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Ratings of one community × category from one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelCell {
    /// Community (or grid) code.
    pub org_code: String,
    /// Category code.
    pub category: String,
    /// 评价渠道 code (0 = 未注明).
    pub channel: u8,
    /// Ratings.
    pub n: u64,
}

/// Ratings of `period` by org, category and channel, residents' ratings only
/// (系统默认评价 left out).
pub fn channel_cells(ratings: LazyFrame, period: Period) -> Result<Vec<ChannelCell>, AggregateError> {
    let df = super::ratings::within_by(ratings, "rated_at", period)
        .filter(col("default_rating").not())
        .group_by([col("org_code"), col("category"), col("channel")])
        .agg([len().cast(DataType::UInt64).alias("n")])
        .sort(["org_code", "category", "channel"], SortMultipleOptions::default())
        .collect()?;
    let (org, cat, ch, n) =
        (df.column("org_code")?.str()?, df.column("category")?.str()?, df.column("channel")?.i32()?, df.column("n")?.u64()?);
    Ok((0..df.height())
        .map(|i| ChannelCell {
            org_code: org.get(i).unwrap_or_default().into(),
            category: cat.get(i).unwrap_or_default().into(),
            channel: u8::try_from(ch.get(i).unwrap_or(0)).unwrap_or(0),
            n: n.get(i).unwrap_or(0),
        })
        .collect())
}

/// How a scope's ratings split by channel.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelMix {
    /// Ratings.
    pub n: u64,
    /// (channel code, count, share of n), in code order.
    pub by_channel: Vec<(u8, u64, f64)>,
}

/// Sums cells into a channel mix.
pub fn channel_mix<'a>(cells: impl Iterator<Item = &'a ChannelCell>) -> ChannelMix {
    let mut counts: BTreeMap<u8, u64> = BTreeMap::new();
    for c in cells {
        *counts.entry(c.channel).or_default() += c.n;
    }
    let n = counts.values().sum();
    let by_channel = counts.into_iter().map(|(k, c)| (k, c, if n == 0 { 0.0 } else { c as f64 / n as f64 })).collect();
    ChannelMix { n, by_channel }
}

/// A 好评 as the burst detector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Rating id.
    pub rating_id: String,
    /// When it was given.
    pub rated_at: NaiveDateTime,
    /// Community (or grid) code.
    pub org_code: String,
    /// 评价渠道 code.
    pub channel: u8,
    /// Level 4 or 5.
    pub level: u8,
    /// Keyed rater hash, when the source gave a phone or id.
    pub rater_hash: Option<String>,
}

/// The 好评 (levels 4–5) of `period` that residents gave, by time.
pub fn burst_candidates(ratings: LazyFrame, period: Period) -> Result<Vec<Mark>, AggregateError> {
    let df = super::ratings::within_by(ratings, "rated_at", period)
        .filter(col("level").gt_eq(lit(4)).and(col("default_rating").not()))
        .select([col("rating_id"), col("rated_at").cast(DataType::Int64), col("org_code"), col("channel"), col("level"), col("rater_hash")])
        .sort(["rated_at", "rating_id"], SortMultipleOptions::default())
        .collect()?;
    let id = df.column("rating_id")?.str()?;
    let at = df.column("rated_at")?.i64()?;
    let org = df.column("org_code")?.str()?;
    let ch = df.column("channel")?.i32()?;
    let level = df.column("level")?.i32()?;
    let hash = df.column("rater_hash")?.str()?;
    Ok((0..df.height())
        .filter_map(|i| {
            let rated_at = at.get(i).and_then(chrono::DateTime::from_timestamp_millis)?.naive_utc();
            Some(Mark {
                rating_id: id.get(i).unwrap_or_default().into(),
                rated_at,
                org_code: org.get(i).unwrap_or_default().into(),
                channel: u8::try_from(ch.get(i).unwrap_or(0)).unwrap_or(0),
                level: u8::try_from(level.get(i).unwrap_or(0)).unwrap_or(0),
                rater_hash: hash.get(i).filter(|h| !h.is_empty()).map(String::from),
            })
        })
        .collect())
}

/// Which rule flagged a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BurstRule {
    /// Many 非常满意 from one rater hash within the window.
    Rater,
    /// Many 好评 from one channel at one community, far above its usual rate.
    ChannelOrg,
}

impl BurstRule {
    /// The name printed in the workbook.
    pub fn name(self) -> &'static str {
        match self {
            BurstRule::Rater => "同一评价人",
            BurstRule::ChannelOrg => "同一渠道同一社区",
        }
    }
}

/// A flagged run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Burst {
    /// The rule.
    pub rule: BurstRule,
    /// The rule's threshold for this key (ratings in one window).
    pub threshold: u64,
    /// The first and the last rating's time.
    pub start: NaiveDateTime,
    /// See `start`.
    pub end: NaiveDateTime,
    /// Community of the run (of its first rating, for the rater rule).
    pub org_code: String,
    /// Channel (of its first rating, for the rater rule).
    pub channel: u8,
    /// The ratings of the run, by time.
    pub ratings: Vec<Flagged>,
}

/// A rating of a flagged run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Flagged {
    /// Rating id.
    pub rating_id: String,
    /// When it was given.
    pub rated_at: NaiveDateTime,
    /// Its community (or grid).
    pub org_code: String,
    /// Its channel.
    pub channel: u8,
}

/// Minutes of a service day, for the usual rate of a channel at a community.
const SERVICE_DAY_MINUTES: f64 = 480.0;

/// Flags runs by both rules; runs sorted by start, then rule.
pub fn bursts(marks: &[Mark], rules: &BurstRules) -> Vec<Burst> {
    if !rules.enabled {
        return Vec::new();
    }
    let window = Duration::minutes(i64::from(rules.window_minutes));
    let mut out = Vec::new();
    let mut by_rater: HashMap<&str, Vec<&Mark>> = HashMap::new();
    let mut by_pair: HashMap<(&str, u8), Vec<&Mark>> = HashMap::new();
    for m in marks {
        if let (5, Some(h)) = (m.level, m.rater_hash.as_deref()) {
            by_rater.entry(h).or_default().push(m);
        }
        by_pair.entry((m.org_code.as_str(), m.channel)).or_default().push(m);
    }
    for group in by_rater.values() {
        emit(&mut out, BurstRule::Rater, group, window, u64::from(rules.rater_min));
    }
    for group in by_pair.values() {
        let days: BTreeSet<_> = group.iter().map(|m| m.rated_at.date()).collect();
        let usual = group.len() as f64 * f64::from(rules.window_minutes) / (days.len() as f64 * SERVICE_DAY_MINUTES);
        let threshold = u64::from(rules.channel_min).max((rules.channel_factor * usual).ceil() as u64);
        emit(&mut out, BurstRule::ChannelOrg, group, window, threshold);
    }
    out.sort_by(|a, b| a.start.cmp(&b.start).then(a.rule.cmp(&b.rule)).then_with(|| a.ratings.cmp(&b.ratings)));
    out
}

fn emit(out: &mut Vec<Burst>, rule: BurstRule, group: &[&Mark], window: Duration, threshold: u64) {
    let mut sorted = group.to_vec();
    sorted.sort_by(|a, b| a.rated_at.cmp(&b.rated_at).then_with(|| a.rating_id.cmp(&b.rating_id)));
    let times: Vec<NaiveDateTime> = sorted.iter().map(|m| m.rated_at).collect();
    for (from, to) in runs(&times, window, threshold.max(1) as usize) {
        let run = &sorted[from..=to];
        out.push(Burst {
            rule,
            threshold,
            start: run[0].rated_at,
            end: run[run.len() - 1].rated_at,
            org_code: run[0].org_code.clone(),
            channel: run[0].channel,
            ratings: run
                .iter()
                .map(|m| Flagged { rating_id: m.rating_id.clone(), rated_at: m.rated_at, org_code: m.org_code.clone(), channel: m.channel })
                .collect(),
        });
    }
}

/// Inclusive index ranges of `times` (sorted) where at least `min` fall
/// within `window` of each other; overlapping windows merge into one run.
pub fn runs(times: &[NaiveDateTime], window: Duration, min: usize) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut from = 0;
    for to in 0..times.len() {
        while times[to] - times[from] > window {
            from += 1;
        }
        if to + 1 - from < min {
            continue;
        }
        match out.last_mut() {
            Some(last) if from <= last.1 => last.1 = to,
            _ => out.push((from, to)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(day: u32, h: u32, m: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 10, day).and_then(|d| d.and_hms_opt(h, m, 0)).expect("time")
    }

    fn mark(id: &str, t: NaiveDateTime, org: &str, channel: u8, level: u8, rater: Option<&str>) -> Mark {
        Mark { rating_id: id.into(), rated_at: t, org_code: org.into(), channel, level, rater_hash: rater.map(String::from) }
    }

    #[test]
    fn runs_merge_overlapping_windows() {
        // 09:00 09:02 09:04 09:06 | 09:30: with min 3 in 5 minutes, windows
        // [0..2] and [1..3] overlap → one run 0..=3; 09:30 stands alone.
        let t = [at(9, 9, 0), at(9, 9, 2), at(9, 9, 4), at(9, 9, 6), at(9, 9, 30)];
        assert_eq!(runs(&t, Duration::minutes(5), 3), vec![(0, 3)]);
        assert_eq!(runs(&t, Duration::minutes(5), 5), vec![]);
    }

    #[test]
    fn one_rater_five_top_marks_in_ten_minutes_is_a_burst() {
        let rules = BurstRules::default();
        // Rater "h1": 5 非常满意 09:00–09:08 at two communities → one run of 5.
        // Rater "h2": 5 非常满意, but 09:00–09:12 (any 10 minutes hold 4) → none.
        // Rater "h3": 5 满意 (level 4) within minutes → not the rater rule.
        let mut marks = Vec::new();
        for (k, minute) in [0, 2, 4, 6, 8].iter().enumerate() {
            marks.push(mark(&format!("a{k}"), at(9, 9, *minute), if k % 2 == 0 { "c1" } else { "c2" }, 3, 5, Some("h1")));
        }
        for (k, minute) in [0, 3, 6, 9, 12].iter().enumerate() {
            marks.push(mark(&format!("b{k}"), at(9, 9, *minute), "c3", 2, 5, Some("h2")));
        }
        for k in 0..5 {
            marks.push(mark(&format!("c{k}"), at(9, 9, k), "c4", 2, 4, Some("h3")));
        }
        let found = bursts(&marks, &rules);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].rule, BurstRule::Rater);
        assert_eq!(found[0].ratings.iter().map(|r| r.rating_id.as_str()).collect::<Vec<_>>(), ["a0", "a1", "a2", "a3", "a4"]);
        assert_eq!((found[0].start, found[0].end, found[0].threshold), (at(9, 9, 0), at(9, 9, 8), 5));
    }

    #[test]
    fn a_channel_is_judged_against_its_own_usual_rate() {
        let rules = BurstRules::default();
        let mut marks = Vec::new();
        // c1/二维码: 12 好评 09:00–09:11 on one day. usual = 12 × 10 / (1 × 480)
        // = 0.25 per window; threshold = max(10, ⌈5 × 0.25⌉ = 2) = 10 → flagged.
        for k in 0..12 {
            marks.push(mark(&format!("q{k:02}"), at(9, 9, k), "c1", 3, 4, None));
        }
        // c2/平板: 20 好评 every 10 minutes for 8 hours on 2 days (1,920).
        // usual = 1920 × 10 / (2 × 480) = 20; threshold = max(10, 100) = 100 → none.
        for day in [12, 13] {
            for slot in 0..48 {
                for k in 0..20 {
                    let t = at(day, 9, 0) + Duration::minutes(slot * 10) + Duration::seconds(k * 29);
                    marks.push(mark(&format!("p{day}-{slot}-{k}"), t, "c2", 4, 4, None));
                }
            }
        }
        let found = bursts(&marks, &rules);
        assert_eq!(found.len(), 1, "{:?}", found.iter().map(|b| (&b.org_code, b.ratings.len())).collect::<Vec<_>>());
        assert_eq!((found[0].rule, found[0].threshold, found[0].ratings.len()), (BurstRule::ChannelOrg, 10, 12));
        let off = BurstRules { enabled: false, ..BurstRules::default() };
        assert!(bursts(&marks, &off).is_empty());
    }

    #[test]
    fn channel_mix_shares_add_up() {
        let cell = |ch, n| ChannelCell { org_code: "c".into(), category: "k".into(), channel: ch, n };
        let cells = [cell(3, 6), cell(2, 3), cell(3, 1)];
        let mix = channel_mix(cells.iter());
        assert_eq!(mix.n, 10);
        assert_eq!(mix.by_channel.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(), [(2, 3), (3, 7)]);
        assert!((mix.by_channel[1].2 - 0.7).abs() < 1e-12);
    }
}
