//! HTTP sources: the transport shared by the 好差评 platform and the 问卷星
//! OpenAPI (timeouts, retries under [`crate::retry::Backoff`], Retry-After),
//! the 好差评 request signature, and the mapping of 好差评 JSON records to
//! canonical ratings through the source's field table.
//!
//! This module fetches and parses; it never writes the store. The pipeline
//! lands every page as received and commits the parsed records.

use super::json_page::{Lite, RawRecord, Records};
use super::rating_file::{DEFAULT_MARK, Field, FieldSlots, Rules, normalise_rating};
use super::{Parsed, parse_timestamp};
use crate::config::{ApiConfig, Config, SignatureEncoding, SourceConfig, find_category};
use crate::retry::Backoff;
use crate::store::QuarantineRow;
use chrono::{Duration, NaiveDateTime};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::borrow::Cow;
use std::collections::VecDeque;

/// Errors of an HTTP source. Each names the source and, where there is one,
/// the page, so that a clerk can tell the platform's operators what failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The secret's environment variable is not set.
    #[error("source “{name}”: environment variable {var} (api.secret_env) is not set; export the platform secret there before collecting")]
    MissingSecret {
        /// Source name.
        name: String,
        /// The variable's name.
        var: String,
    },
    /// The HTTP client could not be built.
    #[error("source “{name}”: cannot set up the HTTP client: {reason}")]
    Client {
        /// Source name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The platform refused the credentials or the signature.
    #[error(
        "source “{name}”, page {page}: the platform refused the request (HTTP {status}): {body}; check api.app_key and the secret in ${var}"
    )]
    Unauthorized {
        /// Source name.
        name: String,
        /// Page number (1-based).
        page: u32,
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
        /// The secret's variable.
        var: String,
    },
    /// A page could not be fetched intact, after every retry.
    #[error("source “{name}”, page {page}: {reason} (gave up after {attempts} attempt(s)); nothing of this batch was committed")]
    Page {
        /// Source name.
        name: String,
        /// Page number (1-based).
        page: u32,
        /// Attempts made.
        attempts: u32,
        /// What was wrong with the last attempt.
        reason: String,
    },
}

/// One page as received, with its records read.
#[derive(Debug, Clone)]
pub struct Page {
    /// Page number (1-based).
    pub number: u32,
    /// The body exactly as received (landed as is).
    pub bytes: Vec<u8>,
    /// Records on the page (good and rejected).
    pub count: usize,
    /// Its records normalised, and the rejected ones with their reasons.
    pub parsed: Parsed,
    /// Total records in the window, when the platform says.
    pub total: Option<u64>,
    /// Requests it took (1 + retries).
    pub attempts: u32,
}

/// Why a page body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageFault {
    /// The body is not intact JSON (cut off, garbled): worth another request.
    Broken(String),
    /// The body is JSON but not a page (no record array): asking again gives the same.
    NotAPage(String),
}

/// A page's records read and normalised, as [`parse_haochaping_page`] returns them.
#[derive(Debug, Clone)]
pub struct ReadPage {
    /// Records on the page (good and rejected).
    pub count: usize,
    /// Good ratings and rejected records.
    pub parsed: Parsed,
    /// Total records in the window, when the platform says.
    pub total: Option<u64>,
}

/// Suffix of a watermark left by a run that stopped at `page_limit`.
pub const CATCH_UP: &str = " catch-up";

/// The time window a run asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// From (inclusive), local wall time.
    pub begin: NaiveDateTime,
    /// To (inclusive), local wall time.
    pub end: NaiveDateTime,
}

impl Window {
    /// The window of a run at `now`: from the watermark minus the overlap (so
    /// late and updated records come again), or from `api.start`, or 30 days
    /// back on a first run.
    pub fn for_run(watermark: Option<&str>, api: &ApiConfig, now: NaiveDateTime) -> Window {
        let overlap = Duration::hours(i64::from(api.overlap_hours));
        // A run cut short by the page limit leaves a catch-up mark: the next
        // run resumes right there, or a backlog larger than the overlap could
        // never be worked off.
        let (mark, catching_up) = match watermark.map(|w| w.strip_suffix(CATCH_UP)) {
            Some(Some(w)) => (Some(w), true),
            Some(None) => (watermark, false),
            None => (None, false),
        };
        let begin = match mark.and_then(parse_timestamp) {
            Some(w) if catching_up => w,
            Some(w) => w - overlap,
            None => api.start.as_deref().and_then(parse_timestamp).unwrap_or(now - Duration::days(30)),
        };
        Window { begin, end: now }
    }
}

/// HMAC-SHA256 over `timestamp` followed by `body`, keyed with `secret`,
/// encoded as the source says. This is the whole 好差评 signature rule; a
/// province that signs differently changes this one function.
pub fn sign_haochaping(secret: &[u8], timestamp: &str, body: &[u8], encoding: SignatureEncoding) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return String::new() };
    mac.update(timestamp.as_bytes());
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    match encoding {
        SignatureEncoding::Hex => hex::encode(tag),
        SignatureEncoding::Base64 => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(tag)
        }
    }
}

/// Computes the extra headers (app key, timestamp, signature) of a request body.
pub type SignHeaders<'a> = dyn Fn(&[u8]) -> Vec<(String, String)> + 'a;

/// Sends the requests for the pages after the one just received into the
/// queue of requests ahead, those it does not hold yet.
type TopUp<'a> = dyn Fn(&mut VecDeque<Ahead>) + 'a;

/// What one attempt at a page came to.
enum Attempt {
    Done(Vec<u8>),
    /// Worth another try; with the platform's Retry-After, if it gave one.
    Retry(String, Option<std::time::Duration>),
    Fatal(ApiError),
}

/// A blocking HTTP client for one source, with its retry policy.
pub struct HttpSource {
    api: ApiConfig,
    secret: Vec<u8>,
    requester: Requester,
}

/// What one request needs, owned, so that a request can go ahead on a
/// thread of its own ([`Ahead`]).
#[derive(Clone)]
struct Requester {
    name: String,
    secret_env: String,
    http: reqwest::blocking::Client,
}

/// The first request for a page, sent while a page before it is read: the
/// platform prepares the next pages (and the network carries them) while
/// this side reads the last one, instead of each waiting for the other. At
/// most `requests_ahead` requests are ahead, and only for pages the
/// window's total says exist; an answer counts as its page's first attempt
/// (retried as any other). Dropped unanswered when the run stops first.
///
/// One request ahead was not enough on the benchmark: with the committing
/// threads busy, the platform's answer came in after the page before it had
/// been read, and the reader waited 1.1 ms a page for it.
pub struct Ahead {
    page: u32,
    answer: std::thread::JoinHandle<Attempt>,
}

impl HttpSource {
    /// Builds the client; reads the secret from the environment.
    pub fn new(name: &str, api: &ApiConfig) -> Result<HttpSource, ApiError> {
        let secret = std::env::var(&api.secret_env)
            .map_err(|_| ApiError::MissingSecret { name: name.into(), var: api.secret_env.clone() })?
            .into_bytes();
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(api.connect_timeout_secs))
            .timeout(std::time::Duration::from_secs(api.timeout_secs))
            .user_agent(concat!("manyi/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Client { name: name.into(), reason: e.to_string() })?;
        let requester = Requester { name: name.into(), secret_env: api.secret_env.clone(), http };
        Ok(HttpSource { api: api.clone(), secret, requester })
    }

    /// The secret, for signatures computed by the caller (问卷星).
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// POSTs `make_body()` for `page`, retrying on 429, 5xx, broken
    /// connections, cut-off bodies and bodies that are not JSON; each attempt
    /// is built afresh so that timestamps and signatures are current.
    /// `headers` adds signature headers for a body.
    pub fn post_page(
        &self,
        page: u32,
        url: &str,
        make_body: &dyn Fn() -> Vec<u8>,
        headers: &SignHeaders<'_>,
    ) -> Result<(Vec<u8>, Value, u32), ApiError> {
        let read = |bytes: &[u8]| {
            serde_json::from_slice::<Value>(bytes)
                .map_err(|e| PageFault::Broken(format!("the page is not valid JSON ({e}); it may have been cut off")))
        };
        let (bytes, json, attempts) = self.post_page_read(page, url, make_body, headers, &read, &mut VecDeque::new(), &|_| {})?;
        Ok((bytes, json, attempts))
    }

    /// [`Self::post_page`] with the body read by `read`: a body it finds
    /// broken is fetched again, one that is no page fails the page at once.
    /// `ahead` holds the requests sent earlier, in page order; this page's,
    /// if at its front, is taken as the first attempt. `top_up` sends the
    /// next pages' requests into `ahead` when this page's body has arrived,
    /// before it is read; it sends only what `ahead` lacks, so a body
    /// fetched again calls it again for nothing.
    #[allow(clippy::too_many_arguments)] // one page's request, its reading and the next pages'
    fn post_page_read<T>(
        &self,
        page: u32,
        url: &str,
        make_body: &dyn Fn() -> Vec<u8>,
        headers: &SignHeaders<'_>,
        read: &dyn Fn(&[u8]) -> Result<T, PageFault>,
        ahead: &mut VecDeque<Ahead>,
        top_up: &TopUp<'_>,
    ) -> Result<(Vec<u8>, T, u32), ApiError> {
        let policy = self.backoff();
        let mut attempt = 0;
        // A request ahead for an earlier page (none is sent, but a caller
        // could skip one) has no reader: dropped, its thread finishes alone.
        while ahead.front().is_some_and(|a| a.page < page) {
            ahead.pop_front();
        }
        loop {
            attempt += 1;
            let sent = match ahead.front() {
                Some(a) if a.page == page => ahead.pop_front(),
                _ => None,
            };
            let outcome = match sent {
                Some(a) => a.answer.join().unwrap_or_else(|_| Attempt::Retry("the request sent ahead was lost".into(), None)),
                None => {
                    let body = make_body();
                    self.requester.attempt(page, url, &body, headers(&body))
                }
            };
            let (reason, retry_after) = match outcome {
                Attempt::Done(bytes) => {
                    top_up(ahead);
                    match read(&bytes) {
                        Ok(v) => return Ok((bytes, v, attempt)),
                        Err(PageFault::Broken(reason)) => (reason, None),
                        Err(PageFault::NotAPage(reason)) => {
                            return Err(ApiError::Page { name: self.requester.name.clone(), page, attempts: attempt, reason });
                        }
                    }
                }
                Attempt::Retry(reason, after) => (reason, after),
                Attempt::Fatal(e) => return Err(e),
            };
            let Some(wait) = policy.wait_after(attempt, retry_after) else {
                return Err(ApiError::Page { name: self.requester.name.clone(), page, attempts: attempt, reason });
            };
            tracing::warn!(source = %self.requester.name, page, attempt, %reason, wait_ms = wait.as_millis() as u64, "retrying page");
            std::thread::sleep(wait);
        }
    }

    /// Sends the first request for `page` now, on a thread of its own.
    fn send_ahead(&self, page: u32, url: &str, body: Vec<u8>, headers: Vec<(String, String)>) -> Ahead {
        tracing::debug!(source = %self.requester.name, page, "request sent ahead");
        let (requester, url) = (self.requester.clone(), url.to_string());
        Ahead { page, answer: std::thread::spawn(move || requester.attempt(page, &url, &body, headers)) }
    }

    /// The source's retry policy. `max_retries` counts retries after the
    /// first request, as configured; the policy counts tries.
    fn backoff(&self) -> Backoff {
        Backoff::retries(
            self.api.max_retries,
            std::time::Duration::from_millis(self.api.backoff_ms),
            std::time::Duration::from_millis(self.api.max_backoff_ms),
        )
    }

    /// Fetches page `page` (1-based) of the 好差评 window and reads its
    /// records as `source` maps them (see [`parse_haochaping_page`]).
    /// `ahead` holds the requests sent ahead for this and later pages; as
    /// soon as this page's body is in, requests for the pages after it up
    /// to `ask_until` go ahead too and wait in `ahead` for their turn.
    ///
    /// Request: POST `base_url + path` with the JSON body
    /// `{"page": N, "size": S, "startTime": "YYYY-MM-DD HH:MM:SS", "endTime": …}`
    /// and the app key, timestamp and signature headers. Response: JSON with
    /// the record array at `records_path` and the total at `total_path`.
    #[allow(clippy::too_many_arguments)] // the page, its window and context, and the request ahead
    pub fn fetch_haochaping(
        &self,
        cfg: &Config,
        source: &SourceConfig,
        window: &Window,
        page: u32,
        now: NaiveDateTime,
        ahead: &mut VecDeque<Ahead>,
        ask_until: u32,
    ) -> Result<Page, ApiError> {
        let url = format!("{}{}", self.api.base_url.trim_end_matches('/'), self.api.path);
        let fmt = "%Y-%m-%d %H:%M:%S";
        let body_of = |page: u32| {
            serde_json::json!({
                "page": page,
                "size": self.api.page_size,
                "startTime": window.begin.format(fmt).to_string(),
                "endTime": window.end.format(fmt).to_string(),
            })
            .to_string()
            .into_bytes()
        };
        let headers = |body: &[u8]| {
            let ts = chrono::Utc::now().timestamp_millis().to_string();
            let sig = sign_haochaping(&self.secret, &ts, body, self.api.signature);
            vec![
                (self.api.header_app_key.clone(), self.api.app_key.clone()),
                (self.api.header_timestamp.clone(), ts),
                (self.api.header_signature.clone(), sig),
            ]
        };
        let read = |bytes: &[u8]| parse_haochaping_page(cfg, source, page, bytes, now);
        let top_up = |queue: &mut VecDeque<Ahead>| {
            let from = queue.back().map_or(page, |a| a.page.max(page)) + 1;
            for next in from..=ask_until {
                let body = body_of(next);
                let headers = headers(&body);
                queue.push_back(self.send_ahead(next, &url, body, headers));
            }
        };
        let (bytes, read, attempts) = self.post_page_read(page, &url, &|| body_of(page), &headers, &read, ahead, &top_up)?;
        Ok(Page { number: page, bytes, count: read.count, parsed: read.parsed, total: read.total, attempts })
    }
}

impl Requester {
    fn attempt(&self, page: u32, url: &str, body: &[u8], headers: Vec<(String, String)>) -> Attempt {
        let mut req = self.http.post(url).header("Content-Type", "application/json; charset=utf-8").body(body.to_vec());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = match req.send() {
            Ok(r) => r,
            Err(e) => return Attempt::Retry(format!("request failed: {}", error_chain(&e)), None),
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(std::time::Duration::from_secs);
        let bytes = match resp.bytes() {
            // Taken over rather than copied (350 KB a page of 1,000): nothing
            // else holds the buffer the body was gathered in.
            Ok(b) => Vec::from(b),
            Err(e) => return Attempt::Retry(format!("HTTP {status}: the body was cut off: {}", error_chain(&e)), retry_after),
        };
        let head = || String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        if status.is_success() {
            Attempt::Done(bytes)
        } else if status.as_u16() == 401 || status.as_u16() == 403 {
            Attempt::Fatal(ApiError::Unauthorized {
                name: self.name.clone(),
                page,
                status: status.as_u16(),
                body: head(),
                var: self.secret_env.clone(),
            })
        } else if status.as_u16() == 429 || status.is_server_error() {
            Attempt::Retry(format!("HTTP {status}: {}", head()), retry_after)
        } else {
            Attempt::Fatal(ApiError::Page { name: self.name.clone(), page, attempts: 1, reason: format!("HTTP {status}: {}", head()) })
        }
    }
}

/// The error and its causes on one line (reqwest hides the useful part, such
/// as "connection closed before message completed", in the source chain).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Follows a dotted path such as `data.records`.
pub(crate) fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').filter(|p| !p.is_empty()).try_fold(v, |cur, key| cur.get(key))
}

/// The platform's field for each canonical field, by default as the
/// provincial interfaces copied from the national one. `reformContent` (the
/// rectification note) goes to `revisit`, the follow-up text of the record.
pub const HAOCHAPING_FIELDS: [(&str, &str); 15] = [
    ("project_no", "projectNo"),
    ("assess_number", "assessNumber"),
    ("rated_at", "assessTime"),
    ("org", "areaCode"),
    ("category", "taskCode"),
    ("service_item", "taskHandleItem"),
    ("department", "deptCode"),
    ("channel", "pf"),
    ("level", "satisfaction"),
    ("reason_tags", "evalDetail"),
    ("comment", "writingEvaluation"),
    ("anonymous", "anonymityFlag"),
    ("follow_up", "reformStatus"),
    ("rectified_at", "reformDate"),
    ("revisit", "reformContent"),
];

/// Headers of the quarantine file of an API source.
pub fn api_quarantine_headers() -> Vec<String> {
    vec!["页码".into(), "页内序号".into(), "原始记录(JSON)".into()]
}

/// The platform field read for each canonical field, in the order the
/// normaliser's look-ups find them: the standard fields, then any other the
/// source maps, then the default-rating mark.
fn field_table(source: &SourceConfig) -> Vec<(&str, &str)> {
    HAOCHAPING_FIELDS
        .iter()
        .map(|(canon, default)| (*canon, source.columns.get(*canon).map(String::as_str).unwrap_or(default)))
        .chain(source.columns.iter().filter(|(k, _)| !HAOCHAPING_FIELDS.iter().any(|(c, _)| c == k)).map(|(k, v)| (k.as_str(), v.as_str())))
        .chain(source.default_rating.as_ref().map(|r| (DEFAULT_MARK, r.field.as_str())))
        .collect()
}

/// Reads the body of a 好差评 page (`number`) and its records as ratings;
/// a record that fails any check goes to quarantine with its page,
/// position, field and reason, and the rest of the page is kept.
///
/// The page is read in one pass (see `json_page`): nothing but the records
/// and the total is kept, and field values borrow from the body.
pub fn parse_haochaping_page(
    cfg: &Config,
    source: &SourceConfig,
    number: u32,
    body: &[u8],
    now: NaiveDateTime,
) -> Result<ReadPage, PageFault> {
    let broken = |e: String| PageFault::Broken(format!("the page is not valid JSON ({e}); it may have been cut off"));
    // simdutf8 (a page's Chinese text made std's check 1.6 % of the JSON
    // ingest); its `compat` error says where, in std's words.
    let text = simdutf8::compat::from_utf8(body).map_err(|e| broken(e.to_string()))?;
    let (records_path, total_path) =
        source.api.as_ref().map(|a| (a.records_path.as_str(), a.total_path.as_str())).unwrap_or(("data.records", "data.total"));
    let picked = super::json_page::pick(text, records_path, total_path).map_err(|e| broken(e.to_string()))?;
    let total = picked.total.as_ref().and_then(|t| t.as_u64().or_else(|| t.as_str().and_then(|s| s.parse().ok())));
    let records = match picked.records {
        Some(Records::Array(a)) => a,
        Some(Records::Null) | None if picked.total.is_some() => Vec::new(),
        _ => {
            // Only now is the page read whole, for what the platform says.
            let json: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            let msg =
                ["msg", "message", "errmsg"].iter().find_map(|k| json.get(k)).map(|m| format!(" (platform says: {m})")).unwrap_or_default();
            return Err(PageFault::NotAPage(format!("the page has no record array at “{records_path}”{msg}")));
        }
    };
    let parsed = parse_records(cfg, source, number, &records, now);
    Ok(ReadPage { count: records.len(), parsed, total })
}

/// Normalises the records of page `number`.
fn parse_records(cfg: &Config, source: &SourceConfig, number: u32, records: &[RawRecord<'_>], now: NaiveDateTime) -> Parsed {
    let fields = field_table(source);
    // Each canonical field's slot, found by name once a page: the normaliser
    // asks for some 20 fields a record, each by its `Field`, the index into
    // `slots`. The first field of a name wins.
    let slots = FieldSlots::find(|canon| fields.iter().position(|(c, _)| *c == canon));
    let channel_field = slots.of(Field::Channel).map(|i| fields[i].1);
    let default_in_channel = source.default_rating.as_ref().is_some_and(|r| Some(r.field.as_str()) == channel_field);
    let rules = Rules::new(cfg, source, now, default_in_channel);
    let mut parsed = Parsed { headers: api_quarantine_headers(), encoding: "JSON", ..Default::default() };
    parsed.ratings.reserve(records.len());
    // Whether any record carries each field (not null), for `missing_fields`.
    let mut carried = vec![false; fields.len()];
    let mut vals: Vec<Cow<'_, str>> = Vec::with_capacity(fields.len());
    // The slots of the key at each position of the last record: a platform
    // writes every record's keys in the same order, so one comparison per
    // key finds its slots, where trying every configured field was some 300
    // string comparisons a record, a tenth of reading a page (the benchmark's
    // JSON ingest went from 194–221 k to 233–255 k ratings a second). A key
    // elsewhere than last time is looked up whole and the rest relearned.
    let mut slots_at: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        let quarantine = |field: &str, reason: String| QuarantineRow {
            line: i + 1,
            field: field.into(),
            reason: format!("第{}页第{}条: {reason}", number, i + 1),
            values: vec![number.to_string(), (i + 1).to_string(), rec.to_json()],
        };
        let RawRecord::Object(obj) = rec else {
            parsed.rows_read += 1;
            parsed.rejected.push(quarantine("", "记录不是JSON对象".into()));
            continue;
        };
        vals.clear();
        vals.resize(fields.len(), Cow::Borrowed(""));
        // A key sent twice: the last counts, as in a JSON object read whole.
        for (j, (key, value)) in obj.iter().enumerate() {
            let key = key.as_ref();
            if slots_at.get(j).is_none_or(|(seen, _)| *seen != key) {
                let slots = (0..fields.len()).filter(|&k| fields[k].1 == key).collect();
                slots_at.truncate(j);
                slots_at.push((key, slots));
            }
            for &k in &slots_at[j].1 {
                vals[k] = value.text();
                carried[k] |= *value != Lite::Null;
            }
        }
        platform_codes_to_words(cfg, source, &slots, &mut vals);
        let get = |f: Field| slots.of(f).map(|k| vals[k].as_ref()).unwrap_or("");
        match normalise_rating(&rules, &get, &mut parsed.unrecognised) {
            Ok(read) => parsed.add_rating(read),
            Err((field, reason)) => {
                parsed.rows_read += 1;
                let platform_field = fields.iter().find(|(c, _)| *c == field).map(|(_, p)| *p).unwrap_or(field.as_str());
                parsed.rejected.push(quarantine(platform_field, reason))
            }
        }
    }
    parsed.notes = missing_fields(source, &fields, &carried, number, !records.is_empty());
    parsed
}

/// Fields the source's `columns` names that no record of the page carries:
/// reported, never silently left empty.
fn missing_fields(source: &SourceConfig, fields: &[(&str, &str)], carried: &[bool], page: u32, any_records: bool) -> Vec<String> {
    if !any_records {
        return Vec::new();
    }
    fields
        .iter()
        .zip(carried)
        .filter(|((canon, _), carried)| source.columns.contains_key(*canon) && !**carried)
        .map(|((canon, field), _)| {
            format!("page {page}: {}: field {field} not found in any record, left empty", super::rating_file::field_label(canon))
        })
        .collect()
}

/// Platform codes → the words the shared normaliser reads, unless the
/// source's own `[source.values.*]` maps the value.
fn platform_codes_to_words(cfg: &Config, source: &SourceConfig, slots: &FieldSlots, vals: &mut [Cow<'_, str>]) {
    // Times in Unix seconds or milliseconds, as some platforms send them,
    // are read by the shared normaliser (`model::parse_timestamp_in`).
    if let Some(k) = slots.of(Field::FollowUp).filter(|&k| !source.values.follow_up.contains_key(vals[k].as_ref())) {
        // Rectification status of the open-source module: 0 —, 1 整改中, 2 整改完成, 3 无法整改.
        let word = match vals[k].as_ref() {
            "0" => Some(""),
            "1" => Some("整改中"),
            "2" => Some("已整改"),
            "3" => Some("无法整改"),
            _ => None,
        };
        if let Some(word) = word {
            vals[k] = Cow::Borrowed(word);
        }
    }
    map_category(cfg, source, slots, vals)
}

/// The platform's category code through `[source.api] category_map`, or its
/// default category for a code nothing knows.
fn map_category(cfg: &Config, source: &SourceConfig, slots: &FieldSlots, vals: &mut [Cow<'_, str>]) {
    let (Some(api), Some(k)) = (source.api.as_ref(), slots.of(Field::Category)) else { return };
    let c = vals[k].as_ref();
    if let Some(code) = api.category_map.get(c) {
        vals[k] = Cow::Owned(code.clone());
    } else if find_category(&cfg.categories, c).is_none()
        && !source.values.category.contains_key(c)
        && let Some(d) = &api.default_category
    {
        vals[k] = Cow::Owned(d.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_and_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?",
        // split here into timestamp and body to show they are concatenated.
        let sig = sign_haochaping(b"Jefe", "what do ya want ", b"for nothing?", SignatureEncoding::Hex);
        assert_eq!(sig, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        let b64 = sign_haochaping(b"Jefe", "what do ya want ", b"for nothing?", SignatureEncoding::Base64);
        assert_eq!(b64, "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM=");
    }

    #[test]
    fn dotted_paths_find_nested_values() {
        let v = serde_json::json!({"data": {"records": [1, 2], "total": 2}});
        assert_eq!(lookup(&v, "data.total"), Some(&serde_json::json!(2)));
        assert_eq!(lookup(&v, "data.missing"), None);
    }
}
