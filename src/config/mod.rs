//! Configuration and reference data: `manyi.toml`, the org hierarchy, the
//! service categories, the offices, the holiday calendar, the jobs and the
//! survey definitions.
//!
//! Loading never stops at the first problem. A data clerk fixing a deployment
//! wants the whole list at once, each with the file and line, so loading is
//! a `compile` in the manner of vector's: every loader and every check returns
//! or pushes its own list of [`Problem`]s, and the result is usable only when
//! all of them are empty.
//!
//! Layering: this module sits above `model`, `period` and `calendar` only;
//! the stages read it, it reads none of them.

mod check;
mod file;
mod jobs;
mod lines;
pub mod names;
mod reference;
mod robots;
mod rules;
mod survey;

pub use file::{
    ApiConfig, ConfigFile, DefaultRatingRule, FollowUpRules, IntakeConfig, MAX_BATCH, MailConfig, MetricRules, PublishConfig, RankBy,
    ReferenceFiles, ServicePoint, SignatureEncoding, SiteConfig, SmtpConfig, SmtpSecurity, SourceConfig, SourceKind, ValueMaps,
    is_loopback_host,
};
pub use file::{BurstRules, StepDays};
pub use jobs::{JobDef, JobKind, PeriodExpr};
pub use reference::{Category, Office, OfficeRole, OrgTree, OrgUnit, Scope, category_index, find_category, read_calendar};
pub use robots::{RobotConfig, RobotKind};
pub use survey::{NeedDef, QuestionDef, QuestionKind, SurveyDef};

use crate::calendar::WorkCalendar;
use check::{Known, TomlFile};
use chrono::{DateTime, Utc};
use lines::TomlLines;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One configuration problem, located as precisely as the file allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file.display(), line, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found while loading; empty means the deployment is usable.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub(crate) fn push(&mut self, file: &Path, line: Option<usize>, message: impl Into<String>) {
        self.0.push(Problem { file: file.to_path_buf(), line, message: message.into() })
    }
}

/// Configuration could not be loaded; lists every problem.
#[derive(Debug, thiserror::Error)]
#[error("{} configuration problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<Problem>);

/// Everything loaded and checked: what the stages run on.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of `manyi.toml`; relative paths start here.
    pub base_dir: PathBuf,
    /// The file as written.
    pub file: ConfigFile,
    /// Absolute data directory.
    pub data_dir: PathBuf,
    /// Locality time zone.
    pub tz: chrono_tz::Tz,
    /// Org hierarchy.
    pub orgs: OrgTree,
    /// Categories in file order.
    pub categories: Vec<Category>,
    /// Offices in file order.
    pub offices: Vec<Office>,
    /// Working-day calendar.
    pub calendar: WorkCalendar,
    /// Surveys by id.
    pub surveys: BTreeMap<String, SurveyDef>,
    /// Absolute templates directory.
    pub templates_dir: PathBuf,
    /// Jobs by name.
    pub jobs: BTreeMap<String, JobDef>,
    /// The secret key of rater hashes (required at load unless `[privacy] demo = true`).
    pub rater_key: crate::privacy::RaterKey,
}

impl Config {
    /// The folder of the Delta Lake tables, when `[publish] delta` is set.
    pub fn delta_dir(&self) -> Option<PathBuf> {
        self.file.publish.delta.as_ref().map(|p| self.base_dir.join(p))
    }

    /// Resolves a path from the config against the config's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        self.base_dir.join(p)
    }

    /// The category with this code.
    pub fn category(&self, code: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.code == code)
    }

    /// Loads and checks everything; returns all problems at once on failure.
    ///
    /// The frequency check of a job's schedule looks at its fires after the
    /// wall clock's now; [`Config::load_at`] takes that time as an argument.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_at(path, Utc::now())
    }

    /// Loads and checks everything as of `now` (where the check of a job's
    /// schedule starts looking at its fires).
    pub fn load_at(path: &Path, now: DateTime<Utc>) -> Result<Config, ConfigError> {
        let mut problems = Problems::default();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(path, None, format!("cannot read the configuration file: {e}"));
                return Err(ConfigError(problems.0));
            }
        };
        let toml = TomlFile { path, lines: TomlLines::new(&text) };
        // A key a release renamed is named as such, before serde calls it unknown.
        let renamed = check::check_renamed(&toml, &text, check::RENAMED);
        if !renamed.is_empty() {
            return Err(ConfigError(renamed));
        }
        let Some(file) = parse_toml::<ConfigFile>(path, &text, &mut problems) else { return Err(ConfigError(problems.0)) };
        let (config, problems) = compile(&toml, file, now);
        if problems.is_empty() { Ok(config) } else { Err(ConfigError(problems)) }
    }
}

/// Loads the reference data, surveys and jobs `manyi.toml` names and checks
/// everything; the config is usable only if the list of problems is empty.
fn compile(toml: &TomlFile<'_>, file: ConfigFile, now: DateTime<Utc>) -> (Config, Vec<Problem>) {
    let base_dir = toml.path.parent().map(Path::to_path_buf).unwrap_or_default();
    let base_dir = if base_dir.as_os_str().is_empty() { PathBuf::from(".") } else { base_dir };
    let (tz, mut problems) = check::check_time_zone(toml, &file);
    let mut p = Problems::default();
    let r = &file.reference;
    let orgs = reference::load_orgs(&base_dir.join(&r.orgs), &mut p);
    let categories = reference::load_categories(&base_dir.join(&r.categories), &mut p);
    let offices = reference::load_offices(&base_dir.join(&r.offices), &orgs, &categories, &mut p);
    let calendar = reference::load_calendar(&base_dir.join(&r.calendar), &mut p);
    let templates_dir = base_dir.join(&file.templates_dir);
    let surveys = survey::load_surveys(&templates_dir, &mut p);
    p.0.extend(survey::check_needs(&surveys, &categories, &templates_dir));
    let jobs = jobs::load_jobs(&base_dir.join(&file.jobs_dir), &offices, &surveys, now, &mut p);
    problems.extend(p.0);
    let known = Known { categories: &categories, surveys: &surveys, templates_dir: &templates_dir };
    problems.extend(check::check_sources(toml, &file.sources, &known));
    problems.extend(check::check_mail(toml, &file.mail, &base_dir));
    problems.extend(rules::check_rules(toml, &file, &categories));
    problems.extend(rules::check_intake(toml, &file, &orgs, &categories));
    problems.extend(check::check_site(toml, file.site.as_ref()));
    problems.extend(check::check_publish(toml, &file.publish));
    problems.extend(robots::check_robots(toml, &file.robots, &offices, &base_dir.join(&r.offices)));
    // Without the key the config is unusable (a problem is pushed); the empty
    // stand-in key never hashes anything because the config is not returned.
    let rater_key = file.privacy.rater_key().unwrap_or_else(|e| {
        let line = toml.lines.line(&[lines::Step::Key("privacy")]);
        problems.push(Problem { file: toml.path.to_path_buf(), line, message: e.to_string() });
        crate::privacy::RaterKey::from_bytes(&[])
    });
    let data_dir = base_dir.join(&file.data_dir);
    (Config { base_dir, data_dir, tz, orgs, categories, offices, calendar, surveys, templates_dir, jobs, file, rater_key }, problems)
}

/// Parses TOML, turning a syntax or shape error into a located problem.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str, problems: &mut Problems) -> Option<T> {
    match toml::from_str::<T>(text) {
        Ok(v) => Some(v),
        Err(e) => {
            let line = e.span().map(|s| lines::line_at(text, s.start));
            problems.push(path, line, e.message().to_string());
            None
        }
    }
}
