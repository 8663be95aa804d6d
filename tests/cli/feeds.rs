//! Real-world feed shapes (issue 14): a national-coded platform feed (1 =
//! 非常满意), an "ascending" office file, channel and category words instead
//! of codes, 系统默认评价, a mapped column the file lacks, and the inversion
//! guard that holds a batch whose level direction looks wrong until the
//! setting is fixed.

use crate::collect::Platform;
use crate::support::Deployment;
use polars::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const SECRET_ENV: &str = "HCP_FEED_SECRET";
const SECRET: &str = "feed-secret";

/// Adds `sources` (TOML `[[source]]` blocks) before `[mail]` of the small deployment's config.
fn with_sources(d: &Deployment, sources: &str) {
    let path = d.dir.join("manyi.toml");
    let text = std::fs::read_to_string(&path).expect("manyi.toml");
    let at = text.find("[mail]").expect("[mail] in manyi.toml");
    std::fs::write(&path, format!("{}{sources}\n{}", &text[..at], &text[at..])).expect("write manyi.toml");
}

/// Replaces `old` with `new` in manyi.toml (fixing a setting between runs).
fn edit_config(d: &Deployment, old: &str, new: &str) {
    let path = d.dir.join("manyi.toml");
    let text = std::fs::read_to_string(&path).expect("manyi.toml");
    assert!(text.contains(old), "{old} not in manyi.toml");
    std::fs::write(&path, text.replacen(old, new, 1)).expect("write manyi.toml");
}

/// A small deployment whose demo office-drop source is replaced by `source`.
fn file_deployment(source: &str) -> Deployment {
    let d = Deployment::small();
    let path = d.dir.join("manyi.toml");
    let text = std::fs::read_to_string(&path).expect("manyi.toml");
    let start = text.find("[[source]]\nname = \"office-drop\"").expect("office-drop source");
    let end = start + text[start..].find("\n# 问卷星").expect("next source");
    std::fs::write(&path, format!("{}{source}\n{}", &text[..start], &text[end..])).expect("write manyi.toml");
    d
}

/// Every stored rating version by id: (level, channel, default mark), read from the curated Parquet files.
fn curated(d: &Deployment) -> BTreeMap<String, (i32, i32, bool)> {
    let mut out = BTreeMap::new();
    let dir = d.dir.join("data/curated/ratings");
    if !dir.exists() {
        return out;
    }
    for f in crate::walk(&dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")) {
        let df = ParquetReader::new(std::fs::File::open(&f).expect("open")).finish().expect("parquet");
        let id = df.column("rating_id").expect("id").str().expect("str").clone();
        let level = df.column("level").expect("level").i32().expect("i32").clone();
        let channel = df.column("channel").expect("channel").i32().expect("i32").clone();
        let default = df.column("default_rating").expect("default_rating").bool().expect("bool").clone();
        for i in 0..df.height() {
            let key = id.get(i).expect("id").to_string();
            out.insert(key, (level.get(i).expect("level"), channel.get(i).expect("channel"), default.get(i).expect("default")));
        }
    }
    out
}

fn stored(d: &Deployment) -> i64 {
    d.count("SELECT COUNT(*) FROM record_keys WHERE kind = 'ratings'")
}

/// The data lines of every quarantine file of `source`.
pub(crate) fn quarantine_lines(d: &Deployment, source: &str) -> Vec<String> {
    let dir = d.dir.join("data/quarantine").join(source);
    if !dir.exists() {
        return Vec::new();
    }
    crate::walk(&dir)
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).expect("quarantine file");
            text.trim_start_matches('\u{feff}').lines().skip(1).map(String::from).collect::<Vec<_>>()
        })
        .collect()
}

fn platform_source(port: u16, extra: &str) -> String {
    format!(
        "[[source]]\nname = \"prov\"\nkind = \"haochaping_api\"\n{extra}\n[source.api]\nbase_url = \"http://127.0.0.1:{port}\"\n\
         path = \"/api/evaluation/list\"\napp_key = \"prov-app\"\nsecret_env = \"{SECRET_ENV}\"\npage_size = 50\n\
         start = \"2026-09-01 00:00:00\"\nbackoff_ms = 50\nmax_backoff_ms = 500\ntimeout_secs = 10\n\
         [source.api.category_map]\nYL = \"elderly_care\"\n"
    )
}

/// A provincial record in the national coding: `code` is 满意度代码 (1 非常满意 … 5 非常不满意);
/// 差评 carry reason codes and a comment, as in real data.
fn national(no: usize, code: u8, pf: u8) -> Value {
    let bad = code >= 4;
    json!({
        "projectNo": format!("SD-2026-{no:05}"),
        "assessNumber": 1,
        "areaCode": "369901001002",
        "deptCode": "11369901MB0000000X",
        "taskCode": "YL",
        "taskHandleItem": "高龄津贴申领",
        "pf": pf,
        "satisfaction": code,
        "evalDetail": if bad { "501,503" } else { "" },
        "writingEvaluation": if bad { "材料反复要求补交" } else { "" },
        "assessTime": format!("2026-10-{:02} {:02}:20:00", 1 + no % 20, 8 + no % 9),
        "anonymityFlag": 2,
        "reformStatus": if bad { 1 } else { 0 },
    })
}

fn run(d: &Deployment, args: &[&str]) -> crate::support::Ran {
    d.manyi_env(args, &[(SECRET_ENV, SECRET)])
}

#[test]
fn a_national_coded_platform_feed_reads_1_as_very_satisfied_and_marks_default_ratings() {
    let d = Deployment::small();
    // 30 records: codes 1,2,3 good or neutral, every fifth a 4 or 5 with reasons;
    // pf 7 is this province's 系统默认评价.
    let recs: Vec<Value> = (0..30).map(|i| national(i, [1, 2, 1, 3, 4 + (i % 2) as u8][i % 5], if i % 10 == 3 { 7 } else { 2 })).collect();
    let p = Platform::start(&d.dir.join("platform.json"), &json!({"app_key": "prov-app", "secret": SECRET, "records": recs}));
    with_sources(&d, &platform_source(p.port, "default_rating = { field = \"pf\", value = \"7\" }\n"));
    run(&d, &["collect", "prov"]).success();
    let rows = curated(&d);
    assert_eq!(rows.len(), 30);
    // National code 1 is 非常满意 (5 in manyi's order), 5 is 非常不满意 (1).
    assert_eq!(rows["SD-2026-00000-1"].0, 5);
    assert_eq!(rows["SD-2026-00001-1"].0, 4);
    assert_eq!(rows["SD-2026-00003-1"].0, 3);
    assert_eq!(rows["SD-2026-00004-1"].0, 2);
    assert_eq!(rows["SD-2026-00009-1"].0, 1);
    // pf = 7 marks a default rating: stored with the mark, channel unknown (0), not 短信.
    let defaults: Vec<&String> = rows.iter().filter(|(_, v)| v.2).map(|(k, _)| k).collect();
    assert_eq!(defaults, ["SD-2026-00003-1", "SD-2026-00013-1", "SD-2026-00023-1"]);
    assert_eq!(rows["SD-2026-00003-1"].1, 0);
    assert_eq!(rows["SD-2026-00000-1"], (5, 2, false));
    assert!(quarantine_lines(&d, "prov").is_empty());
}

#[test]
fn an_inverted_platform_feed_is_held_and_ingested_once_the_setting_is_fixed() {
    let d = Deployment::small();
    // The platform codes as star widgets (1 = 非常不满意) but the source does not
    // say so: read as the national coding, every 差评 with its reasons would be 好评.
    let recs: Vec<Value> = (0..40)
        .map(|i| {
            let star = if i % 2 == 0 { 1 } else { 5 };
            let mut r = national(i, 3, 2);
            r["satisfaction"] = json!(star);
            let bad = star == 1;
            r["evalDetail"] = json!(if bad { "501" } else { "" });
            r["writingEvaluation"] = json!(if bad { "排队两个小时" } else { "" });
            r["reformStatus"] = json!(if bad { 1 } else { 0 });
            r
        })
        .collect();
    let p = Platform::start(&d.dir.join("platform.json"), &json!({"app_key": "prov-app", "secret": SECRET, "records": recs}));
    with_sources(&d, &platform_source(p.port, ""));
    let ran = run(&d, &["collect", "prov"]).code(1);
    let all = format!("{}{}", ran.stdout(), ran.stderr());
    assert!(all.contains("prov") && all.contains("level_codes"), "names the source and the setting:\n{all}");
    assert!(all.contains("20 of the 20 ratings that carry a reason code or a comment"), "gives the evidence:\n{all}");
    assert_eq!(stored(&d), 0, "nothing of the held batch is committed");
    assert!(!crate::walk(&d.dir.join("data/landing/prov")).is_empty(), "the payload stays landed");
    let mark: Option<String> = {
        use rusqlite::OptionalExtension;
        d.db().query_row("SELECT value FROM watermarks WHERE source = 'prov'", [], |r| r.get(0)).optional().expect("watermark")
    };
    assert_eq!(mark, None, "the watermark does not move past a held batch");

    edit_config(&d, "kind = \"haochaping_api\"\n", "kind = \"haochaping_api\"\nlevel_codes = \"ascending\"\n");
    run(&d, &["collect", "prov"]).success();
    let rows = curated(&d);
    assert_eq!(rows.len(), 40);
    assert_eq!(rows.values().filter(|v| v.0 == 1).count(), 20, "the 20 with reasons are 非常不满意");
    assert_eq!(rows["SD-2026-00001-1"].0, 5);
}

/// A platform need not write every record's keys in one order: records
/// with their keys rotated, reversed, interleaved with keys nobody maps and
/// missing an optional one are read exactly as the same records in one
/// order. (The reader remembers the slot of the key at each position of the
/// last record; a record laid out otherwise must not inherit those slots.)
#[test]
fn records_with_their_keys_in_any_order_are_read_alike() {
    let recs: Vec<Value> = (0..24)
        .map(|i| {
            let mut r = national(i, [1, 2, 1, 3, 4 + (i % 2) as u8][i % 5], if i % 10 == 3 { 7 } else { 2 });
            if i % 3 == 1 {
                r.as_object_mut().expect("object").remove("evalDetail");
            }
            r
        })
        .collect();
    let source = |port| platform_source(port, "default_rating = { field = \"pf\", value = \"7\" }\n");
    let ordered = Deployment::small();
    let p = Platform::start(&ordered.dir.join("platform.json"), &json!({"app_key": "prov-app", "secret": SECRET, "records": recs}));
    with_sources(&ordered, &source(p.port));
    run(&ordered, &["collect", "prov"]).success();
    drop(p);

    // The same records, each written by hand with its own key order.
    let texts: Vec<String> = recs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut pairs: Vec<(String, Value)> = r.as_object().expect("object").iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            let turn = i % pairs.len();
            pairs.rotate_left(turn);
            if i % 2 == 1 {
                pairs.reverse();
            }
            pairs.insert(i % 5, (format!("unmapped{}", i % 4), json!("x")));
            let fields: Vec<String> = pairs.iter().map(|(k, v)| format!("{}:{v}", json!(k))).collect();
            format!("{{{}}}", fields.join(","))
        })
        .collect();
    let shuffled = Deployment::small();
    let control = shuffled.dir.join("platform.json");
    let p = Platform::start(&control, &json!({"app_key": "prov-app", "secret": SECRET, "records": []}));
    // The server reads its control file on every request.
    let text = format!("{{\"app_key\":\"prov-app\",\"secret\":{},\"records\":[{}]}}", json!(SECRET), texts.join(","));
    std::fs::write(&control, text).expect("control");
    with_sources(&shuffled, &source(p.port));
    run(&shuffled, &["collect", "prov"]).success();

    assert!(quarantine_lines(&shuffled, "prov").is_empty());
    let a = curated(&ordered);
    assert_eq!(a.len(), 24);
    assert_eq!(a["SD-2026-00004-1"].0, 2, "a 差评 is read as one");
    assert_eq!(a["SD-2026-00003-1"], (3, 0, true), "pf 7 marks a default rating");
    // Every column of every rating alike: comments, reasons, category, times.
    let frame = |d: &Deployment| {
        let files = crate::walk(&d.dir.join("data/curated/ratings"));
        let frames: Vec<DataFrame> = files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .map(|f| ParquetReader::new(std::fs::File::open(f).expect("open")).finish().expect("parquet"))
            .collect();
        let mut all = frames[0].clone();
        for f in &frames[1..] {
            all.vstack_mut(f).expect("vstack");
        }
        all.sort(["rating_id"], SortMultipleOptions::default()).expect("sort")
    };
    let (fa, fb) = (frame(&ordered), frame(&shuffled));
    assert_eq!(fa.height(), 24);
    assert!(fa.equals_missing(&fb), "ordered:\n{fa}\nshuffled:\n{fb}");
    assert_eq!(fa.column("reason_tags").expect("tags").str().expect("str").get(9), Some("501,503"), "a reason code arrives");
}

/// A key sent twice in one record counts with its last value, as in a JSON
/// object read whole, also where the record before had the same keys once
/// (the reader's memory of key positions must not keep the first).
#[test]
fn a_key_sent_twice_in_a_record_counts_with_its_last_value() {
    let d = Deployment::small();
    let control = d.dir.join("platform.json");
    let p = Platform::start(&control, &json!({"app_key": "prov-app", "secret": SECRET, "records": []}));
    let text = |no: usize, code: u8| {
        let r = national(no, code, 2);
        let fields: Vec<String> = r.as_object().expect("object").iter().map(|(k, v)| format!("{}:{v}", json!(k))).collect();
        fields.join(",")
    };
    // Record 0 plainly 非常满意 (code 1); record 1 says 1 first, then 5 (非常不满意) at the end.
    let recs = [format!("{{{}}}", text(0, 1)), format!("{{{},\"satisfaction\":5}}", text(1, 1))];
    let body = format!("{{\"app_key\":\"prov-app\",\"secret\":{},\"records\":[{}]}}", json!(SECRET), recs.join(","));
    std::fs::write(&control, body).expect("control");
    with_sources(&d, &platform_source(p.port, ""));
    run(&d, &["collect", "prov"]).success();
    let rows = curated(&d);
    assert_eq!(rows["SD-2026-00000-1"].0, 5);
    assert_eq!(rows["SD-2026-00001-1"].0, 1, "the last satisfaction (5, 非常不满意) counts");
}

const OFFICE_HEAD: &str = "办件编号,评价次数,评价时间,区划代码,服务类别,评价渠道,满意度,评价标签,文字评价,整改状态\n";

fn office_row(no: usize, channel: &str, category: &str, level: &str, comment: &str) -> String {
    let tag = if comment.is_empty() { "" } else { "办理慢" };
    format!("JD{no:04},1,2026-10-{:02} 10:{:02}:00,369901001001,{category},{channel},{level},{tag},{comment},\n", 1 + no % 25, no % 60)
}

#[test]
fn an_ascending_office_file_is_read_in_its_direction_and_numbers_without_the_setting_are_held() {
    let source = "[[source]]\nname = \"office-drop\"\nkind = \"rating_file\"\ninbox = \"inbox/ratings\"\n";
    let d = file_deployment(source);
    let mut csv = OFFICE_HEAD.to_string();
    for no in 0..12 {
        let level = ["5", "4", "5", "3", "1", "非常满意"][no % 6];
        csv.push_str(&office_row(no, "1", "养老服务", level, if level == "1" { "没人接待" } else { "" }));
    }
    d.file("inbox/ratings/街道_10月.csv", &csv);
    // Numbers and no level_codes: the file is held, named, with the setting to add.
    let ran = d.manyi(&["collect"]).code(1);
    let all = format!("{}{}", ran.stdout(), ran.stderr());
    assert!(all.contains("街道_10月.csv") && all.contains("level_codes = \"ascending\""), "{all}");
    assert!(all.contains("first on line"), "{all}");
    assert_eq!(stored(&d), 0);
    assert!(d.dir.join("inbox/ratings/街道_10月.csv").exists(), "the held file stays in the inbox");

    edit_config(&d, "inbox = \"inbox/ratings\"\n", "inbox = \"inbox/ratings\"\nlevel_codes = \"ascending\"\n");
    d.manyi(&["collect"]).success();
    let rows = curated(&d);
    assert_eq!(rows.len(), 12);
    assert_eq!(rows["JD0000-1"].0, 5);
    assert_eq!(rows["JD0004-1"].0, 1, "ascending: 1 = 非常不满意");
    assert_eq!(rows["JD0005-1"].0, 5, "words are words whatever the setting");
    assert!(d.dir.join("inbox/ratings/archive/街道_10月.csv").exists());
}

#[test]
fn channel_and_category_words_are_understood_and_unknown_ones_listed_with_a_snippet() {
    let source = "[[source]]\nname = \"office-drop\"\nkind = \"rating_file\"\ninbox = \"inbox/ratings\"\nlevel_codes = \"gbt39046\"\n\
                  [source.values.category]\n\"居家养老\" = \"elderly_care\"\n";
    let d = file_deployment(source);
    // Our own synonym column in categories.csv (the shipped file has one too;
    // this test decides which words are known): code, name, parent of the
    // shipped file, and synonyms only for health.
    let cats = std::fs::read_to_string(d.dir.join("reference/categories.csv")).expect("categories");
    let mut with_syn = String::new();
    for (k, line) in cats.lines().enumerate() {
        let first3: Vec<&str> = line.split(',').take(3).collect();
        let extra = if k == 0 {
            "synonyms"
        } else if line.starts_with("health,") {
            "卫生健康|医疗"
        } else {
            ""
        };
        with_syn.push_str(&format!("{},{extra}\n", first3.join(",")));
    }
    d.file("reference/categories.csv", &with_syn);
    let channels = ["政务大厅平板", "微信", "12345热线", "自助终端", "扫码", "PC", "窗口"];
    let categories = ["养老服务", "卫生健康", "居家养老", "health", "老干部服务"];
    let mut csv = OFFICE_HEAD.to_string();
    for no in 0..35 {
        csv.push_str(&office_row(no, channels[no % 7], categories[no % 5], ["满意", "1", "一般"][no % 3], ""));
    }
    d.file("inbox/ratings/words.csv", &csv);
    // 11 of 35 rows quarantined is more than max_quarantine_share (5%): the
    // good rows are committed, the values listed, and the run exits 1.
    let ran = d.manyi(&["collect"]).code(1);
    assert!(ran.stderr().contains("words.csv: 11 of 35 rows quarantined (31.4%"), "{}", ran.stderr());
    let out = ran.stdout();
    // 窗口 (5 rows) and 老干部服务 (7 rows) are unknown; row 34 has both and counts under category, read first.
    let bad = (0..35).filter(|n| n % 7 == 6 || n % 5 == 4).count();
    assert_eq!(stored(&d), 35 - bad as i64);
    let rows = curated(&d);
    assert_eq!(rows["JD0000-1"].1, 4, "政务大厅平板 → 4");
    assert_eq!(rows["JD0001-1"].1, 2, "微信 → 2");
    assert_eq!(rows["JD0002-1"].1, 6, "12345热线 → 6");
    assert_eq!(rows["JD0003-1"].1, 5, "自助终端 → 5");
    assert_eq!(rows["JD0001-1"].0, 5, "gbt39046: 1 = 非常满意");
    let q = quarantine_lines(&d, "office-drop");
    assert_eq!(q.len(), bad, "{q:?}");
    assert!(q.iter().any(|l| l.contains("JD0006") && l.contains("窗口")), "{q:?}");
    // The table lists the unknown values with counts and a snippet to paste.
    assert!(out.contains("unrecognised values"), "{out}");
    assert!(out.contains("“老干部服务” ×7"), "{out}");
    assert!(out.contains("[source.values.channel]") && out.contains("\"窗口\" = \"\""), "{out}");
    assert!(out.contains("below the [source.values.category] table") && out.contains("\"老干部服务\" = \"\""), "{out}");
}

#[test]
fn default_ratings_by_a_flag_column_are_stored_with_the_mark() {
    let source = "[[source]]\nname = \"office-drop\"\nkind = \"rating_file\"\ninbox = \"inbox/ratings\"\nlevel_codes = \"ascending\"\n\
                  default_rating = { field = \"是否默认评价\", value = \"是\" }\n";
    let d = file_deployment(source);
    let mut csv = OFFICE_HEAD.trim_end().to_string() + ",是否默认评价\n";
    for no in 0..10 {
        let flag = if no % 4 == 0 { "是" } else { "否" };
        csv.push_str(&format!("{},{flag}\n", office_row(no, "2", "养老服务", "基本满意", "").trim_end()));
    }
    d.file("inbox/ratings/default.csv", &csv);
    d.manyi(&["collect"]).success();
    let rows = curated(&d);
    assert_eq!(rows.len(), 10);
    let marked: Vec<&str> = rows.iter().filter(|(_, v)| v.2).map(|(k, _)| k.as_str()).collect();
    assert_eq!(marked, ["JD0000-1", "JD0004-1", "JD0008-1"]);
    assert_eq!(rows["JD0000-1"], (3, 2, true), "a flag column leaves the channel as sent");
    // A declared mark column the file lacks stops the file: default ratings would pass as real.
    d.file("inbox/ratings/no-flag.csv", &format!("{OFFICE_HEAD}{}", office_row(50, "2", "养老服务", "满意", "")));
    let err = d.manyi(&["collect"]).code(1).stderr();
    assert!(err.contains("no-flag.csv"), "{err}");
    let why = std::fs::read_to_string(d.dir.join("inbox/ratings/rejected/no-flag.csv.reason.txt")).expect("reason");
    assert!(why.contains("是否默认评价") && why.contains("default_rating"), "{why}");
}

#[test]
fn a_mapped_optional_column_the_file_lacks_is_reported_not_silently_empty() {
    let source = "[[source]]\nname = \"office-drop\"\nkind = \"rating_file\"\ninbox = \"inbox/ratings\"\nlevel_codes = \"ascending\"\n\
                  [source.columns]\nservice_item = \"办理事项\"\n";
    let d = file_deployment(source);
    let mut csv = OFFICE_HEAD.to_string();
    for no in 0..5 {
        csv.push_str(&office_row(no, "1", "养老服务", "4", ""));
    }
    d.file("inbox/ratings/short.csv", &csv);
    let out = d.manyi(&["collect"]).success().stdout();
    assert!(out.contains("short.csv: 服务事项: column 办理事项 not found, left empty"), "{out}");
    assert_eq!(stored(&d), 5);
    // A required field mapped to a missing column stops the file.
    edit_config(&d, "service_item = \"办理事项\"", "service_item = \"办理事项\"\nlevel = \"评价结果\"");
    d.file("inbox/ratings/short2.csv", &csv.replace("JD", "JE"));
    let err = d.manyi(&["collect"]).code(1).stderr();
    assert!(err.contains("short2.csv"), "{err}");
    let why = std::fs::read_to_string(d.dir.join("inbox/ratings/rejected/short2.csv.reason.txt")).expect("reason");
    assert!(why.contains("level") && why.contains("评价结果"), "{why}");
}

#[test]
fn an_inverted_office_file_is_held_in_the_inbox_and_read_after_the_fix() {
    let source = "[[source]]\nname = \"office-drop\"\nkind = \"rating_file\"\ninbox = \"inbox/ratings\"\nlevel_codes = \"gbt39046\"\n";
    let d = file_deployment(source);
    let mut csv = OFFICE_HEAD.to_string();
    // Star coding (5 = 非常满意) declared as national: the 24 complaints read as 好评.
    for no in 0..60 {
        let (level, comment) = if no % 5 < 2 { ("1", "窗口人员态度差") } else { ("5", "") };
        csv.push_str(&office_row(no, "4", "养老服务", level, comment));
    }
    d.file("inbox/ratings/inverted.csv", &csv);
    let ran = d.manyi(&["collect"]).code(1);
    let all = format!("{}{}", ran.stdout(), ran.stderr());
    assert!(all.contains("inverted.csv") && all.contains("24 of the 24") && all.contains("level_codes"), "{all}");
    assert_eq!(stored(&d), 0);
    assert!(d.dir.join("inbox/ratings/inverted.csv").exists(), "the file waits in the inbox");
    edit_config(&d, "level_codes = \"gbt39046\"", "level_codes = \"ascending\"");
    d.manyi(&["collect"]).success();
    let rows = curated(&d);
    assert_eq!(rows.len(), 60);
    assert_eq!(rows.values().filter(|v| v.0 == 1).count(), 24);
}

/// Every stored rating's 评价时间 by id, as the local time the store keeps.
fn rated_at(d: &Deployment) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for f in crate::walk(&d.dir.join("data/curated/ratings")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")) {
        let df = ParquetReader::new(std::fs::File::open(&f).expect("open")).finish().expect("parquet");
        let id = df.column("rating_id").expect("id").str().expect("str").clone();
        let ms = df.column("rated_at").expect("rated_at").cast(&DataType::Int64).expect("as i64");
        let ms = ms.i64().expect("i64");
        for i in 0..df.height() {
            let t = chrono::DateTime::from_timestamp_millis(ms.get(i).expect("time")).expect("in range").naive_utc();
            out.insert(id.get(i).expect("id").to_string(), t.format("%Y-%m-%d %H:%M:%S%.3f").to_string());
        }
    }
    out
}

/// 评价时间 as platforms built on Java send it and as Chinese spreadsheets
/// format it: Unix milliseconds and seconds as JSON numbers (Jackson's
/// default for a date), `Timestamp`'s `.0`, ISO 8601 in UTC and with the
/// offset, 年月日时分秒. Each is the same local time, 2026-10-03 14:22:05 in
/// Asia/Shanghai; before, every one of them was quarantined as "无法识别".
/// The one in UTC just before midnight is the next day's, and month's, rating.
#[test]
fn times_written_as_java_platforms_and_chinese_spreadsheets_write_them_are_read_in_local_time() {
    let d = Deployment::small();
    let forms: [Value; 8] = [
        json!("2026-10-03 14:22:05"),
        json!(1_791_008_525_123_i64),
        json!(1_791_008_525_i64),
        json!("2026-10-03 14:22:05.0"),
        json!("2026-10-03T06:22:05.123Z"),
        json!("2026-10-03T14:22:05+08:00"),
        json!("2026年10月03日 14时22分05秒"),
        json!(1_790_785_800_i64),
    ];
    let recs: Vec<Value> = forms
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut r = national(i, 1, 2);
            r["assessTime"] = t.clone();
            r
        })
        .collect();
    let p = Platform::start(&d.dir.join("platform.json"), &json!({"app_key": "prov-app", "secret": SECRET, "records": recs}));
    with_sources(&d, &platform_source(p.port, ""));
    run(&d, &["collect", "prov"]).success();
    assert!(quarantine_lines(&d, "prov").is_empty(), "{:?}", quarantine_lines(&d, "prov"));
    let times = rated_at(&d);
    assert_eq!(times.len(), 8);
    for i in 0..7 {
        // Fractions of a second are dropped: the standard's time is to the second.
        assert_eq!(times[&format!("SD-2026-{i:05}-1")], "2026-10-03 14:22:05.000", "form {}", forms[i]);
    }
    // 2026-09-30 16:30:00 UTC is 2026-10-01 00:30:00 in Asia/Shanghai.
    assert_eq!(times["SD-2026-00007-1"], "2026-10-01 00:30:00.000");
    let in_october = crate::walk(&d.dir.join("data/curated/ratings/month=2026-10"));
    assert!(!in_october.is_empty() && crate::walk(&d.dir.join("data/curated/ratings")).len() == in_october.len(), "all in month=2026-10");
}

/// Levels as app and kiosk exports print them: stars, which count up in
/// every source, and words with their code beside them, whichever way the
/// code runs. Neither needs `level_codes`, and neither holds the file; a
/// full-width digit is a number like any other and does.
#[test]
fn stars_and_words_with_codes_are_read_without_a_direction() {
    let source = "[[source]]\nname = \"office-drop\"\nkind = \"rating_file\"\ninbox = \"inbox/ratings\"\n";
    let d = file_deployment(source);
    let levels = ["★★★★★", "★★☆☆☆", "4星", "四星级", "5-非常满意", "非常不满意(5)", "1.非常满意", "不满意（2）"];
    let mut csv = OFFICE_HEAD.to_string();
    for (no, level) in levels.iter().enumerate() {
        csv.push_str(&office_row(no, "2", "养老服务", level, ""));
    }
    d.file("inbox/ratings/kiosk.csv", &csv);
    d.manyi(&["collect"]).success();
    let rows = curated(&d);
    let got: Vec<i32> = (0..levels.len()).map(|no| rows[&format!("JD{no:04}-1")].0).collect();
    assert_eq!(got, [5, 2, 4, 4, 5, 1, 5, 2]);
    d.file("inbox/ratings/fullwidth.csv", &format!("{OFFICE_HEAD}{}", office_row(20, "2", "养老服务", "５", "")));
    let ran = d.manyi(&["collect"]).code(1);
    let all = format!("{}{}", ran.stdout(), ran.stderr());
    assert!(all.contains("fullwidth.csv") && all.contains("level_codes"), "{all}");
}
