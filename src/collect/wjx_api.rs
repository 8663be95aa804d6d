//! 问卷星 OpenAPI, action 1001002: the answers of one survey, page by page.
//!
//! ASSUMPTIONS (the authoritative rules are on the platform's 接口规范 page,
//! which this code could not consult; each lives in one place to change):
//! - `sign` = lower-case hex SHA-1 of the values of every other body
//!   parameter, ordered by parameter name, concatenated, followed by the
//!   appkey (the secret from `api.secret_env`) — see [`sign_wjx`].
//! - The answer page is `{"result": true, "data": {"total_count": N,
//!   "rows": [{"joinid": …, "submittime": "…", "answer": {"q1": "…",
//!   "q5_行标题": "…"}}]}}`, each answer text as in the 按文本 export (┋ between
//!   chosen options, 〖…〗 for fill-ins, "(跳过)" or -2/-3 for skipped) — see
//!   [`parse_wjx_page`], which turns a page into the export's table and reads
//!   it with the export parser, so both paths map answers identically.

use super::http_api::{HttpSource, lookup};
use super::{CollectError, Parsed, Table, Window, parse_wjx_export};
use crate::config::{Config, SourceConfig};
use crate::store::QuarantineRow;
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};

/// One page of answers as received.
#[derive(Debug, Clone)]
pub struct WjxPage {
    /// Page index (1-based).
    pub number: u32,
    /// The body exactly as received.
    pub bytes: Vec<u8>,
    /// The answer rows.
    pub rows: Vec<Value>,
    /// `total_count`, when given.
    pub total: Option<u64>,
}

/// `sign` of a 问卷星 request body (see the module docs for the assumption).
pub fn sign_wjx(params: &Map<String, Value>, appkey: &str) -> String {
    let mut keys: Vec<&String> = params.keys().filter(|k| k.as_str() != "sign").collect();
    keys.sort();
    let mut text = String::new();
    for k in keys {
        match &params[k.as_str()] {
            Value::String(s) => text.push_str(s),
            other => text.push_str(&other.to_string()),
        }
    }
    text.push_str(appkey);
    hex::encode(Sha1::digest(text.as_bytes()))
}

/// Fetches page `page` of the answers submitted in `window`.
pub fn fetch_wjx_page(
    client: &HttpSource,
    cfg: &Config,
    source: &SourceConfig,
    window: &Window,
    page: u32,
) -> Result<WjxPage, super::ApiError> {
    let Some(api) = source.api.as_ref() else {
        return Err(super::ApiError::Client { name: source.name.clone(), reason: "no [source.api] table".into() });
    };
    let url = format!("{}{}", api.base_url.trim_end_matches('/'), if api.path.is_empty() { "/openapi/default.aspx" } else { &api.path });
    let ms = |t: chrono::NaiveDateTime| {
        use chrono::TimeZone;
        cfg.tz.from_local_datetime(&t).earliest().map(|z| z.timestamp_millis()).unwrap_or_default()
    };
    let secret = String::from_utf8_lossy(client.secret()).into_owned();
    let make_body = || {
        let mut m = Map::new();
        m.insert("appid".into(), Value::String(api.app_key.clone()));
        m.insert("ts".into(), Value::String(chrono::Utc::now().timestamp().to_string()));
        m.insert("action".into(), Value::String("1001002".into()));
        m.insert("vid".into(), Value::String(api.vid.clone().unwrap_or_default()));
        m.insert("page_index".into(), Value::from(page));
        m.insert("page_size".into(), Value::from(api.page_size.min(50)));
        m.insert("begin_time".into(), Value::from(ms(window.begin)));
        m.insert("end_time".into(), Value::from(ms(window.end)));
        let sign = sign_wjx(&m, &secret);
        m.insert("sign".into(), Value::String(sign));
        Value::Object(m).to_string().into_bytes()
    };
    let (bytes, json, attempts) = client.post_page(page, &url, &make_body, &|_| Vec::new())?;
    if json.get("result").and_then(Value::as_bool) == Some(false) {
        let msg = json.get("errormsg").map(Value::to_string).unwrap_or_default();
        return Err(super::ApiError::Page {
            name: source.name.clone(),
            page,
            attempts,
            reason: format!("问卷星 refused the request: {msg}"),
        });
    }
    let rows = match lookup(&json, "data.rows") {
        Some(Value::Array(a)) => a.clone(),
        _ => {
            return Err(super::ApiError::Page {
                name: source.name.clone(),
                page,
                attempts,
                reason: "the page has no answer array at “data.rows”".into(),
            });
        }
    };
    let total = lookup(&json, "data.total_count").and_then(Value::as_u64);
    Ok(WjxPage { number: page, bytes, rows, total })
}

/// Parses a page of answers with the survey's `survey.toml`, exactly as the
/// 按文本 export would be parsed.
pub fn parse_wjx_page(cfg: &Config, source: &SourceConfig, page: &WjxPage) -> Result<Parsed, CollectError> {
    let mut headers = vec!["序号".to_string(), "提交答卷时间".to_string()];
    let mut keys: Vec<String> = Vec::new();
    for row in &page.rows {
        if let Some(ans) = row.get("answer").and_then(Value::as_object) {
            for k in ans.keys() {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    for k in &keys {
        // "q5_行标题" is a matrix row, "q3" a question.
        let h = match k.trim_start_matches('q').split_once('_') {
            Some((n, row)) => format!("第{n}题({row})"),
            None => format!("{}、", k.trim_start_matches('q')),
        };
        headers.push(h);
    }
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for (i, row) in page.rows.iter().enumerate() {
        let Some(ans) = row.get("answer").and_then(Value::as_object) else {
            bad.push(QuarantineRow {
                line: i + 1,
                field: "answer".into(),
                reason: format!("第{}页第{}条: 没有answer对象", page.number, i + 1),
                values: vec![row.to_string()],
            });
            continue;
        };
        let mut cells = vec![text(row.get("joinid")), text(row.get("submittime"))];
        cells.extend(keys.iter().map(|k| text(ans.get(k))));
        rows.push((i + 1, csv::StringRecord::from(cells)));
    }
    let table = Table { headers, rows, encoding: "JSON", above_header: Vec::new() };
    let mut parsed = parse_wjx_export(cfg, source, &format!("page {}", page.number), &table)?;
    parsed.rows_read += bad.len();
    parsed.rejected.extend(bad);
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_sorts_by_name_and_appends_the_key() {
        let mut m = Map::new();
        m.insert("vid".into(), Value::String("123".into()));
        m.insert("appid".into(), Value::String("A".into()));
        m.insert("page_index".into(), Value::from(2));
        m.insert("sign".into(), Value::String("ignored".into()));
        // appid, page_index, vid → "A" "2" "123" then the key.
        assert_eq!(sign_wjx(&m, "K"), hex::encode(Sha1::digest(b"A2123K")));
    }
}
