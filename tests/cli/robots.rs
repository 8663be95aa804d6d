//! Group robots: 企业微信 and 钉钉 as a second channel, against the tests'
//! own loopback robot server (tests/robot_server.py) that checks keys,
//! 钉钉 signatures, sizes and rate, and injects faults. Every count is read
//! back from what the server stored.

use super::HEAD;
use crate::support::{Deployment, Ran};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Child;

const WX_CITY: &str = "city-key-1";
const WX_JD: &str = "jd-key-2";
const DD_TOKEN: &str = "dd-token-3";
const DD_SECRET: &str = "SECdd0123456789";
const MOBILE: &str = "13800000000";

/// The robot server, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(d: &Deployment, args: &[&str]) -> Server {
        let log = d.dir.join("robot-log.jsonl");
        let dd = format!("{DD_TOKEN}:{DD_SECRET}");
        let mut all = vec!["--log", log.to_str().expect("utf-8"), "--wecom-key", WX_CITY, "--wecom-key", WX_JD, "--dingtalk", &dd];
        all.extend_from_slice(args);
        let (child, port) = crate::support::start_python_server("robot_server.py", &all, "python3 with the standard library");
        Server { child, port, log }
    }

    /// Every accepted message: (api, robot, body).
    fn received(&self) -> Vec<(String, String, serde_json::Value)> {
        let Ok(text) = std::fs::read_to_string(&self.log) else { return Vec::new() };
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("log line"))
            .filter(|v| v["api"] != "upload")
            .map(|v| (v["api"].as_str().expect("api").to_string(), v["robot"].as_str().expect("robot").to_string(), v["body"].clone()))
            .collect()
    }

    /// How many of each (robot, message type) arrived.
    fn counts(&self) -> BTreeMap<(String, String), usize> {
        let mut m = BTreeMap::new();
        for (_, robot, body) in self.received() {
            *m.entry((robot, body["msgtype"].as_str().expect("msgtype").to_string())).or_default() += 1;
        }
        m
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each office's report message once: city and street 企业微信 robots get a
/// card, the trend chart and the XLSX; the street's 钉钉 robot a card.
fn report_once() -> BTreeMap<(String, String), usize> {
    let mut m = BTreeMap::new();
    for key in [WX_CITY, WX_JD] {
        for t in ["markdown", "image", "file"] {
            m.insert((key.to_string(), t.to_string()), 1);
        }
    }
    m.insert((DD_TOKEN.to_string(), "markdown".to_string()), 1);
    m
}

/// A small city whose leadership has a 企业微信 robot and whose street has a
/// 企业微信 and a 钉钉 robot, all on a robot server started with
/// `server_args` (`extra` goes into each `[[robot]]`); ratings collected.
fn deployment(ratings: &str, server_args: &[&str], extra: &str) -> (Deployment, Server) {
    let d = Deployment::small();
    let server = Server::start(&d, server_args);
    set_robots(&d, server.port, extra);
    d.file(
        "reference/offices.toml",
        "[[office]]\nid = \"leadership\"\nname = \"临江市领导\"\nrole = \"leadership\"\nrecipients = [\"boss@linjiang.gov.cn\"]\nrobots = [\"wx-city\"]\n\n\
         [[office]]\nid = \"street-369901001\"\nname = \"滨江街道办事处\"\nrole = \"office\"\nrecipients = [\"jd@linjiang.gov.cn\"]\n\
         robots = [\"wx-binjiang\", \"dd-binjiang\"]\nscope = { orgs = [\"369901001\"] }\n",
    );
    d.file("inbox/ratings/a.csv", &format!("{HEAD}{ratings}"));
    d.manyi(&["collect"]).success();
    (d, server)
}

const MONTH: &str = "C001,1,2026-10-03 09:00:00,369901001001,政务办事,1,5,,\nC002,1,2026-10-04 09:00:00,369901001002,养老服务,1,2,太慢,待核实\n\
                     C003,1,2026-10-05 09:00:00,369901001003,环境卫生,2,4,,\n";

/// Points the `[[robot]]` tables at the server (its port changes between runs).
fn set_robots(d: &Deployment, port: u16, extra: &str) {
    let path = d.dir.join("manyi.toml");
    let text = std::fs::read_to_string(&path).expect("manyi.toml");
    let base = text.split("\n# robots of the test\n").next().expect("text").to_string();
    let common = format!("base_url = \"http://127.0.0.1:{port}\"\nmin_interval_ms = 0\ntimeout_secs = 5\n{extra}");
    std::fs::write(
        &path,
        format!(
            "{base}\n# robots of the test\n[[robot]]\nname = \"wx-city\"\nkind = \"wecom\"\nkey_env = \"T_WX_CITY\"\n{common}\n\
             [[robot]]\nname = \"wx-binjiang\"\nkind = \"wecom\"\nkey_env = \"T_WX_JD\"\nmention_mobiles = [\"{MOBILE}\"]\n{common}\n\
             [[robot]]\nname = \"dd-binjiang\"\nkind = \"dingtalk\"\ntoken_env = \"T_DD_TOKEN\"\nsecret_env = \"T_DD_SECRET\"\n\
             mention_mobiles = [\"{MOBILE}\"]\n{common}"
        ),
    )
    .expect("write manyi.toml");
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![("T_WX_CITY", WX_CITY), ("T_WX_JD", WX_JD), ("T_DD_TOKEN", DD_TOKEN), ("T_DD_SECRET", DD_SECRET)]
}

fn run(d: &Deployment, extra: &[&str], env: &[(&str, &str)]) -> Ran {
    let mut args = vec!["run", "monthly-report", "--period", "2026-10"];
    args.extend_from_slice(extra);
    d.manyi_env(&args, env)
}

/// The body of the one message of this type a robot got.
fn message(server: &Server, robot: &str, msgtype: &str) -> serde_json::Value {
    let got: Vec<_> = server.received().into_iter().filter(|(_, r, b)| r == robot && b["msgtype"] == msgtype).collect();
    assert_eq!(got.len(), 1, "{robot} {msgtype}: {got:?}");
    got[0].2.clone()
}

#[test]
fn reports_reach_every_robot_once_paced_through_throttling_and_a_rerun_sends_nothing() {
    // Two messages a second per robot: the city robot's third is throttled
    // (45009) and goes through on a later attempt.
    let (d, server) = deployment(MONTH, &["--per-window", "2", "--window", "1"], "attempts = 5\nbackoff_ms = 400\n");
    run(&d, &[], &env()).success();
    assert_eq!(server.counts(), report_once());

    let card = message(&server, WX_JD, "markdown")["markdown"]["content"].as_str().expect("content").to_string();
    eprintln!("企业微信 summary card as received:\n{card}");
    assert!(card.starts_with("### 【满意度月报】2026年10月 · 滨江街道办事处"), "{card}");
    assert!(card.contains("**满意率 66.7%**") && card.contains("排名：") && card.contains("逾期未整改差评"), "{card}");
    let dd = message(&server, DD_TOKEN, "markdown");
    assert!(dd["markdown"]["text"].as_str().expect("text").contains("详见邮件附件"), "{dd}");
    let file = message(&server, WX_JD, "file");
    assert!(file["file"]["media_id"].as_str().is_some_and(|m| !m.is_empty()));

    // The rerun finds every robot message on record and sends nothing.
    let out = run(&d, &[], &env()).success().stdout();
    assert!(out.contains("\"already_delivered\": 5"), "street: mail + 4 robot messages: {out}");
    assert_eq!(server.counts(), report_once());
    assert_eq!(d.count("SELECT COUNT(*) FROM deliveries WHERE channel = 'wecom' AND state = 'sent'"), 6);
    assert_eq!(d.count("SELECT COUNT(*) FROM deliveries WHERE channel = 'dingtalk' AND state = 'sent'"), 1);
    let history = d.manyi(&["history", "monthly-report"]).success().stdout();
    for who in ["robot:wx-city", "robot:wx-binjiang/chart", "robot:wx-binjiang/xlsx", "robot:dd-binjiang", "jd@linjiang.gov.cn"] {
        assert!(history.contains(who), "history shows {who}:\n{history}");
    }
    assert!(history.contains("wecom") && history.contains("dingtalk") && history.contains("outbox"), "{history}");

    // --resend sends every robot message again.
    run(&d, &["--resend"], &env()).success();
    assert!(server.counts().values().all(|n| *n == 2), "{:?}", server.counts());
}

/// A fault on the second and third send request (the city robot's chart,
/// both attempts): the run exits 1 naming it, the ledger has the failure,
/// and a rerun sends only what is missing.
fn after_a_fault(fault: &str, in_ledger: &str) {
    let (f2, f3) = (format!("2:{fault}"), format!("3:{fault}"));
    let (d, server) = deployment(MONTH, &["--fail", &f2, "--fail", &f3], "attempts = 2\nbackoff_ms = 20\n");
    let failed = run(&d, &[], &env()).code(1);
    let err = failed.stderr();
    assert!(err.contains("leadership 临江市领导 → robot:wx-city/chart") && err.contains(in_ledger), "{err}");
    let detail: String = d
        .db()
        .query_row("SELECT detail FROM delivery_history WHERE recipient = 'robot:wx-city/chart' AND state = 'failed'", [], |r| r.get(0))
        .expect("a failed record");
    assert!(detail.contains(in_ledger), "{detail}");

    run(&d, &[], &env()).success();
    assert_eq!(server.counts(), report_once(), "after the {fault} and a rerun every message is there once");
}

#[test]
fn a_throttled_robot_is_retried_on_the_rerun_and_the_45009_is_on_record() {
    after_a_fault("throttle", "errcode 45009: api freq out of limit");
}

#[test]
fn a_500_is_on_record_and_the_rerun_sends_only_what_is_missing() {
    after_a_fault("500", "HTTP 500");
}

#[test]
fn a_dropped_connection_stops_that_robot_only_and_the_rerun_completes_it() {
    // The city robot's XLSX is not attempted after its chart found no answer.
    after_a_fault("drop", "no answer after 2 attempt(s)");
}

#[test]
fn a_wrong_key_and_a_wrong_secret_fail_their_robots_and_name_them() {
    let (d, server) = deployment(MONTH, &[], "attempts = 2\nbackoff_ms = 20\n");
    let mut wrong = env();
    wrong[1] = ("T_WX_JD", "not-the-key");
    wrong[3] = ("T_DD_SECRET", "SECwrong");
    let err = run(&d, &[], &wrong).code(1).stderr();
    assert!(err.contains("robot:wx-binjiang: wecom markdown: errcode 93000"), "{err}");
    assert!(err.contains("robot:wx-binjiang/xlsx: wecom file: not attempted"), "{err}");
    assert!(err.contains("robot:dd-binjiang: dingtalk markdown: errcode 310000: sign not match"), "{err}");
    assert_eq!(d.count("SELECT COUNT(*) FROM deliveries WHERE state = 'failed'"), 4);
    run(&d, &[], &env()).success();
    assert_eq!(server.counts(), report_once());
}

#[test]
fn a_dry_run_writes_the_json_bodies_and_sends_nothing() {
    let (d, server) = deployment(MONTH, &[], "");
    run(&d, &["--dry-run"], &env()).success();
    assert!(server.received().is_empty());
    let path = d.dir.join("data/outbox/dry-run_monthly-report_2026-10_street-369901001_robot-dd-binjiang.json");
    let bodies: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("dry-run file")).expect("json");
    assert_eq!(bodies[0]["body"]["msgtype"], "markdown");
    assert!(!bodies.to_string().contains(DD_TOKEN), "no token in a dry-run file");
    assert_eq!(d.count("SELECT COUNT(*) FROM deliveries"), 0);
}

#[test]
fn the_alert_lists_the_most_urgent_first_within_4096_bytes_masked() {
    let mut rows = String::new();
    for k in 0..40 {
        let day = 1 + k % 28;
        let comment = format!("第{k}条：楼道灯坏了很久，电话13912345{k:03}，{}", "反映多次没有处理结果".repeat(8));
        rows.push_str(&format!("A{k:02},1,2026-10-{day:02} 09:00:00,369901001001,物业管理,1,1,{comment},待核实\n"));
    }
    let (d, server) = deployment(&rows, &[], "");
    d.manyi_env(&["run", "nightly-alert"], &env()).success();

    let md = message(&server, WX_JD, "markdown")["markdown"]["content"].as_str().expect("content").to_string();
    eprintln!("企业微信 alert markdown as received ({} bytes):\n{md}", md.len());
    assert!(md.len() <= 4096, "{} bytes", md.len());
    assert!(md.contains("新增差评 **40** 条") && md.contains("另有 **") && md.contains("详见邮件"), "{md}");
    assert!(!md.contains("13912345"), "phone numbers are masked: {md}");
    assert!(md.contains("**1. 春晖社区** · 物业管理 · 10月1日"), "the earliest deadline first: {md}");
    let mention = message(&server, WX_JD, "text");
    assert_eq!(mention["text"]["mentioned_mobile_list"], serde_json::json!([MOBILE]));
    let dd = message(&server, DD_TOKEN, "markdown");
    assert_eq!(dd["at"]["atMobiles"], serde_json::json!([MOBILE]));
    assert!(dd["markdown"]["text"].as_str().expect("text").len() <= 4096);
    assert!(server.received().iter().all(|(_, r, _)| r != WX_CITY), "leadership gets no alert");
}
