//! Reporting periods: day, ISO week, month, quarter, year and rolling 12
//! months, each with its previous period for comparison.
//!
//! A period is a plain value: it is parsed from a key such as `2026-10` or
//! derived from a date passed in, never from the clock, so "the October
//! report" means the same thing whenever it is rerun.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Weekday};
use std::fmt;
use std::str::FromStr;

/// A reporting period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    /// One day.
    Day(NaiveDate),
    /// An ISO week (Monday to Sunday).
    Week {
        /// ISO week-numbering year.
        year: i32,
        /// ISO week 1..=53.
        week: u32,
    },
    /// A calendar month.
    Month {
        /// Year.
        year: i32,
        /// Month 1..=12.
        month: u32,
    },
    /// A calendar quarter.
    Quarter {
        /// Year.
        year: i32,
        /// Quarter 1..=4.
        quarter: u32,
    },
    /// A calendar year.
    Year(i32),
    /// The 12 months ending with (and including) the given month.
    Rolling12 {
        /// Year of the last month.
        year: i32,
        /// The last month.
        month: u32,
    },
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN)
}

/// (year, month) shifted by `delta` months. Computed in 64 bits and
/// saturated, so no `Period` value can make it overflow (parsing keeps years
/// in [`YEARS`] anyway).
fn shift_month(year: i32, month: u32, delta: i32) -> (i32, u32) {
    let idx = i64::from(year) * 12 + i64::from(month) - 1 + i64::from(delta);
    let y = idx.div_euclid(12).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    (y, idx.rem_euclid(12) as u32 + 1)
}

/// The years a period may be written with: ratings before 2000 are
/// quarantined at ingest, and far-off years only reach arithmetic limits.
pub const YEARS: std::ops::RangeInclusive<i32> = 2000..=2100;

impl Period {
    /// The month `year`-`month`; `None` if the month is not 1..=12.
    pub fn month(year: i32, month: u32) -> Option<Period> {
        (1..=12).contains(&month).then_some(Period::Month { year, month })
    }

    /// The month containing `day`.
    pub fn month_of(day: NaiveDate) -> Period {
        Period::Month { year: day.year(), month: day.month() }
    }

    /// The quarter containing `day`.
    pub fn quarter_of(day: NaiveDate) -> Period {
        Period::Quarter { year: day.year(), quarter: (day.month() - 1) / 3 + 1 }
    }

    /// The ISO week containing `day`.
    pub fn week_of(day: NaiveDate) -> Period {
        let w = day.iso_week();
        Period::Week { year: w.year(), week: w.week() }
    }

    /// First day.
    pub fn start_date(self) -> NaiveDate {
        match self {
            Period::Day(d) => d,
            Period::Week { year, week } => NaiveDate::from_isoywd_opt(year, week, Weekday::Mon).unwrap_or(NaiveDate::MIN),
            Period::Month { year, month } => ymd(year, month, 1),
            Period::Quarter { year, quarter } => ymd(year, (quarter - 1) * 3 + 1, 1),
            Period::Year(y) => ymd(y, 1, 1),
            Period::Rolling12 { year, month } => {
                let (y, m) = shift_month(year, month, -11);
                ymd(y, m, 1)
            }
        }
    }

    /// The day after the last day.
    pub fn end_date(self) -> NaiveDate {
        match self {
            Period::Day(d) => d + Duration::days(1),
            Period::Week { .. } => self.start_date() + Duration::days(7),
            Period::Month { year, month } | Period::Rolling12 { year, month } => {
                let (y, m) = shift_month(year, month, 1);
                ymd(y, m, 1)
            }
            Period::Quarter { year, quarter } => {
                let (y, m) = shift_month(year, (quarter - 1) * 3 + 1, 3);
                ymd(y, m, 1)
            }
            Period::Year(y) => ymd(y + 1, 1, 1),
        }
    }

    /// Start as local midnight.
    pub fn start(self) -> NaiveDateTime {
        self.start_date().and_time(NaiveTime::MIN)
    }

    /// Exclusive end as local midnight.
    pub fn end(self) -> NaiveDateTime {
        self.end_date().and_time(NaiveTime::MIN)
    }

    /// Whether `t` (local wall time) falls in the period.
    pub fn contains(self, t: NaiveDateTime) -> bool {
        t >= self.start() && t < self.end()
    }

    /// The period of the same kind just before.
    pub fn previous(self) -> Period {
        match self {
            Period::Day(d) => Period::Day(d - Duration::days(1)),
            Period::Week { .. } => Period::week_of(self.start_date() - Duration::days(7)),
            Period::Month { year, month } => {
                let (year, month) = shift_month(year, month, -1);
                Period::Month { year, month }
            }
            Period::Quarter { year, quarter } => {
                if quarter == 1 {
                    Period::Quarter { year: year - 1, quarter: 4 }
                } else {
                    Period::Quarter { year, quarter: quarter - 1 }
                }
            }
            Period::Year(y) => Period::Year(y - 1),
            Period::Rolling12 { year, month } => {
                let (year, month) = shift_month(year, month, -12);
                Period::Rolling12 { year, month }
            }
        }
    }

    /// The period of the same kind just after.
    pub fn next(self) -> Period {
        match self {
            Period::Day(d) => Period::Day(d + Duration::days(1)),
            Period::Week { .. } => Period::week_of(self.end_date()),
            Period::Month { year, month } => {
                let (year, month) = shift_month(year, month, 1);
                Period::Month { year, month }
            }
            Period::Quarter { year, quarter } => {
                if quarter == 4 {
                    Period::Quarter { year: year + 1, quarter: 1 }
                } else {
                    Period::Quarter { year, quarter: quarter + 1 }
                }
            }
            Period::Year(y) => Period::Year(y + 1),
            Period::Rolling12 { year, month } => {
                let (year, month) = shift_month(year, month, 12);
                Period::Rolling12 { year, month }
            }
        }
    }

    /// The month keys (`YYYY-MM`, the store's partitions) the period touches.
    pub fn month_keys(self) -> Vec<String> {
        let mut out = Vec::new();
        let end = self.end_date();
        let mut d = ymd(self.start_date().year(), self.start_date().month(), 1);
        while d < end {
            out.push(d.format("%Y-%m").to_string());
            let (y, m) = shift_month(d.year(), d.month(), 1);
            d = ymd(y, m, 1);
        }
        out
    }

    /// The last month touched by the period.
    pub fn last_month(self) -> Period {
        Period::month_of(self.end_date() - Duration::days(1))
    }

    /// The `n` months ending with this period's last month, oldest first.
    pub fn trailing_months(self, n: usize) -> Vec<Period> {
        let Period::Month { year, month } = self.last_month() else { return Vec::new() };
        (0..n as i32).rev().map(|k| shift_month(year, month, -k)).map(|(year, month)| Period::Month { year, month }).collect()
    }

    /// The key: `2026-10-03`, `2026-W40`, `2026-10`, `2026-Q3`, `2026`, `R12-2026-10`.
    pub fn key(self) -> String {
        match self {
            Period::Day(d) => d.format("%Y-%m-%d").to_string(),
            Period::Week { year, week } => format!("{year:04}-W{week:02}"),
            Period::Month { year, month } => format!("{year:04}-{month:02}"),
            Period::Quarter { year, quarter } => format!("{year:04}-Q{quarter}"),
            Period::Year(y) => format!("{y:04}"),
            Period::Rolling12 { year, month } => format!("R12-{year:04}-{month:02}"),
        }
    }

    /// The Chinese label: 2026年10月3日, 2026年第40周, 2026年10月, 2026年第三季度,
    /// 2026年, 2025年11月至2026年10月.
    pub fn label(self) -> String {
        match self {
            Period::Day(d) => format!("{}年{}月{}日", d.year(), d.month(), d.day()),
            Period::Week { year, week } => format!("{year}年第{week}周"),
            Period::Month { year, month } => format!("{year}年{month}月"),
            Period::Quarter { year, quarter } => format!("{year}年第{}季度", ["一", "二", "三", "四"][(quarter.clamp(1, 4) - 1) as usize]),
            Period::Year(y) => format!("{y}年"),
            Period::Rolling12 { year, month } => {
                let s = self.start_date();
                format!("{}年{}月至{year}年{month}月", s.year(), s.month())
            }
        }
    }

    /// The word for reports: 日报, 周报, 月报, 季报, 年报, 滚动12个月.
    pub fn kind_label(self) -> &'static str {
        match self {
            Period::Day(_) => "日报",
            Period::Week { .. } => "周报",
            Period::Month { .. } => "月报",
            Period::Quarter { .. } => "季报",
            Period::Year(_) => "年报",
            Period::Rolling12 { .. } => "滚动12个月报告",
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

impl FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "period “{s}” is not one of 2026-10-03, 2026-W40, 2026-10, 2026-Q3, 2026 or R12-2026-10 with a year from {} to {}",
                YEARS.start(),
                YEARS.end()
            )
        };
        let period = parse_period(s.trim()).ok_or_else(bad)?;
        let year = match period {
            Period::Day(d) => d.year(),
            Period::Week { year, .. }
            | Period::Month { year, .. }
            | Period::Quarter { year, .. }
            | Period::Year(year)
            | Period::Rolling12 { year, .. } => year,
        };
        if YEARS.contains(&year) { Ok(period) } else { Err(bad()) }
    }
}

/// A period key without the year check; `None` when it is not one.
fn parse_period(t: &str) -> Option<Period> {
    if let Some(rest) = t.strip_prefix("R12-") {
        return match parse_period(rest)? {
            Period::Month { year, month } => Some(Period::Rolling12 { year, month }),
            _ => None,
        };
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some(Period::Day(d));
    }
    if let Some((y, w)) = t.split_once("-W") {
        let (year, week) = (y.parse::<i32>().ok()?, w.parse::<u32>().ok()?);
        return NaiveDate::from_isoywd_opt(year, week, Weekday::Mon).map(|_| Period::Week { year, week });
    }
    if let Some((y, q)) = t.split_once("-Q") {
        let (year, quarter) = (y.parse::<i32>().ok()?, q.parse::<u32>().ok()?);
        return (1..=4).contains(&quarter).then_some(Period::Quarter { year, quarter });
    }
    if let Some((y, m)) = t.split_once('-') {
        return Period::month(y.parse().ok()?, m.parse().ok()?);
    }
    if t.len() == 4 {
        return t.parse::<i32>().ok().map(Period::Year);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Period {
        s.parse().expect("period")
    }

    #[test]
    fn keys_round_trip_and_previous_periods() {
        for k in ["2026-10-03", "2026-W40", "2026-10", "2026-Q3", "2026", "R12-2026-10"] {
            assert_eq!(p(k).key(), k);
        }
        assert_eq!(p("2026-01").previous().key(), "2025-12");
        assert_eq!(p("2026-Q1").previous().key(), "2025-Q4");
        assert_eq!(p("2026-W01").previous().key(), "2025-W52");
        assert_eq!(p("2026-03-01").previous().key(), "2026-02-28");
        assert_eq!(p("R12-2026-10").previous().key(), "R12-2025-10");
        assert!("2026-13".parse::<Period>().is_err());
        assert!("2026-Q5".parse::<Period>().is_err());
    }

    #[test]
    fn out_of_range_years_are_errors_naming_the_period() {
        for k in
            ["179000000-01", "179000000-Q1", "179000000-W01", "R12-179000000-01", "+179000-01-01", "1999-12", "2101", "0000-01", "-5-01"]
        {
            let e = k.parse::<Period>().expect_err(k);
            assert!(e.contains(k) && e.contains("2000"), "{k}: {e}");
        }
        for k in ["2000-01", "2100-12", "2100-12-31", "2100-W52", "R12-2000-01", "2000-Q1"] {
            let q = p(k);
            // Neighbours of the extremes are still computed without overflow.
            assert_eq!(q.key(), k);
            assert!(q.next() > q && q.previous() < q, "{k}");
        }
    }

    #[test]
    fn month_arithmetic_never_overflows() {
        let m = Period::Month { year: i32::MAX, month: 12 };
        let _ = (m.start_date(), m.end_date(), m.previous(), m.next(), m.key());
        let m = Period::Month { year: i32::MIN, month: 1 };
        let _ = (m.start_date(), m.end_date(), m.previous(), m.next(), m.key());
    }

    #[test]
    fn bounds_and_month_keys() {
        let q = p("2026-Q4");
        assert_eq!(q.start_date(), ymd(2026, 10, 1));
        assert_eq!(q.end_date(), ymd(2027, 1, 1));
        assert_eq!(q.month_keys(), ["2026-10", "2026-11", "2026-12"]);
        let r = p("R12-2026-10");
        assert_eq!(r.start_date(), ymd(2025, 11, 1));
        assert_eq!(r.month_keys().len(), 12);
        // ISO week 2026-W01 runs Mon 2025-12-29 to Sun 2026-01-04.
        assert_eq!(p("2026-W01").month_keys(), ["2025-12", "2026-01"]);
        assert_eq!(p("2026-Q3").label(), "2026年第三季度");
        assert_eq!(p("2026-02").trailing_months(3).iter().map(|m| m.key()).collect::<Vec<_>>(), ["2025-12", "2026-01", "2026-02"]);
    }
}
