//! Questionnaire figures: per question the distribution over options with
//! skipped answers apart, 满意率 by the survey's own satisfied options,
//! multi-select shares, matrix questions row by row, and the 需求清单 — free
//! text sorted into service categories by the survey's keyword lists.
//!
//! Denominators: a single-choice or matrix-row share is over the respondents
//! who answered it; a multi-select share is over the respondents who were
//! shown the question and answered it, so shares may sum to more than 100%.
//! A 问卷星 text export cannot tell "skipped" from "not shown" (both are
//! blank, "(跳过)", -2 or -3), so neither enters a denominator.

use super::AggregateError;
use crate::config::{Category, OrgTree, QuestionKind, Scope, SurveyDef};
use crate::period::Period;
use polars::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// Distribution of one question (or one row of a matrix question).
#[derive(Debug, Clone, Serialize)]
pub struct QuestionStats {
    /// Question id (`id/行标题` for a matrix row).
    pub id: String,
    /// Number in the questionnaire.
    pub number: u32,
    /// 题干 (with the row title for a matrix row).
    pub text: String,
    /// single, multi or matrix.
    pub kind: &'static str,
    /// Respondents who answered (the denominator).
    pub answered: u64,
    /// Respondents who skipped or were not shown the question.
    pub skipped: u64,
    /// (option, count, share of answered), in the questionnaire's order.
    pub options: Vec<(String, u64, f64)>,
    /// 满意率 by the survey's satisfied options, when it defines them.
    pub satisfied_rate: Option<f64>,
    /// Wilson 95% interval of 满意率.
    pub satisfied_interval: Option<(f64, f64)>,
}

/// One line of the 需求清单.
#[derive(Debug, Clone, Serialize)]
pub struct NeedItem {
    /// Category code.
    pub category: String,
    /// Category name.
    pub name: String,
    /// Texts that mention it.
    pub count: u64,
    /// Up to three examples, as written (render masks and escapes them).
    pub examples: Vec<String>,
}

/// Questionnaire figures of a period within a scope.
#[derive(Debug, Clone, Serialize)]
pub struct SurveyTables {
    /// Survey title.
    pub title: String,
    /// Responses in scope.
    pub responses: u64,
    /// Per choice question (matrix questions row by row).
    pub questions: Vec<QuestionStats>,
    /// Free-text answers and fill-ins, as given.
    pub texts: Vec<String>,
    /// 需求清单, most mentioned first.
    pub needs: Vec<NeedItem>,
    /// Texts that matched no keyword list.
    pub unsorted_texts: u64,
}

/// Counts the questionnaire answers of `responses` (long form, one row per
/// answer) for `survey` within `scope`.
pub fn survey_tables(
    responses: LazyFrame,
    period: Period,
    survey: &SurveyDef,
    orgs: &OrgTree,
    categories: &[Category],
    scope: &Scope,
) -> Result<SurveyTables, AggregateError> {
    let df = survey_answers(responses, period)?;
    survey_tables_of(&df, survey, orgs, categories, scope)
}

/// The answers of `period` that [`survey_tables_of`] counts, read once: a
/// report run hands the same frame to every office instead of reading the
/// store and running a plan per office.
pub fn survey_answers(responses: LazyFrame, period: Period) -> Result<DataFrame, AggregateError> {
    Ok(super::ratings::within_by(responses, "submitted_at", period)
        .select([col("response_id"), col("org_code"), col("question"), col("option"), col("text"), col("skipped")])
        .collect()?)
}

/// [`survey_tables`] of answers already read by [`survey_answers`].
pub fn survey_tables_of(
    df: &DataFrame,
    survey: &SurveyDef,
    orgs: &OrgTree,
    categories: &[Category],
    scope: &Scope,
) -> Result<SurveyTables, AggregateError> {
    let in_scope = |o: &str| scope.orgs.is_empty() || scope.orgs.iter().any(|s| orgs.is_within(o, s));
    let Answers { chosen, answered, skipped_by, respondents, texts } = read_answers(df, in_scope)?;
    let mut questions = Vec::new();
    for qd in &survey.questions {
        let rows: Vec<(String, String)> = match qd.kind {
            QuestionKind::Single | QuestionKind::Multi => vec![(qd.id.clone(), qd.text.clone())],
            QuestionKind::Matrix => qd.rows.iter().map(|row| (format!("{}/{row}", qd.id), format!("{}（{row}）", qd.text))).collect(),
            QuestionKind::Community | QuestionKind::Text => continue,
        };
        for (id, label) in rows {
            let n_answered = answered.get(&id).map(|s| s.len() as u64).unwrap_or(0);
            let n_skipped = skipped_by.get(&id).map(|s| s.len() as u64).unwrap_or(0);
            let share = |x: u64| if n_answered == 0 { 0.0 } else { x as f64 / n_answered as f64 };
            let options: Vec<(String, u64, f64)> = qd
                .options
                .iter()
                .map(|o| {
                    let c = chosen.get(&(id.clone(), o.clone())).map(|s| s.len() as u64).unwrap_or(0);
                    (o.clone(), c, share(c))
                })
                .collect();
            let satisfied = (!qd.satisfied.is_empty() && qd.kind != QuestionKind::Multi)
                .then(|| options.iter().filter(|(o, _, _)| qd.satisfied.contains(o)).map(|(_, c, _)| c).sum::<u64>());
            questions.push(QuestionStats {
                id,
                number: qd.number,
                text: label,
                kind: match qd.kind {
                    QuestionKind::Multi => "multi",
                    QuestionKind::Matrix => "matrix",
                    _ => "single",
                },
                answered: n_answered,
                skipped: n_skipped,
                satisfied_rate: satisfied.map(share),
                satisfied_interval: satisfied.map(|k| super::wilson(k, n_answered)),
                options,
            });
        }
    }
    let (needs, unsorted_texts) = sort_needs(&texts, survey, categories);
    Ok(SurveyTables { title: survey.title.clone(), responses: respondents.len() as u64, questions, texts, needs, unsorted_texts })
}

/// The answers of a scope, by respondent: who chose what, who answered or
/// skipped each question, and the free texts.
#[derive(Default)]
struct Answers {
    /// (question, option) → respondents choosing it.
    chosen: BTreeMap<(String, String), BTreeSet<String>>,
    /// Question → respondents answering it.
    answered: BTreeMap<String, BTreeSet<String>>,
    /// Question → respondents skipping it.
    skipped_by: BTreeMap<String, BTreeSet<String>>,
    respondents: BTreeSet<String>,
    texts: Vec<String>,
}

fn read_answers(df: &DataFrame, in_scope: impl Fn(&str) -> bool) -> Result<Answers, AggregateError> {
    let (rid, org, q, opt, text, skipped) = (
        df.column("response_id")?.str()?,
        df.column("org_code")?.str()?,
        df.column("question")?.str()?,
        df.column("option")?.str()?,
        df.column("text")?.str()?,
        df.column("skipped")?.bool()?,
    );
    let mut a = Answers::default();
    for i in 0..df.height() {
        let (Some(r), Some(o), Some(qq)) = (rid.get(i), org.get(i), q.get(i)) else { continue };
        if !in_scope(o) {
            continue;
        }
        a.respondents.insert(r.to_string());
        if skipped.get(i).unwrap_or(false) {
            a.skipped_by.entry(qq.to_string()).or_default().insert(r.to_string());
            continue;
        }
        a.answered.entry(qq.to_string()).or_default().insert(r.to_string());
        if let Some(op) = opt.get(i).filter(|s| !s.is_empty()) {
            a.chosen.entry((qq.to_string(), op.to_string())).or_default().insert(r.to_string());
        }
        if let Some(t) = text.get(i).filter(|s| !s.trim().is_empty()) {
            a.texts.push(t.trim().to_string());
        }
    }
    Ok(a)
}

/// jieba's dictionary, compressed in the binary (see assets/jieba/README.md
/// for why it is not jieba-rs's `default-dict` feature).
static DICT_GZ: &[u8] = include_bytes!("../../assets/jieba/dict.txt.gz");

/// A segmenter with jieba's dictionary. The bytes are our own, checked by a
/// test, so a failure here is a broken build; it is logged and the texts
/// are then cut by the survey keywords alone rather than stopping a report.
fn dictionary() -> jieba_rs::Jieba {
    let mut reader = std::io::BufReader::new(flate2::read::GzDecoder::new(DICT_GZ));
    jieba_rs::Jieba::with_dict(&mut reader).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the embedded jieba dictionary did not load; free texts are cut by the survey keywords only");
        jieba_rs::Jieba::empty()
    })
}

/// The segmenter for a survey's keywords. Loading jieba's dictionary takes
/// far longer than cutting a month of texts, and every office's report of a
/// run sorts the same survey's texts, so each keyword list gets its
/// dictionary once per process (a deployment has a handful of surveys).
fn segmenter(keywords: Vec<String>) -> Arc<jieba_rs::Jieba> {
    static SEGMENTERS: OnceLock<Mutex<HashMap<Vec<String>, Arc<jieba_rs::Jieba>>>> = OnceLock::new();
    // Reports are built on several threads at once: the lock is held while
    // building so that they wait for one dictionary instead of each loading
    // its own. A poisoned lock only means another thread panicked mid-build;
    // the map is still consistent (an entry is inserted whole or not at all).
    let mut cache = SEGMENTERS.get_or_init(Mutex::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    cache
        .entry(keywords)
        .or_insert_with_key(|keywords| {
            let mut jieba = dictionary();
            for k in keywords {
                jieba.add_word(k, Some(100_000), None);
            }
            Arc::new(jieba)
        })
        .clone()
}

/// Sorts free texts into categories: each survey keyword is added to the
/// segmenter's dictionary so that "充电桩" stays one word, every text is cut
/// into words, and a text counts once for each category whose keywords it
/// contains. Segmenting first (rather than substring search over the whole
/// text) keeps "停车" from matching inside "暂停车辆登记".
pub fn sort_needs(texts: &[String], survey: &SurveyDef, categories: &[Category]) -> (Vec<NeedItem>, u64) {
    if survey.needs.is_empty() || texts.is_empty() {
        return (Vec::new(), texts.len() as u64);
    }
    let keywords: Vec<String> = survey.needs.iter().flat_map(|n| n.keywords.iter().cloned()).collect();
    let jieba = segmenter(keywords);
    let mut items: BTreeMap<String, NeedItem> = BTreeMap::new();
    let mut unsorted = 0;
    for t in texts {
        let words: BTreeSet<&str> = jieba.cut(t, true).into_iter().map(|tok| tok.word).collect();
        let mut matched = false;
        for need in &survey.needs {
            // A word containing a keyword counts ("停车位" for 停车); a keyword
            // straddling two words does not ("暂停|车辆").
            if need.keywords.iter().any(|k| words.iter().any(|w| w.contains(k.as_str()))) {
                matched = true;
                let item = items.entry(need.category.clone()).or_insert_with(|| NeedItem {
                    category: need.category.clone(),
                    name: categories
                        .iter()
                        .find(|c| c.code == need.category)
                        .map(|c| c.name.clone())
                        .unwrap_or_else(|| need.category.clone()),
                    count: 0,
                    examples: Vec::new(),
                });
                item.count += 1;
                if item.examples.len() < 3 && !item.examples.contains(t) {
                    item.examples.push(t.clone());
                }
            }
        }
        if !matched {
            unsorted += 1;
        }
    }
    let mut v: Vec<NeedItem> = items.into_values().collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.category.cmp(&b.category)));
    (v, unsorted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NeedDef, QuestionDef};
    use crate::model::{Answer, SurveyResponse};

    fn survey() -> SurveyDef {
        SurveyDef {
            id: "t".into(),
            title: "测试问卷".into(),
            questions: vec![
                QuestionDef {
                    id: "c".into(),
                    number: 1,
                    text: "社区".into(),
                    kind: QuestionKind::Community,
                    options: vec![],
                    satisfied: vec![],
                    rows: vec![],
                },
                QuestionDef {
                    id: "need".into(),
                    number: 2,
                    text: "最需要改进".into(),
                    kind: QuestionKind::Multi,
                    options: vec!["停车".into(), "电梯".into(), "其他".into()],
                    satisfied: vec![],
                    rows: vec![],
                },
                QuestionDef {
                    id: "m".into(),
                    number: 3,
                    text: "评价".into(),
                    kind: QuestionKind::Matrix,
                    options: vec!["满意".into(), "基本满意".into(), "不满意".into()],
                    satisfied: vec!["满意".into(), "基本满意".into()],
                    rows: vec!["环境".into(), "治安".into()],
                },
            ],
            needs: vec![
                NeedDef { category: "convenience".into(), keywords: vec!["停车".into(), "充电桩".into()] },
                NeedDef { category: "elderly_care".into(), keywords: vec!["养老".into(), "老人".into()] },
            ],
            reasons: Default::default(),
            channels: Default::default(),
        }
    }

    fn answer(q: &str, o: &str, skipped: bool) -> Answer {
        Answer { question: q.into(), option: o.into(), text: String::new(), skipped }
    }

    fn frame(rs: &[SurveyResponse]) -> LazyFrame {
        crate::store::responses_frame("wjx", rs, 1).expect("frame").lazy()
    }

    fn response(id: &str, answers: Vec<Answer>) -> SurveyResponse {
        SurveyResponse {
            response_id: id.into(),
            survey: "t".into(),
            submitted_at: chrono::NaiveDate::from_ymd_opt(2026, 10, 3).and_then(|d| d.and_hms_opt(9, 0, 0)).expect("time"),
            org_code: "369901001001".into(),
            answers,
        }
    }

    #[test]
    fn multi_select_shares_are_over_respondents_who_answered() {
        // A: 停车+电梯; B: 停车; C: skipped; D: 其他. Answered = 3 (not 4
        // respondents, not 4 selections): 停车 2/3, 电梯 1/3, 其他 1/3.
        let rs = vec![
            response(
                "A",
                vec![
                    answer("need", "停车", false),
                    answer("need", "电梯", false),
                    answer("m/环境", "满意", false),
                    answer("m/治安", "不满意", false),
                ],
            ),
            response("B", vec![answer("need", "停车", false), answer("m/环境", "基本满意", false), answer("m/治安", "", true)]),
            response("C", vec![answer("need", "", true), answer("m/环境", "不满意", false), answer("m/治安", "满意", false)]),
            response("D", vec![answer("need", "其他", false), answer("m/环境", "满意", false), answer("m/治安", "满意", false)]),
        ];
        let t = survey_tables(frame(&rs), "2026-10".parse().expect("period"), &survey(), &OrgTree::default(), &[], &Scope::default())
            .expect("tables");
        assert_eq!(t.responses, 4);
        let need = &t.questions[0];
        assert_eq!((need.answered, need.skipped), (3, 1));
        let shares: Vec<String> = need.options.iter().map(|(o, c, s)| format!("{o}:{c}:{s:.4}")).collect();
        assert_eq!(shares, ["停车:2:0.6667", "电梯:1:0.3333", "其他:1:0.3333"]);
        assert_eq!(need.satisfied_rate, None, "a multi-select has no 满意率");
        // Matrix rows are questions of their own: 环境 3 of 4 satisfied, 治安 2 of 3 (B skipped).
        let env = &t.questions[1];
        assert_eq!(
            (env.text.as_str(), env.answered, env.satisfied_rate.map(|r| format!("{r:.4}"))),
            ("评价（环境）", 4, Some("0.7500".into()))
        );
        let safety = &t.questions[2];
        assert_eq!((safety.answered, safety.skipped, safety.satisfied_rate.map(|r| format!("{r:.4}"))), (3, 1, Some("0.6667".into())));
    }

    #[test]
    fn the_published_questionnaire_figures() {
        // 230 responses: 161 满意, 60 基本满意, 9 不满意 → 70.0%, 26.1%, 3.9%; 满意率 96.1%.
        let mut def = survey();
        def.questions[2].rows = vec!["总体".into()];
        let mut rs = Vec::new();
        for (i, opt) in
            std::iter::repeat_n("满意", 161).chain(std::iter::repeat_n("基本满意", 60)).chain(std::iter::repeat_n("不满意", 9)).enumerate()
        {
            rs.push(response(&i.to_string(), vec![answer("m/总体", opt, false)]));
        }
        let t = survey_tables(frame(&rs), "2026-10".parse().expect("period"), &def, &OrgTree::default(), &[], &Scope::default())
            .expect("tables");
        let q = t.questions.iter().find(|q| q.id == "m/总体").expect("row");
        let shown: Vec<String> = q.options.iter().map(|(o, _, s)| format!("{o} {:.1}%", s * 100.0)).collect();
        assert_eq!(shown, ["满意 70.0%", "基本满意 26.1%", "不满意 3.9%"]);
        assert_eq!(q.satisfied_rate.map(|r| format!("{:.1}%", r * 100.0)), Some("96.1%".into()));
    }

    #[test]
    fn the_embedded_dictionary_is_jiebas() {
        // jieba-rs's own documented example, and the cut the needs rely on.
        let words: Vec<&str> = dictionary().cut("我们中出了一个叛徒", false).into_iter().map(|t| t.word).collect();
        assert_eq!(words, ["我们", "中", "出", "了", "一个", "叛徒"]);
        let words: Vec<&str> = dictionary().cut("暂停车辆登记", true).into_iter().map(|t| t.word).collect();
        assert_eq!(words, ["暂停", "车辆", "登记"]);
    }

    #[test]
    fn needs_are_sorted_by_segmented_keywords() {
        let texts: Vec<String> =
            ["希望增加停车位和充电桩", "小区老人需要助餐", "暂停车辆登记太麻烦", "楼道灯坏了"].iter().map(|s| s.to_string()).collect();
        let (needs, unsorted) = sort_needs(&texts, &survey(), &[]);
        let got: Vec<(String, u64)> = needs.iter().map(|n| (n.category.clone(), n.count)).collect();
        assert_eq!(got, [("convenience".to_string(), 1), ("elderly_care".to_string(), 1)]);
        // "暂停车辆" must not count as 停车; it and the lamp stay unsorted.
        assert_eq!(unsorted, 2);
    }

    #[test]
    fn a_keyword_list_loads_its_dictionary_once() {
        let words = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
        let a = segmenter(words(&["充电桩", "助餐"]));
        let b = segmenter(words(&["充电桩", "助餐"]));
        assert!(Arc::ptr_eq(&a, &b), "the second report of a run reuses the first one's dictionary");
        let other = segmenter(words(&["加装电梯"]));
        assert!(!Arc::ptr_eq(&a, &other), "another survey's keywords get their own");
        // Each dictionary knows only its own survey's words.
        let cut = |j: &jieba_rs::Jieba, t: &str| j.cut(t, true).into_iter().map(|tok| tok.word.to_string()).collect::<Vec<_>>();
        assert!(cut(&a, "希望增加充电桩").contains(&"充电桩".to_string()));
        assert!(cut(&other, "老楼加装电梯").contains(&"加装电梯".to_string()));
    }
}
