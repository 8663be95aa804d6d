//! What the site shows of reports: every version of each office's report
//! from the run ledger and the browsable copies under
//! `data/reports/<job>/<period>/<report id>/`, the runs and deliveries behind
//! one version, and the 差评清单 sheet of its XLSX.

use crate::config::{Config, JobKind};
use crate::store::{DeliveryRecord, RunRecord, Store, StoreError};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One version (job, period, as-of) of one office's report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReportRef {
    /// Job name.
    pub job: String,
    /// Period key.
    pub period: String,
    /// Report id (hash of job, period, as-of).
    pub rid: String,
    /// Office id.
    pub office: String,
    /// Office name.
    pub office_name: String,
    /// The as-of time in the locality's zone.
    pub as_of: String,
    /// The as-of time exactly as the ledger has it (RFC 3339, ms).
    pub as_of_exact: String,
    /// How the run was started.
    pub trigger: String,
    /// The site path of the browsable copy.
    pub url: String,
    /// Whether the report has a 差评清单 (an office's; the leadership report
    /// ranks offices instead).
    pub has_bad_list: bool,
}

impl ReportRef {
    /// `job/period/rid/office`: the target an audit line names.
    pub fn target(&self) -> String {
        format!("{}/{}/{}/{}", self.job, self.period, self.rid, self.office)
    }
}

/// The folder of one report version.
pub fn dir(data_dir: &Path, job: &str, period: &str, rid: &str) -> PathBuf {
    data_dir.join("reports").join(job).join(period).join(rid)
}

/// Every version of every report the ledger knows and whose browsable copy
/// exists, for the offices `visible` admits; newest period and as-of first.
pub fn list(cfg: &Config, store: &Store, visible: &dyn Fn(&str) -> bool) -> Result<Vec<ReportRef>, StoreError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for run in store.runs(None, 100_000)? {
        if !cfg.jobs.get(&run.job).is_some_and(|j| j.kind == JobKind::Report) {
            continue;
        }
        let Ok(as_of) = DateTime::parse_from_rfc3339(&run.as_of) else { continue };
        let as_of = as_of.with_timezone(&Utc);
        let rid = crate::render::report_id(&run.job, &run.period, as_of);
        let folder = dir(&cfg.data_dir, &run.job, &run.period, &rid);
        for office in cfg.offices.iter().filter(|o| visible(&o.id)) {
            if !seen.insert((run.job.clone(), run.period.clone(), rid.clone(), office.id.clone())) {
                continue;
            }
            if !folder.join(format!("{}.html", office.id)).is_file() {
                continue;
            }
            out.push(ReportRef {
                url: format!("/r/{}/{}/{rid}/{}/{}.html", run.job, run.period, office.id, office.id),
                job: run.job.clone(),
                period: run.period.clone(),
                rid: rid.clone(),
                office: office.id.clone(),
                office_name: office.name.clone(),
                as_of: as_of.with_timezone(&cfg.tz).format("%Y-%m-%d %H:%M:%S").to_string(),
                as_of_exact: run.as_of.clone(),
                trigger: run.trigger.clone(),
                has_bad_list: office.role == crate::config::OfficeRole::Office,
            });
        }
    }
    out.sort_by(|a, b| (&b.period, &b.as_of_exact, &a.job, &a.office).cmp(&(&a.period, &a.as_of_exact, &b.job, &b.office)));
    Ok(out)
}

/// One report version of one office, if it exists.
pub fn find(cfg: &Config, store: &Store, job: &str, period: &str, rid: &str, office: &str) -> Result<Option<ReportRef>, StoreError> {
    Ok(list(cfg, store, &|o| o == office)?.into_iter().find(|r| r.job == job && r.period == period && r.rid == rid))
}

/// The ledger rows behind a report version and the deliveries they recorded
/// for its office, each with the run id (history, oldest first).
pub type Ledger = (Vec<RunRecord>, Vec<(DeliveryRecord, String)>);

/// The ledger rows that produced a report version, and the deliveries they
/// recorded for its office (history, oldest first).
pub fn ledger(store: &Store, r: &ReportRef) -> Result<Ledger, StoreError> {
    let runs: Vec<RunRecord> =
        store.runs(Some(&r.job), 100_000)?.into_iter().filter(|run| run.period == r.period && run.as_of == r.as_of_exact).collect();
    let ids: BTreeSet<&str> = runs.iter().map(|run| run.run_id.as_str()).collect();
    let deliveries = store
        .delivery_history(Some(&r.job))?
        .into_iter()
        .filter(|(d, run_id)| d.period == r.period && d.office == r.office && ids.contains(run_id.as_str()))
        .collect();
    Ok((runs, deliveries))
}

/// The office a file of a report folder belongs to: `<office>.html`, or
/// `<office>_<name>`. Of office ids that are prefixes of one another the
/// longest wins, so that office `a` is never handed a file of office `a_b`.
pub fn owner_of<'a>(file: &str, offices: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    offices
        .filter(|id| file == format!("{id}.html") || file.strip_prefix(*id).is_some_and(|rest| rest.starts_with('_')))
        .max_by_key(|id| id.len())
}

/// A path segment that names nothing outside its folder.
pub fn plain_segment(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('.') && !s.contains(['/', '\\', '\0']) && !s.contains("..")
}

/// One 差评 of the 差评清单 sheet.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BadRow {
    /// The sheet's cells in its column order.
    pub cells: Vec<String>,
    /// 状态.
    pub status: String,
    /// 逾期 or empty.
    pub overdue: bool,
}

/// The 差评清单 sheet of a report's XLSX.
#[derive(Debug, Clone)]
pub struct BadList {
    /// The column names.
    pub header: Vec<String>,
    /// One row per 差评.
    pub rows: Vec<BadRow>,
}

/// The 差评清单 sheet of an XLSX; `None` when it has no such sheet (the
/// leadership report).
pub fn bad_list(xlsx: &Path) -> Result<Option<BadList>, super::SiteError> {
    use calamine::{Reader, Xlsx, open_workbook};
    let bad = |reason: String| super::SiteError::Workbook { path: xlsx.to_path_buf(), reason };
    let mut wb: Xlsx<_> = open_workbook(xlsx).map_err(|e: calamine::XlsxError| bad(e.to_string()))?;
    if !wb.sheet_names().iter().any(|n| n == "差评清单") {
        return Ok(None);
    }
    let range = wb.worksheet_range("差评清单").map_err(|e| bad(e.to_string()))?;
    let mut rows = range.rows().map(|r| r.iter().map(|c| c.to_string()).collect::<Vec<String>>());
    let header = rows.next().unwrap_or_default();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (status, overdue) = (col("状态"), col("逾期"));
    let rows = rows
        .map(|cells| BadRow {
            status: status.and_then(|i| cells.get(i)).cloned().unwrap_or_default(),
            overdue: overdue.and_then(|i| cells.get(i)).is_some_and(|c| !c.is_empty()),
            cells,
        })
        .collect();
    Ok(Some(BadList { header, rows }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_office_id_owns_a_file() {
        let ids = ["a", "a_b", "street-1"];
        assert_eq!(owner_of("a.html", ids.iter().copied()), Some("a"));
        assert_eq!(owner_of("a_trend.png", ids.iter().copied()), Some("a"));
        assert_eq!(owner_of("a_b_trend.png", ids.iter().copied()), Some("a_b"));
        assert_eq!(owner_of("a_b.html", ids.iter().copied()), Some("a_b"));
        assert_eq!(owner_of("street-1.txt", ids.iter().copied()), None);
        assert!(!plain_segment("..") && !plain_segment("a/b") && !plain_segment(".x") && plain_segment("满意度明细_2026-10.xlsx"));
    }
}
