//! The watch list (连续落后): communities, streets and offices that stayed
//! behind month after month. A unit is behind in a month when it ranks in
//! the bottom `watch_bottom` share of its ranked peers, or (with
//! `watch_threshold`) its 满意率 is under the threshold; it is on the list
//! when it has been behind for two or more consecutive months up to the
//! report's last month.

use super::ratings::{Apart, Cell, Grain, Row, Rules, metric_rate, ranking_tables, scope_buckets};
use super::{Counts, shrunk_rate};
use crate::config::{Category, OrgTree, Scope};
use crate::period::Period;
use serde::Serialize;
use std::collections::BTreeMap;

/// Months of rank history a watch entry shows.
pub const HISTORY_MONTHS: usize = 6;

/// One month of a unit's rank history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchMonth {
    /// Month key, `2026-10`.
    pub month: String,
    /// Rank among the ranked peers, 1 = best; `None` when not ranked (too few ratings or none).
    pub rank: Option<usize>,
    /// Ranked peers that month.
    pub ranked: usize,
    /// Ratings counted that month.
    pub n: u64,
    /// 满意率 that month.
    pub satisfied_rate: f64,
    /// Whether the unit was behind that month.
    pub behind: bool,
}

/// A unit on the watch list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchEntry {
    /// `社区`, `街道` or `科室/单位` (an office).
    pub level: &'static str,
    /// Org code, or the office id.
    pub code: String,
    /// Name.
    pub name: String,
    /// Parent's name (street of a community, district of a street; empty for an office).
    pub parent: String,
    /// Consecutive months behind, up to and including the report's last month.
    pub periods: usize,
    /// The last [`HISTORY_MONTHS`] months, oldest first.
    pub history: Vec<WatchMonth>,
}

/// Whether a ranked row is in the bottom `share` of `ranked` peers or under
/// the threshold. The bottom is at least one unit once two are ranked.
fn behind(rank: Option<usize>, ranked: usize, satisfied_rate: f64, rules: &Rules) -> bool {
    let Some(rank) = rank else { return false };
    let bottom = ((ranked as f64) * rules.watch_bottom.clamp(0.0, 1.0)).ceil() as usize;
    let in_bottom = ranked >= 2 && bottom > 0 && rank > ranked.saturating_sub(bottom);
    in_bottom || rules.watch_threshold.is_some_and(|t| satisfied_rate < t)
}

fn month_of(row: Option<&Row>, ranked: usize, month: &str, rules: &Rules) -> WatchMonth {
    let (rank, n, rate) = row.map(|r| (r.rank, r.stats.n, r.stats.satisfied_rate)).unwrap_or((None, 0, 0.0));
    WatchMonth { month: month.to_string(), rank, ranked, n, satisfied_rate: rate, behind: behind(rank, ranked, rate, rules) }
}

/// Per unit, its months oldest first, from per-month ranked rows.
type Histories = BTreeMap<(usize, String), (String, String, Vec<WatchMonth>)>;

fn add_rows(h: &mut Histories, order: usize, rows: &[Row], all_codes: &[String], month: &str, rules: &Rules) {
    let ranked = rows.iter().filter(|r| r.rank.is_some()).count();
    for code in all_codes {
        let row = rows.iter().find(|r| &r.code == code);
        let entry = h.entry((order, code.clone())).or_insert_with(|| (String::new(), String::new(), Vec::new()));
        if let Some(r) = row {
            (entry.0, entry.1) = (r.name.clone(), r.parent.clone());
        }
        entry.2.push(month_of(row, ranked, month, rules));
    }
}

/// Offices (id, name, scope) ranked among themselves in period `m`: each
/// scope's counts, the ranking figure shrunk toward the city's.
pub fn office_rows(grain: &Grain, orgs: &OrgTree, offices: &[(String, String, Scope)], m: Period, rules: Rules) -> Vec<Row> {
    let sums = OfficeSums::new(grain, orgs, offices);
    office_rows_from(&sums, offices, m, rules)
}

/// Each office's counts per bucket (period key), and the city's, summed from
/// the grain once. Ranking offices needs only their totals of a month and of
/// the month before, so the watch list's twelve months of office rankings
/// read these instead of rolling every office's full tables up twelve times.
struct OfficeSums<'g> {
    city: BTreeMap<&'g str, Cell>,
    offices: Vec<BTreeMap<&'g str, Cell>>,
}

impl<'g> OfficeSums<'g> {
    fn new(grain: &'g Grain, orgs: &OrgTree, offices: &[(String, String, Scope)]) -> OfficeSums<'g> {
        OfficeSums {
            city: scope_buckets(grain, orgs, &Scope::default()),
            offices: offices.iter().map(|(_, _, s)| scope_buckets(grain, orgs, s)).collect(),
        }
    }
}

/// [`office_rows`] from sums made once.
fn office_rows_from(sums: &OfficeSums<'_>, offices: &[(String, String, Scope)], m: Period, rules: Rules) -> Vec<Row> {
    let (key, prev_key) = (m.key(), m.previous().key());
    let of = |b: &BTreeMap<&str, Cell>, k: &str| b.get(k).copied().unwrap_or_default();
    let inc = rules.include_default;
    let city = of(&sums.city, &key).counted(inc).stats();
    let parent = metric_rate(&Counts { levels: city.levels }, rules.rank_by);
    let mut rows: Vec<Row> = offices
        .iter()
        .zip(&sums.offices)
        .map(|((id, name, _), b)| {
            // As `rating_tables` gives them: the month's and the previous
            // month's counts of the scope, kinds kept apart in `apart`.
            let (total_cell, previous_cell) = (of(b, &key), of(b, &prev_key));
            let total = total_cell.counted(inc).stats();
            let c = Counts { levels: total.levels };
            let k = match rules.rank_by {
                crate::config::RankBy::BadRate => total.bad,
                crate::config::RankBy::SatisfiedRate => c.satisfied(),
                crate::config::RankBy::Score => 0,
            };
            let shrunk = match rules.rank_by {
                crate::config::RankBy::Score => {
                    (total.score * c.n() as f64 + rules.prior_weight * parent) / (c.n() as f64 + rules.prior_weight)
                }
                _ => shrunk_rate(k, c.n(), parent, rules.prior_weight),
            };
            Row {
                code: id.clone(),
                name: name.clone(),
                parent: String::new(),
                low_n: total.n < rules.min_n,
                previous: previous_cell.counted(inc).stats(),
                change_pp: 0.0,
                significant: false,
                shrunk,
                rank: None,
                apart: Apart::of(&total_cell),
                stats: total,
            }
        })
        .collect();
    let mut ranked: Vec<usize> = (0..rows.len()).filter(|&i| !rows[i].low_n).collect();
    let lower = rules.rank_by.lower_is_better();
    ranked.sort_by(|&a, &b| {
        let (x, y) = (rows[a].shrunk, rows[b].shrunk);
        (if lower { x.total_cmp(&y) } else { y.total_cmp(&x) }).then_with(|| rows[a].code.cmp(&rows[b].code))
    });
    for (r, i) in ranked.into_iter().enumerate() {
        rows[i].rank = Some(r + 1);
    }
    rows
}

/// The watch list of the whole city for the months up to `period`'s last:
/// streets and communities ranked city-wide month by month (as the tables
/// rank them), and `offices` (id, name, scope) ranked among themselves.
/// Longest run first.
pub fn watch_list(
    grain: &Grain,
    orgs: &OrgTree,
    categories: &[Category],
    offices: &[(String, String, Scope)],
    period: Period,
    rules: Rules,
) -> Vec<WatchEntry> {
    let months = period.trailing_months(HISTORY_MONTHS.max(12));
    let mut h = Histories::new();
    let month_tables: Vec<_> = months.iter().map(|m| (m.key(), ranking_tables(grain, orgs, categories, *m, rules))).collect();
    let codes = |rows: fn(&super::RatingTables) -> &Vec<Row>| -> Vec<String> {
        let mut all: Vec<String> = month_tables.iter().flat_map(|(_, t)| rows(t).iter().map(|r| r.code.clone())).collect();
        all.sort();
        all.dedup();
        all
    };
    let (streets, communities) = (codes(|t| &t.streets), codes(|t| &t.communities));
    let office_ids: Vec<String> = offices.iter().map(|(id, _, _)| id.clone()).collect();
    let office_sums = OfficeSums::new(grain, orgs, offices);
    for (m, (key, t)) in months.iter().zip(&month_tables) {
        add_rows(&mut h, 0, &t.streets, &streets, key, &rules);
        add_rows(&mut h, 1, &t.communities, &communities, key, &rules);
        if !offices.is_empty() {
            add_rows(&mut h, 2, &office_rows_from(&office_sums, offices, *m, rules), &office_ids, key, &rules);
        }
    }
    let mut out: Vec<WatchEntry> = h
        .into_iter()
        .filter_map(|((order, code), (name, parent, history))| {
            let periods = history.iter().rev().take_while(|m| m.behind).count();
            (periods >= 2).then(|| WatchEntry {
                level: ["街道", "社区", "科室/单位"][order],
                name: if name.is_empty() { code.clone() } else { name },
                code,
                parent,
                periods,
                history: history[history.len().saturating_sub(HISTORY_MONTHS)..].to_vec(),
            })
        })
        .collect();
    out.sort_by(|a, b| b.periods.cmp(&a.periods).then_with(|| a.level.cmp(b.level)).then_with(|| a.code.cmp(&b.code)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::ratings::tests::{cats, ratings, tree};
    use crate::aggregate::{RefFrames, grain};
    use polars::prelude::IntoLazy;

    #[test]
    fn a_community_bottom_three_months_running_is_watched() {
        // Three communities of one street, 40 ratings each a month; 差评 (A, B, C):
        // July 2, 1, 0 (A last); August 0, 2, 8; September 6, 0, 8; October
        // 2, 0, 8 (C last three months running). Equal n, so the shrunk 差评率
        // orders as the counts do. With 3 ranked, the bottom 10% is ceil(0.3) = 1.
        let (a, b, c) = ("369901001001", "369901001002", "369901001003");
        let mut rs = Vec::new();
        for (month, bad) in [(7, [2, 1, 0]), (8, [0, 2, 8]), (9, [6, 0, 8]), (10, [2, 0, 8])] {
            for (org, k) in [a, b, c].into_iter().zip(bad) {
                ratings(&mut rs, org, month, 5, 40 - k);
                ratings(&mut rs, org, month, 1, k);
            }
        }
        let lf = crate::store::ratings_frame(&rs, 1).expect("frame").lazy();
        let (orgs, cats) = (tree(), cats());
        let refs = RefFrames::new(&orgs, &cats).expect("refs");
        let period: Period = "2026-10".parse().expect("period");
        let buckets = period.trailing_months(12).into_iter().map(|m| (m, lf.clone())).collect();
        let g = grain(buckets, &refs).expect("grain");
        let w = watch_list(&g, &orgs, &cats, &[], period, Rules { min_n: 30, ..Rules::default() });
        // Only C: A was last in July alone; the one street has no peer to be behind.
        assert_eq!(w.len(), 1, "{w:?}");
        let e = &w[0];
        assert_eq!((e.level, e.code.as_str(), e.periods), ("社区", c, 3));
        let ranks: Vec<(String, Option<usize>, usize, bool)> =
            e.history.iter().map(|h| (h.month.clone(), h.rank, h.ranked, h.behind)).collect();
        assert_eq!(
            ranks,
            vec![
                ("2026-05".into(), None, 0, false),
                ("2026-06".into(), None, 0, false),
                ("2026-07".into(), Some(1), 3, false),
                ("2026-08".into(), Some(3), 3, true),
                ("2026-09".into(), Some(3), 3, true),
                ("2026-10".into(), Some(3), 3, true),
            ]
        );
    }
}
