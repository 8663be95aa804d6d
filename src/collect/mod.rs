//! Collect: read what sources deliver and normalise it into canonical
//! records, setting aside every row that cannot be used with its reason.
//!
//! This stage does not write the store. It hands the pipeline a [`Fetched`]
//! payload (the raw bytes, to be landed as received) and a [`Parsed`] batch
//! (good records plus quarantine rows); the pipeline lands, commits, and only
//! then tells the source the payload is done ([`finish_file`]), so a crash in
//! between means the payload is read again, never lost.

mod api_paging;
mod http_api;
mod json_page;
mod rating_file;
mod table;
mod wjx_api;
mod wjx_export;

pub use api_paging::{ApiBatch, ApiPager, ApiStep, PagingError, next_watermark};
pub use http_api::{
    Ahead, ApiError, CATCH_UP, HAOCHAPING_FIELDS, HttpSource, Page, PageFault, ReadPage, Window, api_quarantine_headers,
    parse_haochaping_page, sign_haochaping,
};
pub use rating_file::{Part, PartSink, parse_rating_csv_stream, parse_rating_file, parse_rating_file_in_parts, parse_rating_gbk_stream};
pub use table::{GbkHead, Table, decode_text, looks_gbk, looks_utf8, read_table};
pub use wjx_api::{WjxPage, fetch_wjx_page, parse_wjx_page, sign_wjx};
pub use wjx_export::parse_wjx_export;

// Re-exported for the readers of this stage; it lives in `model` because
// config checks `[source.api] start` with it too.
pub use crate::model::{parse_timestamp, parse_timestamp_in};

use crate::model::{Rating, SurveyResponse};
use crate::store::QuarantineRow;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Errors of the collect stage.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The whole file is unusable (not a table, required header missing …).
    #[error("{file}: {reason}")]
    BadFile {
        /// The file.
        file: String,
        /// Why, in words a clerk can act on.
        reason: String,
    },
    /// The file cannot be read as the source is configured (numeric levels
    /// without `level_codes`): it stays in the inbox until the setting is fixed.
    #[error("{file}: {reason}")]
    Held {
        /// The file.
        file: String,
        /// What to change, in words a clerk can act on.
        reason: String,
    },
    /// The inbox could not be read or a file could not be moved.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A payload as received, before parsing.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The file in the inbox it came from.
    pub path: PathBuf,
    /// File name, for messages.
    pub name: String,
    /// Extension to land it under.
    pub ext: String,
    /// The bytes exactly as received.
    pub bytes: Vec<u8>,
}

/// Records parsed from one payload.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// Good ratings.
    pub ratings: Vec<Rating>,
    /// Good questionnaire responses.
    pub responses: Vec<SurveyResponse>,
    /// Headers of the payload, for the quarantine file.
    pub headers: Vec<String>,
    /// Rejected rows with their reasons.
    pub rejected: Vec<QuarantineRow>,
    /// Rows read (good + rejected).
    pub rows_read: usize,
    /// Encoding that was detected.
    pub encoding: &'static str,
    /// Values of coded fields that neither the source's maps nor the
    /// built-in synonyms know, with the rows that carried them.
    pub unrecognised: Unrecognised,
    /// Things the clerk must know about the payload (a mapped optional
    /// column the file lacks …), one line each.
    pub notes: Vec<String>,
    /// What the inversion guard looks at.
    pub guard: GuardCounts,
}

/// Canonical field → value as the feed sent it → rows.
pub type Unrecognised = BTreeMap<String, BTreeMap<String, usize>>;

/// Adds `more` into `into`.
pub fn merge_unrecognised(into: &mut Unrecognised, more: &Unrecognised) {
    for (field, values) in more {
        let slot = into.entry(field.clone()).or_default();
        for (value, n) in values {
            *slot.entry(value.clone()).or_default() += n;
        }
    }
}

/// Ratings with a numeric level that carry a reason code or a comment, by side.
///
/// The inversion guard: in real data 差评 carry reason codes (evalDetail)
/// and comments far more often than 好评. A batch with at least
/// [`GuardCounts::MIN_CARRYING`] such ratings of which more than 70 % are on
/// the good side (非常满意/满意 as the numbers were read) is taken for an
/// inverted level direction and held. Levels given as words cannot be
/// inverted and are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GuardCounts {
    /// Numeric-level ratings with a reason code or a non-empty comment.
    pub carrying: usize,
    /// Of those, read as 非常满意 or 满意.
    pub good: usize,
    /// Of those, read as 不满意 or 非常不满意.
    pub bad: usize,
}

impl GuardCounts {
    /// Fewer carrying ratings than this say nothing either way.
    pub const MIN_CARRYING: usize = 20;

    /// Adds `other`.
    pub fn add(&mut self, other: GuardCounts) {
        self.carrying += other.carrying;
        self.good += other.good;
        self.bad += other.bad;
    }

    /// Whether the batch looks inverted: ≥ 20 carrying and good > 70 % of them.
    pub fn suspicious(&self) -> bool {
        self.carrying >= Self::MIN_CARRYING && self.good * 10 > self.carrying * 7
    }
}

impl Parsed {
    /// Keeps a good rating and counts it for the inversion guard.
    pub(crate) fn add_rating(&mut self, read: rating_file::ReadRating) {
        self.rows_read += 1;
        let r = &read.rating;
        if read.numeric_level && (!r.reason_tags.trim().is_empty() || !r.comment.trim().is_empty()) {
            self.guard.carrying += 1;
            match r.level.code() {
                4 | 5 => self.guard.good += 1,
                1 | 2 => self.guard.bad += 1,
                _ => {}
            }
        }
        self.ratings.push(read.rating);
    }

    /// Adds another payload's unrecognised values, notes and guard counts.
    pub fn absorb_findings(&mut self, other: &Parsed) {
        merge_unrecognised(&mut self.unrecognised, &other.unrecognised);
        self.notes.extend(other.notes.iter().cloned());
        self.guard.add(other.guard);
    }
}

/// A file waiting in an inbox, not read yet: a month of a province's ratings
/// is hundreds of megabytes, so files are read one at a time.
#[derive(Debug, Clone)]
pub struct InboxFile {
    /// Where it is.
    pub path: PathBuf,
    /// File name, for messages.
    pub name: String,
    /// Extension (lower case) to land it under.
    pub ext: String,
}

impl InboxFile {
    /// Reads the file's bytes exactly as they are.
    pub fn read(&self) -> Result<Fetched, CollectError> {
        let bytes = fs::read(&self.path).map_err(|source| CollectError::Io { path: self.path.clone(), source })?;
        Ok(Fetched { path: self.path.clone(), name: self.name.clone(), ext: self.ext.clone(), bytes })
    }
}

/// The files waiting in an inbox, oldest name first. Hidden files, the
/// owner files Excel and WPS keep beside a workbook they have open (`~$`),
/// and files still being copied in (`.tmp`, `.part`) are left alone; any
/// other file manyi cannot read (a WPS `.et`, a `.zip`) is left too, with
/// a warning each run, so that it is not left unnoticed.
pub fn list_inbox(inbox: &Path) -> Result<Vec<InboxFile>, CollectError> {
    let io = |source| CollectError::Io { path: inbox.to_path_buf(), source };
    fs::create_dir_all(inbox).map_err(io)?;
    let mut out = Vec::new();
    let mut paths: Vec<PathBuf> =
        fs::read_dir(inbox).map_err(io)?.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
        if name.starts_with('.') || name.starts_with("~$") || matches!(ext.as_str(), "tmp" | "part" | "crdownload") {
            continue;
        }
        if !matches!(ext.as_str(), "csv" | "xlsx" | "xls" | "txt") {
            tracing::warn!(
                inbox = %inbox.display(),
                file = %name,
                "file left in the inbox unread: 只能读取CSV、TXT、XLSX或XLS文件，请另存为其中一种后重新放入"
            );
            continue;
        }
        out.push(InboxFile { path, name, ext });
    }
    Ok(out)
}

/// Moves a processed payload out of the inbox: to `archive/` when it was
/// ingested, or to `rejected/` with a `.reason.txt` beside it. `None` when
/// the file has left the inbox already: another collect of the same inbox
/// (a second terminal, `serve` and an operator at once) read it too, and
/// moved it first. Its commit stored nothing twice (the record keys saw to
/// that), so there is nothing left to do and nothing to fail.
pub fn finish_file(inbox: &Path, fetched: &Fetched, rejected: Option<&str>) -> Result<Option<PathBuf>, CollectError> {
    let sub = if rejected.is_some() { "rejected" } else { "archive" };
    let dir = inbox.join(sub);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CollectError::Io { path, source }
    };
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let mut target = dir.join(&fetched.name);
    // Never overwrite an archived file of the same name: an office may resend
    // a corrected file under the old name, and both must stay on record.
    let mut k = 1;
    while target.exists() {
        target = dir.join(format!("{}.{k}", fetched.name));
        k += 1;
    }
    if !fetched.path.exists() {
        return Ok(None);
    }
    if let Some(reason) = rejected {
        let reason_path = PathBuf::from(format!("{}.reason.txt", target.display()));
        fs::write(&reason_path, format!("{reason}\n")).map_err(io(&reason_path))?;
    }
    match fs::rename(&fetched.path, &target) {
        Ok(()) => Ok(Some(target)),
        // Moved by the other collect between the look and the move.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !fetched.path.exists() => Ok(None),
        Err(e) => Err(CollectError::Io { path: target, source: e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inbox_lists_what_manyi_reads_and_leaves_the_rest() {
        let dir = tempfile::tempdir().expect("tmp");
        for name in ["b.xls", "a.CSV", "~$a.xlsx", ".hidden.csv", "c.txt", "d.et", "e.part", "f.xlsx.tmp", "g.xlsx"] {
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        std::fs::create_dir(dir.path().join("archive.csv")).expect("a folder");
        let listed: Vec<String> = list_inbox(dir.path()).expect("list").into_iter().map(|f| f.name).collect();
        assert_eq!(listed, ["a.CSV", "b.xls", "c.txt", "g.xlsx"]);
    }
}
