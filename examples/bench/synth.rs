//! A synthetic province for the benchmark: 10 districts × 20 streets × 10
//! communities = 2,000 communities, the 12 categories of
//! `reference/categories.csv`, 13 months of ratings.
//!
//! Every rating is a pure function of (seed, index), so the CSV files of
//! the office drop and the JSON pages of the loopback platform carry the
//! same records without either being kept in memory, and a second run with
//! the same seed writes the same bytes.
//!
//! The distributions are shaped like the real thing, not uniform: community
//! sizes vary (log-normal), a few communities are clearly worse, 物业管理 and
//! summer 环境卫生 draw more 差评, volume follows working days and office
//! hours (春节 and 国庆 dip), 差评 carry follow-up states that age, and a
//! share of them is re-sent a month later with the rectification done (a
//! second version that readers must resolve).

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime};
use manyi::calendar::WorkCalendar;
use manyi::period::Period;
use std::fmt::Write as _;

/// Codes, names and weights of the 12 categories (the codes of
/// `reference/categories.csv`): volume weight, base 差评 rate.
pub const CATEGORIES: [(&str, &str, f64, f64); 12] = [
    ("elderly_care", "养老服务", 0.10, 0.025),
    ("childcare", "托育服务", 0.04, 0.020),
    ("health", "医疗卫生", 0.10, 0.030),
    ("employment", "就业服务", 0.07, 0.025),
    ("social_assistance", "社会救助", 0.08, 0.030),
    ("culture", "文化服务", 0.05, 0.015),
    ("sports", "体育健身", 0.04, 0.015),
    ("public_safety", "平安建设", 0.06, 0.020),
    ("sanitation", "环境卫生", 0.09, 0.040),
    ("property", "物业管理", 0.10, 0.070),
    ("convenience", "便民服务", 0.12, 0.040),
    ("government_affairs", "政务办事", 0.15, 0.020),
];

const DISTRICTS: [&str; 10] = ["东城区", "西城区", "南湖区", "北山区", "江北区", "江南区", "高新区", "经开区", "新城区", "临港区"];
const STREETS: [&str; 20] = [
    "朝阳", "新华", "人民", "解放", "建设", "胜利", "和平", "中山", "光明", "东风", "红旗", "迎宾", "滨河", "青年", "文化", "振兴", "长安",
    "兴业", "望江", "金桥",
];
const COMMUNITIES: [&str; 10] = ["春晖", "阳光", "幸福", "和谐", "文明", "长青", "育才", "锦绣", "丰收", "康乐"];
/// Channel weights, GB/T 39046 codes 1..7.
const CHANNELS: [f64; 7] = [0.08, 0.35, 0.15, 0.25, 0.07, 0.07, 0.03];
const COMPLAINTS: [&str; 8] =
    ["等待时间太长", "工作人员态度不好", "材料要求反复变更", "办理进度不透明", "电话一直打不通", "环境卫生差", "维修不及时", "收费不透明"];
const PRAISE: [&str; 4] = ["服务很周到", "办事效率高", "工作人员很耐心", "一次就办好了"];

/// An org unit.
pub struct Unit {
    pub code: String,
    pub name: String,
    pub parent: String,
}

struct Community {
    unit: Unit,
    /// Multiplies the category's 差评 rate.
    badness: f64,
}

struct Month {
    period: Period,
    /// Index of its first rating.
    first: u64,
    count: u64,
    /// Office-hour slots: start and the cumulative share of the month's volume.
    slots: Vec<(NaiveDateTime, f64)>,
}

/// The province and its rating stream.
pub struct Province {
    seed: u64,
    pub districts: Vec<Unit>,
    pub streets: Vec<Unit>,
    communities: Vec<Community>,
    /// Cumulative community weights, for picking by volume.
    community_cum: Vec<f64>,
    category_cum: Vec<f64>,
    channel_cum: Vec<f64>,
    months: Vec<Month>,
    /// Ratings in all.
    pub total: u64,
}

/// splitmix64: a fast, well-mixed stream of random numbers per rating.
struct Mix(u64);

impl Mix {
    fn new(seed: u64, i: u64, salt: u64) -> Mix {
        Mix(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03))
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly standard normal (Irwin–Hall of 6).
    fn normal(&mut self) -> f64 {
        (0..6).map(|_| self.unit()).sum::<f64>() * (2.0_f64).sqrt() - 6.0 / 2.0 * (2.0_f64).sqrt()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn cumulative(weights: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    let mut v: Vec<f64> = weights
        .map(|w| {
            acc += w;
            acc
        })
        .collect();
    for x in &mut v {
        *x /= acc;
    }
    v
}

fn pick(cum: &[f64], u: f64) -> usize {
    cum.partition_point(|&c| c <= u).min(cum.len() - 1)
}

/// One rating as the office export and the platform carry it.
pub struct Record {
    pub project_no: String,
    pub rated_at: NaiveDateTime,
    pub org: String,
    pub category: usize,
    pub service_item: u64,
    pub channel: usize,
    /// Usually "1".."5"; a few planted errors carry "7".
    pub level: &'static str,
    pub tags: &'static str,
    pub comment: &'static str,
    pub anonymous: bool,
    pub phone: Option<String>,
    pub follow_up: &'static str,
    pub rectified_at: Option<NaiveDateTime>,
    pub revisit: &'static str,
}

impl Province {
    /// The province of `total` ratings over the 13 months through `through`.
    pub fn new(seed: u64, total: u64, through: Period, calendar: &WorkCalendar) -> Province {
        let mut rng = Mix::new(seed, 0, 1);
        let (mut districts, mut streets, mut communities) = (Vec::new(), Vec::new(), Vec::new());
        let mut weights = Vec::new();
        for (d, dname) in DISTRICTS.iter().enumerate() {
            let dc = format!("3699{:02}", d + 1);
            for (s, sname) in STREETS.iter().enumerate() {
                let sc = format!("{dc}{:03}", s + 1);
                for (c, cname) in COMMUNITIES.iter().enumerate() {
                    let badness = if rng.unit() < 0.03 { 4.0 } else { (0.45 * rng.normal()).exp() };
                    weights.push((0.7 * rng.normal()).exp());
                    communities.push(Community {
                        unit: Unit { code: format!("{sc}{:03}", c + 1), name: format!("{sname}{cname}社区"), parent: sc.clone() },
                        badness,
                    });
                }
                streets.push(Unit { code: sc, name: format!("{}{sname}街道", &dname[..dname.len() - "区".len()]), parent: dc.clone() });
            }
            districts.push(Unit { code: dc, name: (*dname).to_string(), parent: "369900".into() });
        }
        let periods = through.trailing_months(13);
        let season = |m: u32| match m {
            1 => 0.9,
            2 => 0.65,
            7 | 8 => 1.1,
            10 => 0.9,
            _ => 1.0,
        };
        let month_w: Vec<f64> =
            periods.iter().map(|p| ((p.end_date() - p.start_date()).num_days() as f64 + 1.0) * season(p.start_date().month())).collect();
        let sum_w: f64 = month_w.iter().sum();
        let mut months = Vec::new();
        let mut first = 0u64;
        for (k, p) in periods.iter().enumerate() {
            let count =
                if k + 1 == periods.len() { total.saturating_sub(first) } else { (total as f64 * month_w[k] / sum_w).round() as u64 };
            months.push(Month { period: *p, first, count, slots: slots(p.start_date(), p.end_date(), calendar) });
            first += count;
        }
        Province {
            seed,
            districts,
            streets,
            community_cum: cumulative(weights.into_iter()),
            communities,
            category_cum: cumulative(CATEGORIES.iter().map(|c| c.2)),
            channel_cum: cumulative(CHANNELS.iter().copied()),
            months,
            total,
        }
    }

    /// The months, each with the range of rating indexes it holds.
    pub fn months(&self) -> impl Iterator<Item = (Period, std::ops::Range<u64>)> + '_ {
        self.months.iter().map(|m| (m.period, m.first..m.first + m.count))
    }

    /// Rating `i`. With `corrected`, the version re-sent a month later
    /// (only for the ratings [`Province::is_corrected`] names).
    pub fn record(&self, i: u64, corrected: bool) -> Record {
        let mi = self.months.partition_point(|m| m.first + m.count <= i).min(self.months.len() - 1);
        let month = &self.months[mi];
        let age = self.months.len() - 1 - mi;
        let mut r = Mix::new(self.seed, i, 2);
        // Time: the i-th quantile of the month's office-hour volume, so the
        // stream is in time order as a platform serves it.
        let q = ((i - month.first) as f64 + 0.5) / month.count as f64;
        let slot = month.slots.partition_point(|s| s.1 <= q).min(month.slots.len() - 1);
        let lo = if slot == 0 { 0.0 } else { month.slots[slot - 1].1 };
        let frac = ((q - lo) / (month.slots[slot].1 - lo)).clamp(0.0, 0.9999);
        let rated_at = month.slots[slot].0 + Duration::seconds((frac * 3600.0) as i64);

        let ci = pick(&self.community_cum, r.unit());
        let cat = pick(&self.category_cum, r.unit());
        let community = &self.communities[ci];
        let summer = matches!(rated_at.month(), 6..=8) && CATEGORIES[cat].0 == "sanitation";
        let p_bad = (CATEGORIES[cat].3 * community.badness * if summer { 1.6 } else { 1.0 }).min(0.6);
        let u = r.unit();
        let level = if u < p_bad * 0.45 {
            "1"
        } else if u < p_bad {
            "2"
        } else if u < p_bad + 0.05 {
            "3"
        } else if r.unit() < 0.22 {
            "4"
        } else {
            "5"
        };
        let bad = level <= "2";
        let (mut follow_up, mut rectified_at) = ("", None);
        if bad {
            let x = r.unit();
            let table: &[(&str, f64)] = match age {
                0 => &[("待核实", 0.25), ("有效", 0.5), ("整改中", 0.85), ("已整改", 1.0)],
                1 => &[("有效", 0.1), ("整改中", 0.4), ("无效", 0.5), ("已整改", 1.0)],
                _ => &[("有效", 0.05), ("整改中", 0.13), ("无效", 0.23), ("无法整改", 0.28), ("已整改", 1.0)],
            };
            follow_up = table.iter().find(|t| x < t.1).map(|t| t.0).unwrap_or("已整改");
            if self.is_corrected(i) {
                follow_up = if corrected { "已整改" } else { "整改中" };
            }
            if follow_up == "已整改" {
                rectified_at = Some(rated_at + Duration::hours(24 + r.below(24 * 20) as i64));
            }
        }
        let comment = if bad {
            COMPLAINTS[r.below(COMPLAINTS.len() as u64) as usize]
        } else if r.unit() < 0.05 {
            PRAISE[r.below(PRAISE.len() as u64) as usize]
        } else {
            ""
        };
        let phone = (r.unit() < 0.25).then(|| format!("1{}{:09}", [3, 5, 8][r.below(3) as usize], r.below(1_000_000_000)));
        // Planted errors, about 1.5 per 10,000: quarantined with their reason.
        let h = r.next();
        let org = if h.is_multiple_of(9973) { "369999999999".to_string() } else { community.unit.code.clone() };
        let level = if h % 19997 == 1 { "7" } else { level };
        Record {
            project_no: format!("HCP{i:010}"),
            rated_at,
            org,
            category: cat,
            service_item: r.below(6),
            channel: pick(&self.channel_cum, r.unit()) + 1,
            level,
            tags: if bad { "501,502" } else { "" },
            comment,
            anonymous: r.unit() < 0.1,
            phone,
            follow_up,
            rectified_at,
            revisit: if follow_up == "已整改" { "已回访，群众认可" } else { "" },
        }
    }

    /// Whether rating `i` is a 差评 re-sent a month later, rectified.
    pub fn is_corrected(&self, i: u64) -> bool {
        let mut r = Mix::new(self.seed, i, 3);
        r.unit() < 0.02
    }

    /// reference/orgs.csv.
    pub fn orgs_csv(&self) -> String {
        let mut s = String::from("code,name,parent,level\n369900,临海省示范市,,city\n");
        for d in &self.districts {
            let _ = writeln!(s, "{},{},{},district", d.code, d.name, d.parent);
        }
        for st in &self.streets {
            let _ = writeln!(s, "{},{},{},street", st.code, st.name, st.parent);
        }
        for c in &self.communities {
            let _ = writeln!(s, "{},{},{},community", c.unit.code, c.unit.name, c.unit.parent);
        }
        s
    }

    /// reference/offices.toml: leadership, 10 district offices, 200 street
    /// offices and 12 category sections (223 offices).
    pub fn offices_toml(&self) -> String {
        let mut s = String::from(
            "[[office]]\nid = \"leadership\"\nname = \"示范市领导\"\nrole = \"leadership\"\nrecipients = [\"shizhang@example.gov.cn\", \"mzj@example.gov.cn\"]\n\n",
        );
        for u in self.districts.iter().chain(&self.streets) {
            let _ = write!(
                s,
                "[[office]]\nid = \"o{code}\"\nname = \"{name}\"\nrole = \"office\"\nrecipients = [\"o{code}@example.gov.cn\"]\nscope = {{ orgs = [\"{code}\"] }}\n\n",
                code = u.code,
                name = u.name
            );
        }
        for (code, name, _, _) in CATEGORIES {
            let _ = write!(
                s,
                "[[office]]\nid = \"section-{code}\"\nname = \"{name}科\"\nrole = \"office\"\nrecipients = [\"{code}@example.gov.cn\"]\nscope = {{ categories = [\"{code}\"] }}\n\n"
            );
        }
        s
    }
}

/// Office-hour slots of the days `start..=end`: working days carry full
/// weight, weekends and holidays a third; 9–11 and 14–16 o'clock are busiest.
fn slots(start: NaiveDate, end: NaiveDate, calendar: &WorkCalendar) -> Vec<(NaiveDateTime, f64)> {
    const HOURS: [(u32, f64); 13] = [
        (8, 0.6),
        (9, 1.0),
        (10, 1.0),
        (11, 0.9),
        (12, 0.4),
        (13, 0.7),
        (14, 1.0),
        (15, 1.0),
        (16, 0.9),
        (17, 0.6),
        (18, 0.2),
        (19, 0.15),
        (20, 0.1),
    ];
    let mut out = Vec::new();
    let mut day = start;
    while day <= end {
        let dw = if calendar.is_working_day(day) { 1.0 } else { 0.3 };
        for (h, hw) in HOURS {
            if let Some(t) = day.and_hms_opt(h, 0, 0) {
                out.push((t, dw * hw));
            }
        }
        day += Duration::days(1);
    }
    let cum = cumulative(out.iter().map(|s| s.1));
    out.iter().zip(cum).map(|(s, c)| (s.0, c)).collect()
}
