//! The QR-code intake against the real binary: `manyi intake` on a free
//! loopback port, submissions over HTTP, the figures within seconds, single
//! use slips, tampered tokens, SIGKILL during submissions, and the browser
//! test (Selenium + Debian's chromium) in `tests/intake_browser.py`.

use crate::support::{BIN, Deployment};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SECRET: &str = "test-intake-secret-0123456789";
const POINT: &str = "chunhui-elderly";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The small city with an intake source, one service point and limits high enough for the tests.
pub fn intake_deployment(port: u16, extra: &str) -> Deployment {
    let d = Deployment::small();
    let base = std::fs::read_to_string(d.dir.join("manyi.toml")).expect("manyi.toml");
    let toml = format!(
        "{base}\n[[source]]\nname = \"qr\"\nkind = \"intake\"\n\n[intake]\nlisten = \"127.0.0.1:{port}\"\nsource = \"qr\"\n\
         commit_every_ms = 500\nper_client_per_minute = 100000\nper_code_per_minute = 100000\ntrust_proxy = true\n{extra}\n\
         [[intake.point]]\nid = \"{POINT}\"\norg = \"369901001001\"\ncategory = \"elderly_care\"\nservice_item = \"老年助餐\"\n"
    );
    d.file("manyi.toml", &toml);
    d
}

/// Starts `manyi intake` and waits until it answers.
pub fn spawn_intake(d: &Deployment, port: u16, log: &str) -> Child {
    let log_file = std::fs::File::create(d.dir.join(log)).expect("log");
    let mut child = Command::new(BIN)
        .arg("intake")
        .current_dir(&d.dir)
        .env("MANYI_CONFIG", d.dir.join("manyi.toml"))
        .env("MANYI_INTAKE_SECRET", SECRET)
        .env_remove("MANYI_LOG")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("start manyi intake");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if reqwest::blocking::get(format!("http://127.0.0.1:{port}/healthz")).is_ok_and(|r| r.status().is_success()) {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("intake exited ({status}):\n{}", std::fs::read_to_string(d.dir.join(log)).unwrap_or_default());
        }
        assert!(Instant::now() < deadline, "intake did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().expect("client")
}

fn post(c: &reqwest::blocking::Client, url: &str, body: &str, from: &str) -> (u16, String) {
    let r = c
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-forwarded-for", from)
        .body(body.to_string())
        .send()
        .expect("post");
    (r.status().as_u16(), r.text().expect("body"))
}

fn stored(d: &Deployment) -> i64 {
    if !d.dir.join("data/state.db").exists() {
        return 0;
    }
    rusqlite::Connection::open(d.dir.join("data/state.db"))
        .and_then(|c| c.query_row("SELECT count(*) FROM record_keys WHERE source = 'qr'", [], |r| r.get(0)))
        .unwrap_or(0)
}

fn wait_stored(d: &Deployment, n: i64, within: Duration) {
    let deadline = Instant::now() + within;
    while stored(d) < n {
        assert!(Instant::now() < deadline, "only {} of {n} submissions stored within {within:?}", stored(d));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

#[test]
fn check_lists_every_wrong_intake_point_and_rule_at_its_line() {
    // A second point with a duplicate id, an unknown org and an unknown category,
    // a listen without a port, a watch share written as a percentage and a
    // follow-up category code with a typo: all of them, each at its own line.
    let d = intake_deployment(free_port(), "");
    let toml = std::fs::read_to_string(d.dir.join("manyi.toml")).expect("manyi.toml");
    let toml = toml
        .replace("listen = \"127.0.0.1:", "listen = \"127.0.0.1-")
        .replace("[metrics]\n", "[metrics]\nwatch_bottom = 10\n")
        .replace("[follow_up.category.elderly_care]", "[follow_up.category.elderly]");
    let toml = format!("{toml}\n[[intake.point]]\nid = \"{POINT}\"\norg = \"369999999999\"\ncategory = \"elderly\"\n");
    d.file("manyi.toml", &toml);
    let err = d.manyi(&["check"]).code(2).stderr();
    let line_of = |needle: &str| toml.lines().position(|l| l.starts_with(needle)).map(|k| k + 1).expect(needle);
    let expect = [
        (line_of("listen = "), "intake.listen = “127.0.0.1-"),
        (line_of("[metrics]") + 1, "metrics.watch_bottom = 10 must be a share between 0 and 1"),
        (line_of("[follow_up.category.elderly]"), "“elderly” is not a category code"),
        (line_of("org = \"369999999999\""), "org “369999999999” is not in orgs.csv"),
        (line_of("category = \"elderly\""), "category “elderly” is not a code"),
    ];
    for (line, text) in expect {
        assert!(err.lines().any(|l| l.contains(&format!("manyi.toml:{line}:")) && l.contains(text)), "line {line} {text}: {err}");
    }
    let dup = toml.lines().enumerate().filter(|(_, l)| l.starts_with(&format!("id = \"{POINT}\""))).nth(1).map(|(k, _)| k + 1);
    let dup = dup.expect("the second point's id line");
    assert!(err.contains(&format!("manyi.toml:{dup}: intake point id “{POINT}” is used twice")), "{err}");
    // The service itself refuses to start on such a config, naming the same problem.
    let run = d.manyi(&["intake"]).code(2).stderr();
    assert!(run.contains("org “369999999999” is not in orgs.csv"), "{run}");
}

#[test]
fn intake_submits_shows_in_figures_and_guards_slips() {
    let port = free_port();
    let d = intake_deployment(port, "");
    let mut child = spawn_intake(&d, port, "intake.log");
    let c = client();
    let url = format!("http://127.0.0.1:{port}/p/{POINT}");

    let page = c.get(&url).send().expect("get");
    let csp = page.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("script-src"), "{csp}");
    assert_eq!(page.headers().get("x-frame-options").and_then(|v| v.to_str().ok()), Some("DENY"));
    let html = page.text().expect("html");
    for word in ["非常满意", "满意", "基本满意", "不满意", "非常不满意", "个人信息告知", "春晖社区 · 老年助餐"]
    {
        assert!(html.contains(word), "{word} missing:\n{html}");
    }
    assert!(!html.contains("<script"), "{html}");

    let (status, thanks) = post(&c, &url, "level=5", "10.0.0.1");
    assert!(status == 200 && thanks.contains("感谢您的评价"), "{status} {thanks}");
    let (_, ask) = post(&c, &url, "level=1", "10.0.0.2");
    assert!(ask.contains("请选择不满意的原因") && !ask.contains("请至少选择"), "{ask}");
    let (status, told) = post(&c, &url, "level=1&step=2&comment=x", "10.0.0.2");
    assert!(status == 422 && told.contains("请至少选择一个不满意的原因"), "{status} {told}");
    // The org comes from the code: a form field naming another org is ignored.
    let body = "level=1&step=2&reason=%E7%AD%89%E5%80%99%E6%97%B6%E9%97%B4%E9%95%BF&comment=%3Cb%3E%E5%A4%AA%E6%85%A2%3C%2Fb%3E+13812345678&phone=13812345678&org=369901001002";
    let (status, bad) = post(&c, &url, body, "10.0.0.2");
    assert!(status == 200 && bad.contains("15个工作日内"), "{status} {bad}");

    // Slips: issue two, use one, tamper with the other.
    let out = d.dir.join("qr");
    let ran = d.manyi_env(&["qr", "--out", "qr", "--slips-for", POINT, "--count", "2"], &[("MANYI_INTAKE_SECRET", SECRET)]).success();
    assert!(out.join(format!("point-{POINT}.png")).exists(), "{}", ran.stdout());
    let slips_page = ran.stdout().lines().find(|l| l.contains("slips-")).expect("slips page").to_string();
    let sheet = std::fs::read_to_string(d.dir.join(&slips_page)).expect("sheet");
    let urls: Vec<String> =
        sheet.split(&format!("http://127.0.0.1:{port}/s/")).skip(1).map(|s| s[..s.find('<').expect("end")].to_string()).collect();
    assert_eq!(urls.len(), 2, "{sheet}");
    let slip = format!("http://127.0.0.1:{port}/s/{}", urls[0]);
    assert!(c.get(&slip).send().expect("get").text().expect("text").contains("非常不满意"));
    let (status, t) = post(&c, &slip, "level=4", "10.0.0.3");
    assert!(status == 200 && t.contains("感谢"), "{t}");
    assert!(c.get(&slip).send().expect("get").text().expect("text").contains("已评价"));
    assert!(post(&c, &slip, "level=5", "10.0.0.4").1.contains("已评价"));
    let other = &urls[1];
    let mut chars: Vec<char> = other.chars().collect();
    chars[3] = if chars[3] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    let refused = c.get(format!("http://127.0.0.1:{port}/s/{tampered}")).send().expect("get");
    assert_eq!(refused.status().as_u16(), 403);
    assert!(refused.text().expect("text").contains("此评价码无效"));

    // In the store and in the figures within 10 s.
    wait_stored(&d, 3, Duration::from_secs(10));
    let month = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai).format("%Y-%m").to_string();
    let figures = d.manyi(&["figures", "--period", &month, "--by", "community"]).success().stdout();
    assert!(figures.contains("春晖社区"), "{figures}");
    stop(&mut child);
    let log = std::fs::read_to_string(d.dir.join("intake.log")).expect("log");
    assert!(log.contains("case-slip token refused") && !log.contains(&tampered) && !log.contains("13812345678"), "{log}");
    let landing = std::fs::read_to_string(d.dir.join("data/landing/qr/intake.jsonl")).expect("landing");
    assert_eq!(landing.lines().count(), 3, "{landing}");
}

#[test]
fn intake_repeat_from_one_client_is_refused_politely() {
    let port = free_port();
    let d = intake_deployment(port, "repeat_window_minutes = 10");
    let mut child = spawn_intake(&d, port, "intake.log");
    let c = client();
    let url = format!("http://127.0.0.1:{port}/p/{POINT}");
    assert!(post(&c, &url, "level=5", "10.9.0.1").1.contains("感谢"));
    let (status, again) = post(&c, &url, "level=4", "10.9.0.1");
    assert!(status == 429 && again.contains("您刚刚已经评价过"), "{status} {again}");
    assert!(post(&c, &url, "level=4", "10.9.0.2").1.contains("感谢"));
    stop(&mut child);
}

#[test]
fn intake_sigkill_during_submissions_loses_and_doubles_nothing() {
    let port = free_port();
    let d = intake_deployment(port, "repeat_window_minutes = 0");
    let mut child = spawn_intake(&d, port, "intake.log");
    let url = format!("http://127.0.0.1:{port}/p/{POINT}");
    let acked = Arc::new(AtomicUsize::new(0));
    let halt = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (url, acked, halt) = (url.clone(), Arc::clone(&acked), Arc::clone(&halt));
            std::thread::spawn(move || {
                let c = client();
                let mut mine = Vec::new();
                for i in 0.. {
                    if halt.load(Ordering::SeqCst) {
                        break;
                    }
                    let marker = format!("m{w}x{i}");
                    let body = format!("level=4&comment={marker}");
                    let ok = c
                        .post(&url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .header("x-forwarded-for", format!("10.1.{w}.{}", i % 250))
                        .body(body)
                        .send()
                        .ok()
                        .and_then(|r| r.text().ok())
                        .is_some_and(|t| t.contains("感谢"));
                    if !ok {
                        break;
                    }
                    acked.fetch_add(1, Ordering::SeqCst);
                    mine.push(marker);
                }
                mine
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    halt.store(true, Ordering::SeqCst);
    let markers: Vec<String> = workers.into_iter().flat_map(|w| w.join().expect("worker")).collect();
    assert!(markers.len() > 20, "too few submissions before the kill: {}", markers.len());
    let mut child = spawn_intake(&d, port, "intake2.log");
    let landing = std::fs::read_to_string(d.dir.join("data/landing/qr/intake.jsonl")).expect("landing");
    let lines = landing.lines().count() as i64;
    for m in &markers {
        assert_eq!(landing.matches(&format!("\"comment\":\"{m}\"")).count(), 1, "acknowledged {m} landed once");
    }
    wait_stored(&d, lines, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(1200));
    stop(&mut child);
    assert_eq!(stored(&d), lines, "every landed submission stored once");
    assert_eq!(d.count("SELECT count(*) FROM record_versions WHERE source = 'qr'"), 0, "no second versions");
    assert_eq!(d.count("SELECT coalesce(sum(rows_new), 0) FROM batches WHERE source = 'qr'"), lines, "each written once");
}

/// Selenium + Debian's chromium at 375 px (`tests/intake_browser.py`); the
/// rating it submits is in the store within 10 s. Screenshots are kept in
/// `target/intake-screenshots/` for a person to look at.
#[test]
fn intake_in_a_real_browser() {
    let port = free_port();
    let d = intake_deployment(port, "");
    let mut child = spawn_intake(&d, port, "intake.log");
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("intake-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshots dir");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/intake_browser.py");
    let out = Command::new("python3")
        .args([script, &format!("http://127.0.0.1:{port}/p/{POINT}"), &shots.display().to_string()])
        .output()
        .expect("python3 (scripts/test.sh installs selenium and chromium-driver)");
    assert!(
        out.status.success(),
        "browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    wait_stored(&d, 1, Duration::from_secs(10));
    stop(&mut child);
}
