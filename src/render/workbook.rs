//! The detail tables as an XLSX attachment, one sheet per table.
//!
//! The workbook's creation time is the report's as-of time, never the clock,
//! so a rerun for an inspection gives the same bytes.

use super::{RenderError, ReportKind, ReportView, mask_personal};
use crate::aggregate::Row;
use chrono::{Datelike, NaiveDateTime, Timelike};
use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, Workbook, Worksheet, XlsxError};

/// Excel's limit on a cell's text, in UTF-16 code units (what rust_xlsxwriter
/// checks). A longer resident comment made the whole workbook fail, and with it
/// every office's report of the run.
const CELL_MAX_UTF16: usize = 32_767;

/// The marker that ends a cell cut to Excel's limit, so a reader knows the
/// text goes on (the full text stays in the store and the landing copy).
const CUT_MARKER: &str = "…（超出Excel单元格长度，已截断）";

/// `text` as Excel can hold it: whole if it fits, otherwise cut on a
/// character boundary with [`CUT_MARKER`] appended, the result within the limit.
pub(crate) fn cell_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.encode_utf16().count() <= CELL_MAX_UTF16 {
        return std::borrow::Cow::Borrowed(text);
    }
    let budget = CELL_MAX_UTF16 - CUT_MARKER.encode_utf16().count();
    let mut used = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if used + c.len_utf16() > budget {
            break;
        }
        used += c.len_utf16();
        end = i + c.len_utf8();
    }
    std::borrow::Cow::Owned(format!("{}{CUT_MARKER}", &text[..end]))
}

fn xerr(e: XlsxError) -> RenderError {
    RenderError::Workbook(e.to_string())
}

fn header(ws: &mut Worksheet, cols: &[&str], bold: &Format) -> Result<(), XlsxError> {
    for (c, h) in cols.iter().enumerate() {
        ws.write_string_with_format(0, c as u16, *h, bold)?;
        ws.set_column_width(c as u16, if c == 0 { 16 } else { 12 })?;
    }
    ws.set_freeze_panes(1, 0)?;
    Ok(())
}

/// Writes a rate or a score of a cell of `n` ratings; a cell without ratings
/// has neither and gets "—", as in the mail. `format` is the cell's own; a
/// rate in a column of [`pct_columns`] takes the column's and passes `None`.
fn figure(ws: &mut Worksheet, row: u32, col: u16, n: u64, v: f64, format: Option<&Format>) -> Result<(), XlsxError> {
    match (n, format) {
        (0, _) => ws.write_string(row, col, super::NO_DATA).map(|_| ()),
        (_, Some(f)) => ws.write_number_with_format(row, col, v, f).map(|_| ()),
        (_, None) => ws.write_number(row, col, v).map(|_| ()),
    }
}

/// Gives `cols` the percentage format as a column format. A number written
/// to such a column without a format of its own takes the column's (Excel's
/// rule, which rust_xlsxwriter applies when it writes the cell), so the cells
/// come out with the same style index as when each was written with `pct`.
/// Why not per cell: rust_xlsxwriter finds a cell format's index by hashing
/// the whole `Format` with SipHash, every cell again; that was 12 % of
/// building a report (a section's 6,000 差评 rows, 8 rates each).
fn pct_columns(ws: &mut Worksheet, cols: &[u16], pct: &Format) -> Result<(), XlsxError> {
    for &c in cols {
        ws.set_column_format(c, pct)?;
    }
    Ok(())
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn rows_sheet(wb: &mut Workbook, name: &str, first: &str, rows: &[Row], bold: &Format, pct: &Format) -> Result<(), XlsxError> {
    let ws = wb.add_worksheet().set_name(name)?;
    header(
        ws,
        &[
            first,
            "代码",
            "上级",
            "评价数n",
            "满意率",
            "95%下限",
            "95%上限",
            "好评率",
            "差评率",
            "满意度得分",
            "上期满意率",
            "变化(百分点)",
            "变化显著",
            "排名",
            "样本不足",
            "排名得分(收缩后)",
            "主动评价数",
            "默认评价数",
            "主动评价率",
            "追评数",
            "回访满意度",
            "追评缺首评",
        ],
        bold,
    )?;
    pct_columns(ws, &[4, 5, 6, 7, 8, 10, 18, 20], pct)?;
    for (i, r) in rows.iter().enumerate() {
        let row = (i + 1) as u32;
        let s = &r.stats;
        ws.write_string(row, 0, cell_text(&r.name))?;
        ws.write_string(row, 1, cell_text(&r.code))?;
        ws.write_string(row, 2, cell_text(&r.parent))?;
        ws.write_number(row, 3, s.n as f64)?;
        for (c, v) in [(4u16, s.satisfied_rate), (5, s.satisfied_lo), (6, s.satisfied_hi), (7, s.good_rate), (8, s.bad_rate)] {
            figure(ws, row, c, s.n, v, None)?;
        }
        figure(ws, row, 10, r.previous.n, r.previous.satisfied_rate, None)?;
        figure(ws, row, 9, s.n, round1(s.score), None)?;
        // A change needs both periods.
        figure(ws, row, 11, s.n.min(r.previous.n), round1(r.change_pp), None)?;
        ws.write_string(row, 12, if r.significant { "是" } else { "" })?;
        if let Some(rank) = r.rank {
            ws.write_number(row, 13, rank as f64)?;
        }
        ws.write_string(row, 14, if r.low_n { "是" } else { "" })?;
        // Shown apart from the rates: 主动/默认评价 and the second evaluations.
        let a = &r.apart;
        ws.write_number(row, 15, r.shrunk)?;
        ws.write_number(row, 16, a.active as f64)?;
        ws.write_number(row, 17, a.default as f64)?;
        figure(ws, row, 18, a.active + a.default, a.active_rate, None)?;
        ws.write_number(row, 19, a.second.n as f64)?;
        figure(ws, row, 20, a.second.n, a.second.satisfied_rate, None)?;
        ws.write_number(row, 21, a.orphan_second as f64)?;
    }
    Ok(())
}

/// The offices ranked among themselves (leadership) and the watch list
/// (连续落后): one row per unit, its run and its monthly ranks.
fn watch_sheets(wb: &mut Workbook, r: &crate::aggregate::RatingTables, bold: &Format, pct: &Format) -> Result<(), XlsxError> {
    if !r.offices.is_empty() {
        rows_sheet(wb, "责任单位", "责任单位", &r.offices, bold, pct)?;
    }
    let watch = &r.watch;
    if watch.is_empty() {
        return Ok(());
    }
    let ws = wb.add_worksheet().set_name("连续落后")?;
    let months: Vec<String> = watch.first().map(|e| e.history.iter().map(|h| h.month.clone()).collect()).unwrap_or_default();
    let mut cols: Vec<&str> = vec!["单位", "层级", "上级", "连续落后期数"];
    cols.extend(months.iter().map(String::as_str));
    header(ws, &cols, bold)?;
    for (i, e) in watch.iter().enumerate() {
        let row = (i + 1) as u32;
        ws.write_string(row, 0, cell_text(&e.name))?;
        ws.write_string(row, 1, e.level)?;
        ws.write_string(row, 2, cell_text(&e.parent))?;
        ws.write_number(row, 3, e.periods as f64)?;
        for (c, h) in e.history.iter().enumerate() {
            let text = match h.rank {
                Some(k) => format!("{k}/{}{}", h.ranked, if h.behind { " 落后" } else { "" }),
                None => super::NO_DATA.to_string(),
            };
            ws.write_string(row, 4 + c as u16, text)?;
        }
    }
    Ok(())
}

/// Builds the workbook of a report; `created` is the as-of time (local).
pub fn workbook(view: &ReportView, created: NaiveDateTime) -> Result<Vec<u8>, RenderError> {
    build(view, created).map_err(xerr)
}

fn build(view: &ReportView, created: NaiveDateTime) -> Result<Vec<u8>, XlsxError> {
    let mut wb = Workbook::new();
    // zlib level 6 (the default) took 16 ms to compress the 8.5 MB of sheet
    // XML of a province's leadership workbook. Level 2 (zlib-rs's fast
    // deflate, no lazy matches) took 4.3 ms for 1.30 MB instead of 1.04 MB;
    // level 1 took 2.7 ms but gave 1.72 MB, which every recipient downloads.
    wb.set_zip_compression_level(2);
    let when = ExcelDateTime::from_ymd(created.year() as u16, created.month() as u8, created.day() as u8)?.and_hms(
        created.hour() as u16,
        created.minute() as u8,
        created.second() as f64,
    )?;
    wb.set_properties(&DocProperties::new().set_title(&view.subject).set_author(&view.organisation).set_creation_datetime(&when));
    let bold = Format::new().set_bold();
    let pct = Format::new().set_num_format("0.0%");
    let r = &view.ratings;
    overall_sheet(&mut wb, view, &bold, &pct)?;
    if view.kind == ReportKind::Leadership {
        rows_sheet(&mut wb, "各区", "区县", &r.districts, &bold, &pct)?;
        rows_sheet(&mut wb, "各街道", "街道", &r.streets, &bold, &pct)?;
    }
    rows_sheet(&mut wb, "各社区", "社区", &r.communities, &bold, &pct)?;
    watch_sheets(&mut wb, r, &bold, &pct)?;
    rows_sheet(&mut wb, "服务类别", "服务类别", &r.categories, &bold, &pct)?;
    cross_sheet(&mut wb, r, &bold, &pct)?;
    trend_sheet(&mut wb, r, &bold, &pct)?;
    if view.kind == ReportKind::Office {
        bad_list_sheet(&mut wb, view, &bold)?;
    }
    if let Some(survey) = &view.survey {
        survey_sheet(&mut wb, survey, &bold, &pct)?;
    }
    if view.kind == ReportKind::Leadership {
        bursts_sheet(&mut wb, view, &bold)?;
    }
    wb.save_to_buffer()
}

/// 总体: the headline figures against the previous period, and what the report is.
fn overall_sheet(wb: &mut Workbook, view: &ReportView, bold: &Format, pct: &Format) -> Result<(), XlsxError> {
    let r = &view.ratings;
    let ws = wb.add_worksheet().set_name("总体")?;
    header(ws, &["指标", "本期", "上期"], bold)?;
    let (cur_n, prev_n) = (r.total.n, r.previous.n);
    ws.write_string(1, 0, "评价数n")?;
    ws.write_number(1, 1, cur_n as f64)?;
    ws.write_number(1, 2, prev_n as f64)?;
    let lines: [(&str, f64, f64, bool); 6] = [
        ("满意率", r.total.satisfied_rate, r.previous.satisfied_rate, true),
        ("满意率95%下限", r.total.satisfied_lo, r.previous.satisfied_lo, true),
        ("满意率95%上限", r.total.satisfied_hi, r.previous.satisfied_hi, true),
        ("好评率", r.total.good_rate, r.previous.good_rate, true),
        ("差评率", r.total.bad_rate, r.previous.bad_rate, true),
        ("满意度得分", r.total.score, r.previous.score, false),
    ];
    for (i, (name, cur, prev, is_pct)) in lines.iter().enumerate() {
        let row = (i + 2) as u32;
        ws.write_string(row, 0, *name)?;
        let format = is_pct.then_some(pct);
        figure(ws, row, 1, cur_n, *cur, format)?;
        figure(ws, row, 2, prev_n, *prev, format)?;
    }
    ws.write_string(9, 0, "统计期")?;
    ws.write_string(9, 1, &view.period_label)?;
    ws.write_string(10, 0, "数据截至")?;
    ws.write_string(10, 1, &view.footer.as_of)?;
    ws.write_string(11, 0, "报告编号")?;
    ws.write_string(11, 1, &view.footer.report_id)?;
    Ok(())
}

/// 社区×服务类别: every cell of the cross table.
fn cross_sheet(wb: &mut Workbook, r: &crate::aggregate::RatingTables, bold: &Format, pct: &Format) -> Result<(), XlsxError> {
    let ws = wb.add_worksheet().set_name("社区×服务类别")?;
    header(ws, &["社区代码", "服务类别", "评价数n", "满意率", "95%下限", "95%上限", "差评率", "满意度得分", "样本不足"], bold)?;
    pct_columns(ws, &[3, 4, 5, 6], pct)?;
    for (i, c) in r.cross.iter().enumerate() {
        let row = (i + 1) as u32;
        ws.write_string(row, 0, cell_text(&c.community))?;
        ws.write_string(row, 1, cell_text(&c.category))?;
        ws.write_number(row, 2, c.stats.n as f64)?;
        for (col, v) in [(3u16, c.stats.satisfied_rate), (4, c.stats.satisfied_lo), (5, c.stats.satisfied_hi), (6, c.stats.bad_rate)] {
            figure(ws, row, col, c.stats.n, v, None)?;
        }
        figure(ws, row, 7, c.stats.n, round1(c.stats.score), None)?;
        ws.write_string(row, 8, if c.low_n { "是" } else { "" })?;
    }
    Ok(())
}

/// 近12个月: the trend.
fn trend_sheet(wb: &mut Workbook, r: &crate::aggregate::RatingTables, bold: &Format, pct: &Format) -> Result<(), XlsxError> {
    let ws = wb.add_worksheet().set_name("近12个月")?;
    header(ws, &["月份", "评价数n", "满意率", "好评率", "差评率", "满意度得分"], bold)?;
    pct_columns(ws, &[2, 3, 4], pct)?;
    for (i, (m, s)) in r.trend.iter().enumerate() {
        let row = (i + 1) as u32;
        ws.write_string(row, 0, m)?;
        ws.write_number(row, 1, s.n as f64)?;
        for (col, v) in [(2u16, s.satisfied_rate), (3, s.good_rate), (4, s.bad_rate)] {
            figure(ws, row, col, s.n, v, None)?;
        }
        figure(ws, row, 5, s.n, round1(s.score), None)?;
    }
    Ok(())
}

/// 差评清单: an office's 差评 with their deadlines, comments masked.
fn bad_list_sheet(wb: &mut Workbook, view: &ReportView, bold: &Format) -> Result<(), XlsxError> {
    let ws = wb.add_worksheet().set_name("差评清单")?;
    header(ws, &["评价编号", "评价时间", "社区", "服务类别", "等级", "评价内容", "整改期限", "状态", "逾期"], bold)?;
    for (i, b) in view.bad_list.iter().enumerate() {
        let row = (i + 1) as u32;
        ws.write_string(row, 0, cell_text(&b.rating.rating_id))?;
        ws.write_string(row, 1, b.rating.rated_at.format("%Y-%m-%d %H:%M").to_string())?;
        ws.write_string(row, 2, cell_text(&b.community))?;
        ws.write_string(row, 3, cell_text(&b.category_name))?;
        ws.write_string(row, 4, if b.rating.level == 1 { "非常不满意" } else { "不满意" })?;
        ws.write_string(row, 5, cell_text(&mask_personal(&b.rating.comment)))?;
        ws.write_string(row, 6, b.rating.deadline.format("%Y-%m-%d").to_string())?;
        ws.write_string(row, 7, cell_text(&b.rating.status))?;
        ws.write_string(row, 8, if b.rating.overdue { "逾期" } else { "" })?;
    }
    Ok(())
}

/// 问卷: each question's options with counts, shares of those who answered
/// and the share's 95% Wilson interval, and the question's 满意率.
fn survey_sheet(wb: &mut Workbook, survey: &crate::aggregate::SurveyTables, bold: &Format, pct: &Format) -> Result<(), XlsxError> {
    let ws = wb.add_worksheet().set_name("问卷")?;
    header(ws, &["题目", "作答人数", "跳过人数", "选项", "人数", "占比", "95%下限", "95%上限", "满意率"], bold)?;
    pct_columns(ws, &[5, 6, 7, 8], pct)?;
    let mut row = 1u32;
    for q in &survey.questions {
        for (option, count, share) in &q.options {
            let (lo, hi) = crate::aggregate::wilson(*count, q.answered);
            ws.write_string(row, 0, cell_text(&q.text))?;
            ws.write_number(row, 1, q.answered as f64)?;
            ws.write_number(row, 2, q.skipped as f64)?;
            ws.write_string(row, 3, cell_text(option))?;
            ws.write_number(row, 4, *count as f64)?;
            for (col, v) in [(5u16, *share), (6, lo), (7, hi)] {
                figure(ws, row, col, q.answered, v, None)?;
            }
            if let Some(rate) = q.satisfied_rate {
                figure(ws, row, 8, q.answered, rate, None)?;
            }
            row += 1;
        }
    }
    Ok(())
}

/// The 疑似刷评复核 sheet of the leadership workbook: every rating a burst
/// rule flagged, with the rule and its run. The ratings stay in the figures.
fn bursts_sheet(wb: &mut Workbook, view: &ReportView, bold: &Format) -> Result<(), XlsxError> {
    let ws = wb.add_worksheet().set_name("疑似刷评复核")?;
    header(ws, &["评价编号", "评价时间", "社区", "街道", "渠道", "规则", "连串条数", "阈值", "连串起止"], bold)?;
    let s = &view.scrutiny;
    for (i, f) in s.flagged.iter().enumerate() {
        let row = (i + 1) as u32;
        ws.write_string(row, 0, cell_text(&f.rating_id))?;
        ws.write_string(row, 1, &f.rated_at)?;
        ws.write_string(row, 2, cell_text(&f.community))?;
        ws.write_string(row, 3, cell_text(&f.street))?;
        ws.write_string(row, 4, cell_text(&f.channel))?;
        ws.write_string(row, 5, &f.rule)?;
        ws.write_number(row, 6, f.run_size as f64)?;
        ws.write_number(row, 7, f.threshold as f64)?;
        ws.write_string(row, 8, &f.run)?;
    }
    // The rules under the list, so the sheet explains itself when forwarded.
    let below = s.flagged.len() as u32 + 2;
    let note = match (s.flagged.is_empty(), s.burst_rules.is_empty()) {
        (_, true) => "疑似刷评检测未启用（[bursts] enabled = false）。",
        (true, false) => "本期未发现疑似刷评。",
        (false, false) => "以上评价仍计入各项指标，仅供复核。",
    };
    ws.write_string(below, 0, note)?;
    for (k, rule) in s.burst_rules.iter().enumerate() {
        ws.write_string(below + 1 + k as u32, 0, rule)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_longer_than_excel_allows_is_cut_with_a_marker() {
        let short = "服务很好";
        assert_eq!(cell_text(short), short);
        // 40,000 CJK characters (one UTF-16 unit each) and an emoji (two units)
        // straddling the cut: the result must fit and end with the marker.
        let long = format!("{}😀{}", "差".repeat(32_740), "评".repeat(8_000));
        let cut = cell_text(&long);
        assert!(cut.encode_utf16().count() <= CELL_MAX_UTF16, "{}", cut.encode_utf16().count());
        assert!(cut.ends_with(CUT_MARKER));
        assert!(cut.starts_with(&"差".repeat(32_740)));
        // rust_xlsxwriter accepts it.
        let mut wb = Workbook::new();
        let ws = wb.add_worksheet();
        assert!(ws.write_string(0, 0, cut.as_ref()).is_ok());
        assert!(ws.write_string(1, 0, long.as_str()).is_err(), "the uncut text must be what Excel refuses");
    }
}
