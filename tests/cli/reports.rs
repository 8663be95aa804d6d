//! Reports rendered from fixed fixture data (the fixture site under
//! `tests/fixtures/site` and ratings built here), compared with snapshots
//! in `tests/snapshots/` (insta), and checked for what email clients and
//! privacy demand. After a deliberate change a failing snapshot leaves a
//! `.snap.new` beside it: `cargo insta review` shows the diff and accepts or
//! rejects it (without cargo-insta: `INSTA_UPDATE=always`, then `git diff`).

use manyi::aggregate::{self, RefFrames, Rules};
use manyi::config::{Config, OfficeRole, Scope};
use manyi::model::{FollowUp, Level, Rating};
use manyi::period::Period;
use manyi::render::{self, Footer, Rendered, ReportKind, Templates};
use polars::prelude::IntoLazy;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Ratings of the fixture: every community, three categories, October and
/// the eleven months before, with 差评 that carry what residents write.
fn fixture_ratings() -> Vec<Rating> {
    let communities = ["369901001001", "369901001002", "369901002001", "369901002002", "369902001001", "369902001002"];
    let categories = ["government_affairs", "property", "elderly_care"];
    let comments = [
        "<script>alert(1)</script>报修没人来",
        "请回电13812345678，身份证110101199001011234",
        "我叫张三丰，排队两小时",
        "“物业”不作为 & 乱收费",
    ];
    let statuses = [FollowUp::Rectified, FollowUp::InProgress, FollowUp::Pending, FollowUp::Invalid];
    let mut out = Vec::new();
    let mut k = 0usize;
    for month in 1..=12u32 {
        let (year, m) = if month <= 2 { (2025, month + 10) } else { (2026, month - 2) };
        for (ci, c) in communities.iter().enumerate() {
            for (ki, cat) in categories.iter().enumerate() {
                // Community 369901002002 has only 2 ratings a cell: shown, flagged, not ranked.
                let n = if ci == 3 { 2 } else { 4 + (ci + ki + month as usize) % 5 };
                for i in 0..n {
                    k += 1;
                    let level = match (ci, i % 7) {
                        (5, 0..=2) => 1 + (i % 2) as u8,
                        (_, 0) if ki == 1 => 2,
                        (_, 1) => 4,
                        (_, 2) => 3,
                        _ => 5,
                    };
                    let day = 1 + (i * 3 + ci) as u32 % 28;
                    out.push(Rating {
                        rating_id: format!("FX{k:05}-1").into(),
                        source: "office-drop".into(),
                        rated_at: chrono::NaiveDate::from_ymd_opt(year, m, day)
                            .and_then(|d| d.and_hms_opt(9 + (i % 8) as u32, 15, 0))
                            .expect("time"),
                        org_code: (*c).into(),
                        category: (*cat).into(),
                        service_item: "物业报修".into(),
                        department: "便民服务中心".into(),
                        channel: 1 + (i % 7) as u8,
                        level: Level::from_code(level).expect("level"),
                        reason_tags: if level <= 2 { "501".into() } else { Box::default() },
                        comment: if level <= 2 { comments[k % comments.len()].into() } else { Box::default() },
                        anonymous: false,
                        rater_hash: None,
                        follow_up: (level <= 2).then(|| statuses[k % statuses.len()]),
                        rectified_at: None,
                        revisit: Box::default(),
                        default_rating: false,
                    });
                }
            }
        }
    }
    out
}

/// Renders every report of the fixture with a fixed as-of.
fn render_all() -> Vec<(String, Rendered)> {
    let cfg = Config::load(&root().join("tests/fixtures/site/manyi.toml")).expect("fixture site loads");
    let templates = Templates::load(&cfg.templates_dir).expect("templates");
    let lf = manyi::store::ratings_frame(&fixture_ratings(), 1).expect("frame").lazy();
    let period: Period = "2026-10".parse().expect("period");
    let mut buckets = vec![(period, lf.clone()), (period.previous(), lf.clone())];
    buckets.extend(period.trailing_months(12).into_iter().map(|m| (m, lf.clone())));
    let refs = RefFrames::new(&cfg.orgs, &cfg.categories).expect("refs");
    let grain = aggregate::grain(buckets, &refs).expect("grain");
    let as_of_date = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).expect("date");
    let bad = aggregate::bad_ratings(lf, Some(period), &cfg.calendar, 15, as_of_date).expect("bad");
    let as_of = chrono::DateTime::parse_from_rfc3339("2026-11-20T08:00:00+08:00").expect("as-of").to_utc();
    let footer = Footer {
        sources: vec![],
        quarantined: 3,
        as_of: "2026-11-20 08:00:00".into(),
        report_id: render::report_id("monthly-report", "2026-10", as_of),
        deadline_days: 15,
        delta_version: None,
    };
    let rules = Rules { min_n: 5, ..Rules::default() };
    let mut out = Vec::new();
    for office in &cfg.offices {
        let (kind, scope, audience) = match office.role {
            OfficeRole::Leadership => (ReportKind::Leadership, Scope::default(), "临江市".to_string()),
            OfficeRole::Office => (ReportKind::Office, office.scope.clone(), office.name.clone()),
        };
        let tables = aggregate::rating_tables(&grain, &cfg.orgs, &cfg.categories, &scope, period, 12, rules);
        let bad_in: Vec<&aggregate::BadRating> =
            bad.iter().filter(|b| aggregate::in_scope(&cfg.orgs, &scope, &b.org_code, &b.category)).collect();
        let fu = aggregate::follow_up_summary(bad_in.iter().copied(), as_of_date);
        let concentration = aggregate::concentration(bad_in.iter().copied());
        let shown: Vec<&aggregate::BadRating> = if kind == ReportKind::Office { bad_in } else { Vec::new() };
        let overdue_by_office = if kind == ReportKind::Leadership {
            vec![render::OfficeOverdue { name: "滨江街道办事处".into(), due: 9, overdue: 3, rectified_rate: 0.5 }]
        } else {
            Vec::new()
        };
        let view = render::build_view(
            &cfg,
            render::ViewInput {
                kind,
                audience: &audience,
                tables,
                bad: &shown,
                follow_up: fu,
                concentration,
                overdue_by_office,
                survey: None,
                footer: footer.clone(),
                period,
                scheme: cfg.surveys.get("haochaping"),
            },
        );
        out.push((office.id.clone(), templates.render("haochaping", &view).expect("render")));
    }
    out
}

/// Compares `actual` with the reviewed snapshot `tests/snapshots/<name>.snap`.
/// A difference fails the test and shows the diff; nothing is accepted
/// without a review.
fn check_snapshot(name: &str, actual: &str) {
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!(name, actual);
    });
}

#[test]
fn each_report_kind_matches_its_snapshot() {
    let reports = render_all();
    assert_eq!(reports.len(), 3);
    for (id, r) in &reports {
        check_snapshot(&format!("{id}.html"), &r.html);
        check_snapshot(&format!("{id}.txt"), &r.text);
    }
    // Rendering twice gives the same bytes, charts and workbook included.
    let again = render_all();
    for ((_, a), (_, b)) in reports.iter().zip(&again) {
        assert_eq!(a, b);
    }
}

#[test]
fn the_alert_kind_matches_its_snapshot() {
    let cfg = Config::load(&root().join("tests/fixtures/site/manyi.toml")).expect("fixture site loads");
    let templates = Templates::load(&cfg.templates_dir).expect("templates");
    let lf = manyi::store::ratings_frame(&fixture_ratings(), 1).expect("frame").lazy();
    let as_of_date = chrono::NaiveDate::from_ymd_opt(2026, 11, 2).expect("date");
    let bad = aggregate::bad_ratings(lf, Some("2026-10".parse().expect("period")), &cfg.calendar, 15, as_of_date).expect("bad");
    let office = cfg.offices.iter().find(|o| o.id == "street-369901001").expect("office");
    let items: Vec<&aggregate::BadRating> = bad
        .iter()
        .filter(|b| {
            aggregate::in_scope(&cfg.orgs, &office.scope, &b.org_code, &b.category)
                && b.rated_at.date() >= chrono::NaiveDate::from_ymd_opt(2026, 10, 20).expect("date")
        })
        .collect();
    assert!(!items.is_empty());
    let since = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).and_then(|d| d.and_hms_opt(7, 30, 0)).expect("since");
    let until = chrono::NaiveDate::from_ymd_opt(2026, 11, 2).and_then(|d| d.and_hms_opt(7, 30, 0)).expect("until");
    let view = render::build_alert(&cfg, &office.name, &items, since, until, "MY-ALERT-fixture".into());
    let r = templates.render_alert("haochaping", &view).expect("alert");
    assert_eq!(r.subject, format!("【差评提醒】2026年11月2日 · 滨江街道办事处 · 新增差评{}条", items.len()));
    assert!(!r.html.contains("<script>alert") && !r.html.to_lowercase().contains("<script"));
    check_snapshot("alert-street-369901001.html", &r.html);
    check_snapshot("alert-street-369901001.txt", &r.text);
}

fn lower(html: &str) -> String {
    html.to_lowercase()
}

#[test]
fn reports_are_safe_for_mail_clients_and_keep_personal_data_out() {
    for (id, r) in render_all() {
        let h = lower(&r.html);
        for banned in ["<script", "<svg", "data:", "<link", "@import", "javascript:", "<style"] {
            assert!(!h.contains(banned), "{id}: HTML contains {banned}");
        }
        assert!(!h.contains("src=\"http") && !h.contains("href=\"http"), "{id}: no external resources");
        // Every cid: referenced is attached, and every image attached is referenced.
        let referenced: Vec<&str> = r.html.split("cid:").skip(1).filter_map(|s| s.split('"').next()).collect();
        assert!(!referenced.is_empty(), "{id}: the charts are referenced");
        for cid in &referenced {
            assert!(r.images.iter().any(|i| i.cid == *cid), "{id}: cid:{cid} is not attached");
        }
        for i in &r.images {
            assert!(referenced.contains(&i.cid.as_str()), "{id}: {} attached but not shown", i.cid);
            assert!(i.png.starts_with(b"\x89PNG"), "{id}: {} is a PNG", i.cid);
        }
        assert!(r.html.len() < 100 * 1024, "{id}: HTML body is {} bytes", r.html.len());
        // Resident text is escaped and masked in both parts.
        // In the HTML a resident's markup is text; the plain-text part shows it as typed.
        assert!(!r.html.contains("<script>alert"), "{id}: a resident's <script> must not pass through");
        for part in [&r.html, &r.text] {
            assert!(
                !part.contains("13812345678") && !part.contains("110101199001011234") && !part.contains("张三丰"),
                "{id}: personal data must be masked"
            );
        }
        let names: Vec<&str> = r.attachments.iter().map(|a| a.filename.as_str()).collect();
        assert_eq!(names, ["满意度明细_2026-10.xlsx", "社区明细_2026-10.csv"], "{id}");
        assert!(r.attachments[0].bytes.starts_with(b"PK"), "{id}: the XLSX is a ZIP");
        assert!(r.attachments[1].bytes.starts_with("\u{feff}".as_bytes()), "{id}: the CSV has a BOM");
    }
}

#[test]
fn an_office_sees_its_差评_masked_and_escaped_overdue_first() {
    let reports = render_all();
    let (_, street) = reports.iter().find(|(id, _)| id == "street-369901001").expect("street report");
    assert!(
        street.html.contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;报修没人来")
            || street.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;报修没人来"),
        "escaped, shown as text"
    );
    assert!(street.text.contains("138****5678"), "phone masked in the text part");
    assert!(street.html.contains("110101********1234") || street.text.contains("110101********1234"));
    assert_eq!(street.subject, "【满意度月报】2026年10月 · 滨江街道办事处");
    // Overdue items come first in the list.
    let list = street.text.split("二、差评清单").nth(1).expect("list").split("三、").next().expect("list end");
    let flags: Vec<bool> = list.lines().filter(|l| l.starts_with("- ")).map(|l| l.contains("逾期")).collect();
    assert!(flags.iter().any(|f| *f), "the fixture has overdue items");
    assert!(flags.windows(2).all(|w| w[0] >= w[1]), "overdue first: {flags:?}");
}

const RATINGS_HEAD: &str = "办件编号,评价次数,评价时间,区划代码,服务类别,评价渠道,满意度,文字评价,整改状态\n";

fn alert_mails(d: &crate::support::Deployment) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(d.dir.join("data/outbox"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("nightly-alert_")))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn mail_text(p: &std::path::Path) -> (String, String) {
    let raw = std::fs::read(p).expect("eml");
    let msg = mail_parser::MessageParser::default().parse(&raw).expect("parse");
    (msg.subject().unwrap_or_default().to_string(), msg.body_text(0).expect("text").into_owned())
}

#[test]
fn the_nightly_alert_tells_each_office_only_what_is_new() {
    let d = crate::support::Deployment::small();
    d.file(
        "inbox/ratings/a.csv",
        &format!("{RATINGS_HEAD}A1,1,2026-10-30 09:00:00,369901001001,物业管理,1,1,电梯坏了一周没人修,待核实\nA2,1,2026-10-30 10:00:00,369901001002,物业管理,1,5,,\n"),
    );
    d.manyi(&["collect"]).success();
    d.manyi(&["run", "nightly-alert"]).success();
    let first = alert_mails(&d);
    assert_eq!(first.len(), 1, "one office has news: {first:?}");
    let (subject, text) = mail_text(&first[0]);
    assert!(subject.contains("滨江街道办事处") && subject.contains("新增差评1条"), "{subject}");
    assert!(text.contains("电梯坏了一周没人修") && text.contains("期限 2026-11-20"), "{text}");

    // Next night: A1's follow-up changed (not new again) and one new 差评 arrived.
    d.file(
        "inbox/ratings/b.csv",
        &format!("{RATINGS_HEAD}A1,1,2026-10-30 09:00:00,369901001001,物业管理,1,1,电梯坏了一周没人修,整改中\nA3,1,2026-10-31 11:00:00,369901001002,环境卫生,2,2,垃圾三天没清运,\n"),
    );
    d.manyi(&["collect"]).success();
    d.manyi(&["run", "nightly-alert"]).success();
    let second: Vec<PathBuf> = alert_mails(&d).into_iter().filter(|p| !first.contains(p)).collect();
    assert_eq!(second.len(), 1);
    let (subject, text) = mail_text(&second[0]);
    assert!(subject.contains("新增差评1条"), "{subject}");
    assert!(text.contains("垃圾三天没清运") && !text.contains("电梯坏了一周没人修"), "only what is new:\n{text}");

    // A night with nothing new sends nothing.
    d.manyi(&["run", "nightly-alert"]).success();
    assert_eq!(alert_mails(&d).len(), 2);
}

#[test]
fn a_quarterly_report_says_so_and_compares_with_the_previous_quarter() {
    let d = crate::support::Deployment::small();
    d.file(
        "inbox/ratings/q.csv",
        &format!(
            "{RATINGS_HEAD}Q1,1,2026-07-03 09:00:00,369901001001,政务办事,1,5,,\nQ2,1,2026-08-04 09:00:00,369901001002,政务办事,1,4,,\n\
             Q3,1,2026-09-30 17:00:00,369901001003,养老服务,2,2,等太久,有效\nQ4,1,2026-05-06 10:00:00,369901001001,政务办事,1,3,,\n"
        ),
    );
    d.manyi(&["collect"]).success();
    d.manyi(&["run", "quarterly-report", "--period", "2026-Q3", "--dry-run"]).success();
    let (subject, text) = mail_text(&d.dir.join("data/outbox/dry-run_quarterly-report_2026-Q3_leadership.eml"));
    assert_eq!(subject, "【满意度季报】2026年第三季度 · 临江市");
    assert!(text.contains("临江市群众满意度季报 · 2026年第三季度"), "{text}");
    // Q3 holds three ratings (one 差评); Q2 one.
    assert!(text.contains("评价数 n=3；满意率 66.7%"), "{text}");
    assert!(text.contains("与2026年第二季度相比") && text.contains("上期 100.0%，n=1"), "{text}");
    assert_eq!(d.count("SELECT COUNT(*) FROM deliveries"), 0, "a dry run records nothing as sent");
}
