//! Canonical records to columnar frames, as the curated Parquet files hold them.
//!
//! Timestamps are stored as Parquet timestamps in milliseconds holding the
//! locality's wall time (Asia/Shanghai by default), which is how residents,
//! offices and DuckDB users read them.

use crate::model::{Rating, SurveyResponse};
use chrono::NaiveDateTime;
use polars::prelude::*;
use std::borrow::Borrow;

/// Column names of the curated ratings, in file order.
pub const RATING_COLUMNS: [&str; 18] = [
    "rating_id",
    "source",
    "rated_at",
    "org_code",
    "category",
    "service_item",
    "department",
    "channel",
    "level",
    "reason_tags",
    "comment",
    "anonymous",
    "rater_hash",
    "follow_up",
    "rectified_at",
    "revisit",
    "default_rating",
    "batch_seq",
];

fn ms(t: &NaiveDateTime) -> i64 {
    t.and_utc().timestamp_millis()
}

fn datetime(name: &str, values: Vec<Option<i64>>) -> PolarsResult<Column> {
    Column::new(name.into(), values).cast(&DataType::Datetime(TimeUnit::Milliseconds, None))
}

/// The frame of a set of ratings, each tagged with the batch that stores it.
pub fn ratings_frame<R: Borrow<Rating>>(rows: &[R], batch_seq: i64) -> PolarsResult<DataFrame> {
    let rs: Vec<&Rating> = rows.iter().map(Borrow::borrow).collect();
    let s = |f: fn(&Rating) -> &str| rs.iter().map(|r| f(r)).collect::<Vec<&str>>();
    let n = rs.len();
    DataFrame::new(
        n,
        vec![
            Column::new("rating_id".into(), s(|r| &r.rating_id)),
            Column::new("source".into(), s(|r| &r.source)),
            datetime("rated_at", rs.iter().map(|r| Some(ms(&r.rated_at))).collect())?,
            Column::new("org_code".into(), s(|r| &r.org_code)),
            Column::new("category".into(), s(|r| &r.category)),
            Column::new("service_item".into(), s(|r| &r.service_item)),
            Column::new("department".into(), s(|r| &r.department)),
            Column::new("channel".into(), rs.iter().map(|r| r.channel as i32).collect::<Vec<_>>()),
            Column::new("level".into(), rs.iter().map(|r| r.level.code() as i32).collect::<Vec<_>>()),
            Column::new("reason_tags".into(), s(|r| &r.reason_tags)),
            Column::new("comment".into(), s(|r| &r.comment)),
            Column::new("anonymous".into(), rs.iter().map(|r| r.anonymous).collect::<Vec<_>>()),
            Column::new("rater_hash".into(), rs.iter().map(|r| r.rater_hash.as_deref()).collect::<Vec<_>>()),
            Column::new("follow_up".into(), rs.iter().map(|r| r.follow_up.map(|f| f.name())).collect::<Vec<_>>()),
            datetime("rectified_at", rs.iter().map(|r| r.rectified_at.as_ref().map(ms)).collect())?,
            Column::new("revisit".into(), s(|r| &r.revisit)),
            Column::new("default_rating".into(), rs.iter().map(|r| r.default_rating).collect::<Vec<_>>()),
            Column::new("batch_seq".into(), vec![batch_seq; n]),
        ],
    )
}

/// The long-form frame of questionnaire responses: one row per answer.
pub fn responses_frame<R: Borrow<SurveyResponse>>(source: &str, rows: &[R], batch_seq: i64) -> PolarsResult<DataFrame> {
    let mut response_id = Vec::new();
    let mut survey = Vec::new();
    let mut submitted = Vec::new();
    let mut org = Vec::new();
    let mut question = Vec::new();
    let mut option = Vec::new();
    let mut text = Vec::new();
    let mut skipped = Vec::new();
    for r in rows.iter().map(Borrow::borrow) {
        for a in &r.answers {
            response_id.push(r.response_id.as_str());
            survey.push(r.survey.as_str());
            submitted.push(Some(ms(&r.submitted_at)));
            org.push(r.org_code.as_str());
            question.push(a.question.as_str());
            option.push(a.option.as_str());
            text.push(a.text.as_str());
            skipped.push(a.skipped);
        }
    }
    let n = response_id.len();
    DataFrame::new(
        n,
        vec![
            Column::new("response_id".into(), response_id),
            Column::new("source".into(), vec![source; n]),
            Column::new("survey".into(), survey),
            datetime("submitted_at", submitted)?,
            Column::new("org_code".into(), org),
            Column::new("question".into(), question),
            Column::new("option".into(), option),
            Column::new("text".into(), text),
            Column::new("skipped".into(), skipped),
            Column::new("batch_seq".into(), vec![batch_seq; n]),
        ],
    )
}

/// Scans curated rating files written by any version of manyi. Files from
/// before the `default_rating` column lack it: the scan is given the current
/// schema, reads the missing column as null, and null means "not a default
/// rating" (no such mark existed then).
pub fn scan_ratings(sources: Vec<PlRefPath>) -> PolarsResult<LazyFrame> {
    let schema = ratings_frame::<Rating>(&[], 0)?.schema().clone();
    let args = ScanArgsParquet {
        hive_options: HiveOptions::new_disabled(),
        schema: Some(schema),
        allow_missing_columns: true,
        ..Default::default()
    };
    let lf = LazyFrame::scan_parquet_files(sources.into_iter().collect(), args)?;
    Ok(lf.with_column(col("default_rating").fill_null(lit(false))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Level;

    fn rating(id: &str, default_rating: bool) -> Rating {
        Rating { default_rating, ..Rating::example(id, "s", "369901001001", "health", NaiveDateTime::default(), Level::ALL_DESC[0]) }
    }

    #[test]
    fn files_without_the_default_column_read_as_not_default() {
        let dir = tempfile::tempdir().expect("tmp");
        let write = |name: &str, mut df: DataFrame| {
            let path = dir.path().join(name);
            let mut f = std::fs::File::create(&path).expect("create");
            ParquetWriter::new(&mut f).finish(&mut df).expect("write");
            PlRefPath::try_from_path(&path).expect("path")
        };
        let old = ratings_frame(&[rating("a", false)], 1).expect("frame").drop("default_rating").expect("drop");
        let new = ratings_frame(&[rating("b", true)], 2).expect("frame");
        for order in [[0, 1], [1, 0]] {
            let files = [write("old.parquet", old.clone()), write("new.parquet", new.clone())];
            let paths = order.iter().map(|&i| files[i].clone()).collect();
            let df = scan_ratings(paths).expect("scan").sort(["rating_id"], Default::default()).collect().expect("collect");
            let col = df.column("default_rating").expect("col").bool().expect("bool").clone();
            let marks: Vec<Option<bool>> = (0..col.len()).map(|i| col.get(i)).collect();
            assert_eq!(marks, [Some(false), Some(true)]);
        }
    }
}
