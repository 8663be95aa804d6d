//! The service and exact reruns: `manyi serve` on a real data directory,
//! stopped by a real SIGTERM; a report rerun with its original as-of after
//! late data, compared by SHA-256.

use crate::HEAD;
use crate::support::{BIN, Deployment};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A count that is 0 while state.db or its tables do not exist yet.
fn try_count(d: &Deployment, sql: &str) -> i64 {
    if !d.dir.join("data/state.db").exists() {
        return 0;
    }
    rusqlite::Connection::open(d.dir.join("data/state.db")).and_then(|c| c.query_row(sql, [], |r| r.get(0))).unwrap_or(0)
}

fn spawn_serve(d: &Deployment, log: &str) -> Child {
    let log = std::fs::File::create(d.dir.join(log)).expect("log file");
    Command::new(BIN)
        .arg("serve")
        .current_dir(&d.dir)
        .env("MANYI_CONFIG", d.dir.join("manyi.toml"))
        .env_remove("MANYI_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start manyi serve")
}

/// Waits (generously: this guards against hanging, it measures nothing) until `cond` holds.
fn wait_for(what: &str, child: &mut Child, log: &Path, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !cond() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("serve exited ({status}) before {what}:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn terminate(child: &mut Child, log: &Path) -> i32 {
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success();
    assert!(ok, "kill -TERM failed");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or_else(|| panic!("serve ended by a signal: {status}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not stop after SIGTERM:\n{}", std::fs::read_to_string(log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_fires_records_refuses_a_second_service_and_stops_cleanly_on_sigterm() {
    let d = Deployment::small();
    d.file("jobs/nightly-collect.toml", "# every 2 seconds, for the test\nschedule = \"*/2 * * * * *\"\nkind = \"collect\"\n");
    d.file("inbox/ratings/a.csv", &format!("{HEAD}S001,1,2026-10-03 09:00:00,369901001001,政务办事,1,5,,\n"));
    let log = d.dir.join("serve.log");
    let mut serve = spawn_serve(&d, "serve.log");
    let ok_runs = "SELECT COUNT(*) FROM runs WHERE job = 'nightly-collect' AND outcome = 'ok' AND trigger = 'schedule'";
    wait_for("two scheduled collect runs in the ledger", &mut serve, &log, || try_count(&d, ok_runs) >= 2);

    // A second service on the same data directory refuses, naming the holder.
    let second = d.manyi(&["serve"]).code(3);
    assert!(second.stderr().contains("another `manyi serve` is running"), "{}", second.stderr());

    assert_eq!(terminate(&mut serve, &log), 0, "{}", std::fs::read_to_string(&log).unwrap_or_default());
    assert_eq!(d.count("SELECT COUNT(*) FROM runs WHERE outcome <> 'ok'"), 0, "every ledger row closed ok");
    assert_eq!(d.count("SELECT COUNT(*) FROM runs WHERE ended_at IS NULL OR fire_time IS NULL"), 0);
    assert_eq!(d.count("SELECT COUNT(*) FROM service_lock"), 0, "the lock is released");
    // Each run stands for its own 2-second slot: no slot run twice.
    assert_eq!(d.count("SELECT COUNT(*) FROM runs"), d.count("SELECT COUNT(DISTINCT fire_time) FROM runs"));
    // The dropped file was collected once, by the first run.
    assert_eq!(d.count("SELECT COUNT(*) FROM record_keys WHERE kind = 'ratings'"), 1);

    // The lock is free: a new service starts, and it catches up the slots
    // missed while none ran once, not once per slot.
    std::thread::sleep(Duration::from_secs(5));
    let log2 = d.dir.join("serve2.log");
    let mut again = spawn_serve(&d, "serve2.log");
    let catch_up = "SELECT COUNT(*) FROM runs WHERE trigger = 'catch-up' AND outcome = 'ok'";
    wait_for("a catch-up run of the second service", &mut again, &log2, || try_count(&d, catch_up) >= 1);
    assert_eq!(terminate(&mut again, &log2), 0);
    assert_eq!(d.count("SELECT COUNT(*) FROM runs WHERE trigger = 'catch-up'"), 1, "one catch-up, not one per missed slot");
    assert!(d.count("SELECT slots FROM runs WHERE trigger = 'catch-up'") >= 2, "the catch-up stands for the missed slots");
    let history = d.manyi(&["history", "nightly-collect"]).success().stdout();
    assert!(history.contains("catch-up") && history.contains("schedule"), "{history}");
}

/// SHA-256 of every file of a report folder, by file name.
fn hashes(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.expect("entry").path();
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, hex::encode(Sha256::digest(std::fs::read(&p).expect("read"))))
        })
        .collect()
}

fn report_dir(d: &Deployment, stdout: &str) -> std::path::PathBuf {
    let v: serde_json::Value = serde_json::from_str(stdout).expect("run prints JSON");
    let id = v["report"]["report_id"].as_str().expect("report id");
    d.dir.join("data/reports/monthly-report/2026-10").join(id)
}

#[test]
fn a_rerun_with_the_original_as_of_is_byte_identical_after_late_data() {
    let d = Deployment::small();
    d.file(
        "inbox/ratings/first.csv",
        &format!(
            "{HEAD}R001,1,2026-10-03 09:00:00,369901001001,政务办事,1,5,,\n\
             R002,1,2026-10-04 10:00:00,369901001002,养老服务,2,1,排队太久,待核实\n\
             R003,1,2026-10-05 11:00:00,369901001003,环境卫生,3,4,,\n"
        ),
    );
    d.manyi(&["collect"]).success();
    std::thread::sleep(Duration::from_millis(50));
    let as_of = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::thread::sleep(Duration::from_millis(50));

    let first = d.manyi(&["run", "monthly-report", "--period", "2026-10", "--as-of", &as_of]).success().stdout();
    let dir = report_dir(&d, &first);
    let original = hashes(&dir);
    for f in [
        "leadership.html",
        "leadership.txt",
        "leadership_社区明细_2026-10.csv",
        "leadership_满意度明细_2026-10.xlsx",
        "leadership_trend.png",
        "street-369901001.html",
        "street-369901001.txt",
    ] {
        assert!(original.contains_key(f), "{f} missing from {}: {original:?}", dir.display());
    }

    // More October ratings arrive and are committed after the as-of time.
    d.file(
        "inbox/ratings/late.csv",
        &format!(
            "{HEAD}R004,1,2026-10-20 09:00:00,369901001001,政务办事,1,2,办事太慢,\n\
             R005,1,2026-10-21 10:00:00,369901001002,养老服务,2,5,,\n"
        ),
    );
    d.manyi(&["collect"]).success();
    assert_eq!(d.count("SELECT COUNT(*) FROM record_keys WHERE kind = 'ratings'"), 5);

    // The inspection rerun with the original as-of: same folder, same bytes, nothing added beside them.
    let rerun = d.manyi(&["run", "monthly-report", "--period", "2026-10", "--as-of", &as_of]).success().stdout();
    assert_eq!(report_dir(&d, &rerun), dir, "the report id depends on job, period and as-of only");
    assert_eq!(hashes(&dir), original, "rerun with the original as-of differs");

    // Without --as-of the late ratings count, in a new folder; the original is untouched.
    let now = d.manyi(&["run", "monthly-report", "--period", "2026-10"]).success().stdout();
    let now_dir = report_dir(&d, &now);
    assert_ne!(now_dir, dir);
    let later = hashes(&now_dir);
    assert_ne!(later["leadership.txt"], original["leadership.txt"], "the late data must change the report");
    assert_ne!(later["leadership_社区明细_2026-10.csv"], original["leadership_社区明细_2026-10.csv"]);
    let text = std::fs::read_to_string(now_dir.join("leadership.txt")).expect("text");
    assert!(text.contains("n=5"), "five ratings now:\n{text}");
    let old_text = std::fs::read_to_string(dir.join("leadership.txt")).expect("text");
    assert!(old_text.contains("n=3"), "three ratings as of then:\n{old_text}");
    assert_eq!(hashes(&dir), original, "a later run leaves the reported files alone");
}

#[test]
fn a_failed_scheduled_run_is_recorded_and_mailed_to_the_admins() {
    let d = Deployment::small();
    d.file(
        "jobs/monthly-report.toml",
        "schedule = \"*/2 * * * * *\"\nkind = \"report\"\nperiod = \"previous-month\"\ntemplate = \"haochaping\"\n",
    );
    // The leadership template is gone: every run of the report fails while rendering.
    std::fs::remove_file(d.dir.join("survey-templates/haochaping/leadership.html.tera")).expect("remove template");
    let log = d.dir.join("serve.log");
    let mut serve = spawn_serve(&d, "serve.log");
    let failed = "SELECT COUNT(*) FROM runs WHERE job = 'monthly-report' AND outcome = 'failed'";
    let mails = || std::fs::read_dir(d.dir.join("data/outbox")).map(|e| e.count()).unwrap_or(0);
    wait_for("a failed run and its admin mail", &mut serve, &log, || try_count(&d, failed) >= 1 && mails() >= 1);
    assert_eq!(terminate(&mut serve, &log), 0, "a failed run does not stop the service");
    let error: String = d.db().query_row("SELECT error FROM runs WHERE outcome = 'failed' LIMIT 1", [], |r| r.get(0)).expect("error text");
    assert!(error.contains("leadership.html.tera"), "{error}");
    let eml = std::fs::read_dir(d.dir.join("data/outbox"))
        .expect("outbox")
        .map(|e| e.expect("entry").path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("failure_monthly-report_")))
        .expect("a failure mail in the outbox");
    let raw = std::fs::read(&eml).expect("eml");
    let msg = mail_parser::MessageParser::default().parse(&raw).expect("parse eml");
    let to: Vec<String> = msg.to().into_iter().flat_map(|a| a.iter()).filter_map(|a| a.address().map(String::from)).collect();
    assert_eq!(to, vec!["xxzx@mzj.linjiang.gov.cn".to_string()], "sent to [mail] admins");
    assert!(msg.subject().unwrap_or_default().contains("monthly-report"));
    assert!(msg.body_text(0).expect("text").contains("leadership.html.tera"), "the mail says what failed");
}

#[test]
fn jobs_lists_fire_times_after_the_first_working_day_rule() {
    let d = Deployment::small();
    d.file(
        "jobs/monthly-report.toml",
        "schedule = \"0 0 8 1 * *\"\nkind = \"report\"\nperiod = \"previous-month\"\ntemplate = \"haochaping\"\nfirst_working_day = true\n",
    );
    let out = d.manyi(&["jobs", "--from", "2025-09-15 00:00:00"]).success().stdout();
    // 10-01..10-08 are 国庆/中秋 on reference/calendar.csv; 2025-11-01 is a Saturday.
    for fire in ["2025-10-09 08:00:00 Thu CST", "2025-11-03 08:00:00 Mon CST", "2025-12-01 08:00:00 Mon CST"] {
        assert!(out.contains(fire), "{fire} missing:\n{out}");
    }
    assert!(!out.contains("2025-10-01"), "{out}");
    assert!(out.contains("nightly-collect") && out.contains("2025-09-15 02:00:00 Mon CST"), "{out}");
}

#[test]
fn check_refuses_the_working_day_rule_on_a_frequent_schedule() {
    let d = Deployment::small();
    d.file("jobs/hourly.toml", "schedule = \"0 0 * * * *\"\nkind = \"collect\"\nfirst_working_day = true\n");
    let err = d.manyi(&["check"]).code(2).stderr();
    assert!(err.contains("hourly.toml:3: first_working_day is for daily or rarer schedules"), "{err}");
}
