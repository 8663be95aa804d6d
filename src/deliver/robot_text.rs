//! What a group robot shows: the nightly 差评 alert as markdown (most urgent
//! first, cut to fit 4096 bytes with a count of what is left for the email)
//! and a report's summary card. Pure: the working-day arithmetic comes in as
//! the calendar and the as-of date.

use super::robot::MARKDOWN_MAX;
use crate::calendar::WorkCalendar;
use crate::config::RobotKind;
use crate::render::{AlertView, BadView, mask_personal};
use chrono::NaiveDate;

/// Characters of a resident's comment shown in a robot message; the email has all of it.
const COMMENT_CHARS: usize = 120;

/// The headline figures of one office's report, for its summary card.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SummaryCard {
    /// The email subject, e.g. 【满意度月报】2026年10月 · 滨江街道办事处.
    pub title: String,
    /// Ratings in the period.
    pub n: u64,
    /// 满意率 (0–1).
    pub satisfied_rate: f64,
    /// 好评率 (0–1).
    pub good_rate: f64,
    /// 差评 count.
    pub bad: u64,
    /// Change of 满意率 against the previous period, in percentage points.
    pub change_pp: f64,
    /// Whether that change is significant (two-proportion test, 95%).
    pub significant: bool,
    /// The previous period's label.
    pub previous_label: String,
    /// Ratings in the previous period (no change is shown against none).
    pub previous_n: u64,
    /// The office's rank among its peers: (rank, ranked peers, what the peers are: 街道, 社区, 区).
    pub rank: Option<(usize, usize, String)>,
    /// Valid 差评 whose deadline has passed.
    pub due: u64,
    /// Of those, not rectified.
    pub overdue: u64,
    /// 整改率 of the due ones (0–1).
    pub rectified_rate: f64,
    /// Report id of the email.
    pub report_id: String,
}

/// Escapes what markdown would read as markup in resident text, and keeps
/// it on one line, so a comment cannot forge a heading, a link or a mention.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' | '\n' | '\t' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '@' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A resident's comment as a robot shows it: masked, escaped, capped.
fn comment(text: &str) -> String {
    let masked = mask_personal(text);
    let mut short: String = masked.chars().take(COMMENT_CHARS).collect();
    if masked.chars().count() > COMMENT_CHARS {
        short.push('…');
    }
    plain(short.trim())
}

/// The deadline in working days as of `today`: left, due today, or overdue by.
fn deadline_words(calendar: &WorkCalendar, today: NaiveDate, deadline: NaiveDate) -> String {
    if deadline > today {
        format!("剩 {} 个工作日", calendar.working_days_between(today, deadline))
    } else if deadline == today {
        "今日到期".into()
    } else {
        format!("已逾期 {} 个工作日", calendar.working_days_between(deadline, today).max(1))
    }
}

/// One 差评 as an alert lists it.
fn alert_item(k: usize, b: &BadView, calendar: &WorkCalendar, today: NaiveDate) -> String {
    let said = if b.rating.comment.trim().is_empty() { "（无文字评价）".to_string() } else { comment(&b.rating.comment) };
    format!(
        "**{k}. {}** · {} · {}\n期限 {}（{}）\n> {said}\n\n",
        plain(&b.community),
        plain(&b.category_name),
        b.rated_label,
        b.deadline_label,
        deadline_words(calendar, today, b.rating.deadline)
    )
}

/// Joins `head`, as many `items` as fit and `tail` within `limit` bytes;
/// when some are left out, `more(n)` says how many, before the tail.
pub fn fit(head: &str, items: &[String], more: impl Fn(usize) -> String, tail: &str, limit: usize) -> String {
    let mut out = head.to_string();
    for (k, item) in items.iter().enumerate() {
        let left = items.len() - k - 1;
        // What must still fit after this item: the count of the rest, if any, and the tail.
        let after = if left == 0 { tail.len() } else { more(left).len() + tail.len() };
        if out.len() + item.len() + after > limit {
            let note = more(items.len() - k);
            if out.len() + note.len() + tail.len() <= limit {
                out.push_str(&note);
            }
            out.push_str(tail);
            return out;
        }
        out.push_str(item);
    }
    out.push_str(tail);
    out
}

/// The nightly alert of one office for a robot: title and markdown, at most
/// 4096 bytes. The view lists the earliest deadline first, so the most
/// urgent are kept when the list is cut.
pub fn alert_markdown(
    view: &AlertView,
    kind: RobotKind,
    mentions: &[String],
    calendar: &WorkCalendar,
    today: NaiveDate,
) -> (String, String) {
    let head =
        format!("### {}\n{}至{}新增差评 **{}** 条，按期限排列：\n\n", plain(&view.subject), view.since, view.until, view.items.len());
    let items: Vec<String> = view.items.iter().enumerate().map(|(k, b)| alert_item(k + 1, b, calendar, today)).collect();
    let mut tail = format!("报告编号 {} · 完整内容见邮件", view.report_id);
    if kind == RobotKind::Dingtalk && !mentions.is_empty() {
        // 钉钉 shows an @ only when the mobile is also in the text.
        tail.push_str("\n\n");
        tail.push_str(&mentions.iter().map(|m| format!("@{m}")).collect::<Vec<_>>().join(" "));
    }
    let more = |n: usize| format!("……另有 **{n}** 条期限较晚的差评，详见邮件。\n\n");
    (view.subject.clone(), fit(&head, &items, more, &tail, MARKDOWN_MAX))
}

/// A report's summary card for a robot: title and markdown.
pub fn card_markdown(card: &SummaryCard, kind: RobotKind) -> (String, String) {
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    let pp = if card.change_pp.abs() < 0.05 { 0.0 } else { card.change_pp };
    let sig = if card.significant { "，显著" } else { "" };
    let change = if card.previous_n == 0 {
        format!("{}无评价，不作比较", card.previous_label)
    } else {
        format!("较{} {pp:+.1} 个百分点{sig}", card.previous_label)
    };
    let rank = match &card.rank {
        Some((r, of, peers)) => format!("第 **{r}** 名（共 {of} 个{peers}）"),
        None => "不参与排名（评价数不足或非单一区划）".into(),
    };
    let mut text = format!(
        "### {}\n**满意率 {}**（{change}）\n评价 {} 条 · 好评率 {} · 差评 {} 条\n排名：{rank}\n\
         逾期未整改差评：**{}** 条（到期 {} 条，整改率 {}）\n\n",
        plain(&card.title),
        pct(card.satisfied_rate),
        card.n,
        pct(card.good_rate),
        card.bad,
        card.overdue,
        card.due,
        pct(card.rectified_rate),
    );
    match kind {
        RobotKind::Wecom => text.push_str(&format!("报告编号 {} · 趋势图与明细表（XLSX）随后发送，完整报告见邮件", card.report_id)),
        RobotKind::Dingtalk => text.push_str(&format!("报告编号 {} · 完整报告与明细表详见邮件附件", card.report_id)),
    }
    (card.title.clone(), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_is_cut_to_4096_bytes_and_says_how_many_are_left() {
        let head = "### 【差评提醒】\n\n";
        let items: Vec<String> = (1..=100).map(|k| format!("**{k}. 春晖社区** · 物业管理\n> {}\n\n", "电梯坏了".repeat(10))).collect();
        let more = |n: usize| format!("……另有 **{n}** 条，详见邮件。\n\n");
        let out = fit(head, &items, more, "报告编号 X", MARKDOWN_MAX);
        assert!(out.len() <= MARKDOWN_MAX, "{} bytes", out.len());
        let shown = items.iter().filter(|i| out.contains(i.as_str())).count();
        assert!(shown > 10 && shown < 100, "{shown}");
        assert!(out.contains(&format!("另有 **{}** 条", 100 - shown)), "{out}");
        assert!(out.contains(&items[0]) && !out.contains(&items[shown]), "the first (most urgent) are kept");
        assert!(out.ends_with("报告编号 X"));
        // Adding one byte to the budget never drops an item; a list that fits is whole.
        let all = fit(head, &items[..3], more, "T", MARKDOWN_MAX);
        assert_eq!(all, format!("{head}{}{}{}T", items[0], items[1], items[2]));
    }

    #[test]
    fn resident_text_cannot_forge_markup_and_is_masked() {
        let c = comment("联系我13912345678\n### 标题 [点我](http://x) <@all>");
        assert!(!c.contains("13912345678"), "{c}");
        assert!(!c.contains('\n') && c.contains("\\#\\#\\#") && c.contains("\\[点我\\]") && c.contains("\\<\\@all\\>"), "{c}");
        let long = comment(&"好".repeat(500));
        assert_eq!(long.chars().count(), COMMENT_CHARS + 1);
    }
}
