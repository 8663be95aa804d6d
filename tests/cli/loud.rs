//! Loud, precise and never double-counted (issue 14, section 3): a file
//! mostly quarantined fails the run, quarantine and `manyi check` point at
//! physical lines, the footer counts distinct records, an empty cell shows
//! "—", and an `orgs.csv` without its city says what to add. Every expected
//! figure below is worked out by hand from the few rows of its fixture.

use crate::support::Deployment;
use std::path::PathBuf;

const HEAD: &str = "办件编号,评价次数,评价时间,区划代码,服务类别,评价渠道,满意度,文字评价,整改状态";

/// A good October rating of 春晖社区 with level `level`.
fn good(no: &str, level: u8) -> String {
    format!("{no},1,2026-10-03 09:00:00,369901001001,政务办事,1,{level},,")
}

/// The small city with the office-drop source allowed `share` quarantined.
fn deployment(share: Option<f64>) -> Deployment {
    let d = Deployment::small();
    if let Some(share) = share {
        allow_quarantine(&d, share);
    }
    d
}

/// Lets the office-drop source of `d` quarantine up to `share` of a file's
/// rows without failing the run: for fixtures that are deliberately mostly bad.
pub fn allow_quarantine(d: &Deployment, share: f64) {
    let path = d.dir.join("manyi.toml");
    let text = std::fs::read_to_string(&path).expect("manyi.toml");
    let text = text.replacen("inbox = \"inbox/ratings\"\n", &format!("inbox = \"inbox/ratings\"\nmax_quarantine_share = {share}\n"), 1);
    std::fs::write(&path, text).expect("write manyi.toml");
}

fn stored(d: &Deployment) -> i64 {
    d.count("SELECT COUNT(*) FROM record_keys WHERE kind = 'ratings'")
}

/// The quarantine files of office-drop, each as (行号, 问题字段) pairs.
fn quarantine_lines(d: &Deployment) -> Vec<Vec<(String, String)>> {
    let mut files: Vec<PathBuf> = crate::walk(&d.dir.join("data/quarantine/office-drop"));
    files.sort();
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("quarantine file");
            let mut rdr = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
            rdr.records().map(|r| r.expect("row")).map(|r| (r[0].to_string(), r[1].to_string())).collect()
        })
        .collect()
}

#[test]
fn a_file_mostly_quarantined_commits_its_good_rows_and_fails_the_run() {
    let d = deployment(None);
    // 20 rows, 3 bad (lines 5 and 12: level 7; line 16: unknown community):
    // 3/20 = 15.0% > 5%, 17 committed.
    let mut rows = vec![HEAD.to_string()];
    for k in 1..=20 {
        rows.push(match k {
            4 | 11 => format!("Q{k:02},1,2026-10-03 09:00:00,369901001001,政务办事,1,7,,"),
            15 => format!("Q{k:02},1,2026-10-03 09:00:00,369999999999,政务办事,1,5,,"),
            _ => good(&format!("Q{k:02}"), 5),
        });
    }
    d.file("inbox/ratings/mostly.csv", &(rows.join("\n") + "\n"));
    let err = d.manyi(&["collect"]).code(1).stderr();
    assert!(err.contains("mostly.csv: 3 of 20 rows quarantined (15.0%, more than max_quarantine_share 5.0%)"), "{err}");
    assert!(err.contains("the 17 good rows were committed"), "{err}");
    assert!(err.contains("Top reasons: 2 row(s) level: 满意度“7”应为1–5") && err.contains("; 1 row(s) org: "), "{err}");
    assert_eq!(stored(&d), 17);
    assert!(d.dir.join("inbox/ratings/archive/mostly.csv").exists(), "committed, so archived as any other file");
    assert_eq!(quarantine_lines(&d), [vec![("5".into(), "level".into()), ("12".into(), "level".into()), ("16".into(), "org".into())]]);

    // Exactly 5% (1 of 20) is not more than 5%: the run succeeds.
    let mut rows = vec![HEAD.to_string()];
    rows.extend((1..=19).map(|k| good(&format!("F{k:02}"), 4)));
    rows.push("F20,1,2026-10-03 09:00:00,369901001001,政务办事,1,0,,".into());
    d.file("inbox/ratings/fine.csv", &(rows.join("\n") + "\n"));
    d.manyi(&["collect"]).success();
    assert_eq!(stored(&d), 17 + 19);

    // Through the nightly collect job the failure is in the run ledger.
    let mut rows = vec![HEAD.to_string()];
    rows.extend((1..=3).map(|k| good(&format!("N{k:02}"), 5)));
    rows.push("N04,1,2026-10-03 09:00:00,369901001001,政务办事,1,9,,".into());
    d.file("inbox/ratings/night.csv", &(rows.join("\n") + "\n"));
    d.manyi(&["run", "nightly-collect"]).code(1);
    let history = d.manyi(&["history"]).success().stdout();
    let line = history.lines().find(|l| l.contains("nightly-collect")).expect("the collect run in the ledger");
    assert!(line.contains("failed") && line.contains("night.csv: 1 of 4 rows quarantined (25.0%"), "{history}");
}

#[test]
fn quarantine_and_check_name_the_physical_line() {
    let d = deployment(Some(1.0));
    // CRLF as Excel saves; line 3–4 one row with a two-line comment; line 5
    // bad; line 6 empty; line 7 bad. 行号 must be 5 and 7.
    let csv = [
        HEAD.to_string(),
        good("L1", 5),
        "L2,1,2026-10-03 09:00:00,369901001001,政务办事,1,5,\"第一行\r\n第二行\",".into(),
        "L3,1,2026-10-03 09:00:00,369901001001,政务办事,1,9,,".into(),
        String::new(),
        "L4,1,2026-10-03 09:00:00,369999999999,政务办事,1,5,,".into(),
    ]
    .join("\r\n")
        + "\r\n";
    d.file("inbox/ratings/a.csv", &csv);
    d.manyi(&["collect"]).success();
    assert_eq!(quarantine_lines(&d), [vec![("5".into(), "level".into()), ("7".into(), "org".into())]]);

    // XLSX: header on row 1, bad rows on Excel rows 3 and 5 (row 4 blank).
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    let sheet: [(u32, String); 4] =
        [(0, HEAD.into()), (1, good("X1", 5)), (2, "X2,1,2026-10-03 09:00:00,369901001001,政务办事,1,8,,".into()), (4, good("X3", 0))];
    for (row, line) in &sheet {
        for (c, v) in line.split(',').enumerate() {
            ws.write_string(*row, c as u16, v).expect("cell");
        }
    }
    std::fs::write(d.dir.join("inbox/ratings/b.xlsx"), wb.save_to_buffer().expect("xlsx")).expect("write xlsx");
    d.manyi(&["collect"]).success();
    let files = quarantine_lines(&d);
    assert_eq!(files[1], [("3".to_string(), "level".to_string()), ("5".into(), "level".into())]);

    // `manyi check`: orgs.csv saved with CRLF, the street's code wrong on line 4.
    d.file(
        "reference/orgs.csv",
        "code,name,parent,level\r\n369900,临江市,,city\r\n369901,江滨区,369900,district\r\n36990100,滨江街道,369901,street\r\n",
    );
    let err = d.manyi(&["check"]).code(2).stderr();
    assert!(err.contains("orgs.csv:4: code “36990100” of a Street must be 9 digits"), "{err}");
}

/// The one report file of `office` for `period` whose name ends with `suffix`.
fn report_file(d: &Deployment, period: &str, name: &str) -> PathBuf {
    let found: Vec<PathBuf> = crate::walk(&d.dir.join(format!("data/reports/monthly-report/{period}")))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == name))
        .collect();
    assert_eq!(found.len(), 1, "{name}: {found:?}");
    found[0].clone()
}

#[test]
fn the_footer_counts_distinct_records_and_distinct_quarantined_rows() {
    let d = deployment(Some(1.0));
    // a.csv: R1–R4 good, one bad row. b.csv: the same bad row first (another
    // line), R1 with another level (a second version), R2–R4 unchanged.
    let bad = "RX,1,2026-10-03 09:00:00,369999999999,政务办事,1,5,,";
    let a = [HEAD, &good("R1", 5), &good("R2", 5), &good("R3", 4), &good("R4", 3), bad].join("\n") + "\n";
    let b = [HEAD, bad, &good("R1", 3), &good("R2", 5), &good("R3", 4), &good("R4", 3)].join("\n") + "\n";
    d.file("inbox/ratings/a.csv", &a);
    d.manyi(&["collect"]).success();
    d.file("inbox/ratings/b.csv", &b);
    d.manyi(&["collect"]).success();
    // Stored: 5 versions of 4 ratings; quarantined twice, one row.
    assert_eq!(d.count("SELECT COALESCE(SUM(rows), 0) FROM batch_files"), 5);
    assert_eq!(d.count("SELECT SUM(rows_quarantined) FROM batches"), 2);
    d.manyi(&["run", "monthly-report", "--period", "2026-10"]).success();
    let text = std::fs::read_to_string(report_file(&d, "2026-10", "leadership.txt")).expect("report");
    assert!(text.contains("office-drop（2批，4条，隔离1条）"), "{text}");
    assert!(text.contains("被隔离（未计入）的记录共 1 条"), "{text}");
    // The figures count the same 4: R1 (now 3), 5, 4, 3 → n=4.
    assert!(text.contains("评价数 n=4；"), "{text}");
}

#[test]
fn a_cell_without_ratings_shows_a_dash_not_zero_percent() {
    let d = deployment(None);
    // October: levels 5 and 3. 满意率 2/2 = 100.0%, 好评率 1/2 = 50.0%,
    // 差评率 0.0%, 得分 (100 + 50) / 2 = 75.0. September is empty.
    d.file("inbox/ratings/oct.csv", &([HEAD, &good("Z1", 5), &good("Z2", 3)].join("\n") + "\n"));
    d.manyi(&["collect"]).success();
    d.manyi(&["run", "monthly-report", "--period", "2026-10"]).success();
    let text = std::fs::read_to_string(report_file(&d, "2026-10", "leadership.txt")).expect("text");
    assert!(text.contains("评价数 n=2；满意率 100.0%（95%区间 "), "{text}");
    assert!(text.contains("；好评率 50.0%；差评率 0.0%（差评 0 件）；满意度得分 75.0"), "{text}");
    assert!(text.contains("与2026年9月相比满意率 —（上期 —，n=0）"), "{text}");
    assert!(!text.contains("上期 0.0%"), "{text}");
    let html = std::fs::read_to_string(report_file(&d, "2026-10", "leadership.html")).expect("html");
    assert!(html.contains("满意率 —（上期 —，n=0）") && !html.contains("上期 0.0%"), "the HTML headline too");

    // XLSX, sheet 总体: 满意率 this period 1.0 (formatted 0.0%), last period "—".
    use calamine::{Data, Reader, Xlsx};
    let path = report_file(&d, "2026-10", "leadership_满意度明细_2026-10.xlsx");
    let mut book: Xlsx<_> = calamine::open_workbook(&path).expect("xlsx");
    let total = book.worksheet_range("总体").expect("总体");
    assert_eq!(total.get_value((2, 0)), Some(&Data::String("满意率".into())));
    assert_eq!(total.get_value((2, 1)), Some(&Data::Float(1.0)));
    assert_eq!(total.get_value((2, 2)), Some(&Data::String("—".into())));
    assert_eq!(total.get_value((7, 1)), Some(&Data::Float(75.0)), "满意度得分");
    assert_eq!(total.get_value((7, 2)), Some(&Data::String("—".into())));

    // CSV: a community without ratings has "—" for every figure.
    let csv = std::fs::read_to_string(report_file(&d, "2026-10", "leadership_社区明细_2026-10.csv")).expect("csv");
    check_csv_dashes(&csv);
}

/// Every row of the community CSV: n = 0 ⇔ its six figures are "—" (the
/// table lists communities with ratings only, so today no row has n = 0).
fn check_csv_dashes(csv: &str) {
    let rows: Vec<Vec<&str>> = csv.trim_start_matches('\u{feff}').lines().skip(1).map(|l| l.split(',').collect()).collect();
    let chunhui = rows.iter().find(|r| r[0] == "369901001001").expect("春晖社区");
    assert_eq!(chunhui[3..10], ["2", "1.0000", "0.3424", "1.0000", "0.5000", "0.0000", "75.00"][..], "{csv}");
    for r in &rows {
        assert_eq!(r[3] == "0", r[4..10].iter().all(|c| *c == "—"), "{csv}");
    }
}

#[test]
fn orgs_without_a_city_row_say_what_to_add() {
    let d = Deployment::small();
    d.file(
        "reference/orgs.csv",
        "code,name,parent,level\n369901,江滨区,369900,district\n369901001,滨江街道,369901,street\n\
         369901001001,春晖社区,369901001,community\n",
    );
    let err = d.manyi(&["check"]).code(2).stderr();
    assert!(err.contains("no city row: add one line for the city, e.g. “369900,XX市,,city”"), "{err}");
    assert!(err.contains("(the districts name 369900 as their parent)"), "{err}");
    assert!(!err.contains("parent “369900” of 369901 is not in the file"), "said once, not per district:\n{err}");
}
