//! Delivery over real SMTP: an aiosmtpd server on loopback (tests/smtp_server.py,
//! installed by scripts/test.sh) with AUTH and STARTTLS or implicit TLS, that
//! stores what it receives; faults injected on request. Every check reads
//! back what the server stored.

use super::HEAD;
use crate::support::Deployment;
use mail_parser::{MessageParser, MimeHeaders, PartType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;

const PASSWORD: &str = "s3cret-测试";
const LEADERS: [&str; 2] = ["boss1@linjiang.gov.cn", "boss2@linjiang.gov.cn"];
const STREET: [&str; 3] = ["jd1@linjiang.gov.cn", "jd2@linjiang.gov.cn", "jd3@linjiang.gov.cn"];

/// The test SMTP server, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    spool: PathBuf,
}

impl Server {
    /// Starts the server storing into `spool`; `args` are its fault options.
    fn start(spool: &Path, security: &str, args: &[&str]) -> Server {
        Server::start_on(spool, security, 0, args)
    }

    fn start_on(spool: &Path, security: &str, port: u16, args: &[&str]) -> Server {
        let port = port.to_string();
        let mut all = vec![
            "--spool",
            spool.to_str().expect("utf-8"),
            "--security",
            security,
            "--port",
            &port,
            "--user",
            "manyi",
            "--password",
            PASSWORD,
        ];
        all.extend_from_slice(args);
        let (child, port) = crate::support::start_python_server("smtp_server.py", &all, "aiosmtpd: scripts/test.sh installs it");
        Server { child, port, spool: spool.to_path_buf() }
    }

    /// Envelope recipients of every stored message, with its file.
    fn received(&self) -> Vec<(PathBuf, Vec<String>)> {
        received(&self.spool)
    }

    fn connections(&self) -> usize {
        std::fs::read_to_string(self.spool.join("connections.txt")).map(|s| s.trim().parse().expect("count")).unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn received(spool: &Path) -> Vec<(PathBuf, Vec<String>)> {
    let Ok(log) = std::fs::read_to_string(spool.join("log.jsonl")) else { return Vec::new() };
    log.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("log line");
            let rcpt = v["rcpt"].as_array().expect("rcpt").iter().map(|r| r.as_str().expect("str").to_string()).collect();
            (spool.join(v["file"].as_str().expect("file")), rcpt)
        })
        .collect()
}

/// How many copies each recipient got.
fn copies(spool: &Path) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (_, rcpt) in received(spool) {
        for r in rcpt {
            *m.entry(r).or_default() += 1;
        }
    }
    m
}

fn everyone_once() -> BTreeMap<String, usize> {
    LEADERS.iter().chain(STREET.iter()).map(|r| (r.to_string(), 1)).collect()
}

/// A small city with two leadership recipients and three street ones, a
/// month of ratings collected, and `[mail.smtp]` pointing at `port`.
fn deployment(port: u16, security: &str, extra: &str) -> Deployment {
    let d = Deployment::small();
    d.file(
        "reference/offices.toml",
        &format!(
            "[[office]]\nid = \"leadership\"\nname = \"临江市领导\"\nrole = \"leadership\"\nrecipients = {:?}\n\n\
             [[office]]\nid = \"street-369901001\"\nname = \"滨江街道办事处\"\nrole = \"office\"\nrecipients = {:?}\nscope = {{ orgs = [\"369901001\"] }}\n",
            LEADERS, STREET
        ),
    );
    d.file(
        "inbox/ratings/a.csv",
        &format!(
            "{HEAD}C001,1,2026-10-03 09:00:00,369901001001,政务办事,1,5,,\nC002,1,2026-10-04 09:00:00,369901001002,养老服务,1,2,太慢,待核实\n\
             C003,1,2026-10-05 09:00:00,369901001003,环境卫生,2,4,,\n"
        ),
    );
    d.manyi(&["collect"]).success();
    set_smtp(&d, port, security, extra);
    d
}

/// Rewrites the `[mail.smtp]` table (the server's port changes between runs).
fn set_smtp(d: &Deployment, port: u16, security: &str, extra: &str) {
    let path = d.dir.join("manyi.toml");
    let text = std::fs::read_to_string(&path).expect("manyi.toml");
    let base = text.split("\n[mail.smtp]\n").next().expect("text").to_string();
    let ca = d.dir.join("smtp-spool/cert.pem");
    let ca_line = if security == "plain" { String::new() } else { format!("ca_file = {:?}\n", ca.to_str().expect("utf-8")) };
    std::fs::write(
        &path,
        format!(
            "{base}\n[mail.smtp]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"{security}\"\nusername = \"manyi\"\n\
             password_env = \"MANYI_TEST_SMTP_PASSWORD\"\n{ca_line}timeout_secs = 5\nattempts = 3\nbackoff_ms = 20\n{extra}"
        ),
    )
    .expect("write manyi.toml");
}

fn run(d: &Deployment, extra: &[&str]) -> crate::support::Ran {
    let mut args = vec!["run", "monthly-report", "--period", "2026-10"];
    args.extend_from_slice(extra);
    d.manyi_env(&args, &[("MANYI_TEST_SMTP_PASSWORD", PASSWORD)])
}

fn spool(d: &Deployment) -> PathBuf {
    d.dir.join("smtp-spool")
}

/// Content types of a message's parts in order, each with its children.
fn tree(msg: &mail_parser::Message) -> Vec<(String, Vec<usize>)> {
    msg.parts
        .iter()
        .map(|p| {
            let ct = p.content_type().map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or(""))).unwrap_or_default();
            let children = match &p.body {
                PartType::Multipart(ids) => ids.iter().map(|&i| i as usize).collect(),
                _ => Vec::new(),
            };
            (ct, children)
        })
        .collect()
}

#[test]
fn reports_arrive_over_starttls_with_auth_in_the_right_mime_structure() {
    let d = deployment(1, "starttls", "");
    let server = Server::start(&spool(&d), "starttls", &[]);
    set_smtp(&d, server.port, "starttls", "");
    let out = run(&d, &[]).success().stdout();
    assert!(out.contains("\"sent\": 3") && out.contains("\"sent\": 2"), "{out}");

    let got = server.received();
    assert_eq!(copies(&spool(&d)), everyone_once(), "one message per recipient by default");
    assert!(got.iter().all(|(_, r)| r.len() == 1));
    assert_eq!(server.connections(), 1, "five messages over one reused connection");

    for (file, rcpt) in &got {
        let raw = std::fs::read(file).expect("eml");
        let msg = MessageParser::default().parse(&raw).expect("parse");
        let t = tree(&msg);
        let types: Vec<&str> = t.iter().map(|(c, _)| c.as_str()).collect();
        // Leadership has three charts (trend, districts, categories), an office two.
        let charts = if LEADERS.contains(&rcpt[0].as_str()) { 3 } else { 2 };
        let mut want = vec!["multipart/mixed", "multipart/related", "multipart/alternative", "text/plain", "text/html"];
        want.extend(std::iter::repeat_n("image/png", charts));
        want.extend(["application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "text/csv"]);
        assert_eq!(types, want);
        let xlsx_part = 5 + charts;
        assert_eq!(t[0].1, [1, xlsx_part, xlsx_part + 1], "mixed holds the related part, then the attachments");
        assert_eq!(t[1].1, std::iter::once(2).chain(5..5 + charts).collect::<Vec<_>>(), "related holds the alternative and the charts");
        assert_eq!(t[2].1, [3, 4], "alternative holds text then HTML");
        // Every cid: of the HTML is a part of the related container, and every chart is shown.
        let html = msg.body_html(0).expect("html");
        let cids: Vec<String> = html.split("cid:").skip(1).filter_map(|s| s.split('"').next()).map(String::from).collect();
        assert_eq!(cids.len(), charts);
        for cid in &cids {
            let found =
                msg.parts.iter().any(|p| p.content_id() == Some(cid.as_str()) && p.content_type().is_some_and(|c| c.ctype() == "image"));
            assert!(found, "cid:{cid} is attached as an image part");
        }

        let from = msg.from().and_then(|a| a.first()).expect("From");
        assert_eq!(from.name(), Some("临江市民政局满意度监测"));
        assert_eq!(from.address(), Some("manyi@mzj.linjiang.gov.cn"));
        let to = msg.to().and_then(|a| a.first()).and_then(|a| a.address()).expect("To");
        assert_eq!(to, rcpt[0]);
        let subject = msg.subject().expect("subject");
        if LEADERS.contains(&to) {
            assert_eq!(subject, "【满意度月报】2026年10月 · 临江市");
        } else {
            assert!(subject.starts_with("【满意度月报】2026年10月") && subject.contains("滨江街道"), "{subject}");
        }
        // The subject went out RFC 2047-encoded: the raw header is ASCII.
        let head = String::from_utf8_lossy(&raw[..raw.windows(4).position(|w| w == b"\r\n\r\n").expect("headers end")]).to_string();
        let subj_line = head.lines().find(|l| l.starts_with("Subject:")).expect("Subject header");
        assert!(subj_line.is_ascii() && subj_line.contains("=?utf-8?"), "{subj_line}");
        assert!(msg.message_id().is_some_and(|m| m.ends_with("@mzj.linjiang.gov.cn")), "Message-ID");
        assert!(msg.date().is_some(), "Date");

        let att: Vec<_> = msg.attachments().filter(|p| p.content_disposition().is_some_and(|c| c.ctype() == "attachment")).collect();
        assert_eq!(att.len(), 2);
        assert_eq!(att[0].attachment_name(), Some("满意度明细_2026-10.xlsx"));
        assert!(att[0].contents().starts_with(b"PK"), "the XLSX arrives whole");
        assert_eq!(att[1].attachment_name(), Some("社区明细_2026-10.csv"));
        // Both spellings of the name: RFC 2231 in Content-Disposition, RFC 2047 in Content-Type.
        let ct_name = att[1].content_type().and_then(|c| c.attribute("name")).expect("Content-Type name");
        assert_eq!(ct_name, "社区明细_2026-10.csv");
        let csv = att[1].contents();
        assert!(csv.starts_with("\u{feff}".as_bytes()), "the CSV keeps its BOM");
        let csv = String::from_utf8_lossy(csv);
        assert!(csv.contains("春晖社区") || csv.contains("阳光社区"), "{csv}");
        assert!(msg.body_html(0).expect("html").contains("满意率"));
    }
    assert_eq!(d.count("SELECT COUNT(*) FROM deliveries WHERE state = 'sent' AND channel = 'smtp' AND detail LIKE '250%'"), 5);
    assert_eq!(d.count("SELECT COUNT(*) FROM delivery_history WHERE state = 'sending'"), 5, "sending is on record before each transaction");

    // A rerun sends nothing; --resend sends everyone one more copy.
    run(&d, &[]).success();
    assert_eq!(server.received().len(), 5);
    run(&d, &["--resend"]).success();
    assert_eq!(server.received().len(), 10);
    let history = d.manyi(&["history", "monthly-report"]).success().stdout();
    assert!(history.contains("jd2@linjiang.gov.cn") && history.contains("250 2.0.0 Ok"), "{history}");
}

#[test]
fn implicit_tls_batches_and_dry_run() {
    let d = deployment(1, "tls", "batch_size = 50\n");
    let server = Server::start(&spool(&d), "tls", &[]);
    set_smtp(&d, server.port, "tls", "batch_size = 50\n");

    // --dry-run renders to the outbox and neither sends nor records.
    run(&d, &["--dry-run"]).success();
    assert!(server.received().is_empty());
    assert_eq!(d.count("SELECT COUNT(*) FROM deliveries"), 0);
    assert!(d.dir.join("data/outbox/dry-run_monthly-report_2026-10_street-369901001.eml").exists());

    run(&d, &[]).success();
    let got = server.received();
    assert_eq!(got.len(), 2, "one message per office with batch_size = 50");
    assert_eq!(copies(&spool(&d)), everyone_once());
    let street = got.iter().find(|(_, r)| r.len() == 3).expect("the street batch");
    let msg_raw = std::fs::read(&street.0).expect("eml");
    let msg = MessageParser::default().parse(&msg_raw).expect("parse");
    assert_eq!(msg.to().map(|a| a.iter().count()), Some(3), "the batch shares one To header");
}

#[test]
fn plain_smtp_is_refused_for_a_remote_host_and_works_on_loopback() {
    let d = deployment(25, "plain", "");
    let text =
        std::fs::read_to_string(d.dir.join("manyi.toml")).expect("toml").replace("host = \"127.0.0.1\"", "host = \"smtp.linjiang.gov.cn\"");
    std::fs::write(d.dir.join("manyi.toml"), text).expect("write");
    let err = d.manyi(&["check"]).code(2).stderr();
    assert!(err.contains("security = \"plain\"") && err.contains("smtp.linjiang.gov.cn") && err.contains("starttls"), "{err}");

    let server = Server::start(&spool(&d), "plain", &[]);
    set_smtp(&d, server.port, "plain", "");
    d.manyi(&["check"]).success();
    run(&d, &[]).success();
    assert_eq!(copies(&spool(&d)), everyone_once());
}

#[test]
fn missing_password_variable_fails_before_sending() {
    let d = deployment(2525, "plain", "");
    let ran = d.manyi(&["run", "monthly-report", "--period", "2026-10"]).code(1);
    assert!(ran.stderr().contains("MANYI_TEST_SMTP_PASSWORD"), "{}", ran.stderr());
    assert_eq!(d.count("SELECT COUNT(*) FROM deliveries"), 0);
}

#[test]
fn server_down_when_the_run_starts_then_a_rerun_sends_everything() {
    let d = deployment(1, "starttls", "");
    // A port where nothing listens: start the server to learn one, stop it.
    let port = {
        let s = Server::start(&spool(&d), "starttls", &[]);
        s.port
    };
    set_smtp(&d, port, "starttls", "");
    let err = run(&d, &[]).code(1).stderr();
    assert!(err.contains("5 recipient(s) did not get their report"), "{err}");
    assert!(err.contains("could not be reached") && err.contains("boss2@linjiang.gov.cn") && err.contains("jd3@linjiang.gov.cn"), "{err}");
    assert_eq!(d.count("SELECT COUNT(*) FROM deliveries WHERE state = 'failed'"), 5);
    assert_eq!(d.count("SELECT COUNT(*) FROM runs WHERE outcome = 'failed'"), 1);

    let server = Server::start_on(&spool(&d), "starttls", port, &[]);
    run(&d, &[]).success();
    assert_eq!(copies(&server.spool), everyone_once());
    run(&d, &[]).success();
    assert_eq!(server.received().len(), 5, "nothing more on a further rerun");
}

#[test]
fn connection_dropped_mid_batch_is_retried_and_a_broken_server_leaves_only_the_rest_for_the_rerun() {
    // Dropped once after two messages: the retry on a new connection recovers.
    let d = deployment(1, "starttls", "");
    let server = Server::start(&spool(&d), "starttls", &["--drop-after", "2", "--drop-count", "1"]);
    set_smtp(&d, server.port, "starttls", "");
    run(&d, &[]).success();
    assert_eq!(copies(&spool(&d)), everyone_once());
    assert_eq!(server.connections(), 2, "one reconnect after the drop");
    run(&d, &[]).success();
    assert_eq!(server.received().len(), 5);
    drop(server);

    // Dropped for good after two messages: three recipients missing, and the
    // rerun against a working server sends exactly those three.
    let d = deployment(1, "starttls", "");
    let server = Server::start(&spool(&d), "starttls", &["--drop-after", "2", "--drop-count", "0"]);
    set_smtp(&d, server.port, "starttls", "");
    let err = run(&d, &[]).code(1).stderr();
    assert!(err.contains("3 recipient(s) did not get their report (2 served now"), "{err}");
    assert_eq!(server.received().len(), 2);
    assert_eq!(d.count("SELECT COUNT(*) FROM deliveries WHERE state = 'sent'"), 2);
    drop(server);
    let server = Server::start(&spool(&d), "starttls", &[]);
    set_smtp(&d, server.port, "starttls", "");
    run(&d, &[]).success();
    assert_eq!(copies(&spool(&d)), everyone_once());
    assert_eq!(server.received().len(), 5);
}

#[test]
fn a_451_is_retried_with_backoff_and_succeeds() {
    let d = deployment(1, "starttls", "");
    let server = Server::start(&spool(&d), "starttls", &["--fail-451", "2"]);
    set_smtp(&d, server.port, "starttls", "");
    run(&d, &[]).success();
    assert_eq!(copies(&spool(&d)), everyone_once());
    run(&d, &[]).success();
    assert_eq!(server.received().len(), 5, "the rerun sends nothing");
}

#[test]
fn a_550_for_one_recipient_in_a_batch_spares_the_others_and_the_rerun_sends_only_that_one() {
    let d = deployment(1, "starttls", "batch_size = 50\n");
    let server = Server::start(&spool(&d), "starttls", &["--reject", "jd2@linjiang.gov.cn"]);
    set_smtp(&d, server.port, "starttls", "batch_size = 50\n");
    let err = run(&d, &[]).code(1).stderr();
    assert!(err.contains("1 recipient(s) did not get their report (4 served now"), "{err}");
    assert!(err.contains("jd2@linjiang.gov.cn: refused by the server") && err.contains("550"), "{err}");
    let mut want = everyone_once();
    want.remove("jd2@linjiang.gov.cn");
    assert_eq!(copies(&spool(&d)), want);
    let detail: String = d
        .db()
        .query_row("SELECT detail FROM deliveries WHERE recipient = 'jd2@linjiang.gov.cn' AND state = 'failed'", [], |r| r.get(0))
        .expect("failed record");
    assert!(detail.contains("550") && detail.contains("User unknown"), "{detail}");

    // Same server, same refusal: still only jd2 is tried, and still refused.
    run(&d, &[]).code(1);
    assert_eq!(copies(&spool(&d)), want);
    drop(server);
    let server = Server::start(&spool(&d), "starttls", &[]);
    set_smtp(&d, server.port, "starttls", "batch_size = 50\n");
    run(&d, &[]).success();
    assert_eq!(copies(&spool(&d)), everyone_once());
    let last = server.received();
    assert_eq!(last.last().map(|(_, r)| r.clone()), Some(vec!["jd2@linjiang.gov.cn".to_string()]));
}

#[test]
fn a_crash_between_sending_and_sent_means_one_more_copy_with_the_same_message_id() {
    let d = deployment(1, "starttls", "");
    let server = Server::start(&spool(&d), "starttls", &[]);
    set_smtp(&d, server.port, "starttls", "");
    run(&d, &[]).success();
    // As if the process had died after the server accepted jd1's copy but
    // before "sent" was recorded.
    d.db().execute("UPDATE deliveries SET state = 'sending' WHERE recipient = 'jd1@linjiang.gov.cn'", []).expect("update");
    run(&d, &[]).success();
    let jd1: Vec<_> = server.received().into_iter().filter(|(_, r)| r == &["jd1@linjiang.gov.cn"]).collect();
    assert_eq!(jd1.len(), 2, "at-least-once: the uncertain copy is sent again");
    let ids: Vec<String> = jd1
        .iter()
        .map(|(f, _)| {
            let raw = std::fs::read(f).expect("eml");
            MessageParser::default().parse(&raw).and_then(|m| m.message_id().map(str::to_string)).expect("Message-ID")
        })
        .collect();
    assert_eq!(ids[0], ids[1], "the same Message-ID, so deduplicating mail systems show one");
    assert_eq!(server.received().len(), 6);
}

/// A synthetic 2×1 PNG (valid signature, IHDR, IDAT, IEND).
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R', 0, 0, 0, 2, 0, 0, 0, 1, 8, 0, 0, 0, 0, 0x8a, 0x5e,
    0x6b, 0x4e, 0, 0, 0, 11, b'I', b'D', b'A', b'T', 0x78, 0x9c, 0x63, 0x60, 0x60, 0, 0, 0, 3, 0, 1, 0x2e, 0x1a, 0x0e, 0x33, 0, 0, 0, 0,
    b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82,
];

#[test]
fn inline_images_travel_as_cid_parts_of_the_related_part() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = Server::start(tmp.path(), "starttls", &["--no-auth"]);
    let report = manyi::render::Rendered {
        subject: "【满意度月报】图表测试".into(),
        html: "<p>趋势</p><img src=\"cid:trend@manyi\"><img src=\"cid:bars@manyi\">".into(),
        text: "趋势".into(),
        images: vec![
            manyi::render::InlineImage { cid: "trend@manyi".into(), filename: "trend.png".into(), png: PNG.to_vec() },
            manyi::render::InlineImage { cid: "bars@manyi".into(), filename: "bars.png".into(), png: PNG.to_vec() },
        ],
        attachments: vec![manyi::render::Attachment {
            filename: "社区明细_2026-10.csv".into(),
            content_type: "text/csv; charset=utf-8".into(),
            bytes: "\u{feff}社区,满意率\n春晖社区,90%\n".into(),
        }],
    };
    let from = "临江市民政局 <manyi@mzj.linjiang.gov.cn>";
    let to = vec!["a@linjiang.gov.cn".to_string()];
    let id = manyi::deliver::message_id(from, &["t"]);
    let msg = manyi::deliver::build_message(from, &to, &report, &id).expect("build");
    let cfg: manyi::config::SmtpConfig = toml::from_str(&format!(
        "host = \"127.0.0.1\"\nport = {}\nsecurity = \"starttls\"\nca_file = {:?}\n",
        server.port,
        tmp.path().join("cert.pem").to_str().expect("utf-8")
    ))
    .expect("smtp config");
    let mut mailer = manyi::deliver::Mailer::new(&cfg, from, Path::new("/")).expect("mailer");
    let reply = mailer.send(&msg, &to).expect("sent");
    assert!(reply.starts_with("250"), "{reply}");

    let got = server.received();
    assert_eq!(got.len(), 1);
    let raw = std::fs::read(&got[0].0).expect("eml");
    let parsed = MessageParser::default().parse(&raw).expect("parse");
    let t = tree(&parsed);
    let types: Vec<&str> = t.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        types,
        ["multipart/mixed", "multipart/related", "multipart/alternative", "text/plain", "text/html", "image/png", "image/png", "text/csv"]
    );
    assert_eq!(t[1].1, [2, 5, 6], "the images sit in the related part beside the alternative");
    let html = parsed.body_html(0).expect("html").into_owned();
    let cids: Vec<&str> = html.split("cid:").skip(1).map(|s| s.split('"').next().expect("cid")).collect();
    assert_eq!(cids.len(), 2);
    for cid in cids {
        let part = t
            .iter()
            .enumerate()
            .filter(|(_, (c, _))| c == "image/png")
            .map(|(i, _)| &parsed.parts[i])
            .find(|p| p.content_id() == Some(cid))
            .unwrap_or_else(|| panic!("no part with Content-ID <{cid}>"));
        assert_eq!(part.contents(), PNG);
    }
}

/// Runs `manyi serve` on a deployment whose monthly report fails every two
/// seconds (its leadership template is gone) until `until` holds, then stops
/// it with SIGTERM.
fn serve_a_failing_report(d: &Deployment, until: impl Fn() -> bool) {
    d.file(
        "jobs/monthly-report.toml",
        "schedule = \"*/2 * * * * *\"\nkind = \"report\"\nperiod = \"previous-month\"\ntemplate = \"haochaping\"\n",
    );
    let template = d.dir.join("survey-templates/haochaping/leadership.html.tera");
    if template.exists() {
        std::fs::remove_file(template).expect("remove template");
    }
    let log_path = d.dir.join("serve.log");
    let mut serve = std::process::Command::new(crate::support::BIN)
        .arg("serve")
        .current_dir(&d.dir)
        .env("MANYI_CONFIG", d.dir.join("manyi.toml"))
        .env("MANYI_TEST_SMTP_PASSWORD", PASSWORD)
        .env_remove("MANYI_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("start manyi serve");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !until() {
        assert!(serve.try_wait().expect("wait").is_none(), "serve exited early:\n{}", log());
        assert!(std::time::Instant::now() < deadline, "timed out waiting for the admins' mail:\n{}", log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ok = std::process::Command::new("kill").args(["-TERM", &serve.id().to_string()]).status().expect("kill").success();
    assert!(ok, "kill -TERM failed");
    assert_eq!(serve.wait().expect("wait").code(), Some(0), "{}", log());
}

fn failure_mails_in_outbox(d: &Deployment) -> usize {
    std::fs::read_dir(d.dir.join("data/outbox"))
        .map(|e| e.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("failure_"))).count())
        .unwrap_or(0)
}

#[test]
fn a_failed_scheduled_run_is_mailed_to_the_admins_over_smtp_and_to_the_outbox_when_smtp_is_down() {
    const ADMIN: &str = "xxzx@mzj.linjiang.gov.cn";
    let d = deployment(1, "starttls", "");
    let server = Server::start(&spool(&d), "starttls", &[]);
    set_smtp(&d, server.port, "starttls", "");
    serve_a_failing_report(&d, || copies(&spool(&d)).contains_key(ADMIN));
    let (file, rcpt) = server.received().into_iter().find(|(_, r)| r == &[ADMIN]).expect("the admins' mail");
    assert_eq!(rcpt, [ADMIN]);
    let raw = std::fs::read(file).expect("eml");
    let msg = MessageParser::default().parse(&raw).expect("parse");
    assert!(msg.subject().unwrap_or_default().contains("monthly-report"));
    assert!(msg.body_text(0).expect("text").contains("leadership.html.tera"), "the mail says what failed");
    assert_eq!(failure_mails_in_outbox(&d), 0, "sent over SMTP, not written to the outbox");
    drop(server);

    // Nothing listens on the port any more: the notice is not lost, it goes to the outbox.
    serve_a_failing_report(&d, || failure_mails_in_outbox(&d) >= 1);
}

/// Benchmark, not a test: `scripts/bench_smtp.sh`. One office with 1,000
/// recipients and one message per recipient: 1,000 report messages built,
/// sent over STARTTLS with AUTH on one reused connection, and recorded
/// (sending, sent) in state.db; prints messages per second.
#[test]
#[ignore = "benchmark: run with scripts/bench_smtp.sh"]
fn bench_deliver_1000_reports() {
    let d = deployment(1, "starttls", "");
    let recipients: Vec<String> = (0..1000).map(|k| format!("office{k:04}@linjiang.gov.cn")).collect();
    d.file(
        "reference/offices.toml",
        &format!(
            "[[office]]\nid = \"street-369901001\"\nname = \"滨江街道办事处\"\nrole = \"office\"\nrecipients = {recipients:?}\nscope = {{ orgs = [\"369901001\"] }}\n"
        ),
    );
    let server = Server::start(&spool(&d), "starttls", &[]);
    set_smtp(&d, server.port, "starttls", "");
    let started = std::time::Instant::now();
    run(&d, &[]).success();
    let secs = started.elapsed().as_secs_f64();
    let got = server.received();
    assert_eq!(got.len(), 1000);
    let size = std::fs::metadata(&got[0].0).map(|m| m.len()).unwrap_or(0);
    println!(
        "bench_smtp: 1000 messages ({size} bytes each) over {} connection(s) in {secs:.2}s = {:.0} messages/s (whole `manyi run`, incl. rendering once and 2 state.db records per message)",
        server.connections(),
        1000.0 / secs
    );
}

/// Runs `manyi run <args>` in the background with the SMTP password set.
fn spawn_run(d: &Deployment, args: &[&str]) -> std::process::Child {
    std::process::Command::new(crate::support::BIN)
        .arg("run")
        .args(args)
        .current_dir(&d.dir)
        .env("MANYI_CONFIG", d.dir.join("manyi.toml"))
        .env("MANYI_TEST_SMTP_PASSWORD", PASSWORD)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn manyi run")
}

#[test]
fn two_runs_of_one_job_and_period_at_once_send_each_recipient_one_copy() {
    let d = deployment(1, "starttls", "");
    // 400 ms per message: a run takes about 2 s, so the two overlap.
    let server = Server::start(&spool(&d), "starttls", &["--delay-ms", "400"]);
    set_smtp(&d, server.port, "starttls", "");
    let a = spawn_run(&d, &["monthly-report", "--period", "2026-10"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let b = spawn_run(&d, &["monthly-report", "--period", "2026-10"]);
    for child in [a, b] {
        let out = child.wait_with_output().expect("wait");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        assert!(!err.contains("interrupted"), "no live run may be called interrupted: {err}");
    }
    assert_eq!(copies(&spool(&d)), everyone_once(), "counted at the server");
    assert_eq!(d.count("SELECT COUNT(*) FROM delivery_history WHERE state = 'sent'"), 5);
}

#[test]
fn serve_firing_a_job_while_a_manual_run_of_it_goes_on_sends_each_recipient_one_copy() {
    let d = deployment(1, "starttls", "");
    let server = Server::start(&spool(&d), "starttls", &["--delay-ms", "300"]);
    set_smtp(&d, server.port, "starttls", "");
    d.file(
        "jobs/fast-report.toml",
        "# every 2 seconds, for the test\nschedule = \"*/2 * * * * *\"\nkind = \"report\"\nperiod = \"previous-month\"\ntemplate = \"haochaping\"\n",
    );
    let log = std::fs::File::create(d.dir.join("serve.log")).expect("log");
    let mut serve = std::process::Command::new(crate::support::BIN)
        .arg("serve")
        .current_dir(&d.dir)
        .env("MANYI_CONFIG", d.dir.join("manyi.toml"))
        .env("MANYI_TEST_SMTP_PASSWORD", PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("serve");
    // The manual run of the same job and (default) period, started while the
    // service fires it.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let manual = spawn_run(&d, &["fast-report"]).wait_with_output().expect("manual run");
    assert!(manual.status.success(), "{}", String::from_utf8_lossy(&manual.stderr));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while d.count("SELECT COUNT(*) FROM runs WHERE job = 'fast-report' AND outcome = 'ok'") < 3 {
        assert!(std::time::Instant::now() < deadline, "{}", std::fs::read_to_string(d.dir.join("serve.log")).unwrap_or_default());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = std::process::Command::new("kill").args(["-TERM", &serve.id().to_string()]).status();
    let _ = serve.wait();
    let log = std::fs::read_to_string(d.dir.join("serve.log")).unwrap_or_default();
    assert!(!log.contains("interrupted"), "{log}");
    assert_eq!(copies(&spool(&d)), everyone_once(), "counted at the server:\n{log}");
}

#[test]
fn a_retried_alert_resumes_its_window_and_serves_only_whom_it_missed() {
    let d = deployment(1, "starttls", "");
    let server = Server::start(&spool(&d), "starttls", &["--reject", "jd2@linjiang.gov.cn"]);
    set_smtp(&d, server.port, "starttls", "");
    let alert = |d: &Deployment| d.manyi_env(&["run", "nightly-alert"], &[("MANYI_TEST_SMTP_PASSWORD", PASSWORD)]);
    let err = alert(&d).code(1).stderr();
    assert!(err.contains("jd2@linjiang.gov.cn"), "{err}");
    let first: BTreeMap<String, usize> = STREET.iter().filter(|r| **r != "jd2@linjiang.gov.cn").map(|r| (r.to_string(), 1)).collect();
    assert_eq!(copies(&spool(&d)), first);

    // The server accepts jd2 now; "run the job again" serves only jd2.
    drop(server);
    let server = Server::start(&spool(&d), "starttls", &[]);
    set_smtp(&d, server.port, "starttls", "");
    let out = alert(&d).success();
    let want: BTreeMap<String, usize> = STREET.iter().map(|r| (r.to_string(), 1)).collect();
    assert_eq!(copies(&spool(&d)), want, "counted at the server; {}", out.stderr());
    // And the next alert run starts after the resumed window: nothing new.
    alert(&d).success();
    assert_eq!(copies(&spool(&d)), want);
}
