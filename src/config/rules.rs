//! Checks of the figure rules (`[metrics]`, `[bursts]`, `[follow_up]`) and of
//! the QR-code intake (`[intake]`) beyond their shape.
//!
//! Without them a `watch_bottom = 10` (meant as 10 %) put every community on
//! the watch list, a `[follow_up.category.elderly]` typo silently fell back to
//! the default deadlines, and an intake point with an unknown org code was
//! found only when `manyi serve` started at night. `manyi check` now says all
//! of it at once, each at the line of its key.

use super::check::TomlFile;
use super::file::{ConfigFile, IntakeConfig, SourceKind};
use super::lines::Step::{self, Index, Key};
use super::{Category, OrgTree, Problem};
use std::collections::BTreeSet;

/// `[metrics]`, `[bursts]` and `[follow_up]`: shares between 0 and 1,
/// positive windows, category codes that exist.
pub(super) fn check_rules(toml: &TomlFile<'_>, file: &ConfigFile, categories: &[Category]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let m = &file.metrics;
    let mut push = |at: &[Step<'_>], message: String| problems.push(toml.problem(at, message));
    if !(m.watch_bottom > 0.0 && m.watch_bottom < 1.0) {
        let message = format!(
            "metrics.watch_bottom = {} must be a share between 0 and 1 (0.10 puts the bottom tenth of a ranking on the watch list)",
            m.watch_bottom
        );
        push(&[Key("metrics"), Key("watch_bottom")], message);
    }
    if let Some(t) = m.watch_threshold.filter(|t| !(*t > 0.0 && *t <= 1.0)) {
        let message = format!("metrics.watch_threshold = {t} must be a 满意率 between 0 and 1 (e.g. 0.95 for 95 %)");
        push(&[Key("metrics"), Key("watch_threshold")], message);
    }
    if !(m.prior_weight >= 0.0 && m.prior_weight.is_finite()) {
        push(&[Key("metrics"), Key("prior_weight")], format!("metrics.prior_weight = {} must be 0 or more", m.prior_weight));
    }
    let b = &file.bursts;
    if b.window_minutes == 0 {
        push(&[Key("bursts"), Key("window_minutes")], "bursts.window_minutes must be at least 1".into());
    }
    if !(b.channel_factor >= 1.0 && b.channel_factor.is_finite()) {
        let message = format!("bursts.channel_factor = {} must be 1 or more (times a pair's usual count)", b.channel_factor);
        push(&[Key("bursts"), Key("channel_factor")], message);
    }
    for code in file.follow_up.category.keys().filter(|c| !categories.iter().any(|k| k.code == **c)) {
        let known: Vec<&str> = categories.iter().map(|c| c.code.as_str()).collect();
        let message = format!(
            "[follow_up.category.{code}]: “{code}” is not a category code of categories.csv (known: {}); its deadlines would never apply",
            known.join(", ")
        );
        push(&[Key("follow_up"), Key("category"), Key(code)], message);
    }
    problems
}

/// `[intake]`: its source, its address and every `[[intake.point]]`.
pub(super) fn check_intake(toml: &TomlFile<'_>, file: &ConfigFile, orgs: &OrgTree, categories: &[Category]) -> Vec<Problem> {
    let Some(ic) = &file.intake else { return Vec::new() };
    let mut problems = Vec::new();
    let mut push = |at: &[Step<'_>], message: String| problems.push(toml.problem(at, message));
    if !file.sources.iter().any(|s| s.name == ic.source && s.kind == SourceKind::Intake) {
        let message = format!("intake.source = “{}” names no [[source]] with kind = \"intake\"; add one with that name", ic.source);
        push(&[Key("intake"), Key("source")], message);
    }
    if ic.listen.parse::<std::net::SocketAddr>().is_err() {
        let message = format!("intake.listen = “{}” is not an address and port such as 127.0.0.1:8088", ic.listen);
        push(&[Key("intake"), Key("listen")], message);
    }
    let web = |u: &str| u.starts_with("https://") || u.starts_with("http://");
    if !ic.public_url.is_empty() && !web(&ic.public_url) {
        let message = format!("intake.public_url = “{}” must start with https:// (it is printed in the QR codes)", ic.public_url);
        push(&[Key("intake"), Key("public_url")], message);
    }
    for (key, value) in numbers(ic) {
        if value == 0 {
            push(&[Key("intake"), Key(key)], format!("intake.{key} must be at least 1"));
        }
    }
    let mut ids = BTreeSet::new();
    for (i, p) in ic.points.iter().enumerate() {
        let at = |key| [Key("intake"), Key("point"), Index(i), Key(key)];
        if let Err(message) = super::names::check_plain_name("intake point id", &p.id) {
            push(&at("id"), message);
        } else if !ids.insert(p.id.as_str()) {
            push(&at("id"), format!("intake point id “{}” is used twice: each QR code needs its own", p.id));
        }
        if orgs.get(&p.org).is_none() {
            push(&at("org"), format!("intake point “{}”: org “{}” is not in orgs.csv", p.id, p.org));
        }
        if !categories.iter().any(|c| c.code == p.category) {
            push(&at("category"), format!("intake point “{}”: category “{}” is not a code of categories.csv", p.id, p.category));
        }
    }
    problems
}

/// The intake's counts and periods that make no sense at zero
/// (`repeat_window_minutes = 0` is meaningful: no repeat is refused).
fn numbers(ic: &IntakeConfig) -> [(&'static str, u64); 4] {
    [
        ("commit_every_ms", ic.commit_every_ms),
        ("slip_days", u64::from(ic.slip_days)),
        ("per_client_per_minute", u64::from(ic.per_client_per_minute)),
        ("per_code_per_minute", u64::from(ic.per_code_per_minute)),
    ]
}
