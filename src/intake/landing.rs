//! The landing file of the intake: one JSON line per submission, appended
//! and fsynced before the resident is thanked, then committed to the
//! curated store in small batches.
//!
//! Crash story: a line is acknowledged only after `fdatasync`, so every
//! acknowledged submission is in the file. The committer remembers how far
//! it committed in a sidecar file written after the store's commit; a crash
//! between the two commits the same lines again, which the store counts as
//! unchanged (the rating id and content come from the line, so they are
//! identical). A torn last line (killed mid-write, never acknowledged) is cut
//! off at start-up before anything is appended after it.

use super::IntakeError;
use crate::config::Config;
use crate::model::{FollowUp, Level, Rating};
use crate::store::{BatchMeta, Store};
use chrono::{NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Most lines written under one fsync.
const GROUP_MAX: usize = 512;
/// Most lines in one store batch.
const BATCH_MAX: usize = 5000;

/// One submission as landed: everything the rating is built from, so that
/// committing it again builds the same rating.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Submission {
    /// The rating id (server-generated, or derived from the slip).
    pub id: String,
    /// Service point id.
    pub point: String,
    /// Slip id, empty for a service-point code.
    #[serde(default)]
    pub slip: String,
    /// 办件编号 the slip was bound to.
    #[serde(default)]
    pub case_no: String,
    /// Local wall time, `%Y-%m-%d %H:%M:%S`.
    pub at: String,
    /// Org code from the point.
    pub org: String,
    /// Category code from the point.
    pub category: String,
    /// 服务事项 from the point.
    #[serde(default)]
    pub item: String,
    /// Level 1–5 (5 非常满意).
    pub level: u8,
    /// Reason tags, comma separated.
    #[serde(default)]
    pub reasons: String,
    /// The resident's comment, raw (landing stays raw; curated is masked).
    #[serde(default)]
    pub comment: String,
    /// Phone for 回访, raw; only its keyed hash reaches the curated store.
    #[serde(default)]
    pub phone: String,
}

type Ack = tokio::sync::oneshot::Sender<std::io::Result<()>>;

/// The appending side: a thread that writes whatever is queued, fsyncs once
/// for the lot (group commit: 200 residents a second must not mean 200
/// fsyncs a second), then acknowledges each.
#[derive(Clone)]
pub struct Landing {
    tx: mpsc::Sender<(Vec<u8>, Ack)>,
}

/// The landing file of a source.
pub fn landing_path(cfg: &Config, source: &str) -> PathBuf {
    cfg.data_dir.join("landing").join(source).join("intake.jsonl")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IntakeError + '_ {
    move |source| IntakeError::Io { path: path.to_path_buf(), source }
}

/// Opens the landing file, cuts a torn last line, returns the appender and
/// every submission landed so far (for the used slips).
pub fn open(path: &Path) -> Result<(Landing, Vec<Submission>), IntakeError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut file = OpenOptions::new().create(true).read(true).append(true).open(path).map_err(io(path))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io(path))?;
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if whole < bytes.len() {
        tracing::warn!(bytes = bytes.len() - whole, "a torn last line of the intake landing (never acknowledged) was cut off");
        file.set_len(whole as u64).map_err(io(path))?;
        file.sync_all().map_err(io(path))?;
    }
    let landed = parse_lines(&bytes[..whole]);
    let (tx, rx) = mpsc::channel::<(Vec<u8>, Ack)>();
    let p = path.to_path_buf();
    std::thread::Builder::new().name("intake-landing".into()).spawn(move || write_loop(file, &p, &rx)).map_err(io(path))?;
    Ok((Landing { tx }, landed))
}

fn write_loop(mut file: File, path: &Path, rx: &mpsc::Receiver<(Vec<u8>, Ack)>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(item) => group.push(item),
                Err(_) => break,
            }
        }
        let mut buf = Vec::new();
        for (line, _) in &group {
            buf.extend_from_slice(line);
        }
        let result = file.write_all(&buf).and_then(|()| file.sync_data());
        if let Err(e) = &result {
            tracing::error!(path = %path.display(), error = %e, "intake landing write failed; submissions refused");
        }
        for (_, ack) in group {
            // A resident who left before the answer is no error.
            let _ = ack.send(result.as_ref().map(|_| ()).map_err(|e| std::io::Error::new(e.kind(), e.to_string())));
        }
    }
}

impl Landing {
    /// Appends one submission; returns once it is on disk.
    pub async fn append(&self, sub: &Submission) -> Result<(), IntakeError> {
        let mut line = serde_json::to_vec(sub).map_err(|e| IntakeError::Landing(e.to_string()))?;
        line.push(b'\n');
        let (ack, done) = tokio::sync::oneshot::channel();
        self.tx.send((line, ack)).map_err(|_| IntakeError::Landing("the landing writer stopped".into()))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(IntakeError::Landing(e.to_string())),
            Err(_) => Err(IntakeError::Landing("the landing writer stopped".into())),
        }
    }
}

fn parse_lines(bytes: &[u8]) -> Vec<Submission> {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| match serde_json::from_slice::<Submission>(l) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "an intake landing line does not parse; skipped");
                None
            }
        })
        .collect()
}

/// The canonical rating of a landed submission.
pub fn to_rating(cfg: &Config, source: &str, s: &Submission) -> Option<Rating> {
    let level = Level::from_code(s.level)?;
    let rated_at = NaiveDateTime::parse_from_str(&s.at, "%Y-%m-%d %H:%M:%S").ok()?;
    Some(Rating {
        rating_id: s.id.as_str().into(),
        source: source.into(),
        rated_at,
        org_code: s.org.as_str().into(),
        category: s.category.as_str().into(),
        service_item: s.item.as_str().into(),
        department: std::sync::Arc::default(),
        channel: 3,
        level,
        reason_tags: s.reasons.as_str().into(),
        comment: crate::privacy::mask(&s.comment).into(),
        anonymous: s.phone.trim().is_empty(),
        rater_hash: cfg.rater_key.hash(&s.phone).map(String::into_boxed_str),
        follow_up: (level.code() <= 2).then_some(FollowUp::Pending),
        rectified_at: None,
        revisit: Box::default(),
        default_rating: false,
    })
}

/// Commits landed lines to the store every `every` until `stop`, then once more.
pub fn commit_loop(cfg: Arc<Config>, source: String, path: PathBuf, every: Duration, stop: Arc<AtomicBool>) {
    let mut store = match Store::open(&cfg.data_dir) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "the intake committer cannot open the store; submissions stay landed");
            return;
        }
    };
    let mut seq = 0u64;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        loop {
            match commit_once(&cfg, &mut store, &source, &path, &mut seq) {
                Ok(n) if n >= BATCH_MAX => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "intake commit failed; retried at the next tick");
                    break;
                }
            }
        }
        if stopping {
            return;
        }
        let started = std::time::Instant::now();
        while started.elapsed() < every && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn offset_path(path: &Path) -> PathBuf {
    path.with_extension("committed")
}

/// Commits the next batch of whole lines after the committed offset; returns how many lines.
pub fn commit_once(cfg: &Config, store: &mut Store, source: &str, path: &Path, seq: &mut u64) -> anyhow::Result<usize> {
    let off_path = offset_path(path);
    let offset: u64 = std::fs::read_to_string(&off_path).ok().and_then(|t| t.trim().parse().ok()).unwrap_or(0);
    let mut file = File::open(path).map_err(io(path))?;
    file.seek(SeekFrom::Start(offset)).map_err(io(path))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io(path))?;
    // Only whole lines: the writer may be in the middle of one.
    let mut end = 0;
    let mut lines = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            end = i + 1;
            lines += 1;
            if lines == BATCH_MAX {
                break;
            }
        }
    }
    if end == 0 {
        return Ok(0);
    }
    let ratings: Vec<Rating> = parse_lines(&bytes[..end]).iter().filter_map(|s| to_rating(cfg, source, s)).collect();
    *seq += 1;
    let now = Utc::now();
    let meta = BatchMeta {
        batch_id: format!("{source}-{}-{:03}", now.format("%Y%m%dT%H%M%S%3fZ"), *seq % 1000),
        source: source.into(),
        landing: Some(path.to_path_buf()),
        quarantine: None,
        quarantined: 0,
        watermark: None,
    };
    let outcome = store.commit_ratings(&meta, &ratings)?;
    crate::store::write_atomic(&off_path, (offset + end as u64).to_string().as_bytes())?;
    crate::pipeline::publish_after_commit(cfg, store);
    tracing::info!(lines, new = outcome.new, unchanged = outcome.unchanged, "intake batch committed");
    Ok(lines)
}
