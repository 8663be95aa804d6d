//! Issue 15, items 5 and 6 end to end: per-step deadlines and the
//! 实名差评回访率 in the reports, channel shares, and a scripted burst listed
//! in the leadership workbook while it stays in the figures.

use crate::support::Deployment;
use calamine::{Reader, Xlsx};
use std::path::PathBuf;

const HEAD: &str = "办件编号,评价次数,评价时间,区划代码,服务类别,评价渠道,满意度,是否匿名,联系电话,整改状态,回访结果";

/// The one report file named `name` of October 2026.
fn report_file(d: &Deployment, name: &str) -> PathBuf {
    let found: Vec<PathBuf> = crate::walk(&d.dir.join("data/reports/monthly-report/2026-10"))
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == name))
        .collect();
    assert_eq!(found.len(), 1, "{name}: {found:?}");
    found[0].clone()
}

#[test]
fn steps_revisit_rate_channels_and_a_burst_reach_the_reports() {
    // The demo configuration: 核实 1 / 整改 15 / 反馈 15 working days.
    let d = Deployment::small();
    let mut rows = vec![
        HEAD.to_string(),
        // Fri 10-09: 核实 due Mon 10-12, 整改 and 反馈 due 10-30 (15 working days).
        "D1,1,2026-10-09 09:00:00,369901001001,政务办事,2,1,否,13800000001,已整改,已电话回访，群众满意".into(),
        "D2,1,2026-10-09 10:00:00,369901001001,政务办事,2,2,否,13800000002,整改中,".into(),
        // Mon 10-12, anonymous, never checked: every step overdue.
        "D3,1,2026-10-12 11:00:00,369901001003,政务办事,2,1,是,,待核实,".into(),
    ];
    // Six 非常满意 from one phone by 二维码 within five minutes (rule: ≥ 5 in 10).
    for k in 0..6 {
        rows.push(format!("B{k},1,2026-10-13 10:0{k}:00,369901001002,政务办事,3,5,否,13900001234,,"));
    }
    d.file("inbox/ratings/oct.csv", &(rows.join("\n") + "\n"));
    d.manyi(&["collect"]).success();
    d.manyi(&["run", "monthly-report", "--period", "2026-10"]).success();
    let text = std::fs::read_to_string(report_file(&d, "leadership.txt")).expect("text");
    // Every deadline lies before any as-of of this test (after 2026-11-03).
    // 核实: D1, D2 done; D3 overdue. 整改: D1 done; D2, D3 overdue. 反馈 (回访): D1 only.
    for line in [
        "- 核实：有效差评 3 件，已到期 3 件，已完成 2 件，逾期未完成 1 件，到期完成率 66.7%",
        "- 整改：有效差评 3 件，已到期 3 件，已完成 1 件，逾期未完成 2 件，到期完成率 33.3%",
        "- 反馈：有效差评 3 件，已到期 3 件，已完成 1 件，逾期未完成 2 件，到期完成率 33.3%",
        // Named 差评: D1 and D2; revisited: D1 → 50.0 %, a shortfall.
        "实名差评 2 件，已到回访期限 2 件，已回访 1 件，实名差评回访率 50.0%【未达100%，1 件未回访】。",
        // 9 ratings: 3 by 移动端, 6 by 二维码; the burst stays in the figures.
        "- 临江市（n=9）：移动端 33.3%，二维码 66.7%",
        "疑似刷评：发现 1 组连串评价，涉及 6 条评价",
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
    assert!(text.contains("评价数 n=9；"), "{text}");
    let html = std::fs::read_to_string(report_file(&d, "leadership.html")).expect("html");
    assert!(html.contains("（应为100%，1 件未回访）"), "the shortfall is highlighted");
    // The office report has its steps and channels, and no burst line.
    let office = std::fs::read_to_string(report_file(&d, "street-369901001.txt")).expect("office");
    assert!(office.contains("实名差评回访率 50.0%") && !office.contains("疑似刷评"), "{office}");

    let mut xlsx: Xlsx<_> = calamine::open_workbook(report_file(&d, "leadership_满意度明细_2026-10.xlsx")).expect("xlsx");
    let sheet = xlsx.worksheet_range("疑似刷评复核").expect("sheet");
    let listed: Vec<(String, String, String)> = sheet
        .rows()
        .skip(1)
        .take_while(|r| !r[0].to_string().is_empty())
        .map(|r| (r[0].to_string(), r[5].to_string(), r[6].to_string()))
        .collect();
    let want: Vec<(String, String, String)> = (0..6).map(|k| (format!("B{k}-1"), "同一评价人".to_string(), "6".to_string())).collect();
    assert_eq!(listed, want);
}
