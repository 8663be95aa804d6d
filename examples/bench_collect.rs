//! Ingest throughput of the collect path: N 好差评 ratings as JSON pages from
//! the loopback platform (`tests/platform_server.py`), or as one CSV file in
//! an office inbox, through the ordinary pipeline (land, parse, normalise,
//! key look-up, Parquet, commit).
//!
//! ```sh
//! BENCH_HCP_SECRET=bench-secret cargo run --example bench_collect -- http 1000000
//! cargo run --example bench_collect -- csv 1000000
//! ```
//!
//! Run each mode in its own process: the peak resident memory printed is the
//! process's VmHWM. The Python server's own time to build pages is inside
//! the HTTP figure (it runs in parallel on another core).

use manyi::config::Config;
use manyi::pipeline;
use manyi::store::Store;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const ORGS: &str = "code,name,parent,level\n369900,临江市,,city\n369901,江滨区,369900,district\n369901001,滨江街道,369901,street\n\
369901001001,春晖社区,369901001,community\n369901001002,阳光社区,369901001,community\n369901001003,幸福社区,369901001,community\n";
const OFFICES: &str =
    "[[office]]\nid = \"leadership\"\nname = \"临江市领导\"\nrole = \"leadership\"\nrecipients = [\"boss@linjiang.gov.cn\"]\n";

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("csv");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    for (rel, text) in manyi::demo::EMBEDDED {
        write(&dir.join(rel), text)?;
    }
    write(&dir.join("reference/orgs.csv"), ORGS)?;
    write(&dir.join("reference/offices.toml"), OFFICES)?;
    let toml_path = dir.join("manyi.toml");
    let base = std::fs::read_to_string(&toml_path)?;
    let at = base.find("[mail]").unwrap_or(base.len());
    let mut server = None;
    let source = if mode == "http" {
        let control = dir.join("platform.json");
        write(&control, &format!("{{\"app_key\": \"bench\", \"secret\": \"bench-secret\", \"generate\": {{\"count\": {n}}}}}"))?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/platform_server.py");
        let mut child = Command::new("python3").arg(script).arg(&control).stdout(Stdio::piped()).spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?).read_line(&mut line)?;
        let port = line.trim().trim_start_matches("PORT ").to_string();
        server = Some(child);
        require_env("BENCH_HCP_SECRET", "bench-secret");
        format!(
            "[[source]]\nname = \"hcp\"\nkind = \"haochaping_api\"\n[source.api]\nbase_url = \"http://127.0.0.1:{port}\"\npath = \"/api\"\n\
             app_key = \"bench\"\nsecret_env = \"BENCH_HCP_SECRET\"\npage_size = 1000\npage_limit = 100000\ncommit_every = 100\n\
             start = \"2026-09-01 00:00:00\"\n[source.api.category_map]\nYL = \"elderly_care\"\nTY = \"childcare\"\nWS = \"health\"\nJY = \"employment\"\n"
        )
    } else {
        let mut f = std::io::BufWriter::new(std::fs::File::create({
            std::fs::create_dir_all(dir.join("inbox/bench"))?;
            dir.join("inbox/bench/ratings.csv")
        })?);
        writeln!(f, "办件编号,评价次数,评价时间,区划代码,服务类别,评价渠道,满意度,文字评价,整改状态")?;
        let comms = ["369901001001", "369901001002", "369901001003"];
        let cats = ["养老服务", "托育服务", "医疗卫生", "就业服务"];
        let start =
            chrono::NaiveDate::from_ymd_opt(2026, 10, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).ok_or_else(|| anyhow::anyhow!("date"))?;
        for i in 0..n {
            let t = start + chrono::Duration::seconds(2 * i as i64);
            let level = 5 - (i * 7 % 11) % 5;
            let follow = if level <= 2 { "整改中" } else { "" };
            writeln!(f, "GEN{i:09},1,{},{},{},{},{level},,{follow}", t.format("%Y-%m-%d %H:%M:%S"), comms[i % 3], cats[i % 4], 1 + i % 7)?;
        }
        f.flush()?;
        "[[source]]\nname = \"bench\"\nkind = \"rating_file\"\ninbox = \"inbox/bench\"\n".to_string()
    };
    write(&toml_path, &format!("{}{source}\n{}", &base[..at], &base[at..]))?;
    let cfg = Config::load(&toml_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut store = Store::open(&cfg.data_dir)?;
    let only = if mode == "http" { "hcp" } else { "bench" };
    let started = Instant::now();
    let sums = pipeline::collect_all(&cfg, &mut store, Some(only))?;
    let secs = started.elapsed().as_secs_f64();
    if let Some(mut s) = server {
        let _ = s.kill();
        let _ = s.wait();
    }
    let s = sums.first().ok_or_else(|| anyhow::anyhow!("no summary"))?;
    println!(
        "mode {mode}: {} ratings fetched, {} new, {} quarantined, {} pages/files, in {secs:.1} s = {:.0} rows/s; peak RSS {:.0} MB",
        s.fetched,
        s.new,
        s.quarantined,
        s.pages.max(s.files),
        s.fetched as f64 / secs,
        peak_rss_mb()
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(path, text)
}

/// Secrets come only from the environment, in the benchmark too (and the
/// crate forbids the unsafe `set_var`), so the caller sets the test secret.
fn require_env(name: &str, value: &str) {
    if std::env::var(name).as_deref() != Ok(value) {
        eprintln!("set {name}={value} in the environment to run the http mode");
        std::process::exit(2);
    }
}
