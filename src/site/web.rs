//! The site's pages and handlers (axum). Server-rendered, no script at all.
//!
//! Every page but `/login`, `/healthz`, `/metrics` and the style sheet needs
//! a session. A report the account may not see answers exactly like one
//! that does not exist (404), so editing the URL confirms nothing.
//! URLs carry ids only (job, period, report id, office, file name), never a
//! person; logs carry the kind of event, never the sign-in name.

use super::auth::{self, Keys, PRE_COOKIE, SESSION_COOKIE};
use super::reports::{self, ReportRef};
use super::{LOCK_AFTER, Role};
use crate::config::{Config, SiteConfig};
use crate::store::{Store, UserRow};
use axum::Router;
use axum::extract::{Form, Path, Query, State as Ext};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const PAGE: &str = include_str!("site.html");
const NAV: &str = include_str!("nav.html");
const CSS: &str = include_str!("site.css");
const CSP_PAGE: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The browsable copies are the mail's HTML: inline styles, images beside them.
const CSP_REPORT: &str = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Shared state of the handlers.
pub struct State {
    cfg: Arc<Config>,
    keys: Keys,
    /// For the pages' reads. A read never waits for another process's
    /// write lock (WAL), so nothing that writes may hold this connection:
    /// a collect holds the store's write lock while it reads a large file
    /// (most of a minute for a province's year in one file), and a page
    /// view's audit line waiting for it here held up every page of the
    /// site, each request behind the lock of this one connection.
    store: Mutex<Store>,
    /// For the site's writes: sign-in, sign-out and the audit trail, each
    /// done on tokio's blocking threads, so that a write waiting for the
    /// store's write lock holds up neither the pages nor the runtime.
    writer: Arc<Mutex<Store>>,
    tera: tera::Tera,
    session_hours: u32,
    secure: bool,
    /// argon2 takes 19 MiB and tens of milliseconds per check: a flood of
    /// sign-ins waits here instead of exhausting memory and the cores.
    hashing: tokio::sync::Semaphore,
}

/// A signed-in account.
struct Session {
    user: UserRow,
    role: Role,
    csrf: String,
    token_hash: String,
}

impl Session {
    /// Whether this account may see an office's reports.
    fn sees(&self, office: &str) -> bool {
        self.role != Role::Office || self.user.office.as_deref() == Some(office)
    }
}

impl State {
    /// Builds the state: templates, the signing key, one connection to state.db.
    pub fn new(cfg: Arc<Config>, sc: &SiteConfig) -> anyhow::Result<Arc<State>> {
        let mut tera = tera::Tera::default();
        // Names end in .html so that tera autoescapes every value.
        tera.add_raw_template("site.html", PAGE)?;
        tera.add_raw_template("nav.html", NAV)?;
        let store = Mutex::new(Store::open(&cfg.data_dir)?);
        let writer = Store::open(&cfg.data_dir)?;
        writer.set_write_wait(std::time::Duration::from_secs(30))?;
        let writer = Arc::new(Mutex::new(writer));
        let keys = Keys::from_env(&sc.secret_env);
        let hashing = tokio::sync::Semaphore::new(2);
        Ok(Arc::new(State { cfg, keys, store, writer, tera, session_hours: sc.session_hours, secure: sc.secure_cookies, hashing }))
    }

    /// Runs `f` on the store; a poisoned lock or a store error is logged and
    /// becomes `None` (the page says the service is unavailable).
    fn with_store<T>(&self, f: impl FnOnce(&Store) -> Result<T, crate::store::StoreError>) -> Option<T> {
        let guard = self.store.lock().ok()?;
        f(&guard).map_err(|e| tracing::error!(error = %e, "the site could not read state.db")).ok()
    }

    /// Runs `f` on the writing connection; for code on a blocking thread
    /// (it may wait for the store's write lock).
    fn with_writer<T>(&self, f: impl FnOnce(&Store) -> Result<T, crate::store::StoreError>) -> Option<T> {
        let guard = self.writer.lock().ok()?;
        f(&guard).map_err(|e| tracing::error!(error = %e, "the site could not write state.db")).ok()
    }

    /// Adds a line to the audit trail, at this instant, without waiting
    /// for it to be written (see `writer`). The runtime finishes the write
    /// before it shuts down.
    fn audit(&self, user: &str, action: &str, target: &str, outcome: &str) {
        let writer = Arc::clone(&self.writer);
        let (at, user, action, target, outcome) =
            (Utc::now(), user.to_string(), action.to_string(), target.to_string(), outcome.to_string());
        tokio::task::spawn_blocking(move || {
            let Ok(store) = writer.lock() else { return };
            // Tried until written: a line of the trail is not dropped
            // because a large file was being committed at the time.
            loop {
                match store.audit_at(at, &user, &action, &target, &outcome) {
                    Ok(()) => return,
                    Err(e) if e.is_busy() => continue,
                    Err(e) => {
                        tracing::error!(error = %e, action, "an audit line could not be written to state.db");
                        return;
                    }
                }
            }
        });
    }

    fn cookie(&self, name: &str, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("manyi_invalid=1"))
    }

    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
        let token = self.keys.unsign(auth::cookie(cookies, SESSION_COOKIE)?)?;
        let token_hash = auth::token_hash(token);
        let (user, csrf) = self.with_store(|s| s.session(&token_hash, Utc::now().timestamp_millis()))??;
        let role = Role::parse(&user.role).ok()?;
        Some(Session { user, role, csrf, token_hash })
    }
}

/// The routes.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(|| async { redirect("/reports") }))
        .route("/site.css", get(css))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/login", get(login_form).post(login_submit))
        .route("/logout", post(logout))
        .route("/reports", get(report_list))
        .route("/r/{job}/{period}/{rid}/{office}/{file}", get(report_file))
        .route("/inspect/{job}/{period}/{rid}/{office}", get(inspect))
        .route("/bad/{job}/{period}/{rid}/{office}", get(bad_list))
        .route("/health", get(health))
        .fallback(|Ext(st): Ext<Arc<State>>| async move { not_found(&st) })
        .with_state(state)
}

fn secure(mut resp: Response, csp: &'static str) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn redirect(to: &'static str) -> Response {
    secure((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response(), CSP_PAGE)
}

async fn css() -> Response {
    secure(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response(), CSP_PAGE)
}

/// A page of the site; `session` fills the header (who, sign-out form).
fn page(st: &State, status: StatusCode, mode: &str, session: Option<&Session>, mut ctx: tera::Context) -> Response {
    ctx.insert("mode", mode);
    ctx.insert("organisation", &st.cfg.file.organisation);
    if let Some(s) = session {
        ctx.insert("who", &who(st, s));
        ctx.insert("csrf", &s.csrf);
        ctx.insert("admin", &(s.role == Role::Admin));
    }
    match st.tera.render("site.html", &ctx) {
        Ok(html) => secure((status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(), CSP_PAGE),
        Err(e) => {
            tracing::error!(error = %e, "a site page failed to render");
            secure((StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response(), CSP_PAGE)
        }
    }
}

/// How the header names the account: its role, and its office's name.
fn who(st: &State, s: &Session) -> String {
    let office = s.user.office.as_deref().and_then(|id| st.cfg.offices.iter().find(|o| o.id == id)).map(|o| o.name.as_str());
    match office {
        Some(name) => format!("{name}（{}）", s.user.name),
        None => format!("{}（{}）", s.role.label(), s.user.name),
    }
}

fn message(st: &State, status: StatusCode, session: Option<&Session>, text: &str) -> Response {
    let mut ctx = tera::Context::new();
    ctx.insert("message", text);
    page(st, status, "message", session, ctx)
}

fn not_found(st: &State) -> Response {
    message(st, StatusCode::NOT_FOUND, None, "页面不存在，或您无权查看。")
}

fn unavailable(st: &State) -> Response {
    message(st, StatusCode::SERVICE_UNAVAILABLE, None, "暂时无法读取数据，请稍后再试。")
}

fn login_page(st: &State, status: StatusCode, error: &str) -> Response {
    let pre = auth::random_token();
    let mut ctx = tera::Context::new();
    ctx.insert("login_csrf", &st.keys.login_csrf(&pre));
    ctx.insert("error", error);
    let mut resp = page(st, status, "login", None, ctx);
    resp.headers_mut().insert(header::SET_COOKIE, st.cookie(PRE_COOKIE, &pre, 3600));
    resp
}

async fn login_form(Ext(st): Ext<Arc<State>>, headers: HeaderMap) -> Response {
    if st.session(&headers).is_some() {
        return redirect("/reports");
    }
    login_page(&st, StatusCode::OK, "")
}

/// How a sign-in attempt ended.
enum SignIn {
    Ok(String),
    Wrong,
    Locked,
}

/// Checks the password (argon2, on a blocking thread) and records the attempt.
fn sign_in(st: &State, name: &str, password: &str) -> Option<SignIn> {
    let user = st.with_store(|s| s.user(name))?;
    let Some(user) = user.filter(|u| !u.disabled) else {
        // The same work as a real check, so that timing does not tell which names exist.
        auth::verify_password(password, auth::dummy_hash());
        st.audit(name, "sign-in", "", "unknown-or-disabled");
        return Some(SignIn::Wrong);
    };
    if user.locked {
        st.audit(name, "sign-in", "", "locked");
        return Some(SignIn::Locked);
    }
    if !auth::verify_password(password, &user.hash) {
        let locked = st.with_writer(|s| s.sign_in_failed(name, LOCK_AFTER))?;
        st.audit(name, "sign-in", "", if locked { "wrong-password-locked" } else { "wrong-password" });
        return Some(if locked { SignIn::Locked } else { SignIn::Wrong });
    }
    let token = auth::random_token();
    let expires = Utc::now().timestamp_millis() + i64::from(st.session_hours) * 3_600_000;
    st.with_writer(|s| {
        s.sign_in_ok(name)?;
        s.create_session(&auth::token_hash(&token), name, &auth::random_token(), expires)
    })?;
    st.audit(name, "sign-in", "", "ok");
    Some(SignIn::Ok(token))
}

/// Whether the sign-in form's token is the signature of its pre-session cookie.
fn login_csrf_ok(st: &State, headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    let pre = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).and_then(|c| auth::cookie(c, PRE_COOKIE));
    let sent = form.get("csrf").map(String::as_str).unwrap_or("");
    pre.is_some_and(|pre| auth::constant_eq(sent.as_bytes(), st.keys.login_csrf(pre).as_bytes()))
}

async fn login_submit(Ext(st): Ext<Arc<State>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    if !login_csrf_ok(&st, &headers, &form) {
        tracing::warn!("a sign-in form without a valid CSRF token was refused");
        return message(&st, StatusCode::FORBIDDEN, None, "页面已过期或来源不明，请重新打开登录页后再试。");
    }
    let name = form.get("user").map(|s| s.trim().to_string()).unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let Ok(_permit) = st.hashing.acquire().await else { return unavailable(&st) };
    let worker = Arc::clone(&st);
    let outcome = tokio::task::spawn_blocking(move || sign_in(&worker, &name, &password)).await.ok().flatten();
    match outcome {
        Some(SignIn::Ok(token)) => {
            tracing::info!("sign-in ok");
            let hours = i64::from(st.session_hours) * 3600;
            let mut resp = redirect("/reports");
            resp.headers_mut().append(header::SET_COOKIE, st.cookie(SESSION_COOKIE, &st.keys.sign(&token), hours));
            resp.headers_mut().append(header::SET_COOKIE, st.cookie(PRE_COOKIE, "", 0));
            resp
        }
        Some(SignIn::Wrong) => {
            tracing::warn!("sign-in refused: wrong name or password");
            login_page(&st, StatusCode::UNAUTHORIZED, "用户名或密码错误。")
        }
        Some(SignIn::Locked) => {
            tracing::warn!("sign-in refused: the account is locked");
            login_page(&st, StatusCode::FORBIDDEN, "密码错误次数过多，账户已锁定。请联系管理员重置密码。")
        }
        None => unavailable(&st),
    }
}

async fn logout(Ext(st): Ext<Arc<State>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let Some(s) = st.session(&headers) else { return redirect("/login") };
    let sent = form.get("csrf").map(String::as_str).unwrap_or("");
    if !auth::constant_eq(sent.as_bytes(), s.csrf.as_bytes()) {
        tracing::warn!("a sign-out form without a valid CSRF token was refused");
        return message(&st, StatusCode::FORBIDDEN, Some(&s), "页面已过期或来源不明，请刷新后再试。");
    }
    // Ended before the answer, on a blocking thread: the token must not
    // outlive the sign-out.
    let (worker, token_hash) = (Arc::clone(&st), s.token_hash.clone());
    let _ = tokio::task::spawn_blocking(move || worker.with_writer(|store| store.end_session(&token_hash))).await;
    st.audit(&s.user.name, "sign-out", "", "ok");
    let mut resp = redirect("/login");
    resp.headers_mut().insert(header::SET_COOKIE, st.cookie(SESSION_COOKIE, "", 0));
    resp
}

async fn report_list(Ext(st): Ext<Arc<State>>, headers: HeaderMap) -> Response {
    let Some(s) = st.session(&headers) else { return redirect("/login") };
    let Some(list) = st.with_store(|store| reports::list(&st.cfg, store, &|o| s.sees(o))) else { return unavailable(&st) };
    let mut ctx = tera::Context::new();
    ctx.insert("reports", &list);
    ctx.insert("all", &(s.role != Role::Office));
    page(&st, StatusCode::OK, "list", Some(&s), ctx)
}

/// The report version named by the path, if this session may see it.
fn visible_report(st: &State, s: &Session, job: &str, period: &str, rid: &str, office: &str) -> Option<ReportRef> {
    if ![job, period, rid, office].iter().all(|p| reports::plain_segment(p)) || !s.sees(office) {
        return None;
    }
    st.with_store(|store| reports::find(&st.cfg, store, job, period, rid, office)).flatten()
}

async fn report_file(
    Ext(st): Ext<Arc<State>>,
    headers: HeaderMap,
    Path((job, period, rid, office, file)): Path<(String, String, String, String, String)>,
) -> Response {
    let Some(s) = st.session(&headers) else { return redirect("/login") };
    let Some(r) = visible_report(&st, &s, &job, &period, &rid, &office) else { return not_found(&st) };
    let owner = reports::owner_of(&file, st.cfg.offices.iter().map(|o| o.id.as_str()));
    if !reports::plain_segment(&file) || owner != Some(office.as_str()) {
        return not_found(&st);
    }
    let path = reports::dir(&st.cfg.data_dir, &job, &period, &rid).join(&file);
    let Ok(bytes) = tokio::fs::read(&path).await else { return not_found(&st) };
    let target = format!("{}/{file}", r.target());
    let ext = file.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "html" => {
            st.audit(&s.user.name, "view", &target, "ok");
            report_page(&st, &s, &r, &String::from_utf8_lossy(&bytes))
        }
        "xlsx" | "csv" => {
            st.audit(&s.user.name, "download", &target, "ok");
            download(&file, &ext, bytes)
        }
        "png" => secure(([(header::CONTENT_TYPE, "image/png")], bytes).into_response(), CSP_PAGE),
        _ => not_found(&st),
    }
}

/// The browsable copy with the site's bar inserted after `<body…>`.
fn report_page(st: &State, s: &Session, r: &ReportRef, html: &str) -> Response {
    let dir = reports::dir(&st.cfg.data_dir, &r.job, &r.period, &r.rid);
    let files: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let prefix = format!("{}_", r.office);
    let pick = |ext: &str| files.iter().find(|f| f.starts_with(&prefix) && f.ends_with(ext)).cloned().unwrap_or_default();
    let mut ctx = tera::Context::new();
    ctx.insert("r", r);
    ctx.insert("xlsx", &pick(".xlsx"));
    ctx.insert("csv", &pick(".csv"));
    ctx.insert("who", &who(st, s));
    ctx.insert("csrf", &s.csrf);
    let nav = match st.tera.render("nav.html", &ctx) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "the report bar failed to render");
            String::new()
        }
    };
    let at = html.find("<body").and_then(|b| html[b..].find('>').map(|e| b + e + 1)).unwrap_or(0);
    let body = format!("{}{nav}{}", &html[..at], &html[at..]);
    secure(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(), CSP_REPORT)
}

/// A stored UTC time in the locality's zone, to the second (the text as
/// stored when it does not parse).
fn local(st: &State, text: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&st.cfg.tz).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|_| text.to_string())
}

/// A file to save, its Chinese name in RFC 5987 form (the ASCII fallback is generic).
fn download(file: &str, ext: &str, bytes: Vec<u8>) -> Response {
    let encoded: String = file
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    let disposition = format!("attachment; filename=\"report.{ext}\"; filename*=UTF-8''{encoded}");
    let kind = if ext == "xlsx" { "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" } else { "text/csv; charset=utf-8" };
    let mut resp = ([(header::CONTENT_TYPE, kind)], bytes).into_response();
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    secure(resp, CSP_PAGE)
}

async fn inspect(
    Ext(st): Ext<Arc<State>>,
    headers: HeaderMap,
    Path((job, period, rid, office)): Path<(String, String, String, String)>,
) -> Response {
    let Some(s) = st.session(&headers) else { return redirect("/login") };
    let Some(r) = visible_report(&st, &s, &job, &period, &rid, &office) else { return not_found(&st) };
    let Some((runs, deliveries)) = st.with_store(|store| reports::ledger(store, &r)) else { return unavailable(&st) };
    st.audit(&s.user.name, "inspect", &r.target(), "ok");
    let command = format!("manyi run {} --period {} --as-of {}", r.job, r.period, r.as_of_exact);
    let deliveries: Vec<serde_json::Value> = deliveries
        .iter()
        .map(|(d, _)| serde_json::json!({"recipient": d.recipient, "state": d.state.as_str(), "hash": d.content_hash, "at": local(&st, &d.updated_at)}))
        .collect();
    let runs: Vec<serde_json::Value> = runs
        .iter()
        .map(|run| {
            let ended = run.ended_at.as_deref().map(|t| local(&st, t)).unwrap_or_default();
            serde_json::json!({"trigger": run.trigger, "started_at": local(&st, &run.started_at), "ended_at": ended, "outcome": run.outcome.as_str()})
        })
        .collect();
    let mut ctx = tera::Context::new();
    ctx.insert("r", &r);
    ctx.insert("runs", &runs);
    ctx.insert("deliveries", &deliveries);
    ctx.insert("command", &command);
    page(&st, StatusCode::OK, "inspect", Some(&s), ctx)
}

async fn bad_list(
    Ext(st): Ext<Arc<State>>,
    headers: HeaderMap,
    Path((job, period, rid, office)): Path<(String, String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(s) = st.session(&headers) else { return redirect("/login") };
    let Some(r) = visible_report(&st, &s, &job, &period, &rid, &office) else { return not_found(&st) };
    let dir = reports::dir(&st.cfg.data_dir, &job, &period, &rid);
    let prefix = format!("{office}_");
    let xlsx = std::fs::read_dir(&dir).ok().and_then(|rd| {
        rd.filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|f| f.starts_with(&prefix) && f.ends_with(".xlsx"))
    });
    let Some(xlsx) = xlsx else { return not_found(&st) };
    let (header_row, rows) = match reports::bad_list(&dir.join(&xlsx)) {
        Ok(Some(t)) => (t.header, t.rows),
        Ok(None) => return message(&st, StatusCode::OK, Some(&s), "此报告没有差评清单（领导报告按单位汇总），请在各单位的报告中查看。"),
        Err(e) => {
            tracing::error!(error = %e, "the 差评 sheet could not be read");
            return unavailable(&st);
        }
    };
    st.audit(&s.user.name, "view", &format!("{}/差评清单", r.target()), "ok");
    let mut statuses: Vec<String> = rows.iter().map(|b| b.status.clone()).filter(|t| !t.is_empty()).collect();
    statuses.sort();
    statuses.dedup();
    let status = q.get("status").cloned().unwrap_or_default();
    let overdue = q.get("overdue").cloned().unwrap_or_default();
    let shown: Vec<serde_json::Value> = rows
        .iter()
        .filter(|b| status.is_empty() || b.status == status)
        .filter(|b| match overdue.as_str() {
            "yes" => b.overdue,
            "no" => !b.overdue,
            _ => true,
        })
        .map(|b| {
            // Each cell with its column's name, for the card layout on phones.
            let cells: Vec<(&str, &str)> =
                b.cells.iter().enumerate().map(|(i, c)| (header_row.get(i).map_or("", String::as_str), c.as_str())).collect();
            serde_json::json!({"overdue": b.overdue, "cells": cells})
        })
        .collect();
    let mut ctx = tera::Context::new();
    ctx.insert("r", &r);
    ctx.insert("header", &header_row);
    ctx.insert("rows", &shown);
    ctx.insert("total", &rows.len());
    ctx.insert("statuses", &statuses);
    ctx.insert("status", &status);
    ctx.insert("overdue", &overdue);
    page(&st, StatusCode::OK, "bad", Some(&s), ctx)
}

async fn health(Ext(st): Ext<Arc<State>>, headers: HeaderMap) -> Response {
    let Some(s) = st.session(&headers) else { return redirect("/login") };
    if s.role != Role::Admin {
        return not_found(&st);
    }
    let now = Utc::now();
    let Some((runs, monitor, mut deliveries)) =
        st.with_store(|store| Ok((store.runs(None, 2000)?, store.monitor(7)?, store.deliveries(None)?)))
    else {
        return unavailable(&st);
    };
    // Held reports are history lines only (the current record keeps the delivered hash).
    let history = st.with_store(|store| store.delivery_history(None)).unwrap_or_default();
    deliveries.extend(history.into_iter().rev().map(|(d, _)| d).filter(|d| d.state.as_str() == "held"));
    let jobs: Vec<serde_json::Value> = st
        .cfg
        .jobs
        .values()
        .map(|job| {
            let next = crate::schedule::JobClock::new(job)
                .ok()
                .and_then(|c| {
                    c.next_fires(&st.cfg.calendar, now, 1).first().map(|t| t.with_timezone(&st.cfg.tz).format("%Y-%m-%d %H:%M").to_string())
                })
                .unwrap_or_default();
            let own: Vec<_> = runs.iter().filter(|r| r.job == job.name).collect();
            let failures = own.iter().take(30).filter(|r| matches!(r.outcome.as_str(), "failed" | "abandoned")).count();
            let last: Vec<serde_json::Value> = own
                .iter()
                .take(5)
                .map(|r| serde_json::json!({"period": r.period, "trigger": r.trigger, "started_at": local(&st, &r.started_at), "outcome": r.outcome.as_str(), "error": r.error.clone().unwrap_or_default()}))
                .collect();
            serde_json::json!({"name": job.name, "next": next, "failures": failures, "last": last})
        })
        .collect();
    let troubled: Vec<serde_json::Value> = deliveries
        .iter()
        .filter(|d| matches!(d.state.as_str(), "failed" | "held" | "sending"))
        .take(200)
        .map(|d| serde_json::json!({"job": d.job, "period": d.period, "office": d.office, "recipient": d.recipient, "state": d.state.as_str(), "updated_at": local(&st, &d.updated_at)}))
        .collect();
    let service = monitor.service.as_ref().map(|(h, ms)| {
        let beat =
            chrono::DateTime::from_timestamp_millis(*ms).map(|t| t.with_timezone(&st.cfg.tz).format("%Y-%m-%d %H:%M:%S").to_string());
        format!("{h}，最近心跳 {}", beat.unwrap_or_default())
    });
    let mut ctx = tera::Context::new();
    ctx.insert("jobs", &jobs);
    ctx.insert("troubled", &troubled);
    ctx.insert("monitor", &monitor);
    ctx.insert("service", &service.unwrap_or_else(|| "无（没有 manyi serve 持有数据目录）".into()));
    let mut audit = st.with_store(|store| store.audit_rows(50)).unwrap_or_default();
    for a in &mut audit {
        a.at = local(&st, &a.at);
    }
    ctx.insert("audit", &audit);
    page(&st, StatusCode::OK, "health", Some(&s), ctx)
}

async fn metrics(Ext(st): Ext<Arc<State>>) -> Response {
    let Some((runs, monitor)) = st.with_store(|store| Ok((store.runs(None, 5000)?, store.monitor(7)?))) else { return unavailable(&st) };
    let text = super::metrics::render(&runs, &monitor);
    secure(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(), CSP_PAGE)
}
