//! `/metrics` in the Prometheus text format (0.0.4): counts only, never a
//! name, an address or a comment.

use crate::store::{Monitor, RunRecord};
use chrono::DateTime;
use std::collections::BTreeMap;
use std::fmt::Write;

/// A label value escaped as the format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// The exposition of the ledger's last run per job and the monitor figures.
pub fn render(runs: &[RunRecord], m: &Monitor) -> String {
    // runs come newest first: the first of each job is its last.
    let mut last: BTreeMap<&str, &RunRecord> = BTreeMap::new();
    for r in runs {
        last.entry(r.job.as_str()).or_insert(r);
    }
    let mut out = String::new();
    family(&mut out, "manyi_job_last_run_timestamp_seconds", "Start of the job's last run, Unix time.");
    for (job, r) in &last {
        let t = DateTime::parse_from_rfc3339(&r.started_at).map(|t| t.timestamp_millis() as f64 / 1000.0).unwrap_or(0.0);
        let _ = writeln!(out, "manyi_job_last_run_timestamp_seconds{{job=\"{}\"}} {t}", label(job));
    }
    family(&mut out, "manyi_job_last_run_ok", "1 when the job's last run ended ok, 0 otherwise; the outcome is a label.");
    for (job, r) in &last {
        let ok = u8::from(r.outcome == crate::store::RunOutcome::Ok);
        let _ = writeln!(out, "manyi_job_last_run_ok{{job=\"{}\",outcome=\"{}\"}} {ok}", label(job), r.outcome.as_str());
    }
    family(&mut out, "manyi_deliveries", "Delivery records by state (one per job, period, office and recipient).");
    for (state, n) in &m.deliveries_by_state {
        let _ = writeln!(out, "manyi_deliveries{{state=\"{}\"}} {n}", label(state));
    }
    family(&mut out, "manyi_deliveries_held", "Reports held back because they changed after delivery (delivery history lines).");
    let _ = writeln!(out, "manyi_deliveries_held {}", m.held);
    family(&mut out, "manyi_quarantined_rows", "Rows quarantined since the data directory was created.");
    let _ = writeln!(out, "manyi_quarantined_rows {}", m.quarantined);
    family(&mut out, "manyi_ratings_stored", "Ratings stored in the curated store.");
    let _ = writeln!(out, "manyi_ratings_stored {}", m.ratings_stored);
    family(&mut out, "manyi_service_up", "1 when a manyi serve holds the data directory's lock.");
    let _ = writeln!(out, "manyi_service_up {}", u8::from(m.service.is_some()));
    out
}
