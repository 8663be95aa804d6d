//! 好差评 figures: breakdowns by any one or two dimensions, the report
//! tables of a scope, rankings by a shrunk rate, and changes against the
//! previous period.

use super::{AggregateError, Counts, Stats, significant_difference};
use crate::config::{Category, OrgTree, RankBy, Scope};
use crate::model::OrgLevel;
use crate::period::Period;
use polars::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;

/// A dimension figures can be broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    /// 区/县.
    District,
    /// 街道/乡镇.
    Street,
    /// 社区/村.
    Community,
    /// 网格 (empty for ratings given at community level).
    Grid,
    /// Service category.
    Category,
    /// Top-level category (the parent of a sub-category, or itself).
    CategoryParent,
    /// 评价渠道 code.
    Channel,
    /// 受理部门.
    Department,
}

impl Dim {
    /// Every dimension, in the order `manyi figures` lists them.
    pub const ALL: [Dim; 8] =
        [Dim::District, Dim::Street, Dim::Community, Dim::Grid, Dim::Category, Dim::CategoryParent, Dim::Channel, Dim::Department];

    /// The column the dimension is read from after the reference joins.
    pub fn column(self) -> &'static str {
        match self {
            Dim::District => "district",
            Dim::Street => "street",
            Dim::Community => "community",
            Dim::Grid => "grid",
            Dim::Category => "category",
            Dim::CategoryParent => "category_parent",
            Dim::Channel => "channel",
            Dim::Department => "department",
        }
    }

    /// Parses a dimension name as the command line takes it.
    pub fn parse(text: &str) -> Option<Dim> {
        Dim::ALL.into_iter().find(|d| d.column() == text.trim())
    }
}

/// Reference data as frames, for joins inside the polars plan.
#[derive(Debug, Clone)]
pub struct RefFrames {
    orgs: DataFrame,
    categories: DataFrame,
    community_of: std::collections::HashMap<String, String>,
}

impl RefFrames {
    /// Builds the frames: every community and grid code with its grid,
    /// community, street and district; every category with its top parent.
    pub fn new(orgs: &OrgTree, categories: &[Category]) -> Result<RefFrames, AggregateError> {
        let (mut code, mut grid, mut community, mut street, mut district) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for u in orgs.units().filter(|u| matches!(u.level, OrgLevel::Community | OrgLevel::Grid)) {
            let up = |level| orgs.ancestor(&u.code, level).map(|a| a.code.clone()).unwrap_or_default();
            code.push(u.code.clone());
            grid.push(if u.level == OrgLevel::Grid { u.code.clone() } else { String::new() });
            community.push(up(OrgLevel::Community));
            street.push(up(OrgLevel::Street));
            district.push(up(OrgLevel::District));
        }
        let n = code.len();
        let orgs = DataFrame::new(
            n,
            vec![
                Column::new("org_code".into(), code),
                Column::new("grid".into(), grid),
                Column::new("community".into(), community),
                Column::new("street".into(), street),
                Column::new("district".into(), district),
            ],
        )?;
        let top = |c: &Category| {
            let mut cur = c;
            while let Some(p) = categories.iter().find(|p| p.code == cur.parent) {
                cur = p;
            }
            cur.code.clone()
        };
        let cats = DataFrame::new(
            categories.len(),
            vec![
                Column::new("category".into(), categories.iter().map(|c| c.code.clone()).collect::<Vec<_>>()),
                Column::new("category_parent".into(), categories.iter().map(top).collect::<Vec<_>>()),
            ],
        )?;
        let community_of = {
            let (code, comm) = (orgs.column("org_code")?.str()?, orgs.column("community")?.str()?);
            (0..orgs.height()).filter_map(|i| Some((code.get(i)?.to_string(), comm.get(i)?.to_string()))).collect()
        };
        Ok(RefFrames { orgs, categories: cats, community_of })
    }

    /// The community of an org code; an org code no longer in the reference
    /// data stays its own community.
    fn community<'s>(&'s self, org_code: &'s str) -> &'s str {
        self.community_of.get(org_code).map_or(org_code, String::as_str)
    }

    /// Adds the dimension columns to a frame of ratings. An org code that is
    /// no longer in the reference data keeps itself as its community, so no
    /// rating silently drops out of the totals.
    fn with_dims(&self, ratings: LazyFrame) -> LazyFrame {
        ratings
            .join(self.orgs.clone().lazy(), [col("org_code")], [col("org_code")], JoinArgs::new(JoinType::Left))
            .join(self.categories.clone().lazy(), [col("category")], [col("category")], JoinArgs::new(JoinType::Left))
            .with_columns([
                col("community").fill_null(col("org_code")),
                col("street").fill_null(lit("")),
                col("district").fill_null(lit("")),
                col("grid").fill_null(lit("")),
                col("category_parent").fill_null(col("category")),
                col("channel").cast(DataType::String),
            ])
    }
}

/// Keeps the rows whose timestamp `column` falls within `period` (local wall time).
pub(super) fn within_by(rows: LazyFrame, column: &str, period: Period) -> LazyFrame {
    let ms = |t: chrono::NaiveDateTime| t.and_utc().timestamp_millis();
    let at = col(column).cast(DataType::Int64);
    rows.filter(at.clone().gt_eq(lit(ms(period.start()))).and(at.lt(lit(ms(period.end())))))
}

fn within(ratings: LazyFrame, period: Period) -> LazyFrame {
    within_by(ratings, "rated_at", period)
}

fn level_counts() -> Vec<Expr> {
    (1..=5).map(|k| col("level").eq(lit(k)).cast(DataType::UInt64).sum().alias(format!("c{k}"))).collect()
}

/// Reads `key columns + c1..c5` rows into a map.
fn read_counts(df: &DataFrame, keys: &[&str]) -> Result<BTreeMap<Vec<String>, Counts>, AggregateError> {
    let key_cols: Vec<&StringChunked> = keys.iter().map(|k| df.column(k).and_then(|c| c.str())).collect::<PolarsResult<_>>()?;
    let counts: Vec<Column> =
        (1..=5).map(|k| df.column(&format!("c{k}")).and_then(|c| c.cast(&DataType::UInt64))).collect::<PolarsResult<_>>()?;
    let counts: Vec<&UInt64Chunked> = counts.iter().map(|c| c.u64()).collect::<PolarsResult<_>>()?;
    let mut out: BTreeMap<Vec<String>, Counts> = BTreeMap::new();
    for i in 0..df.height() {
        let key: Vec<String> = key_cols.iter().map(|c| c.get(i).unwrap_or_default().to_string()).collect();
        let mut cell = Counts::default();
        for (k, c) in counts.iter().enumerate() {
            cell.levels[k] = c.get(i).unwrap_or(0);
        }
        out.entry(key).or_default().add(&cell);
    }
    Ok(out)
}

/// Counts per combination of dimensions.
#[derive(Debug, Clone, Serialize)]
pub struct Breakdown {
    /// The dimensions, in key order.
    pub dims: Vec<Dim>,
    /// Key values (one per dimension) → the counts the rates use (first
    /// evaluations; default ones only with `include_default`).
    pub cells: BTreeMap<Vec<String>, Counts>,
    /// Key values → what is shown apart (主动/默认评价, second evaluations).
    pub apart: BTreeMap<Vec<String>, Apart>,
}

/// Counts the ratings of `period` by `dims` (one or two, or none for the total).
pub fn breakdown(
    ratings: LazyFrame,
    refs: &RefFrames,
    period: Period,
    dims: &[Dim],
    include_default: bool,
) -> Result<Breakdown, AggregateError> {
    let keys: Vec<&str> = dims.iter().map(|d| d.column()).collect();
    let lf = with_evaluation(refs.with_dims(within(ratings, period)));
    let mut by: Vec<Expr> = keys.iter().map(|k| col(*k)).collect();
    by.push(kind_expr());
    let df = collect_streaming(lf.group_by(by).agg(level_counts()))?;
    let mut with_kind = keys.clone();
    with_kind.push("kind");
    let mut cells: BTreeMap<Vec<String>, Cell> = BTreeMap::new();
    if keys.is_empty() {
        // The total has its row even when nothing was rated.
        cells.insert(Vec::new(), Cell::default());
    }
    for (mut key, counts) in read_counts(&df, &with_kind)? {
        let kind = key.pop().unwrap_or_default();
        let cell = cells.entry(key).or_default();
        match kind.as_str() {
            "second" => cell.second.add(&counts),
            "default" => cell.default.add(&counts),
            _ => cell.active.add(&counts),
        }
    }
    Ok(Breakdown {
        dims: dims.to_vec(),
        apart: cells.iter().map(|(k, c)| (k.clone(), Apart::of(c))).collect(),
        cells: cells.into_iter().map(|(k, c)| (k, c.counted(include_default))).collect(),
    })
}

/// The grain of the reports: counts per (bucket, community, category), where
/// a bucket is a period (the report's, the previous one, each trend month).
/// Cells are grouped by community, so an office's roll-up visits only the
/// communities in its scope.
#[derive(Debug, Clone, Default)]
pub struct Grain {
    /// Community code → (period key, category code, counts kept apart).
    pub by_community: BTreeMap<String, Vec<(String, String, Cell)>>,
}

/// The counts of one grain cell, kept apart by what kind of rating they are:
/// only [`Cell::counted`] enters the rates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Cell {
    /// 主动评价: first evaluations a resident gave.
    pub active: Counts,
    /// 系统默认评价: first evaluations the platform filled in.
    pub default: Counts,
    /// 追评: second (and later) evaluations of a 办件, given after a 差评
    /// was handled. Never in the rates; they give 回访满意度.
    pub second: Counts,
    /// Of `second`, those whose first evaluation is not in the window read.
    pub orphan_second: u64,
}

impl Cell {
    /// Adds another cell.
    pub fn add(&mut self, other: &Cell) {
        self.active.add(&other.active);
        self.default.add(&other.default);
        self.second.add(&other.second);
        self.orphan_second += other.orphan_second;
    }

    /// The counts the rates are computed from: first evaluations, the
    /// default ones only when `include_default`.
    pub fn counted(&self, include_default: bool) -> Counts {
        let mut c = self.active;
        if include_default {
            c.add(&self.default);
        }
        c
    }
}

/// What is shown apart from the rates: 主动评价 and 默认评价 counts,
/// 主动评价率, and the second evaluations (回访满意度 = their 满意率).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Apart {
    /// 主动评价数 (first evaluations).
    pub active: u64,
    /// 默认评价数 (first evaluations).
    pub default: u64,
    /// 主动评价率 = active / (active + default); 0 when both are 0.
    pub active_rate: f64,
    /// Figures of the second evaluations; `satisfied_rate` is 回访满意度.
    pub second: Stats,
    /// Second evaluations whose first was not found (counted in `second`).
    pub orphan_second: u64,
}

impl Apart {
    /// The figures shown apart of a cell.
    pub fn of(c: &Cell) -> Apart {
        let (active, default) = (c.active.n(), c.default.n());
        let all = active + default;
        Apart {
            active,
            default,
            active_rate: if all == 0 { 0.0 } else { active as f64 / all as f64 },
            second: c.second.stats(),
            orphan_second: c.orphan_second,
        }
    }
}

/// 评价次数 of a rating id: the number after its last “-” (the id is
/// 办件编号 + "-" + 评价次数); an id without one is a first evaluation.
pub fn evaluation_of(rating_id: &str) -> u32 {
    split_id(rating_id).map(|(_, n)| n).unwrap_or(1)
}

/// 办件编号 of a rating id: the id without its 评价次数.
pub fn project_of(rating_id: &str) -> &str {
    split_id(rating_id).map(|(p, _)| p).unwrap_or(rating_id)
}

fn split_id(id: &str) -> Option<(&str, u32)> {
    let (project, times) = id.rsplit_once('-')?;
    let n = times.parse::<u32>().ok().filter(|n| (1..=99).contains(n))?;
    (!project.is_empty()).then_some((project, n))
}

/// Adds `evaluation` (评价次数) and `project` (办件编号) read from `rating_id`.
/// They live in the id rather than in columns of their own, so curated files
/// of every version read alike.
fn with_evaluation(ratings: LazyFrame) -> LazyFrame {
    let evaluation = col("rating_id").map(
        |c| {
            let out: UInt32Chunked = c.str()?.downcast_iter().flat_map(|a| a.iter()).map(|id| id.map(evaluation_of)).collect();
            Ok(out.with_name(c.name().clone()).into_column())
        },
        |_, f| Ok(Field::new(f.name().clone(), DataType::UInt32)),
    );
    let project = col("rating_id").map(
        |c| {
            let out: StringChunked = c.str()?.downcast_iter().flat_map(|a| a.iter()).map(|id| id.map(project_of)).collect();
            Ok(out.with_name(c.name().clone()).into_column())
        },
        |_, f| Ok(Field::new(f.name().clone(), DataType::String)),
    );
    ratings.with_columns([evaluation.alias("evaluation"), project.alias("project")])
}

/// The kind of a rating as the grain keeps it apart: `second`, `default` or `active`.
fn kind_expr() -> Expr {
    when(col("evaluation").gt(lit(1u32)))
        .then(lit("second"))
        .when(col("default_rating"))
        .then(lit("default"))
        .otherwise(lit("active"))
        .alias("kind")
}

/// `second_of`: the 办件编号 of a second (or later) evaluation, null for a
/// first one. The grain needs no more of the id per rating: the kind follows
/// from it, and only second evaluations need their 办件 (to find orphans),
/// so no string is built for the ratings that are first evaluations.
fn with_second_of(ratings: LazyFrame) -> LazyFrame {
    let second_of = col("rating_id").map(
        |c| {
            let out: StringChunked = c
                .str()?
                .downcast_iter()
                .flat_map(|a| a.iter())
                .map(|id| id.and_then(split_id).and_then(|(project, n)| (n > 1).then_some(project)))
                .collect();
            Ok(out.with_name(c.name().clone()).into_column())
        },
        |_, f| Ok(Field::new(f.name().clone(), DataType::String)),
    );
    ratings.with_column(second_of.alias("second_of"))
}

/// The kind of a rating from `second_of` (as [`kind_expr`] from
/// `evaluation`), as a small code rather than a string: the grain groups a
/// million ratings by it. 2 = second, 1 = default, 0 = active.
fn kind_code_expr() -> Expr {
    when(col("second_of").is_not_null()).then(lit(2u32)).when(col("default_rating")).then(lit(1u32)).otherwise(lit(0u32)).alias("kind")
}

/// Computes the grain for each bucket period from its ratings. Each bucket
/// comes with a frame of its own months only (the store prunes partitions),
/// so a monthly report reads each month once; a bucket key given twice is
/// counted once.
pub fn grain(buckets: Vec<(Period, LazyFrame)>, refs: &RefFrames) -> Result<Grain, AggregateError> {
    let mut seen = std::collections::BTreeSet::new();
    let (mut frames, mut all) = (Vec::new(), Vec::new());
    for (b, ratings) in buckets {
        if !seen.insert(b.key()) {
            continue;
        }
        let rated = with_second_of(within(ratings.clone(), b)).with_column(lit(b.key()).alias("bucket"));
        // Group on the raw codes first and map grids to communities on the
        // small result: joining reference data onto every rating costs more
        // than the whole group-by. Second evaluations are few; grouping them
        // by their 办件 too gives the orphan check its input in the same scan.
        let mut agg = level_counts();
        agg.push(len().alias("rows"));
        frames.push(rated.group_by([col("bucket"), col("org_code"), col("category"), kind_code_expr(), col("second_of")]).agg(agg));
        all.push(ratings);
    }
    let mut g = Grain::default();
    if frames.is_empty() {
        return Ok(g);
    }
    let df = collect_streaming(concat(frames, UnionArgs::default())?)?;
    let key_cols: Vec<&StringChunked> =
        ["bucket", "org_code", "category", "second_of"].iter().map(|k| df.column(k).and_then(|c| c.str())).collect::<PolarsResult<_>>()?;
    let kinds = df.column("kind")?.cast(&DataType::UInt32)?;
    let kinds = kinds.u32()?;
    let counts: Vec<Column> =
        (1..=5).map(|k| df.column(&format!("c{k}")).and_then(|c| c.cast(&DataType::UInt64))).collect::<PolarsResult<_>>()?;
    let counts: Vec<&UInt64Chunked> = counts.iter().map(|c| c.u64()).collect::<PolarsResult<_>>()?;
    let rows = df.column("rows")?.cast(&DataType::UInt64)?;
    let rows = rows.u64()?;
    let mut merged: BTreeMap<(&str, &str, &str), Cell> = BTreeMap::new();
    // (bucket, org code, category, 办件) → second evaluations.
    let mut seconds: Vec<((&str, &str, &str), &str, u64)> = Vec::new();
    let community = |o| refs.community(o);
    for i in 0..df.height() {
        let key = |j: usize| key_cols[j].get(i).unwrap_or_default();
        let (b, o, k) = (key(0), key(1), key(2));
        let mut c = Counts::default();
        for (level, col) in c.levels.iter_mut().zip(&counts) {
            *level = col.get(i).unwrap_or(0);
        }
        let cell = merged.entry((community(o), b, k)).or_default();
        match kinds.get(i) {
            Some(2) => cell.second.add(&c),
            Some(1) => cell.default.add(&c),
            _ => cell.active.add(&c),
        }
        if let Some(project) = key_cols[3].get(i) {
            seconds.push(((b, o, k), project, rows.get(i).unwrap_or(0)));
        }
    }
    for ((b, o, k), n) in orphan_seconds(&seconds, all)? {
        merged.entry((community(o), b, k)).or_default().orphan_second += n;
    }
    for ((c, b, k), cell) in merged {
        g.by_community.entry(c.to_string()).or_default().push((b.to_string(), k.to_string(), cell));
    }
    Ok(g)
}

/// Runs a query over the curated ratings on polars' streaming engine, which
/// reads the files a morsel at a time. The in-memory engine reads every
/// column the query needs, of every month, before it groups: a monthly
/// report's grain over 14 months (the month, the one before, 12 of trend)
/// at 30 M ratings a year took 1.8 GB that way and 0.7 GB streamed, a
/// month's table 1.0 GB and 0.55 GB, each in less time (BENCHMARKS.md,
/// fourteenth session). The result is the same frame; its row order may
/// differ, which no caller depends on (each reads it into a map).
fn collect_streaming(lf: LazyFrame) -> PolarsResult<DataFrame> {
    // Several results come only from a plan of several sinks (polars'
    // `collect_all`); a plan of one query gives one.
    Ok(lf.collect_with_engine(Engine::Streaming)?.unwrap_single())
}

/// Second evaluations whose 办件 has no first evaluation anywhere in the
/// frames read, per (bucket, org code, category). They are few, so the
/// frames are searched for the first evaluations of their 办件 only, and not
/// at all when there are none.
fn orphan_seconds<'s>(
    seconds: &[((&'s str, &'s str, &'s str), &'s str, u64)],
    frames: Vec<LazyFrame>,
) -> Result<BTreeMap<(&'s str, &'s str, &'s str), u64>, AggregateError> {
    let mut out = BTreeMap::new();
    if seconds.is_empty() {
        return Ok(out);
    }
    let wanted: std::sync::Arc<std::collections::HashSet<String>> =
        std::sync::Arc::new(seconds.iter().map(|(_, p, _)| (*p).to_string()).collect());
    let first_of_wanted = {
        let wanted = std::sync::Arc::clone(&wanted);
        col("rating_id").map(
            move |c| {
                let out: BooleanChunked = c
                    .str()?
                    .downcast_iter()
                    .flat_map(|a| a.iter())
                    .map(|id| id.is_some_and(|id| evaluation_of(id) == 1 && wanted.contains(project_of(id))))
                    .collect();
                Ok(out.with_name(c.name().clone()).into_column())
            },
            |_, f| Ok(Field::new(f.name().clone(), DataType::Boolean)),
        )
    };
    let firsts: Vec<LazyFrame> = frames.into_iter().map(|f| f.filter(first_of_wanted.clone()).select([col("rating_id")])).collect();
    let df = collect_streaming(concat(firsts, UnionArgs::default())?)?;
    let ids = df.column("rating_id")?.str()?;
    let has_first: std::collections::HashSet<&str> = ids.downcast_iter().flat_map(|a| a.iter()).flatten().map(project_of).collect();
    for (key, project, n) in seconds {
        if !has_first.contains(project) {
            *out.entry(*key).or_default() += n;
        }
    }
    Ok(out)
}

/// Whether a community and category lie in an office's scope.
pub fn in_scope(orgs: &OrgTree, scope: &Scope, community: &str, category: &str) -> bool {
    lineage_in_scope(scope, orgs.lineage(community), category)
}

/// [`in_scope`] for a unit whose lineage ([`OrgTree::lineage`]) the caller
/// looked up once: a monthly run checks every 差评 against every office.
pub fn lineage_in_scope(scope: &Scope, lineage: &[(String, OrgLevel)], category: &str) -> bool {
    (scope.orgs.is_empty() || scope.orgs.iter().any(|s| lineage.iter().any(|(c, _)| c == s)))
        && (scope.categories.is_empty() || scope.categories.iter().any(|c| c == category))
}

/// One row of a breakdown table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Code of the unit or category.
    pub code: String,
    /// Chinese name.
    pub name: String,
    /// Name of the parent (street of a community, district of a street).
    pub parent: String,
    /// The figures.
    pub stats: Stats,
    /// n under the minimum: shown, flagged, not ranked.
    pub low_n: bool,
    /// Figures of the previous period.
    pub previous: Stats,
    /// Change of 满意率 in percentage points.
    pub change_pp: f64,
    /// Whether the change is significant (two-proportion test, 95%).
    pub significant: bool,
    /// The ranking figure (`Rules::rank_by`) shrunk toward the parent's.
    pub shrunk: f64,
    /// Rank by `shrunk`, 1 = best; `None` when n is under the minimum.
    pub rank: Option<usize>,
    /// 主动/默认评价 and second evaluations, shown apart from `stats`.
    pub apart: Apart,
}

/// A community × category cell of the main table.
#[derive(Debug, Clone, Serialize)]
pub struct Cross {
    /// Community code.
    pub community: String,
    /// Category code.
    pub category: String,
    /// The figures.
    pub stats: Stats,
    /// n under the minimum.
    pub low_n: bool,
    /// The ranking figure shrunk toward the category's figure in the scope.
    pub shrunk: f64,
    /// 主动/默认评价 and second evaluations of the cell.
    pub apart: Apart,
}

/// How figures are ranked and flagged.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Cells under this n are flagged and not ranked.
    pub min_n: u64,
    /// Prior weight (in ratings) of the parent's rate in the shrunk score.
    pub prior_weight: f64,
    /// Whether default ratings count in the rates.
    pub include_default: bool,
    /// The figure rankings order by.
    pub rank_by: RankBy,
    /// Share of ranked peers at the bottom that counts as behind (watch list).
    pub watch_bottom: f64,
    /// A 满意率 under which a unit is behind whatever its rank.
    pub watch_threshold: Option<f64>,
}

impl Default for Rules {
    fn default() -> Self {
        let m = crate::config::MetricRules::default();
        Rules::from(&m)
    }
}

impl From<&crate::config::MetricRules> for Rules {
    fn from(m: &crate::config::MetricRules) -> Self {
        Rules {
            min_n: u64::from(m.min_n),
            prior_weight: m.prior_weight,
            include_default: m.include_default,
            rank_by: m.rank_by,
            watch_bottom: m.watch_bottom,
            watch_threshold: m.watch_threshold,
        }
    }
}

/// The sum a ranking figure is a mean of: 差评, 满意 or score points (0–100 each).
fn metric_sum(c: &Counts, by: RankBy) -> f64 {
    match by {
        RankBy::BadRate => (c.levels[0] + c.levels[1]) as f64,
        RankBy::SatisfiedRate => c.satisfied() as f64,
        RankBy::Score => (1..=5).map(|k| c.levels[k - 1] as f64 * (k as f64 - 1.0) * 25.0).sum(),
    }
}

/// The ranking figure of a cell (0 when empty).
pub(crate) fn metric_rate(c: &Counts, by: RankBy) -> f64 {
    if c.n() == 0 { 0.0 } else { metric_sum(c, by) / c.n() as f64 }
}

/// The ranking figure shrunk toward `parent`: (sum + m·parent) / (n + m).
fn metric_shrunk(c: &Counts, by: RankBy, parent: f64, prior_weight: f64) -> f64 {
    if c.n() == 0 && prior_weight <= 0.0 {
        return parent;
    }
    (metric_sum(c, by) + prior_weight * parent) / (c.n() as f64 + prior_weight)
}

/// The rating tables of one period for one scope.
#[derive(Debug, Clone, Serialize)]
pub struct RatingTables {
    /// The period's key.
    pub period: String,
    /// Totals of the scope.
    pub total: Stats,
    /// Totals of the previous period.
    pub previous: Stats,
    /// 主动/默认评价 and second evaluations of the scope, shown apart.
    pub apart: Apart,
    /// Whether default ratings are in the rates (`metrics.include_default`).
    pub include_default: bool,
    /// The figure the tables are ranked by.
    pub rank_by: RankBy,
    /// Its Chinese name, as the tables print it.
    pub rank_label: &'static str,
    /// The watch list (连续落后) entries of the scope; filled by the caller
    /// from [`super::watch_list`], which ranks the whole city.
    pub watch: Vec<super::WatchEntry>,
    /// The offices ranked among themselves (leadership report); filled by
    /// the caller from [`super::office_rows`].
    pub offices: Vec<Row>,
    /// By district.
    pub districts: Vec<Row>,
    /// By street. Not in a template's context (a province has hundreds):
    /// templates list the view's `street_table`.
    #[serde(skip)]
    pub streets: Vec<Row>,
    /// By community. Not in a template's context: see `community_table`.
    #[serde(skip)]
    pub communities: Vec<Row>,
    /// By service category (parents included, after their children).
    pub categories: Vec<Row>,
    /// Community × category. Not in a template's context (24,000 cells in
    /// a province): the workbook carries it whole, the view the weakest.
    #[serde(skip)]
    pub cross: Vec<Cross>,
    /// Monthly totals, oldest first: (month key, figures).
    pub trend: Vec<(String, Stats)>,
}

fn make_rows(
    cur: &BTreeMap<String, Cell>,
    prev: &BTreeMap<String, Cell>,
    name: impl Fn(&str) -> (String, String),
    parent_rate: impl Fn(&str) -> f64,
    rules: Rules,
) -> Vec<Row> {
    let inc = rules.include_default;
    let mut rows: Vec<Row> = cur
        .iter()
        .map(|(code, cell)| {
            let c = cell.counted(inc);
            let stats = c.stats();
            let p = prev.get(code).map(|p| p.counted(inc)).unwrap_or_default();
            let (name, parent) = name(code);
            Row {
                code: code.clone(),
                name,
                parent,
                low_n: stats.n < rules.min_n,
                change_pp: if p.n() == 0 { 0.0 } else { (stats.satisfied_rate - p.stats().satisfied_rate) * 100.0 },
                significant: significant_difference(c.satisfied(), c.n(), p.satisfied(), p.n()),
                previous: p.stats(),
                shrunk: metric_shrunk(&c, rules.rank_by, parent_rate(code), rules.prior_weight),
                rank: None,
                apart: Apart::of(cell),
                stats,
            }
        })
        .collect();
    let mut ranked: Vec<usize> = (0..rows.len()).filter(|&i| !rows[i].low_n).collect();
    let lower = rules.rank_by.lower_is_better();
    ranked.sort_by(|&a, &b| {
        let (x, y) = (rows[a].shrunk, rows[b].shrunk);
        let order = if lower { x.total_cmp(&y) } else { y.total_cmp(&x) };
        order.then_with(|| rows[a].code.cmp(&rows[b].code))
    });
    for (r, i) in ranked.into_iter().enumerate() {
        rows[i].rank = Some(r + 1);
    }
    rows
}

/// The district, street and community a community's counts roll up to
/// (empty when the reference data does not place it).
struct Lineage {
    district: String,
    street: String,
    community: String,
}

impl Lineage {
    fn of(orgs: &OrgTree, community: &str) -> Lineage {
        let up = |level| orgs.ancestor(community, level).map(|u| u.code.clone());
        Lineage {
            district: up(OrgLevel::District).unwrap_or_default(),
            street: up(OrgLevel::Street).unwrap_or_default(),
            // A community no longer in the reference data stays its own row.
            community: up(OrgLevel::Community).unwrap_or_else(|| community.to_string()),
        }
    }
}

/// Counts of one bucket (the report's period or the previous one) per row
/// of each table.
#[derive(Default)]
struct Tally {
    districts: BTreeMap<String, Cell>,
    streets: BTreeMap<String, Cell>,
    communities: BTreeMap<String, Cell>,
    /// Every category with its ancestors: a parent's row sums its children.
    categories: BTreeMap<String, Cell>,
}

impl Tally {
    /// Adds a community's cells of one bucket, summed, to its district,
    /// street and community rows.
    fn add_orgs(&mut self, lineage: &Lineage, counts: &Cell) {
        for (map, code) in
            [(&mut self.districts, &lineage.district), (&mut self.streets, &lineage.street), (&mut self.communities, &lineage.community)]
        {
            // Look up before inserting: the key is allocated once per row,
            // not once per grain cell.
            if let Some(cell) = map.get_mut(code.as_str()) {
                cell.add(counts);
            } else if !code.is_empty() {
                map.insert(code.clone(), *counts);
            }
        }
    }

    /// Adds one cell to its category's row and its ancestors'.
    fn add_categories(&mut self, categories: &[&str], counts: &Cell) {
        for c in categories {
            if let Some(cell) = self.categories.get_mut(*c) {
                cell.add(counts);
            } else {
                self.categories.insert((*c).to_string(), *counts);
            }
        }
    }
}

/// The grain of one scope summed for the tables: the report's period, the
/// previous one and the trend months.
struct Sums {
    total: Cell,
    previous: Cell,
    cur: Tally,
    prev: Tally,
    /// (community, category) → counts of the report's period.
    cross: BTreeMap<(String, String), Cell>,
    /// Month key → counts, every trend month present.
    trend: BTreeMap<String, Cell>,
}

/// A scope's counts per bucket (period key), with the same scope rule as
/// [`rating_tables`] (org scope by lineage, categories by code) but no
/// tables: what ranking offices against each other needs.
pub(crate) fn scope_buckets<'g>(grain: &'g Grain, orgs: &OrgTree, scope: &Scope) -> BTreeMap<&'g str, Cell> {
    let mut out: BTreeMap<&str, Cell> = BTreeMap::new();
    for (community, cells) in &grain.by_community {
        if !scope.orgs.is_empty() && !scope.orgs.iter().any(|s| orgs.is_within(community, s)) {
            continue;
        }
        for (bucket, cat, counts) in cells {
            if scope.categories.is_empty() || scope.categories.iter().any(|c| c == cat) {
                out.entry(bucket.as_str()).or_default().add(counts);
            }
        }
    }
    out
}

/// `with_cross`: whether to keep the community × category cells (a ranking
/// of streets and communities alone, as the watch list's, needs none).
fn sum_scope(
    grain: &Grain,
    orgs: &OrgTree,
    categories: &[Category],
    scope: &Scope,
    period: Period,
    trend_months: usize,
    with_cross: bool,
) -> Sums {
    let (key, prev_key) = (period.key(), period.previous().key());
    let trend_keys: Vec<String> = period.trailing_months(trend_months).iter().map(|p| p.key()).collect();
    let mut sums = Sums {
        total: Cell::default(),
        previous: Cell::default(),
        cur: Tally::default(),
        prev: Tally::default(),
        cross: BTreeMap::new(),
        trend: trend_keys.iter().map(|k| (k.clone(), Cell::default())).collect(),
    };
    // Each category's chain of ancestors (parent rollup), resolved once.
    let chains: BTreeMap<&str, Vec<&str>> = categories
        .iter()
        .map(|c| {
            let mut chain = vec![c.code.as_str()];
            let mut cur = c;
            while let Some(p) = categories.iter().find(|p| p.code == cur.parent) {
                chain.push(p.code.as_str());
                cur = p;
            }
            (c.code.as_str(), chain)
        })
        .collect();
    for (community, cells) in &grain.by_community {
        if !scope.orgs.is_empty() && !scope.orgs.iter().any(|s| orgs.is_within(community, s)) {
            continue;
        }
        let lineage = Lineage::of(orgs, community);
        // The community's cells of each bucket summed before they go to its
        // district, street and community rows: three map look-ups a bucket
        // instead of three a cell (`None`: no cell of the bucket seen, so no
        // row is made, as before).
        let (mut cur_orgs, mut prev_orgs): (Option<Cell>, Option<Cell>) = (None, None);
        for (bucket, cat, counts) in cells {
            if !scope.categories.is_empty() && !scope.categories.iter().any(|c| c == cat) {
                continue;
            }
            if let Some(t) = sums.trend.get_mut(bucket) {
                t.add(counts);
            }
            let (tally, orgs_sum) = if *bucket == key {
                sums.total.add(counts);
                if with_cross {
                    sums.cross.entry((community.clone(), cat.clone())).or_default().add(counts);
                }
                (&mut sums.cur, &mut cur_orgs)
            } else if *bucket == prev_key {
                sums.previous.add(counts);
                (&mut sums.prev, &mut prev_orgs)
            } else {
                continue;
            };
            orgs_sum.get_or_insert_with(Cell::default).add(counts);
            // A category missing from the taxonomy still counts as itself.
            let itself = [cat.as_str()];
            let chain = chains.get(cat.as_str()).map(Vec::as_slice).unwrap_or(&itself);
            tally.add_categories(chain, counts);
        }
        if let Some(c) = cur_orgs {
            sums.cur.add_orgs(&lineage, &c);
        }
        if let Some(c) = prev_orgs {
            sums.prev.add_orgs(&lineage, &c);
        }
    }
    sums
}

/// Rolls the grain up to every table of `period` within `scope`.
pub fn rating_tables(
    grain: &Grain,
    orgs: &OrgTree,
    categories: &[Category],
    scope: &Scope,
    period: Period,
    trend_months: usize,
    rules: Rules,
) -> RatingTables {
    tables_of(sum_scope(grain, orgs, categories, scope, period, trend_months, true), orgs, categories, period, rules)
}

/// The whole city's tables of `period` without the trend and without the
/// community × category cells: what ranking streets and communities month
/// by month needs (the watch list does it for twelve months every run).
pub(crate) fn ranking_tables(grain: &Grain, orgs: &OrgTree, categories: &[Category], period: Period, rules: Rules) -> RatingTables {
    tables_of(sum_scope(grain, orgs, categories, &Scope::default(), period, 0, false), orgs, categories, period, rules)
}

/// The tables from a scope's sums.
fn tables_of(sums: Sums, orgs: &OrgTree, categories: &[Category], period: Period, rules: Rules) -> RatingTables {
    let Sums { total, previous, cur, prev, cross: cross_counts, trend } = sums;
    let (inc, by) = (rules.include_default, rules.rank_by);
    let total_rate = metric_rate(&total.counted(inc), by);
    let rate_of = |map: &BTreeMap<String, Cell>, code: &str| map.get(code).map(|c| metric_rate(&c.counted(inc), by)).unwrap_or(total_rate);
    let org_name = |code: &str| {
        let unit = orgs.get(code);
        (
            unit.map(|u| u.name.clone()).unwrap_or_else(|| code.to_string()),
            unit.and_then(|u| orgs.get(&u.parent)).map(|p| p.name.clone()).unwrap_or_default(),
        )
    };
    let parent_rate = |code: &str, level: OrgLevel| match level {
        OrgLevel::Street => orgs.ancestor(code, OrgLevel::District).map(|d| rate_of(&cur.districts, &d.code)).unwrap_or(total_rate),
        OrgLevel::Community => orgs.ancestor(code, OrgLevel::Street).map(|s| rate_of(&cur.streets, &s.code)).unwrap_or(total_rate),
        _ => total_rate,
    };
    let districts = make_rows(&cur.districts, &prev.districts, org_name, |c| parent_rate(c, OrgLevel::District), rules);
    let streets = make_rows(&cur.streets, &prev.streets, org_name, |c| parent_rate(c, OrgLevel::Street), rules);
    let communities = make_rows(&cur.communities, &prev.communities, org_name, |c| parent_rate(c, OrgLevel::Community), rules);
    let cat_name = |code: &str| {
        let c = categories.iter().find(|c| c.code == code);
        (
            c.map(|c| c.name.clone()).unwrap_or_else(|| code.to_string()),
            c.and_then(|c| categories.iter().find(|p| p.code == c.parent)).map(|p| p.name.clone()).unwrap_or_default(),
        )
    };
    let cat_parent_rate = |code: &str| {
        let parent = categories.iter().find(|c| c.code == code).map(|c| c.parent.as_str()).unwrap_or("");
        if parent.is_empty() { total_rate } else { rate_of(&cur.categories, parent) }
    };
    let mut cat_rows = make_rows(&cur.categories, &prev.categories, cat_name, cat_parent_rate, rules);
    // Taxonomy order, as the office knows it, rather than code order.
    cat_rows.sort_by_key(|r| categories.iter().position(|c| c.code == r.code).unwrap_or(usize::MAX));
    let cross = cross_counts
        .into_iter()
        .map(|((community, category), cell)| {
            let c = cell.counted(inc);
            let stats = c.stats();
            Cross {
                shrunk: metric_shrunk(&c, by, rate_of(&cur.categories, &category), rules.prior_weight),
                community,
                category,
                low_n: stats.n < rules.min_n,
                apart: Apart::of(&cell),
                stats,
            }
        })
        .collect();
    RatingTables {
        period: period.key(),
        total: total.counted(inc).stats(),
        previous: previous.counted(inc).stats(),
        apart: Apart::of(&total),
        include_default: inc,
        rank_by: by,
        rank_label: by.label(),
        watch: Vec::new(),
        offices: Vec::new(),
        districts,
        streets,
        communities,
        categories: cat_rows,
        cross,
        trend: trend.into_iter().map(|(k, v)| (k, v.counted(inc).stats())).collect(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::OrgUnit;
    use crate::model::{Level, Rating};

    pub(crate) fn unit(code: &str, parent: &str, level: OrgLevel) -> OrgUnit {
        OrgUnit { code: code.into(), name: format!("U{code}"), parent: parent.into(), level }
    }

    pub(crate) fn tree() -> OrgTree {
        OrgTree::new(vec![
            unit("369900", "", OrgLevel::City),
            unit("369901", "369900", OrgLevel::District),
            unit("369901001", "369901", OrgLevel::Street),
            unit("369901001001", "369901001", OrgLevel::Community),
            unit("369901001002", "369901001", OrgLevel::Community),
            unit("369901001003", "369901001", OrgLevel::Community),
            unit("369901001003001", "369901001003", OrgLevel::Grid),
        ])
    }

    pub(crate) fn cats() -> Vec<Category> {
        vec![Category { code: "property".into(), name: "物业管理".into(), parent: String::new(), synonyms: Vec::new() }]
    }

    /// `count` ratings of `level` for `org` on the 10th of `month` 2026, each
    /// the first evaluation of its own 办件.
    pub(crate) fn ratings(out: &mut Vec<Rating>, org: &str, month: u32, level: u8, count: usize) {
        for i in 0..count {
            out.push(one(&format!("{org}{month:02}{level}{i:04}-1"), org, month, level, false));
        }
    }

    /// One rating with its id (办件编号-评价次数) and default mark.
    pub(crate) fn one(id: &str, org: &str, month: u32, level: u8, default_rating: bool) -> Rating {
        let at = chrono::NaiveDate::from_ymd_opt(2026, month, 10).and_then(|d| d.and_hms_opt(9, 0, 0)).expect("time");
        Rating { channel: 2, default_rating, ..Rating::example(id, "t", org, "property", at, Level::from_code(level).expect("level")) }
    }

    #[test]
    fn a_community_with_two_ratings_is_shown_but_not_ranked() {
        let mut rs = Vec::new();
        ratings(&mut rs, "369901001001", 10, 5, 2); // A: 2 of 2 satisfied
        ratings(&mut rs, "369901001002", 10, 5, 30); // B: 36 of 40
        ratings(&mut rs, "369901001002", 10, 3, 6);
        ratings(&mut rs, "369901001002", 10, 1, 4);
        ratings(&mut rs, "369901001003001", 10, 4, 32); // C, rated in its grid: 32 of 40
        ratings(&mut rs, "369901001003", 10, 2, 8);
        ratings(&mut rs, "369901001002", 9, 5, 20); // B in September: 20 of 20
        let lf = crate::store::ratings_frame(&rs, 1).expect("frame").lazy();
        let (orgs, cats) = (tree(), cats());
        let refs = RefFrames::new(&orgs, &cats).expect("refs");
        let period: Period = "2026-10".parse().expect("period");
        let g = grain(vec![(period, lf.clone()), (period.previous(), lf.clone())], &refs).expect("grain");
        let by_satisfied = Rules { min_n: 30, prior_weight: 20.0, rank_by: RankBy::SatisfiedRate, ..Rules::default() };
        let t = rating_tables(&g, &orgs, &cats, &Scope::default(), period, 12, by_satisfied);
        let row = |code: &str| t.communities.iter().find(|r| r.code == code).expect("row").clone();
        let (a, b, c) = (row("369901001001"), row("369901001002"), row("369901001003"));
        assert_eq!((a.stats.n, a.low_n, a.rank), (2, true, None), "100% of 2 is shown, flagged, not ranked");
        assert_eq!((b.stats.n, c.stats.n), (40, 40), "the grid's ratings count for its community");
        // By hand: street rate 70/82 = 0.853659; B shrunk (36 + 20·0.853659)/60 = 0.884553,
        // C (32 + 17.07317)/60 = 0.817886.
        assert_eq!(format!("{:.6} {:.6}", b.shrunk, c.shrunk), "0.884553 0.817886");
        assert_eq!((b.rank, c.rank), (Some(1), Some(2)));
        // B against September (20 of 20): −10.0 points; pooled z = 0.1/0.068313 = 1.46, not significant.
        assert_eq!(format!("{:.1}", b.change_pp), "-10.0");
        assert!(!b.significant);
        assert_eq!(t.total.n, 82);
        assert_eq!(t.previous.n, 20);
        assert_eq!(t.streets[0].stats.n, 82);
        // Every breakdown of the same data adds up to the same total.
        let by_channel = breakdown(lf, &refs, period, &[Dim::Channel], false).expect("breakdown");
        assert_eq!(by_channel.cells.get(&vec!["2".to_string()]).map(|c| c.n()), Some(82));

        // Ranked by 差评率 (the default), lowest first. Street 差评率 12/82 =
        // 0.146341; B has 4 差评 of 40: (4 + 20·0.146341)/60 = 0.115447; C 8 of
        // 40: (8 + 2.926829)/60 = 0.182114. B first, C second.
        let t = rating_tables(&g, &orgs, &cats, &Scope::default(), period, 12, Rules { min_n: 30, ..Rules::default() });
        let row = |code: &str| t.communities.iter().find(|r| r.code == code).expect("row").clone();
        let (b, c) = (row("369901001002"), row("369901001003"));
        assert_eq!(format!("{:.6} {:.6}", b.shrunk, c.shrunk), "0.115447 0.182114");
        assert_eq!((b.rank, c.rank, t.rank_label), (Some(1), Some(2), "差评率（低者在前）"));
    }

    #[test]
    fn evaluation_and_project_come_from_the_rating_id() {
        assert_eq!((evaluation_of("3601-2026-0001-2"), project_of("3601-2026-0001-2")), (2, "3601-2026-0001"));
        assert_eq!((evaluation_of("3601-2026-0001-1"), project_of("3601-2026-0001-1")), (1, "3601-2026-0001"));
        // No 评价次数 suffix: a first evaluation, the id its own 办件.
        assert_eq!((evaluation_of("R000001"), project_of("R000001")), (1, "R000001"));
        assert_eq!((evaluation_of("X-0"), evaluation_of("-2"), evaluation_of("X-12")), (1, 1, 12));
    }

    /// Community A in October (with one 办件 first rated in September):
    /// P1-1 5, P2-1 1 → P2-2 4, P3-1 2 → P3-2 2, P4-1 5 default, P5-1 5 default,
    /// P6-2 3 (its first never came), P7-1 4; P8-1 1 in September → P8-2 5.
    fn twice_rated() -> Vec<Rating> {
        let a = "369901001001";
        vec![
            one("P1-1", a, 10, 5, false),
            one("P2-1", a, 10, 1, false),
            one("P2-2", a, 10, 4, false),
            one("P3-1", a, 10, 2, false),
            one("P3-2", a, 10, 2, false),
            one("P4-1", a, 10, 5, true),
            one("P5-1", a, 10, 5, true),
            one("P6-2", a, 10, 3, false),
            one("P7-1", a, 10, 4, false),
            one("P8-1", a, 9, 1, false),
            one("P8-2", a, 10, 5, false),
        ]
    }

    #[test]
    fn default_ratings_and_second_evaluations_are_kept_apart() {
        let lf = crate::store::ratings_frame(&twice_rated(), 1).expect("frame").lazy();
        let (orgs, cats) = (tree(), cats());
        let refs = RefFrames::new(&orgs, &cats).expect("refs");
        let period: Period = "2026-10".parse().expect("period");
        let g = grain(vec![(period, lf.clone()), (period.previous(), lf.clone())], &refs).expect("grain");
        let rules = Rules { min_n: 1, ..Rules::default() };
        let t = rating_tables(&g, &orgs, &cats, &Scope::default(), period, 12, rules);
        // First evaluations, active: P1 5, P2 1, P3 2, P7 4 → n 4, 差评 2 → 50%, 满意 2 → 50%.
        assert_eq!((t.total.n, t.total.bad, t.total.levels), (4, 2, [1, 1, 0, 1, 1]));
        assert_eq!(format!("{:.6} {:.6}", t.total.bad_rate, t.total.satisfied_rate), "0.500000 0.500000");
        // 主动 4, 默认 2 (P4, P5): 主动评价率 4/6.
        let a = t.apart;
        assert_eq!((a.active, a.default, format!("{:.6}", a.active_rate)), (4, 2, "0.666667".to_string()));
        // Second evaluations P2-2 4, P3-2 2, P6-2 3, P8-2 5: n 4, 基本满意以上 3 → 回访满意度 75%;
        // P6-2 has no first (counted, reported), P8-2's first is September's P8-1.
        assert_eq!((a.second.n, a.second.levels[2..].iter().sum::<u64>(), a.orphan_second), (4, 3, 1));
        assert_eq!(format!("{:.2}", a.second.satisfied_rate), "0.75");
        // The community row and the category row carry the same figures.
        let row = t.communities.iter().find(|r| r.code == "369901001001").expect("row");
        assert_eq!((row.stats.n, row.apart.second.n, row.apart.orphan_second), (4, 4, 1));
        assert_eq!(t.categories[0].apart.default, 2);
        // With include_default the defaults count: n 6, 差评 2 → 1/3, 满意 4/6.
        let t = rating_tables(&g, &orgs, &cats, &Scope::default(), period, 12, Rules { include_default: true, ..rules });
        assert_eq!((t.total.n, format!("{:.6}", t.total.bad_rate)), (6, "0.333333".to_string()));
        assert!(t.include_default);
        // The breakdown `manyi figures` prints agrees.
        let b = breakdown(lf, &refs, period, &[Dim::Community], false).expect("breakdown");
        let key = vec!["369901001001".to_string()];
        assert_eq!(b.cells.get(&key).map(|c| c.n()), Some(4));
        assert_eq!(b.apart.get(&key).map(|a| (a.active, a.default, a.second.n)), Some((4, 2, 4)));
    }
}
