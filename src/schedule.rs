//! When jobs fire: each job's [`JobClock`] (cron in its zone, the
//! first-working-day rule) and the [`Scheduler`] that hands out fires.
//!
//! The jobs themselves (`jobs/*.toml`) are read and checked by
//! `config::jobs`. Nothing here reads the clock: every "now" is an argument,
//! so a slot, and the [`Period`] resolved from it, means the same thing
//! whenever it is computed.

use crate::calendar::WorkCalendar;
use crate::config::JobDef;
pub use crate::period::Period;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

/// How a run was started, as the ledger records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// `serve` at the scheduled time.
    Schedule,
    /// `serve` for a slot it missed (down, or the previous run overran).
    CatchUp,
    /// `manyi run` by a person.
    #[default]
    Manual,
}

impl Trigger {
    /// The ledger's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch-up",
            Trigger::Manual => "manual",
        }
    }
}

/// A slot the scheduler notices later than this after its time is a
/// catch-up, not a scheduled fire (wake-up latency is milliseconds; a minute
/// late means the service was down or the job was still running).
pub const LATE_AFTER: TimeDelta = TimeDelta::seconds(60);

/// How far back a scan starts when fires may be moved to a working day: a
/// slot before `after` can be moved past it. The longest run of rest days on
/// the official calendar (春节, 国庆) is 9 days.
const WORKING_DAY_LOOKBACK_DAYS: i64 = 20;

/// Upper bound on slots examined per query, against schedules that fire every
/// second over a long downtime.
const MAX_SCAN: usize = 1_000_000;

/// A job whose schedule cannot be evaluated (`manyi check` reports the same
/// problems with file and line; this is for callers that skipped it).
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error("job “{job}”: schedule “{schedule}” is not a cron expression with seconds: {reason}")]
    Cron {
        /// Job name.
        job: String,
        /// The expression.
        schedule: String,
        /// The cron crate's message.
        reason: String,
    },
    /// The zone is not an IANA zone.
    #[error("job “{job}”: time_zone “{zone}” is not an IANA zone")]
    Zone {
        /// Job name.
        job: String,
        /// The zone as written.
        zone: String,
    },
}

/// When one job fires: its cron expression read in its own zone, then moved
/// to the first working day when the job asks for it.
#[derive(Debug, Clone)]
pub struct JobClock {
    /// Job name.
    pub name: String,
    schedule: cron::Schedule,
    tz: Tz,
    first_working_day: bool,
    catchup: bool,
}

impl JobClock {
    /// The clock of a job definition.
    pub fn new(job: &JobDef) -> Result<JobClock, ScheduleError> {
        let schedule = cron::Schedule::from_str(&job.schedule).map_err(|e| ScheduleError::Cron {
            job: job.name.clone(),
            schedule: job.schedule.clone(),
            reason: e.to_string(),
        })?;
        let tz = job.time_zone.parse::<Tz>().map_err(|_| ScheduleError::Zone { job: job.name.clone(), zone: job.time_zone.clone() })?;
        Ok(JobClock { name: job.name.clone(), schedule, tz, first_working_day: job.first_working_day, catchup: job.catchup })
    }

    /// The job's zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The first `n` fire times strictly after `after`, in order, after the
    /// working-day rule (fires moved onto the same working day and time are one fire).
    pub fn next_fires(&self, cal: &WorkCalendar, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out: Vec<DateTime<Utc>> = Vec::new();
        if n == 0 {
            return out;
        }
        let start = if self.first_working_day { after - TimeDelta::days(WORKING_DAY_LOOKBACK_DAYS) } else { after };
        for (k, t) in self.schedule.after(&start.with_timezone(&self.tz)).enumerate() {
            let original = t.with_timezone(&Utc);
            // A move only ever goes later, so once an unmoved slot is past the
            // n-th fire found, nothing earlier can follow.
            if k >= MAX_SCAN || out.get(n - 1).is_some_and(|nth| original > *nth) {
                break;
            }
            let fire = if self.first_working_day { self.move_to_working_day(cal, &t) } else { original };
            if fire > after
                && let Err(pos) = out.binary_search(&fire)
            {
                out.insert(pos, fire);
            }
        }
        out.truncate(n);
        out
    }

    fn move_to_working_day(&self, cal: &WorkCalendar, t: &DateTime<Tz>) -> DateTime<Utc> {
        let mut day = t.date_naive();
        let mut moved = 0;
        while !cal.is_working_day(day) && moved < 60 {
            match day.succ_opt() {
                Some(d) => day = d,
                None => break,
            }
            moved += 1;
        }
        if moved == 0 {
            return t.with_timezone(&Utc);
        }
        self.tz
            .from_local_datetime(&day.and_time(t.time()))
            .earliest()
            .map(|l| l.with_timezone(&Utc))
            // The local time does not exist that day (a DST gap): keep the distance.
            .unwrap_or_else(|| t.with_timezone(&Utc) + TimeDelta::days(moved))
    }

    /// Fires in `(after, upto]`: how many, and the latest.
    fn fires_between(&self, cal: &WorkCalendar, after: DateTime<Utc>, upto: DateTime<Utc>) -> (usize, Option<DateTime<Utc>>) {
        let (mut count, mut latest, mut cursor) = (0, None, after);
        while count < MAX_SCAN {
            let batch = self.next_fires(cal, cursor, 256);
            let Some(&last) = batch.last() else { break };
            for t in batch.iter().copied().take_while(|t| *t <= upto) {
                count += 1;
                latest = Some(t);
            }
            if last > upto {
                break;
            }
            cursor = last;
        }
        (count, latest)
    }
}

/// One decision of the scheduler: run (or, without catch-up, skip) a job for a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fire {
    /// Job name.
    pub job: String,
    /// The slot this run stands for (its period is resolved from the slot's local date).
    pub slot: DateTime<Utc>,
    /// Schedule, or catch-up when the slot is late or earlier slots were missed.
    pub trigger: Trigger,
    /// Slots this fire stands for (1 when none was missed).
    pub slots: usize,
    /// The job has `catchup = false` and the slot is late: record it as skipped, do not run.
    pub skip: bool,
}

/// The scheduling core: pure, the clock is always an argument.
///
/// It knows each job's last slot (from the ledger on start, then from what it
/// handed out) and which jobs are running. A running job is never handed out
/// again; slots that pass meanwhile, like slots that pass while the service is
/// down, are coalesced into one catch-up run when the job is free.
#[derive(Debug, Clone)]
pub struct Scheduler {
    clocks: Vec<JobClock>,
    calendar: WorkCalendar,
    last: BTreeMap<String, DateTime<Utc>>,
    running: BTreeSet<String>,
}

impl Scheduler {
    /// A scheduler for `clocks`. `last_slots` holds each job's last slot run
    /// by a service; a job without one owes nothing before `start`.
    pub fn new(clocks: Vec<JobClock>, calendar: WorkCalendar, last_slots: &BTreeMap<String, DateTime<Utc>>, start: DateTime<Utc>) -> Self {
        let last = clocks.iter().map(|c| (c.name.clone(), last_slots.get(&c.name).copied().unwrap_or(start))).collect();
        Scheduler { clocks, calendar, last, running: BTreeSet::new() }
    }

    fn clock(&self, job: &str) -> Option<&JobClock> {
        self.clocks.iter().find(|c| c.name == job)
    }

    /// What is due at `now`: at most one fire per job that is not running.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<Fire> {
        let mut out = Vec::new();
        for c in &self.clocks {
            if self.running.contains(&c.name) {
                continue;
            }
            let Some(&last) = self.last.get(&c.name) else { continue };
            let (slots, Some(slot)) = c.fires_between(&self.calendar, last, now) else { continue };
            let late = slots > 1 || now - slot > LATE_AFTER;
            out.push(Fire {
                job: c.name.clone(),
                slot,
                trigger: if late { Trigger::CatchUp } else { Trigger::Schedule },
                slots,
                skip: late && !c.catchup,
            });
        }
        out
    }

    /// Takes note that a fire was handed out (and, unless skipped, is running).
    pub fn started(&mut self, fire: &Fire) {
        self.last.insert(fire.job.clone(), fire.slot);
        if !fire.skip {
            self.running.insert(fire.job.clone());
        }
    }

    /// Takes note that a job's run ended.
    pub fn finished(&mut self, job: &str) {
        self.running.remove(job);
    }

    /// Whether a job is running.
    pub fn is_running(&self, job: &str) -> bool {
        self.running.contains(job)
    }

    /// The earliest next slot of any job that is not running (it may already
    /// be past: then [`Scheduler::due`] has work now).
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.clocks
            .iter()
            .filter(|c| !self.running.contains(&c.name))
            .filter_map(|c| self.last.get(&c.name).and_then(|&l| c.next_fires(&self.calendar, l, 1).first().copied()))
            .min()
    }

    /// The next `n` fire times of a job after `after`.
    pub fn next_fires(&self, job: &str, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        self.clock(job).map(|c| c.next_fires(&self.calendar, after, n)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{JobKind, PeriodExpr};
    use chrono::NaiveDate;

    fn job(name: &str, schedule: &str, tz: &str) -> JobDef {
        JobDef {
            name: name.into(),
            schedule: schedule.into(),
            time_zone: tz.into(),
            kind: JobKind::Collect,
            period: None,
            template: None,
            questionnaire: None,
            offices: Vec::new(),
            catchup: true,
            first_working_day: false,
            send_empty: false,
        }
    }

    fn clock(j: &JobDef) -> JobClock {
        JobClock::new(j).expect("valid job")
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("rfc3339").with_timezone(&Utc)
    }

    /// The official calendar shipped in reference/calendar.csv.
    fn official_calendar() -> WorkCalendar {
        WorkCalendar::from_csv(include_bytes!("../reference/calendar.csv")).0
    }

    #[test]
    fn monthly_fires_at_eight_beijing_time_across_month_ends() {
        let c = clock(&job("m", "0 0 8 1 * *", "Asia/Shanghai"));
        let fires = c.next_fires(&WorkCalendar::default(), utc("2026-01-30T12:00:00Z"), 3);
        assert_eq!(fires, vec![utc("2026-02-01T00:00:00Z"), utc("2026-03-01T00:00:00Z"), utc("2026-04-01T00:00:00Z")]);
        // Local midnight of the 1st is still the previous month in UTC.
        let midnight = clock(&job("d", "0 0 0 * * *", "Asia/Shanghai"));
        let fires = midnight.next_fires(&WorkCalendar::default(), utc("2026-01-30T17:00:00Z"), 2);
        assert_eq!(fires, vec![utc("2026-01-31T16:00:00Z"), utc("2026-02-01T16:00:00Z")]);
        assert_eq!(fires[0].with_timezone(&chrono_tz::Asia::Shanghai).format("%Y-%m-%d %H:%M").to_string(), "2026-02-01 00:00");
    }

    #[test]
    fn a_zone_with_daylight_saving_is_honoured() {
        // Berlin goes from UTC+1 to UTC+2 on 2026-03-29: 08:00 local moves an hour earlier in UTC.
        let c = clock(&job("b", "0 0 8 * * *", "Europe/Berlin"));
        let fires = c.next_fires(&WorkCalendar::default(), utc("2026-03-27T12:00:00Z"), 3);
        assert_eq!(fires, vec![utc("2026-03-28T07:00:00Z"), utc("2026-03-29T06:00:00Z"), utc("2026-03-30T06:00:00Z")]);
    }

    #[test]
    fn first_working_day_moves_the_national_day_fire_to_october_ninth() {
        let cal = official_calendar();
        let mut j = job("monthly", "0 0 8 1 * *", "Asia/Shanghai");
        j.first_working_day = true;
        let c = clock(&j);
        let fires = c.next_fires(&cal, utc("2025-09-15T00:00:00Z"), 3);
        // 10-01..10-08 are 国庆/中秋 holidays; 11-01 is a Saturday; 12-01 a Monday.
        assert_eq!(fires, vec![utc("2025-10-09T00:00:00Z"), utc("2025-11-03T00:00:00Z"), utc("2025-12-01T00:00:00Z")]);
        // Asked from inside the holiday, the moved fire is still ahead.
        assert_eq!(c.next_fires(&cal, utc("2025-10-05T00:00:00Z"), 1), vec![utc("2025-10-09T00:00:00Z")]);
        // Without the rule it fires on the holiday.
        j.first_working_day = false;
        assert_eq!(clock(&j).next_fires(&cal, utc("2025-09-15T00:00:00Z"), 1), vec![utc("2025-10-01T00:00:00Z")]);
        // A daily job's holiday fires collapse into one on the first working day.
        let mut daily = job("daily", "0 0 9 * * *", "Asia/Shanghai");
        daily.first_working_day = true;
        let fires = clock(&daily).next_fires(&cal, utc("2025-09-30T02:00:00Z"), 2);
        assert_eq!(fires, vec![utc("2025-10-09T01:00:00Z"), utc("2025-10-10T01:00:00Z")]);
        // The scheduler fires it on 10-09 and names September as the period.
        let mut s = Scheduler::new(vec![c], cal, &BTreeMap::new(), utc("2025-09-30T00:00:00Z"));
        assert!(s.due(utc("2025-10-01T00:00:01Z")).is_empty(), "nothing on the holiday");
        let due = s.due(utc("2025-10-09T00:00:01Z"));
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].slot, due[0].trigger), (utc("2025-10-09T00:00:00Z"), Trigger::Schedule));
        let local = due[0].slot.with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
        assert_eq!(PeriodExpr::PreviousMonth.resolve(local).key(), "2025-09");
        s.started(&due[0]);
    }

    #[test]
    fn a_job_that_overruns_is_not_started_twice() {
        let every_minute = clock(&job("c", "0 * * * * *", "Asia/Shanghai"));
        let mut s = Scheduler::new(vec![every_minute], WorkCalendar::default(), &BTreeMap::new(), utc("2026-11-26T00:00:30Z"));
        let first = s.due(utc("2026-11-26T00:01:00Z"));
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].trigger, Trigger::Schedule);
        s.started(&first[0]);
        // Still running three minutes later: three slots passed, nothing is handed out.
        for t in ["2026-11-26T00:02:00Z", "2026-11-26T00:03:00Z", "2026-11-26T00:04:00Z"] {
            assert!(s.due(utc(t)).is_empty(), "started again at {t}");
        }
        assert!(s.is_running("c"));
        // When it ends, the missed slots are one catch-up run, then the schedule resumes.
        s.finished("c");
        let after = s.due(utc("2026-11-26T00:04:10Z"));
        assert_eq!(after.len(), 1);
        assert_eq!((after[0].slot, after[0].trigger, after[0].slots), (utc("2026-11-26T00:04:00Z"), Trigger::CatchUp, 3));
        s.started(&after[0]);
        s.finished("c");
        assert!(s.due(utc("2026-11-26T00:04:20Z")).is_empty());
        assert_eq!(s.next_wake(), Some(utc("2026-11-26T00:05:00Z")));
    }

    #[test]
    fn three_nights_down_give_one_catch_up_not_three() {
        let nightly = clock(&job("nightly-collect", "0 0 2 * * *", "Asia/Shanghai"));
        // Last run by the service: 2026-11-20 02:00 Beijing time.
        let last = BTreeMap::from([("nightly-collect".to_string(), utc("2026-11-19T18:00:00Z"))]);
        // Back up on 2026-11-23 at 09:00 Beijing time: the 21st, 22nd and 23rd were missed.
        let now = utc("2026-11-23T01:00:00Z");
        let mut s = Scheduler::new(vec![nightly.clone()], WorkCalendar::default(), &last, now);
        let due = s.due(now);
        assert_eq!(due.len(), 1, "one run, not one per night: {due:?}");
        assert_eq!(due[0].trigger, Trigger::CatchUp);
        assert_eq!(due[0].slots, 3);
        assert_eq!(due[0].slot, utc("2026-11-22T18:00:00Z"), "it stands for the latest missed night");
        assert!(!due[0].skip);
        s.started(&due[0]);
        s.finished("nightly-collect");
        assert!(s.due(now + TimeDelta::minutes(5)).is_empty());
        assert_eq!(s.next_wake(), Some(utc("2026-11-23T18:00:00Z")));

        // With catch-up off the same downtime is one skipped slot, not silence.
        let mut j = job("nightly-collect", "0 0 2 * * *", "Asia/Shanghai");
        j.catchup = false;
        let s = Scheduler::new(vec![clock(&j)], WorkCalendar::default(), &last, now);
        let due = s.due(now);
        assert_eq!(due.len(), 1);
        assert!(due[0].skip);

        // A first start owes nothing from before it.
        let s = Scheduler::new(vec![nightly], WorkCalendar::default(), &BTreeMap::new(), now);
        assert!(s.due(now).is_empty());
    }

    #[test]
    fn period_expressions_resolve_against_the_date_given() {
        let jan = NaiveDate::from_ymd_opt(2026, 1, 15).expect("date");
        assert_eq!(PeriodExpr::PreviousMonth.resolve(jan).key(), "2025-12");
        assert_eq!(PeriodExpr::PreviousQuarter.resolve(jan).key(), "2025-Q4");
        assert_eq!(PeriodExpr::PreviousDay.resolve(jan).key(), "2026-01-14");
        assert_eq!(PeriodExpr::MonthToDate.resolve(jan).key(), "2026-01");
    }
}
