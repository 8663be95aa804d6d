//! Promises of README and ARCHITECTURE.md tried against damage and timing
//! (issue 13): a lost or replaced catalog, a delivered `.eml` that must stay
//! as sent, an as-of that falls inside a commit, a comment longer than an
//! Excel cell.

use crate::support::Deployment;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const HEAD: &str = "办件编号,评价次数,评价时间,区划代码,服务类别,评价渠道,满意度,文字评价,整改状态\n";

/// A small deployment with `n` October ratings of the street collected.
fn collected(n: usize) -> Deployment {
    let d = Deployment::small();
    d.file("inbox/ratings/oct.csv", &october(0, n));
    d.manyi(&["collect"]).success();
    d
}

fn october(first: usize, n: usize) -> String {
    let mut csv = HEAD.to_string();
    for i in first..first + n {
        let level = [5, 4, 3, 2, 1][i % 5];
        csv.push_str(&format!("P{i:05},1,2026-10-{:02} 09:00:00,36990100100{},养老服务,1,{level},,\n", 1 + i % 28, 1 + i % 3));
    }
    csv
}

fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn a_lost_or_emptied_catalog_stops_the_report_instead_of_reporting_zero() {
    let d = collected(20);
    d.manyi(&["run", "monthly-report", "--period", "2026-10"]).success();
    let emls = files_under(&d.dir.join("data/outbox"), "eml");
    assert!(!emls.is_empty());
    let before: Vec<Vec<u8>> = emls.iter().map(|p| std::fs::read(p).expect("eml")).collect();

    // state.db deleted (with its WAL): the run must refuse, not report n = 0.
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(d.dir.join("data").join(f));
    }
    let err = d.manyi(&["run", "monthly-report", "--period", "2026-10", "--resend"]).code(1).stderr();
    assert!(err.contains("state.db") && err.contains("Restore"), "{err}");
    let err = d.manyi(&["figures", "--period", "2026-10"]).code(1).stderr();
    assert!(err.contains("Parquet file(s)"), "{err}");

    // An emptied (0-byte) state.db is the same loss.
    std::fs::write(d.dir.join("data/state.db"), b"").expect("truncate");
    let err = d.manyi(&["run", "monthly-report", "--period", "2026-10", "--resend"]).code(1).stderr();
    assert!(err.contains("lists no batch"), "{err}");

    // Nothing delivered before was overwritten.
    for (p, bytes) in emls.iter().zip(&before) {
        assert_eq!(&std::fs::read(p).expect("eml"), bytes, "{} was overwritten", p.display());
    }
}

#[test]
fn a_parquet_file_replaced_by_another_months_is_refused() {
    let d = collected(12);
    let mut sept = HEAD.to_string();
    for i in 0..5 {
        sept.push_str(&format!("S{i:03},1,2026-09-{:02} 10:00:00,369901001001,养老服务,1,5,,\n", i + 1));
    }
    d.file("inbox/ratings/sept.csv", &sept);
    d.manyi(&["collect"]).success();
    let oct = files_under(&d.dir.join("data/curated/ratings/month=2026-10"), "parquet");
    let sep = files_under(&d.dir.join("data/curated/ratings/month=2026-09"), "parquet");
    assert_eq!((oct.len(), sep.len()), (1, 1));
    std::fs::copy(&sep[0], &oct[0]).expect("replace");
    let err = d.manyi(&["figures", "--period", "2026-10"]).code(1).stderr();
    let name = oct[0].file_name().expect("name").to_string_lossy().into_owned();
    assert!(err.contains(&name) && err.contains("holds 5 rows") && err.contains("recorded 12"), "{err}");
    // A file the catalog lists but which is gone is named too.
    std::fs::remove_file(&oct[0]).expect("rm");
    let err = d.manyi(&["figures", "--period", "2026-10"]).code(1).stderr();
    assert!(err.contains(&name) && err.contains("state.db lists it"), "{err}");
}

#[test]
fn a_delivered_eml_is_never_overwritten_by_a_later_report() {
    let d = collected(10);
    d.manyi(&["run", "monthly-report", "--period", "2026-10"]).success();
    let emls = files_under(&d.dir.join("data/outbox"), "eml");
    let before: Vec<Vec<u8>> = emls.iter().map(|p| std::fs::read(p).expect("eml")).collect();
    // More October ratings arrive; the office asks for the report again.
    d.file("inbox/ratings/late.csv", &october(100, 7));
    d.manyi(&["collect"]).success();
    d.manyi(&["run", "monthly-report", "--period", "2026-10", "--resend"]).success();
    for (p, bytes) in emls.iter().zip(&before) {
        assert_eq!(&std::fs::read(p).expect("eml"), bytes, "{} was overwritten", p.display());
    }
    let after = files_under(&d.dir.join("data/outbox"), "eml");
    assert_eq!(after.len(), 2 * emls.len(), "the resent reports sit beside the first ones: {after:?}");
}

#[test]
fn figures_as_of_an_instant_inside_a_commit_are_reproducible() {
    let d = collected(10);
    // A second file whose commit pauses 3 s between stamping its time and
    // committing; the as-of below falls in that pause.
    d.file("inbox/ratings/late.csv", &october(200, 15));
    let mut collect = Command::new(crate::support::BIN)
        .args(["collect"])
        .current_dir(&d.dir)
        .env("MANYI_CONFIG", d.dir.join("manyi.toml"))
        .env("MANYI_PAUSE_AT", "before-commit:3000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("collect");
    // Wait until the batch is inside its commit (its Parquet file is written).
    let started = std::time::Instant::now();
    while files_under(&d.dir.join("data/curated/ratings/month=2026-10"), "parquet").len() < 2 {
        assert!(started.elapsed().as_secs() < 60, "the second batch never reached its commit");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let as_of = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let during = d.manyi(&["figures", "--period", "2026-10", "--as-of", &as_of]).success().stdout();
    assert!(collect.wait().expect("collect").success());
    let after = d.manyi(&["figures", "--period", "2026-10", "--as-of", &as_of]).success().stdout();
    assert_eq!(during, after, "the same as-of must give the same figures");
    let n = after.lines().nth(1).and_then(|l| l.split(',').next()).unwrap_or_default().to_string();
    assert_eq!(n, "25", "the batch stamped before the as-of is counted:\n{after}");
}

#[test]
fn a_comment_longer_than_an_excel_cell_does_not_stop_any_report() {
    let d = Deployment::small();
    let long = "楼道灯坏了很久".repeat(6_000); // 42,000 characters
    d.file(
        "inbox/ratings/long.csv",
        &format!("{HEAD}L001,1,2026-10-03 09:00:00,369901001001,养老服务,1,1,{long},待核实\nL002,1,2026-10-04 09:00:00,369901001002,养老服务,1,5,,\n"),
    );
    d.manyi(&["collect"]).success();
    d.manyi(&["run", "monthly-report", "--period", "2026-10"]).success();
    let xlsx: Vec<PathBuf> = files_under(&d.dir.join("data/reports/monthly-report/2026-10"), "xlsx");
    assert_eq!(xlsx.len(), 2, "both offices' workbooks written: {xlsx:?}");
    let office = xlsx.iter().find(|p| p.to_string_lossy().contains("street-369901001")).expect("the street's workbook");
    use calamine::Reader;
    let mut wb: calamine::Xlsx<_> = calamine::open_workbook(office).expect("open xlsx");
    let sheet = wb.worksheet_range("差评清单").expect("差评清单 sheet");
    let cell = sheet.rows().nth(1).and_then(|r| r.get(5)).map(|c| c.to_string()).unwrap_or_default();
    assert!(
        cell.starts_with("楼道灯坏了很久") && cell.ends_with("已截断）"),
        "cut with a marker: …{}",
        &cell[cell.len().saturating_sub(60)..]
    );
    assert!(cell.encode_utf16().count() <= 32_767);
}

#[test]
fn a_job_name_that_is_a_path_is_refused_and_nothing_is_written_outside() {
    let d = collected(5);
    let outside = d._tmp.path().join("escape_rel");
    for (file, name) in [("jobs/abs.toml", "/tmp/manyi_escape_abs"), ("jobs/rel.toml", "../../escape_rel")] {
        d.file(
            file,
            &format!(
                "name = {name:?}\nschedule = \"0 0 8 1 * *\"\nkind = \"report\"\nperiod = \"previous-month\"\ntemplate = \"haochaping\"\n"
            ),
        );
    }
    let err = d.manyi(&["check"]).code(2).stderr();
    assert!(err.contains("abs.toml:1: job name “/tmp/manyi_escape_abs” must be a plain name"), "{err}");
    assert!(err.contains("rel.toml:1: job name “../../escape_rel” must be a plain name"), "{err}");
    for name in ["/tmp/manyi_escape_abs", "../../escape_rel"] {
        d.manyi(&["run", name, "--period", "2026-10"]).code(2);
    }
    assert!(!outside.exists() && !Path::new("/tmp/manyi_escape_abs").exists(), "nothing written outside the deployment");
}

#[test]
fn an_office_report_that_fails_to_build_does_not_stop_the_others() {
    let d = collected(10);
    // Break the office template only: the leadership report must still be
    // written and delivered, and the run must fail naming the office.
    let path = d.dir.join("survey-templates/haochaping/office.html.tera");
    let text = std::fs::read_to_string(&path).expect("office template");
    std::fs::write(&path, text.replacen("{% block body %}", "{% block body %}{{ no_such_variable.field }}", 1)).expect("write");
    let err = d.manyi(&["run", "monthly-report", "--period", "2026-10"]).code(1).stderr();
    assert!(err.contains("1 report(s) could not be built") && err.contains("street-369901001 滨江街道办事处"), "{err}");
    let emls = files_under(&d.dir.join("data/outbox"), "eml");
    let names: Vec<String> = emls.iter().map(|p| p.file_name().expect("name").to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["monthly-report_2026-10_leadership.eml"], "the leadership report still went out");
}
