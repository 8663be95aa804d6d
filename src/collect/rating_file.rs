//! 好差评 ratings from an office's export (CSV or XLSX with Chinese headers).
//!
//! Offices export from different systems, so the header of each canonical
//! field is configurable per source; the defaults are the headers most
//! exports use. A row that fails any check goes to quarantine with the field
//! and the reason; the rest of the file is ingested.

use super::table::clip;
use super::{CollectError, Parsed, Table, parse_timestamp};
use crate::config::{Config, SourceConfig};
use crate::model::{FollowUp, Level, Rating};
use crate::store::QuarantineRow;
use chrono::{NaiveDate, NaiveDateTime};

/// Canonical fields a rating file can map, with the headers tried by default.
const DEFAULT_HEADERS: [(&str, &[&str]); 16] = [
    ("project_no", &["办件编号", "办件号"]),
    ("assess_number", &["评价次数"]),
    ("rated_at", &["评价时间"]),
    ("org", &["区划代码", "社区代码", "社区", "社区名称"]),
    ("category", &["服务类别", "类别"]),
    ("service_item", &["服务事项", "事项名称"]),
    ("department", &["受理部门", "办理部门"]),
    ("channel", &["评价渠道", "渠道"]),
    ("level", &["满意度", "评价等级", "满意度代码"]),
    ("reason_tags", &["评价标签", "差评原因"]),
    ("comment", &["文字评价", "评价内容"]),
    ("anonymous", &["是否匿名"]),
    ("rater_phone", &["联系电话", "手机号"]),
    ("follow_up", &["整改状态", "核实状态"]),
    ("rectified_at", &["整改完成时间"]),
    ("revisit", &["回访结果"]),
];

const REQUIRED: [&str; 5] = ["project_no", "rated_at", "org", "category", "level"];

/// Channel names as exports print them (GB/T 39046 numbering).
fn channel_code(text: &str) -> Option<u8> {
    let t = text.trim();
    if t.is_empty() {
        return Some(0);
    }
    if let Ok(n) = t.parse::<u8>() {
        return (1..=7).contains(&n).then_some(n);
    }
    match t {
        "PC端" | "网页" | "PC" => Some(1),
        "移动端" | "APP" | "小程序" => Some(2),
        "二维码" => Some(3),
        "政务大厅平板电脑" | "大厅平板" | "评价器" => Some(4),
        "政务大厅其他终端" | "大厅其他终端" => Some(5),
        "电话" | "12345" | "12345热线" => Some(6),
        "短信" => Some(7),
        _ => None,
    }
}

/// Parses a rating table from `source`. `now` is the collect time: ratings
/// dated more than a day after it are rejected as clock errors.
pub fn parse_ratings(cfg: &Config, source: &SourceConfig, file: &str, table: &Table, now: NaiveDateTime) -> Result<Parsed, CollectError> {
    let mut idx = std::collections::HashMap::new();
    let mut missing = Vec::new();
    let mut ambiguous = Vec::new();
    for (field, defaults) in DEFAULT_HEADERS {
        let found = match source.columns.get(field) {
            Some(h) => table.column(&[h.as_str()]),
            None => table.column(defaults),
        };
        match found {
            Some(i) => {
                // Two columns of one name: reading the first silently ignored
                // what the second said (level 1 stored where the file said 5).
                ambiguous.extend(table.ambiguous(i));
                idx.insert(field, i);
            }
            None if REQUIRED.contains(&field) => {
                let wanted = source
                    .columns
                    .get(field)
                    .map(|h| format!("“{h}”"))
                    .unwrap_or_else(|| defaults.iter().map(|d| format!("“{d}”")).collect::<Vec<_>>().join("或"));
                missing.push(format!("{field}（表头{wanted}）"));
            }
            None => {}
        }
    }
    if !missing.is_empty() {
        return Err(CollectError::BadFile {
            file: file.into(),
            reason: format!(
                "缺少必需的列: {}；实际表头为（按{}读取）: {}",
                missing.join("、"),
                table.encoding,
                clip(&table.headers.join(","))
            ),
        });
    }
    if !ambiguous.is_empty() {
        return Err(CollectError::BadFile { file: file.into(), reason: ambiguous.join("；") });
    }
    let mut parsed = Parsed { headers: table.headers.clone(), encoding: table.encoding, ..Default::default() };
    // Sized once: growing a vector of 800,000 ratings by doubling held two
    // copies of it at the peak.
    parsed.ratings.reserve_exact(table.rows.len());
    for (line, cells) in &table.rows {
        parsed.rows_read += 1;
        let get = |field: &str| idx.get(field).map(|&i| super::table::cell(cells, i)).unwrap_or("");
        match normalise_rating(cfg, &source.name, &get, now) {
            Ok(r) => parsed.ratings.push(r),
            Err((field, reason)) => parsed.rejected.push(QuarantineRow { line: *line, field, reason, values: super::table::cells(cells) }),
        }
    }
    Ok(parsed)
}

/// Why a record was rejected: the canonical field at fault and the reason.
pub(crate) type Rejection = (String, String);

/// The earliest date a rating, answer or rectification can carry: a year
/// 0001 or 1900 is a placeholder or a typo, and a date far in the future made
/// the working-day arithmetic of reports run for minutes.
pub(crate) fn earliest_plausible() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).unwrap_or(NaiveDateTime::MIN)
}

/// Turns one record, read field by field through `get` (canonical field name
/// → raw text, empty when absent), into a canonical rating. Shared by office
/// files and the platform API so that both normalise identically.
pub(crate) fn normalise_rating<'a>(
    cfg: &Config,
    source: &str,
    get: &dyn Fn(&str) -> &'a str,
    now: NaiveDateTime,
) -> Result<Rating, Rejection> {
    let latest_ok = now + chrono::Duration::days(1);
    let reject = |field: &str, reason: String| (field.to_string(), reason);
    let project = get("project_no");
    if project.is_empty() {
        return Err(reject("project_no", "办件编号为空".into()));
    }
    let times = get("assess_number");
    let times: u32 = if times.is_empty() {
        1
    } else {
        times.parse().map_err(|_| reject("assess_number", format!("评价次数“{}”不是正整数", clip(times))))?
    };
    let rated_at_text = get("rated_at");
    let rated_at = parse_timestamp(rated_at_text)
        .ok_or_else(|| reject("rated_at", format!("评价时间“{}”无法识别，应为 2026-10-03 14:22:05 这样的格式", clip(rated_at_text))))?;
    if rated_at > latest_ok {
        return Err(reject("rated_at", format!("评价时间“{rated_at_text}”晚于采集时间，疑为时钟错误")));
    }
    if rated_at < earliest_plausible() {
        return Err(reject("rated_at", format!("评价时间“{rated_at_text}”早于2000-01-01，不是可信的日期（常见于占位值或年份录错）")));
    }
    let org = cfg.orgs.resolve_rated_unit(get("org")).map_err(|e| reject("org", clip(&e).into_owned()))?;
    let cat_text = get("category");
    let category = cfg
        .categories
        .iter()
        .find(|c| c.code == cat_text || c.name == cat_text)
        .ok_or_else(|| reject("category", format!("服务类别“{}”不在 categories.csv 中", clip(cat_text))))?;
    let level_text = get("level");
    let level = Level::parse(level_text)
        .ok_or_else(|| reject("level", format!("满意度“{}”应为1–5或非常满意/满意/基本满意/不满意/非常不满意", clip(level_text))))?;
    let channel_text = get("channel");
    let channel =
        channel_code(channel_text).ok_or_else(|| reject("channel", format!("评价渠道“{}”不是1–7或已知的渠道名称", clip(channel_text))))?;
    let follow_text = get("follow_up");
    let follow_up = if level.code() <= 2 {
        if follow_text.is_empty() {
            Some(FollowUp::Pending)
        } else {
            Some(FollowUp::parse(follow_text).ok_or_else(|| {
                reject("follow_up", format!("整改状态“{}”不是待核实/有效/无效/整改中/已整改/无法整改", clip(follow_text)))
            })?)
        }
    } else {
        None
    };
    let rect_text = get("rectified_at");
    let rectified_at = if rect_text.is_empty() {
        None
    } else {
        let t = parse_timestamp(rect_text).ok_or_else(|| reject("rectified_at", format!("整改完成时间“{}”无法识别", clip(rect_text))))?;
        // Up to a year ahead: a planned date typed into the column is
        // plausible, 9999-12-31 is not.
        let latest = now + chrono::Duration::days(366);
        if t < earliest_plausible() || t > latest {
            return Err(reject(
                "rectified_at",
                format!(
                    "整改完成时间“{rect_text}”不在2000-01-01至{}之间，不是可信的日期（常见于占位值9999-12-31或年份录错）",
                    latest.format("%Y-%m-%d")
                ),
            ));
        }
        Some(t)
    };
    let phone = get("rater_phone");
    // Keyed (HMAC) with the deployment's secret: a plain digest of an 11-digit
    // phone is inverted by trying every number.
    let rater_hash = cfg.rater_key.hash(phone);
    let anonymous = matches!(get("anonymous"), "是" | "1" | "true" | "Y");
    Ok(Rating {
        rating_id: format!("{project}-{times}"),
        source: source.to_string(),
        rated_at,
        org_code: org.code.clone(),
        category: category.code.clone(),
        service_item: get("service_item").into(),
        department: get("department").into(),
        channel,
        level,
        reason_tags: get("reason_tags").into(),
        // Free text enters curated masked; landing keeps the raw payload.
        comment: crate::privacy::mask(get("comment")).into(),
        anonymous,
        rater_hash,
        follow_up,
        rectified_at,
        revisit: crate::privacy::mask(get("revisit")).into(),
    })
}
