//! The exit codes README promises, one test each: 0 ok, 1 the run failed,
//! 2 the configuration or the command line is wrong (nothing done), 3
//! another `serve` holds the data directory, 141 stdout's reader went away.

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

/// `manyi figures … | head -1`: the reader closes the pipe before manyi has
/// printed everything. manyi stops quietly with 141 (what a shell reports
/// for `cat` cut off the same way), with no panic message asking for a bug
/// report; the pipe's read end is closed here before manyi writes a byte.
#[test]
fn exit_141_without_a_panic_when_the_reader_of_stdout_goes_away() {
    let d = collected();
    // `figures` writes its CSV through a writer; `check` prints with println!.
    for args in [&["figures", "--period", "2026-10", "--by", "community"][..], &["check"][..]] {
        let mut child = std::process::Command::new(crate::support::BIN)
            .args(args)
            .current_dir(&d.dir)
            .env("MANYI_CONFIG", d.dir.join("manyi.toml"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn manyi");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "manyi {}: {err}", args.join(" "));
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE") && !err.contains("manyi: error"),
            "manyi {}: {err}",
            args.join(" ")
        );
    }
}
