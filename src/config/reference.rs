//! Reference data: the org hierarchy (`orgs.csv`), the service categories
//! (`categories.csv`), the offices (`offices.toml`) and the working-day
//! calendar (`calendar.csv`), each loaded with every problem located.

use super::lines::{Step, TomlLines};
use super::{ConfigError, Problems, parse_toml};
use crate::calendar::WorkCalendar;
use crate::model::OrgLevel;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

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

/// Foldhash, seeded per process: the tree's maps are looked up once per
/// rating on ingest and per 差评 per office in a report run, with short
/// codes as keys, where std's SipHash cost more than the rest of the look-up.
type Fast = foldhash::fast::RandomState;

/// The org hierarchy with look-ups by code and by name.
#[derive(Debug, Clone, Default)]
pub struct OrgTree {
    /// Every unit, ordered by code.
    units: Vec<OrgUnit>,
    /// A unit's position in `units` by its code.
    at: HashMap<String, usize, Fast>,
    by_name: HashMap<String, Vec<String>, Fast>,
    /// Each unit's code and level, then its parent's, up to the root. Scope
    /// checks run once per 差评 per office (millions in a province's monthly
    /// run), so the walk up the tree is done once here.
    lineage: HashMap<String, Vec<(String, OrgLevel)>, Fast>,
    /// Each unit's code as one shared text, by its position in `units`:
    /// every rating of a community holds the same copy rather than its own,
    /// and ingest takes it without hashing the code a second time.
    shared_codes: Vec<Arc<str>>,
}

impl OrgTree {
    /// Builds the tree from its units (checked by the loader; of a code
    /// given twice the last counts).
    pub fn new(units: Vec<OrgUnit>) -> Self {
        let mut by_name: HashMap<String, Vec<String>, Fast> = HashMap::default();
        for u in &units {
            by_name.entry(u.name.clone()).or_default().push(u.code.clone());
        }
        let units: Vec<OrgUnit> = units.into_iter().map(|u| (u.code.clone(), u)).collect::<BTreeMap<_, _>>().into_values().collect();
        let at: HashMap<String, usize, Fast> = units.iter().enumerate().map(|(i, u)| (u.code.clone(), i)).collect();
        let get = |code: &str| at.get(code).map(|&i| &units[i]);
        let lineage = units
            .iter()
            .map(|unit| {
                let mut chain = Vec::new();
                let mut cur = Some(unit);
                // Bounded by the number of units, so a cycle the loader
                // reports cannot hang the build of the tree.
                while let Some(u) = cur {
                    if chain.len() > units.len() {
                        break;
                    }
                    chain.push((u.code.clone(), u.level));
                    cur = get(&u.parent);
                }
                (unit.code.clone(), chain)
            })
            .collect();
        let shared_codes = units.iter().map(|u| Arc::from(u.code.as_str())).collect();
        OrgTree { units, at, by_name, lineage, shared_codes }
    }

    /// The unit with this code.
    pub fn get(&self, code: &str) -> Option<&OrgUnit> {
        self.at.get(code).map(|&i| &self.units[i])
    }

    /// Every unit, ordered by code.
    pub fn units(&self) -> impl Iterator<Item = &OrgUnit> {
        self.units.iter()
    }

    /// Units of one level, ordered by code.
    pub fn at_level(&self, level: OrgLevel) -> impl Iterator<Item = &OrgUnit> {
        self.units.iter().filter(move |u| u.level == level)
    }

    /// Resolves a community or grid given by code or by its unique name.
    pub fn resolve_rated_unit(&self, text: &str) -> Result<&OrgUnit, String> {
        self.resolve_rated_code(text).map(|(unit, _)| unit)
    }

    /// [`OrgTree::resolve_rated_unit`], with the unit's code as the text
    /// that every rating of the unit shares.
    pub fn resolve_rated_code(&self, text: &str) -> Result<(&OrgUnit, &Arc<str>), String> {
        let t = text.trim();
        if let Some(&i) = self.at.get(t) {
            let u = &self.units[i];
            return match u.level {
                OrgLevel::Community | OrgLevel::Grid => Ok((u, &self.shared_codes[i])),
                _ => Err(format!("区划 {t} 是{:?}级，评价应落到社区或网格", u.level)),
            };
        }
        match self.by_name.get(t).map(Vec::as_slice) {
            Some([code]) => self.resolve_rated_code(code),
            Some(codes) if codes.len() > 1 => Err(format!("社区名称“{t}”不唯一（{}），请改用12位区划代码", codes.join("、"))),
            _ if t.is_empty() => Err("社区/区划为空".into()),
            _ => Err(format!("未知的社区或区划代码“{t}”（不在 orgs.csv 中）")),
        }
    }

    /// The ancestor of `code` at `level` (itself if it is at that level).
    pub fn ancestor(&self, code: &str, level: OrgLevel) -> Option<&OrgUnit> {
        let (found, _) = self.lineage.get(code)?.iter().find(|(_, l)| *l == level)?;
        self.get(found)
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
    /// Other words feeds use for it (optional 4th column `synonyms`, `|`-separated).
    pub synonyms: Vec<String>,
}

/// The category a feed's value names: by code, by name, or by one of its synonyms.
pub fn find_category<'a>(categories: &'a [Category], text: &str) -> Option<&'a Category> {
    category_index(categories, text).map(|i| &categories[i])
}

/// Where in `categories` the one [`find_category`] finds is.
pub fn category_index(categories: &[Category], text: &str) -> Option<usize> {
    let t = text.trim();
    categories.iter().position(|c| c.code == t || c.name == t).or_else(|| categories.iter().position(|c| c.synonyms.iter().any(|s| s == t)))
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
    /// Group robots (names of `[[robot]]` in manyi.toml) that get its alerts and summary cards.
    #[serde(default)]
    pub robots: Vec<String>,
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

/// A reference CSV ready to read, its line ends made `\n`: the CSV reader
/// counts a CRLF file's lines one short (it counts the `\n` of a CRLF with
/// the next record), so `manyi check` said `orgs.csv:1:` for a problem on
/// line 2 of a file saved by Excel on Windows.
/// The readable rows of a reference CSV with their lines; an unreadable row
/// is a problem at its line and is left out.
fn csv_records(path: &Path, problems: &mut Problems) -> Option<Vec<(Option<usize>, csv::StringRecord)>> {
    let mut rdr = read_csv(path, problems)?;
    let mut out = Vec::new();
    for rec in rdr.records() {
        match rec {
            Ok(r) => out.push((r.position().map(|p| p.line() as usize), r)),
            Err(e) => problems.push(path, e.position().map(|p| p.line() as usize), format!("unreadable row: {e}")),
        }
    }
    Some(out)
}

fn read_csv(path: &Path, problems: &mut Problems) -> Option<csv::Reader<std::io::Cursor<Vec<u8>>>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            // Byte by byte, so that text that is not UTF-8 is still refused
            // row by row as before (no GBK byte is a \r or \n).
            let mut unix = Vec::with_capacity(bytes.len());
            for (i, &b) in bytes.iter().enumerate() {
                match b {
                    b'\r' if bytes.get(i + 1) == Some(&b'\n') => {}
                    b'\r' => unix.push(b'\n'),
                    _ => unix.push(b),
                }
            }
            Some(csv::ReaderBuilder::new().flexible(true).from_reader(std::io::Cursor::new(unix)))
        }
        Err(e) => {
            problems.push(path, None, format!("cannot read: {e}"));
            None
        }
    }
}

pub(super) fn load_orgs(path: &Path, problems: &mut Problems) -> OrgTree {
    let mut units = Vec::new();
    let Some(records) = csv_records(path, problems) else { return OrgTree::default() };
    for (line, rec) in records {
        if rec.len() != 4 {
            problems.push(path, line, format!("expected 4 columns code,name,parent,level, found {}", rec.len()));
            continue;
        }
        let Some(level) = OrgLevel::parse(&rec[3]) else {
            problems.push(path, line, format!("level “{}” is not one of city, district, street, community, grid", &rec[3]));
            continue;
        };
        let code = rec[0].trim().to_string();
        if let Some(len) = level.code_len()
            && (code.len() != len || !code.chars().all(|c| c.is_ascii_digit()))
        {
            problems.push(path, line, format!("code “{code}” of a {level:?} must be {len} digits"));
        }
        if units.iter().any(|u: &(OrgUnit, Option<usize>)| u.0.code == code) {
            problems.push(path, line, format!("code “{code}” appears twice"));
        }
        units.push((OrgUnit { code, name: rec[1].trim().to_string(), parent: rec[2].trim().to_string(), level }, line));
    }
    let codes: HashMap<&str, OrgLevel> = units.iter().map(|(u, _)| (u.code.as_str(), u.level)).collect();
    let city = missing_city(path, &units, problems);
    for (u, line) in &units {
        if u.level == OrgLevel::City {
            continue;
        }
        match codes.get(u.parent.as_str()) {
            // Already said once, with what to add, by `missing_city`.
            None if u.level == OrgLevel::District && city.as_deref() == Some(u.parent.as_str()) => {}
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

/// When `orgs.csv` has no city row: one problem saying what line to add
/// (with the code the districts name as their parent, when they agree), in
/// place of one "parent is not in the file" per district. Returns that code.
fn missing_city(path: &Path, units: &[(OrgUnit, Option<usize>)], problems: &mut Problems) -> Option<String> {
    if units.is_empty() || units.iter().any(|(u, _)| u.level == OrgLevel::City) {
        return None;
    }
    let mut parents: Vec<&str> = units.iter().filter(|(u, _)| u.level == OrgLevel::District).map(|(u, _)| u.parent.as_str()).collect();
    parents.sort_unstable();
    parents.dedup();
    let code = match parents.as_slice() {
        [one] if !one.is_empty() && !units.iter().any(|(u, _)| u.code == *one) => Some(one.to_string()),
        _ => None,
    };
    let example = code.as_deref().unwrap_or("369900");
    let named = match &code {
        Some(c) => format!(" (the districts name {c} as their parent)"),
        None => String::new(),
    };
    problems.push(
        path,
        None,
        format!(
            "no city row: add one line for the city, e.g. “{example},XX市,,city” (code, the city's name, an empty parent, level city){named}, \
             and give every district the city's code as its parent"
        ),
    );
    code
}

pub(super) fn load_categories(path: &Path, problems: &mut Problems) -> Vec<Category> {
    let mut cats: Vec<Category> = Vec::new();
    let Some(records) = csv_records(path, problems) else { return cats };
    let mut lines = Vec::new();
    for (line, rec) in records {
        if rec.len() != 3 && rec.len() != 4 {
            problems.push(path, line, format!("expected 3 columns code,name,parent (and optionally synonyms), found {}", rec.len()));
            continue;
        }
        let synonyms = rec.get(3).map(|s| s.split('|').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect());
        let c = Category {
            code: rec[0].trim().into(),
            name: rec[1].trim().into(),
            parent: rec[2].trim().into(),
            synonyms: synonyms.unwrap_or_default(),
        };
        if c.code.is_empty() || c.name.is_empty() {
            problems.push(path, line, "code and name must not be empty");
        }
        if cats.iter().any(|o| o.code == c.code || o.name == c.name) {
            problems.push(path, line, format!("category “{}”/“{}” appears twice", c.code, c.name));
        }
        for syn in c.synonyms.iter().filter(|s| cats.iter().any(|o| o.code == **s || o.name == **s || o.synonyms.contains(s))) {
            problems.push(path, line, format!("synonym “{syn}” of category {} already names another category", c.code));
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

pub(super) fn load_offices(path: &Path, orgs: &OrgTree, cats: &[Category], problems: &mut Problems) -> Vec<Office> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            problems.push(path, None, format!("cannot read: {e}"));
            return Vec::new();
        }
    };
    let Some(file) = parse_toml::<OfficesFile>(path, &text, problems) else { return Vec::new() };
    let lines = TomlLines::new(&text);
    let mut ids = BTreeSet::new();
    for (i, o) in file.offices.iter().enumerate() {
        let at = |rest: &[Step<'_>]| lines.line(&[&[Step::Key("office"), Step::Index(i)], rest].concat());
        let id_line = at(&[Step::Key("id")]);
        if !ids.insert(o.id.as_str()) {
            problems.push(path, id_line, format!("office id “{}” is used twice", o.id));
        }
        if let Err(message) = super::names::check_plain_name("office id", &o.id) {
            problems.push(path, id_line, message);
        }
        if o.recipients.is_empty() {
            problems.push(path, id_line, format!("office “{}” has no recipients", o.id));
        }
        for (k, r) in o.recipients.iter().enumerate() {
            if r.parse::<lettre::Address>().is_err() {
                let line = at(&[Step::Key("recipients"), Step::Index(k)]);
                problems.push(path, line, format!("office “{}”: recipient “{r}” is not an email address", o.id));
            }
        }
        for (k, code) in o.scope.orgs.iter().enumerate() {
            if orgs.get(code).is_none() {
                let line = at(&[Step::Key("scope"), Step::Key("orgs"), Step::Index(k)]);
                problems.push(path, line, format!("office “{}”: scope org “{code}” is not in orgs.csv", o.id));
            }
        }
        for (k, code) in o.scope.categories.iter().enumerate() {
            if !cats.iter().any(|c| &c.code == code) {
                let line = at(&[Step::Key("scope"), Step::Key("categories"), Step::Index(k)]);
                problems.push(path, line, format!("office “{}”: scope category “{code}” is not in categories.csv", o.id));
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

pub(super) fn load_calendar(path: &Path, problems: &mut Problems) -> WorkCalendar {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            problems.push(path, None, format!("cannot read: {e}"));
            return WorkCalendar::default();
        }
    };
    let (calendar, errors) = WorkCalendar::from_csv(&bytes);
    for e in errors {
        problems.push(path, e.line, e.message);
    }
    calendar
}
