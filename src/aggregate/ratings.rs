//! 好差评 figures: breakdowns by any one or two dimensions, the report
//! tables of a scope, rankings by a shrunk rate, and changes against the
//! previous period.

use super::{AggregateError, Counts, Stats, shrunk_rate, significant_difference};
use crate::config::{Category, OrgTree, Scope};
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
    /// Key values (one per dimension) → counts.
    pub cells: BTreeMap<Vec<String>, Counts>,
}

/// Counts the ratings of `period` by `dims` (one or two, or none for the total).
pub fn breakdown(ratings: LazyFrame, refs: &RefFrames, period: Period, dims: &[Dim]) -> Result<Breakdown, AggregateError> {
    let keys: Vec<&str> = dims.iter().map(|d| d.column()).collect();
    let lf = refs.with_dims(within(ratings, period));
    let df = if keys.is_empty() {
        lf.select(level_counts()).collect()?
    } else {
        lf.group_by(keys.iter().map(|k| col(*k)).collect::<Vec<_>>()).agg(level_counts()).collect()?
    };
    Ok(Breakdown { dims: dims.to_vec(), cells: read_counts(&df, &keys)? })
}

/// The grain of the reports: counts per (bucket, community, category), where
/// a bucket is a period (the report's, the previous one, each trend month).
/// Cells are grouped by community, so an office's roll-up visits only the
/// communities in its scope.
#[derive(Debug, Clone, Default)]
pub struct Grain {
    /// Community code → (period key, category code, counts).
    pub by_community: BTreeMap<String, Vec<(String, String, Counts)>>,
}

/// Computes the grain for each bucket period from its ratings. Each bucket
/// comes with a frame of its own months only (the store prunes partitions),
/// so a monthly report reads each month once; a bucket key given twice is
/// counted once.
pub fn grain(buckets: Vec<(Period, LazyFrame)>, refs: &RefFrames) -> Result<Grain, AggregateError> {
    let mut seen = std::collections::BTreeSet::new();
    let mut frames = Vec::new();
    for (b, ratings) in buckets {
        if !seen.insert(b.key()) {
            continue;
        }
        // Group on the raw codes first and map grids to communities on the
        // small result: joining reference data onto every rating costs more
        // than the whole group-by.
        let lf =
            within(ratings, b).group_by([col("org_code"), col("category")]).agg(level_counts()).with_column(lit(b.key()).alias("bucket"));
        frames.push(lf);
    }
    let mut g = Grain::default();
    if frames.is_empty() {
        return Ok(g);
    }
    let df = concat(frames, UnionArgs::default())?.collect()?;
    let mut merged: BTreeMap<(String, String, String), Counts> = BTreeMap::new();
    for (key, counts) in read_counts(&df, &["bucket", "org_code", "category"])? {
        if let [b, o, k] = key.as_slice() {
            // An org code no longer in the reference data stays its own community.
            let community = refs.community_of.get(o).cloned().unwrap_or_else(|| o.clone());
            merged.entry((community, b.clone(), k.clone())).or_default().add(&counts);
        }
    }
    for ((c, b, k), counts) in merged {
        g.by_community.entry(c).or_default().push((b, k, counts));
    }
    Ok(g)
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
    /// 满意率 shrunk toward the parent's, the ranking score.
    pub shrunk: f64,
    /// Rank by `shrunk`, 1 = best; `None` when n is under the minimum.
    pub rank: Option<usize>,
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
    /// 满意率 shrunk toward the category's figure in the scope.
    pub shrunk: f64,
}

/// How figures are ranked and flagged.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Cells under this n are flagged and not ranked.
    pub min_n: u64,
    /// Prior weight (in ratings) of the parent's rate in the shrunk score.
    pub prior_weight: f64,
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
    cur: &BTreeMap<String, Counts>,
    prev: &BTreeMap<String, Counts>,
    name: impl Fn(&str) -> (String, String),
    parent_rate: impl Fn(&str) -> f64,
    rules: Rules,
) -> Vec<Row> {
    let mut rows: Vec<Row> = cur
        .iter()
        .map(|(code, c)| {
            let stats = c.stats();
            let p = prev.get(code).copied().unwrap_or_default();
            let (name, parent) = name(code);
            Row {
                code: code.clone(),
                name,
                parent,
                low_n: stats.n < rules.min_n,
                change_pp: if p.n() == 0 { 0.0 } else { (stats.satisfied_rate - p.stats().satisfied_rate) * 100.0 },
                significant: significant_difference(c.satisfied(), c.n(), p.satisfied(), p.n()),
                previous: p.stats(),
                shrunk: shrunk_rate(c.satisfied(), c.n(), parent_rate(code), rules.prior_weight),
                rank: None,
                stats,
            }
        })
        .collect();
    let mut ranked: Vec<usize> = (0..rows.len()).filter(|&i| !rows[i].low_n).collect();
    ranked.sort_by(|&a, &b| rows[b].shrunk.total_cmp(&rows[a].shrunk).then_with(|| rows[a].code.cmp(&rows[b].code)));
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
    districts: BTreeMap<String, Counts>,
    streets: BTreeMap<String, Counts>,
    communities: BTreeMap<String, Counts>,
    /// Every category with its ancestors: a parent's row sums its children.
    categories: BTreeMap<String, Counts>,
}

impl Tally {
    fn add(&mut self, lineage: &Lineage, categories: &[&str], counts: &Counts) {
        for (map, code) in
            [(&mut self.districts, &lineage.district), (&mut self.streets, &lineage.street), (&mut self.communities, &lineage.community)]
        {
            if !code.is_empty() {
                map.entry(code.clone()).or_default().add(counts);
            }
        }
        for c in categories {
            self.categories.entry((*c).to_string()).or_default().add(counts);
        }
    }
}

/// The grain of one scope summed for the tables: the report's period, the
/// previous one and the trend months.
struct Sums {
    total: Counts,
    previous: Counts,
    cur: Tally,
    prev: Tally,
    /// (community, category) → counts of the report's period.
    cross: BTreeMap<(String, String), Counts>,
    /// Month key → counts, every trend month present.
    trend: BTreeMap<String, Counts>,
}

fn sum_scope(grain: &Grain, orgs: &OrgTree, categories: &[Category], scope: &Scope, period: Period, trend_months: usize) -> Sums {
    let (key, prev_key) = (period.key(), period.previous().key());
    let trend_keys: Vec<String> = period.trailing_months(trend_months).iter().map(|p| p.key()).collect();
    let mut sums = Sums {
        total: Counts::default(),
        previous: Counts::default(),
        cur: Tally::default(),
        prev: Tally::default(),
        cross: BTreeMap::new(),
        trend: trend_keys.iter().map(|k| (k.clone(), Counts::default())).collect(),
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
        for (bucket, cat, counts) in cells {
            if !scope.categories.is_empty() && !scope.categories.iter().any(|c| c == cat) {
                continue;
            }
            if let Some(t) = sums.trend.get_mut(bucket) {
                t.add(counts);
            }
            let tally = if *bucket == key {
                sums.total.add(counts);
                sums.cross.entry((community.clone(), cat.clone())).or_default().add(counts);
                &mut sums.cur
            } else if *bucket == prev_key {
                sums.previous.add(counts);
                &mut sums.prev
            } else {
                continue;
            };
            // A category missing from the taxonomy still counts as itself.
            let itself = [cat.as_str()];
            let chain = chains.get(cat.as_str()).map(Vec::as_slice).unwrap_or(&itself);
            tally.add(&lineage, chain, counts);
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
    let Sums { total, previous, cur, prev, cross: cross_counts, trend } = sum_scope(grain, orgs, categories, scope, period, trend_months);
    let total_rate = total.stats().satisfied_rate;
    let rate_of = |map: &BTreeMap<String, Counts>, code: &str| map.get(code).map(|c| c.stats().satisfied_rate).unwrap_or(total_rate);
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
        .map(|((community, category), c)| {
            let stats = c.stats();
            Cross {
                shrunk: shrunk_rate(c.satisfied(), c.n(), rate_of(&cur.categories, &category), rules.prior_weight),
                community,
                category,
                low_n: stats.n < rules.min_n,
                stats,
            }
        })
        .collect();
    RatingTables {
        period: period.key(),
        total: total.stats(),
        previous: previous.stats(),
        districts,
        streets,
        communities,
        categories: cat_rows,
        cross,
        trend: trend.into_iter().map(|(k, v)| (k, v.stats())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OrgUnit;
    use crate::model::{Level, Rating};

    fn unit(code: &str, parent: &str, level: OrgLevel) -> OrgUnit {
        OrgUnit { code: code.into(), name: format!("U{code}"), parent: parent.into(), level }
    }

    fn tree() -> OrgTree {
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

    fn cats() -> Vec<Category> {
        vec![Category { code: "property".into(), name: "物业管理".into(), parent: String::new(), synonyms: Vec::new() }]
    }

    /// `count` ratings of `level` for `org` on `day` of 2026.
    fn ratings(out: &mut Vec<Rating>, org: &str, month: u32, level: u8, count: usize) {
        for i in 0..count {
            out.push(Rating {
                rating_id: format!("{org}-{month}-{level}-{i}"),
                source: "t".into(),
                rated_at: chrono::NaiveDate::from_ymd_opt(2026, month, 10).and_then(|d| d.and_hms_opt(9, 0, 0)).expect("time"),
                org_code: org.into(),
                category: "property".into(),
                service_item: String::new(),
                department: String::new(),
                channel: 2,
                level: Level::from_code(level).expect("level"),
                reason_tags: String::new(),
                comment: String::new(),
                anonymous: false,
                rater_hash: None,
                follow_up: None,
                rectified_at: None,
                revisit: String::new(),
                default_rating: false,
            });
        }
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
        let t = rating_tables(&g, &orgs, &cats, &Scope::default(), period, 12, Rules { min_n: 30, prior_weight: 20.0 });
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
        let by_channel = breakdown(lf, &refs, period, &[Dim::Channel]).expect("breakdown");
        assert_eq!(by_channel.cells.get(&vec!["2".to_string()]).map(|c| c.n()), Some(82));
    }
}
