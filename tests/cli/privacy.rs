//! Personal data at rest and the rater key: curated Parquet holds no phone
//! number in clear, the rater hash is keyed with a secret that production
//! must supply, and a new key does not turn re-sent ratings into versions.

use crate::support::{BIN, Deployment, Ran};
use polars::prelude::*;
use std::process::Command;

const KEY_ENV: &str = "MANYI_RATER_KEY";

/// Runs manyi with the rater key variable set to `key`, or unset: the
/// developer's own environment must not decide the outcome.
fn manyi_key(d: &Deployment, args: &[&str], key: Option<&str>) -> Ran {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(&d.dir).env("MANYI_CONFIG", d.dir.join("manyi.toml")).env_remove("MANYI_LOG").env_remove(KEY_ENV);
    if let Some(k) = key {
        c.env(KEY_ENV, k);
    }
    Ran { out: c.output().expect("run manyi"), what: format!("manyi {} ({KEY_ENV} {})", args.join(" "), key.unwrap_or("unset")) }
}

/// Turns the small deployment into a production one: no demo key.
fn production(d: &Deployment) {
    let path = d.dir.join("manyi.toml");
    let text = std::fs::read_to_string(&path).expect("manyi.toml");
    let text = text.replace("demo = true", "demo = false");
    let text = if text.contains("[privacy]") { text } else { format!("[privacy]\nrater_key_env = \"{KEY_ENV}\"\n\n{text}") };
    std::fs::write(&path, text).expect("write manyi.toml");
}

/// Every string cell of `columns` in the curated Parquet files of `kind`.
fn curated_text(d: &Deployment, kind: &str, columns: &[&str]) -> Vec<String> {
    let db = d.db();
    let mut stmt = db.prepare("SELECT f.path FROM batch_files f JOIN batches b USING (batch_seq) WHERE b.kind = ?1").expect("prepare");
    let paths: Vec<String> = stmt.query_map([kind], |r| r.get(0)).expect("query").map(|p| p.expect("path")).collect();
    assert!(!paths.is_empty(), "no curated {kind} files");
    let mut out = Vec::new();
    for p in paths {
        let df = ParquetReader::new(std::fs::File::open(d.dir.join("data").join(&p)).expect("parquet")).finish().expect("read parquet");
        for c in columns {
            let col = df.column(c).expect(c).str().expect(c).clone();
            out.extend((0..col.len()).filter_map(|i| col.get(i)).map(str::to_string));
        }
    }
    out
}

/// Any Chinese mobile number in `text`, ignoring spaces, dashes and
/// full-width digits between its digits.
fn mobile_in(text: &str) -> Option<String> {
    let digits: String = text
        .chars()
        .filter_map(|c| match c {
            '0'..='9' => Some(c),
            '０'..='９' => char::from_u32(c as u32 - '０' as u32 + '0' as u32),
            ' ' | '-' | '\u{3000}' => None,
            _ => Some('|'),
        })
        .collect();
    let re = regex::Regex::new(r"1[3-9]\d{9}").expect("regex");
    re.find(&digits).map(|m| m.as_str().to_string())
}

const HEAD: &str = "办件编号,评价次数,评价时间,区划代码,服务类别,评价渠道,满意度,文字评价,整改状态,回访结果,联系电话\n";

#[test]
fn curated_parquet_holds_no_mobile_number_in_clear() {
    let d = Deployment::small();
    let csv = format!(
        "{HEAD}\
         P001,1,2026-10-03 09:00:00,369901001001,物业管理,1,1,报修没人来，请回电13812341234,待核实,已回访 联系13912345678,13812341234\n\
         P002,1,2026-10-03 09:10:00,369901001002,物业管理,1,2,\"两个号码13812341234,13912345678都可以\",整改中,,\n\
         P003,1,2026-10-03 09:20:00,369901001003,养老服务,2,1,电话 +86 138 1234 1234 我是李四,待核实,,\n\
         P004,1,2026-10-03 09:30:00,369901001001,养老服务,2,2,打１３８１２３４１２３４或138-1234-1234,待核实,,\n\
         P005,1,2026-10-03 09:40:00,369901001002,政务办事,1,5,很满意,,,\n"
    );
    d.file("inbox/ratings/drop.csv", &csv);
    let survey = "序号,提交答卷时间,所用时间,来源,来源详情,来自IP,1、您居住的社区,2、您对社区工作的总体评价,3、您对社区办事效率及便利程度的评价,\
                  4、您对社区环境卫生的评价,5、您对社区养老服务的评价（家中无老人可跳过）,6、您对社区文体活动的评价,7、您认为社区最需要改进的方面,\
                  8、您对社区工作的意见和建议\n\
                  1,2026/10/3 9:12:05,125秒,微信,N/A,36.1.2.3,春晖社区,满意,满意,满意,(跳过),满意,其他〖加装电梯 联系13812341234〗,电梯坏了请打15900001111\n";
    d.file("inbox/wjx/export.csv", survey);
    d.manyi(&["collect"]).success();
    assert_eq!(d.count("SELECT COUNT(*) FROM record_keys WHERE kind = 'ratings'"), 5);
    assert_eq!(d.count("SELECT COUNT(*) FROM record_keys WHERE kind = 'responses'"), 1);

    let ratings = curated_text(&d, "ratings", &["comment", "revisit"]);
    for t in &ratings {
        assert_eq!(mobile_in(t), None, "a mobile number in clear in curated ratings: {t:?}");
    }
    assert!(ratings.iter().any(|t| t.contains("138****1234")), "comments are kept, masked: {ratings:?}");
    assert!(ratings.iter().any(|t| t.contains("我是李*")), "a self-introduced name is masked: {ratings:?}");
    let answers = curated_text(&d, "responses", &["text"]);
    for t in &answers {
        assert_eq!(mobile_in(t), None, "a mobile number in clear in curated responses: {t:?}");
    }
    assert!(answers.iter().any(|t| t.contains("电梯坏了")), "the open answer is kept: {answers:?}");

    // Landing keeps the payload exactly as received (raw by design).
    let landed = std::fs::read_dir(d.dir.join("data/landing/office-drop")).expect("landing").flatten().next().expect("a day folder");
    let file = std::fs::read_dir(landed.path()).expect("day").flatten().next().expect("landed file");
    assert_eq!(std::fs::read_to_string(file.path()).expect("landed"), csv);
}

#[test]
fn production_refuses_to_run_without_the_rater_key() {
    let d = Deployment::small();
    production(&d);
    let err = manyi_key(&d, &["check"], None).code(2).stderr();
    assert!(err.contains(KEY_ENV) && err.contains("privacy"), "the problem names the variable and the setting:\n{err}");
    d.file("inbox/ratings/a.csv", &format!("{HEAD}K001,1,2026-10-03 09:00:00,369901001001,物业管理,1,5,,,,13812341234\n"));
    manyi_key(&d, &["collect"], None).code(2);
    assert!(d.dir.join("inbox/ratings/a.csv").exists(), "nothing was collected without the key");
    manyi_key(&d, &["check"], Some("0123456789abcdef0123456789abcdef")).success();
    // A key too short to resist a search of the phone space is refused too.
    let err = manyi_key(&d, &["check"], Some("manyi")).code(2).stderr();
    assert!(err.contains(KEY_ENV), "{err}");
}

#[test]
fn the_demo_key_is_marked_as_such() {
    let d = Deployment::small();
    let ran = manyi_key(&d, &["check"], None).success();
    let all = format!("{}{}", ran.stdout(), ran.stderr());
    assert!(all.contains("demo rater key") && all.contains(KEY_ENV), "check says the demo key is in use and how to replace it:\n{all}");
}

#[test]
fn the_rater_hash_is_keyed_and_a_new_key_makes_no_new_versions() {
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::Digest;
    let d = Deployment::small();
    let csv = format!(
        "{HEAD}\
         H001,1,2026-10-03 09:00:00,369901001001,物业管理,1,5,,,,13812341234\n\
         H002,1,2026-10-03 09:10:00,369901001002,物业管理,1,1,没人管,待核实,,139 1234 5678\n"
    );
    let (key_a, key_b) = ("first-key-0123456789abcdef0123456789", "second-key-0123456789abcdef012345678");
    d.file("inbox/ratings/a.csv", &csv);
    // The key used to be the salt variable MANYI_HASH_SALT: set both, so that
    // what a change of key does is what this test sees, before and after.
    d.manyi_env(&["collect"], &[(KEY_ENV, key_a), ("MANYI_HASH_SALT", key_a)]).success();
    d.file("inbox/ratings/b.csv", &csv);
    d.manyi_env(&["collect"], &[(KEY_ENV, key_b), ("MANYI_HASH_SALT", key_b)]).success();
    assert_eq!(d.count("SELECT COUNT(*) FROM record_keys WHERE kind = 'ratings'"), 2);
    assert_eq!(d.count("SELECT SUM(rows_unchanged) FROM batches"), 2, "the same file under a new key is unchanged");
    assert_eq!(d.count("SELECT COUNT(*) FROM record_versions"), 0, "no rating got a second version");

    let hashes = curated_text(&d, "ratings", &["rater_hash"]);
    assert_eq!(hashes.len(), 2, "{hashes:?}");
    let unkeyed = hex::encode(&sha2::Sha256::digest(format!("{key_a}:13812341234").as_bytes())[..12]);
    assert!(!hashes.contains(&unkeyed), "not the old salted SHA-256: {hashes:?}");
    let keyed = |phone: &str| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key_a.as_bytes()).expect("hmac key");
        mac.update(phone.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..12])
    };
    assert!(hashes.contains(&keyed("13812341234")), "HMAC-SHA256 under the key in use: {hashes:?}");
    assert!(hashes.contains(&keyed("13912345678")), "the phone is normalised before hashing (spaces dropped): {hashes:?}");
}
