//! The view of follow-up steps, 实名差评回访率, channel shares and the
//! suspicious bursts (issue 15, items 5 and 6): one struct, built apart from
//! the rest of the report view so that the two evolve independently.

use crate::aggregate::{Burst, ChannelMix, StepsSummary};
use crate::config::{Config, FollowUpRules, StepDays, SurveyDef};
use crate::model::CHANNELS;
use serde::Serialize;

/// What the `_layout/scrutiny.*` partials and the 疑似刷评 sheet see.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScrutinyView {
    /// Set by [`build_scrutiny`]: a view built without it (the default) shows no section.
    pub built: bool,
    /// Per-step figures and the 实名差评回访率 of the scope.
    pub steps: StepsSummary,
    /// The default deadlines as printed: 核实1 / 整改15 / 反馈15 个工作日.
    pub step_rule: String,
    /// Categories with their own deadlines, as printed (empty when none).
    pub category_rules: Vec<String>,
    /// Channel names, the columns of `channels` (only channels with ratings).
    pub channel_names: Vec<String>,
    /// The scope first, then (leadership) each office.
    pub channels: Vec<ChannelRow>,
    /// Flagged ratings, one row per rating and rule (leadership only).
    pub flagged: Vec<FlaggedView>,
    /// Runs flagged.
    pub bursts: usize,
    /// Distinct ratings flagged (one caught by both rules counts once).
    pub flagged_ratings: usize,
    /// The rules with their thresholds, as printed.
    pub burst_rules: Vec<String>,
}

/// One row of the channel table.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelRow {
    /// The city or office name.
    pub name: String,
    /// Ratings.
    pub n: u64,
    /// Share per column of `channel_names`; `None` where it has none.
    pub shares: Vec<Option<f64>>,
}

/// A flagged rating as the workbook lists it.
#[derive(Debug, Clone, Serialize)]
pub struct FlaggedView {
    /// Rating id.
    pub rating_id: String,
    /// `2026-10-09 09:02`.
    pub rated_at: String,
    /// Community name.
    pub community: String,
    /// Its street.
    pub street: String,
    /// Channel name.
    pub channel: String,
    /// Rule name.
    pub rule: String,
    /// Ratings in the run.
    pub run_size: usize,
    /// The rule's threshold for this key.
    pub threshold: u64,
    /// Start and end of the run.
    pub run: String,
}

/// What the scrutiny view is built from.
pub struct ScrutinyInput<'a> {
    /// Per-step figures of the scope.
    pub steps: StepsSummary,
    /// (row name, channel mix): the scope first, then each office.
    pub channels: Vec<(String, ChannelMix)>,
    /// Flagged runs to list (empty for office reports).
    pub bursts: &'a [Burst],
    /// The rating scheme (channel names).
    pub scheme: Option<&'a SurveyDef>,
}

/// The name of a channel code: the scheme's, else GB/T 39046's.
fn channel_name(scheme: Option<&SurveyDef>, code: u8) -> String {
    if let Some(name) = scheme.and_then(|s| s.channels.get(&code.to_string())) {
        return name.clone();
    }
    CHANNELS.iter().find(|(c, _)| *c == code).map_or_else(|| "未注明".to_string(), |(_, n)| (*n).to_string())
}

fn days_text(d: StepDays) -> String {
    let parts: Vec<String> = [("核实", d.verify), ("整改", d.rectify), ("反馈", d.feedback)]
        .iter()
        .filter_map(|(name, n)| n.map(|n| format!("{name}{n}")))
        .collect();
    format!("{}个工作日", parts.join(" / "))
}

/// The deadline rules as printed: the default, then each configured category.
fn rules_text(cfg: &Config, rules: &FollowUpRules) -> (String, Vec<String>) {
    let default = rules.steps.or(StepDays { rectify: Some(rules.deadline_working_days), ..StepDays::default() });
    let cats = rules
        .category
        .iter()
        .map(|(code, d)| format!("{}：{}", cfg.category(code).map_or(code.as_str(), |c| c.name.as_str()), days_text(d.or(default))))
        .collect();
    (days_text(default), cats)
}

/// Builds the view. Pure: everything comes in as arguments.
pub fn build_scrutiny(cfg: &Config, input: ScrutinyInput<'_>) -> ScrutinyView {
    let ScrutinyInput { steps, channels, bursts, scheme } = input;
    let (step_rule, category_rules) = rules_text(cfg, &cfg.file.follow_up);
    let mut codes: Vec<u8> = channels.iter().flat_map(|(_, m)| m.by_channel.iter().filter(|c| c.1 > 0).map(|c| c.0)).collect();
    codes.sort_unstable();
    codes.dedup();
    let rows = channels
        .iter()
        .map(|(name, mix)| ChannelRow {
            name: name.clone(),
            n: mix.n,
            shares: codes.iter().map(|code| mix.by_channel.iter().find(|c| c.0 == *code).map(|c| c.2)).collect(),
        })
        .collect();
    let org_name = |code: &str| cfg.orgs.get(code).map_or_else(|| code.to_string(), |u| u.name.clone());
    let street = |code: &str| cfg.orgs.ancestor(code, crate::model::OrgLevel::Street).map(|u| u.name.clone()).unwrap_or_default();
    let flagged = bursts
        .iter()
        .flat_map(|b| {
            let run = format!("{} – {}", b.start.format("%Y-%m-%d %H:%M:%S"), b.end.format("%H:%M:%S"));
            b.ratings.iter().map(move |r| (b, r, run.clone()))
        })
        .map(|(b, r, run)| FlaggedView {
            rating_id: r.rating_id.clone(),
            rated_at: r.rated_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            community: org_name(&r.org_code),
            street: street(&r.org_code),
            channel: channel_name(scheme, r.channel),
            rule: b.rule.name().to_string(),
            run_size: b.ratings.len(),
            threshold: b.threshold,
            run,
        })
        .collect();
    let r = &cfg.file.bursts;
    let burst_rules = if r.enabled {
        vec![
            format!("同一评价人：{}分钟内同一评价人（号码哈希）非常满意≥{}条", r.window_minutes, r.rater_min),
            format!(
                "同一渠道同一社区：{}分钟内同一社区同一渠道好评≥{}条，且≥该渠道平常同样时长条数的{}倍",
                r.window_minutes, r.channel_min, r.channel_factor
            ),
        ]
    } else {
        Vec::new()
    };
    ScrutinyView {
        built: true,
        steps,
        step_rule,
        category_rules,
        channel_names: codes.iter().map(|c| channel_name(scheme, *c)).collect(),
        channels: rows,
        flagged,
        bursts: bursts.len(),
        flagged_ratings: bursts
            .iter()
            .flat_map(|b| b.ratings.iter().map(|r| r.rating_id.as_str()))
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        burst_rules,
    }
}
