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

/// A row of a calendar file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CalendarRowError {
    /// 1-based line in the file, when the CSV reader knows it.
    pub line: Option<usize>,
    /// What is wrong with the row.
    pub message: String,
}

// The one reader of `calendar.csv` (config, the demo and the tests all use
// it), so a file the check accepts is the file every run computes with.
impl WorkCalendar {
    /// Reads `date,kind,name` rows (a header line first; kind is `holiday`
    /// or `workday`). Bad rows are skipped and returned with their line, so a
    /// caller can list every one of them at once.
    pub fn from_csv(bytes: &[u8]) -> (WorkCalendar, Vec<CalendarRowError>) {
        let (mut holidays, mut workdays, mut errors) = (Vec::new(), Vec::new(), Vec::new());
        let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
        for rec in rdr.records() {
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map(|p| p.line() as usize);
                    errors.push(CalendarRowError { line, message: format!("unreadable row: {e}") });
                    continue;
                }
            };
            let line = rec.position().map(|p| p.line() as usize);
            let Ok(date) = NaiveDate::parse_from_str(rec.get(0).unwrap_or("").trim(), "%Y-%m-%d") else {
                errors.push(CalendarRowError { line, message: format!("date “{}” is not YYYY-MM-DD", rec.get(0).unwrap_or("")) });
                continue;
            };
            match rec.get(1).map(str::trim) {
                Some("holiday") => holidays.push(date),
                Some("workday") => workdays.push(date),
                other => errors
                    .push(CalendarRowError { line, message: format!("kind “{}” must be holiday or workday", other.unwrap_or("")) }),
            }
        }
        (WorkCalendar::new(holidays, workdays), errors)
    }
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
    /// Past the last representable date the answer is that date.
    pub fn add_working_days(&self, start: NaiveDate, n: u32) -> NaiveDate {
        // A deadline is a few weeks: walking is cheapest there. Beyond, the
        // first day whose count reaches `n` is found by bisection over the
        // O(calendar) count, so a huge `n` costs no more than a small one.
        if n <= SHORT_WALK_DAYS {
            let mut day = start;
            let mut left = n;
            while left > 0 {
                let Some(next) = day.succ_opt() else { return day };
                day = next;
                if self.is_working_day(day) {
                    left -= 1;
                }
            }
            return day;
        }
        // Every 7 days hold 5 weekdays and a holiday removes at most one, so
        // `n` working days lie within this many days.
        let span = (i64::from(n) + self.holidays.len() as i64) / 5 * 7 + 14;
        let (mut lo, mut hi) = (day_number(start), (day_number(start) + span).min(day_number(NaiveDate::MAX)));
        if self.working_days_between(start, from_day_number(hi)) < n {
            return NaiveDate::MAX;
        }
        // Invariant: count(lo) < n <= count(hi).
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.working_days_between(start, from_day_number(mid)) >= n {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        from_day_number(hi)
    }

    /// Working days strictly after `from` up to and including `to`; zero when `to <= from`.
    pub fn working_days_between(&self, from: NaiveDate, to: NaiveDate) -> u32 {
        if to <= from {
            return 0;
        }
        let (a, b) = (day_number(from), day_number(to));
        if b - a <= i64::from(SHORT_WALK_DAYS) {
            return from.iter_days().skip(1).take_while(|d| *d <= to).filter(|d| self.is_working_day(*d)).count() as u32;
        }
        // Weekdays by whole weeks, then the calendar's exceptions in range: a
        // 整改完成时间 of 9999-12-31 must not mean three million steps.
        let weekdays = weekdays_before(b + 1) - weekdays_before(a + 1);
        let in_range = |d: &&NaiveDate| **d > from && **d <= to;
        // A day listed as both stays a working day, as in `is_working_day`.
        let lost = self.holidays.iter().filter(in_range).filter(|d| !is_weekend(**d) && !self.workdays.contains(*d)).count() as i64;
        let gained = self.workdays.iter().filter(in_range).filter(|d| is_weekend(**d)).count() as i64;
        u32::try_from(weekdays - lost + gained).unwrap_or(u32::MAX)
    }
}

/// Up to this many days (or working days to add) the days are visited one
/// by one: cheaper than scanning the calendar's exception lists.
const SHORT_WALK_DAYS: u32 = 40;

fn is_weekend(day: NaiveDate) -> bool {
    matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
}

/// Days since the common era; day 1 is Monday 0001-01-01.
fn day_number(day: NaiveDate) -> i64 {
    i64::from(day.num_days_from_ce())
}

fn from_day_number(n: i64) -> NaiveDate {
    i32::try_from(n).ok().and_then(NaiveDate::from_num_days_from_ce_opt).unwrap_or(NaiveDate::MAX)
}

/// Monday-to-Friday days numbered 1 ..= x − 1 (negative below day 1, so
/// that differences count any range).
fn weekdays_before(x: i64) -> i64 {
    let m = x - 1;
    m.div_euclid(7) * 5 + m.rem_euclid(7).min(5)
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
        let (cal, errors) = WorkCalendar::from_csv(include_bytes!("../reference/calendar.csv"));
        assert_eq!(errors, []);
        assert_eq!(cal.years().iter().copied().collect::<Vec<_>>(), [2024, 2025, 2026]);
        // A 差评 of Fri 2025-09-26 with 15 working days: 09-28 (调休 Sunday),
        // 09-29, 09-30, [10-01..10-08 off], 10-09, 10-10, 10-11 (调休 Saturday),
        // 10-13..10-17, 10-20..10-23 → the 15th is Thu 2025-10-23.
        assert_eq!(cal.add_working_days(d(2025, 9, 26), 15), d(2025, 10, 23));
        // 春节 2026: 02-15..02-23 off, Saturday 02-28 worked.
        assert!(!cal.is_working_day(d(2026, 2, 16)));
        assert!(cal.is_working_day(d(2026, 2, 28)));
    }

    fn shipped() -> WorkCalendar {
        let (mut hol, mut work) = (Vec::new(), Vec::new());
        for line in include_str!("../reference/calendar.csv").lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let day = NaiveDate::parse_from_str(f[0], "%Y-%m-%d").expect("date in calendar.csv");
            if f[1] == "holiday" { hol.push(day) } else { work.push(day) }
        }
        WorkCalendar::new(hol, work)
    }

    /// The day-by-day definitions the fast arithmetic must agree with.
    fn slow_between(cal: &WorkCalendar, from: NaiveDate, to: NaiveDate) -> u32 {
        from.iter_days().skip(1).take_while(|day| *day <= to).filter(|day| cal.is_working_day(*day)).count() as u32
    }

    fn slow_add(cal: &WorkCalendar, start: NaiveDate, n: u32) -> NaiveDate {
        let mut day = start;
        let mut left = n;
        while left > 0 {
            day = day.succ_opt().expect("test dates are far from the end of time");
            if cal.is_working_day(day) {
                left -= 1;
            }
        }
        day
    }

    #[test]
    fn fast_working_day_arithmetic_agrees_with_counting_day_by_day() {
        use rand::{Rng, SeedableRng};
        let cal = shipped();
        // A day that is both (none in the shipped file) must stay a working day.
        let both = WorkCalendar::new([d(2025, 10, 11), d(2025, 10, 8)], [d(2025, 10, 11)]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
        let base = d(2023, 10, 1);
        for _ in 0..3000 {
            let from = base + chrono::Duration::days(rng.gen_range(0..1300));
            let to = from + chrono::Duration::days(rng.gen_range(-20..500));
            for c in [&cal, &both] {
                assert_eq!(c.working_days_between(from, to), slow_between(c, from, to), "{from} → {to}");
            }
            let n = rng.gen_range(0..400);
            for c in [&cal, &both] {
                assert_eq!(c.add_working_days(from, n), slow_add(c, from, n), "{from} + {n}");
            }
        }
    }

    #[test]
    fn far_dates_cost_years_not_days() {
        // 200 差评 rectified on 9999-12-31 took six minutes when every day
        // between was visited; this is the same work.
        let cal = shipped();
        let t = std::time::Instant::now();
        let far = d(9999, 12, 31);
        let mut total = 0u64;
        for k in 0..200 {
            total += u64::from(cal.working_days_between(d(2025, 1, 1) + chrono::Duration::days(k), far));
        }
        let end = cal.add_working_days(d(2025, 1, 1), 2_000_000);
        assert!(t.elapsed() < std::time::Duration::from_secs(2), "took {:?}", t.elapsed());
        assert!(total > 0 && end.year() > 9000);
        assert_eq!(cal.working_days_between(d(2023, 12, 31), far), slow_between(&cal, d(2023, 12, 31), far));
        // The end of time is reached, not looped on.
        assert_eq!(cal.add_working_days(NaiveDate::MAX - chrono::Duration::days(3), 100), NaiveDate::MAX);
    }

    #[test]
    fn bad_rows_are_listed_with_their_line_and_the_rest_is_kept() {
        let text = "date,kind,name\n2025-10-01,holiday,国庆节\n2025-13-01,holiday,x\n2025-09-28,rest,x\n2025-10-11,workday,调休\n";
        let (cal, errors) = WorkCalendar::from_csv(text.as_bytes());
        let lines: Vec<Option<usize>> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(3), Some(4)]);
        assert!(errors[1].message.contains("kind “rest”"), "{errors:?}");
        assert!(!cal.is_working_day(d(2025, 10, 1)));
        assert!(cal.is_working_day(d(2025, 10, 11)));
    }

    #[test]
    fn plain_weekends_rest_and_weekdays_work() {
        let cal = WorkCalendar::default();
        assert!(!cal.is_working_day(d(2026, 11, 28)));
        assert!(cal.is_working_day(d(2026, 11, 26)));
    }
}
