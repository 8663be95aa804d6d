//! The QR-code intake: residents rate a community service on a small
//! server-rendered page (`manyi intake`, or inside `manyi serve`).
//!
//! An orchestrator at the level of `serve`: it lands each submission
//! ([`landing`], fsynced before the thank-you page) and commits the landed
//! lines to the store in small batches through the ordinary commit protocol.
//! Org and category come from the code (a configured service point, or a
//! signed case slip naming one), never from the form. Channel 3 (二维码).

pub mod landing;
pub mod qr;
pub mod token;
mod web;

use crate::config::{Config, IntakeConfig};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Why the intake cannot start or a submission cannot be landed.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// No `[intake]` table in manyi.toml.
    #[error("no [intake] table in the configuration: add listen, source and [[intake.point]] entries (README, “QR-code intake”)")]
    NotConfigured,
    /// The listen address does not parse or cannot be bound.
    #[error("[intake] listen = “{addr}”: {reason}")]
    Listen {
        /// The configured address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// The slip secret is missing from the environment.
    #[error("the environment variable {0} (the case-slip secret, [intake] secret_env) is not set or shorter than 16 bytes")]
    NoSecret(String),
    /// Reading or writing the landing file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A submission could not be landed.
    #[error("landing a submission failed: {0}")]
    Landing(String),
}

/// The intake settings. `manyi check` (config::rules) has already checked
/// its source, address and points against the rest of the configuration: a
/// config with a wrong point never loads.
pub fn settings(cfg: &Config) -> Result<&IntakeConfig, IntakeError> {
    cfg.file.intake.as_ref().ok_or(IntakeError::NotConfigured)
}

/// The slip secret from the environment variable `secret_env`.
pub fn secret(ic: &IntakeConfig) -> Result<Vec<u8>, IntakeError> {
    match std::env::var(&ic.secret_env) {
        Ok(s) if s.len() >= 16 => Ok(s.into_bytes()),
        _ => Err(IntakeError::NoSecret(ic.secret_env.clone())),
    }
}

/// The base URL printed in codes.
pub fn public_url(ic: &IntakeConfig) -> String {
    if ic.public_url.is_empty() { format!("http://{}", ic.listen) } else { ic.public_url.trim_end_matches('/').to_string() }
}

/// A running intake: the server task and the committer thread.
pub struct Intake {
    stop: Arc<AtomicBool>,
    committer: Option<std::thread::JoinHandle<()>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

/// Starts the intake on the current tokio runtime: binds the address,
/// commits what an earlier process landed, starts the committer.
pub async fn start(cfg: Arc<Config>) -> Result<Intake> {
    let ic = settings(&cfg)?.clone();
    let path = landing::landing_path(&cfg, &ic.source);
    let (appender, landed) = landing::open(&path)?;
    let listener = tokio::net::TcpListener::bind(&ic.listen)
        .await
        .map_err(|e| IntakeError::Listen { addr: ic.listen.clone(), reason: e.to_string() })?;
    let stop = Arc::new(AtomicBool::new(false));
    let committer = {
        let (cfg, source, stop) = (Arc::clone(&cfg), ic.source.clone(), Arc::clone(&stop));
        let every = Duration::from_millis(ic.commit_every_ms.max(100));
        std::thread::Builder::new()
            .name("intake-commit".into())
            .spawn(move || landing::commit_loop(cfg, source, path, every, stop))
            .context("starting the intake committer")?
    };
    let state = web::State::new(Arc::clone(&cfg), ic.clone(), appender, &landed)?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = web::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = tokio::spawn(async move {
        let graceful = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = rx.await;
        });
        if let Err(e) = graceful.await {
            tracing::error!(error = %e, "the intake server stopped");
        }
    });
    tracing::info!(listen = %ic.listen, url = %public_url(&ic), points = ic.points.len(), "intake listening");
    Ok(Intake { stop, committer: Some(committer), shutdown: Some(tx), server })
}

impl Intake {
    /// Stops accepting, lets requests in flight finish, commits what is landed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.server).await;
        self.stop.store(true, Ordering::SeqCst);
        if let Some(c) = self.committer.take() {
            let _ = tokio::task::spawn_blocking(move || c.join()).await;
        }
    }
}

/// `manyi intake`: only the intake server, until SIGTERM or Ctrl-C.
pub fn run_standalone(cfg: Config) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing the signal handler")?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("starting the runtime")?;
    rt.block_on(async {
        let intake = start(Arc::new(cfg)).await?;
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        intake.stop().await;
        tracing::info!("intake stopped");
        Ok(())
    })
}
