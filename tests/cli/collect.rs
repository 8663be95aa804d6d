//! Collecting from platforms: the 好差评 HTTP API against a loopback server
//! of the test's own (`tests/platform_server.py`) that pages, throttles,
//! fails, cuts bodies off and changes records between runs; crashes during
//! ingestion; 问卷星 exports in their real layouts and the 问卷星 OpenAPI.

use crate::support::{BIN, Deployment};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const SECRET_ENV: &str = "HCP_TEST_SECRET";
const SECRET: &str = "s3cret-省平台";

/// The loopback platform; killed when dropped.
pub struct Platform {
    child: Child,
    pub port: u16,
    pub control: PathBuf,
}

impl Platform {
    pub fn start(control: &Path, ctl: &Value) -> Platform {
        write_control(control, ctl);
        let (child, port) = crate::support::start_python_server(
            "platform_server.py",
            &[control.to_str().expect("utf-8 path")],
            "python3 with its standard library",
        );
        Platform { child, port, control: control.to_path_buf() }
    }

    pub fn set(&self, ctl: &Value) {
        write_control(&self.control, ctl);
    }

    /// The request log: one JSON object per request.
    pub fn log(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(format!("{}.log", self.control.display())).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).expect("log line")).collect()
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_control(path: &Path, ctl: &Value) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(ctl).expect("json")).expect("write control");
    std::fs::rename(&tmp, path).expect("rename control");
}

/// Adds `sources` (TOML `[[source]]` blocks) to the small deployment's config.
fn with_sources(d: &Deployment, sources: &str) {
    let path = d.dir.join("manyi.toml");
    let text = std::fs::read_to_string(&path).expect("manyi.toml");
    let at = text.find("[mail]").expect("[mail] in manyi.toml");
    let new = format!("{}{sources}\n{}", &text[..at], &text[at..]);
    std::fs::write(&path, new).expect("write manyi.toml");
}

fn api_source(port: u16, extra: &str) -> String {
    format!(
        "[[source]]\nname = \"hcp\"\nkind = \"haochaping_api\"\n\
         # The loopback platform codes levels as star widgets do (1 = 非常不满意).\nlevel_codes = \"ascending\"\n\n\
         [source.api]\nbase_url = \"http://127.0.0.1:{port}\"\n\
         path = \"/api/evaluation/list\"\napp_key = \"linjiang-app\"\nsecret_env = \"{SECRET_ENV}\"\npage_size = 10\n\
         start = \"2026-09-01 00:00:00\"\noverlap_hours = 240\nbackoff_ms = 50\nmax_backoff_ms = 3000\ntimeout_secs = 10\n{extra}\n\
         [source.api.category_map]\nYL = \"elderly_care\"\nWS = \"health\"\n"
    )
}

/// A 好差评 record as the provincial interface sends it.
fn record(no: usize, time: &str, level: u8, reform: u8) -> Value {
    let communities = ["369901001001", "369901001002", "369901001003"];
    json!({
        "projectNo": format!("370101-2026-{no:05}"),
        "assessNumber": 1,
        "areaCode": communities[no % 3],
        "deptCode": "11369901MB0000000X",
        "taskCode": if no.is_multiple_of(2) { "YL" } else { "WS" },
        "taskHandleItem": "老年人优待证办理",
        "pf": 1 + no % 7,
        "satisfaction": level,
        "evalDetail": if level <= 2 { "501,502" } else { "" },
        "writingEvaluation": if level <= 2 { "等了很久" } else { "" },
        "assessTime": time,
        "userProp": 1,
        "anonymityFlag": 2,
        "reformStatus": reform,
        "reformContent": "",
        "reformDate": "",
    })
}

/// 25 good records over three pages of ten, and one malformed (satisfaction 9).
fn records() -> Vec<Value> {
    let mut v: Vec<Value> = (0..25)
        .map(|i| {
            record(
                i,
                &format!("2026-10-{:02} {:02}:15:00", 1 + i / 5, 8 + i % 5),
                if i % 6 == 0 { 2 } else { 4 },
                if i % 6 == 0 { 1 } else { 0 },
            )
        })
        .collect();
    let mut bad = record(99, "2026-10-02 12:30:00", 4, 0);
    bad["satisfaction"] = json!(9);
    v.push(bad);
    v
}

fn manyi_command(d: &Deployment, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(&d.dir).env("MANYI_CONFIG", d.dir.join("manyi.toml")).env_remove("MANYI_LOG").env(SECRET_ENV, SECRET);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn manyi_env(d: &Deployment, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    manyi_command(d, args, env).output().expect("run manyi")
}

/// Starts manyi in `d` without waiting for it, its output kept for `wait_with_output`.
fn spawn_manyi(d: &Deployment, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    manyi_command(d, args, env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn manyi")
}

fn watermark(d: &Deployment, source: &str) -> Option<String> {
    use rusqlite::OptionalExtension;
    d.db().query_row("SELECT value FROM watermarks WHERE source = ?1", [source], |r| r.get(0)).optional().expect("watermark")
}

/// n of the period's figures, as `manyi figures` prints it (latest versions only).
fn figures_n(d: &Deployment, period: &str) -> i64 {
    let out = manyi_env(d, &["figures", "--period", period], &[]);
    assert!(out.status.success(), "figures: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().expect("header").split(',').collect();
    let col = head.iter().position(|h| *h == "n").expect("n column");
    lines.next().map(|l| l.split(',').nth(col).expect("n").parse().expect("n number")).unwrap_or(0)
}

/// Record versions stored in committed Parquet files, and distinct ids.
fn stored(d: &Deployment, kind: &str) -> (i64, i64) {
    let rows =
        d.count(&format!("SELECT COALESCE(SUM(f.rows), 0) FROM batch_files f JOIN batches b USING (batch_seq) WHERE b.kind = '{kind}'"));
    let ids = d.count(&format!("SELECT COUNT(*) FROM record_keys WHERE kind = '{kind}'"));
    (rows, ids)
}

#[test]
fn api_source_survives_platform_faults_and_stores_each_record_once() {
    let d = Deployment::small();
    let control = d.dir.join("platform.json");
    let faults = json!([
        {"page": 1, "kind": "429", "times": 1, "retry_after": 1},
        {"page": 2, "kind": "500", "times": 1},
        {"page": 3, "kind": "truncate", "times": 1}
    ]);
    let p = Platform::start(&control, &json!({"app_key": "linjiang-app", "secret": SECRET, "records": records(), "faults": faults}));
    with_sources(&d, &api_source(p.port, ""));

    let out = manyi_env(&d, &["collect", "hcp"], &[("MANYI_LOG", "manyi=debug")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Page 3's request went ahead while page 2 was read (the total said
    // there was a page 3), and its cut-off answer was retried as any other;
    // none went ahead for page 2 (the total was not known before page 1 was
    // read) nor past the last page.
    let ahead: Vec<&str> = stderr.lines().filter(|l| l.contains("request sent ahead")).collect();
    assert_eq!(ahead.len(), 1, "{stderr}");
    assert!(ahead[0].contains("page=3"), "{stderr}");
    // Every good record once, the malformed one in quarantine with its reason.
    assert_eq!(stored(&d, "ratings"), (25, 25));
    let qfile = d.dir.join("data/quarantine/hcp");
    let q: Vec<PathBuf> = std::fs::read_dir(&qfile).expect("quarantine").map(|e| e.expect("entry").path()).collect();
    assert_eq!(q.len(), 1);
    let qtext = std::fs::read_to_string(&q[0]).expect("quarantine file");
    assert_eq!(qtext.trim_start_matches('\u{feff}').lines().count(), 2, "{qtext}");
    assert!(qtext.contains("satisfaction") && qtext.contains("满意度“9”") && qtext.contains("370101-2026-00099"), "{qtext}");
    assert!(stdout.contains(&q[0].display().to_string()), "the table names the quarantine file:\n{stdout}");
    // The watermark is the latest good record's time.
    assert_eq!(watermark(&d, "hcp").as_deref(), Some("2026-10-05 12:15:00"));
    // Three pages landed, each exactly a complete JSON page.
    let landed = crate::walk(&d.dir.join("data/landing/hcp"));
    assert_eq!(landed.len(), 3, "{landed:?}");
    for f in &landed {
        let v: Value = serde_json::from_slice(&std::fs::read(f).expect("landed")).expect("landed page is whole JSON");
        assert!(v["data"]["records"].is_array());
    }
    // The client retried each fault, and waited out Retry-After on the 429.
    let log = p.log();
    let statuses: Vec<String> = log.iter().map(|e| format!("{}:{}", e["page"], e["status"])).collect();
    assert_eq!(statuses, ["1:429", "1:200", "2:500", "2:200", "3:\"truncated\"", "3:200"], "{log:?}");
    let waited = log[1]["t"].as_f64().expect("t") - log[0]["t"].as_f64().expect("t");
    assert!(waited >= 0.95, "Retry-After: 1 was not honoured (waited {waited:.2}s)");

    // Between runs, one 差评 is rectified and a new rating arrives.
    let mut recs = records();
    recs[6]["reformStatus"] = json!(2);
    recs[6]["reformDate"] = json!("2026-10-09 10:00:00");
    recs[6]["reformContent"] = json!("已增派窗口人员");
    recs.push(record(30, "2026-10-06 09:00:00", 5, 0));
    p.set(&json!({"app_key": "linjiang-app", "secret": SECRET, "records": recs}));
    let out = manyi_env(&d, &["collect", "hcp"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // fetched 27 (re-fetched inside the overlap), new 1, updated 1, unchanged 24, quarantined 1.
    let row = stdout.lines().find(|l| l.starts_with("hcp ")).expect("hcp row");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[2..7], ["27", "1", "1", "24", "1"], "{stdout}");
    assert_eq!(stored(&d, "ratings"), (27, 26), "the changed rating is a second version, not a duplicate id");
    assert_eq!(d.count("SELECT COUNT(*) FROM record_versions WHERE record_id = '370101-2026-00006-1'"), 2);
    assert_eq!(figures_n(&d, "2026-10"), 26, "figures count the latest version of each rating once");
    assert_eq!(watermark(&d, "hcp").as_deref(), Some("2026-10-06 09:00:00"));
}

#[test]
fn api_source_rejects_a_bad_signature_and_a_missing_secret() {
    let d = Deployment::small();
    let p = Platform::start(&d.dir.join("platform.json"), &json!({"app_key": "linjiang-app", "secret": SECRET, "records": records()}));
    with_sources(&d, &api_source(p.port, "signature = \"base64\""));
    // The server checks a hex signature unless told otherwise: base64 is refused with 401.
    let out = manyi_env(&d, &["collect"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HTTP 401") && stderr.contains(SECRET_ENV) && stderr.contains("page 1"), "{stderr}");
    assert_eq!(p.log().iter().filter(|e| e["status"] == 401).count(), 1, "401 is not retried");
    // Told to sign in base64, the server accepts.
    p.set(&json!({"app_key": "linjiang-app", "secret": SECRET, "signature": "base64", "records": records()}));
    let out = manyi_env(&d, &["collect"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stored(&d, "ratings"), (25, 25));

    let out = Command::new(BIN)
        .args(["collect", "hcp"])
        .current_dir(&d.dir)
        .env("MANYI_CONFIG", d.dir.join("manyi.toml"))
        .env_remove(SECRET_ENV)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("environment variable {SECRET_ENV}")), "{stderr}");
}

#[test]
fn a_page_that_stays_broken_fails_its_batch_and_leaves_the_store_as_it_was() {
    let d = Deployment::small();
    let p = Platform::start(
        &d.dir.join("platform.json"),
        &json!({"app_key": "linjiang-app", "secret": SECRET, "records": records(),
                "faults": [{"page": 2, "kind": "truncate", "times": 99}]}),
    );
    with_sources(&d, &api_source(p.port, "max_retries = 2"));
    let out = manyi_env(&d, &["collect"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("page 2") && stderr.contains("cut off") && stderr.contains("3 attempt"), "{stderr}");
    assert_eq!(d.count("SELECT COUNT(*) FROM batches"), 0);
    assert_eq!(watermark(&d, "hcp"), None);
    // The platform recovers: the next run takes everything, once.
    p.set(&json!({"app_key": "linjiang-app", "secret": SECRET, "records": records()}));
    let out = manyi_env(&d, &["collect"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stored(&d, "ratings"), (25, 25));
}

#[test]
fn requests_go_ahead_as_deep_as_configured_and_never_past_the_last_page() {
    // 26 records (one malformed) in pages of 4: 7 pages, the last one
    // short. Each depth must ask for every page exactly once (an answer
    // taken ahead is not asked for again), send requests ahead only for
    // pages 3–7 (the total is known once page 1 is read, and page 2 is asked
    // for then), never for a page 8, and store the same 25 ratings.
    //
    // Page 3 answers after 0.5 s. The requests sent with it (depth − 1
    // more, once page 2 is in) are answered while it waits, so the platform
    // logs them before page 3; with one request ahead, page 4 is asked for
    // only once page 3 is in.
    for depth in [0, 1, 3] {
        let d = Deployment::small();
        let p = Platform::start(
            &d.dir.join("platform.json"),
            &json!({"app_key": "linjiang-app", "secret": SECRET, "records": records(),
                    "faults": [{"page": 3, "kind": "slow", "secs": 0.5, "times": 1}]}),
        );
        with_sources(&d, &api_source(p.port, &format!("requests_ahead = {depth}")).replace("page_size = 10", "page_size = 4"));
        let out = manyi_env(&d, &["collect", "hcp"], &[("MANYI_LOG", "manyi=debug")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "depth {depth}:\n{stderr}");
        let mut pages: Vec<i64> = p.log().iter().map(|e| e["page"].as_i64().expect("page")).collect();
        let before_3: BTreeSet<i64> = pages.iter().take_while(|&&n| n != 3).copied().collect();
        let want: BTreeSet<i64> = (1..=2).chain(4..=(2 + depth)).collect();
        assert_eq!(before_3, want, "depth {depth}: answered before the slow page 3: {pages:?}");
        pages.sort_unstable();
        assert_eq!(pages, [1, 2, 3, 4, 5, 6, 7], "depth {depth}: every page asked for once");
        let ahead: Vec<u32> = stderr
            .lines()
            .filter(|l| l.contains("request sent ahead"))
            .map(|l| l.split("page=").nth(1).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).expect("page="))
            .collect();
        let want: Vec<u32> = if depth == 0 { vec![] } else { (3..=7).collect() };
        assert_eq!(ahead, want, "depth {depth}:\n{stderr}");
        assert_eq!(stored(&d, "ratings"), (25, 25), "depth {depth}");
    }
}

/// Collects `source` with its landing folder made a file (nothing can be
/// landed in it): the run must fail naming the folder and commit nothing.
/// The folder is writable again afterwards.
fn collect_with_landing_blocked(d: &Deployment, source: &str) {
    let blocker = d.dir.join("data/landing").join(source);
    std::fs::create_dir_all(d.dir.join("data/landing")).expect("landing folder");
    std::fs::write(&blocker, "not a folder").expect("blocker");
    let out = manyi_env(d, &["collect", source], &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("data/landing/{source}")), "the error names the folder:\n{stderr}");
    assert_eq!(d.count("SELECT COUNT(*) FROM batches"), 0, "nothing committed without its landing");
    std::fs::remove_file(&blocker).expect("unblock");
}

#[test]
fn a_page_that_cannot_be_landed_commits_nothing_and_names_the_folder() {
    // Pages are landed on a thread of their own while the commits run: a
    // landing that fails must still stop the run before anything of its
    // batch is committed, and say where it could not write.
    let d = Deployment::small();
    let p = Platform::start(&d.dir.join("platform.json"), &json!({"app_key": "linjiang-app", "secret": SECRET, "records": records()}));
    with_sources(&d, &api_source(p.port, ""));
    collect_with_landing_blocked(&d, "hcp");
    assert_eq!(watermark(&d, "hcp"), None);
    // Once the folder can be written, the next run takes everything, once.
    let out = manyi_env(&d, &["collect", "hcp"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stored(&d, "ratings"), (25, 25));
    assert_eq!(crate::walk(&d.dir.join("data/landing/hcp")).len(), 3, "three pages landed");
}

#[test]
fn an_inbox_file_that_cannot_be_landed_stays_in_the_inbox_and_commits_nothing() {
    // Inbox files are landed on the reading thread while the one before is
    // committed: a landing that fails must stop the source before the file
    // is committed or archived, and say where it could not write.
    let d = Deployment::small();
    let csv = format!(
        "{}C001,1,2026-10-03 09:00:00,369901001001,政务办事,1,非常满意,,\nC002,1,2026-10-03 09:10:00,369901001002,养老服务,2,4,,\n",
        crate::HEAD
    );
    d.file("inbox/ratings/drop.csv", &csv);
    collect_with_landing_blocked(&d, "office-drop");
    assert!(d.dir.join("inbox/ratings/drop.csv").exists(), "the file waits in the inbox");
    let out = manyi_env(&d, &["collect", "office-drop"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stored(&d, "ratings"), (2, 2));
    assert!(d.dir.join("inbox/ratings/archive/drop.csv").exists());
    assert_eq!(crate::walk(&d.dir.join("data/landing/office-drop")).len(), 1, "landed once");
}

#[test]
fn crashes_at_every_commit_step_lose_nothing_and_duplicate_nothing() {
    let d = Deployment::small();
    let p = Platform::start(&d.dir.join("platform.json"), &json!({"app_key": "linjiang-app", "secret": SECRET, "records": records()}));
    // One page of ten holds the malformed record: 10% quarantined, allowed here.
    let source = api_source(p.port, "commit_every = 1")
        .replace("kind = \"haochaping_api\"\n", "kind = \"haochaping_api\"\nmax_quarantine_share = 0.1\n");
    with_sources(&d, &source);
    let csv = format!(
        "{}C001,1,2026-10-03 09:00:00,369901001001,政务办事,1,非常满意,,\nC002,1,2026-10-03 09:10:00,369901001002,养老服务,2,4,,\n",
        crate::HEAD
    );
    d.file("inbox/ratings/drop.csv", &csv);
    for point in ["after-land", "after-parquet", "after-commit"] {
        for source in ["office-drop", "hcp"] {
            let out = manyi_env(&d, &["collect", source], &[("MANYI_CRASH_AT", point)]);
            assert!(!out.status.success(), "{source} {point}: the hook must abort the process");
            let (rows, ids) = stored(&d, "ratings");
            assert_eq!(rows, ids, "{source} {point}: no record stored twice");
        }
    }
    // The crash after the first commit left page 1 committed and the watermark on it.
    assert!(watermark(&d, "hcp").is_some());
    manyi_env(&d, &["collect"], &[]).status.success().then_some(()).expect("a normal run after the crashes");
    assert_eq!(stored(&d, "ratings"), (27, 27));
    assert_eq!(figures_n(&d, "2026-10"), 27);
    assert!(d.dir.join("inbox/ratings/archive/drop.csv").exists());
}

#[test]
fn sigkill_at_random_moments_of_a_long_ingest_loses_nothing_and_duplicates_nothing() {
    use rand::{Rng, SeedableRng};
    let d = Deployment::small();
    let n = 20_000;
    // Four of the 40 pages answer after 0.6 s, so that every run lasts well
    // over the longest wait before the kill however fast the ingest gets
    // (once it got fast enough to finish every run before its kill, and
    // the test proved nothing); the other 36 pages and the commits run at
    // full speed, and the kills land among them as much as in the waits.
    let slow: Vec<Value> = [6, 16, 26, 36].iter().map(|p| json!({"page": p, "kind": "slow", "secs": 0.6, "times": 1000})).collect();
    let p = Platform::start(
        &d.dir.join("platform.json"),
        &json!({"app_key": "linjiang-app", "secret": SECRET, "generate": {"count": n}, "faults": slow}),
    );
    with_sources(
        &d,
        &api_source(p.port, "commit_every = 3")
            .replace("page_size = 10", "page_size = 500")
            .replace("[source.api.category_map]", "[source.api.category_map]\nTY = \"childcare\"\nJY = \"employment\""),
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut killed = 0;
    for _ in 0..5 {
        let mut child = Command::new(BIN)
            .args(["collect"])
            .current_dir(&d.dir)
            .env("MANYI_CONFIG", d.dir.join("manyi.toml"))
            .env(SECRET_ENV, SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(rng.gen_range(200..2500)));
        if child.try_wait().expect("try_wait").is_none() {
            child.kill().expect("SIGKILL");
            killed += 1;
        }
        child.wait().expect("wait");
        let (rows, ids) = stored(&d, "ratings");
        assert_eq!(rows, ids, "after a kill: every stored id once");
    }
    assert!(killed > 0, "no run was killed mid-ingest; the test proved nothing");
    let out = manyi_env(&d, &["collect"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stored(&d, "ratings"), (n, n));
    assert_eq!(figures_n(&d, "2026-10"), n);
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wjx").join(name)
}

/// (response id, question, option, fill-in text, skipped) of every curated answer of `source`.
fn answers(d: &Deployment, source: &str) -> Vec<(String, String, String, String, bool)> {
    use polars::prelude::*;
    let db = d.db();
    let mut stmt = db
        .prepare("SELECT f.path FROM batch_files f JOIN batches b USING (batch_seq) WHERE b.kind = 'responses' AND b.source = ?1")
        .expect("prepare");
    let paths: Vec<String> = stmt.query_map([source], |r| r.get(0)).expect("query").map(|p| p.expect("path")).collect();
    let mut out = Vec::new();
    for p in paths {
        let df = ParquetReader::new(std::fs::File::open(d.dir.join("data").join(&p)).expect("parquet")).finish().expect("read parquet");
        let s = |c: &str| df.column(c).expect(c).str().expect(c).clone();
        let (id, q, o, t) = (s("response_id"), s("question"), s("option"), s("text"));
        let sk = df.column("skipped").expect("skipped").bool().expect("bool").clone();
        for i in 0..df.height() {
            let get = |ca: &StringChunked| ca.get(i).unwrap_or("").to_string();
            out.push((get(&id), get(&q), get(&o), get(&t), sk.get(i).expect("skipped value")));
        }
    }
    out.sort();
    out
}

fn expected_answers() -> Vec<(String, String, String, String, bool)> {
    let a = |id: &str, q: &str, o: &str, t: &str, sk: bool| (id.to_string(), q.to_string(), o.to_string(), t.to_string(), sk);
    let mut v = vec![
        a("1", "overall", "满意", "", false),
        a("1", "needs", "助餐", "", false),
        a("1", "needs", "其他", "加装电梯", false),
        a("1", "staff/工作态度", "满意", "", false),
        a("1", "staff/办事效率", "基本满意", "", false),
        a("1", "elderly", "", "", true),
        a("1", "suggestion", "", "希望多办文体活动", false),
        a("2", "overall", "不满意", "", false),
        a("2", "needs", "停车", "", false),
        a("2", "staff/工作态度", "不满意", "", false),
        a("2", "staff/办事效率", "", "", true),
        a("2", "elderly", "", "", true),
        a("2", "suggestion", "", "", true),
        a("3", "overall", "基本满意", "", false),
        a("3", "needs", "", "", true),
        a("3", "staff/工作态度", "基本满意", "", false),
        a("3", "staff/办事效率", "满意", "", false),
        a("3", "elderly", "满意", "", false),
        a("3", "suggestion", "", "楼道灯坏了很久", false),
    ];
    v.sort();
    v
}

/// Writes the fixture's rows as the xlsx 问卷星 downloads (序号 as a number).
fn write_xlsx(path: &Path) {
    let bytes = std::fs::read(fixture("survey_utf8_bom.csv")).expect("fixture");
    let text = String::from_utf8(bytes).expect("utf-8");
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    for (r, rec) in rdr.records().enumerate() {
        for (c, cell) in rec.expect("row").iter().enumerate() {
            match cell.parse::<f64>() {
                Ok(n) if c == 0 && r > 0 => ws.write_number(r as u32, c as u16, n).map(|_| ()),
                _ => ws.write_string(r as u32, c as u16, cell).map(|_| ()),
            }
            .expect("cell");
        }
    }
    wb.save(path).expect("save xlsx");
}

#[test]
fn wjx_exports_in_xlsx_utf8_and_gbk_land_in_the_right_questions_with_skips_kept() {
    let d = Deployment::small();
    d.file("survey-templates/needs/survey.toml", &std::fs::read_to_string(fixture("survey.toml")).expect("survey.toml"));
    with_sources(&d, "[[source]]\nname = \"wjx-needs\"\nkind = \"wjx_export\"\ninbox = \"inbox/needs\"\nsurvey = \"needs\"\n");
    std::fs::create_dir_all(d.dir.join("inbox/needs")).expect("inbox");
    write_xlsx(&d.dir.join("inbox/needs/a-export.xlsx"));
    d.manyi(&["collect", "wjx-needs"]).success();
    assert_eq!(answers(&d, "wjx-needs"), expected_answers(), "xlsx");
    assert_eq!(d.count("SELECT COUNT(*) FROM record_keys WHERE kind = 'responses'"), 3);

    // The same answers saved as CSV in UTF-8 with a BOM and in GBK parse to
    // identical content: every response is recognised as unchanged.
    std::fs::copy(fixture("survey_utf8_bom.csv"), d.dir.join("inbox/needs/b-utf8.csv")).expect("copy");
    std::fs::copy(fixture("survey_gbk.csv"), d.dir.join("inbox/needs/c-gbk.csv")).expect("copy");
    let out = d.manyi(&["collect", "wjx-needs"]).success().stdout();
    let row: Vec<&str> = out.lines().find(|l| l.starts_with("wjx-needs")).expect("row").split_whitespace().collect();
    assert_eq!(&row[1..7], ["2", "6", "0", "0", "6", "0"], "{out}");
    assert_eq!(answers(&d, "wjx-needs"), expected_answers());
    assert!(d.dir.join("inbox/needs/archive/c-gbk.csv").exists());
}

#[test]
fn wjx_openapi_pages_of_answers_map_to_the_same_questions() {
    let d = Deployment::small();
    d.file("survey-templates/needs/survey.toml", &std::fs::read_to_string(fixture("survey.toml")).expect("survey.toml"));
    let row = |id: &str, t: &str, a: [&str; 7]| json!({"joinid": id, "submittime": t, "answer": {"q1": a[0], "q2": a[1], "q3": a[2], "q4_工作态度": a[3], "q4_办事效率": a[4], "q5": a[5], "q6": a[6]}});
    let rows = json!([
        row("1", "2026-10-03 09:12:05", ["春晖社区", "满意", "助餐┋其他〖加装电梯〗", "满意", "基本满意", "(跳过)", "希望多办文体活动"]),
        row("2", "2026-10-03 10:01:44", ["阳光社区", "不满意", "停车", "不满意", "-2", "-3", "(空)"]),
        row("3", "2026-10-04 20:30:10", ["369901001003", "基本满意", "-3", "基本满意", "满意", "满意", "楼道灯坏了很久"]),
    ]);
    let p = Platform::start(
        &d.dir.join("platform.json"),
        &json!({"app_key": "x", "secret": "y", "wjx": {"appid": "wjx-app", "appkey": SECRET, "rows": rows}}),
    );
    with_sources(
        &d,
        &format!(
            "[[source]]\nname = \"wjx-api\"\nkind = \"wjx_api\"\nsurvey = \"needs\"\n\n[source.api]\nbase_url = \"http://127.0.0.1:{}\"\n\
             app_key = \"wjx-app\"\nsecret_env = \"{SECRET_ENV}\"\npage_size = 2\nvid = \"123456\"\nstart = \"2026-09-01 00:00:00\"\n",
            p.port
        ),
    );
    let out = manyi_env(&d, &["collect", "wjx-api"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(answers(&d, "wjx-api"), expected_answers());
    assert_eq!(p.log().iter().filter(|e| e.get("wjx_page").is_some()).count(), 2, "two pages of two");
    assert_eq!(watermark(&d, "wjx-api").as_deref(), Some("2026-10-04 20:30:10"));
}

#[test]
fn check_lists_every_problem_of_api_sources() {
    let d = Deployment::small();
    with_sources(
        &d,
        "[[source]]\nname = \"no-api\"\nkind = \"haochaping_api\"\n\n\
         [[source]]\nname = \"bad-api\"\nkind = \"haochaping_api\"\n[source.api]\nbase_url = \"ftp://x\"\napp_key = \"k\"\n\
         secret_env = \"my secret value!\"\npage_size = 0\nrequests_ahead = 9\ndefault_category = \"nosuch\"\n\n\
         [[source]]\nname = \"wjx-big\"\nkind = \"wjx_api\"\nsurvey = \"community\"\n[source.api]\nbase_url = \"http://x\"\napp_key = \"a\"\n\
         secret_env = \"WJX_KEY\"\npage_size = 100\n",
    );
    let err = d.manyi(&["check"]).code(2).stderr();
    for want in [
        "source “no-api”: an API source needs a `[source.api]` table",
        "api.base_url “ftp://x” must start with http:// or https://",
        "must be the NAME of an environment variable",
        "api.page_size 0 must be 1–10000",
        "api.requests_ahead 9 must be 0–4",
        "api.default_category “nosuch”",
        "source “wjx-big”: api.page_size 100 must be 1–50",
        "a wjx_api source needs `vid`",
    ] {
        assert!(err.contains(want), "missing “{want}” in:\n{err}");
    }
}

#[test]
fn a_run_stopped_by_the_page_limit_is_resumed_where_it_stopped() {
    let d = Deployment::small();
    let p = Platform::start(&d.dir.join("platform.json"), &json!({"app_key": "linjiang-app", "secret": SECRET, "records": records()}));
    with_sources(&d, &api_source(p.port, "page_limit = 2"));
    let out = manyi_env(&d, &["collect"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Two pages of ten (in assessTime order): 19 good records and the malformed one.
    assert_eq!(stored(&d, "ratings"), (19, 19));
    assert_eq!(watermark(&d, "hcp").as_deref(), Some("2026-10-04 11:15:00 catch-up"));
    // The overlap (240 h) is wider than the backlog: without the catch-up
    // mark the next run would fetch the same two pages again.
    let out = manyi_env(&d, &["collect"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stored(&d, "ratings"), (25, 25));
    assert_eq!(watermark(&d, "hcp").as_deref(), Some("2026-10-05 12:15:00"));
}

/// A drop of 23 rows: C001–C020, then C003 again with another level (its
/// later state), C004 again unchanged, and one row with no 办件编号. In parts
/// of five good ratings, C003's two states fall in different parts.
fn parted_drop() -> String {
    let orgs = ["369901001001", "369901001002", "369901001003"];
    let cats = ["政务办事", "养老服务"];
    let levels = ["非常满意", "满意", "基本满意", "不满意", "非常不满意"];
    let mut csv = crate::HEAD.to_string();
    let row = |i: usize, level: &str| {
        format!("C{i:03},1,2026-10-{:02} 09:{:02}:00,{},{},1,{level},,\n", 1 + i % 28, i % 60, orgs[i % 3], cats[i % 2])
    };
    for i in 1..=20 {
        csv.push_str(&row(i, levels[i % 5]));
    }
    csv.push_str(&row(3, "非常不满意"));
    csv.push_str(&row(4, levels[4]));
    csv.push_str(",1,2026-10-05 09:00:00,369901001001,政务办事,1,满意,,\n");
    csv
}

/// What a deployment's store says of October: `manyi figures` by community
/// and category, and the stored (rows, ids).
fn october(d: &Deployment) -> (String, (i64, i64)) {
    let out = manyi_env(d, &["figures", "--period", "2026-10", "--by", "community,category"], &[]);
    assert!(out.status.success(), "figures: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stdout).into_owned(), stored(d, "ratings"))
}

#[test]
fn a_file_committed_in_parts_reads_back_as_the_file_committed_whole() {
    // A file of more good ratings than a part (a quarter of a million;
    // five here) goes to the store a part at a time, each part a batch of
    // its own, all committed in one transaction. The figures must be the
    // ones the file committed whole gives, C003 at its later level, in
    // each form an office exports: UTF-8 CSV, GBK CSV, XLSX and XLS, and
    // the text files Excel saves, tab-separated in UTF-8, GBK or UTF-16.
    let csv = parted_drop();
    let xlsx = {
        let mut wb = rust_xlsxwriter::Workbook::new();
        let sheet = wb.add_worksheet();
        for (r, line) in csv.lines().enumerate() {
            for (c, cell) in line.split(',').enumerate() {
                sheet.write_string(r as u32, c as u16, cell).expect("cell");
            }
        }
        wb.save_to_buffer().expect("xlsx")
    };
    // A CSV file is read whole, then as a stream, as a file too large to
    // read whole is (`MANYI_STREAM_BYTES`, 64 MiB unless set): UTF-8 read
    // as it is, GBK decoded as it is read.
    let gbk = encoding_rs::GBK.encode(&csv).0.into_owned();
    // "文本文件(制表符分隔)" and "Unicode 文本": tabs, in GBK or UTF-16LE
    // with its BOM (read whole whatever its size).
    let tabbed = csv.replace(',', "\t");
    let unicode = [b"\xFF\xFE".to_vec(), tabbed.encode_utf16().flat_map(u16::to_le_bytes).collect()].concat();
    // An "Excel 97-2003 工作簿" of the same rows, written by xlwt
    // (tests/fixtures/ratings/make_xls.py); read back here to be sure it
    // still is.
    let xls = include_bytes!("../fixtures/ratings/parted_drop.xls").to_vec();
    {
        use calamine::Reader;
        let mut book = calamine::Xls::new(std::io::Cursor::new(xls.as_slice())).expect("the fixture is an XLS workbook");
        let sheet = book.worksheet_range_at(0).expect("a sheet").expect("readable");
        let lines: Vec<String> = sheet.rows().map(|r| r.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")).collect();
        assert_eq!(lines.join("\n"), csv.trim_end(), "parted_drop.xls is not parted_drop(): run tests/fixtures/ratings/make_xls.py");
    }
    let forms: [(&str, Vec<u8>, &str); 10] = [
        ("drop.csv", csv.as_bytes().to_vec(), "67108864"),
        ("drop-gbk.csv", gbk.clone(), "67108864"),
        ("drop.xlsx", xlsx, "0"),
        ("drop.csv", csv.as_bytes().to_vec(), "0"),
        ("drop-gbk.csv", gbk, "0"),
        ("drop-tab.txt", tabbed.as_bytes().to_vec(), "67108864"),
        ("drop-tab.txt", tabbed.as_bytes().to_vec(), "0"),
        ("drop-tab-gbk.txt", encoding_rs::GBK.encode(&tabbed).0.into_owned(), "0"),
        ("drop-unicode.txt", unicode, "0"),
        ("drop.xls", xls, "0"),
    ];
    let mut seen = Vec::new();
    for (name, bytes, stream) in &forms {
        for part in [None, Some("5")] {
            let d = Deployment::small();
            std::fs::create_dir_all(d.dir.join("inbox/ratings")).expect("inbox");
            std::fs::write(d.dir.join("inbox/ratings").join(name), bytes).expect("write the file");
            let mut env: Vec<(&str, &str)> = part.iter().map(|p| ("MANYI_PART_ROWS", *p)).collect();
            env.push(("MANYI_STREAM_BYTES", stream));
            env.push(("MANYI_LOG", "info"));
            let out = manyi_env(&d, &["collect", "office-drop"], &env);
            assert!(out.status.success(), "{name} {part:?}: {}", String::from_utf8_lossy(&out.stderr));
            let streamed = ["large UTF-8 file", "large GBK file"].map(|m| String::from_utf8_lossy(&out.stderr).contains(m));
            let csv_stream = *stream == "0" && !name.contains(".xls") && !name.contains("unicode");
            assert_eq!(streamed, [csv_stream && !name.contains("gbk"), csv_stream && name.contains("gbk")], "{name} {stream}");
            let batches = d.count("SELECT COUNT(*) FROM batches");
            // 22 good ratings: one batch whole, five parts of at most five.
            assert_eq!(batches, if part.is_some() { 5 } else { 1 }, "{name} {part:?}");
            assert_eq!(d.count("SELECT COUNT(*) FROM batches WHERE part_of IS NULL"), 1, "{name} {part:?}: one file, one batch to people");
            // The quarantined row is listed once, on the first part.
            assert_eq!(d.count("SELECT COALESCE(SUM(rows_quarantined), 0) FROM batches"), 1, "{name} {part:?}");
            assert_eq!(d.count("SELECT COUNT(quarantine) FROM batches"), 1, "{name} {part:?}");
            let landed = d.count("SELECT COUNT(*) FROM batches WHERE landing LIKE '%/landing/office-drop/%'");
            assert_eq!(landed, batches, "{name} {part:?}: every part names the landed file");
            assert!(d.dir.join("inbox/ratings/archive").join(name).exists(), "{name} {part:?}: archived after the commit");
            // The quarantined row (line 24) named by its line, read whole or as a stream.
            let quarantine = crate::walk(&d.dir.join("data/quarantine/office-drop"));
            let text = std::fs::read_to_string(&quarantine[0]).expect("quarantine file");
            assert!(text.lines().nth(1).is_some_and(|l| l.starts_with("24,project_no,")), "{name} {part:?}: {text}");
            let (figures, first) = october(&d);
            // C003's first state is dropped within the file, whole or in
            // parts (20 rows, 20 ids): in parts, C003 came again four parts
            // later with another level, so the file was read again holding
            // C003 to its last occurrence.
            assert_eq!(first, (20, 20), "{name} {part:?}");
            let counts = "SELECT SUM(rows_new) * 10000 + SUM(rows_updated) * 100 + SUM(rows_unchanged) FROM batches";
            // 20 new and, whole, C003's and C004's earlier rows unchanged
            // within the batch; in parts C004's second row is found
            // unchanged in the part after its first.
            assert_eq!(d.count(counts), 20_00_02, "{name} {part:?}");
            // Sent again: nothing new, nothing updated, no row stored again.
            std::fs::write(d.dir.join("inbox/ratings").join(name), bytes).expect("write the file again");
            let out = manyi_env(&d, &["collect", "office-drop"], &env);
            assert!(out.status.success(), "{name} {part:?} again: {}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(stored(&d, "ratings"), (20, 20), "{name} {part:?} again");
            assert_eq!(d.count(counts), 20_00_24, "{name} {part:?} again: the 22 good rows unchanged");
            seen.push(figures);
        }
    }
    assert!(seen.iter().all(|f| *f == seen[0]), "the same figures whole and in parts, in every form");
    // 春晖社区 × 养老服务 holds C003, C009 and C015: counted by hand, C003
    // at its later level 非常不满意 (c1) with C009, C015 非常满意 (c5). At
    // its first level (不满意) the cell would read 3,1,1,0,0,1.
    assert!(seen[0].contains("\n369901001001,春晖社区,elderly_care,养老服务,3,2,0,0,0,1,"), "{}", seen[0]);
}

#[test]
fn a_file_held_or_crashed_after_some_of_its_parts_leaves_nothing_of_them() {
    // Held at its end: numeric levels from a source that does not say
    // which way they run. Its first parts were written by then; the hold
    // must take them back (no batch, no Parquet file) and leave the file
    // in the inbox.
    let d = Deployment::small();
    let toml = d.dir.join("manyi.toml");
    let text = std::fs::read_to_string(&toml).expect("manyi.toml");
    std::fs::write(&toml, text.replacen("level_codes = \"ascending\"\n", "", 1)).expect("write manyi.toml");
    let held = parted_drop().replacen(",1,非常不满意,,\n", ",1,1,,\n", 1);
    assert_ne!(held, parted_drop(), "the numeric level is in the file");
    d.file("inbox/ratings/drop.csv", &held);
    let out = manyi_env(&d, &["collect", "office-drop"], &[("MANYI_PART_ROWS", "5")]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("level_codes"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(d.count("SELECT COUNT(*) FROM batches"), 0);
    assert_eq!(d.count("SELECT COUNT(*) FROM record_keys"), 0);
    assert!(crate::walk(&d.dir.join("data/curated")).is_empty(), "no Parquet file left: {:?}", crate::walk(&d.dir.join("data/curated")));
    assert!(d.dir.join("inbox/ratings/drop.csv").exists(), "the held file waits in the inbox");

    // A crash after every part's files are written, before the commit:
    // nothing is visible; the next run commits the file once.
    let d = Deployment::small();
    d.file("inbox/ratings/drop.csv", &parted_drop());
    let out = manyi_env(&d, &["collect", "office-drop"], &[("MANYI_PART_ROWS", "5"), ("MANYI_CRASH_AT", "after-parquet")]);
    assert!(!out.status.success(), "the hook must abort the process");
    assert_eq!(d.count("SELECT COUNT(*) FROM batches"), 0);
    assert_eq!(stored(&d, "ratings"), (0, 0));
    let out = manyi_env(&d, &["collect", "office-drop"], &[("MANYI_PART_ROWS", "5")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // (The crash came in the file's second reading, C003 held to its last
    // occurrence: one row an id.)
    assert_eq!(stored(&d, "ratings"), (20, 20));
    assert_eq!(figures_n(&d, "2026-10"), 20);
}

#[test]
fn a_large_files_rejected_rows_go_to_its_quarantine_file_as_they_come() {
    // 30 rows, 12 of them bad for three reasons. In parts of 8 good
    // ratings (rejected rows two at a time), the quarantine file and the
    // over-quarantine message must be those of the file read whole.
    let mut csv = crate::HEAD.to_string();
    for i in 1..=30 {
        let (org, level) = match i % 5 {
            0 => ("369999999999", "满意"),
            3 if i % 2 == 1 => ("369901001002", "还行吧"),
            _ => ("369901001001", "非常满意"),
        };
        let at = if i == 14 { "2026-13-01 09:00:00".to_string() } else { format!("2026-10-{:02} 10:00:00", i) };
        csv.push_str(&format!("Q{i:03},1,{at},{org},政务办事,1,{level},,\n"));
    }
    let mut seen = Vec::new();
    for part in [None, Some("8")] {
        let d = Deployment::small();
        d.file("inbox/ratings/drop.csv", &csv);
        let env: Vec<(&str, &str)> = part.iter().map(|p| ("MANYI_PART_ROWS", *p)).collect();
        let out = manyi_env(&d, &["collect", "office-drop"], &env);
        assert_eq!(out.status.code(), Some(1), "over max_quarantine_share: {part:?}");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let message = stderr.lines().find(|l| l.contains("rows quarantined (")).expect("the message").to_string();
        let qdir = d.dir.join("data/quarantine/office-drop");
        let files = crate::walk(&qdir);
        assert_eq!(files.len(), 1, "{part:?}: one quarantine file, no temporary left: {files:?}");
        let text = std::fs::read_to_string(&files[0]).expect("quarantine file");
        assert_eq!(d.count("SELECT SUM(rows_quarantined) FROM batches"), 10, "{part:?}");
        let name = files[0].file_name().expect("name").to_string_lossy().into_owned();
        seen.push((message.replace(&name, "Q.csv").replace(qdir.to_str().expect("path"), "DIR"), text, stored(&d, "ratings")));
    }
    let (whole, parted) = (&seen[0], &seen[1]);
    assert_eq!(whole.1, parted.1, "the same quarantine file");
    assert_eq!(whole.2, (20, 20));
    assert_eq!(parted.2, (20, 20));
    // 6 unknown orgs (i % 5 == 0), 3 unknown levels (i = 3, 13, 23), 1 bad
    // date (i = 14): 10 of 30, the reasons most frequent first.
    assert!(whole.0.contains("10 of 30 rows quarantined (33.3%"), "{}", whole.0);
    assert!(whole.0.contains("Top reasons: 6 row(s) org:"), "{}", whole.0);
    let after = |m: &str| m.split_once("drop.csv:").map(|(_, rest)| rest.to_string()).expect("the file named");
    assert_eq!(after(&whole.0), after(&parted.0), "the same message whole and in parts");
    assert_eq!(whole.1.lines().count(), 11, "the header and ten rows");
}

#[test]
fn a_streamed_file_that_turns_out_not_utf8_stores_nothing_of_it() {
    // A file read as a stream is judged UTF-8 by its first megabyte; a GBK
    // line further on is found only when it is read, after parts of the
    // file went to the store. The file must be refused whole, naming the
    // line, with nothing of it stored.
    let d = Deployment::small();
    let mut bytes = crate::HEAD.as_bytes().to_vec();
    let n = 12_000;
    for i in 1..=n {
        let row = format!("S{i:06},1,2026-10-{:02} 09:00:00,369901001001,政务办事,1,满意,{},\n", 1 + i % 28, "很好".repeat(20));
        bytes.extend_from_slice(row.as_bytes());
    }
    assert!(bytes.len() > 1 << 20, "past the first megabyte: {}", bytes.len());
    let good_part = bytes.len();
    bytes.extend_from_slice(b"S999999,1,2026-10-05 09:00:00,369901001001,\xD5\xFE\xCE\xF1,1,\xC2\xFA\xD2\xE2,,\n");
    std::fs::create_dir_all(d.dir.join("inbox/ratings")).expect("inbox");
    std::fs::write(d.dir.join("inbox/ratings/big.csv"), &bytes).expect("write");
    let env = [("MANYI_STREAM_BYTES", "0"), ("MANYI_PART_ROWS", "5000")];
    let out = manyi_env(&d, &["collect", "office-drop"], &env);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let reason = std::fs::read_to_string(d.dir.join("inbox/ratings/rejected/big.csv.reason.txt")).expect("reason file");
    assert!(reason.contains(&format!("第{}行不是有效的UTF-8文本", n + 2)), "{reason}");
    assert_eq!(d.count("SELECT COUNT(*) FROM batches"), 0);
    assert_eq!(d.count("SELECT COUNT(*) FROM record_keys"), 0);
    assert!(crate::walk(&d.dir.join("data/curated")).is_empty(), "the parts' files went with the batch");
    // Saved again as UTF-8, the same file goes in whole, in parts, as a stream.
    let mut fixed = bytes[..good_part].to_vec();
    fixed.extend_from_slice("S999999,1,2026-10-05 09:00:00,369901001001,政务办事,1,满意,,\n".as_bytes());
    std::fs::write(d.dir.join("inbox/ratings/big-utf8.csv"), &fixed).expect("write");
    let out = manyi_env(&d, &["collect", "office-drop"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stored(&d, "ratings"), (n as i64 + 1, n as i64 + 1));
    assert_eq!(d.count("SELECT COUNT(*) FROM batches"), 3, "12,001 ratings in parts of 5,000");
}

#[test]
fn a_collect_waits_out_another_process_holding_the_write_lock_past_half_a_minute() {
    // A province's year in one file holds the store's write lock for most
    // of a minute. A second collect (or a report's delivery records) used
    // to fail with "database is locked" after SQLite's customary 30 s; it
    // waits now, and commits when the lock goes.
    let d = Deployment::small();
    let out = manyi_env(&d, &["collect", "office-drop"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    d.file("inbox/ratings/drop.csv", &parted_drop());
    let lock = d.db();
    lock.execute_batch("BEGIN IMMEDIATE").expect("the write lock");
    let mut run = spawn_manyi(&d, &["collect", "office-drop"], &[]);
    std::thread::sleep(std::time::Duration::from_secs(35));
    assert!(run.try_wait().expect("try_wait").is_none(), "the collect gave up while the lock was held");
    lock.execute_batch("ROLLBACK").expect("release");
    let out = run.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stored(&d, "ratings"), (20, 20));
}

#[test]
fn two_collects_of_one_inbox_at_once_store_each_rating_once_and_both_succeed() {
    // An operator's `manyi collect` while another (or `serve`) collects the
    // same inbox: both read the file; the commit that waits finds every
    // rating stored and writes none again. The file is archived once, and
    // the run that finds it archived already has nothing left to fail on.
    let d = Deployment::small();
    // No store yet: both runs make the new state.db at the same instant too.
    d.file("inbox/ratings/drop.csv", &parted_drop());
    // Each commit waits a second before it commits, so that both runs have
    // read the file before either archives it.
    let spawn = || spawn_manyi(&d, &["collect", "office-drop"], &[("MANYI_PAUSE_AT", "before-commit:1000")]);
    let (a, b) = (spawn(), spawn());
    for run in [a, b] {
        let out = run.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(stored(&d, "ratings"), (20, 20), "as one collect stores them");
    assert_eq!(figures_n(&d, "2026-10"), 20);
    let archived = crate::walk(&d.dir.join("inbox/ratings/archive"));
    assert_eq!(archived.len(), 1, "archived once: {archived:?}");
    assert!(!d.dir.join("inbox/ratings/drop.csv").exists());
}
