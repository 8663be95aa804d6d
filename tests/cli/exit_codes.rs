//! The exit codes README promises, one test each: 0 ok, 1 the run failed,
//! 2 the configuration or the command line is wrong (nothing done), 3
//! another `serve` holds the data directory.

use crate::HEAD;
use crate::support::Deployment;

/// A small deployment with one October rating collected.
fn collected() -> Deployment {
    let d = Deployment::small();
    d.file("inbox/ratings/a.csv", &format!("{HEAD}E001,1,2026-10-03 09:00:00,369901001001,政务办事,1,5,,\n"));
    d.manyi(&["collect"]).code(0);
    d
}

#[test]
fn exit_0_when_the_command_did_what_it_was_asked() {
    let d = collected();
    d.manyi(&["check"]).code(0);
    let csv = d.manyi(&["figures", "--period", "2026-10", "--by", "street"]).code(0).stdout();
    assert!(csv.lines().nth(1).is_some_and(|l| l.starts_with("369901001,滨江街道,1,")), "{csv}");
    d.manyi(&["run", "monthly-report", "--period", "2026-10", "--dry-run"]).code(0);
}

#[test]
fn exit_1_when_the_run_itself_fails() {
    let d = collected();
    // The outbox cannot be a folder: the report is built, writing it fails.
    d.file("data/outbox", "not a folder");
    let err = d.manyi(&["run", "monthly-report", "--period", "2026-10"]).code(1).stderr();
    assert!(err.contains("manyi: error:") && err.contains("outbox"), "{err}");
}

#[test]
fn exit_2_when_the_command_line_is_wrong_and_nothing_was_done() {
    let d = collected();
    let runs = "SELECT COUNT(*) FROM runs";
    let before = d.count(runs);
    let cases: [(&[&str], &str); 11] = [
        (&["figures", "--period", "179000000-01"], "--period: period “179000000-01”"),
        (&["run", "monthly-report", "--period", "179000000-01"], "--period: period “179000000-01”"),
        (&["run", "no-such-job"], "no job “no-such-job”"),
        (&["run", "monthly-report", "--period", "2026-13"], "--period: period “2026-13”"),
        (&["run", "monthly-report", "--period", "2026-10", "--as-of", "yesterday"], "--as-of “yesterday” is neither RFC 3339"),
        (&["figures", "--period", "last-month"], "--period: period “last-month”"),
        (&["figures", "--period", "2026-10", "--by", "street,colour"], "--by: unknown dimension “colour”"),
        (&["figures", "--period", "2026-10", "--by", "district,street,community"], "at most two dimensions"),
        (&["collect", "no-such-source"], "no source named “no-such-source”"),
        (&["jobs", "--from", "next week"], "--from “next week”"),
        (&["run"], "JOB"),
    ];
    for (args, says) in cases {
        let err = d.manyi(args).code(2).stderr();
        assert!(err.contains(says), "manyi {}: {err}", args.join(" "));
        assert!(!err.contains("manyi: error:"), "a usage error is not reported as a failed run: {err}");
    }
    assert_eq!(d.count(runs), before, "nothing was run");
    // A broken configuration is a 2 as well, before anything else is looked at.
    d.file("manyi.toml", "organisation = \n");
    d.manyi(&["run", "monthly-report", "--period", "2026-10"]).code(2);
}

#[test]
fn exit_2_for_a_bad_demo_month_before_anything_is_written() {
    let d = Deployment::empty();
    let err = d.manyi(&["demo", "--dir", "city", "--through", "2026-00"]).code(2).stderr();
    assert!(err.contains("--through: period “2026-00”"), "{err}");
    assert!(!d.dir.join("city").exists());
}

#[test]
fn exit_3_when_another_service_holds_the_data_directory() {
    let d = collected();
    // A live holder: its heartbeat is fresh, so the lock is not taken over.
    let now_ms = chrono::Utc::now().timestamp_millis();
    d.db()
        .execute(
            "INSERT INTO service_lock (id, holder, pid, host, started_at, heartbeat_ms) VALUES (1, 'other:4242', 4242, 'other', ?1, ?2)",
            rusqlite::params![chrono::Utc::now().to_rfc3339(), now_ms],
        )
        .expect("lock row");
    let err = d.manyi(&["serve"]).code(3).stderr();
    assert!(err.contains("another `manyi serve` is running") && err.contains("other:4242"), "{err}");
    assert_eq!(d.count("SELECT COUNT(*) FROM service_lock WHERE holder = 'other:4242'"), 1, "the holder keeps its lock");
}
