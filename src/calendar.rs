//! The official working-day calendar: 节假日 and 调休 workdays per year.
//!
//! A deadline of "15 working days" must skip 国庆 and 春节 and count the
//! Saturdays that are worked in exchange (调休), so weekends alone are not
//! enough. The data comes from a CSV that is extended each November when the
//! State Council publishes next year's notice; the code never changes for it.

use chrono::{Datelike, NaiveDate, Weekday};
use std::collections::{BTreeSet, HashSet};

/// Holidays and make-up workdays, loaded from `date,kind,name` rows.
#[derive(Debug, Clone, Default)]
pub struct WorkCalendar {
    holidays: HashSet<NaiveDate>,
    workdays: HashSet<NaiveDate>,
    years: BTreeSet<i32>,
}

impl WorkCalendar {
    /// Builds a calendar from explicit holiday and make-up workday lists.
    pub fn new(holidays: impl IntoIterator<Item = NaiveDate>, workdays: impl IntoIterator<Item = NaiveDate>) -> Self {
        let holidays: HashSet<NaiveDate> = holidays.into_iter().collect();
        let workdays: HashSet<NaiveDate> = workdays.into_iter().collect();
        let years = holidays.iter().chain(workdays.iter()).map(|d| d.year()).collect();
        WorkCalendar { holidays, workdays, years }
    }

    /// The years the data covers; outside them only weekends are rest days,
    /// which the caller should warn about.
    pub fn years(&self) -> &BTreeSet<i32> {
        &self.years
    }

    /// Whether government offices work on `day`.
    pub fn is_working_day(&self, day: NaiveDate) -> bool {
        if self.workdays.contains(&day) {
            return true;
        }
        if self.holidays.contains(&day) {
            return false;
        }
        !matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
    }

    /// The day that is `n` working days after `start` (the start day itself
    /// is not counted, as in "15个工作日内" counted from the day after receipt).
    pub fn add_working_days(&self, start: NaiveDate, n: u32) -> NaiveDate {
        let mut day = start;
        let mut left = n;
        while left > 0 {
            day = day.succ_opt().unwrap_or(day);
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        day
    }

    /// Working days strictly after `from` up to and including `to`; zero when `to <= from`.
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate) -> u32 {
        let mut n = 0;
        let mut day = from;
        while day < to {
            day = day.succ_opt().unwrap_or(to);
            if self.is_working_day(day) {
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).expect("valid test date")
    }

    /// 2025 国庆+中秋: 10-01..10-08 off, Sunday 09-28 and Saturday 10-11 worked.
    fn national_day_2025() -> WorkCalendar {
        WorkCalendar::new((1..=8).map(|day| d(2025, 10, day)), [d(2025, 9, 28), d(2025, 10, 11)])
    }

    #[test]
    fn deadline_skips_national_day_and_counts_the_makeup_saturday() {
        let cal = national_day_2025();
        // Counted by hand: from Fri 09-26, working days are Sun 09-28 (调休) =1,
        // Mon 09-29 =2, Tue 09-30 =3, then 10-01..10-08 off, Thu 10-09 =4,
        // Fri 10-10 =5, Sat 10-11 (调休) =6, Mon 10-13 =7.
        assert_eq!(cal.add_working_days(d(2025, 9, 26), 3), d(2025, 9, 30));
        assert_eq!(cal.add_working_days(d(2025, 9, 26), 6), d(2025, 10, 11));
        assert_eq!(cal.add_working_days(d(2025, 9, 26), 7), d(2025, 10, 13));
        assert_eq!(cal.working_days_between(d(2025, 9, 26), d(2025, 10, 13)), 7);
    }

    #[test]
    fn the_shipped_calendar_file_gives_the_same_national_day_deadline() {
        let (mut hol, mut work) = (Vec::new(), Vec::new());
        for line in include_str!("../reference/calendar.csv").lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let day = NaiveDate::parse_from_str(f[0], "%Y-%m-%d").expect("date in calendar.csv");
            if f[1] == "holiday" { hol.push(day) } else { work.push(day) }
        }
        let cal = WorkCalendar::new(hol, work);
        assert_eq!(cal.years().iter().copied().collect::<Vec<_>>(), [2024, 2025, 2026]);
        // A 差评 of Fri 2025-09-26 with 15 working days: 09-28 (调休 Sunday),
        // 09-29, 09-30, [10-01..10-08 off], 10-09, 10-10, 10-11 (调休 Saturday),
        // 10-13..10-17, 10-20..10-23 → the 15th is Thu 2025-10-23.
        assert_eq!(cal.add_working_days(d(2025, 9, 26), 15), d(2025, 10, 23));
        // 春节 2026: 02-15..02-23 off, Saturday 02-28 worked.
        assert!(!cal.is_working_day(d(2026, 2, 16)));
        assert!(cal.is_working_day(d(2026, 2, 28)));
    }

    #[test]
    fn plain_weekends_rest_and_weekdays_work() {
        let cal = WorkCalendar::default();
        assert!(!cal.is_working_day(d(2026, 11, 28)));
        assert!(cal.is_working_day(d(2026, 11, 26)));
    }
}
