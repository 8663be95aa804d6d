//! The checks of `manyi.toml` beyond its shape, one function per part of the
//! file, each returning its own list of problems located at the exact line of
//! the key (so a problem in the second `[[source]]` is reported there).

use super::file::{
    ApiConfig, ConfigFile, MAX_BATCH, MailConfig, PublishConfig, SmtpSecurity, SourceConfig, SourceKind, ValueMaps, is_loopback_host,
};
use super::lines::{Step, TomlLines};
use super::{Category, Problem, Problems, SurveyDef};
use crate::model::{FollowUp, Level, RATING_FIELDS, parse_timestamp};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use Step::{Index, Key};

/// Most requests an API source may have open ahead of the page it reads: a
/// province's platform serves every district office at once, and a few
/// requests each keep its pages coming without weighing on it.
const MAX_REQUESTS_AHEAD: u32 = 4;

/// `manyi.toml` with the spans of its keys: where problems are reported.
pub(super) struct TomlFile<'a> {
    /// The file.
    pub path: &'a Path,
    /// Its lines.
    pub lines: TomlLines<'a>,
}

impl TomlFile<'_> {
    pub(super) fn problem(&self, at: &[Step<'_>], message: impl Into<String>) -> Problem {
        Problem { file: self.path.to_path_buf(), line: self.lines.line(at), message: message.into() }
    }
}

/// The locality's zone; Asia/Shanghai, with a problem, when it is not a zone.
pub(super) fn check_time_zone(toml: &TomlFile<'_>, file: &ConfigFile) -> (chrono_tz::Tz, Vec<Problem>) {
    match file.time_zone.parse() {
        Ok(tz) => (tz, Vec::new()),
        Err(_) => {
            let message = format!("time_zone “{}” is not an IANA zone such as Asia/Shanghai", file.time_zone);
            (chrono_tz::Asia::Shanghai, vec![toml.problem(&[Key("time_zone")], message)])
        }
    }
}

/// What a source is checked against.
pub(super) struct Known<'a> {
    /// Categories of categories.csv.
    pub categories: &'a [Category],
    /// Surveys by folder name.
    pub surveys: &'a BTreeMap<String, SurveyDef>,
    /// Where survey folders are, for messages.
    pub templates_dir: &'a Path,
}

/// Every `[[source]]`: its name, how it is fetched, and what it yields.
pub(super) fn check_sources(toml: &TomlFile<'_>, sources: &[SourceConfig], known: &Known<'_>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for (i, s) in sources.iter().enumerate() {
        let at = SourceAt { toml, i };
        if !names.insert(s.name.as_str()) {
            problems.push(at.problem(&[Key("name")], format!("source name “{}” is used twice", s.name)));
        }
        if let Err(message) = super::names::check_plain_name("source name", &s.name) {
            problems.push(at.problem(&[Key("name")], message));
        }
        if !(0.0..=1.0).contains(&s.max_quarantine_share) {
            let message =
                format!("source “{}”: max_quarantine_share {} must be a share between 0 and 1 (0.05 = 5%)", s.name, s.max_quarantine_share);
            problems.push(at.problem(&[Key("max_quarantine_share")], message));
        }
        problems.extend(check_source_transport(&at, s, known.categories));
        problems.extend(check_source_records(&at, s, known));
    }
    problems
}

/// Locates problems inside the `i`-th `[[source]]`.
struct SourceAt<'t, 'a> {
    toml: &'t TomlFile<'a>,
    i: usize,
}

impl SourceAt<'_, '_> {
    fn problem(&self, rest: &[Step<'_>], message: impl Into<String>) -> Problem {
        self.toml.problem(&[&[Key("source"), Index(self.i)], rest].concat(), message)
    }
}

/// The survey of a questionnaire source, the column keys of a rating source.
fn check_source_records(at: &SourceAt<'_, '_>, s: &SourceConfig, known: &Known<'_>) -> Vec<Problem> {
    let name = &s.name;
    let mut problems = Vec::new();
    match s.kind {
        SourceKind::WjxExport | SourceKind::WjxApi => match &s.survey {
            Some(id) if known.surveys.contains_key(id) => {}
            Some(id) => problems.push(
                at.problem(&[Key("survey")], format!("source “{name}”: survey “{id}” has no folder in {}", known.templates_dir.display())),
            ),
            None => problems.push(at.problem(&[Key("name")], format!("source “{name}”: a {:?} source needs `survey = \"…\"`", s.kind))),
        },
        SourceKind::RatingFile | SourceKind::HaochapingApi => {
            for key in s.columns.keys().filter(|k| !RATING_FIELDS.contains(&k.as_str())) {
                let message = format!("source “{name}”: unknown column key “{key}”; expected one of {}", RATING_FIELDS.join(", "));
                problems.push(at.problem(&[Key("columns"), Key(key)], message));
            }
            problems.extend(check_source_values(at, s, known.categories));
        }
        SourceKind::Intake => {}
    }
    if !matches!(s.kind, SourceKind::RatingFile | SourceKind::HaochapingApi) {
        let set = [
            ("level_codes", s.level_codes.is_some()),
            ("default_rating", s.default_rating.is_some()),
            ("values", ValueMaps::FIELDS.iter().any(|f| s.values.of(f).is_some_and(|m| !m.is_empty()))),
        ];
        for (key, _) in set.iter().filter(|(_, on)| *on) {
            let message = format!("source “{name}”: `{key}` is only for rating_file and haochaping_api sources");
            problems.push(at.problem(&[Key(key)], message));
        }
    }
    problems
}

/// `[source.values.*]` (every target must be a value manyi knows) and `default_rating`.
fn check_source_values(at: &SourceAt<'_, '_>, s: &SourceConfig, categories: &[Category]) -> Vec<Problem> {
    let name = &s.name;
    let mut problems = Vec::new();
    for field in ValueMaps::FIELDS {
        let Some(map) = s.values.of(field) else { continue };
        for (from, to) in map {
            let ok = match field {
                "channel" => crate::model::channel_code(to).is_some_and(|c| c > 0),
                "level" => Level::from_word(to).is_some(),
                "category" => super::find_category(categories, to).is_some(),
                _ => FollowUp::parse(to).is_some(),
            };
            if !ok {
                let expected = match field {
                    "channel" => "a channel code 1–7 (1 PC端 2 移动端 3 二维码 4 政务大厅平板电脑 5 政务大厅其他终端 6 电话 7 短信)",
                    "level" => "a level name: 非常满意, 满意, 基本满意, 不满意 or 非常不满意",
                    "category" => "a code or name of categories.csv",
                    _ => "a follow-up state: 待核实, 有效, 无效, 整改中, 已整改 or 无法整改",
                };
                let message = format!("source “{name}”: values.{field} “{from}” = “{to}”: expected {expected}");
                problems.push(at.problem(&[Key("values"), Key(field), Key(from)], message));
            }
        }
    }
    if let Some(rule) = &s.default_rating
        && (rule.field.trim().is_empty() || rule.value.trim().is_empty())
    {
        let message = format!("source “{name}”: default_rating needs both `field` (the column or JSON field) and `value`");
        problems.push(at.problem(&[Key("default_rating")], message));
    }
    problems
}

/// The inbox of a file source or the `[source.api]` table of an API source.
fn check_source_transport(at: &SourceAt<'_, '_>, s: &SourceConfig, categories: &[Category]) -> Vec<Problem> {
    let name = &s.name;
    let mut problems = Vec::new();
    if s.kind == SourceKind::Intake {
        return problems;
    }
    if !s.kind.is_api() {
        if s.inbox.as_os_str().is_empty() {
            problems.push(at.problem(&[Key("inbox")], format!("source “{name}”: a file source needs `inbox = \"…\"`")));
        }
        if s.api.is_some() {
            problems
                .push(at.problem(&[Key("api")], format!("source “{name}”: `[source.api]` is only for haochaping_api and wjx_api sources")));
        }
        return problems;
    }
    match &s.api {
        Some(api) => problems.extend(check_api(at, s, api, categories)),
        None => problems.push(at.problem(
            &[Key("name")],
            format!("source “{name}”: an API source needs a `[source.api]` table with base_url, app_key, secret_env"),
        )),
    }
    problems
}

/// The `[source.api]` table of an API source.
fn check_api(at: &SourceAt<'_, '_>, s: &SourceConfig, api: &ApiConfig, categories: &[Category]) -> Vec<Problem> {
    let name = &s.name;
    let mut p = Problems::default();
    let mut push = |key: &str, message: String| p.0.push(at.problem(&[Key("api"), Key(key)], message));
    if !(api.base_url.starts_with("http://") || api.base_url.starts_with("https://")) {
        push("base_url", format!("source “{name}”: api.base_url “{}” must start with http:// or https://", api.base_url));
    }
    if api.app_key.is_empty() {
        push("app_key", format!("source “{name}”: api.app_key is empty"));
    }
    if api.secret_env.is_empty() || !api.secret_env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        let message = format!(
            "source “{name}”: api.secret_env “{}” must be the NAME of an environment variable (A-Z, 0-9, _), not the secret",
            api.secret_env
        );
        push("secret_env", message);
    }
    let max_page = if s.kind == SourceKind::WjxApi { 50 } else { 10_000 };
    if api.page_size == 0 || api.page_size > max_page {
        push("page_size", format!("source “{name}”: api.page_size {} must be 1–{max_page}", api.page_size));
    }
    if api.page_limit == 0 || api.commit_every == 0 {
        let key = if api.page_limit == 0 { "page_limit" } else { "commit_every" };
        push(key, format!("source “{name}”: api.page_limit and api.commit_every must be at least 1"));
    }
    if api.requests_ahead > MAX_REQUESTS_AHEAD {
        push(
            "requests_ahead",
            format!(
                "source “{name}”: api.requests_ahead {} must be 0–{MAX_REQUESTS_AHEAD} (more open requests would only strain the platform)",
                api.requests_ahead
            ),
        );
    }
    if let Some(start) = api.start.as_deref().filter(|t| parse_timestamp(t).is_none()) {
        push("start", format!("source “{name}”: api.start “{start}” is not a time such as 2026-10-01 00:00:00"));
    }
    let known = |c: &str| categories.iter().any(|k| k.code == c);
    for (value, code) in api.category_map.iter().filter(|(_, code)| !known(code)) {
        let message = format!("source “{name}”: api.category_map “{value}” → “{code}”: not a code of categories.csv");
        p.0.push(at.problem(&[Key("api"), Key("category_map"), Key(value)], message));
    }
    let mut push = |key: &str, message: String| p.0.push(at.problem(&[Key("api"), Key(key)], message));
    if let Some(code) = api.default_category.as_deref().filter(|c| !known(c)) {
        push("default_category", format!("source “{name}”: api.default_category “{code}” is not a code of categories.csv"));
    }
    if s.kind == SourceKind::WjxApi && api.vid.as_deref().unwrap_or("").is_empty() {
        push("vid", format!("source “{name}”: a wjx_api source needs `vid` (the survey id on 问卷星) in [source.api]"));
    }
    p.0
}

/// `[mail]` and `[mail.smtp]`.
pub(super) fn check_mail(toml: &TomlFile<'_>, mail: &MailConfig, base_dir: &Path) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(smtp) = &mail.smtp {
        let mut push = |key: &str, message: String| problems.push(toml.problem(&[Key("mail"), Key("smtp"), Key(key)], message));
        if smtp.host.is_empty() {
            push("host", "mail.smtp.host is empty".into());
        }
        if smtp.security == SmtpSecurity::Plain && !is_loopback_host(&smtp.host) {
            let message = format!(
                "mail.smtp.security = \"plain\" sends passwords and reports unencrypted; it is allowed only to a server on this machine \
                 (127.0.0.1, ::1, localhost), not to “{}”: use \"starttls\" (port 587) or \"tls\" (port 465)",
                smtp.host
            );
            push("security", message);
        }
        if smtp.batch_size == 0 || smtp.batch_size > MAX_BATCH {
            let message =
                format!("mail.smtp.batch_size = {} must be between 1 (one message per recipient) and {MAX_BATCH}", smtp.batch_size);
            push("batch_size", message);
        }
        if smtp.attempts == 0 {
            push("attempts", "mail.smtp.attempts must be at least 1".into());
        }
        if smtp.timeout_secs == 0 {
            push("timeout_secs", "mail.smtp.timeout_secs must be at least 1".into());
        }
        if smtp.password_env.is_some() && smtp.username.is_none() {
            push("password_env", "mail.smtp.password_env is set but mail.smtp.username is not".into());
        }
        if let Some(ca) = &smtp.ca_file {
            let p = base_dir.join(ca);
            if !p.is_file() {
                push("ca_file", format!("mail.smtp.ca_file “{}” does not exist", p.display()));
            }
        }
    }
    if mail.from.parse::<lettre::message::Mailbox>().is_err() {
        let message = format!("mail.from “{}” is not an address such as 民政局 <manyi@example.gov.cn>", mail.from);
        problems.push(toml.problem(&[Key("mail"), Key("from")], message));
    }
    problems
}

/// `[site]`: an address to listen on and a session length that is neither 0 nor endless.
pub(super) fn check_site(toml: &TomlFile<'_>, site: Option<&super::file::SiteConfig>) -> Vec<Problem> {
    let Some(site) = site else { return Vec::new() };
    let mut problems = Vec::new();
    if site.listen.parse::<std::net::SocketAddr>().is_err() {
        let message = format!("site.listen = “{}” is not an address such as 127.0.0.1:8089", site.listen);
        problems.push(toml.problem(&[Key("site"), Key("listen")], message));
    }
    if site.session_hours == 0 || site.session_hours > 24 * 7 {
        let message = format!("site.session_hours = {} must be between 1 and 168 (a week)", site.session_hours);
        problems.push(toml.problem(&[Key("site"), Key("session_hours")], message));
    }
    problems
}

/// A setting of `manyi.toml` that a release renamed. A package upgrade never
/// overwrites the configuration file, so the old name stays in it: `check`
/// (and every command, which loads the same way) names the old key, its new
/// name and the release, instead of serde's bare “unknown field”.
pub(super) struct Renamed {
    /// The table the key is in, as keys from the top (empty: the top level);
    /// an array of tables such as `source` stands for each of its tables.
    pub table: &'static [&'static str],
    /// The name before the release.
    pub old: &'static str,
    /// The name from the release on.
    pub new: &'static str,
    /// The release that renamed it.
    pub since: &'static str,
}

/// Every setting renamed since 0.1.0, the first release. None so far: when a
/// release renames a key, add a row here (and keep the old name out of the
/// file's shape, so the row is what reports it).
pub(super) const RENAMED: &[Renamed] = &[];

/// Old names of renamed settings in the file, each at its line; empty when
/// the text does not parse (serde reports that).
pub(super) fn check_renamed(toml: &TomlFile<'_>, text: &str, renamed: &[Renamed]) -> Vec<Problem> {
    let Ok(root) = text.parse::<toml::Table>() else { return Vec::new() };
    let mut problems = Vec::new();
    for r in renamed {
        for (at, table) in tables_at(&root, r.table, Vec::new()) {
            if table.contains_key(r.old) {
                let dotted = r.table.iter().chain([&r.old]).copied().collect::<Vec<_>>().join(".");
                let both = if table.contains_key(r.new) { format!(" (`{}` is set too: keep one)", r.new) } else { String::new() };
                let message =
                    format!("setting `{dotted}` was renamed to `{}` in manyi {}: rename the key, the value stays{both}", r.new, r.since);
                problems.push(toml.problem(&[at.as_slice(), &[Key(r.old)]].concat(), message));
            }
        }
    }
    problems
}

/// The tables at `path` under `table` with the steps that reach them (each
/// table of an array of tables).
fn tables_at<'v>(table: &'v toml::Table, path: &[&'static str], at: Vec<Step<'static>>) -> Vec<(Vec<Step<'static>>, &'v toml::Table)> {
    let Some((first, rest)) = path.split_first() else { return vec![(at, table)] };
    let step = |extra: &[Step<'static>]| [at.as_slice(), &[Key(first)], extra].concat();
    match table.get(*first) {
        Some(toml::Value::Table(t)) => tables_at(t, rest, step(&[])),
        Some(toml::Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_table().map(|t| (i, t)))
            .flat_map(|(i, t)| tables_at(t, rest, step(&[Index(i)])))
            .collect(),
        _ => Vec::new(),
    }
}

/// `[publish]`: a Delta table needs a local folder (no object-store URL: manyi runs on an intranet machine).
pub(super) fn check_publish(toml: &TomlFile<'_>, publish: &PublishConfig) -> Vec<Problem> {
    let Some(delta) = &publish.delta else { return Vec::new() };
    let at = [Key("publish"), Key("delta")];
    let text = delta.to_string_lossy();
    if text.trim().is_empty() {
        return vec![toml.problem(&at, "publish.delta is empty: name the folder of the Delta tables, e.g. \"data/delta\"")];
    }
    if text.contains("://") {
        let message =
            format!("publish.delta = \"{text}\": only a local folder is supported (an object-store URL is not), e.g. \"data/delta\"");
        return vec![toml.problem(&at, message)];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"organisation = "临江市民政局"

[reference]
orgs = "reference/orgs.csv"
categories = "reference/categories.csv"
offices = "reference/offices.toml"
calendar = "reference/calendar.csv"

[mail]
from = "民政局 <manyi@example.gov.cn>"

[[source]]
name = "hcp-city"
kind = "haochaping_api"
[source.api]
base_url = "https://hcp.example.gov.cn"
app_key = "city-key"
secret_env = "HCP_CITY_SECRET"

[[source]]
name = "hcp-county"
kind = "haochaping_api"
[source.api]
base_url = "https://hcp.example.gov.cn"
app_key = ""
secret_env = "HCP_COUNTY_SECRET"
"#;

    fn problems_of(text: &str) -> Vec<Problem> {
        let file: ConfigFile = toml::from_str(text).expect("the test config parses");
        let toml = TomlFile { path: Path::new("manyi.toml"), lines: TomlLines::new(text) };
        let known = Known { categories: &[], surveys: &BTreeMap::new(), templates_dir: Path::new("survey-templates") };
        let mut problems = check_sources(&toml, &file.sources, &known);
        problems.extend(check_mail(&toml, &file.mail, Path::new(".")));
        problems
    }

    #[test]
    fn an_empty_app_key_in_the_second_source_is_reported_at_its_own_line() {
        let problems = problems_of(TEXT);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].message, "source “hcp-county”: api.app_key is empty");
        // Line 17 holds the first source's app_key; a text search stopped there.
        assert_eq!(problems[0].line, Some(25));
        assert_eq!(problems[0].to_string(), "manyi.toml:25: source “hcp-county”: api.app_key is empty");
    }

    #[test]
    fn a_key_left_to_its_default_is_reported_at_its_table() {
        let text = TEXT.replace(
            "kind = \"haochaping_api\"\n[source.api]\nbase_url = \"https://hcp.example.gov.cn\"\napp_key = \"\"",
            "kind = \"wjx_api\"\nsurvey = \"community\"\n[source.api]\nbase_url = \"https://hcp.example.gov.cn\"\napp_key = \"k\"",
        );
        let problems = problems_of(&text);
        let vid = problems.iter().find(|p| p.message.contains("needs `vid`")).expect("vid problem");
        assert_eq!(vid.line, Some(24), "the second source's [source.api] header: {problems:?}");
    }

    #[test]
    fn a_renamed_setting_is_named_with_its_new_name_at_its_line() {
        const TABLE: &[Renamed] = &[
            Renamed { table: &[], old: "data_directory", new: "data_dir", since: "0.2.0" },
            Renamed { table: &["source"], old: "folder", new: "inbox", since: "0.2.0" },
            Renamed { table: &["mail", "smtp"], old: "server", new: "host", since: "0.3.0" },
        ];
        let text = TEXT.replace("[[source]]\nname = \"hcp-county\"", "[[source]]\nname = \"hcp-county\"\nfolder = \"in\"")
            + "data_directory = \"d\"\n";
        // A top-level key after a table belongs to that table: only the source's is found.
        let problems = check_renamed(&TomlFile { path: Path::new("manyi.toml"), lines: TomlLines::new(&text) }, &text, TABLE);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, Some(22));
        assert_eq!(problems[0].message, "setting `source.folder` was renamed to `inbox` in manyi 0.2.0: rename the key, the value stays");

        let text = format!("data_directory = \"d\"\ndata_dir = \"e\"\n{TEXT}[mail.smtp]\nserver = \"smtp.example.gov.cn\"\n");
        let problems = check_renamed(&TomlFile { path: Path::new("manyi.toml"), lines: TomlLines::new(&text) }, &text, TABLE);
        let lines: Vec<_> = problems.iter().map(|p| (p.line, p.message.as_str())).collect();
        assert_eq!(
            lines,
            [
                (
                    Some(1),
                    "setting `data_directory` was renamed to `data_dir` in manyi 0.2.0: rename the key, the value stays (`data_dir` is set too: keep one)"
                ),
                (Some(30), "setting `mail.smtp.server` was renamed to `host` in manyi 0.3.0: rename the key, the value stays"),
            ]
        );
        assert!(check_renamed(&TomlFile { path: Path::new("manyi.toml"), lines: TomlLines::new(TEXT) }, TEXT, TABLE).is_empty());
        assert!(check_renamed(&TomlFile { path: Path::new("manyi.toml"), lines: TomlLines::new("x = [") }, "x = [", TABLE).is_empty());
    }
}
