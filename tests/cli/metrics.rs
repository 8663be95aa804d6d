//! The metrics against independent computations: DuckDB straight from the
//! Parquet files, sums across levels of the hierarchy, and a published
//! questionnaire figure ingested from a 问卷星 export.

use crate::support::Deployment;
use std::collections::BTreeMap;
use std::process::Command;

type Table = BTreeMap<(String, String), BTreeMap<String, String>>;

/// Parses a CSV with a header into (first two columns) → column → value.
fn keyed(csv_text: &str, k1: &str, k2: &str) -> Table {
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let head = rdr.headers().expect("header").clone();
    let mut out = Table::new();
    for rec in rdr.records() {
        let rec = rec.expect("row");
        let row: BTreeMap<String, String> = head.iter().zip(rec.iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect();
        out.insert((row.get(k1).cloned().unwrap_or_else(|| "total".into()), row.get(k2).cloned().unwrap_or_default()), row);
    }
    out
}

fn num(row: &BTreeMap<String, String>, col: &str) -> f64 {
    row[col].parse().unwrap_or_else(|_| panic!("{col} = {} is not a number", row[col]))
}

#[test]
fn community_by_category_agrees_with_duckdb_cell_by_cell() {
    let d = Deployment::empty();
    let demo = d.dir.join("demo");
    let demo_s = demo.to_str().expect("utf-8 path");
    d.manyi(&["demo", "--seed", "11", "--through", "2026-10", "--dir", demo_s]).success();
    let dd = Deployment::at(&demo);

    // Late corrections: five October ratings arrive again with another level
    // and status. Both readers must take the latest version.
    let month_csv = std::fs::read_to_string(demo.join("inbox/ratings/archive/好差评导出_2026-10.csv")).expect("csv");
    let mut lines = month_csv.lines();
    let header = lines.next().expect("header");
    let level_col = header.split(',').position(|h| h == "满意度").expect("满意度 column");
    let status_col = header.split(',').position(|h| h == "整改状态").expect("整改状态 column");
    let mut changed = vec![header.to_string()];
    for line in lines.filter(|l| !l.contains('"')).step_by(997).take(5) {
        let mut cells: Vec<&str> = line.split(',').collect();
        cells[level_col] = "1";
        cells[status_col] = "有效";
        changed.push(cells.join(","));
    }
    assert_eq!(changed.len(), 6);
    dd.file("inbox/ratings/corrections.csv", &(changed.join("\n") + "\n"));
    let out = dd.manyi(&["collect"]).success().stdout();
    assert!(
        out.contains("office-drop") && out.lines().any(|l| l.starts_with("office-drop") && l.split_whitespace().nth(4) == Some("5")),
        "five updated:\n{out}"
    );

    let ours = dd.manyi(&["figures", "--period", "2026-10", "--by", "community,category"]).success().stdout();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/duckdb_crosscheck.py");
    let duck = Command::new("python3").arg(script).arg(demo.join("data")).arg("2026-10").output().expect("python3");
    assert!(
        duck.status.success(),
        "DuckDB cross-check failed (is the duckdb package installed? scripts/test.sh installs it):\n{}",
        String::from_utf8_lossy(&duck.stderr)
    );
    let duck = String::from_utf8(duck.stdout).expect("utf-8");

    let (ours, theirs) = (keyed(&ours, "community", "category"), keyed(&duck, "community", "category"));
    assert!(ours.len() > 500, "a real table, not a handful of cells: {}", ours.len());
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>(), "the same cells");
    // The rates are over first evaluations that are not default ratings;
    // DuckDB reads 评价次数 from the rating id and the default mark itself.
    let (mut defaults, mut seconds) = (0.0, 0.0);
    for (key, a) in &ours {
        let b = &theirs[key];
        for c in ["n", "c1", "c2", "c3", "c4", "c5", "active", "default", "second"] {
            assert_eq!(a[c], b[c], "{key:?} {c}");
        }
        assert!((num(a, "satisfied_rate") - num(b, "satisfied_rate")).abs() < 1e-6, "{key:?} 满意率");
        assert!((num(a, "bad_rate") - num(b, "bad_rate")).abs() < 1e-6, "{key:?} 首次评价差评率");
        assert!((num(a, "score") - num(b, "score")).abs() < 1e-4, "{key:?} 得分");
        // 主动评价率 of a cell with no first evaluation is empty in SQL, 0 in manyi.
        let theirs_active = if matches!(b["active_rate"].as_str(), "" | "None") { 0.0 } else { num(b, "active_rate") };
        assert!((num(a, "active_rate") - theirs_active).abs() < 1e-6, "{key:?} 主动评价率");
        defaults += num(a, "default");
        seconds += num(a, "second");
    }
    assert!(defaults > 300.0 && seconds > 50.0, "the demo has default ratings ({defaults}) and second evaluations ({seconds})");
}

#[test]
fn hierarchy_sums_and_rates_hold_on_generated_data() {
    let d = Deployment::empty();
    let demo = d.dir.join("demo");
    d.manyi(&["demo", "--seed", "5", "--through", "2026-06", "--dir", demo.to_str().expect("utf-8 path")]).success();
    let dd = Deployment::at(&demo);
    let by = |dims: &str| {
        keyed(&dd.manyi(&["figures", "--period", "2026-Q2", "--by", dims]).success().stdout(), dims.split(',').next().unwrap_or(dims), "")
    };
    let total = by("");
    let districts = by("district");
    let streets = by("street");
    let communities = by("community");
    let categories = by("category");
    let n_of = |t: &Table| t.values().map(|r| num(r, "n")).sum::<f64>();
    let city_n = n_of(&total);
    assert!(city_n > 30_000.0);
    for t in [&districts, &streets, &communities, &categories] {
        assert_eq!(n_of(t), city_n, "every breakdown adds up to the city");
    }
    for ((district, _), row) in &districts {
        let sum: f64 = communities.iter().filter(|((c, _), _)| c.starts_with(district.as_str())).map(|(_, r)| num(r, "n")).sum();
        assert_eq!(sum, num(row, "n"), "district {district} = sum of its communities");
    }
    for t in [&total, &districts, &streets, &communities, &categories] {
        for (key, r) in t {
            let levels: f64 = ["c1", "c2", "c3", "c4", "c5"].iter().map(|c| num(r, c)).sum();
            assert_eq!(levels, num(r, "n"), "{key:?}: counts per level sum to n");
            for (rate, lo, hi) in
                [("satisfied_rate", "satisfied_lo", "satisfied_hi"), ("good_rate", "good_lo", "good_hi"), ("bad_rate", "bad_lo", "bad_hi")]
            {
                let (p, l, h) = (num(r, rate), num(r, lo), num(r, hi));
                assert!((0.0..=1.0).contains(&p) && 0.0 <= l && h <= 1.0, "{key:?} {rate} in [0, 1]");
                assert!(l <= p + 1e-9 && p <= h + 1e-9, "{key:?} {rate} {p} inside [{l}, {h}]");
            }
            let score = num(r, "score");
            assert!((0.0..=100.0).contains(&score));
        }
    }
}

/// A 问卷星 text export saved by Excel in GBK, with the published counts:
/// 230 responses, 161 满意, 60 基本满意, 9 不满意.
fn published_export() -> Vec<u8> {
    let mut s = String::from(
        "序号,提交答卷时间,所用时间,来源,来源详情,来自IP,1、您居住的社区,2、您对社区工作的总体评价,3、您对社区办事效率及便利程度的评价,4、您对社区环境卫生的评价,5、您对社区养老服务的评价（家中无老人可跳过）,6、您对社区文体活动的评价,7、您认为社区最需要改进的方面,8、您对社区工作的意见和建议\r\n",
    );
    let answers = std::iter::repeat_n("满意", 161).chain(std::iter::repeat_n("基本满意", 60)).chain(std::iter::repeat_n("不满意", 9));
    for (i, a) in answers.enumerate() {
        let community = ["春晖社区", "阳光社区", "幸福社区"][i % 3];
        let elderly = if i % 4 == 0 { "(跳过)" } else { "满意" };
        let (prio, text) =
            if i % 10 == 0 { ("其他〖希望增设快递柜〗", "小区停车位太少") } else { ("治安巡逻", "(空)") };
        s.push_str(&format!("{},2026/10/{} 10:{:02}:00,95秒,手机提交,微信,222.240.1.{}(江西-临江),{community},{a},满意,满意,{elderly},基本满意,{prio},{text}\r\n", i + 1, 1 + i % 28, i % 60, i % 250));
    }
    let (gbk, _, unmappable) = encoding_rs::GBK.encode(&s);
    assert!(!unmappable);
    gbk.into_owned()
}

#[test]
fn a_published_questionnaire_figure_is_reproduced_from_a_gbk_export() {
    let d = Deployment::small();
    std::fs::create_dir_all(d.dir.join("inbox/wjx")).expect("mkdir");
    std::fs::write(d.dir.join("inbox/wjx/问卷星导出.csv"), published_export()).expect("write");
    d.manyi(&["collect", "wjx-community"]).success();
    assert_eq!(d.count("SELECT COUNT(*) FROM record_keys WHERE kind = 'responses'"), 230);
    d.manyi(&["run", "monthly-report", "--period", "2026-10"]).success();
    let folder = std::fs::read_dir(d.dir.join("data/reports/monthly-report/2026-10"))
        .expect("reports")
        .next()
        .expect("a report id")
        .expect("entry")
        .path();
    let text = std::fs::read_to_string(folder.join("leadership.txt")).expect("report text");
    assert!(
        text.contains("2. 您对社区工作的总体评价（作答 230）：满意 70.0%；基本满意 26.1%；不满意 3.9%；满意率 96.1%"),
        "published figure missing:\n{text}"
    );
    // Skipped answers are kept apart, not counted as 不满意: 58 of 230 skipped question 5.
    assert!(text.contains("5. 您对社区养老服务的评价（家中无老人可跳过）（作答 172，跳过 58）：满意 100.0%"), "{text}");
    // 其他〖…〗 fill-ins and suggestions feed the 需求清单: 23 texts each way, 46 in all.
    assert!(text.contains("需求清单（意见建议按关键词归类，共 46 条，未归类 0 条）"), "{text}");
    assert!(text.contains("- 便民服务：46 条"), "{text}");

    // The same figures as data: `figures --survey`. Counts are the published
    // shares × 230 (70.0% → 161, 26.1% → 60, 3.9% → 9); the intervals are
    // Wilson's, worked out by hand in Python (z = 1.959964):
    // 161/230 → [0.637888, 0.755541], 60/230 → [0.208380, 0.321216], 9/230 → [0.020721, 0.072682].
    let csv = d.manyi(&["figures", "--survey", "community", "--period", "2026-10"]).success().stdout();
    for row in [
        "overall,您对社区工作的总体评价,single,230,0,满意,161,0.700000,0.637888,0.755541",
        "overall,您对社区工作的总体评价,single,230,0,基本满意,60,0.260870,0.208380,0.321216",
        "overall,您对社区工作的总体评价,single,230,0,不满意,9,0.039130,0.020721,0.072682",
    ] {
        assert!(csv.lines().any(|l| l == row), "{row} missing:\n{csv}");
    }
    assert!(csv.lines().any(|l| l.contains(",172,58,满意,172,1.000000,")), "question 5: 172 answered, 58 skipped:\n{csv}");
    d.manyi(&["figures", "--survey", "no-such", "--period", "2026-10"]).code(2);
    // And in the leadership XLSX, sheet 问卷.
    let xlsx = std::fs::read_dir(&folder)
        .expect("report folder")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "xlsx") && p.to_string_lossy().contains("leadership"))
        .expect("the leadership workbook");
    use calamine::Reader;
    let mut wb: calamine::Xlsx<_> = calamine::open_workbook(&xlsx).expect("open xlsx");
    let sheet = wb.worksheet_range("问卷").expect("sheet 问卷");
    let row = sheet
        .rows()
        .find(|r| r.first().is_some_and(|c| *c == "您对社区工作的总体评价") && r.get(3).is_some_and(|c| *c == "满意"))
        .expect("the 满意 row of question 2");
    assert_eq!(row.get(1).map(|c| c.to_string()), Some("230".into()));
    assert_eq!(row.get(4).map(|c| c.to_string()), Some("161".into()));
    let lo = row.get(6).and_then(calamine::DataType::get_float).expect("lower bound");
    assert!((lo - 0.637888).abs() < 1e-6, "{lo}");
}
