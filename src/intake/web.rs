//! The resident's pages and the submission handler (axum).

use super::landing::{Landing, Submission};
use super::token::{self, TokenError};
use crate::config::{Config, IntakeConfig, ServicePoint};
use crate::model::Level;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State as Ext};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use rand::RngCore;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PAGE: &str = include_str!("page.html");
const CSS: &str = include_str!("intake.css");
/// Reasons offered when neither `[intake] reasons` nor the survey's are configured.
const DEFAULT_REASONS: [&str; 6] = ["等候时间长", "服务态度差", "办事效率低", "环境设施差", "收费不合理", "问题没有解决"];
/// Longest comment kept (characters); the form also says so.
const MAX_COMMENT: usize = 500;

/// Shared state of the handlers.
pub struct State {
    cfg: Arc<Config>,
    ic: IntakeConfig,
    points: HashMap<String, (ServicePoint, String)>,
    reasons: Vec<String>,
    secret: Option<Vec<u8>>,
    landing: Landing,
    used: Mutex<HashSet<String>>,
    limits: Mutex<Limits>,
    tera: tera::Tera,
}

/// Fixed one-minute windows per client and per code, and the last rating
/// of each (client, point) for the repeat window.
#[derive(Default)]
struct Limits {
    minute: u64,
    per_client: HashMap<String, u32>,
    per_code: HashMap<String, u32>,
    last: HashMap<(String, String), Instant>,
}

impl State {
    /// Builds the state; `landed` gives the slips already used.
    pub fn new(cfg: Arc<Config>, ic: IntakeConfig, landing: Landing, landed: &[Submission]) -> anyhow::Result<Arc<State>> {
        let mut tera = tera::Tera::default();
        // The name ends in .html so that tera autoescapes every value.
        tera.add_raw_template("page.html", PAGE)?;
        let points = ic
            .points
            .iter()
            .map(|p| {
                let cat = cfg.category(&p.category).map(|c| c.name.clone()).unwrap_or_default();
                let org = cfg.orgs.get(&p.org).map(|o| o.name.clone()).unwrap_or_default();
                let title = if !p.title.is_empty() {
                    p.title.clone()
                } else if !p.service_item.is_empty() {
                    format!("{org} · {}", p.service_item)
                } else {
                    format!("{org} · {cat}")
                };
                (p.id.clone(), (p.clone(), title))
            })
            .collect();
        let reasons = if ic.reasons.is_empty() { DEFAULT_REASONS.iter().map(|s| s.to_string()).collect() } else { ic.reasons.clone() };
        let secret = super::secret(&ic).ok();
        if secret.is_none() {
            tracing::warn!(var = %ic.secret_env, "no case-slip secret in the environment: slips are refused, service points work");
        }
        let used = landed.iter().filter(|s| !s.slip.is_empty()).map(|s| s.slip.clone()).collect();
        Ok(Arc::new(State { cfg, ic, points, reasons, secret, landing, used: Mutex::new(used), limits: Mutex::default(), tera }))
    }
}

/// The routes.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/intake.css", get(css))
        .route("/healthz", get(|| async { "ok" }))
        .route("/p/{point}", get(point_form).post(point_submit))
        .route("/s/{token}", get(slip_form).post(slip_submit))
        .fallback(|Ext(st): Ext<Arc<State>>| async move { message(&st, StatusCode::NOT_FOUND, "页面不存在，请重新扫描二维码。") })
        .with_state(state)
}

/// Security headers on every answer: no script at all, no framing.
fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let csp = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn css() -> Response {
    secure(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response())
}

fn render(st: &State, status: StatusCode, ctx: &tera::Context) -> Response {
    match st.tera.render("page.html", ctx) {
        Ok(html) => secure((status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "intake page failed to render");
            secure((StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response())
        }
    }
}

fn message(st: &State, status: StatusCode, text: &str) -> Response {
    let mut ctx = tera::Context::new();
    ctx.insert("title", "服务评价");
    ctx.insert("mode", "message");
    ctx.insert("message", text);
    render(st, status, &ctx)
}

fn form(st: &State, title: &str, action: &str) -> Response {
    let levels: Vec<serde_json::Value> =
        (1..=5u8).rev().filter_map(Level::from_code).map(|l| serde_json::json!({"code": l.code(), "name": l.name()})).collect();
    let mut ctx = tera::Context::new();
    ctx.insert("title", title);
    ctx.insert("mode", "form");
    ctx.insert("action", action);
    ctx.insert("levels", &levels);
    render(st, StatusCode::OK, &ctx)
}

async fn point_form(Ext(st): Ext<Arc<State>>, Path(point): Path<String>) -> Response {
    match st.points.get(&point) {
        Some((_, title)) => form(&st, title, &format!("/p/{point}")),
        None => message(&st, StatusCode::NOT_FOUND, "二维码无效，请联系工作人员。"),
    }
}

/// A checked slip, or the page that refuses it.
fn check_slip(st: &State, tok: &str) -> Result<token::Slip, Box<Response>> {
    let Some(secret) = &st.secret else {
        return Err(Box::new(message(st, StatusCode::SERVICE_UNAVAILABLE, "暂时无法评价，请稍后再试。")));
    };
    let slip = token::verify(secret, tok, Utc::now().timestamp()).map_err(|e| {
        // Logged without the token or anything personal: only the kind of failure.
        tracing::warn!(reason = %e, "case-slip token refused");
        let text = match e {
            TokenError::Expired => "此评价码已过期，无法评价。",
            TokenError::Malformed | TokenError::BadSignature => "此评价码无效，无法评价。",
        };
        Box::new(message(st, StatusCode::FORBIDDEN, text))
    })?;
    if !st.points.contains_key(&slip.point) {
        tracing::warn!("case-slip token names an unknown point");
        return Err(Box::new(message(st, StatusCode::FORBIDDEN, "此评价码无效，无法评价。")));
    }
    if st.used.lock().map(|u| u.contains(&slip.slip_id)).unwrap_or(false) {
        return Err(Box::new(message(st, StatusCode::OK, "已评价，感谢您的参与。")));
    }
    Ok(slip)
}

async fn slip_form(Ext(st): Ext<Arc<State>>, Path(tok): Path<String>) -> Response {
    match check_slip(&st, &tok) {
        Ok(slip) => {
            let title = st.points.get(&slip.point).map(|(_, t)| t.clone()).unwrap_or_default();
            form(&st, &title, &format!("/s/{tok}"))
        }
        Err(resp) => *resp,
    }
}

/// The client a limit counts: the peer, or behind a trusted proxy the
/// address it appended to X-Forwarded-For.
fn client_of(st: &State, peer: SocketAddr, headers: &HeaderMap) -> String {
    if st.ic.trust_proxy
        && let Some(last) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).and_then(|v| v.rsplit(',').next())
    {
        return last.trim().to_string();
    }
    peer.ip().to_string()
}

async fn point_submit(
    Ext(st): Ext<Arc<State>>,
    Path(point): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !st.points.contains_key(&point) {
        return message(&st, StatusCode::NOT_FOUND, "二维码无效，请联系工作人员。");
    }
    let client = client_of(&st, peer, &headers);
    submit(&st, &point, None, &format!("/p/{point}"), &client, &body).await
}

async fn slip_submit(
    Ext(st): Ext<Arc<State>>,
    Path(tok): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let slip = match check_slip(&st, &tok) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let client = client_of(&st, peer, &headers);
    let point = slip.point.clone();
    submit(&st, &point, Some(slip), &format!("/s/{tok}"), &client, &body).await
}

/// What the form sent.
#[derive(Default)]
struct Fields {
    level: Option<Level>,
    step2: bool,
    reasons: Vec<String>,
    comment: String,
    phone: String,
}

fn parse_fields(st: &State, body: &[u8]) -> Fields {
    let mut f = Fields::default();
    for (k, v) in form_pairs(body) {
        match k.as_str() {
            "level" => f.level = v.parse::<u8>().ok().and_then(Level::from_code),
            "step" => f.step2 = v == "2",
            // Only configured reasons: the form's values are not trusted.
            "reason" if st.reasons.contains(&v) && !f.reasons.contains(&v) => f.reasons.push(v),
            "comment" => f.comment = v.trim().chars().take(MAX_COMMENT).collect(),
            "phone" => f.phone = v.trim().chars().filter(|c| c.is_ascii_digit() || *c == '-' || *c == '+').take(20).collect(),
            _ => {}
        }
    }
    f
}

/// `application/x-www-form-urlencoded` pairs; repeated keys kept (the reasons).
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    fn decode(s: &[u8]) -> String {
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < s.len() => match std::str::from_utf8(&s[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(i) => (decode(&p[..i]), decode(&p[i + 1..])),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn reason_page(st: &State, title: &str, action: &str, level: Level, f: &Fields, error: bool) -> Response {
    let mut ctx = tera::Context::new();
    ctx.insert("title", title);
    ctx.insert("mode", "reason");
    ctx.insert("action", action);
    ctx.insert("level", &level.code());
    ctx.insert("level_name", level.name());
    ctx.insert("reasons", &st.reasons);
    ctx.insert("comment", &f.comment);
    ctx.insert("phone", &f.phone);
    ctx.insert("error", if error { "请至少选择一个不满意的原因，再提交。" } else { "" });
    render(st, if error { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK }, &ctx)
}

/// Checks the limits and records the submission in them; `Err` is the polite refusal.
fn admit(st: &State, point: &str, client: &str, repeat_applies: bool) -> Result<(), &'static str> {
    let Ok(mut l) = st.limits.lock() else { return Err("服务繁忙，请稍后再试。") };
    let now = Instant::now();
    let minute = Utc::now().timestamp() as u64 / 60;
    if l.minute != minute {
        l.minute = minute;
        l.per_client.clear();
        l.per_code.clear();
    }
    let window = Duration::from_secs(u64::from(st.ic.repeat_window_minutes) * 60);
    let key = (client.to_string(), point.to_string());
    if repeat_applies && l.last.get(&key).is_some_and(|t| now.duration_since(*t) < window) {
        return Err("您刚刚已经评价过这项服务，感谢您的参与！");
    }
    if l.per_client.get(client).copied().unwrap_or(0) >= st.ic.per_client_per_minute
        || l.per_code.get(point).copied().unwrap_or(0) >= st.ic.per_code_per_minute
    {
        return Err("提交太频繁，请稍后再试。");
    }
    *l.per_client.entry(client.to_string()).or_default() += 1;
    *l.per_code.entry(point.to_string()).or_default() += 1;
    if l.last.len() > 200_000 {
        l.last.retain(|_, t| now.duration_since(*t) < window);
    }
    l.last.insert(key, now);
    Ok(())
}

async fn submit(st: &State, point: &str, slip: Option<token::Slip>, action: &str, client: &str, body: &[u8]) -> Response {
    let Some((sp, title)) = st.points.get(point) else {
        return message(st, StatusCode::NOT_FOUND, "二维码无效，请联系工作人员。");
    };
    let f = parse_fields(st, body);
    let Some(level) = f.level else { return form(st, title, action) };
    if level.code() <= 2 && f.reasons.is_empty() {
        return reason_page(st, title, action, level, &f, f.step2);
    }
    if let Err(text) = admit(st, point, client, slip.is_none()) {
        return message(st, StatusCode::TOO_MANY_REQUESTS, text);
    }
    let id = match &slip {
        Some(s) => {
            // Claimed before landing so that two submissions of one slip cannot both pass.
            let fresh = st.used.lock().map(|mut u| u.insert(s.slip_id.clone())).unwrap_or(false);
            if !fresh {
                return message(st, StatusCode::OK, "已评价，感谢您的参与。");
            }
            format!("S-{}-1", s.slip_id)
        }
        None => {
            let mut b = [0u8; 8];
            rand::thread_rng().fill_bytes(&mut b);
            format!("QR-{point}-{}-1", hex::encode(b))
        }
    };
    let sub = Submission {
        id,
        point: point.into(),
        slip: slip.as_ref().map(|s| s.slip_id.clone()).unwrap_or_default(),
        case_no: slip.as_ref().map(|s| s.case_no.clone()).unwrap_or_default(),
        at: Utc::now().with_timezone(&st.cfg.tz).format("%Y-%m-%d %H:%M:%S").to_string(),
        org: sp.org.clone(),
        category: sp.category.clone(),
        item: sp.service_item.clone(),
        level: level.code(),
        reasons: f.reasons.join(","),
        comment: f.comment.clone(),
        phone: f.phone.clone(),
    };
    if let Err(e) = st.landing.append(&sub).await {
        tracing::error!(error = %e, "a submission could not be landed; the resident was asked to retry");
        if let (Some(s), Ok(mut u)) = (&slip, st.used.lock()) {
            u.remove(&s.slip_id);
        }
        return message(st, StatusCode::SERVICE_UNAVAILABLE, "暂时无法提交，请稍后再试。");
    }
    thanks(st, title, level, !f.phone.is_empty())
}

fn thanks(st: &State, title: &str, level: Level, phone_given: bool) -> Response {
    let mut ctx = tera::Context::new();
    ctx.insert("title", title);
    ctx.insert("mode", "thanks");
    ctx.insert("bad", &(level.code() <= 2));
    ctx.insert("phone_given", &phone_given);
    ctx.insert("days", &st.cfg.file.follow_up.deadline_working_days);
    render(st, StatusCode::OK, &ctx)
}

#[cfg(test)]
mod tests {
    use super::form_pairs;

    #[test]
    fn form_pairs_decode_repeats_and_utf8() {
        let pairs = form_pairs(b"level=1&reason=%E7%AD%89&reason=b+c&bad=%zz&tail=%E7");
        assert_eq!(pairs[1], ("reason".into(), "等".into()));
        assert_eq!(pairs[2], ("reason".into(), "b c".into()));
        assert_eq!(pairs[3], ("bad".into(), "%zz".into()));
        assert_eq!(pairs.len(), 5);
    }
}
