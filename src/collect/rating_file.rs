//! 好差评 ratings from an office's export (CSV or XLSX with Chinese headers).
//!
//! Offices export from different systems, so the header of each canonical
//! field is configurable per source; the defaults are the headers most
//! exports use. A row that fails any check goes to quarantine with the field
//! and the reason; the rest of the file is ingested.

use super::table::{Row, clip, delimiter_of, excel_scientific, is_workbook, open_csv, open_csv_stream, read_table, rows_above_header};
use super::{CollectError, Parsed, Table, Unrecognised, parse_timestamp_in};
use crate::config::{Config, SourceConfig, category_index};
use crate::model::{FollowUp, Level, LevelReadError, Rating, channel_code};
use crate::store::QuarantineRow;
use chrono::{NaiveDate, NaiveDateTime};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

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

/// The Chinese name of a canonical field, for messages (the first default header).
pub(crate) fn field_label(field: &str) -> &'static str {
    DEFAULT_HEADERS.iter().find(|(f, _)| *f == field).map(|(_, h)| h[0]).unwrap_or("")
}

/// A field the normaliser reads from a record: the canonical fields of
/// [`DEFAULT_HEADERS`], in its order, then the default-rating mark.
///
/// Why a type and not the field's name: the normaliser asks some twenty
/// fields a record, and a reader that found each by its name (comparing it
/// with every field's, or hashing it) spent a few per cent of an ingest on
/// it; a `Field` is the index of its slot. A misspelt field is also a
/// compile error instead of an empty cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    ProjectNo,
    AssessNumber,
    RatedAt,
    Org,
    Category,
    ServiceItem,
    Department,
    Channel,
    Level,
    ReasonTags,
    Comment,
    Anonymous,
    RaterPhone,
    FollowUp,
    RectifiedAt,
    Revisit,
    /// The raw value of the source's `default_rating.field` ([`DEFAULT_MARK`]).
    DefaultMark,
}

impl Field {
    /// Every field, in slot order.
    pub const ALL: [Field; DEFAULT_HEADERS.len() + 1] = [
        Field::ProjectNo,
        Field::AssessNumber,
        Field::RatedAt,
        Field::Org,
        Field::Category,
        Field::ServiceItem,
        Field::Department,
        Field::Channel,
        Field::Level,
        Field::ReasonTags,
        Field::Comment,
        Field::Anonymous,
        Field::RaterPhone,
        Field::FollowUp,
        Field::RectifiedAt,
        Field::Revisit,
        Field::DefaultMark,
    ];

    /// The field's canonical name, as `manyi.toml` and quarantine files give it.
    pub fn name(self) -> &'static str {
        DEFAULT_HEADERS.get(self as usize).map(|(f, _)| *f).unwrap_or(DEFAULT_MARK)
    }
}

/// Where each [`Field`] sits in a reader's record (a file's column, a page's
/// value slot), found by the field's name once a file or page and then
/// taken by the field twenty times a record.
pub(crate) struct FieldSlots([Option<usize>; Field::ALL.len()]);

impl FieldSlots {
    /// The slots a reader finds by canonical name.
    pub fn find(slot_of: impl Fn(&str) -> Option<usize>) -> FieldSlots {
        FieldSlots(Field::ALL.map(|f| slot_of(f.name())))
    }

    /// The slot of `field`, if the record has it.
    pub fn of(&self, field: Field) -> Option<usize> {
        self.0[field as usize]
    }
}

/// Finds the column of every canonical field. Errors: a required field
/// missing, or a header that appears twice. Optional fields the source's
/// map names but the file lacks are noted, never silently left empty.
fn locate_columns(source: &SourceConfig, file: &str, table: &Table) -> Result<(HashMap<&'static str, usize>, Vec<String>), CollectError> {
    let mut idx = HashMap::new();
    let (mut missing, mut ambiguous, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    if !table.above_header.is_empty() {
        let shown: Vec<String> = table.above_header.iter().filter(|r| !r.is_empty()).map(|r| format!("“{}”", clip(r))).collect();
        notes.push(format!(
            "{file}: {} row(s) above the header skipped as the table's title{}",
            table.above_header.len(),
            if shown.is_empty() { String::new() } else { format!(": {}", shown.join(" ")) }
        ));
    }
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
                // Found by its name dressed (`满意度（1-5分）`): said, so that
                // a column that only looks like the field is seen.
                let header = &table.headers[i];
                let named = source.columns.get(field).map_or(defaults.contains(&header.as_str()), |h| h == header);
                if !named {
                    notes.push(format!("{file}: column “{}” read as {field}", clip(header)));
                }
            }
            None if REQUIRED.contains(&field) => {
                let wanted = source
                    .columns
                    .get(field)
                    .map(|h| format!("“{h}”"))
                    .unwrap_or_else(|| defaults.iter().map(|d| format!("“{d}”")).collect::<Vec<_>>().join("或"));
                missing.push(format!("{field}（表头{wanted}）"));
            }
            None => {
                if let Some(h) = source.columns.get(field) {
                    notes.push(format!("{file}: {}: column {h} not found, left empty", defaults[0]));
                }
            }
        }
    }
    if let Some(rule) = &source.default_rating {
        match table.column(&[rule.field.as_str()]) {
            Some(i) => {
                idx.insert(DEFAULT_MARK, i);
            }
            None => missing.push(format!("default_rating.field（表头“{}”，用来识别系统默认评价）", rule.field)),
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
    Ok((idx, notes))
}

/// Parses a rating file from `source`, XLSX or CSV (sniffed from the
/// bytes; `file` names it in errors). `now` is the collect time: ratings
/// dated more than a day after it are rejected as clock errors.
pub fn parse_rating_file(
    cfg: &Config,
    source: &SourceConfig,
    file: &str,
    bytes: &[u8],
    now: NaiveDateTime,
) -> Result<Parsed, CollectError> {
    parse_rating_file_in_parts(cfg, source, file, bytes, now, usize::MAX, &mut |_| Ok(()))
}

/// What a parse in parts hands over as it reads (see [`parse_rating_file_in_parts`]).
#[derive(Debug)]
pub enum Part {
    /// `part_rows` good ratings, in file order.
    Ratings(Vec<Rating>),
    /// Rejected rows with their reasons, in file order, a quarter of
    /// `part_rows` at a time (a rejected row keeps every cell as text and
    /// its reason: about 1.2 KB, four times a rating).
    Rejected {
        /// The file's headers, for the quarantine file's.
        headers: Vec<String>,
        /// The rows.
        rows: Vec<QuarantineRow>,
    },
}

/// Where a parse hands its parts. An error stops the parse and is its result.
pub type PartSink<'a> = dyn FnMut(Part) -> Result<(), CollectError> + 'a;

/// [`parse_rating_file`] for a file that may be too large to hold as
/// ratings: every `part_rows` good ratings (and every quarter of that of
/// rejected rows) go to `part` as they are read, and the result holds only
/// those after the last part. What else the result says (rows read, notes,
/// the guard, a file held or refused) is about the whole file, known only
/// at its end — so whoever receives the parts must be able to drop them
/// all (the store's [`crate::store::PartedBatch`] is).
pub fn parse_rating_file_in_parts(
    cfg: &Config,
    source: &SourceConfig,
    file: &str,
    bytes: &[u8],
    now: NaiveDateTime,
    part_rows: usize,
    part: &mut PartSink<'_>,
) -> Result<Parsed, CollectError> {
    if is_workbook(bytes) {
        // An XLSX or XLS table is read whole, and consumed row by row: each row's
        // cells are freed once its rating is built, so that a file is not
        // held twice (as cells and as ratings) at the end of its parse.
        let Table { headers, rows, encoding, above_header } = read_table(file, bytes)?;
        let head = Table { headers, rows: Vec::new(), encoding, above_header };
        let size = rows.len();
        parse_rating_rows(cfg, source, file, &head, size, now, part_rows, part, |each| {
            rows.into_iter().try_for_each(|(line, cells)| each(line, Row::of(&cells)))
        })
    } else {
        // A CSV file read a row at a time: its rows are never all in memory
        // as cells, only as the ratings made of them.
        let csv = open_csv(file, bytes)?;
        parse_rating_rows(cfg, source, file, &csv.head, csv.max_rows(), now, part_rows, part, |each| csv.for_each_row(each))
    }
}

/// [`parse_rating_file_in_parts`] for a UTF-8 CSV file read as a stream
/// ([`CsvStream`]), so that not even its bytes are held: a file of any
/// size. Whether the file is UTF-8 CSV is its caller's to check first
/// ([`super::table::looks_utf8`]); a later line that is not is refused
/// there, the file whole.
pub fn parse_rating_csv_stream<R: std::io::BufRead>(
    cfg: &Config,
    source: &SourceConfig,
    file: &str,
    mut reader: R,
    now: NaiveDateTime,
    part_rows: usize,
    part: &mut PartSink<'_>,
) -> Result<Parsed, CollectError> {
    let (delimiter, above) = first_bytes(file, &mut reader).map(shape_of)?;
    let mut csv = open_csv_stream(file, reader, delimiter, above)?;
    let head = csv.head.clone();
    parse_rating_rows(cfg, source, file, &head, part_rows, now, part_rows, part, |each| csv.for_each_row(each))
}

/// [`parse_rating_csv_stream`] for a GBK CSV file, decoded as it is read
/// ([`super::table::GbkDecoding`]): a file of any size, as a GBK export
/// from Excel on a Chinese Windows may be. Its head is judged GBK by its
/// caller first ([`super::table::looks_gbk`]); bytes further on that refuse
/// the file (as they would refuse it read whole) refuse it here too, after
/// its first parts were handed over.
#[allow(clippy::too_many_arguments)]
pub fn parse_rating_gbk_stream<R: std::io::BufRead>(
    cfg: &Config,
    source: &SourceConfig,
    file: &str,
    mut reader: R,
    head: super::table::GbkHead,
    now: NaiveDateTime,
    part_rows: usize,
    part: &mut PartSink<'_>,
) -> Result<Parsed, CollectError> {
    let (delimiter, above) = first_bytes(file, &mut reader).map(shape_of)?;
    let (opened, verdict) = super::table::open_gbk_csv_stream(file, reader, head, delimiter, above);
    let refused = || verdict.reason().map(|reason| CollectError::BadFile { file: file.into(), reason });
    let mut csv = match opened {
        Ok(csv) => csv,
        Err(e) => return Err(refused().unwrap_or(e)),
    };
    let table = csv.head.clone();
    let parsed = parse_rating_rows(cfg, source, file, &table, part_rows, now, part_rows, part, |each| csv.for_each_row(each));
    match refused() {
        Some(e) => Err(e),
        None => parsed,
    }
}

/// A CSV file's delimiter and the rows above its header, told from its
/// first bytes ([`delimiter_of`], [`rows_above_header`]).
fn shape_of(head: &[u8]) -> (u8, usize) {
    let delimiter = delimiter_of(head);
    (delimiter, rows_above_header(head, delimiter))
}

/// The first bytes of a file read as a stream, still to be read: where its
/// delimiter and header are told ([`shape_of`]).
fn first_bytes<'r, R: std::io::BufRead>(file: &str, reader: &'r mut R) -> Result<&'r [u8], CollectError> {
    reader.fill_buf().map_err(|e| CollectError::BadFile { file: file.into(), reason: format!("文件无法读取: {e}") })
}

/// What one row of a rating table is handed to.
type RowSink<'a> = dyn FnMut(usize, Row<'_>) -> Result<(), CollectError> + 'a;

/// The parse of a rating table whose header is `head` and whose rows (at
/// most `size` of them) `rows` feeds, in file order, to the sink it is
/// given; good ratings go to `part` every `part_rows`.
#[allow(clippy::too_many_arguments)]
fn parse_rating_rows(
    cfg: &Config,
    source: &SourceConfig,
    file: &str,
    head: &Table,
    size: usize,
    now: NaiveDateTime,
    part_rows: usize,
    part: &mut PartSink<'_>,
    rows: impl FnOnce(&mut RowSink<'_>) -> Result<(), CollectError>,
) -> Result<Parsed, CollectError> {
    let part_rows = part_rows.max(1);
    let (idx, notes) = locate_columns(source, file, head)?;
    // Numeric levels from a source that does not say which way they run are
    // looked for in the same pass; the file is held at the end if any came.
    let columns = FieldSlots::find(|name| idx.get(name).copied());
    let direction_col = columns.of(Field::Level).filter(|_| source.level_codes().is_none());
    let mut numeric_levels: Vec<usize> = Vec::new();
    let default_in_channel = columns.of(Field::DefaultMark).is_some_and(|i| columns.of(Field::Channel) == Some(i));
    let rules = Rules::new(cfg, source, now, default_in_channel);
    let mut parsed = Parsed { headers: head.headers.clone(), encoding: head.encoding, notes, ..Default::default() };
    // Sized once: growing a vector of 800,000 ratings by doubling held two
    // copies of it at the peak.
    let room = size.min(part_rows);
    parsed.ratings.reserve_exact(room);
    let rejected_part = (part_rows / 4).max(1);
    let mut summary_rows: Vec<usize> = Vec::new();
    rows(&mut |line, cells| {
        if summary_row(cells) {
            summary_rows.push(line);
            return Ok(());
        }
        if let Some(i) = direction_col
            && numeric_level(source, super::table::cell(cells, i))
        {
            numeric_levels.push(line);
        }
        let get = |field: Field| columns.of(field).map(|i| super::table::cell(cells, i)).unwrap_or("");
        match normalise_rating(&rules, &get, &mut parsed.unrecognised) {
            Ok(read) => {
                parsed.add_rating(read);
                if parsed.ratings.len() >= part_rows {
                    part(Part::Ratings(std::mem::replace(&mut parsed.ratings, Vec::with_capacity(room))))?;
                }
            }
            Err((field, reason)) => {
                parsed.rows_read += 1;
                parsed.rejected.push(QuarantineRow { line, field, reason, values: super::table::cells(cells) });
                if parsed.rejected.len() >= rejected_part {
                    part(Part::Rejected { headers: parsed.headers.clone(), rows: std::mem::take(&mut parsed.rejected) })?;
                }
            }
        }
        Ok(())
    })?;
    if let Some(first) = summary_rows.first() {
        parsed.notes.push(format!("{file}: {} total row(s) (合计/总计/小计) skipped, first on line {first}", summary_rows.len()));
    }
    match numeric_levels.first() {
        None => Ok(parsed),
        Some(&first) => Err(direction_unknown(source, file, numeric_levels.len(), first)),
    }
}

/// Whether a row is a total a report-style export puts under its table
/// (`合计`, `总计` or `小计` in its first cell with text, the rest counts
/// or empty): not a rating, and quarantined as one it failed a small file
/// for its share of bad rows.
fn summary_row(cells: Row<'_>) -> bool {
    let Some(first) = cells.iter().map(str::trim).find(|c| !c.is_empty()) else { return false };
    // Every row passes here: an id is told apart without an allocation.
    if !first.starts_with(['合', '总', '小']) {
        return false;
    }
    let word: String = first.trim_end_matches([':', '：']).chars().filter(|c| !c.is_whitespace()).collect();
    matches!(word.as_str(), "合计" | "总计" | "小计")
}

/// Whether a level cell is a bare number, which reads only with a
/// direction (as the source's value map leaves it).
fn numeric_level(source: &SourceConfig, text: &str) -> bool {
    let text = source.values.level.get(text).map(String::as_str).unwrap_or(text);
    Level::read(text, None) == Err(LevelReadError::Direction)
}

/// A file with numeric levels from a source that does not say which way they
/// run is held: guessing turns 好评 into 差评 without a word.
fn direction_unknown(source: &SourceConfig, file: &str, rows: usize, first: usize) -> CollectError {
    CollectError::Held {
        file: file.into(),
        reason: format!(
            "{rows} row(s) give 满意度 as a number (first on line {first}) and source “{}” does not say which way its numbers run: add \
             level_codes = \"gbt39046\" (1 = 非常满意, the national coding) or level_codes = \"ascending\" (1 = 非常不满意) to its \
             [[source]] in manyi.toml and run collect again; the file stays in the inbox",
            source.name
        ),
    }
}

/// What normalising a record needs besides the record.
pub(crate) struct Rules<'a> {
    /// The deployment (orgs, categories, rater key).
    pub cfg: &'a Config,
    /// The source's settings (maps, level direction, default-rating rule).
    pub source: &'a SourceConfig,
    /// The collect time, local.
    pub now: NaiveDateTime,
    /// The default-rating mark sits in the channel's own field (e.g. `pf` = 7):
    /// such a record's channel is unknown, not 短信.
    pub default_in_channel: bool,
    /// The source's name, shared by every rating made under these rules
    /// rather than copied into each of a file's 800,000.
    pub source_name: Arc<str>,
    /// The text of the fields that repeat from rating to rating.
    pub shared: SharedText,
    /// Each category's code as one shared text, by its place in the
    /// deployment's categories.
    category_codes: Vec<Arc<str>>,
}

impl<'a> Rules<'a> {
    /// The rules for records of `source` collected at `now`.
    pub fn new(cfg: &'a Config, source: &'a SourceConfig, now: NaiveDateTime, default_in_channel: bool) -> Rules<'a> {
        let category_codes = cfg.categories.iter().map(|c| Arc::from(c.code.as_str())).collect();
        Rules {
            cfg,
            source,
            now,
            default_in_channel,
            source_name: source.name.as_str().into(),
            shared: SharedText::default(),
            category_codes,
        }
    }
}

/// One copy of each text that repeats across a file's ratings (community
/// code, category, 服务事项, 受理部门): a province's file has 800,000 ratings
/// but a few thousand distinct values of these, and a heap string of each
/// in every rating was a fifth of the memory of an ingest.
///
/// Hashed with foldhash, seeded per process: std's SipHash made the look-up
/// a tenth of reading an API page (four short texts a rating). The set is
/// capped, so a file crafted to collide can slow only its own reading.
#[derive(Default)]
pub(crate) struct SharedText(RefCell<HashSet<Arc<str>, foldhash::fast::RandomState>>);

/// Distinct texts kept at most: a field that turns out not to repeat (a
/// free-text 事项 of every rating different) stops being shared there rather
/// than growing the set without bound.
const SHARED_TEXT_MAX: usize = 1 << 16;

impl SharedText {
    /// The shared copy of `text`.
    pub fn get(&self, text: &str) -> Arc<str> {
        let mut set = self.0.borrow_mut();
        if let Some(shared) = set.get(text) {
            return Arc::clone(shared);
        }
        let owned: Arc<str> = text.into();
        if set.len() < SHARED_TEXT_MAX {
            set.insert(Arc::clone(&owned));
        }
        owned
    }
}

/// The field under which readers hand over the raw value of the
/// source's `default_rating.field`.
pub(crate) const DEFAULT_MARK: &str = "__default_rating";

/// A normalised rating and whether its level came as a number (the ratings
/// the inversion guard can speak about).
pub(crate) struct ReadRating {
    /// The rating.
    pub rating: Rating,
    /// The level was a number read in the source's direction.
    pub numeric_level: bool,
}

/// Why a record was rejected: the canonical field at fault and the reason.
pub(crate) type Rejection = (String, String);

/// A number's digits without the `.0` a tool that read the column as
/// floating point wrote after them (pandas does, for a column with a gap):
/// `369901001001.0` is the code 369901001001, as Excel shows it.
fn without_float_tail(text: &str) -> &str {
    match text.strip_suffix(".0") {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => digits,
        _ => text,
    }
}

/// 是否匿名 as exports write it: 是, 匿名, 1 (the platform's anonymityFlag),
/// true, Y or yes in any case (Excel writes a checkbox column as TRUE).
/// Anything else is a named rating (否, 实名, 0, 2 …). Read as named, an
/// anonymous 差评 counted in the 实名差评 that must all be revisited.
fn anonymous_flag(text: &str) -> bool {
    matches!(text, "是" | "匿名" | "1") || ["true", "y", "yes"].iter().any(|w| text.eq_ignore_ascii_case(w))
}

/// Why an id or a code in scientific notation is refused, and what to do.
const EXCEL_NUMBER: &str = "是被Excel当作数字改成的科学计数法，原来的数字已经丢失（不同的编号会变成同一个）；\
请在导出系统或Excel中把这一列设为“文本”格式后重新导出";

/// The earliest date a rating, answer or rectification can carry: a year
/// 0001 or 1900 is a placeholder or a typo, and a date far in the future made
/// the working-day arithmetic of reports run for minutes.
pub(crate) fn earliest_plausible() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).unwrap_or(NaiveDateTime::MIN)
}

/// Turns one record, read field by field through `get` (canonical field name
/// → raw text, empty when absent), into a canonical rating. Shared by office
/// files and the platform API so that both normalise identically. Values of
/// coded fields that nothing maps are counted in `unknown`.
pub(crate) fn normalise_rating<'a>(
    rules: &Rules<'_>,
    get: &dyn Fn(Field) -> &'a str,
    unknown: &mut Unrecognised,
) -> Result<ReadRating, Rejection> {
    let (cfg, now) = (rules.cfg, rules.now);
    let latest_ok = now + chrono::Duration::days(1);
    let reject = |field: Field, reason: String| (field.name().to_string(), reason);
    let project = without_float_tail(get(Field::ProjectNo));
    if project.is_empty() {
        return Err(reject(Field::ProjectNo, "办件编号为空".into()));
    }
    if excel_scientific(project) {
        return Err(reject(Field::ProjectNo, format!("办件编号“{}”{EXCEL_NUMBER}", clip(project))));
    }
    let times = get(Field::AssessNumber);
    let times: u32 = if times.is_empty() {
        1
    } else {
        times.parse().map_err(|_| reject(Field::AssessNumber, format!("评价次数“{}”不是正整数", clip(times))))?
    };
    let rated_at_text = get(Field::RatedAt);
    let rated_at = read_timestamp(rated_at_text, cfg.tz)
        .ok_or_else(|| reject(Field::RatedAt, format!("评价时间“{}”无法识别，应为 2026-10-03 14:22:05 这样的格式", clip(rated_at_text))))?;
    if rated_at > latest_ok {
        return Err(reject(Field::RatedAt, format!("评价时间“{rated_at_text}”晚于采集时间，疑为时钟错误")));
    }
    if rated_at < earliest_plausible() {
        return Err(reject(Field::RatedAt, format!("评价时间“{rated_at_text}”早于2000-01-01，不是可信的日期（常见于占位值或年份录错）")));
    }
    let org = without_float_tail(get(Field::Org));
    if excel_scientific(org) {
        return Err(reject(Field::Org, format!("区划代码“{}”{EXCEL_NUMBER}", clip(org))));
    }
    let (_, org_code) = cfg.orgs.resolve_rated_code(org).map_err(|e| reject(Field::Org, clip(&e).into_owned()))?;
    let codes = read_codes(rules, get).map_err(|miss| {
        if !miss.value.is_empty() {
            *unknown.entry(miss.field.name().into()).or_default().entry(miss.value.clone()).or_default() += 1;
        }
        reject(miss.field, miss.reason)
    })?;
    let rectified_at = read_rectified(get(Field::RectifiedAt), now, cfg.tz)?;
    let phone = get(Field::RaterPhone);
    // Keyed (HMAC) with the deployment's secret: a plain digest of an 11-digit
    // phone is inverted by trying every number.
    let rater_hash = cfg.rater_key.hash(phone);
    let anonymous = anonymous_flag(get(Field::Anonymous));
    let rating = Rating {
        rating_id: rating_id(project, times).into(),
        source: Arc::clone(&rules.source_name),
        rated_at,
        org_code: Arc::clone(org_code),
        category: Arc::clone(&rules.category_codes[codes.category]),
        service_item: rules.shared.get(get(Field::ServiceItem)),
        department: rules.shared.get(get(Field::Department)),
        channel: codes.channel,
        level: codes.level,
        reason_tags: get(Field::ReasonTags).into(),
        // Free text enters curated masked; landing keeps the raw payload.
        comment: crate::privacy::mask(get(Field::Comment)).into(),
        anonymous,
        rater_hash: rater_hash.map(String::into_boxed_str),
        follow_up: codes.follow_up,
        rectified_at,
        revisit: crate::privacy::mask(get(Field::Revisit)).into(),
        default_rating: codes.default_rating,
    };
    Ok(ReadRating { rating, numeric_level: codes.numeric_level })
}

/// The coded fields of a record, read through the source's value maps and the built-in synonyms.
struct Codes {
    /// The category's place in the deployment's categories.
    category: usize,
    channel: u8,
    level: Level,
    numeric_level: bool,
    follow_up: Option<FollowUp>,
    default_rating: bool,
}

/// A coded value nothing maps: the field, the value as the feed sent it, and the reason.
struct Miss {
    field: Field,
    value: String,
    reason: String,
}

/// `<办件编号>-<评价次数>`, the number as a number reads (`01` and `+1`
/// are `1`). Written with itoa: `format!` was a tenth of normalising a record.
fn rating_id(project: &str, times: u32) -> String {
    let mut digits = itoa::Buffer::new();
    let times = digits.format(times);
    let mut id = String::with_capacity(project.len() + 1 + times.len());
    id.push_str(project);
    id.push('-');
    id.push_str(times);
    id
}

fn read_codes<'a>(rules: &Rules<'_>, get: &dyn Fn(Field) -> &'a str) -> Result<Codes, Miss> {
    let values = &rules.source.values;
    // A mapped value replaces the feed's; an unmapped one is read as sent.
    let mapped = |field: Field| -> (&'a str, Cow<'_, str>) {
        let raw = get(field);
        let to = values.of(field.name()).and_then(|m| m.get(raw)).map_or(Cow::Borrowed(raw), |to| Cow::Borrowed(to.as_str()));
        (raw, to)
    };
    let miss = |field: Field, raw: &str, reason: String| Miss { field, value: raw.to_string(), reason };
    let (raw, cat_text) = mapped(Field::Category);
    let category = category_index(&rules.cfg.categories, &cat_text).ok_or_else(|| {
        let reason =
            format!("服务类别“{}”不在 categories.csv 中（代码、名称或 synonyms 列），也不在 [source.values.category] 中", clip(raw));
        miss(Field::Category, raw, reason)
    })?;
    let (raw, level_text) = mapped(Field::Level);
    let level = Level::read(&level_text, rules.source.level_codes()).map_err(|e| {
        let reason = match e {
            LevelReadError::Direction => format!("满意度“{}”是数字，但来源没有设置 level_codes", clip(raw)),
            LevelReadError::Unknown => format!("满意度“{}”应为1–5或非常满意/满意/基本满意/不满意/非常不满意", clip(raw)),
        };
        miss(Field::Level, raw, reason)
    })?;
    // Only a level that needed the direction to be read: stars and words
    // with their codes say theirs, and tell the inversion guard nothing.
    let numeric_level = Level::read(&level_text, None) == Err(LevelReadError::Direction);
    let default_rating = rules.source.default_rating.as_ref().is_some_and(|r| get(Field::DefaultMark).trim() == r.value.trim());
    let (raw, channel_text) = mapped(Field::Channel);
    let channel = if default_rating && rules.default_in_channel {
        0
    } else {
        channel_code(&channel_text).ok_or_else(|| miss(Field::Channel, raw, format!("评价渠道“{}”不是1–7或已知的渠道名称", clip(raw))))?
    };
    let (raw, follow_text) = mapped(Field::FollowUp);
    let follow_up = if level.code() > 2 {
        None
    } else if follow_text.is_empty() {
        Some(FollowUp::Pending)
    } else {
        Some(
            FollowUp::parse(&follow_text)
                .ok_or_else(|| miss(Field::FollowUp, raw, format!("整改状态“{}”不是待核实/有效/无效/整改中/已整改/无法整改", clip(raw))))?,
        )
    };
    Ok(Codes { category, channel, level, numeric_level, follow_up, default_rating })
}

/// A time as [`parse_timestamp_in`] reads it. `2026-10-03 14:22:05`, the form
/// of nearly every export and of the platform, is read digit by digit:
/// trying chrono's format strings one by one was a tenth of a file's parse.
/// Anything else, and anything this reading refuses, goes the long way, so
/// the result is the same.
pub(crate) fn read_timestamp(text: &str, tz: chrono_tz::Tz) -> Option<NaiveDateTime> {
    let b = text.trim().as_bytes();
    if b.len() == 19 && b[4] == b'-' && b[7] == b'-' && b[10] == b' ' && b[13] == b':' && b[16] == b':' {
        let num =
            |from: usize, to: usize| b[from..to].iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')));
        let parts = (num(0, 4), num(5, 7), num(8, 10), num(11, 13), num(14, 16), num(17, 19));
        if let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(s)) = parts {
            let t = NaiveDate::from_ymd_opt(y as i32, mo, d).and_then(|d| d.and_hms_opt(h, mi, s));
            if t.is_some() {
                return t;
            }
        }
    }
    parse_timestamp_in(text, tz)
}

/// 整改完成时间: empty, or a plausible time up to a year ahead.
fn read_rectified(text: &str, now: NaiveDateTime, tz: chrono_tz::Tz) -> Result<Option<NaiveDateTime>, Rejection> {
    if text.is_empty() {
        return Ok(None);
    }
    let t =
        read_timestamp(text, tz).ok_or_else(|| (Field::RectifiedAt.name().to_string(), format!("整改完成时间“{}”无法识别", clip(text))))?;
    // Up to a year ahead: a planned date typed into the column is
    // plausible, 9999-12-31 is not.
    let latest = now + chrono::Duration::days(366);
    if t < earliest_plausible() || t > latest {
        return Err((
            Field::RectifiedAt.name().to_string(),
            format!(
                "整改完成时间“{text}”不在2000-01-01至{}之间，不是可信的日期（常见于占位值9999-12-31或年份录错）",
                latest.format("%Y-%m-%d")
            ),
        ));
    }
    Ok(Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymity_and_float_tails_as_exports_write_them() {
        for t in ["是", "匿名", "1", "true", "TRUE", "True", "Y", "y", "yes", "YES"] {
            assert!(anonymous_flag(t), "{t}");
        }
        for t in ["", "否", "实名", "0", "2", "false", "FALSE", "N", "no", "是否"] {
            assert!(!anonymous_flag(t), "{t}");
        }
        assert_eq!(without_float_tail("369901001001.0"), "369901001001");
        for t in ["369901001001", "LJ2025.0", ".0", "12.00", "12.5", "1.0.0"] {
            assert_eq!(without_float_tail(t), t);
        }
    }

    #[test]
    fn each_field_is_the_slot_of_its_name_in_the_default_headers() {
        // The canonical fields as the configuration knows them, in order, then the mark.
        let names: Vec<&str> = Field::ALL.iter().map(|f| f.name()).collect();
        let expected: Vec<&str> = crate::model::RATING_FIELDS.iter().copied().chain([DEFAULT_MARK]).collect();
        assert_eq!(names, expected);
        // Each variant is the field it is called: `RatedAt` is "rated_at".
        let snake = |f: &Field| {
            format!("{f:?}").chars().enumerate().fold(String::new(), |mut s, (i, c)| {
                if c.is_uppercase() && i > 0 {
                    s.push('_');
                }
                s.push(c.to_ascii_lowercase());
                s
            })
        };
        let called: Vec<String> = Field::ALL[..crate::model::RATING_FIELDS.len()].iter().map(snake).collect();
        assert_eq!(called, crate::model::RATING_FIELDS);
        for (k, f) in Field::ALL.iter().enumerate() {
            assert_eq!(*f as usize, k, "{f:?}");
        }
        let slots = FieldSlots::find(|name| (name == "comment").then_some(7));
        assert_eq!(Field::ALL.iter().filter_map(|&f| slots.of(f)).collect::<Vec<_>>(), [7]);
        assert_eq!(slots.of(Field::Comment), Some(7));
    }

    /// The id is the 办件编号 and the number as the number reads, whatever
    /// the feed's text of it.
    #[test]
    fn a_rating_id_carries_the_number_as_read() {
        for (text, times, id) in
            [("3", 3, "P9-3"), ("12", 12, "P9-12"), ("01", 1, "P9-1"), ("+2", 2, "P9-2"), ("", 1, "P9-1"), ("0", 0, "P9-0")]
        {
            let parsed: u32 = if text.is_empty() { 1 } else { text.parse().expect("a number") };
            assert_eq!(parsed, times, "{text}");
            assert_eq!(rating_id("P9", parsed), id, "{text:?}");
            assert_eq!(rating_id("P9", parsed), format!("P9-{times}"), "{text:?}");
        }
    }

    /// A repeated text is one allocation however many ratings carry it,
    /// and a field that never repeats stops growing the set at its cap.
    #[test]
    fn repeated_texts_are_shared_and_the_set_is_bounded() {
        let shared = SharedText::default();
        let (a, b) = (shared.get("369901001001"), shared.get(&String::from("369901001001")));
        assert!(Arc::ptr_eq(&a, &b), "the same text twice is one copy");
        assert!(!Arc::ptr_eq(&a, &shared.get("369901001002")));
        for k in 0..SHARED_TEXT_MAX + 10 {
            assert_eq!(&*shared.get(&format!("事项{k}")), format!("事项{k}"));
        }
        assert_eq!(shared.0.borrow().len(), SHARED_TEXT_MAX);
        let late = format!("事项{}", SHARED_TEXT_MAX + 5);
        assert!(!Arc::ptr_eq(&shared.get(&late), &shared.get(&late)), "past the cap a text is copied, not kept");
    }

    #[test]
    fn the_quick_timestamp_reading_agrees_with_the_formats() {
        for text in [
            "2026-10-03 14:22:05",
            " 2026-10-03 14:22:05 ",
            "2026-02-29 10:00:00",
            "2028-02-29 10:00:00",
            "2026-10-03 24:00:00",
            "2026-10-03 23:59:60",
            "2026-13-03 14:22:05",
            "0001-01-01 00:00:00",
            "2026-1-3 14:22:05",
            "2026/10/03 14:22:05",
            "2026-10-03T14:22:05",
            "20261003142205",
            "2026-10-03 14:22",
            "2026-10-03 14:2x:05",
            "+2026-10-03 14:22",
            "",
        ] {
            let tz = chrono_tz::Asia::Shanghai;
            assert_eq!(read_timestamp(text, tz), parse_timestamp_in(text, tz), "{text:?}");
        }
    }
}
