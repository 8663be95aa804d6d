//! The Delta Lake publication (`[publish] delta`, manyi's own log writer)
//! read by an independent reader: the Python `deltalake` package
//! resolves the table at a version by itself and DuckDB computes the month's
//! community × category table over the Arrow data
//! (`tests/delta_crosscheck.py`), which must equal `manyi figures` at the
//! matching as-of, cell by cell; and a publication killed half-way never
//! shows a half-applied batch and is caught up by the next run. As manyi
//! writes the log itself, `--audit` also checks the protocol, the data files'
//! Parquet schema and the statistics.

use crate::support::Deployment;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

type Table = BTreeMap<(String, String), BTreeMap<String, String>>;

fn keyed(csv_text: &str) -> Table {
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let head = rdr.headers().expect("header").clone();
    let mut out = Table::new();
    for rec in rdr.records() {
        let row: BTreeMap<String, String> =
            head.iter().zip(rec.expect("row").iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect();
        out.insert((row["community"].clone(), row["category"].clone()), row);
    }
    out
}

/// Runs tests/delta_crosscheck.py on the ratings table (at `version`, or the latest).
fn python(table: &Path, args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/delta_crosscheck.py");
    let out = Command::new("python3").arg(script).arg(table).args(args).output().expect("python3");
    assert!(
        out.status.success(),
        "the Python deltalake reader failed (scripts/test.sh installs deltalake, pyarrow and duckdb):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The month's table from the Delta table at `version` equals manyi's at `as_of`, cell by cell.
fn assert_same_table(dd: &Deployment, version: i64, as_of: Option<&str>) -> Table {
    let table = dd.dir.join("data/delta/ratings");
    let theirs = keyed(&python(&table, &["2026-10", &version.to_string()]));
    let mut args = vec!["figures", "--period", "2026-10", "--by", "community,category"];
    if let Some(t) = as_of {
        args.extend(["--as-of", t]);
    }
    let ours = keyed(&dd.manyi(&args).success().stdout());
    assert!(ours.len() > 100, "a real table: {} cells", ours.len());
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>(), "the same cells at Delta version {version}");
    for (key, a) in &ours {
        let b = &theirs[key];
        for c in ["n", "c1", "c2", "c3", "c4", "c5", "active", "default", "second"] {
            assert_eq!(a[c], b[c], "{key:?} {c} at Delta version {version}");
        }
        for (c, tol) in [("satisfied_rate", 1e-6), ("bad_rate", 1e-6), ("score", 1e-4)] {
            let (x, y): (f64, f64) = (a[c].parse().expect("number"), b[c].parse().expect("number"));
            assert!((x - y).abs() < tol, "{key:?} {c}: {x} vs {y} at Delta version {version}");
        }
    }
    theirs
}

/// A demo deployment (seed `seed`, collected through 2026-10) with
/// `[publish] delta` set: the outer deployment owns the temporary folder.
fn demo_with_delta(seed: &str) -> (Deployment, Deployment, PathBuf) {
    let d = Deployment::empty();
    let demo = d.dir.join("demo");
    d.manyi(&["demo", "--seed", seed, "--through", "2026-10", "--dir", demo.to_str().expect("utf-8 path")]).success();
    let dd = Deployment::at(&demo);
    enable_delta(&dd);
    (d, dd, demo)
}

fn enable_delta(dd: &Deployment) {
    let path = dd.dir.join("manyi.toml");
    let mut text = std::fs::read_to_string(&path).expect("manyi.toml");
    text.push_str("\n[publish]\ndelta = \"data/delta\"\n");
    std::fs::write(&path, text).expect("write manyi.toml");
}

/// Five October ratings arrive again with another level: a new version of each.
fn late_correction(demo: &Path, dd: &Deployment) {
    correct_october(demo, dd, "corrections.csv", 0);
}

/// Five October ratings (every 997th, from row `skip`) sent again in file
/// `name` with another level; returns the collect's log.
fn correct_october(demo: &Path, dd: &Deployment, name: &str, skip: usize) -> String {
    let month_csv = std::fs::read_to_string(demo.join("inbox/ratings/archive/好差评导出_2026-10.csv")).expect("csv");
    let mut lines = month_csv.lines();
    let header = lines.next().expect("header");
    let level_col = header.split(',').position(|h| h == "满意度").expect("满意度 column");
    let mut changed = vec![header.to_string()];
    for line in lines.filter(|l| !l.contains('"')).skip(skip).step_by(997).take(5) {
        let mut cells: Vec<&str> = line.split(',').collect();
        cells[level_col] = if cells[level_col] == "1" { "5" } else { "1" };
        changed.push(cells.join(","));
    }
    dd.file(&format!("inbox/ratings/{name}"), &(changed.join("\n") + "\n"));
    dd.manyi(&["collect"]).success().stderr()
}

fn version_at(dd: &Deployment, as_of_ms: i64) -> i64 {
    dd.count(&format!(
        "SELECT d.delta_version FROM batches b JOIN delta_versions d USING (batch_seq)
         WHERE b.kind = 'ratings' AND b.committed_at_ms <= {as_of_ms} ORDER BY b.batch_seq DESC LIMIT 1"
    ))
}

#[test]
fn delta_table_equals_figures_at_latest_and_at_an_older_as_of() {
    let (_temp, dd, demo) = demo_with_delta("11");
    dd.manyi(&["check"]).success();
    // The demo collected before the table existed: publish catches up every batch.
    let out = dd.manyi(&["publish"]).success().stdout();
    assert!(out.contains("Delta version"), "{out}");
    assert_eq!(dd.count("SELECT COUNT(*) FROM batches b LEFT JOIN delta_versions d USING (batch_seq) WHERE d.batch_seq IS NULL"), 0);

    std::thread::sleep(std::time::Duration::from_millis(20));
    let before = chrono::Utc::now();
    let before_text = before.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::thread::sleep(std::time::Duration::from_millis(20));
    late_correction(&demo, &dd);

    let (old, latest) = (version_at(&dd, before.timestamp_millis()), version_at(&dd, i64::MAX));
    assert!(latest > old, "the correction made a new Delta version ({old} → {latest})");
    assert_eq!(dd.count("SELECT COUNT(*) FROM batches b LEFT JOIN delta_versions d USING (batch_seq) WHERE d.batch_seq IS NULL"), 0);
    let then = assert_same_table(&dd, old, Some(&before_text));
    let now = assert_same_table(&dd, latest, None);
    assert_ne!(then, now, "the late correction changed some cells");
    // The log and files manyi wrote itself, as delta-rs and pyarrow read them.
    let audit = python(&dd.dir.join("data/delta/ratings"), &["--audit"]);
    assert!(audit.starts_with(&format!("version {latest}, ")), "{audit}");

    let history = dd.manyi(&["history"]).success().stdout();
    assert!(history.contains(&format!("Delta version {latest}")), "{history}");
    // The report footer names the version of its as-of.
    dd.manyi(&["run", "monthly-report", "--period", "2026-10", "--dry-run"]).success();
    let footer = walk(&demo.join("data/outbox"))
        .into_iter()
        .chain(walk(&demo.join("data/reports")))
        .any(|p| std::fs::read(&p).map(|b| String::from_utf8_lossy(&b).contains(&format!("Delta version {latest}"))).unwrap_or(false));
    assert!(footer, "a report written after the correction says Delta version {latest}");
}

#[test]
fn a_file_committed_in_parts_is_one_delta_commit() {
    // A file larger than a part is several catalog batches committed at one
    // instant: one Delta version for all of them, not one a part writing
    // the same months again, and the table still equals the figures.
    let (_temp, dd, demo) = demo_with_delta("5");
    dd.manyi(&["publish"]).success();
    let before = version_at(&dd, i64::MAX);
    let month_csv = std::fs::read_to_string(demo.join("inbox/ratings/archive/好差评导出_2026-10.csv")).expect("csv");
    let mut lines = month_csv.lines();
    let header = lines.next().expect("header");
    let level_col = header.split(',').position(|h| h == "满意度").expect("满意度 column");
    let mut changed = vec![header.to_string()];
    for line in lines.filter(|l| !l.contains('"')).step_by(401).take(12) {
        let mut cells: Vec<&str> = line.split(',').collect();
        cells[level_col] = if cells[level_col] == "1" { "5" } else { "1" };
        changed.push(cells.join(","));
    }
    dd.file("inbox/ratings/parted.csv", &(changed.join("\n") + "\n"));
    dd.manyi_env(&["collect"], &[("MANYI_PART_ROWS", "4")]).success();
    let parts = "SELECT COUNT(*) FROM batches WHERE batch_id LIKE '%-part%'";
    assert_eq!(dd.count(parts), 2, "12 ratings in parts of 4: the batch and two more parts");
    let versions = "SELECT COUNT(DISTINCT d.delta_version) FROM batches b JOIN delta_versions d USING (batch_seq)
         WHERE b.batch_seq >= (SELECT MIN(batch_seq) FROM batches WHERE batch_id LIKE '%-part%') - 1";
    assert_eq!(dd.count(versions), 1, "the three parts share one Delta version");
    assert_eq!(version_at(&dd, i64::MAX), before + 1, "one Delta commit for the file");
    assert_same_table(&dd, before + 1, None);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

/// Distinct ratings committed up to and including batch `seq`.
fn ratings_through(dd: &Deployment, seq: i64) -> i64 {
    dd.count(&format!("SELECT COALESCE(SUM(rows_new), 0) FROM batches WHERE kind = 'ratings' AND batch_seq <= {seq}"))
}

#[test]
fn a_publication_killed_half_way_shows_nothing_half_applied_and_the_next_run_converges() {
    let (_temp, dd, demo) = demo_with_delta("3");
    let table = demo.join("data/delta/ratings");

    // Killed after writing the first batch's data files, before its log entry.
    let r = dd.manyi_env(&["publish"], &[("MANYI_CRASH_AT", "before-delta-commit")]);
    assert!(!r.out.status.success(), "the crash hook aborted the publication");
    let orphans = walk(&table).into_iter().filter(|p| p.extension().is_some_and(|x| x == "parquet")).count();
    assert!(orphans > 0, "data files were written before the kill");
    assert_eq!(dd.count("SELECT COUNT(*) FROM delta_versions"), 0);
    assert_eq!(python(&table, &["--rows"]).trim(), "0", "a reader sees the empty table, not the orphaned files");

    // Killed after the first Delta commit, before the catalog recorded it.
    let r = dd.manyi_env(&["publish"], &[("MANYI_CRASH_AT", "after-delta-commit")]);
    assert!(!r.out.status.success());
    assert_eq!(dd.count("SELECT COUNT(*) FROM delta_versions"), 0);
    let first = dd.count("SELECT MIN(batch_seq) FROM batches WHERE kind = 'ratings'");
    assert_eq!(python(&table, &["--rows"]).trim(), ratings_through(&dd, first).to_string(), "the whole first batch or nothing");

    // The next run (here a collect with nothing new) catches up.
    dd.manyi(&["collect"]).success();
    assert_eq!(dd.count("SELECT COUNT(*) FROM batches b LEFT JOIN delta_versions d USING (batch_seq) WHERE d.batch_seq IS NULL"), 0);
    // Every recorded version shows exactly the batches up to its own.
    let conn = dd.db();
    let pairs: Vec<(i64, i64)> = {
        let mut q =
            conn.prepare("SELECT batch_seq, delta_version FROM delta_versions WHERE kind = 'ratings' ORDER BY batch_seq").expect("sql");
        q.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("rows").collect::<Result<_, _>>().expect("rows")
    };
    assert!(pairs.len() >= 3, "{pairs:?}");
    for (seq, version) in &pairs {
        assert_eq!(python(&table, &["--rows", &version.to_string()]).trim(), ratings_through(&dd, *seq).to_string(), "batch {seq}");
    }
    let latest = pairs.last().map(|p| p.1).unwrap_or_default();
    assert_same_table(&dd, latest, None);

    // A rebuild from the catalog gives the same table.
    dd.manyi(&["publish", "--rebuild"]).success();
    let latest = version_at(&dd, i64::MAX);
    assert_same_table(&dd, latest, None);

    // The table folder deleted by hand: state.db still records its versions,
    // so the next publication replays every batch instead of saying
    // “up to date” over an empty folder.
    std::fs::remove_dir_all(&table).expect("delete the Delta table");
    let ran = dd.manyi(&["publish"]).success();
    assert!(ran.stderr().contains("republishing every batch"), "{}", ran.stderr());
    assert!(!ran.stderr().contains("ERROR"), "no delta-kernel error for a missing table: {}", ran.stderr());
    let latest = version_at(&dd, i64::MAX);
    assert_same_table(&dd, latest, None);

    // Two publishers at once (two processes, both replaying every batch of a
    // deleted table): one waits for the other, and no rating appears twice
    // (the reader script exits non-zero on a duplicate).
    std::fs::remove_dir_all(&table).expect("delete the Delta table");
    let spawn = || {
        std::process::Command::new(crate::support::BIN)
            .args(["--config", dd.dir.join("manyi.toml").to_str().expect("utf-8 path"), "publish"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn manyi publish")
    };
    let (mut a, mut b) = (spawn(), spawn());
    assert!(a.wait().expect("wait").success() && b.wait().expect("wait").success(), "both publishers succeed");
    let all = dd.count("SELECT COALESCE(SUM(rows_new), 0) FROM batches WHERE kind = 'ratings'");
    assert_eq!(python(&table, &["--rows"]).trim(), all.to_string(), "every rating once");
    assert_same_table(&dd, version_at(&dd, i64::MAX), None);
}

/// Another tool checkpoints the table (as a cluster's Delta writer does
/// every so many commits) and rewrites its files (OPTIMIZE): manyi continues
/// it from the JSON commits, which a checkpoint leaves in place. Once those commits are cleaned up (log
/// retention), manyi cannot replay the log and says to rebuild, instead of
/// publishing over a table it does not know.
#[test]
fn a_checkpointed_table_is_continued_and_a_log_cleaned_up_after_it_asks_for_a_rebuild() {
    let (_temp, dd, demo) = demo_with_delta("5");
    dd.manyi(&["publish"]).success();
    let table = demo.join("data/delta/ratings");
    python(&table, &["--checkpoint"]);
    assert!(table.join("_delta_log/_last_checkpoint").exists(), "deltalake wrote a checkpoint");
    python(&table, &["--optimize"]);
    let optimized = version_at(&dd, i64::MAX) + 1;
    let log = std::fs::read_to_string(table.join(format!("_delta_log/{optimized:020}.json"))).expect("the OPTIMIZE commit");
    assert!(log.contains("OPTIMIZE"), "{log}");

    correct_october(&demo, &dd, "corrections-1.csv", 0);
    let unpublished = "SELECT COUNT(*) FROM batches b LEFT JOIN delta_versions d USING (batch_seq) WHERE d.batch_seq IS NULL";
    assert_eq!(dd.count(unpublished), 0, "the collect published over the checkpoint");
    let latest = version_at(&dd, i64::MAX);
    assert_eq!(latest, optimized + 1, "manyi's commit follows the OPTIMIZE");
    assert_same_table(&dd, latest, None);
    python(&table, &["--audit"]);

    // The commits before the checkpoint removed, as log retention does.
    std::fs::remove_file(table.join("_delta_log/00000000000000000000.json")).expect("clean up commit 0");
    let collect_log = correct_october(&demo, &dd, "corrections-2.csv", 1);
    assert!(collect_log.contains("manyi publish --rebuild"), "the collect is committed, warns and names the remedy: {collect_log}");
    assert_eq!(dd.count(unpublished), 1, "the new batch waits for the rebuild");
    let refused = dd.manyi(&["publish"]);
    assert!(!refused.out.status.success(), "manyi publish fails");
    assert!(refused.stderr().contains("checkpoint") && refused.stderr().contains("manyi publish --rebuild"), "{}", refused.stderr());
    assert!(!table.join(format!("_delta_log/{:020}.json", latest + 1)).exists(), "no commit over the table manyi cannot replay");

    dd.manyi(&["publish", "--rebuild"]).success();
    assert_eq!(dd.count(unpublished), 0);
    assert_same_table(&dd, version_at(&dd, i64::MAX), None);
    python(&table, &["--audit"]);
}
