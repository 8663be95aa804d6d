//! Configuration and reference data: `manyi.toml`, the org hierarchy, the
//! service categories, the offices, the holiday calendar, the jobs and the
//! survey definitions.
//!
//! Loading never stops at the first problem. A data clerk fixing a deployment
//! wants the whole list at once, each with the file and line, so every loader
//! pushes into a shared [`Problems`] list and the caller decides whether the
//! result is usable (as vector does for its config).

use crate::calendar::WorkCalendar;
use crate::model::OrgLevel;
use chrono::NaiveDate;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    fn push(&mut self, file: &Path, line: Option<usize>, message: impl Into<String>) {
        self.0.push(Problem { file: file.to_path_buf(), line, message: message.into() })
    }

    /// Records a problem about `value` found in `text`, locating it by the
    /// first line that mentions the value (TOML semantic errors carry no span).
    fn push_near(&mut self, file: &Path, text: &str, value: &str, message: impl Into<String>) {
        let line = text.lines().position(|l| l.contains(value)).map(|i| i + 1);
        self.push(file, line, message)
    }
}

/// Configuration could not be loaded; lists every problem.
#[derive(Debug, thiserror::Error)]
#[error("{} configuration problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError(pub Vec<Problem>);

/// `manyi.toml` as written by the user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The data directory (landing, quarantine, curated, state.db, outbox, reports).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// IANA time zone of the locality; timestamps are read as wall time there.
    #[serde(default = "default_tz")]
    pub time_zone: String,
    /// Folder of survey definitions and report templates.
    #[serde(default = "default_templates")]
    pub templates_dir: PathBuf,
    /// Folder of `*.toml` job definitions.
    #[serde(default = "default_jobs")]
    pub jobs_dir: PathBuf,
    /// Name of the body that publishes the reports (e.g. 临江市民政局).
    pub organisation: String,
    /// Reference data files.
    pub reference: ReferenceFiles,
    /// 差评 follow-up rules.
    #[serde(default)]
    pub follow_up: FollowUpRules,
    /// Metric thresholds.
    #[serde(default)]
    pub metrics: MetricRules,
    /// Sources to collect from.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// Mail settings: the sender always, the SMTP server when configured.
    pub mail: MailConfig,
    /// Personal data: the variable holding the rater key, demo or not.
    #[serde(default)]
    pub privacy: crate::privacy::PrivacyConfig,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_tz() -> String {
    "Asia/Shanghai".into()
}
fn default_templates() -> PathBuf {
    PathBuf::from("survey-templates")
}
fn default_jobs() -> PathBuf {
    PathBuf::from("jobs")
}

/// Paths of the reference data, relative to `manyi.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceFiles {
    /// Org hierarchy CSV: code,name,parent,level.
    pub orgs: PathBuf,
    /// Service categories CSV: code,name,parent.
    pub categories: PathBuf,
    /// Offices TOML.
    pub offices: PathBuf,
    /// Holiday calendar CSV: date,kind,name.
    pub calendar: PathBuf,
}

/// Rules for 差评 follow-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowUpRules {
    /// Working days allowed to rectify a valid 差评 (15 in Sichuan, 5 in some cities).
    #[serde(default = "default_deadline")]
    pub deadline_working_days: u32,
}

fn default_deadline() -> u32 {
    15
}

impl Default for FollowUpRules {
    fn default() -> Self {
        FollowUpRules { deadline_working_days: default_deadline() }
    }
}

/// Thresholds that govern how figures are shown.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricRules {
    /// Cells with fewer ratings than this are flagged and kept out of rankings.
    #[serde(default = "default_min_n")]
    pub min_n: u32,
    /// Weight, in ratings, of the parent's rate in a ranking score: with
    /// 20, a community with 2 ratings scores near its street's rate.
    #[serde(default = "default_prior_weight")]
    pub prior_weight: f64,
}

fn default_prior_weight() -> f64 {
    20.0
}

fn default_min_n() -> u32 {
    30
}

impl Default for MetricRules {
    fn default() -> Self {
        MetricRules { min_n: default_min_n(), prior_weight: default_prior_weight() }
    }
}

/// Which kind of records a source yields and how it is read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Unique name; also the landing and quarantine folder name.
    pub name: String,
    /// How the source is read.
    pub kind: SourceKind,
    /// Inbox directory of a file-drop source (relative to `manyi.toml`).
    #[serde(default)]
    pub inbox: PathBuf,
    /// For `wjx_export` and `wjx_api`: the survey (a folder of `survey-templates/`).
    #[serde(default)]
    pub survey: Option<String>,
    /// For `rating_file`: canonical field → column header in the office's
    /// export. For `haochaping_api`: canonical field → the platform's JSON
    /// field name (defaults: `projectNo`, `assessNumber`, `areaCode`, …).
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// For the API kinds: where and how to fetch (`[source.api]`).
    #[serde(default)]
    pub api: Option<ApiConfig>,
}

impl SourceKind {
    /// Whether the source is fetched over HTTP rather than read from an inbox.
    pub fn is_api(self) -> bool {
        matches!(self, SourceKind::HaochapingApi | SourceKind::WjxApi)
    }
}

/// The kinds of source this version reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Office file drop of 好差评 ratings (CSV in UTF-8 or GBK, or XLSX).
    RatingFile,
    /// 问卷星 export (xlsx or CSV) of a questionnaire.
    WjxExport,
    /// The provincial 好差评 platform's HTTP API (paged JSON, HMAC-signed).
    HaochapingApi,
    /// 问卷星 OpenAPI, action 1001002 (answers of one survey).
    WjxApi,
}

/// How the signature bytes are written into the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    /// Lower-case hex (the default).
    #[default]
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// Settings of an HTTP source (`[source.api]`).
///
/// 好差评 signature scheme: the request carries `header_app_key: app_key`,
/// `header_timestamp: <Unix milliseconds>` and `header_signature:
/// HMAC-SHA256(secret, timestamp + body)` in `signature` encoding, where
/// `body` is the exact JSON bytes sent and the secret is read from the
/// environment variable named by `secret_env` (never from a file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Base URL, e.g. `https://hcp.example.gov.cn`.
    pub base_url: String,
    /// Path of the list interface, appended to `base_url`.
    #[serde(default)]
    pub path: String,
    /// The app key (好差评) or appid (问卷星) the platform issued.
    pub app_key: String,
    /// NAME of the environment variable holding the secret / appkey.
    pub secret_env: String,
    /// Records per page (问卷星 allows at most 50).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Pages fetched per run at most; the rest waits for the next run.
    #[serde(default = "default_page_limit")]
    pub page_limit: u32,
    /// Pages per committed batch (each batch moves the watermark).
    #[serde(default = "default_commit_every")]
    pub commit_every: u32,
    /// Hours before the watermark that every run fetches again, so that late
    /// or updated records are seen (the record keys make repeats free).
    #[serde(default = "default_overlap_hours")]
    pub overlap_hours: u32,
    /// First run only: fetch from this time (`YYYY-MM-DD HH:MM:SS`, local);
    /// default 30 days back.
    #[serde(default)]
    pub start: Option<String>,
    /// Seconds to wait for a connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Seconds a whole request (with its body) may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Retries of one page on 429, 5xx, broken connections and cut bodies.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff in milliseconds; doubled per retry, with jitter.
    #[serde(default = "default_api_backoff_ms")]
    pub backoff_ms: u64,
    /// Longest single wait in milliseconds (also caps Retry-After).
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Encoding of the signature header.
    #[serde(default)]
    pub signature: SignatureEncoding,
    /// Header carrying the app key.
    #[serde(default = "default_header_app_key")]
    pub header_app_key: String,
    /// Header carrying the timestamp.
    #[serde(default = "default_header_timestamp")]
    pub header_timestamp: String,
    /// Header carrying the signature.
    #[serde(default = "default_header_signature")]
    pub header_signature: String,
    /// Dotted path of the record array in a page (好差评).
    #[serde(default = "default_records_path")]
    pub records_path: String,
    /// Dotted path of the total count in a page (好差评).
    #[serde(default = "default_total_path")]
    pub total_path: String,
    /// Platform value of the category field (default field `taskCode`) →
    /// category code of categories.csv. A value that is already a category
    /// code or name needs no entry.
    #[serde(default)]
    pub category_map: BTreeMap<String, String>,
    /// Category of a record whose category value is not mapped.
    #[serde(default)]
    pub default_category: Option<String>,
    /// 问卷星: the survey id (`vid`).
    #[serde(default)]
    pub vid: Option<String>,
}

fn default_page_size() -> u32 {
    100
}
fn default_page_limit() -> u32 {
    1000
}
fn default_commit_every() -> u32 {
    50
}
fn default_overlap_hours() -> u32 {
    48
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_timeout() -> u64 {
    60
}
fn default_max_retries() -> u32 {
    5
}
fn default_api_backoff_ms() -> u64 {
    500
}
fn default_max_backoff_ms() -> u64 {
    30_000
}
fn default_header_app_key() -> String {
    "X-App-Key".into()
}
fn default_header_timestamp() -> String {
    "X-Timestamp".into()
}
fn default_header_signature() -> String {
    "X-Signature".into()
}
fn default_records_path() -> String {
    "data.records".into()
}
fn default_total_path() -> String {
    "data.total".into()
}

/// Mail settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// From header, e.g. `临江市民政局满意度监测 <manyi@mzj.linjiang.gov.cn>`.
    pub from: String,
    /// SMTP server; absent means write `.eml` files to `data/outbox`.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// Who is told by email when a scheduled run fails.
    #[serde(default)]
    pub admins: Vec<String>,
}

/// An SMTP server. The password comes only from the environment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name.
    pub host: String,
    /// Port (25, 465, 587); default from `security`: 587, 465, 25.
    #[serde(default)]
    pub port: Option<u16>,
    /// How the connection is protected.
    #[serde(default)]
    pub security: SmtpSecurity,
    /// Account name, if the server wants AUTH.
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the environment variable that holds the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Extra root certificate (PEM) to trust besides the system's, for a
    /// server with an internal CA; relative to the configuration file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Timeout of connecting and of each SMTP command, in seconds.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Recipients per message: 1 (the default) sends one message per
    /// recipient; up to 50 share a message.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Attempts of a message on temporary failures (4xx, connection lost),
    /// the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the second attempt, in milliseconds; doubled each time.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
}

/// Connection security of an SMTP server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required, port 587).
    #[default]
    Starttls,
    /// Implicit TLS from the first byte (port 465).
    Tls,
    /// No encryption: only to a server on this machine (127.0.0.1, ::1, localhost).
    Plain,
}

impl SmtpConfig {
    /// The port, configured or the usual one for the security mode.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
            SmtpSecurity::Plain => 25,
        })
    }
}

/// The most recipients one message may carry.
pub const MAX_BATCH: usize = 50;

fn default_timeout_secs() -> u64 {
    30
}
fn default_batch_size() -> usize {
    1
}
fn default_attempts() -> u32 {
    4
}
fn default_backoff_ms() -> u64 {
    2000
}

/// Whether a host name is this machine, where plain SMTP is acceptable.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A unit of the org hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgUnit {
    /// 统计用区划代码 (6, 9, 12 or 15 digits; the city has its own short code).
    pub code: String,
    /// Chinese name.
    pub name: String,
    /// Parent code, empty for the city.
    pub parent: String,
    /// Level in the hierarchy.
    pub level: OrgLevel,
}

/// The org hierarchy with look-ups by code and by name.
#[derive(Debug, Clone, Default)]
pub struct OrgTree {
    units: BTreeMap<String, OrgUnit>,
    by_name: HashMap<String, Vec<String>>,
    /// Each unit's code and level, then its parent's, up to the root. Scope
    /// checks run once per 差评 per office (millions in a province's monthly
    /// run), so the walk up the tree is done once here.
    lineage: HashMap<String, Vec<(String, OrgLevel)>>,
}

impl OrgTree {
    /// Builds the tree from its units (checked by the loader).
    pub fn new(units: Vec<OrgUnit>) -> Self {
        let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
        for u in &units {
            by_name.entry(u.name.clone()).or_default().push(u.code.clone());
        }
        let units: BTreeMap<String, OrgUnit> = units.into_iter().map(|u| (u.code.clone(), u)).collect();
        let lineage = units
            .keys()
            .map(|code| {
                let mut chain = Vec::new();
                let mut cur = units.get(code);
                // Bounded by the number of units, so a cycle the loader
                // reports cannot hang the build of the tree.
                while let Some(u) = cur {
                    if chain.len() > units.len() {
                        break;
                    }
                    chain.push((u.code.clone(), u.level));
                    cur = units.get(&u.parent);
                }
                (code.clone(), chain)
            })
            .collect();
        OrgTree { units, by_name, lineage }
    }

    /// The unit with this code.
    pub fn get(&self, code: &str) -> Option<&OrgUnit> {
        self.units.get(code)
    }

    /// Every unit, ordered by code.
    pub fn units(&self) -> impl Iterator<Item = &OrgUnit> {
        self.units.values()
    }

    /// Units of one level, ordered by code.
    pub fn at_level(&self, level: OrgLevel) -> impl Iterator<Item = &OrgUnit> {
        self.units.values().filter(move |u| u.level == level)
    }

    /// Resolves a community or grid given by code or by its unique name.
    pub fn resolve_rated_unit(&self, text: &str) -> Result<&OrgUnit, String> {
        let t = text.trim();
        if let Some(u) = self.units.get(t) {
            return match u.level {
                OrgLevel::Community | OrgLevel::Grid => Ok(u),
                _ => Err(format!("区划 {t} 是{:?}级，评价应落到社区或网格", u.level)),
            };
        }
        match self.by_name.get(t).map(Vec::as_slice) {
            Some([code]) => self.resolve_rated_unit(code),
            Some(codes) if codes.len() > 1 => Err(format!("社区名称“{t}”不唯一（{}），请改用12位区划代码", codes.join("、"))),
            _ if t.is_empty() => Err("社区/区划为空".into()),
            _ => Err(format!("未知的社区或区划代码“{t}”（不在 orgs.csv 中）")),
        }
    }

    /// The ancestor of `code` at `level` (itself if it is at that level).
    pub fn ancestor(&self, code: &str, level: OrgLevel) -> Option<&OrgUnit> {
        let (found, _) = self.lineage.get(code)?.iter().find(|(_, l)| *l == level)?;
        self.units.get(found)
    }

    /// The unit's code and level, then its parent's, up to the root (empty
    /// for an unknown code).
    pub fn lineage(&self, code: &str) -> &[(String, OrgLevel)] {
        self.lineage.get(code).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether `code` is `scope` or lies below it.
    pub fn is_within(&self, code: &str, scope: &str) -> bool {
        self.lineage.get(code).is_some_and(|chain| chain.iter().any(|(c, _)| c == scope))
    }
}

/// A service category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    /// Code used in the store.
    pub code: String,
    /// Chinese name.
    pub name: String,
    /// Parent code, empty at the top.
    pub parent: String,
}

/// Whether an office gets the leadership report or its own slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OfficeRole {
    /// 市/区领导: the whole city.
    Leadership,
    /// A 街道办, 居委会 or business section: its scope only.
    Office,
}

/// An office and who reads its report.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Office {
    /// Stable id used in delivery records and file names.
    pub id: String,
    /// Chinese name.
    pub name: String,
    /// Leadership or office.
    pub role: OfficeRole,
    /// Email addresses.
    pub recipients: Vec<String>,
    /// What the office is responsible for.
    #[serde(default)]
    pub scope: Scope,
}

/// An office's scope: org units (with everything below them) and/or categories.
/// Both empty means everything; both set means the intersection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Org codes.
    #[serde(default)]
    pub orgs: Vec<String>,
    /// Category codes.
    #[serde(default)]
    pub categories: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OfficesFile {
    #[serde(rename = "office")]
    offices: Vec<Office>,
}

/// A survey definition (`survey-templates/<id>/survey.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurveyDef {
    /// Folder name; filled in by the loader.
    #[serde(skip)]
    pub id: String,
    /// Title printed in reports.
    pub title: String,
    /// The questions, in the order of the questionnaire.
    #[serde(rename = "question", default)]
    pub questions: Vec<QuestionDef>,
    /// Keyword lists that sort free text into the 需求清单.
    #[serde(rename = "need", default)]
    pub needs: Vec<NeedDef>,
    /// Names of the platform's 差评 reason codes (`evalDetail`), e.g. "501" = "服务态度差".
    #[serde(default)]
    pub reasons: BTreeMap<String, String>,
    /// Names of the channel codes (GB/T 39046 numbering unless the locality differs).
    #[serde(default)]
    pub channels: BTreeMap<String, String>,
}

/// One category of the 需求清单 and the words that put a text in it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeedDef {
    /// Category code (from categories.csv).
    pub category: String,
    /// Keywords; a segmented word containing one of them matches.
    pub keywords: Vec<String>,
}

/// One question of a questionnaire.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuestionDef {
    /// Stable id used in the store.
    pub id: String,
    /// Its number in the 问卷星 export ("N、题干").
    pub number: u32,
    /// 题干.
    pub text: String,
    /// What the answer is.
    pub kind: QuestionKind,
    /// Options of a choice question, in order.
    #[serde(default)]
    pub options: Vec<String>,
    /// Options that count as satisfied (empty: the question has no 满意率).
    #[serde(default)]
    pub satisfied: Vec<String>,
    /// Row titles of a matrix question ("第N题(行标题)" in the export).
    #[serde(default)]
    pub rows: Vec<String>,
}

/// Question kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuestionKind {
    /// The respondent's community (name or code).
    Community,
    /// Single choice.
    Single,
    /// Multiple choice (options joined by ┋ in the text export).
    Multi,
    /// A matrix: each row is rated on the same options.
    Matrix,
    /// Free text.
    Text,
}

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
    pub jobs: BTreeMap<String, crate::schedule::JobDef>,
    /// The secret key of rater hashes (required at load unless `[privacy] demo = true`).
    pub rater_key: crate::privacy::RaterKey,
}

impl Config {
    /// Resolves a path from the config against the config's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        self.base_dir.join(p)
    }

    /// The category with this code.
    pub fn category(&self, code: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.code == code)
    }

    /// Loads and checks everything; returns all problems at once on failure.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut problems = Problems::default();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(path, None, format!("cannot read the configuration file: {e}"));
                return Err(ConfigError(problems.0));
            }
        };
        let file: ConfigFile = match parse_toml(path, &text, &mut problems) {
            Some(f) => f,
            None => return Err(ConfigError(problems.0)),
        };
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base_dir = if base_dir.as_os_str().is_empty() { PathBuf::from(".") } else { base_dir };
        let tz: chrono_tz::Tz = match file.time_zone.parse() {
            Ok(tz) => tz,
            Err(_) => {
                problems.push_near(
                    path,
                    &text,
                    "time_zone",
                    format!("time_zone “{}” is not an IANA zone such as Asia/Shanghai", file.time_zone),
                );
                chrono_tz::Asia::Shanghai
            }
        };
        let r = &file.reference;
        let orgs = load_orgs(&base_dir.join(&r.orgs), &mut problems);
        let categories = load_categories(&base_dir.join(&r.categories), &mut problems);
        let offices_path = base_dir.join(&r.offices);
        let offices = load_offices(&offices_path, &orgs, &categories, &mut problems);
        let calendar = load_calendar(&base_dir.join(&r.calendar), &mut problems);
        let templates_dir = base_dir.join(&file.templates_dir);
        let surveys = load_surveys(&templates_dir, &mut problems);
        for def in surveys.values() {
            for need in &def.needs {
                if !categories.iter().any(|c| c.code == need.category) {
                    let p = templates_dir.join(&def.id).join("survey.toml");
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    problems.push_near(&p, &text, &need.category, format!("need category “{}” is not in categories.csv", need.category));
                }
            }
        }
        let jobs = crate::schedule::load_jobs(&base_dir.join(&file.jobs_dir), &offices, &surveys, &mut problems);

        let mut names = BTreeSet::new();
        for s in &file.sources {
            if !names.insert(s.name.as_str()) {
                problems.push_near(path, &text, &s.name, format!("source name “{}” is used twice", s.name));
            }
            if s.name.is_empty() || !s.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                problems.push_near(
                    path,
                    &text,
                    &s.name,
                    format!("source name “{}” must be ASCII letters, digits, - or _ (it names folders)", s.name),
                );
            }
            check_source_transport(path, &text, s, &categories, &mut problems);
            match s.kind {
                SourceKind::WjxExport | SourceKind::WjxApi => match &s.survey {
                    Some(id) if surveys.contains_key(id) => {}
                    Some(id) => problems.push_near(
                        path,
                        &text,
                        id,
                        format!("source “{}”: survey “{id}” has no folder in {}", s.name, templates_dir.display()),
                    ),
                    None => problems.push_near(
                        path,
                        &text,
                        &s.name,
                        format!("source “{}”: a {:?} source needs `survey = \"…\"`", s.name, s.kind),
                    ),
                },
                SourceKind::RatingFile | SourceKind::HaochapingApi => {
                    for key in s.columns.keys() {
                        if !crate::collect::RATING_FIELDS.contains(&key.as_str()) {
                            problems.push_near(
                                path,
                                &text,
                                key,
                                format!(
                                    "source “{}”: unknown column key “{key}”; expected one of {}",
                                    s.name,
                                    crate::collect::RATING_FIELDS.join(", ")
                                ),
                            );
                        }
                    }
                }
            }
        }
        if let Some(smtp) = &file.mail.smtp {
            if smtp.host.is_empty() {
                problems.push_near(path, &text, "host", "mail.smtp.host is empty");
            }
            if smtp.security == SmtpSecurity::Plain && !is_loopback_host(&smtp.host) {
                problems.push_near(
                    path,
                    &text,
                    "plain",
                    format!(
                        "mail.smtp.security = \"plain\" sends passwords and reports unencrypted; it is allowed only to a server on this machine \
                         (127.0.0.1, ::1, localhost), not to “{}”: use \"starttls\" (port 587) or \"tls\" (port 465)",
                        smtp.host
                    ),
                );
            }
            if smtp.batch_size == 0 || smtp.batch_size > MAX_BATCH {
                problems.push_near(
                    path,
                    &text,
                    "batch_size",
                    format!("mail.smtp.batch_size = {} must be between 1 (one message per recipient) and {MAX_BATCH}", smtp.batch_size),
                );
            }
            if smtp.attempts == 0 {
                problems.push_near(path, &text, "attempts", "mail.smtp.attempts must be at least 1");
            }
            if smtp.timeout_secs == 0 {
                problems.push_near(path, &text, "timeout_secs", "mail.smtp.timeout_secs must be at least 1");
            }
            if let Some(var) = &smtp.password_env {
                if smtp.username.is_none() {
                    problems.push_near(path, &text, var, "mail.smtp.password_env is set but mail.smtp.username is not");
                }
            }
            if let Some(ca) = &smtp.ca_file {
                let p = base_dir.join(ca);
                if !p.is_file() {
                    problems.push_near(path, &text, "ca_file", format!("mail.smtp.ca_file “{}” does not exist", p.display()));
                }
            }
        }
        if file.mail.from.parse::<lettre::message::Mailbox>().is_err() {
            problems.push_near(
                path,
                &text,
                "from",
                format!("mail.from “{}” is not an address such as 民政局 <manyi@example.gov.cn>", file.mail.from),
            );
        }

        let rater_key = file.privacy.rater_key().map_err(|e| problems.push_near(path, &text, "[privacy]", e.to_string()));
        if !problems.0.is_empty() {
            return Err(ConfigError(problems.0));
        }
        let Ok(rater_key) = rater_key else { return Err(ConfigError(problems.0)) };
        let data_dir = base_dir.join(&file.data_dir);
        Ok(Config { base_dir, data_dir, tz, orgs, categories, offices, calendar, surveys, templates_dir, jobs, file, rater_key })
    }
}

/// Parses TOML, turning a syntax or shape error into a located problem.
/// Checks the inbox of a file source or the `[source.api]` table of an API source.
fn check_source_transport(path: &Path, text: &str, s: &SourceConfig, categories: &[Category], problems: &mut Problems) {
    let name = &s.name;
    if !s.kind.is_api() {
        if s.inbox.as_os_str().is_empty() {
            problems.push_near(path, text, name, format!("source “{name}”: a file source needs `inbox = \"…\"`"));
        }
        if s.api.is_some() {
            problems.push_near(path, text, name, format!("source “{name}”: `[source.api]` is only for haochaping_api and wjx_api sources"));
        }
        return;
    }
    let Some(api) = &s.api else {
        problems.push_near(
            path,
            text,
            name,
            format!("source “{name}”: an API source needs a `[source.api]` table with base_url, app_key, secret_env"),
        );
        return;
    };
    if !(api.base_url.starts_with("http://") || api.base_url.starts_with("https://")) {
        problems.push_near(
            path,
            text,
            &api.base_url,
            format!("source “{name}”: api.base_url “{}” must start with http:// or https://", api.base_url),
        );
    }
    if api.app_key.is_empty() {
        problems.push_near(path, text, "app_key", format!("source “{name}”: api.app_key is empty"));
    }
    if api.secret_env.is_empty() || !api.secret_env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        problems.push_near(
            path,
            text,
            "secret_env",
            format!(
                "source “{name}”: api.secret_env “{}” must be the NAME of an environment variable (A-Z, 0-9, _), not the secret",
                api.secret_env
            ),
        );
    }
    let max_page = if s.kind == SourceKind::WjxApi { 50 } else { 10_000 };
    if api.page_size == 0 || api.page_size > max_page {
        problems.push_near(path, text, "page_size", format!("source “{name}”: api.page_size {} must be 1–{max_page}", api.page_size));
    }
    if api.page_limit == 0 || api.commit_every == 0 {
        problems.push_near(path, text, "page_limit", format!("source “{name}”: api.page_limit and api.commit_every must be at least 1"));
    }
    if let Some(start) = &api.start {
        if crate::collect::parse_timestamp(start).is_none() {
            problems.push_near(
                path,
                text,
                start,
                format!("source “{name}”: api.start “{start}” is not a time such as 2026-10-01 00:00:00"),
            );
        }
    }
    let known = |c: &str| categories.iter().any(|k| k.code == c);
    for (value, code) in &api.category_map {
        if !known(code) {
            problems.push_near(
                path,
                text,
                code,
                format!("source “{name}”: api.category_map “{value}” → “{code}”: not a code of categories.csv"),
            );
        }
    }
    if let Some(code) = &api.default_category {
        if !known(code) {
            problems.push_near(path, text, code, format!("source “{name}”: api.default_category “{code}” is not a code of categories.csv"));
        }
    }
    if s.kind == SourceKind::WjxApi && api.vid.as_deref().unwrap_or("").is_empty() {
        problems.push_near(
            path,
            text,
            name,
            format!("source “{name}”: a wjx_api source needs `vid` (the survey id on 问卷星) in [source.api]"),
        );
    }
}

pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(path: &Path, text: &str, problems: &mut Problems) -> Option<T> {
    match toml::from_str::<T>(text) {
        Ok(v) => Some(v),
        Err(e) => {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            problems.push(path, line, e.message().to_string());
            None
        }
    }
}

fn read_csv(path: &Path, problems: &mut Problems) -> Option<csv::Reader<std::fs::File>> {
    match csv::ReaderBuilder::new().flexible(true).from_path(path) {
        Ok(r) => Some(r),
        Err(e) => {
            problems.push(path, None, format!("cannot read: {e}"));
            None
        }
    }
}

fn load_orgs(path: &Path, problems: &mut Problems) -> OrgTree {
    let mut units = Vec::new();
    let Some(mut rdr) = read_csv(path, problems) else { return OrgTree::default() };
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                problems.push(path, e.position().map(|p| p.line() as usize), format!("unreadable row: {e}"));
                continue;
            }
        };
        let line = rec.position().map(|p| p.line() as usize);
        if rec.len() != 4 {
            problems.push(path, line, format!("expected 4 columns code,name,parent,level, found {}", rec.len()));
            continue;
        }
        let Some(level) = OrgLevel::parse(&rec[3]) else {
            problems.push(path, line, format!("level “{}” is not one of city, district, street, community, grid", &rec[3]));
            continue;
        };
        let code = rec[0].trim().to_string();
        if let Some(len) = level.code_len() {
            if code.len() != len || !code.chars().all(|c| c.is_ascii_digit()) {
                problems.push(path, line, format!("code “{code}” of a {level:?} must be {len} digits"));
            }
        }
        if units.iter().any(|u: &(OrgUnit, Option<usize>)| u.0.code == code) {
            problems.push(path, line, format!("code “{code}” appears twice"));
        }
        units.push((OrgUnit { code, name: rec[1].trim().to_string(), parent: rec[2].trim().to_string(), level }, line));
    }
    let codes: HashMap<&str, OrgLevel> = units.iter().map(|(u, _)| (u.code.as_str(), u.level)).collect();
    for (u, line) in &units {
        if u.level == OrgLevel::City {
            continue;
        }
        match codes.get(u.parent.as_str()) {
            None => problems.push(path, *line, format!("parent “{}” of {} is not in the file", u.parent, u.code)),
            Some(pl) if *pl >= u.level => problems.push(path, *line, format!("parent “{}” of {} is not a higher level", u.parent, u.code)),
            Some(pl) if *pl != OrgLevel::City && !u.code.starts_with(&u.parent) => {
                problems.push(path, *line, format!("code {} does not start with its parent's code {}", u.code, u.parent))
            }
            _ => {}
        }
    }
    if units.is_empty() {
        problems.push(path, None, "no org units");
    }
    OrgTree::new(units.into_iter().map(|(u, _)| u).collect())
}

fn load_categories(path: &Path, problems: &mut Problems) -> Vec<Category> {
    let mut cats: Vec<Category> = Vec::new();
    let Some(mut rdr) = read_csv(path, problems) else { return cats };
    let mut lines = Vec::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                problems.push(path, e.position().map(|p| p.line() as usize), format!("unreadable row: {e}"));
                continue;
            }
        };
        let line = rec.position().map(|p| p.line() as usize);
        if rec.len() != 3 {
            problems.push(path, line, format!("expected 3 columns code,name,parent, found {}", rec.len()));
            continue;
        }
        let c = Category { code: rec[0].trim().into(), name: rec[1].trim().into(), parent: rec[2].trim().into() };
        if c.code.is_empty() || c.name.is_empty() {
            problems.push(path, line, "code and name must not be empty");
        }
        if cats.iter().any(|o| o.code == c.code || o.name == c.name) {
            problems.push(path, line, format!("category “{}”/“{}” appears twice", c.code, c.name));
        }
        cats.push(c);
        lines.push(line);
    }
    for (c, line) in cats.iter().zip(lines) {
        if !c.parent.is_empty() && !cats.iter().any(|p| p.code == c.parent) {
            problems.push(path, line, format!("parent “{}” of category {} is not in the file", c.parent, c.code));
        }
    }
    cats
}

fn load_offices(path: &Path, orgs: &OrgTree, cats: &[Category], problems: &mut Problems) -> Vec<Office> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(path, None, format!("cannot read: {e}"));
            return Vec::new();
        }
    };
    let Some(file) = parse_toml::<OfficesFile>(path, &text, problems) else { return Vec::new() };
    let mut ids = BTreeSet::new();
    for o in &file.offices {
        if !ids.insert(o.id.as_str()) {
            problems.push_near(path, &text, &o.id, format!("office id “{}” is used twice", o.id));
        }
        if o.id.is_empty() || !o.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            problems.push_near(path, &text, &o.id, format!("office id “{}” must be ASCII letters, digits, - or _ (it names files)", o.id));
        }
        if o.recipients.is_empty() {
            problems.push_near(path, &text, &o.id, format!("office “{}” has no recipients", o.id));
        }
        for r in &o.recipients {
            if r.parse::<lettre::Address>().is_err() {
                problems.push_near(path, &text, r, format!("office “{}”: recipient “{r}” is not an email address", o.id));
            }
        }
        for code in &o.scope.orgs {
            if orgs.get(code).is_none() {
                problems.push_near(path, &text, code, format!("office “{}”: scope org “{code}” is not in orgs.csv", o.id));
            }
        }
        for code in &o.scope.categories {
            if !cats.iter().any(|c| &c.code == code) {
                problems.push_near(path, &text, code, format!("office “{}”: scope category “{code}” is not in categories.csv", o.id));
            }
        }
    }
    file.offices
}

/// Reads a 节假日/调休 calendar file on its own, with the checks of
/// [`Config::load`]: for a tool that needs the working days before a whole
/// configuration exists (the benchmark generates its org tree with them).
pub fn read_calendar(path: &Path) -> Result<WorkCalendar, ConfigError> {
    let mut problems = Problems::default();
    let calendar = load_calendar(path, &mut problems);
    if problems.0.is_empty() { Ok(calendar) } else { Err(ConfigError(problems.0)) }
}

fn load_calendar(path: &Path, problems: &mut Problems) -> WorkCalendar {
    let (mut holidays, mut workdays) = (Vec::new(), Vec::new());
    let Some(mut rdr) = read_csv(path, problems) else { return WorkCalendar::default() };
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                problems.push(path, e.position().map(|p| p.line() as usize), format!("unreadable row: {e}"));
                continue;
            }
        };
        let line = rec.position().map(|p| p.line() as usize);
        let Ok(date) = NaiveDate::parse_from_str(rec.get(0).unwrap_or("").trim(), "%Y-%m-%d") else {
            problems.push(path, line, format!("date “{}” is not YYYY-MM-DD", rec.get(0).unwrap_or("")));
            continue;
        };
        match rec.get(1).map(str::trim) {
            Some("holiday") => holidays.push(date),
            Some("workday") => workdays.push(date),
            other => problems.push(path, line, format!("kind “{}” must be holiday or workday", other.unwrap_or(""))),
        }
    }
    WorkCalendar::new(holidays, workdays)
}

fn load_surveys(dir: &Path, problems: &mut Problems) -> BTreeMap<String, SurveyDef> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(dir, None, format!("cannot read the templates folder: {e}"));
            return out;
        }
    };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for d in dirs {
        let id = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if id.starts_with('_') {
            continue;
        }
        let path = d.join("survey.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(&path, None, format!("every survey folder needs a survey.toml: {e}"));
                continue;
            }
        };
        let Some(mut def) = parse_toml::<SurveyDef>(&path, &text, problems) else { continue };
        def.id = id.clone();
        let mut seen = BTreeSet::new();
        for q in &def.questions {
            if !seen.insert(q.number) {
                problems.push_near(&path, &text, &q.id, format!("question number {} is used twice", q.number));
            }
            if matches!(q.kind, QuestionKind::Single | QuestionKind::Multi | QuestionKind::Matrix) && q.options.is_empty() {
                problems.push_near(&path, &text, &q.id, format!("question “{}” is a choice question but lists no options", q.id));
            }
            if q.kind == QuestionKind::Matrix && q.rows.is_empty() {
                problems.push_near(&path, &text, &q.id, format!("question “{}” is a matrix but lists no rows", q.id));
            }
            for s in &q.satisfied {
                if !q.options.contains(s) {
                    problems.push_near(&path, &text, s, format!("question “{}”: satisfied option “{s}” is not one of its options", q.id));
                }
            }
        }
        if !def.questions.is_empty() && def.questions.iter().filter(|q| q.kind == QuestionKind::Community).count() != 1 {
            problems.push(&path, None, "a questionnaire needs exactly one question of kind = \"community\"");
        }
        out.insert(id, def);
    }
    out
}
