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
use serde_json::{Value, json};
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
        let records: Vec<Value> = (from..to).map(|i| record_json(province, i)).collect();
        let data = json!({"code": 200, "msg": "ok", "data": {"page": page, "size": size, "total": province.total, "records": records}});
        let bytes = serde_json::to_vec(&data)?;
        write!(out, "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n", bytes.len())?;
        out.write_all(&bytes)?;
        out.flush()?;
    }
}

/// Rating `i` under the platform's field names (GB/T 39046 style).
fn record_json(province: &Province, i: u64) -> Value {
    let r = province.record(i, false);
    let fmt = "%Y-%m-%d %H:%M:%S";
    let reform = match r.follow_up {
        "" => "0",
        "整改中" => "1",
        "已整改" => "2",
        "无法整改" => "3",
        other => other,
    };
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
