//! The command line: argument parsing, output for people, and the exit-code
//! policy, all in one place.
//!
//! Exit codes: 0 success; 1 the run failed (I/O, data, delivery); 2 the
//! configuration or the command line is wrong and nothing was done; 3
//! `serve` refused to start because another service holds the data directory;
//! 141 (128 + SIGPIPE, as a shell reports `cat` cut off by `head`) the reader
//! of manyi's output went away before it was all printed.
//! [`exit_code`] is the one place that maps an error to its code; a command
//! that finds its arguments wrong says so with a [`UsageError`].

use crate::aggregate::Dim;
use crate::config::{Config, ConfigError};
use crate::pipeline::{self, RunOptions, SourceSummary};
use crate::schedule::{JobClock, Period, Scheduler};
use crate::store::Store;
use anyhow::{Result, anyhow};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// manyi (满意): satisfaction figures from 好差评 ratings and questionnaires.
#[derive(Debug, Parser)]
#[command(name = "manyi", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, env = "MANYI_CONFIG", default_value = "manyi.toml")]
    pub config: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a realistic city, ingest it, render and deliver to the outbox.
    Demo {
        /// Seed of the generator: the same seed and month give the same files.
        #[arg(long, default_value_t = 20261026)]
        seed: u64,
        /// Folder of the demo deployment.
        #[arg(long, default_value = "manyi-demo")]
        dir: PathBuf,
        /// Last month of data, which the report covers (default: the previous month).
        #[arg(long)]
        through: Option<String>,
    },
    /// Validate config, jobs, templates and reference data; print every problem.
    Check,
    /// Fetch new data from the sources.
    Collect {
        /// Only this source.
        source: Option<String>,
    },
    /// Run a job for a period.
    Run {
        /// Job name (a file of jobs/).
        job: String,
        /// Period, e.g. 2026-10 (default: the job's period expression today).
        #[arg(long)]
        period: Option<String>,
        /// Only data committed by then: RFC 3339, or local `YYYY-MM-DD HH:MM:SS`.
        #[arg(long)]
        as_of: Option<String>,
        /// Render and write to the outbox, record nothing as sent.
        #[arg(long, conflicts_with = "resend")]
        dry_run: bool,
        /// Send again to recipients who already have this period's report.
        #[arg(long)]
        resend: bool,
    },
    /// Print figures of a period as CSV: n, counts per level, rates with
    /// their 95% intervals, by up to two dimensions.
    Figures {
        /// Period: 2026-10-03, 2026-W40, 2026-10, 2026-Q3, 2026 or R12-2026-10.
        #[arg(long)]
        period: String,
        /// Comma-separated dimensions: district, street, community, grid,
        /// category, category_parent, channel, department (none: the total).
        #[arg(long, default_value = "")]
        by: String,
        /// Only data committed by then (RFC 3339 or local YYYY-MM-DD HH:MM:SS).
        #[arg(long)]
        as_of: Option<String>,
        /// A questionnaire (a survey-templates folder): print each question's
        /// option counts, shares and 95% intervals instead of the ratings.
        #[arg(long)]
        survey: Option<String>,
    },
    /// Run the jobs on their schedules until SIGTERM or Ctrl-C (and the intake page and the intranet site, if `[intake]` / `[site]` are configured).
    Serve,
    /// Run only the QR-code intake page until SIGTERM or Ctrl-C.
    Intake,
    /// Write printable QR-code sheets: one code per service point, and optionally a batch of single-use case slips.
    Qr {
        /// Folder for the HTML page and the PNGs.
        #[arg(long, default_value = "qr")]
        out: PathBuf,
        /// Also issue case slips for this service point.
        #[arg(long)]
        slips_for: Option<String>,
        /// How many slips.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// 办件编号 to bind, one slip each (repeatable; overrides --count).
        #[arg(long = "case-no")]
        case_nos: Vec<String>,
    },
    /// List the jobs with their next three fire times in local time.
    Jobs {
        /// Fire times after this instead of now (RFC 3339 or local `YYYY-MM-DD HH:MM:SS`), to plan around holidays.
        #[arg(long)]
        from: Option<String>,
    },
    /// Past runs and deliveries.
    History {
        /// Only this job.
        job: Option<String>,
    },
    /// Bring the Delta Lake tables of `[publish] delta` up to the store.
    Publish {
        /// Move the tables aside and replay every batch of the catalog.
        #[arg(long)]
        rebuild: bool,
    },
    /// Accounts of the intranet site (`[site]`). Passwords are read from
    /// standard input (first line) or MANYI_PASSWORD, never from the command line.
    Users {
        /// What to do.
        #[command(subcommand)]
        action: UsersAction,
    },
}

/// `manyi users …`.
#[derive(Debug, Subcommand)]
pub enum UsersAction {
    /// Add an account: `manyi users add NAME --role office --office street-369901001`.
    Add {
        /// Sign-in name (ASCII letters, digits, '.', '-', '_').
        name: String,
        /// office, leadership, inspector or admin.
        #[arg(long)]
        role: String,
        /// The office id (offices.toml) of an office account.
        #[arg(long)]
        office: Option<String>,
    },
    /// Set a new password; unlocks the account and signs it out everywhere.
    Passwd {
        /// Sign-in name.
        name: String,
    },
    /// Disable an account; its sessions end.
    Disable {
        /// Sign-in name.
        name: String,
    },
}

/// The command line names something that does not exist or cannot be read:
/// nothing was done (exit 2). Clap's own parse errors exit 2 as well.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// `publish` without `[publish] delta` in manyi.toml.
    #[error("manyi.toml has no `[publish] delta = \"…\"`: name the folder of the Delta tables there")]
    NoDeltaTable,
    /// `run` names a job that is not in the jobs folder.
    #[error("no job “{job}” in {dir} (jobs: {known})")]
    UnknownJob {
        /// The name given.
        job: String,
        /// The jobs folder.
        dir: PathBuf,
        /// The jobs there, comma-separated.
        known: String,
    },
    /// `collect` names a source that is not configured.
    #[error("no source named “{source_name}” in the configuration (sources: {known})")]
    UnknownSource {
        /// The name given.
        source_name: String,
        /// The configured sources, comma-separated.
        known: String,
    },
    /// A period argument does not parse.
    #[error("{flag}: {reason}")]
    Period {
        /// The option (`--period`, `--through`).
        flag: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A time argument (`--as-of`, `--from`) does not parse or does not exist.
    #[error("{flag} “{text}” {reason}")]
    Time {
        /// The option.
        flag: &'static str,
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `--by` names an unknown dimension.
    #[error("--by: unknown dimension “{name}”; expected {expected}")]
    Dimension {
        /// The name given.
        name: String,
        /// The dimensions there are, comma-separated.
        expected: String,
    },
    /// `--by` names more than two dimensions.
    #[error("--by takes at most two dimensions (a cross table), got {0}")]
    TooManyDimensions(usize),
    /// `--survey` names no survey folder.
    #[error("--survey: no survey “{name}” in survey-templates/ (surveys: {known})")]
    UnknownSurvey {
        /// The name given.
        name: String,
        /// The surveys there, comma-separated.
        known: String,
    },
    /// `--survey` with `--by`: questionnaire figures are the deployment's whole.
    #[error("--survey prints each question of the whole deployment; it takes no --by")]
    SurveyBy,
}

/// The exit code of a failed command: 2 when the configuration or the
/// command line is wrong, 3 when another `serve` holds the data directory,
/// 141 when stdout's reader went away, 1 for everything else (the run itself failed). The whole chain of causes
/// is searched, so context added on the way up does not change the code.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    classify(e).0
}

/// The exit code and the cause that decided it (the error itself for 1).
fn classify(e: &anyhow::Error) -> (u8, &(dyn std::error::Error + 'static)) {
    for cause in e.chain() {
        if stdout_closed(cause) {
            return (EXIT_BROKEN_PIPE, cause);
        }
        if cause.is::<ConfigError>() || cause.is::<UsageError>() {
            return (2, cause);
        }
        if let Some(crate::serve::ServeError::Locked { .. }) = cause.downcast_ref::<crate::serve::ServeError>() {
            return (3, cause);
        }
    }
    (1, e.as_ref())
}

/// The error and its causes on one line, as anyhow's `{:#}` prints them, but
/// a cause whose text the line already holds is left out. Our stage errors
/// name their cause in their own text and also give it as their source (so
/// that the chain can be searched, as [`classify`] does), and `{:#}` printed
/// it twice: "data directory: …/landing/api: Not a directory (os error 20):
/// Not a directory (os error 20)".
pub fn chain_text(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The exit code when stdout's reader has gone (`manyi check | head -1`).
pub const EXIT_BROKEN_PIPE: u8 = 141;

/// stdout's reader went away before everything was printed: a broken pipe
/// on stdout, told apart from one on a socket (an SMTP server hanging up is
/// a failed run, exit 1).
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed before everything was printed")]
pub struct StdoutClosed;

/// stdout for the commands that print CSV, its broken pipe marked as
/// [`StdoutClosed`] for [`exit_code`].
struct Stdout(std::io::StdoutLock<'static>);

impl Stdout {
    fn lock() -> Stdout {
        Stdout(std::io::stdout().lock())
    }

    fn mark(e: std::io::Error) -> std::io::Error {
        if e.kind() == std::io::ErrorKind::BrokenPipe { std::io::Error::new(e.kind(), StdoutClosed) } else { e }
    }
}

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(Stdout::mark)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(Stdout::mark)
    }
}

/// Rust ignores SIGPIPE, so printing into a closed pipe makes `println!`
/// panic with a backtrace hint about a bug in manyi. A reader that stops
/// early is not a bug: like `cat` cut off by `head`, manyi stops quietly with
/// 141, not 0, since what it was printing was not all read. Every other
/// panic keeps the default report.
fn stop_quietly_on_a_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message =
            info.payload().downcast_ref::<String>().map(String::as_str).or_else(|| info.payload().downcast_ref::<&str>().copied());
        if message.is_some_and(|m| m.starts_with("failed printing to stdout") && m.contains("Broken pipe")) {
            std::process::exit(i32::from(EXIT_BROKEN_PIPE));
        }
        default(info)
    }));
}

/// Whether `cause` is a write to [`Stdout`] that found its reader gone, as
/// an I/O error or inside the CSV writer's error (which gives no `source`).
fn stdout_closed(cause: &(dyn std::error::Error + 'static)) -> bool {
    let io = match cause.downcast_ref::<csv::Error>().map(csv::Error::kind) {
        Some(csv::ErrorKind::Io(io)) => Some(io),
        _ => cause.downcast_ref::<std::io::Error>(),
    };
    io.and_then(std::io::Error::get_ref).is_some_and(|inner| inner.is::<StdoutClosed>())
}

/// Turns transparent huge pages off for this process (Linux; elsewhere and
/// on failure nothing happens: it is a matter of speed only).
///
/// Why: mimalloc asks the kernel for huge pages on its arenas, and with the
/// usual `defrag = madvise` (Debian's and RHEL's default) a fault in such a
/// region may compact memory on the spot when no free 2 MiB block is at
/// hand; each such fault also zeroes 2 MiB however little of it is used. On
/// the benchmark machine the month's table at 10 M ratings took 0.43–0.87 s
/// on a process's first run with huge pages (0.55–1.44 s of system time),
/// 0.27–0.31 s without; the median run is the same either way and the report
/// run's system time fell by about half (BENCHMARKS.md, run of 2026-11-28
/// 02:50). Databases commonly recommend the same (Redis, MongoDB).
/// Inherited by child processes.
pub fn without_huge_pages() {
    // Called before logging is set up, and a failure (an old kernel, a
    // seccomp filter) only leaves the kernel's default: nothing to report.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    without_huge_pages();
    stop_quietly_on_a_closed_pipe();
    let cli = Cli::parse();
    // The service's log is its record of what it did; one-shot commands print a summary instead.
    let default_level = if matches!(cli.command, Command::Serve | Command::Intake) { "info" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("MANYI_LOG").unwrap_or_else(|_| default_level.into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let (code, cause) = classify(&e);
            // A wrong configuration or command line lists its own problems,
            // and a held lock names its holder: they are printed alone. A
            // reader that stopped reading wants nothing more.
            match code {
                EXIT_BROKEN_PIPE => {}
                1 => eprintln!("manyi: error: {}", chain_text(&e)),
                _ => eprintln!("manyi: {cause}"),
            }
            ExitCode::from(code)
        }
    }
}

fn load(path: &Path) -> Result<Config> {
    // The schedule checks look at fires after now; the clock is read here, at the edge.
    Ok(Config::load_at(path, Utc::now())?)
}

fn run(cli: Cli) -> Result<()> {
    let config = cli.config;
    match cli.command {
        Command::Demo { seed, dir, through } => demo(&dir, seed, through.as_deref()),
        Command::Serve => crate::serve::serve(load(&config)?),
        Command::Intake => crate::intake::run_standalone(load(&config)?),
        Command::Qr { out, slips_for, count, case_nos } => qr(&config, &out, slips_for, count, case_nos),
        Command::Check => check(&config),
        Command::Collect { source } => collect(&config, source.as_deref()),
        Command::Run { job, period, as_of, dry_run, resend } => run_job(&config, job, period, as_of, dry_run, resend),
        Command::Figures { period, by, as_of, survey: None } => figures(&config, &period, &by, as_of),
        Command::Figures { period, by, as_of, survey: Some(survey) } => survey_figures(&config, &period, &by, &survey, as_of),
        Command::Jobs { from } => jobs(&config, from),
        Command::History { job } => history(&config, job.as_deref()),
        Command::Users { action } => users(&config, action),
        Command::Publish { rebuild } => publish(&config, rebuild),
    }
}

/// `manyi qr`: writes the sheets and names them.
fn qr(path: &Path, out: &Path, slips_for: Option<String>, count: usize, case_nos: Vec<String>) -> Result<()> {
    let cfg = load(path)?;
    let req = slips_for.map(|point| crate::intake::qr::SlipRequest { point, count, case_nos });
    for page in crate::intake::qr::write_sheets(&cfg, out, req.as_ref())? {
        println!("{}", page.display());
    }
    Ok(())
}

/// `manyi check`: loads everything a run needs and prints what it found.
fn check(path: &Path) -> Result<()> {
    let cfg = load(path)?;
    let templates = crate::render::Templates::load(&cfg.templates_dir)?;
    println!("{}: OK", path.display());
    println!(
        "  org units: {}, categories: {}, offices: {}, sources: {}",
        cfg.orgs.units().count(),
        cfg.categories.len(),
        cfg.offices.len(),
        cfg.file.sources.len()
    );
    println!("  calendar years: {:?}", cfg.calendar.years());
    println!("  surveys: {}", cfg.surveys.keys().cloned().collect::<Vec<_>>().join(", "));
    println!("  jobs: {}", cfg.jobs.keys().cloned().collect::<Vec<_>>().join(", "));
    println!("  templates: {}", templates.names().len());
    Ok(())
}

/// `manyi collect [SOURCE]`.
fn collect(path: &Path, source: Option<&str>) -> Result<()> {
    let cfg = load(path)?;
    if let Some(name) = source.filter(|n| !cfg.file.sources.iter().any(|s| s.name == *n)) {
        return Err(UsageError::UnknownSource {
            source_name: name.into(),
            known: cfg.file.sources.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
        }
        .into());
    }
    let mut store = Store::open(&cfg.data_dir)?;
    let bar = CollectBar::new();
    let sums = pipeline::collect_all_with(&cfg, &mut store, source, &|p| bar.update(p))?;
    bar.finish();
    print_collect(&cfg, &sums);
    let failed: Vec<String> = sums.iter().filter_map(|s| s.error.as_ref().map(|e| format!("source “{}”: {e}", s.source))).collect();
    if !failed.is_empty() {
        return Err(anyhow!(
            "{} source(s) failed (what they committed before the failure stays):\n  {}",
            failed.len(),
            failed.join("\n  ")
        ));
    }
    Ok(())
}

/// `manyi run JOB`.
fn run_job(path: &Path, job: String, period: Option<String>, as_of: Option<String>, dry_run: bool, resend: bool) -> Result<()> {
    let cfg = load(path)?;
    let def = cfg.jobs.get(&job).ok_or_else(|| UsageError::UnknownJob {
        known: cfg.jobs.keys().cloned().collect::<Vec<_>>().join(", "),
        dir: cfg.file.jobs_dir.clone(),
        job,
    })?;
    let today = Utc::now().with_timezone(&cfg.tz).date_naive();
    let period = match period {
        Some(p) => parse_period("--period", &p)?,
        None => def.period.map(|e| e.resolve(today)).unwrap_or_else(|| Period::month_of(today)),
    };
    let as_of = as_of.map(|t| parse_time("--as-of", &t, &cfg.tz)).transpose()?;
    let mut store = Store::open(&cfg.data_dir)?;
    let out = pipeline::run_job(&cfg, &mut store, def, period, as_of, RunOptions { dry_run, resend, ..RunOptions::default() })?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// `manyi figures --survey S`: each question's options as CSV — question,
/// label, kind, respondents who answered, skipped, option, count, share and
/// its 95% Wilson interval (the share's denominator is the respondents who
/// answered, as in the report).
fn survey_figures(path: &Path, period: &str, by: &str, survey: &str, as_of: Option<String>) -> Result<()> {
    let cfg = load(path)?;
    let period = parse_period("--period", period)?;
    if !by.trim().is_empty() {
        return Err(UsageError::SurveyBy.into());
    }
    let def = cfg.surveys.get(survey).ok_or_else(|| UsageError::UnknownSurvey {
        name: survey.into(),
        known: cfg.surveys.keys().cloned().collect::<Vec<_>>().join(", "),
    })?;
    let as_of = as_of.map(|t| parse_time("--as-of", &t, &cfg.tz)).transpose()?;
    let store = Store::open(&cfg.data_dir)?;
    let tables = pipeline::survey_figures(&cfg, &store, period, def, as_of)?;
    let mut w = csv::Writer::from_writer(Stdout::lock());
    w.write_record(["question", "label", "kind", "answered", "skipped", "option", "count", "share", "share_lo", "share_hi"])?;
    for q in &tables.questions {
        for (option, count, share) in &q.options {
            let (lo, hi) = crate::aggregate::wilson(*count, q.answered);
            let mut rec = vec![q.id.clone(), q.text.clone(), q.kind.to_string(), q.answered.to_string(), q.skipped.to_string()];
            rec.extend([option.clone(), count.to_string()]);
            rec.extend([*share, lo, hi].iter().map(|x| format!("{x:.6}")));
            w.write_record(&rec)?;
        }
    }
    w.flush()?;
    Ok(())
}

/// `manyi figures`: CSV of a period by up to two dimensions.
fn figures(path: &Path, period: &str, by: &str, as_of: Option<String>) -> Result<()> {
    let cfg = load(path)?;
    let period = parse_period("--period", period)?;
    let dims = by
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Dim::parse(s).ok_or_else(|| UsageError::Dimension { name: s.into(), expected: Dim::ALL.map(|d| d.column()).join(", ") }))
        .collect::<Result<Vec<_>, _>>()?;
    if dims.len() > 2 {
        return Err(UsageError::TooManyDimensions(dims.len()).into());
    }
    let as_of = as_of.map(|t| parse_time("--as-of", &t, &cfg.tz)).transpose()?;
    let store = Store::open(&cfg.data_dir)?;
    let b = pipeline::figures(&cfg, &store, period, &dims, as_of)?;
    print_figures(&cfg, &b)
}

/// `manyi jobs`: each job with its next fire times.
fn jobs(path: &Path, from: Option<String>) -> Result<()> {
    let cfg = load(path)?;
    let store = Store::open(&cfg.data_dir)?;
    let now = from.map(|t| parse_time("--from", &t, &cfg.tz)).transpose()?.unwrap_or_else(Utc::now);
    let clocks = cfg.jobs.values().map(JobClock::new).collect::<Result<Vec<_>, _>>()?;
    let sched = Scheduler::new(clocks, cfg.calendar.clone(), &store.last_slots()?, now);
    for (name, def) in &cfg.jobs {
        let tz = def.time_zone.parse::<chrono_tz::Tz>().unwrap_or(cfg.tz);
        let mut flags = vec![format!("{:?}", def.kind).to_lowercase()];
        if let Some(p) = def.period {
            flags.push(format!("period {}", serde_json::to_value(p).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()));
        }
        flags.push(if def.catchup { "catch-up on".into() } else { "catch-up off".into() });
        if def.first_working_day {
            flags.push("first working day".into());
        }
        println!("{name}  “{}” {}  ({})", def.schedule, def.time_zone, flags.join(", "));
        for t in sched.next_fires(name, now, 3) {
            let local = t.with_timezone(&tz);
            let year = chrono::Datelike::year(&local);
            let note = if def.first_working_day && !cfg.calendar.years().contains(&year) {
                format!("  (reference/calendar.csv has no {year}: only weekends are skipped)")
            } else {
                String::new()
            };
            println!("    {}{note}", local.format("%Y-%m-%d %H:%M:%S %a %Z"));
        }
    }
    Ok(())
}

/// `manyi publish [--rebuild]`: the Delta tables brought up to the store.
fn publish(path: &Path, rebuild: bool) -> Result<()> {
    let cfg = load(path)?;
    if cfg.delta_dir().is_none() {
        return Err(UsageError::NoDeltaTable.into());
    }
    let mut store = Store::open(&cfg.data_dir)?;
    for p in crate::pipeline::publish(&cfg, &mut store, rebuild)? {
        let version = p.version.map_or_else(|| "up to date".to_string(), |v| format!("Delta version {v}"));
        println!("{:<10} {} batch(es) published, {version}", p.table, p.batches);
    }
    Ok(())
}

/// `manyi users …`: accounts of the intranet site.
fn users(path: &Path, action: UsersAction) -> Result<()> {
    let cfg = load(path)?;
    match action {
        UsersAction::Add { name, role, office } => {
            crate::site::add_user(&cfg, &name, &role, office.as_deref(), &read_password()?)?;
            println!("account “{name}” added ({role})");
        }
        UsersAction::Passwd { name } => {
            crate::site::set_password(&cfg, &name, &read_password()?)?;
            println!("password of “{name}” set; the account is unlocked and signed out");
        }
        UsersAction::Disable { name } => {
            crate::site::disable_user(&cfg, &name)?;
            println!("account “{name}” disabled");
        }
    }
    Ok(())
}

/// The new password: MANYI_PASSWORD, or the first line of standard input
/// (so that it is in no shell history and no process list).
fn read_password() -> Result<String> {
    if let Ok(p) = std::env::var("MANYI_PASSWORD") {
        return Ok(p);
    }
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        eprintln!("password (echoed; pipe it in or set MANYI_PASSWORD to avoid that):");
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(|e| anyhow!("reading the password from standard input: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// The latest batches and the Delta version reflecting each (`[publish] delta`).
fn print_delta_versions(store: &Store, tz: &chrono_tz::Tz) -> Result<()> {
    println!("{:<6} {:<48} {:<10} {:<20} Delta version", "batch", "batch id", "kind", "committed (local)");
    for b in store.published_batches(50)? {
        let at = DateTime::parse_from_rfc3339(&b.committed_at).map(|t| t.with_timezone(tz).format("%Y-%m-%d %H:%M:%S").to_string());
        let version = b.delta_version.map_or_else(|| "not yet published".to_string(), |v| format!("Delta version {v}"));
        println!("{:<6} {:<48} {:<10} {:<20} {version}", b.batch_seq, b.batch_id, b.kind, at.unwrap_or_default());
    }
    println!();
    Ok(())
}

/// `manyi history [JOB]`: the run ledger and the delivery records.
fn history(path: &Path, job: Option<&str>) -> Result<()> {
    let cfg = load(path)?;
    let store = Store::open(&cfg.data_dir)?;
    if cfg.delta_dir().is_some() {
        print_delta_versions(&store, &cfg.tz)?;
    }
    println!(
        "{:<40} {:<16} {:<10} {:<9} {:<9} {:<20} {:<20} {:<24}",
        "run", "job", "period", "trigger", "outcome", "started (local)", "ended (local)", "as-of (for --as-of)"
    );
    let local = |t: &str| {
        DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&cfg.tz).format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()
    };
    for r in store.runs(job, 50)? {
        let slots = match r.slots {
            Some(n) if n > 1 => format!("  ({n} missed slots, latest {})", r.fire_time.as_deref().map(local).unwrap_or_default()),
            _ => String::new(),
        };
        println!(
            "{:<40} {:<16} {:<10} {:<9} {:<9} {:<20} {:<20} {:<24}{}{}",
            r.run_id,
            r.job,
            r.period,
            r.trigger,
            r.outcome,
            local(&r.started_at),
            r.ended_at.as_deref().map(local).unwrap_or_else(|| "-".into()),
            r.as_of,
            slots,
            r.error.map(|e| format!("  error: {e}")).unwrap_or_default()
        );
    }
    println!();
    // The history rows do not carry the channel; the current record of the
    // same (job, period, office, recipient) does (smtp, outbox, wecom, dingtalk).
    let channels: std::collections::HashMap<(String, String, String, String), String> =
        store.deliveries(job)?.into_iter().map(|d| ((d.job, d.period, d.office, d.recipient), d.channel)).collect();
    println!("{:<16} {:<8} {:<28} {:<36} {:<8} {:<8} {:<32}", "job", "period", "office", "recipient", "channel", "state", "content hash");
    for (d, run) in store.delivery_history(job)? {
        let key = (d.job.clone(), d.period.clone(), d.office.clone(), d.recipient.clone());
        let channel = channels.get(&key).map_or("-", String::as_str);
        println!(
            "{:<16} {:<8} {:<28} {:<36} {:<8} {:<8} {:<32} run {run}{}",
            d.job,
            d.period,
            d.office,
            d.recipient,
            channel,
            d.state,
            d.content_hash,
            d.detail.map(|x| format!("  {x}")).unwrap_or_default()
        );
    }
    Ok(())
}

fn parse_period(flag: &'static str, text: &str) -> Result<Period, UsageError> {
    // `to_string` rather than the error itself: the period parser's error
    // type is its own business, the command line only reports it.
    text.parse::<Period>().map_err(|e| UsageError::Period { flag, reason: e.to_string() })
}

/// A time option: RFC 3339, or local wall time in the deployment's zone.
fn parse_time(flag: &'static str, text: &str, tz: &chrono_tz::Tz) -> Result<DateTime<Utc>, UsageError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let bad = |reason: String| UsageError::Time { flag, text: text.into(), reason };
    let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .map_err(|_| bad("is neither RFC 3339 nor local YYYY-MM-DD HH:MM:SS".into()))?;
    tz.from_local_datetime(&local)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| bad(format!("does not exist or is ambiguous in {tz}")))
}

fn print_figures(cfg: &Config, b: &crate::aggregate::Breakdown) -> Result<()> {
    let mut w = csv::Writer::from_writer(Stdout::lock());
    let mut head: Vec<String> = Vec::new();
    for d in &b.dims {
        head.push(d.column().into());
        head.push(format!("{}_name", d.column()));
    }
    head.extend(
        [
            "n",
            "c1",
            "c2",
            "c3",
            "c4",
            "c5",
            "satisfied_rate",
            "satisfied_lo",
            "satisfied_hi",
            "good_rate",
            "good_lo",
            "good_hi",
            "mid_rate",
            "bad_rate",
            "bad_lo",
            "bad_hi",
            "score",
            "active",
            "default",
            "active_rate",
            "second",
            "second_satisfied_rate",
            "second_orphan",
        ]
        .map(String::from),
    );
    w.write_record(&head)?;
    for (key, counts) in &b.cells {
        let s = counts.stats();
        let mut rec: Vec<String> = Vec::new();
        for (d, k) in b.dims.iter().zip(key) {
            rec.push(k.clone());
            let name = match d {
                Dim::Category | Dim::CategoryParent => cfg.category(k).map(|c| c.name.clone()),
                Dim::Channel | Dim::Department => None,
                _ => cfg.orgs.get(k).map(|u| u.name.clone()),
            };
            rec.push(name.unwrap_or_default());
        }
        rec.push(s.n.to_string());
        rec.extend(s.levels.iter().map(|c| c.to_string()));
        rec.extend(
            [
                s.satisfied_rate,
                s.satisfied_lo,
                s.satisfied_hi,
                s.good_rate,
                s.good_lo,
                s.good_hi,
                s.mid_rate,
                s.bad_rate,
                s.bad_lo,
                s.bad_hi,
                s.score,
            ]
            .iter()
            .map(|x| format!("{x:.6}")),
        );
        // Shown apart from the rates (issue 15): 主动/默认评价 and the second evaluations.
        let a = b.apart.get(key).copied().unwrap_or_else(|| crate::aggregate::Apart::of(&Default::default()));
        rec.extend([a.active.to_string(), a.default.to_string(), format!("{:.6}", a.active_rate), a.second.n.to_string()]);
        rec.extend([format!("{:.6}", a.second.satisfied_rate), a.orphan_second.to_string()]);
        w.write_record(&rec)?;
    }
    w.flush()?;
    Ok(())
}

/// A progress bar on stderr for long collect work, shown only when stderr is
/// a terminal (never in journald or in a test's captured output).
struct CollectBar {
    bar: Option<indicatif::ProgressBar>,
    source: std::cell::RefCell<String>,
}

impl CollectBar {
    fn new() -> CollectBar {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {prefix:<16} {pos:>9}/{len:9} records  {per_sec}  {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            b
        });
        CollectBar { bar, source: std::cell::RefCell::new(String::new()) }
    }

    fn update(&self, p: pipeline::Progress) {
        let Some(b) = &self.bar else { return };
        if *self.source.borrow() != p.source {
            self.source.replace(p.source.to_string());
            b.reset();
            b.set_prefix(p.source.to_string());
        }
        b.set_length(p.total.unwrap_or(p.done));
        b.set_position(p.done);
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn print_collect(cfg: &Config, sums: &[SourceSummary]) {
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>8} {:>10} {:>12}  quarantine",
        "source", "files/pp", "fetched", "new", "updated", "unchanged", "quarantined"
    );
    for s in sums {
        let q = s.quarantine_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
        println!(
            "{:<16} {:>9} {:>9} {:>9} {:>8} {:>10} {:>12}  {}",
            s.source,
            if s.pages > 0 { format!("{}p", s.pages) } else { s.files.to_string() },
            s.fetched,
            s.new,
            s.updated,
            s.unchanged,
            s.quarantined,
            if q.is_empty() { "-".into() } else { q }
        );
        if s.rejected_files > 0 {
            println!(
                "{:<16} {} file(s) rejected whole: see the inbox's rejected/ folder and the .reason.txt beside each",
                "", s.rejected_files
            );
        }
        if let Some(w) = &s.watermark {
            println!("{:<16} watermark {w}", "");
        }
        for note in &s.notes {
            println!("{:<16} note: {note}", "");
        }
        let src = cfg.file.sources.iter().find(|c| c.name == s.source);
        print_unrecognised(s, src);
        if let Some(e) = &s.error {
            println!("{:<16} FAILED: {e}", "");
        }
    }
}

/// The values of coded fields a source sent that nothing maps, with their
/// counts, and a `[source.values.*]` snippet to paste and fill in.
fn print_unrecognised(s: &SourceSummary, src: Option<&crate::config::SourceConfig>) {
    if s.unrecognised.is_empty() {
        return;
    }
    let pad = "";
    println!("{pad:<16} unrecognised values (their rows are in quarantine):");
    for (field, values) in &s.unrecognised {
        for (value, n) in values {
            println!("{pad:<16}   {field:<10} “{value}” ×{n}");
        }
    }
    println!("{pad:<16} to map them, paste into source “{}” in manyi.toml (below its other keys) and fill in each value:", s.source);
    for (field, values) in &s.unrecognised {
        if src.and_then(|c| c.values.of(field)).is_some_and(|m| !m.is_empty()) {
            println!("{pad:<16}   # add below the [source.values.{field}] table the source already has:");
        } else {
            println!("{pad:<16}   [source.values.{field}]");
        }
        for (value, n) in values {
            println!("{pad:<16}   \"{}\" = \"\"  # {n} row(s); {}", toml_escape(value), value_hint(field));
        }
    }
}

/// What a value of a coded field may be mapped to.
fn value_hint(field: &str) -> &'static str {
    match field {
        "channel" => "1 PC端, 2 移动端, 3 二维码, 4 政务大厅平板电脑, 5 政务大厅其他终端, 6 电话, 7 短信",
        "level" => "非常满意, 满意, 基本满意, 不满意 or 非常不满意",
        "category" => "a code or name of categories.csv",
        "follow_up" => "待核实, 有效, 无效, 整改中, 已整改 or 无法整改",
        _ => "",
    }
}

/// `text` inside a TOML basic string.
fn toml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn demo(dir: &Path, seed: u64, through: Option<&str>) -> Result<()> {
    let through = match through {
        Some(t) => parse_period("--through", t)?,
        None => Period::month_of(Utc::now().with_timezone(&chrono_tz::Asia::Shanghai).date_naive()).previous(),
    };
    let started = std::time::Instant::now();
    let generated = crate::demo::generate(dir, seed, through)?;
    println!("manyi demo: 临江市 (fictional), seed {seed}, 13 months through {}", through.label());
    println!("  generated {} ratings and {} questionnaire responses as office file drops", generated.ratings, generated.responses);
    let cfg = load(&generated.config)?;
    let mut store = Store::open(&cfg.data_dir)?;
    println!();
    let sums = pipeline::collect_all(&cfg, &mut store, None)?;
    print_collect(&cfg, &sums);
    let job = cfg.jobs.get("monthly-report").ok_or_else(|| anyhow!("the demo's jobs/monthly-report.toml is missing"))?;
    let out = pipeline::run_job(&cfg, &mut store, job, through, None, RunOptions::default())?;
    let pipeline::JobOutcome::Report(summary) = out else { return Err(anyhow!("monthly-report is not a report job")) };
    let c = &summary.city;
    println!();
    println!(
        "{} 临江市: n={} 满意率 {:.1}% 好评率 {:.1}% 差评率 {:.1}% 满意度得分 {:.1}",
        through.label(),
        c.n,
        c.satisfied_rate * 100.0,
        c.good_rate * 100.0,
        c.bad_rate * 100.0,
        c.score
    );
    let sent: usize = summary.reports.iter().map(|r| r.sent).sum();
    let already: usize = summary.reports.iter().map(|r| r.already_delivered).sum();
    println!("  {} reports rendered; {} recipients served now, {} already had this period's report", summary.reports.len(), sent, already);
    println!("  report id {}", summary.report_id);
    println!();
    let data = &cfg.data_dir;
    println!("Where everything is:");
    println!("  configuration    {}", generated.config.display());
    println!("  inbox (archive)  {}", cfg.base_dir.join("inbox").display());
    println!("  landing (raw)    {}", data.join("landing").display());
    println!("  quarantine       {}", data.join("quarantine").display());
    println!("  curated Parquet  {}", data.join("curated").display());
    println!("  catalog          {}", data.join("state.db").display());
    if let Some(first) = summary.reports.first() {
        println!("  HTML reports     {}", first.html_path.parent().map(|p| p.display().to_string()).unwrap_or_default());
        println!("  leadership       {}", first.html_path.display());
    }
    println!("  outbox (.eml)    {}", data.join("outbox").display());
    if !generated.intake_url.is_empty() {
        println!();
        println!("Rate a service from a browser: run `manyi -c {} intake`, then open", generated.config.display());
        println!("  {}", generated.intake_url);
    }
    println!("done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel says huge pages are off for the process afterwards.
    #[cfg(target_os = "linux")]
    #[test]
    fn huge_pages_are_turned_off() {
        without_huge_pages();
        assert_eq!(nix::sys::prctl::get_thp_disable().ok(), Some(true));
    }

    #[test]
    fn an_error_line_names_each_cause_once() {
        let os = std::io::Error::from_raw_os_error(20);
        let os_text = os.to_string();
        let store = crate::store::StoreError::Io { path: "data/landing/api".into(), source: os };
        let e = anyhow::Error::from(store).context("collecting source api");
        let line = chain_text(&e);
        assert_eq!(line.matches(&os_text).count(), 1, "{line}");
        assert_eq!(line, format!("collecting source api: data directory: data/landing/api: {os_text}"));
        // A cause the text above does not hold is still printed.
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain_text(&plain), "outer: inner");
    }

    #[test]
    fn one_place_maps_errors_to_exit_codes_through_any_context() {
        let usage = anyhow::Error::from(UsageError::TooManyDimensions(3));
        assert_eq!(exit_code(&usage), 2);
        assert_eq!(exit_code(&usage.context("figures")), 2, "context on the way up keeps the code");
        let locked = crate::serve::ServeError::Locked {
            data_dir: "data".into(),
            holder: "h".into(),
            pid: 1,
            host: "host".into(),
            started: String::new(),
            beat: String::new(),
            stale: 30,
        };
        assert_eq!(exit_code(&anyhow::Error::from(locked)), 3);
        assert_eq!(exit_code(&anyhow!("disk full")), 1);
        // A broken pipe is 141 only on stdout: an SMTP server hanging up is a failed run.
        let socket = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(exit_code(&anyhow::Error::from(socket).context("delivering")), 1);
        let stdout = Stdout::mark(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(exit_code(&anyhow::Error::from(csv::Error::from(stdout)).context("printing")), EXIT_BROKEN_PIPE);
        let io = std::io::Error::other("outbox");
        assert_eq!(exit_code(&anyhow::Error::from(io).context("writing the report")), 1);
    }
}
