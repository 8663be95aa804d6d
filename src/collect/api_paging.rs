//! Paging an API source (好差评 platform or 问卷星 OpenAPI) from its
//! watermark, and the watermark arithmetic.
//!
//! Like the rest of collect this writes nothing: [`ApiPager`] yields each page
//! as received (to be landed before anything else happens) and, every
//! `commit_every` pages and at the end, the records gathered since the last
//! commit point with the watermark to commit them with. The pipeline lands
//! and commits. Nothing the pager fetches depends on a commit (it works out
//! each watermark itself), so the pipeline may ask for the next page while
//! the last batch commits; a failed commit ends the run, and what was
//! fetched ahead is not committed (the next run fetches it again from the
//! watermark).

use super::{Ahead, ApiError, CATCH_UP, CollectError, HttpSource, Parsed, Window, parse_timestamp};
use crate::config::{ApiConfig, Config, SourceConfig, SourceKind};
use chrono::NaiveDateTime;
use std::collections::VecDeque;

/// Why paging an API source stopped.
#[derive(Debug, thiserror::Error)]
pub enum PagingError {
    /// The source has no `[source.api]` table.
    #[error("an API source needs a [source.api] table")]
    NoApiTable,
    /// Setting up the client or fetching a page failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A page was fetched but could not be read as answers.
    #[error("page {page}: {error}")]
    Parse {
        /// Page number (1-based).
        page: u32,
        /// What was wrong (not a `source`: its text is already in ours).
        error: CollectError,
    },
}

/// One page as received, and the batch it completes, if it completes one.
#[derive(Debug)]
pub struct ApiStep {
    /// Page number (1-based).
    pub number: u32,
    /// The body exactly as received: to be landed before `commit` is.
    pub bytes: Vec<u8>,
    /// Records on the page.
    pub count: usize,
    /// Records in the window, once the source has said.
    pub total: Option<u64>,
    /// Set at a commit point: the records since the last one, this page's included.
    pub commit: Option<ApiBatch>,
}

/// What an API source fetched between two commit points.
#[derive(Debug, Default)]
pub struct ApiBatch {
    /// Commit points so far in this run, this one included (1-based).
    pub chunk: u32,
    /// Pages the batch holds.
    pub pages: Vec<u32>,
    /// Their records and rejected rows.
    pub parsed: Parsed,
    /// The watermark to commit with the batch.
    pub watermark: Option<String>,
}

impl ApiBatch {
    /// Nothing to commit (the pages were empty); the watermark stays.
    pub fn is_empty(&self) -> bool {
        self.parsed.ratings.is_empty() && self.parsed.responses.is_empty() && self.parsed.rejected.is_empty()
    }

    /// Adds a page; `expected` is how many ratings the batch will likely
    /// hold, reserved at its first page so that a batch of 100,000 is not
    /// copied over and over as it grows.
    fn add(&mut self, number: u32, parsed: Parsed, expected: usize) {
        if self.pages.is_empty() {
            self.parsed.ratings.reserve(expected);
        }
        self.pages.push(number);
        self.parsed.absorb_findings(&parsed);
        self.parsed.rows_read += parsed.rows_read;
        self.parsed.ratings.extend(parsed.ratings);
        self.parsed.responses.extend(parsed.responses);
        self.parsed.rejected.extend(parsed.rejected);
        if self.parsed.headers.is_empty() {
            self.parsed.headers = parsed.headers;
        }
    }
}

/// The watermark after committing records whose latest time is `latest`:
/// the later of that and the old mark (never moved back), marked as a
/// catch-up when the run stopped at the page limit with more to fetch.
pub fn next_watermark(latest: Option<NaiveDateTime>, old: Option<&str>, catch_up: bool) -> Option<String> {
    let old = old.map(|m| m.trim_end_matches(CATCH_UP)).and_then(parse_timestamp);
    let time = match (latest, old) {
        (Some(l), Some(m)) => Some(l.max(m)),
        (l, m) => l.or(m),
    };
    let suffix = if catch_up { CATCH_UP } else { "" };
    time.map(|t| format!("{}{suffix}", t.format("%Y-%m-%d %H:%M:%S")))
}

/// A page of either API, before it joins the pending batch.
struct FetchedPage {
    number: u32,
    bytes: Vec<u8>,
    parsed: Parsed,
    /// Records on the page (good and rejected).
    count: usize,
    total: Option<u64>,
}

/// Pages one API source from its watermark (minus the overlap) to now.
pub struct ApiPager<'a> {
    cfg: &'a Config,
    src: &'a SourceConfig,
    api: &'a ApiConfig,
    client: HttpSource,
    window: Window,
    now_local: NaiveDateTime,
    mark: Option<String>,
    pending: ApiBatch,
    chunk: u32,
    page: u32,
    total: Option<u64>,
    done: bool,
    /// The requests for the next pages, sent while this one was read.
    ahead: VecDeque<Ahead>,
}

impl<'a> ApiPager<'a> {
    /// A pager starting from `watermark` (the source's committed one), at `now_local`.
    pub fn new(cfg: &'a Config, src: &'a SourceConfig, watermark: Option<String>, now_local: NaiveDateTime) -> Result<Self, PagingError> {
        let api = src.api.as_ref().ok_or(PagingError::NoApiTable)?;
        let client = HttpSource::new(&src.name, api)?;
        let window = Window::for_run(watermark.as_deref(), api, now_local);
        Ok(ApiPager {
            cfg,
            src,
            api,
            client,
            window,
            now_local,
            mark: watermark,
            pending: ApiBatch::default(),
            chunk: 0,
            page: 1,
            total: None,
            done: false,
            ahead: VecDeque::new(),
        })
    }

    /// Page `page` as received, with its records parsed.
    fn fetch(&mut self, page: u32) -> Result<FetchedPage, PagingError> {
        Ok(match self.src.kind {
            SourceKind::WjxApi => {
                let p = super::fetch_wjx_page(&self.client, self.cfg, self.src, &self.window, page)?;
                let parsed = super::parse_wjx_page(self.cfg, self.src, &p).map_err(|error| PagingError::Parse { page, error })?;
                FetchedPage { number: p.number, count: p.rows.len(), bytes: p.bytes, parsed, total: p.total }
            }
            _ => {
                // Requests go ahead only for pages the platform's total says
                // exist and the page limit allows (none before the first
                // page has told the total).
                let size = u64::from(self.api.page_size).max(1);
                let last_page = self.total.map_or(page, |t| u32::try_from(t.div_ceil(size)).unwrap_or(u32::MAX));
                let ask_until = page.saturating_add(self.api.requests_ahead).min(self.api.page_limit).min(last_page);
                let p = self.client.fetch_haochaping(self.cfg, self.src, &self.window, page, self.now_local, &mut self.ahead, ask_until)?;
                FetchedPage { number: p.number, count: p.count, bytes: p.bytes, parsed: p.parsed, total: p.total }
            }
        })
    }

    /// Closes the pending batch at a commit point, with its watermark.
    fn seal(&mut self, catch_up: bool) -> ApiBatch {
        self.chunk += 1;
        let mut batch = std::mem::take(&mut self.pending);
        batch.chunk = self.chunk;
        let parsed = &batch.parsed;
        let latest = parsed.ratings.iter().map(|r| r.rated_at).chain(parsed.responses.iter().map(|r| r.submitted_at)).max();
        if batch.is_empty() {
            // Nothing is committed, so the mark stays where it is.
            batch.watermark = self.mark.clone();
        } else {
            batch.watermark = next_watermark(latest, self.mark.as_deref(), catch_up);
            self.mark = batch.watermark.clone();
        }
        batch
    }

    fn step(&mut self) -> Result<ApiStep, PagingError> {
        let page = self.page;
        let FetchedPage { number, bytes, parsed, count, total } = self.fetch(page)?;
        self.total = self.total.or(total);
        // No more than the platform's total says the window holds (a nightly
        // run of a few hundred ratings must not reserve a batch of 100,000),
        // and at most a million whatever the settings.
        let batch = (self.api.commit_every as usize).saturating_mul(self.api.page_size as usize);
        let expected = batch.min(self.total.map_or(count, |t| usize::try_from(t).unwrap_or(usize::MAX))).min(1 << 20);
        self.pending.add(number, parsed, if self.src.kind == SourceKind::WjxApi { 0 } else { expected });
        // 问卷星 serves at most 50 answers a page whatever is asked for.
        let size = if self.src.kind == SourceKind::WjxApi { self.api.page_size.min(50) } else { self.api.page_size } as usize;
        let last = count == 0 || count < size || self.total.is_some_and(|t| u64::from(page) * size as u64 >= t);
        let limit = page >= self.api.page_limit;
        let commit = (last || limit || self.pending.pages.len() >= self.api.commit_every as usize).then(|| self.seal(limit && !last));
        if last {
            self.done = true;
        } else if limit {
            tracing::warn!(source = %self.src.name, pages = page, "page limit reached; the rest comes in the next run");
            self.done = true;
        } else {
            self.page += 1;
        }
        Ok(ApiStep { number, bytes, count, total: self.total, commit })
    }
}

impl Iterator for ApiPager<'_> {
    type Item = Result<ApiStep, PagingError>;

    /// The next page; after an error, nothing more (what is pending was not committed).
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let step = self.step();
        if step.is_err() {
            self.done = true;
        }
        Some(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> Option<NaiveDateTime> {
        parse_timestamp(text)
    }

    #[test]
    fn the_watermark_never_moves_back_and_marks_a_catch_up() {
        assert_eq!(next_watermark(t("2026-10-03 09:00:00"), None, false).as_deref(), Some("2026-10-03 09:00:00"));
        // Late records older than the mark leave it where it is.
        assert_eq!(next_watermark(t("2026-10-01 09:00:00"), Some("2026-10-03 09:00:00"), false).as_deref(), Some("2026-10-03 09:00:00"));
        // A run cut short by the page limit marks where the next one resumes; the next mark drops the suffix.
        let cut = next_watermark(t("2026-10-05 10:00:00"), Some("2026-10-03 09:00:00"), true);
        assert_eq!(cut.as_deref(), Some("2026-10-05 10:00:00 catch-up"));
        assert_eq!(next_watermark(t("2026-10-06 08:00:00"), cut.as_deref(), false).as_deref(), Some("2026-10-06 08:00:00"));
        // Rejected rows only: the old mark stays.
        assert_eq!(next_watermark(None, Some("2026-10-03 09:00:00"), false).as_deref(), Some("2026-10-03 09:00:00"));
        assert_eq!(next_watermark(None, None, false), None);
    }
}
