//! A loopback stand-in for the provincial 好差评 platform, fast enough not to
//! be what the benchmark measures (the Python one in `tests/` builds about
//! 20,000 records a second; this one several hundred thousand).
//!
//! It answers `POST <any path>` with the platform's page format,
//! `{"code":200,"data":{"total":N,"records":[…]}}`, page `page` of size
//! `size` of the province's rating stream, over HTTP/1.1 keep-alive. It does
//! not check signatures (the integration tests' server does) and serves the
//! whole stream whatever the window.

use crate::synth::{CATEGORIES, Province};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;

/// Starts the server on a free port of 127.0.0.1; returns the port.
pub fn start(province: Arc<Province>) -> std::io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let p = Arc::clone(&province);
            std::thread::spawn(move || {
                let _ = serve(stream, &p);
            });
        }
    });
    Ok(port)
}

fn serve(stream: TcpStream, province: &Province) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let page = req.get("page").and_then(Value::as_u64).unwrap_or(1).max(1);
        let size = req.get("size").and_then(Value::as_u64).unwrap_or(100).max(1);
        let from = ((page - 1) * size).min(province.total);
        let to = (page * size).min(province.total);
        let bytes = page_json(province, page, size, from..to);
        write!(out, "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n", bytes.len())?;
        out.write_all(&bytes)?;
        out.flush()?;
    }
}

/// The page of records `range`, written straight as JSON text. Built as a
/// `serde_json::Value` per record (a map per record, then serialised) the
/// stand-in took half of the two cores' samples in the JSON stage — CPU a
/// real platform spends on its own machine — so manyi's ingest was
/// measured at half a machine.
fn page_json(province: &Province, page: u64, size: u64, range: std::ops::Range<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 * (range.end - range.start) as usize + 128);
    let _ = write!(out, r#"{{"code":200,"msg":"ok","data":{{"page":{page},"size":{size},"total":{},"records":["#, province.total);
    for (k, i) in range.enumerate() {
        if k > 0 {
            out.push(b',');
        }
        write_record(&mut out, province, i);
    }
    out.extend_from_slice(b"]}}");
    out
}

/// A JSON string: the text quoted and escaped as serde_json escapes it.
fn string(out: &mut Vec<u8>, text: &str) {
    let _ = serde_json::to_writer(&mut *out, text);
}

fn timestamp(out: &mut Vec<u8>, t: &chrono::NaiveDateTime) {
    use chrono::{Datelike, Timelike};
    let _ = write!(out, "\"{:04}-{:02}-{:02} {:02}:{:02}:{:02}\"", t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second());
}

/// Rating `i` under the platform's field names (GB/T 39046 style), as
/// [`record_json`] has it.
fn write_record(out: &mut Vec<u8>, province: &Province, i: u64) {
    let r = province.record(i, false);
    let (code, name, ..) = CATEGORIES[r.category];
    out.extend_from_slice(br#"{"projectNo":"#);
    string(out, &r.project_no);
    out.extend_from_slice(br#","assessNumber":1,"areaCode":"#);
    string(out, &r.org);
    out.extend_from_slice(br#","deptCode":"#);
    string(out, &format!("{name}窗口"));
    out.extend_from_slice(br#","taskCode":"#);
    string(out, code);
    out.extend_from_slice(br#","taskHandleItem":"#);
    string(out, &format!("{name}事项{}", r.service_item));
    let _ = write!(out, r#","pf":{},"satisfaction":"#, r.channel);
    string(out, r.level);
    out.extend_from_slice(br#","evalDetail":"#);
    string(out, r.tags);
    out.extend_from_slice(br#","writingEvaluation":"#);
    string(out, r.comment);
    out.extend_from_slice(br#","assessTime":"#);
    timestamp(out, &r.rated_at);
    let _ = write!(out, r#","anonymityFlag":{},"reformStatus":"#, if r.anonymous { 1 } else { 2 });
    string(out, reform_status(r.follow_up));
    out.extend_from_slice(br#","reformDate":"#);
    match &r.rectified_at {
        Some(t) => timestamp(out, t),
        None => out.extend_from_slice(b"\"\""),
    }
    out.extend_from_slice(br#","reformContent":"#);
    string(out, r.revisit);
    out.push(b'}');
}

/// The platform's code of a follow-up state.
fn reform_status(follow_up: &str) -> &str {
    match follow_up {
        "" => "0",
        "整改中" => "1",
        "已整改" => "2",
        "无法整改" => "3",
        other => other,
    }
}

/// Rating `i` under the platform's field names, as a JSON value: what
/// [`write_record`] writes, kept as the readable statement of it.
#[cfg(test)]
fn record_json(province: &Province, i: u64) -> Value {
    use serde_json::json;
    let r = province.record(i, false);
    let fmt = "%Y-%m-%d %H:%M:%S";
    let reform = reform_status(r.follow_up);
    json!({
        "projectNo": r.project_no,
        "assessNumber": 1,
        "areaCode": r.org,
        "deptCode": format!("{}窗口", CATEGORIES[r.category].1),
        "taskCode": CATEGORIES[r.category].0,
        "taskHandleItem": format!("{}事项{}", CATEGORIES[r.category].1, r.service_item),
        "pf": r.channel,
        "satisfaction": r.level,
        "evalDetail": r.tags,
        "writingEvaluation": r.comment,
        "assessTime": r.rated_at.format(fmt).to_string(),
        "anonymityFlag": if r.anonymous { 1 } else { 2 },
        "reformStatus": reform,
        "reformDate": r.rectified_at.map(|t| t.format(fmt).to_string()).unwrap_or_default(),
        "reformContent": r.revisit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The page written as text is the page the `Value`s describe: the same
    /// fields, types and values for every record, corrected ones included.
    #[test]
    fn a_page_written_as_text_is_the_page_of_values() {
        let calendar = manyi::calendar::WorkCalendar::default();
        let province = Province::new(7, 3_000, "2026-10".parse::<manyi::period::Period>().expect("period"), &calendar);
        let page: Value = serde_json::from_slice(&page_json(&province, 2, 1_000, 1_000..2_000)).expect("valid JSON");
        let want: Vec<Value> = (1_000..2_000).map(|i| record_json(&province, i)).collect();
        assert_eq!(page["data"]["records"], Value::Array(want));
        assert_eq!(
            (page["code"].as_u64(), page["data"]["total"].as_u64(), page["data"]["page"].as_u64()),
            (Some(200), Some(3_000), Some(2))
        );
    }
}
