//! The shape of `manyi.toml`: what serde reads, with its defaults. Checks
//! that need more than the shape (names, references, SMTP rules) are in
//! `check`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    /// Thresholds of the suspicious-burst detector: `[bursts]`.
    #[serde(default)]
    pub bursts: BurstRules,
    /// Sources to collect from.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// Mail settings: the sender always, the SMTP server when configured.
    pub mail: MailConfig,
    /// Personal data: the variable holding the rater key, demo or not.
    #[serde(default)]
    pub privacy: crate::privacy::PrivacyConfig,
    /// Group robots (企业微信 / 钉钉), a second delivery channel: `[[robot]]`.
    #[serde(default, rename = "robot")]
    pub robots: Vec<super::RobotConfig>,
    /// The QR-code intake page (`[intake]`), if residents rate through manyi itself.
    #[serde(default)]
    pub intake: Option<IntakeConfig>,
    /// The intranet site for offices, inspectors and admins (`[site]`), if served.
    #[serde(default)]
    pub site: Option<SiteConfig>,
    /// Publication of the curated records to other engines (`[publish]`).
    #[serde(default)]
    pub publish: PublishConfig,
}

/// Settings of the intranet site (`[site]`), served by `manyi serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Address to listen on, e.g. `127.0.0.1:8089` (behind the intranet's reverse proxy).
    pub listen: String,
    /// NAME of the environment variable holding the key that signs session
    /// cookies and CSRF tokens (at least 16 bytes; without it a random key
    /// per process, so a restart signs everyone out).
    #[serde(default = "default_site_secret_env")]
    pub secret_env: String,
    /// Hours a session lasts after sign-in.
    #[serde(default = "default_session_hours")]
    pub session_hours: u32,
    /// Mark cookies `Secure` (set when the proxy serves the site over HTTPS).
    #[serde(default)]
    pub secure_cookies: bool,
}

fn default_site_secret_env() -> String {
    "MANYI_SITE_SECRET".into()
}
fn default_session_hours() -> u32 {
    8
}

/// `[publish]`: copies of the curated store that other engines read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishConfig {
    /// Folder of the Delta Lake tables (`ratings/`, `responses/`), relative
    /// to `manyi.toml`; needs a build with the `delta` feature.
    #[serde(default)]
    pub delta: Option<PathBuf>,
}

/// One service point (`[[intake.point]]`): a static QR code posted at a
/// counter or activity room. Org and category come from here, never from
/// the resident's form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePoint {
    /// Plain name that appears in the URL (`/p/<id>`).
    pub id: String,
    /// 12-digit community (or 15-digit grid) code.
    pub org: String,
    /// Service category code.
    pub category: String,
    /// 服务事项 (optional).
    #[serde(default)]
    pub service_item: String,
    /// What the page shows as the service's name (default: the item or the category's name).
    #[serde(default)]
    pub title: String,
}

/// Settings of the intake server (`[intake]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeConfig {
    /// Address to listen on, e.g. `127.0.0.1:8088`.
    pub listen: String,
    /// The `[[source]]` of `kind = "intake"` the ratings belong to.
    pub source: String,
    /// The public base URL printed in QR codes (e.g. `https://manyi.example.gov.cn`);
    /// default `http://<listen>`.
    #[serde(default)]
    pub public_url: String,
    /// NAME of the environment variable holding the secret that signs case slips.
    #[serde(default = "default_intake_secret_env")]
    pub secret_env: String,
    /// Reason tags offered for 不满意/非常不满意 (default: a built-in list).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Milliseconds between commits of landed submissions to the store.
    #[serde(default = "default_commit_every_ms")]
    pub commit_every_ms: u64,
    /// Days a case slip stays valid.
    #[serde(default = "default_slip_days")]
    pub slip_days: u32,
    /// Submissions one client may make per minute.
    #[serde(default = "default_per_client")]
    pub per_client_per_minute: u32,
    /// Submissions one code (service point) may receive per minute.
    #[serde(default = "default_per_code")]
    pub per_code_per_minute: u32,
    /// Minutes within which a second rating of the same point from the same client is refused.
    #[serde(default = "default_repeat_window")]
    pub repeat_window_minutes: u32,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted reverse proxy).
    #[serde(default)]
    pub trust_proxy: bool,
    /// The service points.
    #[serde(default, rename = "point")]
    pub points: Vec<ServicePoint>,
}

fn default_intake_secret_env() -> String {
    "MANYI_INTAKE_SECRET".into()
}
fn default_commit_every_ms() -> u64 {
    2000
}
fn default_slip_days() -> u32 {
    30
}
fn default_per_client() -> u32 {
    20
}
fn default_per_code() -> u32 {
    600
}
fn default_repeat_window() -> u32 {
    10
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
    /// Deadlines per follow-up step for every category: `[follow_up.steps]`.
    /// A step left out has no deadline, except 整改, which falls back to
    /// `deadline_working_days` so that older files keep their meaning.
    #[serde(default)]
    pub steps: StepDays,
    /// Deadlines per category code (or parent category code), each step
    /// falling back to the parent's, then to `steps`: `[follow_up.category.<code>]`.
    #[serde(default)]
    pub category: BTreeMap<String, StepDays>,
}

/// Working days allowed for each follow-up step, counted from the rating's
/// day (核实 the 差评, 整改 it, 反馈/回访 the resident).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDays {
    /// 核实: working days to confirm or reject the 差评.
    pub verify: Option<u32>,
    /// 整改: working days to rectify it.
    pub rectify: Option<u32>,
    /// 反馈: working days to report back to (回访) the resident.
    pub feedback: Option<u32>,
}

impl StepDays {
    /// Each step of `self`, else the one of `fallback`.
    pub fn or(self, fallback: StepDays) -> StepDays {
        StepDays {
            verify: self.verify.or(fallback.verify),
            rectify: self.rectify.or(fallback.rectify),
            feedback: self.feedback.or(fallback.feedback),
        }
    }
}

/// Thresholds of the suspicious-burst detector (`[bursts]`). Flagged
/// ratings stay in every figure; they are only listed for review.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurstRules {
    /// Whether the detector runs at all.
    #[serde(default = "default_bursts_enabled")]
    pub enabled: bool,
    /// The sliding window, in minutes, of both rules.
    #[serde(default = "default_burst_window")]
    pub window_minutes: u32,
    /// Rule `同一评价人`: this many 非常满意 from one rater hash within the window.
    #[serde(default = "default_rater_min")]
    pub rater_min: u32,
    /// Rule `同一渠道`: at least this many 好评 from one channel at one community within the window …
    #[serde(default = "default_channel_min")]
    pub channel_min: u32,
    /// … and at least this many times the pair's usual count for such a window.
    #[serde(default = "default_channel_factor")]
    pub channel_factor: f64,
}

fn default_bursts_enabled() -> bool {
    true
}
fn default_burst_window() -> u32 {
    10
}
fn default_rater_min() -> u32 {
    5
}
fn default_channel_min() -> u32 {
    10
}
fn default_channel_factor() -> f64 {
    5.0
}

impl Default for BurstRules {
    fn default() -> Self {
        BurstRules {
            enabled: true,
            window_minutes: default_burst_window(),
            rater_min: default_rater_min(),
            channel_min: default_channel_min(),
            channel_factor: default_channel_factor(),
        }
    }
}

fn default_deadline() -> u32 {
    15
}

impl Default for FollowUpRules {
    fn default() -> Self {
        FollowUpRules { deadline_working_days: default_deadline(), steps: StepDays::default(), category: BTreeMap::new() }
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
    /// Whether 系统默认评价 count in the rates. Off by default: a default
    /// rating is what the platform filled in, not what a resident said, so
    /// the rates are over 主动评价 and the defaults are shown apart.
    #[serde(default)]
    pub include_default: bool,
    /// The figure rankings order by (shrunk toward the parent's).
    #[serde(default)]
    pub rank_by: RankBy,
    /// Share of ranked peers at the bottom of a month's ranking that puts a
    /// unit on the watch list (连续落后) when it stays there two months or more.
    #[serde(default = "default_watch_bottom")]
    pub watch_bottom: f64,
    /// A 满意率 below which a unit is behind whatever its rank (none by default).
    #[serde(default)]
    pub watch_threshold: Option<f64>,
}

/// The figure a ranking orders by. Every one is shrunk toward the parent's
/// figure with `prior_weight`, so a tiny cell cannot top or tail a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// 差评率, lowest first: real 好评率 sit at 99%+, so 差评 are what
    /// tells units apart.
    #[default]
    BadRate,
    /// 满意率 (基本满意以上), highest first.
    SatisfiedRate,
    /// 满意度得分, highest first.
    Score,
}

impl RankBy {
    /// The Chinese name of the figure, as tables print it.
    pub fn label(self) -> &'static str {
        match self {
            RankBy::BadRate => "差评率（低者在前）",
            RankBy::SatisfiedRate => "满意率（高者在前）",
            RankBy::Score => "满意度得分（高者在前）",
        }
    }

    /// Whether a lower figure ranks better.
    pub fn lower_is_better(self) -> bool {
        self == RankBy::BadRate
    }
}

fn default_watch_bottom() -> f64 {
    0.10
}

fn default_prior_weight() -> f64 {
    20.0
}

fn default_min_n() -> u32 {
    30
}

impl Default for MetricRules {
    fn default() -> Self {
        MetricRules {
            min_n: default_min_n(),
            prior_weight: default_prior_weight(),
            include_default: false,
            rank_by: RankBy::default(),
            watch_bottom: default_watch_bottom(),
            watch_threshold: None,
        }
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
    /// Which way the source's numeric levels run: `"gbt39046"` (1 非常满意)
    /// or `"ascending"` (1 非常不满意). Default for `haochaping_api`:
    /// gbt39046; a `rating_file` with numbers and no setting is held.
    #[serde(default)]
    pub level_codes: Option<crate::model::LevelCodes>,
    /// Feed value → canonical value, per coded field (`[source.values.channel]` …),
    /// on top of the built-in synonyms.
    #[serde(default)]
    pub values: ValueMaps,
    /// How the source marks 系统默认评价 (a rating the system filled in).
    #[serde(default)]
    pub default_rating: Option<DefaultRatingRule>,
    /// The inversion guard (a batch whose reason-carrying ratings are mostly
    /// good is held); on by default, off only for a feed known to tag 好评.
    #[serde(default = "default_true")]
    pub inversion_guard: bool,
    /// The largest share of a file's (or an API batch's) rows that may be
    /// quarantined before the run fails (default 0.05): the good rows are
    /// still committed, but a file that is mostly unreadable means a changed
    /// export, and must not pass as a quiet run with a thin report.
    #[serde(default = "default_max_quarantine_share")]
    pub max_quarantine_share: f64,
}

fn default_max_quarantine_share() -> f64 {
    0.05
}

fn default_true() -> bool {
    true
}

impl SourceConfig {
    /// The direction of numeric levels: the setting, or the national coding
    /// for the 好差评 platform (GB/T 39046 table A.8).
    pub fn level_codes(&self) -> Option<crate::model::LevelCodes> {
        self.level_codes.or((self.kind == SourceKind::HaochapingApi).then_some(crate::model::LevelCodes::Gbt39046))
    }
}

/// `[source.values.*]`: a feed's own words or codes for each coded field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueMaps {
    /// Feed value → channel code 1–7 (or a channel name).
    #[serde(default)]
    pub channel: BTreeMap<String, String>,
    /// Feed value → level name (非常满意 … 非常不满意).
    #[serde(default)]
    pub level: BTreeMap<String, String>,
    /// Feed value → category code or name of categories.csv.
    #[serde(default)]
    pub category: BTreeMap<String, String>,
    /// Feed value → follow-up state (待核实, 有效, 无效, 整改中, 已整改, 无法整改).
    #[serde(default)]
    pub follow_up: BTreeMap<String, String>,
}

impl ValueMaps {
    /// The coded fields a source may map.
    pub const FIELDS: [&'static str; 4] = ["channel", "level", "category", "follow_up"];

    /// The map of a coded field, by its canonical name.
    pub fn of(&self, field: &str) -> Option<&BTreeMap<String, String>> {
        match field {
            "channel" => Some(&self.channel),
            "level" => Some(&self.level),
            "category" => Some(&self.category),
            "follow_up" => Some(&self.follow_up),
            _ => None,
        }
    }
}

/// `default_rating = { field = "pf", value = "7" }`: records whose `field`
/// (a column header, or a JSON field of an API record) holds `value` are
/// 系统默认评价. When `field` is also the channel's field, the channel of
/// such a record is stored as 0 (unknown): the code said "default", not how.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultRatingRule {
    /// The column or JSON field carrying the mark.
    pub field: String,
    /// The value that marks a default rating (compared trimmed).
    pub value: String,
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
    /// Ratings residents submit on manyi's own QR-code page (`[intake]`);
    /// the intake server commits them, collect has nothing to fetch.
    Intake,
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
    /// Requests for the next pages sent while a page is read (好差评), so
    /// that the platform prepares them and the network carries them in the
    /// meantime; 0 asks for one page at a time. At most this many requests
    /// are open beside the one being read.
    #[serde(default = "default_requests_ahead")]
    pub requests_ahead: u32,
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
fn default_requests_ahead() -> u32 {
    2
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
