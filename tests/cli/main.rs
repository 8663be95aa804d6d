//! The integration tests: the real binary on real files in a temporary
//! deployment. One test binary; each area has a module, all share the fluent
//! builder of `support`.
//!
//! Expected figures are computed here, straight from the CSV files the demo
//! wrote, with none of manyi's aggregation code.

mod collect;
mod delta;
mod exit_codes;
mod feeds;
mod followup;
mod hostile_files;
mod intake;
mod layering;
mod loud;
mod metrics;
mod privacy;
mod promises;
mod reports;
mod robots;
mod serve;
mod site;
mod smtp;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use support::Deployment;

/// Figures of a set of levels, computed the plain way.
struct Expected {
    n: u64,
    satisfied: f64,
    good: f64,
    bad: f64,
    score: f64,
}

fn expected(levels: &[u8]) -> Expected {
    let n = levels.len() as u64;
    let share = |f: &dyn Fn(u8) -> bool| levels.iter().filter(|&&l| f(l)).count() as f64 / n as f64;
    Expected {
        n,
        satisfied: share(&|l| l >= 3),
        good: share(&|l| l >= 4),
        bad: share(&|l| l <= 2),
        score: levels.iter().map(|&l| (l as f64 - 1.0) / 4.0 * 100.0).sum::<f64>() / n as f64,
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (k, ch) in s.chars().enumerate() {
        if k > 0 && (s.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn level_of(text: &str) -> u8 {
    match text {
        "非常满意" => 5,
        "满意" => 4,
        "基本满意" => 3,
        "不满意" => 2,
        "非常不满意" => 1,
        d => d.parse().expect("level digit"),
    }
}

/// Reads the demo's CSV for a month: (district code → levels) of the ratings
/// the rates count: first evaluations (评价次数 1) a resident gave (评价渠道
/// not 系统默认评价). Second evaluations and default ratings are shown apart.
fn levels_from_csv(path: &Path) -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    let bytes = std::fs::read(path).expect("csv");
    let text = String::from_utf8(bytes).expect("utf-8");
    let mut rdr = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let headers = rdr.headers().expect("headers").clone();
    let col = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let (code, level) = (col("区划代码"), col("满意度"));
    let (times, channel) = (col("评价次数"), col("评价渠道"));
    let mut all = Vec::new();
    let mut by_district: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for rec in rdr.records() {
        let rec = rec.expect("row");
        if &rec[times] != "1" || &rec[channel] == "系统默认评价" {
            continue;
        }
        let l = level_of(&rec[level]);
        all.push(l);
        by_district.entry(rec[code][..6].to_string()).or_default().push(l);
    }
    (all, by_district)
}

fn text_part(eml: &Path) -> (String, String, String) {
    let raw = std::fs::read(eml).expect("eml");
    let msg = mail_parser::MessageParser::default().parse(&raw).expect("parse eml");
    let subject = msg.subject().unwrap_or_default().to_string();
    let text = msg.body_text(0).expect("text part").into_owned();
    let html = msg.body_html(0).expect("html part").into_owned();
    (subject, text, html)
}

#[test]
fn demo_end_to_end_figures_match_the_generated_csv() {
    let d = Deployment::empty();
    let demo_dir = d.dir.join("demo");
    let ran = d.manyi(&["demo", "--seed", "7", "--through", "2026-10", "--dir", demo_dir.to_str().expect("utf-8 path")]).success();
    let stdout = ran.stdout();
    assert!(stdout.contains("Where everything is"), "{stdout}");

    let month_csv = demo_dir.join("inbox/ratings/archive/好差评导出_2026-10.csv");
    let (mut all, mut by_district) = levels_from_csv(&month_csv);
    // The demo's scripted burst (12 非常满意 from one phone) is a file of its own; flagged ratings stay in the figures.
    let (burst, burst_by_district) = levels_from_csv(&demo_dir.join("inbox/ratings/archive/好差评导出_2026-10_扫码补录.csv"));
    all.extend(burst);
    for (code, levels) in burst_by_district {
        by_district.entry(code).or_default().extend(levels);
    }
    let e = expected(&all);
    assert!(e.n > 9_000, "a month of the demo has about 11,000 ratings, got {}", e.n);

    let outbox = demo_dir.join("data/outbox");
    let leadership = outbox.join("monthly-report_2026-10_leadership.eml");
    let (subject, text, html) = text_part(&leadership);
    assert_eq!(subject, "【满意度月报】2026年10月 · 临江市");
    let headline = format!("评价数 n={}；满意率 {:.1}%", thousands(e.n), e.satisfied * 100.0);
    assert!(text.contains(&headline), "leadership text lacks “{headline}”:\n{}", &text[..text.len().min(1500)]);
    assert!(text.contains(&format!("好评率 {:.1}%；差评率 {:.1}%", e.good * 100.0, e.bad * 100.0)), "good/bad rates");
    assert!(text.contains(&format!("满意度得分 {:.1}", e.score)), "score");
    // Each district line of the text part carries the same figures as the CSV.
    let names = [("369901", "江滨区"), ("369902", "城东区"), ("369903", "城西区"), ("369904", "高新区")];
    for (code, name) in names {
        let de = expected(&by_district[code]);
        let line = format!(
            "- {name}（临江市）：n={}，满意率 {:.1}%，好评率 {:.1}%，差评率 {:.1}%，得分 {:.1}",
            thousands(de.n),
            de.satisfied * 100.0,
            de.good * 100.0,
            de.bad * 100.0,
            de.score
        );
        assert!(text.contains(&line), "district line missing: {line}");
        assert!(html.contains(&format!("{:.1}%", de.satisfied * 100.0)), "district rate missing from HTML");
    }
    assert!(html.contains(&thousands(e.n)) && html.contains(&format!("{:.1}%", e.satisfied * 100.0)));
    assert!(!html.to_lowercase().contains("<script"), "no script in a report");

    // One .eml per office: leadership + 16 streets + 4 sections, each HTML body under 100 KB.
    let emls: Vec<PathBuf> = std::fs::read_dir(&outbox).expect("outbox").map(|e| e.expect("entry").path()).collect();
    assert_eq!(emls.len(), 21);
    for eml in &emls {
        let (_, _, body) = text_part(eml);
        assert!(body.len() < 100 * 1024, "{}: HTML body of {} bytes", eml.display(), body.len());
    }
    // One folder per report id under the period; the demo made one.
    let mut ids =
        std::fs::read_dir(demo_dir.join("data/reports/monthly-report/2026-10")).expect("reports").map(|e| e.expect("entry").path());
    let folder = ids.next().expect("a report folder");
    let copy = std::fs::read_to_string(folder.join("leadership.html")).expect("html copy");
    // The browsable copy is the mailed HTML with the charts as files beside it.
    let mailed = html.replace("\r\n", "\n").replace("cid:", "leadership_").replace("@manyi.local", ".png");
    assert_eq!(copy.replace("\r\n", "\n").trim_end(), mailed.trim_end(), "the browsable copy is the mailed HTML");
    for chart in ["trend", "districts", "categories"] {
        assert!(folder.join(format!("leadership_{chart}.png")).exists(), "{chart} chart beside the HTML");
    }

    // The three bad rows of the demo went to quarantine with their reasons.
    let q = std::fs::read_dir(demo_dir.join("data/quarantine/office-drop"))
        .expect("quarantine")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("read"))
        .collect::<String>();
    for needle in ["369999999999", "满意度“7”", "评价时间“2025-11-32 09:00:00”"] {
        assert!(q.contains(needle), "quarantine lacks {needle}:\n{q}");
    }

    // A second demo run stores not one rating twice and sends nothing twice.
    let dd = Deployment::at(&demo_dir);
    let stored = dd.count("SELECT COUNT(*) FROM record_keys WHERE kind = 'ratings'");
    let rows_in_files = dd.count("SELECT SUM(f.rows) FROM batch_files f JOIN batches b USING (batch_seq) WHERE b.kind = 'ratings'");
    assert_eq!(stored, rows_in_files);
    d.manyi(&["demo", "--seed", "7", "--through", "2026-10", "--dir", demo_dir.to_str().expect("utf-8 path")]).success();
    assert_eq!(dd.count("SELECT COUNT(*) FROM record_keys WHERE kind = 'ratings'"), stored);
    assert_eq!(
        dd.count("SELECT SUM(f.rows) FROM batch_files f JOIN batches b USING (batch_seq) WHERE b.kind = 'ratings'"),
        rows_in_files,
        "no rating written twice"
    );
    assert_eq!(
        dd.count("SELECT COUNT(*) FROM deliveries"),
        dd.count("SELECT COUNT(*) FROM delivery_history WHERE state = 'outbox'"),
        "each recipient delivered once"
    );
}

const HEAD: &str = "办件编号,评价次数,评价时间,区划代码,服务类别,评价渠道,满意度,文字评价,整改状态\n";

#[test]
fn malformed_rows_are_quarantined_and_the_rest_ingested() {
    let d = Deployment::small();
    let csv = format!(
        "{HEAD}\
         A001,1,2026-10-03 09:00:00,369901001001,政务办事,1,非常满意,,\n\
         A002,1,2026-10-03 09:10:00,369999999999,政务办事,1,5,,\n\
         A003,1,2026-10-03 09:20:00,369901001002,养老服务,2,7,,\n\
         A004,1,2026-10-32 09:30:00,369901001003,养老服务,2,满意,,\n\
         A005,1,2026-10-04 10:00:00,幸福社区,养老服务,4,不满意,排队太久 电话13812345678,整改中\n\
         A006,2,2026-10-05 11:00:00,369901001002,环境卫生,3,3,,\n"
    );
    d.file("inbox/ratings/drop.csv", &csv);
    // Half the rows are bad on purpose: more than max_quarantine_share's 5%.
    loud::allow_quarantine(&d, 0.5);
    let out = d.manyi(&["collect", "office-drop"]).success().stdout();
    assert!(out.contains("office-drop"), "{out}");

    assert_eq!(d.count("SELECT COUNT(*) FROM record_keys WHERE kind = 'ratings'"), 3);
    assert_eq!(d.count("SELECT rows_quarantined FROM batches"), 3);
    let qdir = d.dir.join("data/quarantine/office-drop");
    let qfile = std::fs::read_dir(&qdir).expect("quarantine dir").next().expect("a quarantine file").expect("entry").path();
    let q = std::fs::read_to_string(&qfile).expect("read quarantine");
    let lines: Vec<&str> = q.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(lines.len(), 4, "header + 3 rejected rows:\n{q}");
    assert!(lines[1].starts_with("3,org,") && lines[1].contains("369999999999"), "{}", lines[1]);
    assert!(lines[2].starts_with("4,level,") && lines[2].contains("满意度“7”"), "{}", lines[2]);
    assert!(lines[3].starts_with("5,rated_at,") && lines[3].contains("2026-10-32"), "{}", lines[3]);
    // The file is archived and its raw bytes landed unchanged.
    assert!(d.dir.join("inbox/ratings/archive/drop.csv").exists());
    let landed: Vec<_> = walk(&d.dir.join("data/landing/office-drop"));
    assert_eq!(landed.len(), 1);
    assert_eq!(std::fs::read_to_string(&landed[0]).expect("landed"), csv);

    // Collecting the same file again stores nothing new.
    d.file("inbox/ratings/drop-again.csv", &csv);
    d.manyi(&["collect"]).success();
    assert_eq!(d.count("SELECT COUNT(*) FROM record_keys WHERE kind = 'ratings'"), 3);
    assert_eq!(d.count("SELECT SUM(rows_unchanged) FROM batches"), 3);
}

#[test]
fn a_changed_follow_up_is_a_new_version_and_reports_take_the_latest() {
    let d = Deployment::small();
    d.file("inbox/ratings/a.csv", &format!("{HEAD}B001,1,2026-10-03 09:00:00,369901001001,物业管理,1,1,报修没人来,待核实\nB002,1,2026-10-03 09:00:00,369901001001,物业管理,1,5,,\n"));
    d.manyi(&["collect"]).success();
    d.file("inbox/ratings/b.csv", &format!("{HEAD}B001,1,2026-10-03 09:00:00,369901001001,物业管理,1,1,报修没人来,已整改\n"));
    d.manyi(&["collect"]).success();
    assert_eq!(d.count("SELECT versions FROM record_keys WHERE record_id = 'B001-1'"), 2);
    assert_eq!(d.count("SELECT COUNT(*) FROM record_versions"), 2);
    let out = d.manyi(&["run", "monthly-report", "--period", "2026-10"]).success().stdout();
    assert!(out.contains("\"n\": 2"), "two ratings, not three: {out}");
    let (_, text, _) = text_part(&d.dir.join("data/outbox/monthly-report_2026-10_street-369901001.eml"));
    assert!(text.contains("已整改"), "the office sees the latest follow-up state:\n{text}");
    assert!(!text.contains("待核实"), "and not the old one:\n{text}");
}

#[test]
fn check_reports_every_problem_at_once_with_file_and_line() {
    let d = Deployment::small();
    d.file(
        "reference/orgs.csv",
        "code,name,parent,level\n369900,临江市,,city\n369901,江滨区,369900,district\n36990100,滨江街道,369901,street\n369901001001,春晖社区,369901001,community\n",
    );
    d.file("jobs/broken.toml", "schedule = \"every day\"\nkind = \"report\"\nperiod = \"previous-month\"\ntemplate = \"nope\"\n");
    let ran = d.manyi(&["check"]).code(2);
    let err = ran.stderr();
    assert!(err.contains("orgs.csv:4: code “36990100” of a Street must be 9 digits"), "{err}");
    assert!(err.contains("orgs.csv:5: parent “369901001”"), "{err}");
    assert!(err.contains("offices.toml") && err.contains("scope org “369901001” is not in orgs.csv"), "{err}");
    assert!(err.contains("broken.toml:1: schedule “every day”"), "{err}");
    assert!(err.contains("broken.toml:4: template “nope”"), "{err}");
}

#[test]
fn a_file_without_required_headers_is_rejected_whole_with_a_reason() {
    let d = Deployment::small();
    d.file("inbox/ratings/wrong.csv", "编号,时间\n1,2\n");
    let err = d.manyi(&["collect"]).code(1).stderr();
    assert!(err.contains("wrong.csv"), "{err}");
    let reason = std::fs::read_to_string(d.dir.join("inbox/ratings/rejected/wrong.csv.reason.txt")).expect("reason file");
    assert!(reason.contains("缺少必需的列") && reason.contains("办件编号"), "{reason}");
    assert_eq!(d.count("SELECT COUNT(*) FROM batches"), 0);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}
