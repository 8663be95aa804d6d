//! Survey definitions: `survey-templates/<id>/survey.toml`, one folder per
//! questionnaire (or rating scheme) with its report templates beside it.

use super::lines::{Step, TomlLines};
use super::reference::Category;
use super::{Problem, Problems, parse_toml};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

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

pub(super) fn load_surveys(dir: &Path, problems: &mut Problems) -> BTreeMap<String, SurveyDef> {
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
        if let Err(message) = super::names::check_plain_name("survey folder", &id) {
            problems.push(&d, None, message);
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
        check_questions(&path, &text, &def, problems);
        out.insert(id, def);
    }
    out
}

/// Checks the questions of one survey against each other.
fn check_questions(path: &Path, text: &str, def: &SurveyDef, problems: &mut Problems) {
    let lines = TomlLines::new(text);
    let mut seen = BTreeSet::new();
    for (i, q) in def.questions.iter().enumerate() {
        let at = |rest: &[Step<'_>]| lines.line(&[&[Step::Key("question"), Step::Index(i)], rest].concat());
        let id_line = at(&[Step::Key("id")]);
        if !seen.insert(q.number) {
            problems.push(path, at(&[Step::Key("number")]), format!("question number {} is used twice", q.number));
        }
        if matches!(q.kind, QuestionKind::Single | QuestionKind::Multi | QuestionKind::Matrix) && q.options.is_empty() {
            problems.push(path, id_line, format!("question “{}” is a choice question but lists no options", q.id));
        }
        if q.kind == QuestionKind::Matrix && q.rows.is_empty() {
            problems.push(path, id_line, format!("question “{}” is a matrix but lists no rows", q.id));
        }
        for (k, s) in q.satisfied.iter().enumerate() {
            if !q.options.contains(s) {
                let line = at(&[Step::Key("satisfied"), Step::Index(k)]);
                problems.push(path, line, format!("question “{}”: satisfied option “{s}” is not one of its options", q.id));
            }
        }
    }
    if !def.questions.is_empty() && def.questions.iter().filter(|q| q.kind == QuestionKind::Community).count() != 1 {
        problems.push(path, None, "a questionnaire needs exactly one question of kind = \"community\"");
    }
}

/// Checks that every 需求清单 category of every survey is in categories.csv.
pub(super) fn check_needs(surveys: &BTreeMap<String, SurveyDef>, categories: &[Category], templates_dir: &Path) -> Vec<Problem> {
    let mut problems = Problems::default();
    for def in surveys.values() {
        let path = templates_dir.join(&def.id).join("survey.toml");
        // Read again only to locate the problem; the survey has loaded already.
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines = TomlLines::new(&text);
        for (i, need) in def.needs.iter().enumerate() {
            if !categories.iter().any(|c| c.code == need.category) {
                let line = lines.line(&[Step::Key("need"), Step::Index(i), Step::Key("category")]);
                problems.push(&path, line, format!("need category “{}” is not in categories.csv", need.category));
            }
        }
    }
    problems.0
}
