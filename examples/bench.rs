//! Benchmark of the metrics engine at province scale.
//!
//! ```sh
//! cargo run --example bench -- gen --dir /tmp/manyi-bench --ratings 10000000
//! /usr/bin/time -v cargo run --example bench -- aggregate --dir /tmp/manyi-bench
//! ```
//!
//! `gen` writes a synthetic province (10 districts × 20 streets × 10
//! communities = 2,000 communities, 12 categories, 13 months through
//! 2026-10) into a store through the ordinary commit protocol. `aggregate`
//! then times what a monthly run computes: the grain of the report month,
//! the previous month and the 12-month trend; the leadership tables; the
//! tables of every street office; the month's 差评 with their deadlines. It
//! prints wall times and the process's peak resident memory.

use manyi::aggregate::{self, RefFrames, Rules};
use manyi::calendar::WorkCalendar;
use manyi::config::{Category, OrgTree, OrgUnit, Scope};
use manyi::model::{FollowUp, Level, OrgLevel, Rating};
use manyi::period::Period;
use manyi::store::{BatchMeta, Store};
use rand::prelude::*;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::time::Instant;

const CATEGORIES: [&str; 12] = [
    "elderly_care",
    "childcare",
    "health",
    "employment",
    "social_assistance",
    "culture",
    "sports",
    "public_safety",
    "sanitation",
    "property",
    "convenience",
    "government_affairs",
];

fn province() -> (OrgTree, Vec<Category>) {
    let mut units = vec![OrgUnit { code: "369900".into(), name: "省".into(), parent: String::new(), level: OrgLevel::City }];
    for d in 1..=10 {
        let dc = format!("3699{d:02}");
        units.push(OrgUnit { code: dc.clone(), name: format!("区{d}"), parent: "369900".into(), level: OrgLevel::District });
        for s in 1..=20 {
            let sc = format!("{dc}{s:03}");
            units.push(OrgUnit { code: sc.clone(), name: format!("街道{d}-{s}"), parent: dc.clone(), level: OrgLevel::Street });
            for c in 1..=10 {
                units.push(OrgUnit {
                    code: format!("{sc}{c:03}"),
                    name: format!("社区{d}-{s}-{c}"),
                    parent: sc.clone(),
                    level: OrgLevel::Community,
                });
            }
        }
    }
    let cats = CATEGORIES.iter().map(|c| Category { code: (*c).into(), name: (*c).into(), parent: String::new() }).collect();
    (OrgTree::new(units), cats)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_else(|| default.to_string())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(arg(&args, "--dir", "/tmp/manyi-bench"));
    let through: Period = arg(&args, "--through", "2026-10").parse().map_err(anyhow::Error::msg)?;
    let (orgs, cats) = province();
    let communities: Vec<String> = orgs.at_level(OrgLevel::Community).map(|u| u.code.clone()).collect();
    match args.get(1).map(String::as_str) {
        Some("gen") => {
            let n: usize = arg(&args, "--ratings", "10000000").parse()?;
            let mut store = Store::open(&dir.join("data"))?;
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let months = through.trailing_months(13);
            let t = Instant::now();
            for (mi, m) in months.iter().enumerate() {
                let per = n / months.len() + usize::from(mi < n % months.len());
                let days = (m.end_date() - m.start_date()).num_days();
                // Commit in batches of at most 1,000,000 so memory stays flat.
                let mut made = 0;
                let mut batch = 0;
                while made < per {
                    let k = (per - made).min(1_000_000);
                    let mut rs = Vec::with_capacity(k);
                    for i in 0..k {
                        let c = &communities[rng.gen_range(0..communities.len())];
                        let bad = if c.ends_with('7') { 0.25 } else { 0.04 };
                        let x: f64 = rng.r#gen();
                        let level = if x < bad / 2.0 {
                            1
                        } else if x < bad {
                            2
                        } else if x < bad + 0.08 {
                            3
                        } else if x < 0.4 {
                            4
                        } else {
                            5
                        };
                        let at = m.start_date() + chrono::Duration::days(rng.gen_range(0..days));
                        rs.push(Rating {
                            rating_id: format!("B{}-{batch}-{i}", m.key()),
                            source: "bench".into(),
                            rated_at: at.and_hms_opt(rng.gen_range(8..18), rng.gen_range(0..60), 0).unwrap_or_default(),
                            org_code: c.clone(),
                            category: CATEGORIES[rng.gen_range(0..12)].into(),
                            service_item: String::new(),
                            department: format!("部门{}", rng.gen_range(0..40)),
                            channel: rng.gen_range(1..=7),
                            level: Level::from_code(level).unwrap_or(Level::ALL_DESC[0]),
                            reason_tags: String::new(),
                            comment: if level <= 2 { "等待时间太长".into() } else { String::new() },
                            anonymous: false,
                            rater_hash: None,
                            follow_up: (level <= 2).then_some(if rng.gen_bool(0.8) { FollowUp::Rectified } else { FollowUp::InProgress }),
                            rectified_at: None,
                            revisit: String::new(),
                        });
                    }
                    let meta = BatchMeta {
                        batch_id: format!("bench-{}-{batch}", m.key()),
                        source: "bench".into(),
                        landing: None,
                        quarantine: None,
                        quarantined: 0,
                        watermark: None,
                    };
                    store.commit_ratings(&meta, &rs)?;
                    made += k;
                    batch += 1;
                }
                eprintln!("{}: {per} ratings, {:.1}s so far", m.key(), t.elapsed().as_secs_f64());
            }
            println!("generated {n} ratings in {:.1}s; peak RSS {:.0} MiB", t.elapsed().as_secs_f64(), peak_rss_mib());
        }
        Some("aggregate") => {
            let store = Store::open(&dir.join("data"))?;
            let as_of = chrono::Utc::now();
            let refs = RefFrames::new(&orgs, &cats)?;
            let t0 = Instant::now();
            let mut buckets = vec![through, through.previous()];
            buckets.extend(through.trailing_months(12));
            let frames = buckets.iter().map(|b| Ok((*b, store.ratings(&b.month_keys(), as_of)?))).collect::<anyhow::Result<Vec<_>>>()?;
            let grain = aggregate::grain(frames, &refs)?;
            let t_grain = t0.elapsed();
            let rules = Rules { min_n: 30, prior_weight: 20.0 };
            let t1 = Instant::now();
            let lead = aggregate::rating_tables(&grain, &orgs, &cats, &Scope::default(), through, 12, rules);
            let streets: Vec<String> = orgs.at_level(OrgLevel::Street).map(|u| u.code.clone()).collect();
            let mut office_cells = 0;
            for s in &streets {
                let scope = Scope { orgs: vec![s.clone()], categories: vec![] };
                office_cells += aggregate::rating_tables(&grain, &orgs, &cats, &scope, through, 12, rules).cross.len();
            }
            let t_rollup = t1.elapsed();
            let t2 = Instant::now();
            let cal = WorkCalendar::default();
            let bad = aggregate::bad_ratings(store.ratings(&through.month_keys(), as_of)?, Some(through), &cal, 15, through.end_date())?;
            let t_bad = t2.elapsed();
            println!("ratings in the trend window: {}", lead.trend.iter().map(|(_, s)| s.n).sum::<u64>());
            println!(
                "report month n = {}, community × category cells = {}, street offices = {} ({} cells), 差评 = {}",
                lead.total.n,
                lead.cross.len(),
                streets.len(),
                office_cells,
                bad.len()
            );
            println!("grain (scan + group-by, 13 monthly buckets): {:.2}s", t_grain.as_secs_f64());
            println!("roll-ups (leadership + {} offices): {:.2}s", streets.len(), t_rollup.as_secs_f64());
            println!("差评 with deadlines: {:.2}s", t_bad.as_secs_f64());
            println!("total: {:.2}s; peak RSS {:.0} MiB", t0.elapsed().as_secs_f64(), peak_rss_mib());
        }
        _ => anyhow::bail!("usage: bench gen|aggregate --dir D [--ratings N] [--through 2026-10]"),
    }
    Ok(())
}
