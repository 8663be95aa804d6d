//! Canonical records shared by every stage: a 好差评 rating, a questionnaire
//! response, and the small code lists they use.
//!
//! These are the only shapes that cross stage boundaries. A source's own field
//! names never leave `collect`; the curated store holds exactly these fields.

use chrono::{NaiveDateTime, Timelike};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A 好差评 satisfaction level, 1 (非常不满意) to 5 (非常满意), as in GB/T 39046.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Level(u8);

impl Level {
    /// The five levels from best to worst, in the order reports list them.
    pub const ALL_DESC: [Level; 5] = [Level(5), Level(4), Level(3), Level(2), Level(1)];

    /// A level from its numeric code; `None` outside 1..=5.
    pub fn from_code(code: u8) -> Option<Level> {
        (1..=5).contains(&code).then_some(Level(code))
    }

    /// A level from the text a platform or an office export uses: the Chinese
    /// name (非常满意 … 非常不满意) or the digit read in manyi's own
    /// ascending order (1 非常不满意 … 5 非常满意). Feeds go through
    /// [`Level::read`], which knows the source's direction.
    pub fn parse(text: &str) -> Option<Level> {
        Level::from_word(text).or_else(|| Level::read(text, Some(LevelCodes::Ascending)).ok())
    }

    /// A level from a word: the five names of GB/T 39046 and the variants
    /// exports print (很满意, 比较满意, 一般, 很不满意 …). 好评/差评 are not
    /// read: each stands for two levels, and guessing one would bend the shares.
    pub fn from_word(text: &str) -> Option<Level> {
        match text.trim() {
            "非常满意" | "很满意" | "十分满意" => Some(Level(5)),
            "满意" | "比较满意" | "较满意" => Some(Level(4)),
            "基本满意" | "一般" | "一般满意" => Some(Level(3)),
            "不满意" | "不太满意" | "较不满意" => Some(Level(2)),
            "非常不满意" | "很不满意" | "十分不满意" => Some(Level(1)),
            _ => None,
        }
    }

    /// Reads a feed's level cell: a word whatever the direction (also with
    /// its code beside it, `5-非常满意`, `非常满意(5)`), stars (`★★★★☆`,
    /// `4星`, `四星`), which run one way only, or a number 1–5 (ASCII or
    /// full-width, as Chinese input methods type it) in the source's
    /// direction `codes`.
    pub fn read(text: &str, codes: Option<LevelCodes>) -> Result<Level, LevelReadError> {
        if let Some(level) = Level::from_word(text) {
            return Ok(level);
        }
        let t = text.trim();
        // A lone digit, as nearly every numeric feed sends it, without parsing
        // a float (which also reads "4.0" and "4e0", hence the fallback).
        let code = match t.as_bytes() {
            [d @ b'1'..=b'5'] => Some(d - b'0'),
            // Full-width １–５ (U+FF11–U+FF15).
            [0xEF, 0xBC, d @ 0x91..=0x95] => Some(d - 0x90),
            _ => match t.parse::<f64>() {
                Ok(v) => (v.fract() == 0.0 && (1.0..=5.0).contains(&v)).then_some(v as u8),
                Err(_) => return Level::from_stars(t).or_else(|| Level::from_word_with_code(t)).ok_or(LevelReadError::Unknown),
            },
        };
        match (code, codes) {
            (None, _) => Err(LevelReadError::Unknown),
            (Some(_), None) => Err(LevelReadError::Direction),
            (Some(c), Some(LevelCodes::Ascending)) => Ok(Level(c)),
            (Some(c), Some(LevelCodes::Gbt39046)) => Ok(Level(6 - c)),
        }
    }

    /// Stars, which count up whatever a source's numbers do: `★★★★☆`
    /// (filled stars counted), `4星`, `4颗星`, `四星级`.
    fn from_stars(t: &str) -> Option<Level> {
        if !t.is_empty() && t.chars().all(|c| matches!(c, '★' | '☆') || c.is_whitespace()) {
            return Level::from_code(t.chars().filter(|&c| c == '★').count().try_into().ok()?);
        }
        let number = t.strip_suffix('级').unwrap_or(t).strip_suffix('星')?;
        let number = number.strip_suffix('颗').unwrap_or(number);
        let code = match number {
            "1" | "一" => 1,
            "2" | "二" | "两" => 2,
            "3" | "三" => 3,
            "4" | "四" => 4,
            "5" | "五" => 5,
            _ => return None,
        };
        Level::from_code(code)
    }

    /// A level word with its code beside it (`5-非常满意`, `非常满意(5)`,
    /// `1.非常满意`): the word says which level, whichever way the code runs.
    fn from_word_with_code(t: &str) -> Option<Level> {
        let word: String = t
            .chars()
            .filter(|c| !(c.is_ascii_digit() || ('０'..='９').contains(c) || c.is_whitespace() || "-.、:：()（）[]【】_/".contains(*c)))
            .collect();
        (word.chars().count() < t.chars().count()).then(|| Level::from_word(&word)).flatten()
    }

    /// The numeric code, 1..=5.
    pub fn code(self) -> u8 {
        self.0
    }

    /// The Chinese name printed in reports.
    pub fn name(self) -> &'static str {
        match self.0 {
            5 => "非常满意",
            4 => "满意",
            3 => "基本满意",
            2 => "不满意",
            _ => "非常不满意",
        }
    }
}

/// The direction a source codes levels in, when it sends numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum LevelCodes {
    /// GB/T 39046-2020 table A.8: 1 非常满意, 2 满意, 3 基本满意, 4 不满意, 5 非常不满意.
    #[serde(rename = "gbt39046")]
    Gbt39046,
    /// Star widgets: 1 非常不满意 … 5 非常满意 (manyi's own order).
    #[serde(rename = "ascending")]
    Ascending,
}

impl LevelCodes {
    /// The value as `level_codes` spells it.
    pub fn name(self) -> &'static str {
        match self {
            LevelCodes::Gbt39046 => "gbt39046",
            LevelCodes::Ascending => "ascending",
        }
    }
}

/// Why a level cell could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LevelReadError {
    /// Neither a level word nor a number 1–5.
    #[error("not a level word or a number 1–5")]
    Unknown,
    /// A number, but the source does not say which way its numbers run.
    #[error("a numeric level, but the source has no level_codes setting")]
    Direction,
}

/// Channel codes of GB/T 39046 with their names, in code order.
pub const CHANNELS: [(u8, &str); 7] =
    [(1, "PC端"), (2, "移动端"), (3, "二维码"), (4, "政务大厅平板电脑"), (5, "政务大厅其他终端"), (6, "电话"), (7, "短信")];

/// A channel from a code 1–7 or a name exports print (GB/T 39046 numbering,
/// with the common variants: 微信/小程序/APP → 移动端, 12345/热线 → 电话,
/// 政务大厅平板 → 平板电脑, 自助终端/一体机 → 其他终端). Empty is 0 (unknown).
pub fn channel_code(text: &str) -> Option<u8> {
    let t = text.trim();
    if t.is_empty() {
        return Some(0);
    }
    if let Ok(n) = t.parse::<u8>() {
        return (1..=7).contains(&n).then_some(n);
    }
    if let Some((code, _)) = CHANNELS.iter().find(|(_, name)| *name == t) {
        return Some(*code);
    }
    match t.to_uppercase().as_str() {
        "PC" | "网页" | "网站" | "电脑" | "网上办事大厅" | "政务服务网" => Some(1),
        "APP" | "移动端" | "手机" | "手机端" | "小程序" | "微信" | "微信小程序" | "公众号" | "微信公众号" | "支付宝" => {
            Some(2)
        }
        "扫码" | "二维码" | "扫码评价" => Some(3),
        "政务大厅平板" | "大厅平板" | "平板" | "平板电脑" | "评价器" | "窗口评价器" => Some(4),
        "大厅其他终端" | "自助终端" | "一体机" | "自助一体机" | "其他终端" => Some(5),
        "12345" | "12345热线" | "热线" | "电话回访" | "政务热线" => Some(6),
        "SMS" => Some(7),
        _ => None,
    }
}

/// Follow-up state of a 差评 (levels 1–2). Ratings of level 3 and above carry `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FollowUp {
    /// 待核实: not yet checked by the responsible office.
    Pending,
    /// 有效: confirmed, rectification not started.
    Valid,
    /// 无效/申诉成立: excluded from 差评 figures after 申诉复核, kept on record.
    Invalid,
    /// 整改中.
    InProgress,
    /// 已整改.
    Rectified,
    /// 无法整改.
    CannotRectify,
}

impl FollowUp {
    /// Every state, in the order a report lists them.
    pub const ALL: [FollowUp; 6] =
        [FollowUp::Pending, FollowUp::Valid, FollowUp::InProgress, FollowUp::Rectified, FollowUp::CannotRectify, FollowUp::Invalid];

    /// The Chinese name, which is also what the curated store holds.
    pub fn name(self) -> &'static str {
        match self {
            FollowUp::Pending => "待核实",
            FollowUp::Valid => "有效",
            FollowUp::Invalid => "无效",
            FollowUp::InProgress => "整改中",
            FollowUp::Rectified => "已整改",
            FollowUp::CannotRectify => "无法整改",
        }
    }

    /// Parses the names offices and platforms use, including the common variants
    /// (申诉成立 for 无效, 整改完成 for 已整改).
    pub fn parse(text: &str) -> Option<FollowUp> {
        match text.trim() {
            "待核实" | "未核实" => Some(FollowUp::Pending),
            "有效" => Some(FollowUp::Valid),
            "无效" | "申诉成立" | "无效/申诉成立" => Some(FollowUp::Invalid),
            "整改中" => Some(FollowUp::InProgress),
            "已整改" | "整改完成" => Some(FollowUp::Rectified),
            "无法整改" => Some(FollowUp::CannotRectify),
            _ => None,
        }
    }
}

/// One 好差评 rating in canonical form, as the curated store keeps it.
///
/// Rater identity never reaches this struct in clear: `rater_hash` is a keyed
/// digest so that repeat raters can be counted without knowing who they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rating {
    /// 办件编号 + "-" + 评价次数; unique within its source.
    pub rating_id: Box<str>,
    /// The configured source it came from.
    pub source: Arc<str>,
    /// When the rating was given, Asia/Shanghai wall time.
    pub rated_at: NaiveDateTime,
    /// 12-digit community code, or 15-digit grid code.
    pub org_code: Arc<str>,
    /// Service category code from the configured taxonomy.
    pub category: Arc<str>,
    /// 服务事项.
    pub service_item: Arc<str>,
    /// 受理部门.
    pub department: Arc<str>,
    /// Channel code (1 PC端 … 7 短信); the list is configurable.
    pub channel: u8,
    /// Satisfaction level.
    pub level: Level,
    /// Reason tags, comma separated as the platform sends them.
    pub reason_tags: Box<str>,
    /// Free-text comment from the resident (escaped when rendered).
    pub comment: Box<str>,
    /// 匿名评价.
    pub anonymous: bool,
    /// HMAC-SHA256 of the rater's phone or id under the deployment's rater key, if the source gave one.
    pub rater_hash: Option<Box<str>>,
    /// 差评 follow-up state; `None` for levels 3–5.
    pub follow_up: Option<FollowUp>,
    /// When rectification was completed.
    pub rectified_at: Option<NaiveDateTime>,
    /// 回访结果.
    pub revisit: Box<str>,
    /// 系统默认评价: filled in by the system because the resident did not rate.
    pub default_rating: bool,
}

#[cfg(test)]
impl Rating {
    /// A plain rating for unit tests: the given keys, every optional field
    /// empty, channel 1, not default. Tests change what they need with
    /// struct-update syntax.
    pub(crate) fn example(id: &str, source: &str, org: &str, category: &str, rated_at: NaiveDateTime, level: Level) -> Rating {
        Rating {
            rating_id: id.into(),
            source: source.into(),
            rated_at,
            org_code: org.into(),
            category: category.into(),
            service_item: Arc::default(),
            department: Arc::default(),
            channel: 1,
            level,
            reason_tags: Box::default(),
            comment: Box::default(),
            anonymous: false,
            rater_hash: None,
            follow_up: None,
            rectified_at: None,
            revisit: Box::default(),
            default_rating: false,
        }
    }
}

/// One answer of a questionnaire response, in long form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    /// Question id from the survey's `survey.toml`.
    pub question: String,
    /// The option chosen (its text), empty for a skipped answer.
    pub option: String,
    /// Free text typed with the answer (fill-in, or 〖…〗 in an option).
    pub text: String,
    /// The respondent skipped the question or was not shown it: kept, never zero.
    pub skipped: bool,
}

/// One questionnaire response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurveyResponse {
    /// Response id, unique within the survey (问卷星 序号, or the platform's id).
    pub response_id: String,
    /// The survey id: a folder of `survey-templates/`.
    pub survey: String,
    /// 提交答卷时间, Asia/Shanghai wall time.
    pub submitted_at: NaiveDateTime,
    /// Community the respondent lives in.
    pub org_code: String,
    /// The answers, one per question (several for multi-select).
    pub answers: Vec<Answer>,
}

/// Level of a unit in the org hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrgLevel {
    /// 市.
    City,
    /// 区/县.
    District,
    /// 街道/乡镇.
    Street,
    /// 社区/村.
    Community,
    /// 网格.
    Grid,
}

impl OrgLevel {
    /// Parses the level column of the org CSV.
    pub fn parse(text: &str) -> Option<OrgLevel> {
        match text.trim() {
            "city" | "市" => Some(OrgLevel::City),
            "district" | "区" | "县" => Some(OrgLevel::District),
            "street" | "街道" | "乡镇" => Some(OrgLevel::Street),
            "community" | "社区" | "村" => Some(OrgLevel::Community),
            "grid" | "网格" => Some(OrgLevel::Grid),
            _ => None,
        }
    }

    /// The number of digits a code of this level has (统计用区划代码).
    pub fn code_len(self) -> Option<usize> {
        match self {
            OrgLevel::City => None,
            OrgLevel::District => Some(6),
            OrgLevel::Street => Some(9),
            OrgLevel::Community => Some(12),
            OrgLevel::Grid => Some(15),
        }
    }
}

/// The canonical rating fields a source's `columns` table may map to a file's
/// header or a platform's JSON field (the names collect's readers use).
pub const RATING_FIELDS: [&str; 16] = [
    "project_no",
    "assess_number",
    "rated_at",
    "org",
    "category",
    "service_item",
    "department",
    "channel",
    "level",
    "reason_tags",
    "comment",
    "anonymous",
    "rater_phone",
    "follow_up",
    "rectified_at",
    "revisit",
];

/// Parses the local-time formats offices and platforms use: ISO with a
/// space or `T`, slashes as 问卷星 and Excel write them, dots, Chinese
/// `2026年10月3日 14时22分05秒` as WPS and Excel format dates on a Chinese
/// system, and GB/T 39046's `YYYYMMDDThhmmss`.
///
/// Fractions of a second (`14:22:05.0`, as Java's `Timestamp` prints every
/// time, or the `.123` of a `datetime(3)` column) are read and dropped: the
/// standard's time is to the second, and the same rating sent once with
/// and once without them must be the same rating, not an update.
pub fn parse_timestamp(text: &str) -> Option<NaiveDateTime> {
    // `%.f` reads an optional fraction: "14:22:05" matches too.
    const FORMATS: [&str; 15] = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y/%m/%d %H:%M:%S%.f",
        "%Y/%m/%d %H:%M",
        "%Y.%m.%d %H:%M:%S%.f",
        "%Y.%m.%d %H:%M",
        "%Y年%m月%d日 %H:%M:%S",
        "%Y年%m月%d日 %H:%M",
        "%Y年%m月%d日 %H时%M分%S秒",
        "%Y年%m月%d日 %H时%M分",
        "%Y年%m月%d日 %H点%M分",
        "%Y%m%dT%H%M%S",
        "%Y%m%d%H%M%S",
    ];
    let t = text.trim();
    FORMATS.iter().find_map(|f| NaiveDateTime::parse_from_str(t, f).ok()).and_then(|t| t.with_nanosecond(0))
}

/// [`parse_timestamp`], and besides the forms that name an instant rather
/// than a local time, turned into the local time of `tz`: ISO 8601 with an
/// offset or `Z` (`2026-10-03T06:22:05.000Z`, `2026-10-03T14:22:05+08:00`), and
/// Unix time in seconds (10 digits) or milliseconds (13 digits), which
/// platforms built on Java's JSON libraries send for every date by default.
/// A time in UTC read as local would put a rating of 03:00 on the day before.
pub fn parse_timestamp_in(text: &str, tz: chrono_tz::Tz) -> Option<NaiveDateTime> {
    parse_timestamp(text).or_else(|| parse_instant(text.trim()).and_then(|t| t.with_timezone(&tz).naive_local().with_nanosecond(0)))
}

fn parse_instant(t: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, Utc};
    if t.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = t.parse().ok()?;
        return match t.len() {
            10 => DateTime::<Utc>::from_timestamp(n, 0),
            13 => DateTime::<Utc>::from_timestamp_millis(n),
            _ => None,
        };
    }
    const WITH_OFFSET: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"];
    DateTime::parse_from_rfc3339(t)
        .ok()
        .or_else(|| WITH_OFFSET.iter().find_map(|f| DateTime::parse_from_str(t, f).ok()))
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_office_and_platform_formats() {
        let want = NaiveDateTime::parse_from_str("2026-10-03 14:22:05", "%Y-%m-%d %H:%M:%S").ok();
        assert_eq!(parse_timestamp("2026-10-03 14:22:05"), want);
        assert_eq!(parse_timestamp("2026/10/3 14:22:05"), want);
        assert_eq!(parse_timestamp("20261003T142205"), want);
        assert_eq!(parse_timestamp("2026-13-03 14:22:05"), None);
        assert_eq!(parse_timestamp("昨天"), None);
        // Java's Timestamp, datetime(3), dots, and dates as WPS and Excel
        // format them on a Chinese system; fractions of a second dropped.
        for text in [
            "2026-10-03 14:22:05.0",
            "2026-10-03 14:22:05.123",
            "2026-10-03T14:22:05.999999",
            "2026.10.03 14:22:05",
            "2026年10月3日 14:22:05",
            "2026年10月03日14时22分05秒",
        ] {
            assert_eq!(parse_timestamp(text), want, "{text}");
        }
        let minute = NaiveDateTime::parse_from_str("2026-10-03 09:05:00", "%Y-%m-%d %H:%M:%S").ok();
        assert_eq!(parse_timestamp("2026年10月3日 9点05分"), minute);
        assert_eq!(parse_timestamp("2026-10-03T09:05"), minute);
        // An instant is not a local time without the deployment's zone.
        assert_eq!(parse_timestamp("2026-10-03T06:22:05Z"), None);
        assert_eq!(parse_timestamp("1791008525"), None);
        // A date alone is refused: a rating's time of day decides bursts.
        assert_eq!(parse_timestamp("2026-10-03"), None);
    }

    #[test]
    fn instants_are_read_as_the_local_time_of_the_zone() {
        let shanghai = chrono_tz::Asia::Shanghai;
        let want = NaiveDateTime::parse_from_str("2026-10-03 14:22:05", "%Y-%m-%d %H:%M:%S").ok();
        // 1791008525 is 2026-10-03 06:22:05 UTC (Python: datetime(2026,10,3,6,22,5,tzinfo=timezone.utc).timestamp()).
        for text in [
            "1791008525",
            "1791008525123",
            "2026-10-03T06:22:05Z",
            "2026-10-03T06:22:05.123Z",
            "2026-10-03T14:22:05+08:00",
            "2026-10-03T14:22:05.000+0800",
            "2026-10-03 07:22:05+01:00",
            "2026-10-03 14:22:05",
        ] {
            assert_eq!(parse_timestamp_in(text, shanghai), want, "{text}");
        }
        // The zone decides the day: 16:30 UTC is the next day in Shanghai, not in London.
        let next_day = NaiveDateTime::parse_from_str("2026-10-01 00:30:00", "%Y-%m-%d %H:%M:%S").ok();
        assert_eq!(parse_timestamp_in("2026-09-30T16:30:00Z", shanghai), next_day);
        let london = NaiveDateTime::parse_from_str("2026-09-30 17:30:00", "%Y-%m-%d %H:%M:%S").ok();
        assert_eq!(parse_timestamp_in("2026-09-30T16:30:00Z", chrono_tz::Europe::London), london);
        // Other runs of digits are not Unix time.
        for text in ["179100852", "17910085251", "179100852512345", "-1791008525"] {
            assert_eq!(parse_timestamp_in(text, shanghai), None, "{text}");
        }
    }

    #[test]
    fn levels_parse_from_names_and_digits() {
        assert_eq!(Level::parse("非常满意"), Level::from_code(5));
        assert_eq!(Level::parse(" 基本满意 "), Level::from_code(3));
        assert_eq!(Level::parse("2"), Level::from_code(2));
        assert_eq!(Level::parse("1.0"), Level::from_code(1));
        assert_eq!(Level::parse("7"), None);
        assert_eq!(Level::parse("2.5"), None);
        assert_eq!(Level::parse("很好"), None);
        assert_eq!(Level::read("1", Some(LevelCodes::Gbt39046)), Ok(Level(5)));
        assert_eq!(Level::read("5", Some(LevelCodes::Gbt39046)), Ok(Level(1)));
        assert_eq!(Level::read("1", Some(LevelCodes::Ascending)), Ok(Level(1)));
        assert_eq!(Level::read("2", None), Err(LevelReadError::Direction));
        assert_eq!(Level::read("很满意", None), Ok(Level(5)));
        assert_eq!(Level::read("好评", Some(LevelCodes::Gbt39046)), Err(LevelReadError::Unknown));
        // Stars count up in every source; a word with its code is the word.
        for (text, level) in [
            ("★★★★★", 5),
            ("★★★☆☆", 3),
            ("★", 1),
            ("4星", 4),
            ("四星级", 4),
            ("2颗星", 2),
            ("5-非常满意", 5),
            ("非常满意(5)", 5),
            ("1.非常满意", 5),
            ("不满意（2）", 2),
            ("【4】满意", 4),
        ] {
            assert_eq!(Level::read(text, None), Ok(Level(level)), "{text}");
            assert_eq!(Level::read(text, Some(LevelCodes::Gbt39046)), Ok(Level(level)), "{text}");
        }
        // Full-width digits are numbers: they need the direction like ASCII ones.
        assert_eq!(Level::read("５", None), Err(LevelReadError::Direction));
        assert_eq!(Level::read("５", Some(LevelCodes::Gbt39046)), Ok(Level(1)));
        assert_eq!(Level::read("１", Some(LevelCodes::Ascending)), Ok(Level(1)));
        for text in ["☆☆☆☆☆", "★★★★★★", "6星", "五星好评", "5分", "非常好", "5-", "好评(4)"] {
            assert_eq!(Level::read(text, Some(LevelCodes::Ascending)), Err(LevelReadError::Unknown), "{text}");
        }
    }

    #[test]
    fn a_lone_digit_reads_as_the_float_reading_reads_it() {
        // The float reading the quick path stands in for.
        // Full-width digits read as their ASCII selves.
        let ascii = |t: &str| {
            t.chars()
                .map(|c| if ('１'..='５').contains(&c) { char::from(b'1' + (c as u32 - '１' as u32) as u8) } else { c })
                .collect::<String>()
        };
        let by_float =
            |t: &str| ascii(t).trim().parse::<f64>().ok().filter(|v| v.fract() == 0.0 && (1.0..=5.0).contains(v)).map(|v| v as u8);
        let mut texts: Vec<String> = (0u8..=255).map(|b| char::from(b).to_string()).collect();
        texts.extend(["4.0", "4e0", " 3 ", "+3", "03", "３", "-1", "5.5", ""].map(String::from));
        for t in &texts {
            let read = Level::read(t, Some(LevelCodes::Ascending)).ok().map(Level::code);
            let expected = by_float(t).or_else(|| Level::from_word(t).map(Level::code));
            assert_eq!(read, expected, "level text {t:?}");
        }
    }

    #[test]
    fn channels_from_codes_names_and_variants() {
        assert_eq!(channel_code("政务大厅平板"), Some(4));
        assert_eq!(channel_code("微信"), Some(2));
        assert_eq!(channel_code("app"), Some(2));
        assert_eq!(channel_code("12345热线"), Some(6));
        assert_eq!(channel_code("一体机"), Some(5));
        assert_eq!(channel_code("8"), None);
        assert_eq!(channel_code(""), Some(0));
    }

    #[test]
    fn follow_up_names_round_trip() {
        for f in FollowUp::ALL {
            assert_eq!(FollowUp::parse(f.name()), Some(f));
        }
        assert_eq!(FollowUp::parse("申诉成立"), Some(FollowUp::Invalid));
    }
}
