//! Hostile and damaged inbox files (issue 13, items 2, 3, 8–12): each must
//! stop or quarantine with a reason a clerk can act on, never pass silently,
//! never panic, and never echo megabytes back.

use crate::support::Deployment;

const HEAD: &str = "办件编号,评价次数,评价时间,区划代码,服务类别,评价渠道,满意度,文字评价,整改状态\n";

fn row(no: usize, comment: &str) -> String {
    format!("H{no:03},1,2026-10-03 09:{no:02}:00,369901001001,政务办事,1,5,{comment},\n")
}

fn reason(d: &Deployment, file: &str) -> String {
    std::fs::read_to_string(d.dir.join(format!("inbox/ratings/rejected/{file}.reason.txt")))
        .unwrap_or_else(|e| panic!("{file} should be in rejected/ with a reason: {e}"))
}

fn stored(d: &Deployment) -> i64 {
    d.count("SELECT COUNT(*) FROM record_keys WHERE kind = 'ratings'")
}

#[test]
fn a_stray_quote_that_swallows_rows_stops_the_file_naming_the_line() {
    let d = Deployment::small();
    // Eight data rows; the third one's comment opens a quote that never closes,
    // which made the CSV reader read rows 4–8 into that comment.
    let mut csv = HEAD.to_string();
    for no in 1..=8 {
        csv.push_str(&row(no, if no == 3 { "\"窗口人员态度差" } else { "" }));
    }
    d.file("inbox/ratings/quote.csv", &csv);
    let ran = d.manyi(&["collect"]).code(1);
    let err = ran.stderr();
    assert!(err.contains("quote.csv"), "the failure names the file:\n{err}");
    let why = reason(&d, "quote.csv");
    // The row with the stray quote is physical line 4 (the header is line 1).
    assert!(why.contains("第4行") && why.contains("文字评价") && why.contains("引号"), "{why}");
    assert_eq!(stored(&d), 0, "nothing of a file whose rows ran together is stored");
}

#[test]
fn a_legitimate_multi_line_comment_is_still_read() {
    let d = Deployment::small();
    let csv = format!("{HEAD}{}{}{}", row(1, ""), row(2, "\"第一行，\n第二行（排队久）\""), row(3, ""));
    d.file("inbox/ratings/multi.csv", &csv);
    d.manyi(&["collect"]).success();
    assert_eq!(stored(&d), 3);
}

#[test]
fn duplicate_column_names_stop_the_file_with_the_header_named() {
    let d = Deployment::small();
    let csv = "办件编号,评价次数,评价时间,区划代码,服务类别,评价渠道,满意度,文字评价,满意度\n\
               D001,1,2026-10-03 09:00:00,369901001001,政务办事,1,1,,5\n";
    d.file("inbox/ratings/dup.csv", csv);
    let err = d.manyi(&["collect"]).code(1).stderr();
    assert!(err.contains("dup.csv"), "{err}");
    let why = reason(&d, "dup.csv");
    assert!(why.contains("“满意度”") && why.contains("第7列") && why.contains("第9列"), "{why}");
    assert_eq!(stored(&d), 0);
}

#[test]
fn implausible_dates_are_quarantined_at_ingest() {
    let d = Deployment::small();
    let head = "办件编号,评价次数,评价时间,区划代码,服务类别,评价渠道,满意度,文字评价,整改状态,整改完成时间\n";
    let csv = format!(
        "{head}\
         T001,1,0001-01-01 00:00:00,369901001001,政务办事,1,1,,已整改,2026-10-05 10:00:00\n\
         T002,1,1999-12-31 23:59:59,369901001001,政务办事,1,1,,已整改,2026-10-05 10:00:00\n\
         T003,1,2026-10-03 09:00:00,369901001001,政务办事,1,1,,已整改,9999-12-31 00:00:00\n\
         T004,1,2026-10-03 09:00:00,369901001001,政务办事,1,1,,已整改,0001-01-01 00:00:00\n\
         T005,1,2026-10-03 09:00:00,369901001001,政务办事,1,1,,已整改,2026-10-05 10:00:00\n"
    );
    d.file("inbox/ratings/dates.csv", &csv);
    // Four of five rows are bad on purpose: more than max_quarantine_share's 5%.
    crate::loud::allow_quarantine(&d, 1.0);
    d.manyi(&["collect"]).success();
    assert_eq!(stored(&d), 1, "only the plausible rating is stored");
    let qdir = d.dir.join("data/quarantine/office-drop");
    let qfile = std::fs::read_dir(&qdir).expect("quarantine dir").next().expect("a quarantine file").expect("entry").path();
    let q = std::fs::read_to_string(&qfile).expect("quarantine");
    let lines: Vec<&str> = q.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(lines.len(), 5, "header + 4 rows:\n{q}");
    assert!(lines[1].starts_with("2,rated_at,") && lines[1].contains("2000-01-01"), "{}", lines[1]);
    assert!(lines[2].starts_with("3,rated_at,"), "{}", lines[2]);
    assert!(lines[3].starts_with("4,rectified_at,") && lines[3].contains("9999-12-31"), "{}", lines[3]);
    assert!(lines[4].starts_with("5,rectified_at,"), "{}", lines[4]);
}

#[test]
fn a_huge_period_is_an_error_naming_it_not_a_panic() {
    let d = Deployment::small();
    d.manyi(&["collect"]).success();
    for args in [&["figures", "--period", "179000000-01"][..], &["run", "monthly-report", "--period", "179000000-01"]] {
        let ran = d.manyi(args);
        let err = ran.stderr();
        assert_ne!(ran.out.status.code(), Some(101), "{args:?} panicked:\n{err}");
        assert!(!ran.out.status.success(), "{args:?} must fail");
        assert!(err.contains("179000000-01") && !err.contains("panicked"), "{args:?}:\n{err}");
    }
    assert_eq!(d.count("SELECT COUNT(*) FROM runs WHERE outcome = 'running'"), 0, "no ledger row is left running");
}

#[test]
fn a_huge_header_line_is_not_echoed_whole() {
    let d = Deployment::small();
    let header = format!("编号,{}\n1,2\n", "表".repeat(1_000_000));
    d.file("inbox/ratings/wide.csv", &header);
    let ran = d.manyi(&["collect"]);
    let why = reason(&d, "wide.csv");
    assert!(why.len() < 2_000, "reason.txt holds {} bytes: {}…", why.len(), why.chars().take(300).collect::<String>());
    assert!(why.contains("缺少必需的列") && why.contains("字节"), "{why}");
    let (out, err) = (ran.stdout(), ran.stderr());
    assert!(out.len() + err.len() < 10_000, "{} bytes of output and log", out.len() + err.len());
}

#[test]
fn a_utf8_file_with_one_invalid_byte_says_where_and_what_was_tried() {
    let d = Deployment::small();
    let mut bytes = format!("{HEAD}{}{}", row(1, "服务很好"), row(2, "排队")).into_bytes();
    // One stray byte after the comment of line 3.
    let at = bytes.len() - 2;
    bytes.insert(at, 0xFF);
    std::fs::create_dir_all(d.dir.join("inbox/ratings")).expect("mkdir");
    std::fs::write(d.dir.join("inbox/ratings/bad-byte.csv"), &bytes).expect("write");
    // The same rows in real GBK are still read as GBK.
    let text = format!("{HEAD}{}{}", row(3, "服务很好"), row(4, "排队"));
    let (gbk, _, _) = encoding_rs::GBK.encode(&text);
    std::fs::write(d.dir.join("inbox/ratings/gbk.csv"), &gbk).expect("write");
    d.manyi(&["collect"]).code(1);
    let why = reason(&d, "bad-byte.csv");
    assert!(why.contains("UTF-8") && why.contains("GBK"), "names the encodings tried: {why}");
    assert!(why.contains("第3行") && why.contains(&format!("第{at}字节")) && why.contains("0xFF"), "names where: {why}");
    assert_eq!(stored(&d), 2, "the GBK file is ingested");
    assert!(d.dir.join("inbox/ratings/archive/gbk.csv").exists());
}

#[test]
fn a_rejected_file_makes_collect_exit_1_naming_the_file() {
    let d = Deployment::small();
    let inbox = d.dir.join("inbox/ratings");
    std::fs::create_dir_all(&inbox).expect("mkdir");
    std::fs::write(inbox.join("a-empty.csv"), b"").expect("write");
    std::fs::write(inbox.join("b-garbage.csv"), (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect::<Vec<_>>())
        .expect("write");
    std::fs::write(inbox.join("c-missing.csv"), "办件编号,评价时间\nM1,2026-10-03 09:00:00\n").expect("write");
    std::fs::write(inbox.join("d-truncated.xlsx"), b"PK\x03\x04\x14\x00\x00\x00\x08\x00truncated").expect("write");
    d.file("inbox/ratings/e-good.csv", &format!("{HEAD}{}", row(1, "")));
    let ran = d.manyi(&["collect"]).code(1);
    let err = ran.stderr();
    for f in ["a-empty.csv", "b-garbage.csv", "c-missing.csv", "d-truncated.xlsx"] {
        assert!(err.contains(f), "the failure names {f}:\n{err}");
        assert!(!reason(&d, f).trim().is_empty(), "{f} has a reason");
    }
    assert_eq!(stored(&d), 1, "the good file is still ingested");
    assert!(inbox.join("archive/e-good.csv").exists());
}

/// The data lines of the quarantine files of the small deployment's office drop.
fn quarantined(d: &Deployment) -> Vec<String> {
    crate::feeds::quarantine_lines(d, "office-drop")
}

/// An export opened in Excel and saved again: the 18-digit 办件编号 and the
/// 12-digit 区划代码 come back as `3.70101E+17` and `3.69901E+11`, and an
/// XLSX keeps such an id as a number whose last digits are gone. Read as
/// ids, the four rows became one rating and three "unchanged"; now each is
/// quarantined saying what Excel did and what to do.
#[test]
fn ids_and_codes_excel_turned_into_numbers_are_quarantined_saying_so() {
    let d = Deployment::small();
    let mut csv = HEAD.to_string();
    for no in 1..=20 {
        csv.push_str(&row(no, ""));
    }
    for minute in 0..4 {
        csv.push_str(&format!("3.70101E+17,1,2026-10-04 09:{minute:02}:00,369901001001,政务办事,1,5,,\n"));
    }
    for minute in 0..2 {
        csv.push_str(&format!("X{minute},1,2026-10-04 10:{minute:02}:00,3.69901E+11,政务办事,1,5,,\n"));
    }
    d.file("inbox/ratings/resaved.csv", &csv);
    // The same damage in a workbook: ids written as numbers.
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    for (c, h) in HEAD.trim_end().split(',').enumerate() {
        ws.write_string(0, c as u16, h).expect("header");
    }
    for (r, id) in [370_101_202_610_000_001_f64, 370_101_202_610_000_002.0, 370_101_202_610_000_003.0].into_iter().enumerate() {
        let r = r as u32 + 1;
        ws.write_number(r, 0, id).expect("id");
        for (c, v) in ["1", "2026-10-05 09:00:00", "369901001001", "政务办事", "1", "5", "", ""].into_iter().enumerate() {
            ws.write_string(r, c as u16 + 1, v).expect("cell");
        }
    }
    wb.save(d.dir.join("inbox/ratings/resaved.xlsx")).expect("xlsx");

    let ran = d.manyi(&["collect"]).code(1);
    let all = format!("{}{}", ran.stdout(), ran.stderr());
    assert!(all.contains("科学计数法"), "the run says what happened:\n{all}");
    assert_eq!(stored(&d), 20, "only the undamaged rows are stored");
    let lines = quarantined(&d);
    let count = |field: &str, value: &str| lines.iter().filter(|l| l.contains(&format!(",{field},")) && l.contains(value)).count();
    assert_eq!(count("project_no", "办件编号“3.70101E+17”是被Excel当作数字改成的科学计数法"), 4, "{lines:#?}");
    assert_eq!(count("org", "区划代码“3.69901E+11”是被Excel当作数字改成的科学计数法"), 2, "{lines:#?}");
    // The workbook's ids are one number now (an f64 holds 15–17 digits), in scientific notation.
    assert_eq!(count("project_no", "办件编号“3.7010120261E17”"), 3, "{lines:#?}");
}

/// Rows that share an id with a later row of other content: only the
/// later is stored, and the run says so, naming an id. (An id cut by Excel
/// to 15 digits looks like this: 370101202610000000 for every rating.) A
/// row sent twice alike is a plain duplicate and says nothing.
#[test]
fn rows_that_share_an_id_with_other_content_are_named_in_a_note() {
    let d = Deployment::small();
    let mut csv = HEAD.to_string();
    for minute in 0..3 {
        csv.push_str(&format!("370101202610000000,1,2026-10-04 09:{minute:02}:00,369901001001,政务办事,1,5,,\n"));
    }
    csv.push_str(&row(1, ""));
    csv.push_str(&row(1, ""));
    csv.push_str(&row(2, ""));
    d.file("inbox/ratings/cut.csv", &csv);
    let out = d.manyi(&["collect"]).success().stdout();
    assert_eq!(stored(&d), 3);
    assert!(
        out.contains(
            "note: cut.csv: 2 row(s) have the 办件编号 and 评价次数 of a later row with other content (e.g. 370101202610000000-1)"
        ),
        "{out}"
    );
    assert_eq!(out.matches("row(s) have the 办件编号").count(), 1, "the repeated identical row is not named:\n{out}");
}

/// A report-style export: the table's title merged over the columns and the
/// export time above the header, a 合计 row under the table. Before, the
/// title was taken for the header and the file refused for missing every
/// column; the total row, quarantined as a rating, failed a small file for
/// its share of bad rows. Lines in the quarantine stay the file's own.
#[test]
fn a_report_style_export_with_a_title_above_and_a_total_below_is_read() {
    let d = Deployment::small();
    let mut csv = format!("2026年10月好差评评价明细,,,,,,,,\n导出时间：2026-11-02 08:00,,,,,,,,\n{HEAD}");
    for no in 1..=30 {
        csv.push_str(&row(no, ""));
    }
    // Line 34 (2 title lines, the header, 30 rows): a level nothing reads.
    csv.push_str("H099,1,2026-10-03 10:00:00,369901001001,政务办事,1,很好很好,,\n");
    csv.push_str("合计,31,,,,,,,\n");
    d.file("inbox/ratings/明细.csv", &csv);
    // The same in a workbook, the title merged over the header's columns.
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    ws.merge_range(0, 0, 0, 8, "2026年10月好差评评价明细", &rust_xlsxwriter::Format::new()).expect("title");
    for (c, h) in HEAD.trim_end().split(',').enumerate() {
        ws.write_string(1, c as u16, h).expect("header");
    }
    for no in 1..=3u32 {
        for (c, v) in [
            format!("W{no:03}"),
            "1".into(),
            format!("2026-10-04 09:0{no}:00"),
            "369901001001".into(),
            "政务办事".into(),
            "1".into(),
            "4".into(),
        ]
        .iter()
        .enumerate()
        {
            ws.write_string(1 + no, c as u16, v).expect("cell");
        }
    }
    ws.write_string(5, 0, "总计：").expect("total");
    ws.write_number(5, 1, 3).expect("total");
    wb.save(d.dir.join("inbox/ratings/明细.xlsx")).expect("xlsx");

    // One bad row in 31 (3 %) is within the 5 % a source allows.
    let out = d.manyi(&["collect"]).success().stdout();
    assert_eq!(stored(&d), 33, "30 + 3 ratings:\n{out}");
    assert!(
        out.contains(
            "明细.csv: 2 row(s) above the header skipped as the table's title: “2026年10月好差评评价明细” “导出时间：2026-11-02 08:00”"
        ),
        "{out}"
    );
    assert!(out.contains("明细.csv: 1 total row(s) (合计/总计/小计) skipped, first on line 35"), "{out}");
    assert!(out.contains("明细.xlsx: 1 row(s) above the header skipped") && out.contains("明细.xlsx: 1 total row(s)"), "{out}");
    let lines = quarantined(&d);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("34,level,"), "{}", lines[0]);
}

/// A header as an import template dresses it: the required column's `*`,
/// a hint in brackets, a line break typed into the cell, a colon. Each is
/// found, and the collect says which header it read as which field.
#[test]
fn headers_dressed_by_an_import_template_are_found_and_named() {
    let d = Deployment::small();
    let mut csv =
        "*办件编号,评价次数,\"评价时间\n(yyyy-mm-dd hh:mm:ss)\",区划代码（12位）,服务类别：,评价渠道,满意度（1-5分）,文字评价,整改状态\n"
            .to_string();
    for no in 1..=4 {
        csv.push_str(&row(no, ""));
    }
    d.file("inbox/ratings/template.csv", &csv);
    let out = d.manyi(&["collect"]).success().stdout();
    assert_eq!(stored(&d), 4);
    for (header, field) in
        [("*办件编号", "project_no"), ("区划代码（12位）", "org"), ("服务类别：", "category"), ("满意度（1-5分）", "level")]
    {
        assert!(out.contains(&format!("template.csv: column “{header}” read as {field}")), "{header}:\n{out}");
    }
    assert!(out.contains("read as rated_at"), "{out}");
    assert!(!out.contains("“评价次数” read as"), "an exact header is not named:\n{out}");
}

/// A file written by a tool that read the columns as numbers and flags
/// (pandas, a spreadsheet's checkbox): `369901001001.0` for a code,
/// `1001.0` for an id, TRUE and 匿名 for anonymity. Each is read as what
/// it says; 匿名 and TRUE were read as named ratings, which all count in
/// the 实名差评 that must be revisited.
#[test]
fn codes_with_a_float_tail_and_anonymity_words_are_read_as_meant() {
    use polars::prelude::*;
    let d = Deployment::small();
    let head = "办件编号,评价次数,评价时间,区划代码,服务类别,评价渠道,满意度,文字评价,整改状态,是否匿名\n";
    let mut csv = head.to_string();
    for (no, flag) in ["匿名", "TRUE", "yes", "实名", "否", "0"].iter().enumerate() {
        csv.push_str(&format!("100{no}.0,1,2026-10-03 09:0{no}:00,369901001001.0,政务办事,1,5,,,{flag}\n"));
    }
    d.file("inbox/ratings/pandas.csv", &csv);
    d.manyi(&["collect"]).success();
    let mut anonymous = std::collections::BTreeMap::new();
    for f in crate::walk(&d.dir.join("data/curated/ratings")) {
        let df = ParquetReader::new(std::fs::File::open(&f).expect("open")).finish().expect("parquet");
        let (id, org, anon) =
            (df.column("rating_id").expect("id"), df.column("org_code").expect("org"), df.column("anonymous").expect("anonymous"));
        for i in 0..df.height() {
            assert_eq!(org.str().expect("str").get(i), Some("369901001001"));
            anonymous.insert(id.str().expect("str").get(i).expect("id").to_string(), anon.bool().expect("bool").get(i).expect("flag"));
        }
    }
    let want: std::collections::BTreeMap<String, bool> = (0..6).map(|no| (format!("100{no}-1"), no < 3)).collect();
    assert_eq!(anonymous, want);
}
