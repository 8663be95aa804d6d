//! `manyi serve`: the long-running service that fires the jobs.
//!
//! The decisions (what is due, catch-ups, no overlap) are the pure
//! [`Scheduler`] of `schedule`; this module is its edge: the clock, the
//! service lock in state.db, signals, and runs on blocking threads through
//! `pipeline::run_job` (polars and rusqlite block, so a run never occupies
//! the loop that keeps the heartbeat), and the admins' mail when a run fails.
//!
//! Shutdown (SIGTERM, SIGINT/Ctrl-C): no new run is started; a run in
//! progress is let finish (a blocking thread cannot be aborted safely, and a
//! report half rendered is worth finishing), the heartbeat continues
//! meanwhile, then the lock is released and the process exits 0. If the
//! process is killed anyway (systemd's stop timeout), nothing half-written is
//! visible: batches commit in one SQLite transaction and files are renamed
//! into place; the next start marks the open ledger rows `abandoned`.

use crate::config::{Config, JobDef};
use crate::pipeline::{self, RunOptions};
use crate::schedule::{Fire, JobClock, Period, Scheduler};
use crate::store::Store;
use anyhow::{Context, Result};
use chrono::{TimeDelta, Utc};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::task::JoinSet;

/// How often the lock's heartbeat is renewed.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A holder on another host silent for this long is dead and its lock is
/// taken over (on this host, its process gone is enough; see
/// `Store::acquire_service_lock`).
const STALE_AFTER: TimeDelta = TimeDelta::seconds(30);
/// Longest sleep, so that a signal is noticed promptly.
const TICK: Duration = Duration::from_millis(250);

/// Why the service cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another live service holds the data directory.
    #[error(
        "another `manyi serve` is running on {data_dir}: {holder} (pid {pid} on {host}, started {started}, \
         last heartbeat {beat}). Stop it first. If it died, its lock is taken over: at once from the same host, \
         {stale} s after its last heartbeat from another."
    )]
    Locked {
        /// The data directory.
        data_dir: String,
        /// Holder id.
        holder: String,
        /// Its process id.
        pid: i64,
        /// Its host.
        host: String,
        /// When it started.
        started: String,
        /// Its last heartbeat.
        beat: String,
        /// Seconds of silence after which it counts as dead.
        stale: i64,
    },
    /// The lock was taken over while this service ran (it was presumed dead).
    #[error("the service lock of {0} was taken over by another `manyi serve` (this one missed its heartbeats); stopping")]
    LockLost(String),
}

/// Runs the scheduler until SIGTERM or Ctrl-C.
pub fn serve(cfg: Config) -> Result<()> {
    let cfg = Arc::new(cfg);
    let store = Store::open(&cfg.data_dir)?;
    let host = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "localhost".into());
    let holder = format!("{host}:{}:{}", std::process::id(), Utc::now().timestamp_millis());
    if let Some(h) = store.acquire_service_lock(&holder, &host, Utc::now(), STALE_AFTER)? {
        return Err(ServeError::Locked {
            data_dir: cfg.data_dir.display().to_string(),
            holder: h.holder,
            pid: h.pid,
            host: h.host,
            started: h.started_at,
            beat: h.heartbeat_at,
            stale: STALE_AFTER.num_seconds(),
        }
        .into());
    }
    let result = run_service(&cfg, &store, &holder);
    // Released even after an error, unless another service owns it by now.
    store.release_service_lock(&holder)?;
    result
}

fn run_service(cfg: &Arc<Config>, store: &Store, holder: &str) -> Result<()> {
    let abandoned = store.abandon_unfinished_runs()?;
    if abandoned > 0 {
        tracing::warn!(abandoned, "runs left open by a service that died were marked abandoned");
    }
    let clocks = cfg.jobs.values().map(JobClock::new).collect::<Result<Vec<_>, _>>()?;
    let mut sched = Scheduler::new(clocks, cfg.calendar.clone(), &store.last_slots()?, Utc::now());
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing the signal handler")?;
    }
    for job in cfg.jobs.keys() {
        let next = sched.next_fires(job, Utc::now(), 1);
        tracing::info!(job, next = ?next.first().map(|t| t.with_timezone(&cfg.tz).to_rfc3339()), "scheduled");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(async {
        // The intake page shares the runtime; its landing and commits run on their own threads.
        let intake = match cfg.file.intake {
            Some(_) => Some(crate::intake::start(Arc::clone(cfg)).await?),
            None => None,
        };
        // The intranet site too: it reads state.db and the report folders only.
        let site = match cfg.file.site {
            Some(_) => Some(crate::site::start(Arc::clone(cfg)).await?),
            None => None,
        };
        let result = event_loop(cfg, store, holder, &mut sched, &stop).await;
        if let Some(s) = site {
            s.stop().await;
        }
        if let Some(i) = intake {
            i.stop().await;
        }
        result
    })
}

async fn event_loop(cfg: &Arc<Config>, store: &Store, holder: &str, sched: &mut Scheduler, stop: &AtomicBool) -> Result<()> {
    let mut tasks: JoinSet<(Fire, Result<()>)> = JoinSet::new();
    let mut last_beat = std::time::Instant::now();
    let mut lost = false;
    tracing::info!(holder, "serving");
    loop {
        let stopping = stop.load(Ordering::SeqCst) || lost;
        if stopping && tasks.is_empty() {
            break;
        }
        if !stopping {
            for fire in sched.due(Utc::now()) {
                let job = fire.job.clone();
                // Only recording a skipped slot can fail here; the service goes on.
                if let Err(e) = start(cfg, store, sched, &mut tasks, fire) {
                    tracing::error!(job, error = %format!("{e:#}"), "could not record the slot");
                }
            }
        }
        if last_beat.elapsed() >= HEARTBEAT {
            last_beat = std::time::Instant::now();
            // A busy database delays a beat; it is retried, not fatal (30 s of
            // silence are needed before anyone takes the lock over).
            match store.heartbeat_service_lock(holder, Utc::now()) {
                Ok(true) => {}
                Ok(false) if !lost => {
                    tracing::error!("the service lock was taken over; no new runs");
                    lost = true;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "heartbeat failed; retrying"),
            }
        }
        let until_next = sched.next_wake().map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO)).unwrap_or(TICK);
        let wait = until_next.min(TICK);
        tokio::select! {
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                let (fire, result) = joined.context("a run's thread panicked")?;
                finished(sched, &fire, &result);
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
    tracing::info!("stopped");
    if lost { Err(ServeError::LockLost(cfg.data_dir.display().to_string()).into()) } else { Ok(()) }
}

/// The period a scheduled run reports on: the job's expression at the slot's
/// local date (so a catch-up reports what the missed slot would have).
fn period_of(job: &JobDef, fire: &Fire, default_tz: chrono_tz::Tz) -> Period {
    let tz = job.time_zone.parse::<chrono_tz::Tz>().unwrap_or(default_tz);
    let day = fire.slot.with_timezone(&tz).date_naive();
    job.period.map(|e| e.resolve(day)).unwrap_or_else(|| Period::month_of(day))
}

fn start(cfg: &Arc<Config>, store: &Store, sched: &mut Scheduler, tasks: &mut JoinSet<(Fire, Result<()>)>, fire: Fire) -> Result<()> {
    let Some(job) = cfg.jobs.get(&fire.job).cloned() else { return Ok(()) };
    let period = period_of(&job, &fire, cfg.tz);
    sched.started(&fire);
    if fire.skip {
        tracing::warn!(job = %fire.job, slot = %fire.slot, slots = fire.slots, "missed slot not caught up (catchup = false); recorded as skipped");
        return pipeline::record_skipped(store, &job, period, &fire);
    }
    tracing::info!(job = %fire.job, period = %period.key(), trigger = fire.trigger.as_str(), slots = fire.slots, "run starts");
    let cfg = Arc::clone(cfg);
    tasks.spawn_blocking(move || {
        let result = Store::open(&cfg.data_dir).map_err(anyhow::Error::from).and_then(|mut store| {
            let opts = RunOptions { trigger: fire.trigger, fire_time: Some(fire.slot), slots: fire.slots, ..RunOptions::default() };
            pipeline::run_job(&cfg, &mut store, &job, period, None, opts).map(|_| ())
        });
        // Told from the run's thread, not the loop: mailing over SMTP may
        // take retries and timeouts, and the loop keeps the heartbeat.
        if let Err(e) = &result {
            tracing::error!(job = %fire.job, error = %format!("{e:#}"), "run failed");
            tell_admins(&cfg, &fire.job, &period.key(), e);
        }
        (fire, result)
    });
    Ok(())
}

/// Tells the admins that a run failed. A failure to tell them must not stop
/// the service; it is logged.
fn tell_admins(cfg: &Config, job: &str, period: &str, error: &anyhow::Error) {
    match pipeline::notify_admins(cfg, job, period, &format!("{error:#}")) {
        Ok(Some(pipeline::AdminNotice::Sent(reply))) => tracing::info!(%reply, "admins notified over SMTP"),
        Ok(Some(pipeline::AdminNotice::Outbox(path))) => tracing::info!(path = %path.display(), "admins notified in the outbox"),
        Ok(None) => {}
        Err(e) => tracing::error!(error = %format!("{e:#}"), "could not notify the admins"),
    }
}

fn finished(sched: &mut Scheduler, fire: &Fire, result: &Result<()>) {
    sched.finished(&fire.job);
    if result.is_ok() {
        tracing::info!(job = %fire.job, "run ended ok");
    }
}
