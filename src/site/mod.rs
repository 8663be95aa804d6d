//! The intranet site (`[site]`, served by `manyi serve`): each office's
//! reports and 差评, the inspection view of a report version, the health of
//! the service, `/healthz` and `/metrics`.
//!
//! Read-only over the data directory: it lists what the run ledger and the
//! browsable copies under `data/reports` hold and writes only its own tables
//! (`users`, `sessions`, `audit`, through `store::accounts`). An
//! orchestrator at the level of `serve` and `intake`.

pub mod auth;
mod metrics;
pub mod reports;
mod web;

use crate::config::{Config, OfficeRole, SiteConfig};
use crate::store::Store;
use anyhow::Result;
use std::sync::Arc;

/// Wrong passwords in a row that lock an account.
pub const LOCK_AFTER: u32 = 5;
/// The shortest password `manyi users` accepts.
pub const MIN_PASSWORD: usize = 10;

/// Why an account command or the site cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// No `[site]` table.
    #[error("no [site] table in the configuration: add [site] with listen = \"127.0.0.1:8089\" (README, “Intranet site”)")]
    NotConfigured,
    /// The listen address cannot be bound.
    #[error("[site] listen = “{addr}”: {reason}")]
    Listen {
        /// The configured address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// An unknown role.
    #[error("unknown role “{0}”: use office, leadership, inspector or admin")]
    Role(String),
    /// An office account without a known office, or another role with one.
    #[error("{0}")]
    Office(String),
    /// The name is not a plain sign-in name.
    #[error("user name “{0}”: use 2–64 ASCII letters, digits, '.', '-' or '_'")]
    Name(String),
    /// The name is taken, or there is no such account.
    #[error("{0}")]
    Account(String),
    /// A report's XLSX could not be read.
    #[error("{path}: {reason} (the report's XLSX under data/reports; rerun the report to write it again)")]
    Workbook {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The password is too short or missing.
    #[error(
        "the password must have at least {MIN_PASSWORD} characters; give it on standard input or in MANYI_PASSWORD, never as an argument"
    )]
    Password,
}

/// What an account may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// One office: its own reports and 差评.
    Office,
    /// Every report.
    Leadership,
    /// Every report and its inspection view.
    Inspector,
    /// Every report and the service's health.
    Admin,
}

impl Role {
    /// The role of a stored or typed text.
    pub fn parse(s: &str) -> Result<Role, SiteError> {
        Ok(match s {
            "office" => Role::Office,
            "leadership" => Role::Leadership,
            "inspector" => Role::Inspector,
            "admin" => Role::Admin,
            _ => return Err(SiteError::Role(s.to_string())),
        })
    }

    /// The text stored in state.db.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Office => "office",
            Role::Leadership => "leadership",
            Role::Inspector => "inspector",
            Role::Admin => "admin",
        }
    }

    /// The role's name on the pages.
    pub fn label(self) -> &'static str {
        match self {
            Role::Office => "单位",
            Role::Leadership => "领导",
            Role::Inspector => "督查",
            Role::Admin => "管理员",
        }
    }
}

fn check_name(name: &str) -> Result<(), SiteError> {
    let ok = (2..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok { Ok(()) } else { Err(SiteError::Name(name.to_string())) }
}

fn check_password(password: &str) -> Result<(), SiteError> {
    if password.chars().count() >= MIN_PASSWORD { Ok(()) } else { Err(SiteError::Password) }
}

/// `manyi users add`: a new account. An office account names an office of
/// offices.toml whose role is office; the other roles name none.
pub fn add_user(cfg: &Config, name: &str, role: &str, office: Option<&str>, password: &str) -> Result<()> {
    check_name(name)?;
    let role = Role::parse(role)?;
    match (role, office) {
        (Role::Office, Some(id)) => {
            if !cfg.offices.iter().any(|o| o.id == id && o.role == OfficeRole::Office) {
                let known = cfg.offices.iter().filter(|o| o.role == OfficeRole::Office).map(|o| o.id.as_str()).collect::<Vec<_>>();
                return Err(SiteError::Office(format!(
                    "no office “{id}” with role office in offices.toml (offices: {})",
                    known.join(", ")
                ))
                .into());
            }
        }
        (Role::Office, None) => {
            return Err(SiteError::Office("an office account needs --office <office id from offices.toml>".into()).into());
        }
        (_, Some(_)) => return Err(SiteError::Office(format!("a {} account sees every office; leave out --office", role.as_str())).into()),
        (_, None) => {}
    }
    check_password(password)?;
    let hash = auth::hash_password(password)?;
    let store = Store::open(&cfg.data_dir)?;
    if !store.add_user(name, role.as_str(), office, &hash)? {
        return Err(SiteError::Account(format!("an account “{name}” exists already; use `manyi users passwd {name}`")).into());
    }
    Ok(())
}

/// `manyi users passwd`: a new password; unlocks and signs the account out.
pub fn set_password(cfg: &Config, name: &str, password: &str) -> Result<()> {
    check_password(password)?;
    let hash = auth::hash_password(password)?;
    if !Store::open(&cfg.data_dir)?.set_password(name, &hash)? {
        return Err(SiteError::Account(format!("no account “{name}”")).into());
    }
    Ok(())
}

/// `manyi users disable`: the account can no longer sign in; its sessions end.
pub fn disable_user(cfg: &Config, name: &str) -> Result<()> {
    if !Store::open(&cfg.data_dir)?.disable_user(name)? {
        return Err(SiteError::Account(format!("no account “{name}”")).into());
    }
    Ok(())
}

/// A running site: its server task.
pub struct Site {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

/// Starts the site on the current tokio runtime.
pub async fn start(cfg: Arc<Config>) -> Result<Site> {
    let sc: SiteConfig = cfg.file.site.clone().ok_or(SiteError::NotConfigured)?;
    let listener = tokio::net::TcpListener::bind(&sc.listen)
        .await
        .map_err(|e| SiteError::Listen { addr: sc.listen.clone(), reason: e.to_string() })?;
    let state = web::State::new(Arc::clone(&cfg), &sc)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = web::router(state);
    let server = tokio::spawn(async move {
        let graceful = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = rx.await;
        });
        if let Err(e) = graceful.await {
            tracing::error!(error = %e, "the site server stopped");
        }
    });
    tracing::info!(listen = %sc.listen, "site listening");
    Ok(Site { shutdown: Some(tx), server })
}

impl Site {
    /// Stops accepting and lets requests in flight finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.server).await;
    }
}
