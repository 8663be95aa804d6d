//! One live run per (job, period): a lock row in state.db with a heartbeat.
//!
//! Why: delivery is check-then-send — a run reads who already has the
//! period's report, then sends to the others. Two runs of one job and period
//! at once (an operator's `manyi run` while `serve` fires the job, or two
//! terminals) both read "not yet delivered" and both send, so recipients got
//! two copies. The lock makes the second run wait until the first is done; it
//! then finds everyone served and sends nothing. A holder whose process is
//! gone from this host (or, on another host, whose heartbeat is older than
//! [`STALE_AFTER`]) is dead: its lock is taken over, and only then may the
//! new run say that an earlier run was interrupted.

use super::{Store, StoreError};
use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A heartbeat older than this marks the holder dead.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// How often a holder renews its heartbeat.
const BEAT_EVERY: Duration = Duration::from_secs(5);
/// How often a waiting run looks at the lock again.
const POLL_EVERY: Duration = Duration::from_millis(250);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS run_locks (
    job          TEXT NOT NULL,
    period       TEXT NOT NULL,
    run_id       TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    host         TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_ms INTEGER NOT NULL,
    PRIMARY KEY (job, period)
);
";

pub(super) fn init(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

/// Who holds a run lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLockHolder {
    /// The holding run.
    pub run_id: String,
    /// Its process id.
    pub pid: u32,
    /// Its host name.
    pub host: String,
    /// When it took the lock (RFC 3339).
    pub started_at: String,
    /// Its last heartbeat, Unix ms.
    pub heartbeat_ms: i64,
}

impl RunLockHolder {
    /// Whether the holder is certainly dead. On this very host the process
    /// table says: dead when its process is gone, or when the process of
    /// that number started after the lock was taken (the number was given
    /// to another); a live holder is alive whatever its heartbeat says,
    /// because its heartbeat can wait behind its own commit — a province's
    /// year in one file holds the store's write lock for most of a minute,
    /// and the heartbeat's write waits for it. Elsewhere (or without
    /// `/proc`): no heartbeat for [`STALE_AFTER`].
    fn is_dead(&self, now_ms: i64, this_host: &str) -> bool {
        if self.host == this_host
            && let Some(alive) = alive_here(self.pid, &self.started_at)
        {
            return !alive;
        }
        now_ms - self.heartbeat_ms > STALE_AFTER.as_millis() as i64
    }
}

/// Whether process `pid` of this host still holds what it took at
/// `taken` (RFC 3339): it exists, and it started no later than that (else
/// its number was given to another process since). `None` without
/// `/proc`, where only a heartbeat can tell.
pub(super) fn alive_here(pid: u32, taken: &str) -> Option<bool> {
    if !Path::new("/proc/self/stat").is_file() {
        return None;
    }
    let taken = chrono::DateTime::parse_from_rfc3339(taken).map(|t| t.timestamp()).unwrap_or(i64::MAX);
    Some(match process_started(pid) {
        None => false,
        // Whole seconds both: a second's grace.
        Some(started) => started <= taken + 1,
    })
}

/// When process `pid` started, in Unix seconds, from `/proc`; `None` when
/// there is no such process. Its start is field 22 of `/proc/<pid>/stat`,
/// in clock ticks after boot (`USER_HZ`, 100 on Linux whatever the
/// kernel's own tick), and boot is `btime` of `/proc/stat`.
fn process_started(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let ticks: i64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    let boot: i64 =
        std::fs::read_to_string("/proc/stat").ok()?.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))?;
    Some(boot + ticks / 100)
}

/// A held run lock; the heartbeat runs on its own thread and connection until
/// the guard is dropped, which releases the lock.
pub struct RunLockGuard {
    db: std::path::PathBuf,
    job: String,
    period: String,
    run_id: String,
    stop: Arc<AtomicBool>,
    beat: Option<std::thread::JoinHandle<()>>,
    /// The dead run whose lock was taken over, if any: only then were
    /// deliveries left "sending" by a run that is really gone.
    pub took_over: Option<RunLockHolder>,
}

impl Drop for RunLockGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.beat.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        if let Ok(conn) = Connection::open(&self.db) {
            let _ = conn.busy_timeout(super::catalog::WRITE_WAIT);
            let _ = conn.execute(
                "DELETE FROM run_locks WHERE job = ?1 AND period = ?2 AND run_id = ?3",
                params![self.job, self.period, self.run_id],
            );
        }
    }
}

fn this_host() -> String {
    hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}

impl Store {
    /// Takes the lock of (`job`, `period`) for `run_id`, waiting while a live
    /// run holds it (`waiting` is called once, with the holder, when a wait
    /// begins). A dead holder's lock is taken over.
    ///
    /// A store busy with another process's commit is waited out too, however
    /// long: taking the lock writes to state.db, and a collect holds its
    /// write lock while it reads a large file — most of a minute for a
    /// province's year in one file, longer than SQLite's wait — so a report
    /// job fired meanwhile failed with "database is locked" instead of
    /// starting a minute late. A commit ends or its process dies (which
    /// frees the lock), so the wait ends.
    pub fn lock_run(&self, job: &str, period: &str, run_id: &str, waiting: &dyn Fn(&RunLockHolder)) -> Result<RunLockGuard, StoreError> {
        let host = this_host();
        let (mut told, mut told_busy) = (false, false);
        loop {
            match self.try_lock_run(job, period, run_id, &host) {
                Ok(Ok(took_over)) => return Ok(self.start_heartbeat(job, period, run_id, took_over)),
                Ok(Err(holder)) => {
                    if !told {
                        waiting(&holder);
                        told = true;
                    }
                    std::thread::sleep(POLL_EVERY);
                }
                Err(e) if e.is_busy() => {
                    if !told_busy {
                        tracing::warn!(
                            job,
                            period,
                            "the data directory is busy with another process's commit (a large file being collected?); waiting for it"
                        );
                        told_busy = true;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt: `Ok(Ok(took_over))` when the lock is ours now,
    /// `Ok(Err(holder))` when a live run holds it.
    fn try_lock_run(
        &self,
        job: &str,
        period: &str,
        run_id: &str,
        host: &str,
    ) -> Result<Result<Option<RunLockHolder>, RunLockHolder>, StoreError> {
        // IMMEDIATE: the read and the claim below are one step; two runs
        // cannot both see the lock free.
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, rusqlite::TransactionBehavior::Immediate)?;
        let now = Utc::now();
        let holder = tx
            .query_row(
                "SELECT run_id, pid, host, started_at, heartbeat_ms FROM run_locks WHERE job = ?1 AND period = ?2",
                params![job, period],
                |r| {
                    Ok(RunLockHolder { run_id: r.get(0)?, pid: r.get(1)?, host: r.get(2)?, started_at: r.get(3)?, heartbeat_ms: r.get(4)? })
                },
            )
            .optional()?;
        let took_over = match holder {
            Some(h) if !h.is_dead(now.timestamp_millis(), host) => return Ok(Err(h)),
            other => other,
        };
        tx.execute(
            "INSERT INTO run_locks (job, period, run_id, pid, host, started_at, heartbeat_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (job, period) DO UPDATE SET run_id = excluded.run_id, pid = excluded.pid, host = excluded.host,
                 started_at = excluded.started_at, heartbeat_ms = excluded.heartbeat_ms",
            params![job, period, run_id, std::process::id(), host, now.to_rfc3339(), now.timestamp_millis()],
        )?;
        tx.commit()?;
        Ok(Ok(took_over))
    }

    fn start_heartbeat(&self, job: &str, period: &str, run_id: &str, took_over: Option<RunLockHolder>) -> RunLockGuard {
        let db = self.root.join("state.db");
        let stop = Arc::new(AtomicBool::new(false));
        let (db2, stop2) = (db.clone(), stop.clone());
        let (j, p, r) = (job.to_string(), period.to_string(), run_id.to_string());
        let beat = std::thread::Builder::new()
            .name("run-lock-heartbeat".into())
            .spawn(move || {
                let Ok(conn) = Connection::open(&db2) else { return };
                let _ = conn.busy_timeout(Duration::from_secs(10));
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::park_timeout(BEAT_EVERY);
                    let _ = conn.execute(
                        "UPDATE run_locks SET heartbeat_ms = ?4 WHERE job = ?1 AND period = ?2 AND run_id = ?3",
                        params![j, p, r, Utc::now().timestamp_millis()],
                    );
                }
            })
            .ok();
        RunLockGuard { db, job: job.into(), period: period.into(), run_id: run_id.into(), stop, beat, took_over }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(pid: u32, host: &str, started_at: chrono::DateTime<Utc>, heartbeat_ms: i64) -> RunLockHolder {
        RunLockHolder { run_id: "r".into(), pid, host: host.into(), started_at: started_at.to_rfc3339(), heartbeat_ms }
    }

    /// On this host the process table decides, not the heartbeat: a live
    /// holder whose heartbeat is a minute old (waiting behind its own long
    /// commit) keeps its lock; a holder whose process is gone, or whose
    /// number a later process now has, is dead. On another host the
    /// heartbeat decides.
    #[test]
    fn a_holder_is_dead_by_its_process_here_and_by_its_heartbeat_elsewhere() {
        let here = this_host();
        let now = Utc::now();
        let minute_ago = now.timestamp_millis() - 60_000;
        let me = std::process::id();
        assert!(process_started(me).is_some_and(|t| t <= now.timestamp() && t > now.timestamp() - 86_400 * 365));
        assert!(!holder(me, &here, now, minute_ago).is_dead(now.timestamp_millis(), &here), "alive, heartbeat stale");
        let long_ago = now - chrono::Duration::days(400);
        assert!(holder(me, &here, long_ago, now.timestamp_millis()).is_dead(now.timestamp_millis(), &here), "the number reused");
        assert!(holder(u32::MAX - 7, &here, now, now.timestamp_millis()).is_dead(now.timestamp_millis(), &here), "no such process");
        assert!(holder(me, "elsewhere", now, minute_ago).is_dead(now.timestamp_millis(), &here), "another host, stale");
        assert!(!holder(me, "elsewhere", now, now.timestamp_millis() - 1_000).is_dead(now.timestamp_millis(), &here));
    }

    /// A report fired while a collect holds the store's write lock longer
    /// than SQLite waits (a province's year in one file) starts when the
    /// commit ends, instead of failing with "database is locked".
    #[test]
    fn a_run_lock_waits_out_a_commit_longer_than_sqlites_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let hold = super::super::catalog::WRITE_WAIT * 2;
        let (held, release) = (Arc::new(std::sync::Barrier::new(2)), dir.path().join("state.db"));
        let held2 = held.clone();
        let writer = std::thread::spawn(move || {
            let conn = Connection::open(release).expect("open");
            conn.execute_batch("BEGIN IMMEDIATE").expect("write lock");
            held2.wait();
            std::thread::sleep(hold);
            conn.execute_batch("COMMIT").expect("commit");
        });
        held.wait();
        let started = std::time::Instant::now();
        let guard = store.lock_run("monthly", "2026-10", "run-1", &|_| panic!("no run holds it")).expect("waits, then locks");
        assert!(started.elapsed() >= hold - Duration::from_millis(200), "it waited for the commit: {:?}", started.elapsed());
        assert!(guard.took_over.is_none());
        writer.join().expect("writer");
    }
}
