//! Publication runs: after every committed batch (collect, intake) and on
//! `manyi publish`, the Delta Lake tables of `[publish] delta` are brought up
//! to the store (see `store::publish`). A failed publication never fails
//! the collect that triggered it: the batch is committed, and the next
//! publication catches the table up.

use crate::config::Config;
use crate::store::Store;

/// What `manyi publish` did, table by table.
#[derive(Debug, Clone)]
pub struct PublishSummary {
    /// `ratings` or `responses`.
    pub table: String,
    /// Batches given a Delta version by this run.
    pub batches: usize,
    /// The table's version afterwards, if it exists.
    pub version: Option<i64>,
}

/// Errors of `manyi publish`.
#[derive(Debug, thiserror::Error)]
pub enum PublishRunError {
    /// `[publish] delta` is not set.
    #[error("manyi.toml has no `[publish] delta = \"…\"`: name the folder of the Delta tables there first")]
    NotConfigured,
    /// The publication failed; the store is untouched.
    #[error("{0}")]
    Failed(Box<crate::store::PublishError>),
}

impl From<crate::store::PublishError> for PublishRunError {
    fn from(e: crate::store::PublishError) -> Self {
        // Boxed: this one travels up to the CLI through every `Result` on the way.
        PublishRunError::Failed(Box::new(e))
    }
}

/// Publishes every batch not yet in the Delta tables; with `rebuild`, moves
/// the tables aside and replays every batch of the catalog.
pub fn publish(cfg: &Config, store: &mut Store, rebuild: bool) -> Result<Vec<PublishSummary>, PublishRunError> {
    let Some(dir) = cfg.delta_dir() else { return Err(PublishRunError::NotConfigured) };
    run(store, &dir, rebuild)
}

fn run(store: &mut Store, dir: &std::path::Path, rebuild: bool) -> Result<Vec<PublishSummary>, PublishRunError> {
    let done = store.publish_delta(dir, rebuild)?;
    Ok(done.into_iter().map(|p| PublishSummary { table: p.table, batches: p.batches, version: p.version }).collect())
}

/// After a committed batch: publishes it when `[publish] delta` is set. A
/// failure is logged, not returned: the batch is safe in the store and the
/// next publication replays it.
pub fn after_commit(cfg: &Config, store: &mut Store) {
    if cfg.delta_dir().is_none() {
        return;
    }
    match publish(cfg, store, false) {
        Ok(done) => {
            for p in done.iter().filter(|p| p.batches > 0) {
                tracing::info!(table = %p.table, batches = p.batches, version = ?p.version, "Delta table published");
            }
        }
        Err(e) => tracing::warn!(error = %e, "Delta publication failed; the batch is committed and the next run publishes it"),
    }
}
