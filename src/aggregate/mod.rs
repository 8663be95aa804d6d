//! Aggregate: satisfaction figures from curated records.
//!
//! Pure functions: they take lazy frames handed over by the pipeline, the
//! reference data, the period and the as-of date as arguments; they name no
//! file and never read the clock, so the same inputs always give the same
//! figures.
//!
//! Polars does the heavy pass: one group-by per time bucket over the ratings
//! down to a small grain (bucket × community × category × level counts, or
//! any other dimensions asked for). Everything else (streets, districts, the
//! city, categories, any office's slice, rankings, changes) is a roll-up of
//! that grain in Rust, so a report for 80 offices costs one scan, not 80.
//!
//! - [`ratings`]: breakdowns, the report tables, rankings and changes.
//! - [`follow_up`]: 差评 deadlines on the working-day calendar, 整改率, overdue.
//! - [`channels`]: shares by 评价渠道 and the suspicious-burst detector.
//! - [`survey`]: questionnaire distributions, multi-select, matrix rows, 需求清单.
//! - [`watch`]: the watch list (连续落后): units at the bottom month after month.

pub mod channels;
pub mod follow_up;
pub mod ratings;
pub mod survey;
pub mod watch;

pub use channels::{Burst, BurstRule, ChannelCell, ChannelMix, Flagged, burst_candidates, bursts, channel_cells, channel_mix};
pub use follow_up::{BadRating, Concentration, FollowUpSummary, bad_ratings, concentration, follow_up_summary};
pub use follow_up::{Deadlines, Step, StepsSummary, bad_ratings_with, steps_summary};
pub use ratings::{
    Apart, Breakdown, Cell, Cross, Dim, Grain, RatingTables, RefFrames, Row, Rules, breakdown, evaluation_of, grain, in_scope,
    lineage_in_scope, project_of, rating_tables,
};
pub use survey::{NeedItem, QuestionStats, SurveyTables, survey_answers, survey_tables, survey_tables_of};
pub use watch::{WatchEntry, WatchMonth, office_rows, watch_list};

use polars::prelude::PolarsError;
use serde::Serialize;

/// Errors of aggregation: the data did not have the expected shape.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    /// Polars failed while evaluating the plan.
    #[error("aggregating the curated data failed: {0}")]
    Polars(#[from] PolarsError),
}

/// z for a two-sided 95% interval or test.
const Z95: f64 = 1.959_963_984_540_054;

/// Counts of one cell: the count of each level.
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

    /// Ratings at level 3 or above (基本满意以上).
    pub fn satisfied(&self) -> u64 {
        self.levels[2] + self.levels[3] + self.levels[4]
    }

    /// The figures of DESIGN.md for this cell.
    pub fn stats(&self) -> Stats {
        let n = self.n();
        let c = |k: usize| self.levels[k - 1];
        let share = |x: u64| if n == 0 { 0.0 } else { x as f64 / n as f64 };
        let (good, mid, bad, satisfied) = (c(4) + c(5), c(3), c(1) + c(2), self.satisfied());
        let points: u64 = (1..=5).map(|k| c(k) * (k as u64 - 1)).sum();
        let (good_lo, good_hi) = wilson(good, n);
        let (mid_lo, mid_hi) = wilson(mid, n);
        let (bad_lo, bad_hi) = wilson(bad, n);
        let (satisfied_lo, satisfied_hi) = wilson(satisfied, n);
        Stats {
            n,
            levels: self.levels,
            good,
            bad,
            good_rate: share(good),
            good_lo,
            good_hi,
            mid_rate: share(mid),
            mid_lo,
            mid_hi,
            bad_rate: share(bad),
            bad_lo,
            bad_hi,
            satisfied_rate: share(satisfied),
            satisfied_lo,
            satisfied_hi,
            score: if n == 0 { 0.0 } else { points as f64 / n as f64 * 25.0 },
        }
    }
}

/// The published figures of one cell. Every rate carries its 95% Wilson interval.
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
    /// Wilson lower bound of 好评率.
    pub good_lo: f64,
    /// Wilson upper bound of 好评率.
    pub good_hi: f64,
    /// 中评率.
    pub mid_rate: f64,
    /// Wilson lower bound of 中评率.
    pub mid_lo: f64,
    /// Wilson upper bound of 中评率.
    pub mid_hi: f64,
    /// 差评率.
    pub bad_rate: f64,
    /// Wilson lower bound of 差评率.
    pub bad_lo: f64,
    /// Wilson upper bound of 差评率.
    pub bad_hi: f64,
    /// 满意率 (基本满意以上).
    pub satisfied_rate: f64,
    /// Wilson lower bound of 满意率.
    pub satisfied_lo: f64,
    /// Wilson upper bound of 满意率.
    pub satisfied_hi: f64,
    /// 满意度得分 0–100: mean of (level − 1) / 4 × 100.
    pub score: f64,
}

/// The 95% Wilson score interval of `k` successes in `n` trials; (0, 0) when n = 0.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let (nf, p) = (n as f64, k as f64 / n as f64);
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / nf;
    let centre = p + z2 / (2.0 * nf);
    let half = Z95 * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    (((centre - half) / denom).max(0.0), ((centre + half) / denom).min(1.0))
}

/// Whether k1/n1 and k2/n2 differ at 95% (pooled two-proportion z-test).
/// Returns false when either n is 0 or the pooled rate is 0 or 1 (no variance).
pub fn significant_difference(k1: u64, n1: u64, k2: u64, n2: u64) -> bool {
    if n1 == 0 || n2 == 0 {
        return false;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let p = (k1 + k2) as f64 / (n1f + n2f);
    let se = (p * (1.0 - p) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    se > 0.0 && ((k1 as f64 / n1f - k2 as f64 / n2f) / se).abs() > Z95
}

/// A rate shrunk toward its parent's: (k + m·p_parent) / (n + m). With few
/// ratings it stays near the parent; with many it approaches k/n. `m` is the
/// configured prior weight (in ratings).
pub fn shrunk_rate(k: u64, n: u64, parent_rate: f64, prior_weight: f64) -> f64 {
    if n == 0 && prior_weight <= 0.0 {
        return parent_rate;
    }
    (k as f64 + prior_weight * parent_rate) / (n as f64 + prior_weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_of_a_hand_counted_cell() {
        // 10 ratings: 4×5, 3×4, 1×3, 1×2, 1×1.
        let s = Counts { levels: [1, 1, 1, 3, 4] }.stats();
        assert_eq!(s.n, 10);
        assert!((s.good_rate - 0.7).abs() < 1e-12);
        assert!((s.mid_rate - 0.1).abs() < 1e-12);
        assert!((s.bad_rate - 0.2).abs() < 1e-12);
        assert!((s.satisfied_rate - 0.8).abs() < 1e-12);
        // points: 4·4 + 3·3 + 1·2 + 1·1 + 1·0 = 28; 28/10·25 = 70.
        assert!((s.score - 70.0).abs() < 1e-12);
    }

    #[test]
    fn wilson_bounds_to_four_decimals() {
        // By hand with z = 1.959964: p = .8, n = 10 → centre .99207/1.38415,
        // half-width .31362/1.38415 → (0.4902, 0.9433).
        let (lo, hi) = wilson(8, 10);
        assert_eq!(format!("{lo:.4} {hi:.4}"), "0.4902 0.9433");
        // 221 of 230 (the published questionnaire): (0.9273, 0.9793).
        let (lo, hi) = wilson(221, 230);
        assert_eq!(format!("{lo:.4} {hi:.4}"), "0.9273 0.9793");
        // The edges stay inside [0, 1]: 0 of 5 → (0, 0.4345); 5 of 5 → (0.5655, 1).
        let (lo, hi) = wilson(0, 5);
        assert_eq!(format!("{lo:.4} {hi:.4}"), "0.0000 0.4345");
        let (lo, hi) = wilson(5, 5);
        assert_eq!(format!("{lo:.4} {hi:.4}"), "0.5655 1.0000");
        assert_eq!(wilson(0, 0), (0.0, 0.0));
    }

    #[test]
    fn two_proportion_test_by_hand() {
        // 90/100 vs 80/100: pooled p = .85, se = sqrt(.85·.15·.02) = .050498,
        // z = .1/.050498 = 1.98 > 1.96 → significant.
        assert!(significant_difference(90, 100, 80, 100));
        // 90/100 vs 85/100: pooled .875, z = .05/.04677 = 1.07 → not significant.
        assert!(!significant_difference(90, 100, 85, 100));
        assert!(!significant_difference(1, 1, 0, 0));
    }

    #[test]
    fn shrinkage_pulls_small_cells_to_the_parent() {
        // 2 of 2 satisfied, parent 0.9, prior 20 → (2 + 18) / 22 = 0.9091.
        assert!((shrunk_rate(2, 2, 0.9, 20.0) - 20.0 / 22.0).abs() < 1e-12);
        // 900 of 1000, parent 0.5 → (900 + 10) / 1020 = 0.8922.
        assert!((shrunk_rate(900, 1000, 0.5, 20.0) - 910.0 / 1020.0).abs() < 1e-12);
    }
}
