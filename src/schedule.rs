//! Jobs (`jobs/*.toml`) and the periods they report on.
//!
//! A job says what to do and when; a [`Period`] is the logical slice of time a
//! run reports on. Periods are plain values derived from a date given as an
//! argument, never from the clock, so that a rerun of "2026-10" means the same
//! thing whenever it happens.

use crate::config::{Office, Problems, SurveyDef};
pub use crate::period::Period;
use chrono::NaiveDate;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

/// A job definition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobDef {
    /// Unique name; defaults to the file stem.
    #[serde(default)]
    pub name: String,
    /// Cron expression with seconds (`sec min hour day month weekday`).
    pub schedule: String,
    /// IANA time zone the schedule is read in.
    #[serde(default = "default_tz")]
    pub time_zone: String,
    /// What the job does.
    pub kind: JobKind,
    /// Which period a scheduled run reports on.
    #[serde(default)]
    pub period: Option<PeriodExpr>,
    /// The rating scheme whose templates render the report (a survey folder).
    #[serde(default)]
    pub template: Option<String>,
    /// Questionnaire whose findings the report includes.
    #[serde(default)]
    pub questionnaire: Option<String>,
    /// Office ids that receive it; empty means every office.
    #[serde(default)]
    pub offices: Vec<String>,
}

fn default_tz() -> String {
    "Asia/Shanghai".into()
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Fetch new data from every source.
    Collect,
    /// Render and deliver the leadership report and one report per office.
    Report,
}

/// Period expressions a job can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeriodExpr {
    /// The day before the run's date.
    PreviousDay,
    /// The calendar month before the run's date.
    PreviousMonth,
    /// The calendar quarter before the run's date.
    PreviousQuarter,
    /// The month of the run's date, so far (the as-of time caps it).
    MonthToDate,
}

impl PeriodExpr {
    /// The period this expression means on `today` (local date).
    pub fn resolve(self, today: NaiveDate) -> Period {
        match self {
            PeriodExpr::PreviousDay => Period::Day(today).previous(),
            PeriodExpr::PreviousMonth => Period::month_of(today).previous(),
            PeriodExpr::PreviousQuarter => Period::quarter_of(today).previous(),
            PeriodExpr::MonthToDate => Period::month_of(today),
        }
    }
}

/// Loads every `*.toml` of the jobs folder, checking references to offices and surveys.
pub(crate) fn load_jobs(
    dir: &Path,
    offices: &[Office],
    surveys: &BTreeMap<String, SurveyDef>,
    problems: &mut Problems,
) -> BTreeMap<String, JobDef> {
    let mut jobs = BTreeMap::new();
    let mut files: Vec<_> = match std::fs::read_dir(dir) {
        Ok(e) => e.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect(),
        Err(e) => {
            problems.0.push(crate::config::Problem { file: dir.into(), line: None, message: format!("cannot read the jobs folder: {e}") });
            return jobs;
        }
    };
    files.sort();
    for path in files {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                problems.0.push(crate::config::Problem { file: path.clone(), line: None, message: format!("cannot read: {e}") });
                continue;
            }
        };
        let Some(mut job) = crate::config::parse_toml::<JobDef>(&path, &text, problems) else { continue };
        if job.name.is_empty() {
            job.name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        }
        let mut complain = |needle: &str, msg: String| {
            let line = text.lines().position(|l| l.contains(needle)).map(|i| i + 1);
            problems.0.push(crate::config::Problem { file: path.clone(), line, message: msg });
        };
        if let Err(e) = cron::Schedule::from_str(&job.schedule) {
            complain("schedule", format!("schedule “{}” is not a cron expression with seconds (e.g. \"0 0 8 1 * *\"): {e}", job.schedule));
        }
        if job.time_zone.parse::<chrono_tz::Tz>().is_err() {
            complain("time_zone", format!("time_zone “{}” is not an IANA zone", job.time_zone));
        }
        if job.kind == JobKind::Report {
            if job.period.is_none() {
                complain("kind", "a report job needs `period = \"previous-month\"`".into());
            }
            match &job.template {
                Some(t) if surveys.contains_key(t) => {}
                Some(t) => complain(t, format!("template “{t}” has no folder in survey-templates/")),
                None => complain("kind", "a report job needs `template = \"…\"` (a survey-templates folder)".into()),
            }
            if let Some(q) = &job.questionnaire {
                if !surveys.contains_key(q) {
                    complain(q, format!("questionnaire “{q}” has no folder in survey-templates/"));
                }
            }
        }
        for id in &job.offices {
            if !offices.iter().any(|o| &o.id == id) {
                complain(id, format!("office “{id}” is not in offices.toml"));
            }
        }
        if jobs.contains_key(&job.name) {
            complain("name", format!("job name “{}” is used twice", job.name));
        }
        jobs.insert(job.name.clone(), job);
    }
    jobs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_expressions_resolve_against_the_date_given() {
        let jan = NaiveDate::from_ymd_opt(2026, 1, 15).expect("date");
        assert_eq!(PeriodExpr::PreviousMonth.resolve(jan).key(), "2025-12");
        assert_eq!(PeriodExpr::PreviousQuarter.resolve(jan).key(), "2025-Q4");
        assert_eq!(PeriodExpr::PreviousDay.resolve(jan).key(), "2026-01-14");
        assert_eq!(PeriodExpr::MonthToDate.resolve(jan).key(), "2026-01");
    }
}
