//! The intranet site against the real binary: `manyi serve` over the demo
//! city with `[site]` on a free loopback port, two versions of the 2026-10
//! report, accounts made with `manyi users`. Over HTTP: CSRF refusals, the
//! 404 for another office's report, downloads, the audit rows, `/metrics`
//! parsed by Python's prometheus_client, no personal data in URLs or the log;
//! then the browser test (Selenium + Debian's chromium) in
//! `tests/site_browser.py`, whose screenshots stay in `target/tmp/site-screenshots/`.

use crate::support::{BIN, Deployment};
use reqwest::blocking::{Client, Response};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "test-site-secret-0123456789";
const OFFICE: &str = "street-369901001";
const OTHER: &str = "street-369901002";
/// (name, role, office, password): names and passwords that must never show in a URL or the log.
const USERS: [(&str, &str, Option<&str>, &str); 5] = [
    ("zhang.wei", "office", Some(OFFICE), "Office-Secret-2026"),
    ("li.na", "office", Some(OTHER), "Other-Secret-2026"),
    ("wang.fang", "inspector", None, "Inspector-Secret-2026"),
    ("liu.yang", "admin", None, "Admin-Secret-2026"),
    ("chen.jie", "leadership", None, "Locker-Secret-2026"),
];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The running service and what the checks need of it.
struct Served {
    _outer: Deployment,
    d: Deployment,
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// The demo city with `[site]`, the accounts, a second 2026-10 report run (a
/// newer as-of), and `manyi serve` answering.
fn serve_site() -> Served {
    let outer = Deployment::empty();
    let dir = outer.dir.join("demo");
    outer.manyi(&["demo", "--seed", "7", "--through", "2026-10", "--dir", dir.to_str().expect("utf-8 path")]).success();
    let d = Deployment::at(&dir);
    let port = free_port();
    let toml = std::fs::read_to_string(dir.join("manyi.toml")).expect("manyi.toml");
    // The demo's intake port is fixed; another test may hold it.
    let toml = toml.replace("127.0.0.1:8088", &format!("127.0.0.1:{}", free_port()));
    d.file("manyi.toml", &format!("{toml}\n[site]\nlisten = \"127.0.0.1:{port}\"\n"));
    d.manyi(&["check"]).success();
    for (name, role, office, password) in USERS {
        let mut args = vec!["users", "add", name, "--role", role];
        if let Some(o) = office {
            args.extend(["--office", o]);
        }
        d.manyi_env(&args, &[("MANYI_PASSWORD", password)]).success();
    }
    // A password on the command line is not an option.
    d.manyi(&["users", "add", "x.y", "--role", "admin", "--password", "p"]).code(2);
    d.manyi(&["run", "monthly-report", "--period", "2026-10"]).success();
    let log = dir.join("serve.log");
    let child = Command::new(BIN)
        .arg("serve")
        .current_dir(&dir)
        .env("MANYI_CONFIG", dir.join("manyi.toml"))
        .env("MANYI_SITE_SECRET", SECRET)
        .env_remove("MANYI_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start manyi serve");
    let base = format!("http://127.0.0.1:{port}");
    let mut served = Served { _outer: outer, d, child, base, log };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::blocking::get(format!("{}/healthz", served.base)).is_ok_and(|r| r.status().is_success()) {
        if let Ok(Some(status)) = served.child.try_wait() {
            panic!("serve exited ({status}):\n{}", std::fs::read_to_string(&served.log).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "the site did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    served
}

fn client() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(Duration::from_secs(30)).build().expect("client")
}

/// `name=value` of a cookie the response sets.
fn set_cookie(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|kv| kv.starts_with(&format!("{name}=")) && kv.len() > name.len() + 1)
        .map(str::to_string)
}

/// The sign-in form's pre-session cookie and CSRF token.
fn login_form(c: &Client, base: &str) -> (String, String) {
    let r = c.get(format!("{base}/login")).send().expect("login page");
    let pre = set_cookie(&r, "manyi_pre").expect("pre-session cookie");
    let html = r.text().expect("html");
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).and_then(|s| s.split('"').next()).expect("csrf field").to_string();
    (pre, csrf)
}

fn post_form(c: &Client, url: &str, cookie: &str, body: &str) -> Response {
    c.post(url)
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .expect("post")
}

/// Signs in; the session cookie.
fn sign_in(c: &Client, base: &str, user: &str, password: &str) -> String {
    let (pre, csrf) = login_form(c, base);
    let r = post_form(c, &format!("{base}/login"), &pre, &format!("csrf={csrf}&user={user}&password={password}"));
    assert_eq!(r.status().as_u16(), 303, "sign-in of {user}");
    assert_eq!(r.headers().get("location").and_then(|v| v.to_str().ok()), Some("/reports"));
    set_cookie(&r, "manyi_session").expect("session cookie")
}

fn get(c: &Client, url: &str, cookie: &str) -> (u16, String) {
    let r = c.get(url).header("cookie", cookie).send().expect("get");
    (r.status().as_u16(), r.text().expect("body"))
}

/// The hrefs of a page, as the browser would request them.
fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"").skip(1).filter_map(|s| s.split('"').next()).map(|h| h.replace("&#x2F;", "/")).collect()
}

#[test]
fn the_intranet_site_end_to_end() {
    let s = serve_site();
    let c = client();
    let mut urls = csrf_is_required_on_every_form(&c, &s.base);
    urls.extend(offices_see_their_own_reports_only(&c, &s));
    metrics_parse_with_prometheus_client(&c, &s);
    in_a_real_browser(&s);
    no_personal_data_in_urls_or_the_log(&s, &urls);
    audit_rows_are_written(&s);
}

/// Sign-in without a token, with another form's token, or with none at all
/// is refused (403, no session); sign-out with a wrong token too, and the session stays.
fn csrf_is_required_on_every_form(c: &Client, base: &str) -> Vec<String> {
    let (user, _, _, password) = USERS[0];
    let (pre, csrf) = login_form(c, base);
    let (other_pre, _) = login_form(c, base);
    let login = format!("{base}/login");
    for (cookie, body) in [
        (pre.as_str(), format!("user={user}&password={password}")),
        (other_pre.as_str(), format!("csrf={csrf}&user={user}&password={password}")),
        ("", format!("csrf={csrf}&user={user}&password={password}")),
    ] {
        let r = post_form(c, &login, cookie, &body);
        assert_eq!(r.status().as_u16(), 403, "{cookie} {body}");
        assert!(set_cookie(&r, "manyi_session").is_none());
        assert!(r.text().expect("text").contains("页面已过期或来源不明"));
    }
    let session = sign_in(c, base, user, password);
    let page = get(c, &format!("{base}/reports"), &session).1;
    let good = page.split("name=\"csrf\" value=\"").nth(1).and_then(|s| s.split('"').next()).expect("sign-out csrf").to_string();
    assert_eq!(post_form(c, &format!("{base}/logout"), &session, "csrf=forged").status().as_u16(), 403);
    assert_eq!(post_form(c, &format!("{base}/logout"), &session, "").status().as_u16(), 403);
    assert_eq!(get(c, &format!("{base}/reports"), &session).0, 200, "a refused sign-out leaves the session");
    let out = post_form(c, &format!("{base}/logout"), &session, &format!("csrf={good}"));
    assert_eq!(out.status().as_u16(), 303);
    assert_eq!(get(c, &format!("{base}/reports"), &session).0, 303, "signed out: back to the sign-in page");
    hrefs(&page)
}

/// An office lists and opens only its own reports; another office's report
/// answers exactly like one that does not exist. Leadership, inspectors and
/// admins see every office; only admins the health page.
fn offices_see_their_own_reports_only(c: &Client, s: &Served) -> Vec<String> {
    let base = &s.base;
    let (user, _, _, password) = USERS[0];
    let session = sign_in(c, base, user, password);
    let (status, list) = get(c, &format!("{base}/reports"), &session);
    assert_eq!(status, 200);
    let links = hrefs(&list);
    let views: Vec<&String> = links.iter().filter(|h| h.starts_with("/r/")).collect();
    assert_eq!(views.len(), 2, "two as-of versions of 2026-10: {links:?}");
    assert!(views.iter().all(|h| h.contains("/2026-10/") && h.ends_with(&format!("/{OFFICE}/{OFFICE}.html"))), "{views:?}");
    assert!(!list.contains(OTHER), "another office is not listed");
    let own = views[0].clone();
    let (status, page) = get(c, &format!("{base}{own}"), &session);
    assert!(status == 200 && page.contains("下载 XLSX") && page.contains("<img"), "{status}");
    let other = own.replace(OFFICE, OTHER);
    let missing = own.replace("MY-202610-", "MY-202610-0");
    let (s_other, b_other) = get(c, &format!("{base}{other}"), &session);
    let (s_missing, b_missing) = get(c, &format!("{base}{missing}"), &session);
    assert_eq!((s_other, s_missing), (404, 404));
    assert_eq!(b_other, b_missing, "a forbidden report looks like a missing one");
    let trick = format!("{}/{OTHER}.html", own.rsplit_once('/').expect("path").0);
    assert_eq!(get(c, &format!("{base}{trick}"), &session).0, 404, "another office's file under one's own office");
    assert_eq!(get(c, &format!("{base}/r/monthly-report/2026-10/..%2F..%2F/{OFFICE}/{OFFICE}.html"), &session).0, 404);
    let xlsx = hrefs(&page).into_iter().find(|h| h.ends_with(".xlsx")).expect("xlsx link");
    let dir = own.rsplit_once('/').expect("path").0;
    let r = c.get(format!("{base}{dir}/{xlsx}")).header("cookie", &session).send().expect("download");
    let disposition = r.headers().get("content-disposition").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert_eq!(&r.bytes().expect("bytes")[..2], b"PK");
    let bad = own.replace("/r/", "/bad/").rsplit_once('/').expect("path").0.to_string();
    let (status, bad_page) = get(c, &format!("{base}{bad}?overdue=yes"), &session);
    assert!(status == 200 && bad_page.contains("逾期"), "{status}");
    for other_page in [bad.replace(OFFICE, OTHER), bad.replace("/bad/", "/inspect/").replace(OFFICE, OTHER)] {
        assert_eq!(get(c, &format!("{base}{other_page}"), &session).0, 404, "{other_page}");
    }
    assert_eq!(get(c, &format!("{base}/health"), &session).0, 404, "health is for admins");
    let (_, _, _, admin_pw) = USERS[3];
    let admin = sign_in(c, base, USERS[3].0, admin_pw);
    let (status, health) = get(c, &format!("{base}/health"), &admin);
    assert!(status == 200 && health.contains("运行状况") && health.contains("monthly-report"), "{status}");
    // The leadership report ranks offices and has no 差评清单: said so, not an error.
    let leadership = bad.replace(OFFICE, "leadership");
    let (status, told) = get(c, &format!("{base}{leadership}"), &admin);
    assert!(status == 200 && told.contains("此报告没有差评清单"), "{status}");
    let inspector = sign_in(c, base, USERS[2].0, USERS[2].3);
    let all = get(c, &format!("{base}/reports"), &inspector).1;
    assert!(all.contains(OTHER) && all.contains(OFFICE), "an inspector sees every office");
    let mut seen = links;
    seen.extend(hrefs(&page));
    seen.extend(hrefs(&all));
    seen
}

/// `/metrics` without a session, parsed by prometheus_client; its figures
/// match state.db.
fn metrics_parse_with_prometheus_client(c: &Client, s: &Served) {
    let text = c.get(format!("{}/metrics", s.base)).send().expect("metrics").text().expect("text");
    let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families\n\
                  for f in text_string_to_metric_families(sys.stdin.read()):\n    for x in f.samples:\n        \
                  print(f.name, x.name, ','.join(k + '=' + v for k, v in sorted(x.labels.items())), x.value)\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test.sh installs prometheus_client)");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("parser");
    let parsed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "prometheus_client refused /metrics:\n{}\n{text}", String::from_utf8_lossy(&out.stderr));
    // "family sample labels value" per line → (sample and labels) → value.
    let samples: std::collections::BTreeMap<String, f64> = parsed
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.split_once(' ')?.1.trim().to_string(), v.parse().ok()?)))
        .collect();
    let stored = s.d.count("SELECT SUM(rows_new) FROM batches WHERE kind = 'ratings'");
    assert_eq!(samples.get("manyi_ratings_stored"), Some(&(stored as f64)), "{parsed}");
    assert_eq!(samples.get("manyi_job_last_run_ok job=monthly-report,outcome=ok"), Some(&1.0), "{parsed}");
    let outbox = s.d.count("SELECT COUNT(*) FROM deliveries WHERE state = 'outbox'");
    assert_eq!(samples.get("manyi_deliveries state=outbox"), Some(&(outbox as f64)), "{parsed}");
    let held = s.d.count("SELECT COUNT(*) FROM delivery_history WHERE state = 'held'");
    assert_eq!(samples.get("manyi_deliveries_held"), Some(&(held as f64)), "{parsed}");
    let quarantined = s.d.count("SELECT SUM(rows_quarantined) FROM batches");
    assert_eq!(samples.get("manyi_quarantined_rows"), Some(&(quarantined as f64)), "{parsed}");
    assert!(samples.get("manyi_job_last_run_timestamp_seconds job=monthly-report").is_some_and(|t| *t > 1.7e9), "{parsed}");
    assert_eq!(samples.get("manyi_service_up"), Some(&1.0), "{parsed}");
    assert!(!text.contains('@'), "no address in /metrics");
}

/// Selenium + Debian's chromium (`tests/site_browser.py`).
fn in_a_real_browser(s: &Served) {
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("site-screenshots");
    let downloads = s.d.dir.join("downloads");
    std::fs::create_dir_all(&shots).expect("screenshots dir");
    std::fs::create_dir_all(&downloads).expect("downloads dir");
    let db = s.d.db();
    let as_of: String = db
        .query_row("SELECT as_of FROM runs WHERE job = 'monthly-report' ORDER BY started_at LIMIT 1", [], |r| r.get(0))
        .expect("older run");
    let at = chrono::DateTime::parse_from_rfc3339(&as_of).expect("as_of").with_timezone(&chrono::Utc);
    let rid = manyi::render::report_id("monthly-report", "2026-10", at);
    let spec = serde_json::json!({
        "office": [USERS[0].0, USERS[0].3, OFFICE],
        "other_office": OTHER,
        "inspector": [USERS[2].0, USERS[2].3],
        "older": {"path": format!("/inspect/monthly-report/2026-10/{rid}/{OTHER}"),
                  "command": format!("manyi run monthly-report --period 2026-10 --as-of {as_of}")},
        "admin": [USERS[3].0, USERS[3].3],
        "locker": [USERS[4].0, USERS[4].3],
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/site_browser.py");
    let out = Command::new("python3")
        .args([script, &s.base, &shots.display().to_string(), &downloads.display().to_string(), &spec.to_string()])
        .output()
        .expect("python3 (scripts/test.sh installs selenium and chromium-driver)");
    assert!(
        out.status.success(),
        "browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let locked = s.d.count(&format!("SELECT locked FROM users WHERE name = '{}'", USERS[4].0));
    assert_eq!(locked, 1, "five wrong passwords lock the account");
    // A new password unlocks it.
    s.d.manyi_env(&["users", "passwd", USERS[4].0], &[("MANYI_PASSWORD", "Locker-New-Secret-2026")]).success();
    sign_in(&client(), &s.base, USERS[4].0, "Locker-New-Secret-2026");
}

/// Neither a sign-in name nor a password nor a session token is in any URL
/// the pages link to, or in the service's log.
fn no_personal_data_in_urls_or_the_log(s: &Served, urls: &[String]) {
    assert!(urls.len() > 5, "{urls:?}");
    let log = std::fs::read_to_string(&s.log).expect("serve log");
    assert!(log.contains("sign-in refused"), "the log tells of refused sign-ins:\n{log}");
    for (name, _, _, password) in USERS {
        for url in urls {
            assert!(!url.contains(name) && !url.contains(password), "{url}");
        }
        assert!(!log.contains(name) && !log.contains(password), "{name} in the log:\n{log}");
    }
    let tokens: Vec<String> =
        s.d.db()
            .prepare("SELECT token_hash FROM sessions")
            .expect("sql")
            .query_map([], |r| r.get(0))
            .expect("rows")
            .map(|r| r.expect("row"))
            .collect();
    assert!(!tokens.is_empty());
    assert!(tokens.iter().all(|t| !log.contains(t.as_str())));
}

/// Every sign-in (ok, wrong password, locked) and every report view and
/// download is in the audit table with who and what.
fn audit_rows_are_written(s: &Served) {
    let (office_user, locker) = (USERS[0].0, USERS[4].0);
    let count = |sql: &str| s.d.count(sql);
    assert!(count(&format!("SELECT COUNT(*) FROM audit WHERE user = '{office_user}' AND action = 'sign-in' AND outcome = 'ok'")) >= 2);
    assert!(
        count(&format!(
            "SELECT COUNT(*) FROM audit WHERE user = '{office_user}' AND action = 'view' AND target LIKE '%/{OFFICE}/{OFFICE}.html'"
        )) >= 2
    );
    assert!(
        count(&format!("SELECT COUNT(*) FROM audit WHERE user = '{office_user}' AND action = 'download' AND target LIKE '%.xlsx'")) >= 2
    );
    assert_eq!(count(&format!("SELECT COUNT(*) FROM audit WHERE user = '{locker}' AND outcome LIKE 'wrong-password%'")), 5);
    assert!(count(&format!("SELECT COUNT(*) FROM audit WHERE user = '{locker}' AND outcome = 'locked'")) >= 1);
    assert!(count(&format!("SELECT COUNT(*) FROM audit WHERE user = '{}' AND action = 'inspect'", USERS[2].0)) >= 1);
    assert!(
        count(&format!("SELECT COUNT(*) FROM audit WHERE action = 'view' AND user = '{office_user}' AND target LIKE '%{OTHER}%'")) == 0,
        "a 404 is not a view"
    );
}

#[test]
fn the_site_answers_while_a_collect_holds_the_write_lock() {
    // A collect holds the store's write lock while it reads a large file
    // (most of a minute for a province's year in one file). A report view
    // writes its audit line: that line waited for the lock on the site's
    // one connection, and every page of the site waited behind it, then the
    // line was dropped after 30 s. Now pages answer at once and the line is
    // written when the lock goes.
    let s = serve_site();
    let c = client();
    let (user, _, _, password) = USERS[2];
    let cookie = sign_in(&c, &s.base, user, password);
    let (code, list) = get(&c, &format!("{}/reports", s.base), &cookie);
    assert_eq!(code, 200);
    let report = hrefs(&list).into_iter().find(|h| h.starts_with("/r/") && h.ends_with(".html")).expect("a report in the list");
    let views = |db: &rusqlite::Connection| -> i64 {
        db.query_row("SELECT COUNT(*) FROM audit WHERE action = 'view' AND target LIKE ?1", [format!("%{}", &report[3..])], |r| r.get(0))
            .expect("audit")
    };
    // Audit lines are written off the request: the sign-in's first.
    std::thread::sleep(Duration::from_millis(500));
    let lock = rusqlite::Connection::open(s.d.dir.join("data/state.db")).expect("state.db");
    lock.execute_batch("BEGIN IMMEDIATE").expect("the write lock");
    let before = views(&lock);
    for _ in 0..3 {
        let (code, html) = get(&c, &format!("{}{report}", s.base), &cookie);
        assert_eq!(code, 200, "{html}");
        let (code, _) = get(&c, &format!("{}/reports", s.base), &cookie);
        assert_eq!(code, 200);
    }
    assert_eq!(views(&lock), before, "nothing written while the lock is held");
    lock.execute_batch("ROLLBACK").expect("release");
    let written = Instant::now() + Duration::from_secs(60);
    while views(&lock) < before + 3 {
        assert!(Instant::now() < written, "the views' audit lines were not written after the lock went");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `manyi check` refuses a wrong `[site]` (unknown key, bad address, session
/// length); `manyi users` refuses an office account without a known office,
/// a short password, a second account of one name.
#[test]
fn site_settings_and_accounts_are_checked() {
    let d = Deployment::small();
    let base = std::fs::read_to_string(d.dir.join("manyi.toml")).expect("manyi.toml");
    d.file("manyi.toml", &format!("{base}\n[site]\nlisten = \"127.0.0.1:8089\"\nsesion_hours = 8\n"));
    let err = d.manyi(&["check"]).code(2).stderr();
    assert!(err.contains("sesion_hours"), "{err}");
    d.file("manyi.toml", &format!("{base}\n[site]\nlisten = \"intranet:80\"\nsession_hours = 0\n"));
    let err = d.manyi(&["check"]).code(2).stderr();
    assert!(err.contains("site.listen") && err.contains("site.session_hours"), "{err}");
    d.file("manyi.toml", &format!("{base}\n[site]\nlisten = \"127.0.0.1:8089\"\n"));
    d.manyi(&["check"]).success();
    let pw = [("MANYI_PASSWORD", "long-enough-password")];
    let err = d.manyi_env(&["users", "add", "a.b", "--role", "office"], &pw).code(1).stderr();
    assert!(err.contains("--office"), "{err}");
    let err = d.manyi_env(&["users", "add", "a.b", "--role", "office", "--office", "nowhere"], &pw).code(1).stderr();
    assert!(err.contains("street-369901001"), "the known offices are listed: {err}");
    let err = d
        .manyi_env(&["users", "add", "a.b", "--role", "office", "--office", "street-369901001"], &[("MANYI_PASSWORD", "short")])
        .code(1)
        .stderr();
    assert!(err.contains("at least 10"), "{err}");
    d.manyi_env(&["users", "add", "a.b", "--role", "office", "--office", "street-369901001"], &pw).success();
    let err = d.manyi_env(&["users", "add", "a.b", "--role", "admin"], &pw).code(1).stderr();
    assert!(err.contains("exists already"), "{err}");
    // The password from standard input, as the README shows it.
    let mut child = Command::new(BIN)
        .args(["users", "passwd", "a.b"])
        .current_dir(&d.dir)
        .env("MANYI_CONFIG", d.dir.join("manyi.toml"))
        .env_remove("MANYI_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("manyi users passwd");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"another-long-password\n").expect("write");
    assert!(child.wait_with_output().expect("wait").status.success());
    let hash: String = d.db().query_row("SELECT hash FROM users WHERE name = 'a.b'", [], |r| r.get(0)).expect("user");
    assert!(hash.starts_with("$argon2id$") && !hash.contains("another-long-password"), "{hash}");
    d.manyi(&["users", "disable", "a.b"]).success();
    assert_eq!(d.count("SELECT disabled FROM users WHERE name = 'a.b'"), 1);
}
