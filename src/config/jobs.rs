//! Job definitions: `jobs/*.toml`, what each job does, when, and which
//! period it reports on. Read and checked with the rest of the configuration;
//! `schedule` turns them into clocks.

use super::lines::{Step, TomlLines};
use super::{Office, Problems, SurveyDef, parse_toml};
use crate::period::Period;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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
    /// Whether `serve` runs a slot missed while it was down (or while the
    /// previous run overran) once, as a catch-up. On by default for every
    /// kind: a report must never be silently skipped, and one late collect
    /// only picks up files that are waiting anyway.
    #[serde(default = "yes")]
    pub catchup: bool,
    /// Move a fire that falls on a rest day (weekend or 节假日 on the holiday
    /// calendar) to the first working day after it, at the same local time.
    #[serde(default)]
    pub first_working_day: bool,
    /// Alert jobs: also mail an office when nothing new arrived (default: no email).
    #[serde(default)]
    pub send_empty: bool,
}

fn yes() -> bool {
    true
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
    /// Tell each responsible office of the 差评 that arrived since the last
    /// alert run, with their deadlines.
    Alert,
}

/// Period expressions a job can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
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

/// Loads every `*.toml` of the jobs folder, checking references to offices
/// and surveys. `now` is where the check of a schedule's frequency looks at
/// its next fires.
pub(super) fn load_jobs(
    dir: &Path,
    offices: &[Office],
    surveys: &BTreeMap<String, SurveyDef>,
    now: DateTime<Utc>,
    problems: &mut Problems,
) -> BTreeMap<String, JobDef> {
    let mut jobs = BTreeMap::new();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(e) => e.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect(),
        Err(e) => {
            problems.push(dir, None, format!("cannot read the jobs folder: {e}"));
            return jobs;
        }
    };
    files.sort();
    for path in files {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(&path, None, format!("cannot read: {e}"));
                continue;
            }
        };
        let Some(mut job) = parse_toml::<JobDef>(&path, &text, problems) else { continue };
        if job.name.is_empty() {
            job.name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        }
        let lines = TomlLines::new(&text);
        let mut complain = |at: &[Step<'_>], msg: String| problems.push(&path, lines.line(at), msg);
        if let Err(message) = super::names::check_plain_name("job name", &job.name) {
            complain(&[Step::Key("name")], message);
            continue;
        }
        check_job(&job, offices, surveys, now, &mut complain);
        if jobs.contains_key(&job.name) {
            complain(&[Step::Key("name")], format!("job name “{}” is used twice", job.name));
        }
        jobs.insert(job.name.clone(), job);
    }
    jobs
}

/// Checks one job; `complain` locates a problem at a path of its file.
fn check_job(
    job: &JobDef,
    offices: &[Office],
    surveys: &BTreeMap<String, SurveyDef>,
    now: DateTime<Utc>,
    complain: &mut impl FnMut(&[Step<'_>], String),
) {
    use Step::Key;
    match cron::Schedule::from_str(&job.schedule) {
        Err(e) => complain(
            &[Key("schedule")],
            format!("schedule “{}” is not a cron expression with seconds (e.g. \"0 0 8 1 * *\"): {e}", job.schedule),
        ),
        // Moving fires to a working day only makes sense for daily or rarer
        // jobs; an hourly one would pile every holiday hour onto one fire.
        Ok(s) if job.first_working_day => {
            let fires: Vec<DateTime<Utc>> = s.after(&now).take(3).collect();
            if fires.windows(2).any(|w| w[1] - w[0] < TimeDelta::hours(20)) {
                complain(
                    &[Key("first_working_day")],
                    "first_working_day is for daily or rarer schedules; this one fires more often".into(),
                );
            }
        }
        Ok(_) => {}
    }
    if job.time_zone.parse::<chrono_tz::Tz>().is_err() {
        complain(&[Key("time_zone")], format!("time_zone “{}” is not an IANA zone", job.time_zone));
    }
    if job.kind == JobKind::Report && job.period.is_none() {
        complain(&[Key("kind")], "a report job needs `period = \"previous-month\"`".into());
    }
    let mut check_folder = |what: &'static str, name: &Option<String>, missing: &str| match name {
        Some(t) if surveys.contains_key(t) => {}
        Some(t) => complain(&[Key(what)], format!("{what} “{t}” has no folder in survey-templates/")),
        None if missing.is_empty() => {}
        None => complain(&[Key("kind")], missing.into()),
    };
    match job.kind {
        JobKind::Alert => check_folder(
            "template",
            &job.template,
            "an alert job needs `template = \"…\"` (a survey-templates folder with alert.html.tera)",
        ),
        JobKind::Report => {
            check_folder("template", &job.template, "a report job needs `template = \"…\"` (a survey-templates folder)");
            check_folder("questionnaire", &job.questionnaire, "");
        }
        JobKind::Collect => {}
    }
    for (k, id) in job.offices.iter().enumerate() {
        if !offices.iter().any(|o| &o.id == id) {
            complain(&[Key("offices"), Step::Index(k)], format!("office “{id}” is not in offices.toml"));
        }
    }
}
