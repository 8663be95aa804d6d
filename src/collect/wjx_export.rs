//! 问卷星 (wjx) "按文本" exports: six leading columns (序号, 提交答卷时间,
//! 所用时间, 来源, 来源详情, 来自IP), then one column per question headed
//! "N、题干". The survey's `survey.toml` maps question numbers to ids.
//!
//! Skipped answers ("(跳过)", -2, -3) are kept as skipped, never as zero or as
//! an empty option, because the denominator of every share is those who
//! answered.

use super::rating_file::earliest_plausible;
use super::table::clip;
use super::{CollectError, Parsed, Table, parse_timestamp_in};
use crate::config::{Config, QuestionDef, QuestionKind, SourceConfig, SurveyDef};
use crate::model::{Answer, SurveyResponse};
// Open answers enter curated masked; landing keeps the raw export.
use crate::privacy::mask;
use crate::store::QuarantineRow;

/// Splits "其他〖加装电梯〗" into ("其他", "加装电梯").
fn split_fill_in(cell: &str) -> (&str, &str) {
    match (cell.find('〖'), cell.rfind('〗')) {
        (Some(a), Some(b)) if b > a => (&cell[..a], &cell[a + '〖'.len_utf8()..b]),
        _ => (cell, ""),
    }
}

fn is_skipped(cell: &str) -> bool {
    matches!(cell.trim(), "" | "(跳过)" | "（跳过）" | "-2" | "-3")
}

/// Finds the column of question `number`: a header starting with "N、".
/// Two such columns make the file ambiguous: the error says which.
fn question_column(table: &Table, number: u32) -> Result<Option<usize>, String> {
    let prefix = format!("{number}、");
    let found: Vec<usize> = table.headers.iter().enumerate().filter(|(_, h)| h.starts_with(&prefix)).map(|(i, _)| i).collect();
    if found.len() > 1 {
        let cols = found.iter().map(|i| format!("第{}列“{}”", i + 1, clip(&table.headers[*i]))).collect::<Vec<_>>().join("、");
        return Err(format!("第{number}题有{}列（{cols}），无法确定应读哪一列；请删除多余的列后重新提交", found.len()));
    }
    Ok(found.first().copied())
}

/// Finds the column of a matrix row: "第N题(行标题)", with ASCII or full-width brackets.
fn matrix_column(table: &Table, number: u32, row: &str) -> Option<usize> {
    let (a, b) = (format!("第{number}题({row})"), format!("第{number}题（{row}）"));
    table.headers.iter().position(|h| *h == a || *h == b)
}

/// The columns of each question: one, or one per row of a matrix, each with
/// the id its answers are stored under.
type QuestionColumns<'s> = Vec<(&'s QuestionDef, Vec<(String, usize)>)>;

/// Parses a 问卷星 export for the survey of `source`.
pub fn parse_wjx_export(cfg: &Config, source: &SourceConfig, file: &str, table: &Table) -> Result<Parsed, CollectError> {
    let survey_id = source.survey.as_deref().unwrap_or_default();
    let survey: &SurveyDef = cfg
        .surveys
        .get(survey_id)
        .ok_or_else(|| CollectError::BadFile { file: file.into(), reason: format!("问卷“{survey_id}”未定义") })?;
    let bad = |reason: String| CollectError::BadFile { file: file.into(), reason };
    let id_col = table.column(&["序号"]).ok_or_else(|| bad("不是问卷星导出文件：缺少“序号”列".into()))?;
    let time_col = table.column(&["提交答卷时间"]).ok_or_else(|| bad("不是问卷星导出文件：缺少“提交答卷时间”列".into()))?;
    for c in [id_col, time_col] {
        if let Some(why) = table.ambiguous(c) {
            return Err(bad(why));
        }
    }
    let cols = question_columns(table, survey).map_err(bad)?;
    let mut parsed = Parsed { headers: table.headers.clone(), encoding: table.encoding, ..Default::default() };
    // Answers dated more than a day ahead are clock errors, as for ratings.
    let latest_ok = chrono::Utc::now().with_timezone(&cfg.tz).naive_local() + chrono::Duration::days(1);
    let layout = Layout { survey, id_col, time_col, cols: &cols, latest_ok };
    for (line, cells) in &table.rows {
        parsed.rows_read += 1;
        match parse_response(cfg, &layout, *line, super::table::Row::of(cells)) {
            Ok(r) => parsed.responses.push(r),
            Err(q) => parsed.rejected.push(q),
        }
    }
    Ok(parsed)
}

/// Each question's columns, or why the file does not fit the survey.
fn question_columns<'s>(table: &Table, survey: &'s SurveyDef) -> Result<QuestionColumns<'s>, String> {
    let mut cols: QuestionColumns<'s> = Vec::new();
    for q in &survey.questions {
        if q.kind == QuestionKind::Matrix {
            let mut v = Vec::new();
            for row in &q.rows {
                let c = matrix_column(table, q.number, row)
                    .ok_or_else(|| format!("缺少第{}题矩阵行“{row}”的列（表头应为“第{}题({row})”）", q.number, q.number))?;
                if let Some(why) = table.ambiguous(c) {
                    return Err(why);
                }
                v.push((format!("{}/{row}", q.id), c));
            }
            cols.push((q, v));
        } else {
            let c = question_column(table, q.number)?.ok_or_else(|| format!("缺少第{}题（“{}、{}”）的列", q.number, q.number, q.text))?;
            cols.push((q, vec![(q.id.clone(), c)]));
        }
    }
    Ok(cols)
}

/// Where a response's parts are in the export.
struct Layout<'a, 's> {
    survey: &'s SurveyDef,
    id_col: usize,
    time_col: usize,
    cols: &'a QuestionColumns<'s>,
    latest_ok: chrono::NaiveDateTime,
}

/// One row of the export as a response, or the row quarantined with why.
fn parse_response(
    cfg: &Config,
    layout: &Layout<'_, '_>,
    line: usize,
    cells: super::table::Row<'_>,
) -> Result<SurveyResponse, QuarantineRow> {
    let cell = |i: usize| super::table::cell(cells, i);
    let reject = |field: &str, reason: String| QuarantineRow { line, field: field.into(), reason, values: super::table::cells(cells) };
    let id = cell(layout.id_col);
    if id.is_empty() {
        return Err(reject("序号", "序号为空".into()));
    }
    let raw_time = cell(layout.time_col);
    let submitted_at =
        parse_timestamp_in(raw_time, cfg.tz).ok_or_else(|| reject("提交答卷时间", format!("提交答卷时间“{}”无法识别", clip(raw_time))))?;
    if submitted_at < earliest_plausible() || submitted_at > layout.latest_ok {
        return Err(reject("提交答卷时间", format!("提交答卷时间“{raw_time}”早于2000-01-01或晚于采集时间，不是可信的日期")));
    }
    let mut org_code = None;
    let mut answers = Vec::new();
    for (q, qcols) in layout.cols {
        let field = format!("{}、{}", q.number, q.text);
        for (qid, c) in qcols {
            let raw = cell(*c);
            if q.kind == QuestionKind::Community {
                let unit = cfg.orgs.resolve_rated_unit(raw).map_err(|e| reject(&field, clip(&e).into_owned()))?;
                org_code = Some(unit.code.clone());
                continue;
            }
            answers.extend(
                answers_of(q, qid, raw)
                    .map_err(|opt| reject(&field, format!("选项“{}”不是该题的选项（{}）", clip(&opt), q.options.join("/"))))?,
            );
        }
    }
    Ok(SurveyResponse {
        response_id: id.into(),
        survey: layout.survey.id.clone(),
        submitted_at,
        org_code: org_code.unwrap_or_default(),
        answers,
    })
}

/// The answers of one cell (a multi-select cell holds several); `Err` with
/// the text that is not an option of the question.
fn answers_of(q: &QuestionDef, qid: &str, raw: &str) -> Result<Vec<Answer>, String> {
    let answer =
        |option: &str, text: &str, skipped: bool| Answer { question: qid.into(), option: option.into(), text: mask(text).into(), skipped };
    if is_skipped(raw) {
        return Ok(vec![answer("", "", true)]);
    }
    let chosen = |part: &str| {
        let (opt, fill) = split_fill_in(part);
        if q.options.iter().any(|o| o == opt) { Ok(answer(opt, fill, false)) } else { Err(opt.to_string()) }
    };
    match q.kind {
        QuestionKind::Single | QuestionKind::Matrix => Ok(vec![chosen(raw)?]),
        // The text export joins the chosen options with ┋.
        QuestionKind::Multi => raw.split('┋').map(str::trim).filter(|p| !p.is_empty()).map(chosen).collect(),
        QuestionKind::Text => {
            let text = if raw == "(空)" { "" } else { raw };
            Ok(vec![answer("", text, text.is_empty())])
        }
        QuestionKind::Community => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_in_text_is_split_from_its_option() {
        assert_eq!(split_fill_in("其他〖加装电梯〗"), ("其他", "加装电梯"));
        assert_eq!(split_fill_in("满意"), ("满意", ""));
        assert!(is_skipped("(跳过)") && is_skipped("-3") && !is_skipped("满意"));
    }
}
