//! Group robots (`[[robot]]` in `manyi.toml`): 企业微信 / 政务微信 and 钉钉
//! webhooks, a second delivery channel beside email. Keys, tokens and
//! secrets are never in a file: the config names the environment variables
//! that hold them, read only when a message is sent.

use super::Problem;
use super::check::TomlFile;
use super::lines::Step::{Index, Key};
use super::reference::Office;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;

/// Which robot API a robot speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RobotKind {
    /// 企业微信 / 政务微信 group robot: `…/cgi-bin/webhook/send?key=KEY`.
    Wecom,
    /// 钉钉 custom robot with 加签: `…/robot/send?access_token=TOKEN&timestamp=…&sign=…`.
    Dingtalk,
}

impl RobotKind {
    /// The channel name in the delivery records (`wecom`, `dingtalk`).
    pub fn as_str(self) -> &'static str {
        match self {
            RobotKind::Wecom => "wecom",
            RobotKind::Dingtalk => "dingtalk",
        }
    }
}

/// One group robot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotConfig {
    /// Unique name, used by offices (`robots = ["…"]`) and in delivery records (`robot:<name>`).
    pub name: String,
    /// Which API.
    pub kind: RobotKind,
    /// Scheme and host (and path prefix) of the API: `https://qyapi.weixin.qq.com`,
    /// `https://oapi.dingtalk.com`, or the intranet host of a 政务微信 / 浙政钉 deployment.
    pub base_url: String,
    /// 企业微信: the environment variable holding the webhook key.
    #[serde(default)]
    pub key_env: Option<String>,
    /// 钉钉: the environment variable holding the access token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// 钉钉: the environment variable holding the 加签 secret (`SEC…`).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Mobiles to @ when an alert has new 差评.
    #[serde(default)]
    pub mention_mobiles: Vec<String>,
    /// Least wait between two messages to this robot, in milliseconds. Both
    /// platforms allow 20 a minute per robot, hence 3000; tests lower it.
    #[serde(default = "default_interval")]
    pub min_interval_ms: u64,
    /// Attempts of a message on throttling (45009 / 130101), 5xx and broken
    /// connections, the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the second attempt, in milliseconds; doubled each time.
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    /// Seconds a request may take.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_interval() -> u64 {
    3_000
}
fn default_attempts() -> u32 {
    4
}
fn default_backoff() -> u64 {
    5_000
}
fn default_timeout() -> u64 {
    15
}

/// Every `[[robot]]`, and every office's `robots` naming one of them.
pub(super) fn check_robots(toml: &TomlFile<'_>, robots: &[RobotConfig], offices: &[Office], offices_path: &Path) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for (i, r) in robots.iter().enumerate() {
        let mut push = |key: &str, message: String| {
            let line = toml.lines.line(&[Key("robot"), Index(i), Key(key)]);
            problems.push(Problem { file: toml.path.to_path_buf(), line, message })
        };
        if !names.insert(r.name.as_str()) {
            push("name", format!("robot name “{}” is used twice", r.name));
        }
        if let Err(message) = super::names::check_plain_name("robot name", &r.name) {
            push("name", message);
        }
        if !(r.base_url.starts_with("https://") || r.base_url.starts_with("http://")) {
            push("base_url", format!("robot “{}”: base_url “{}” must start with https:// (or http:// on an intranet)", r.name, r.base_url));
        }
        let needs: &[(&str, &Option<String>)] = match r.kind {
            RobotKind::Wecom => &[("key_env", &r.key_env)],
            RobotKind::Dingtalk => &[("token_env", &r.token_env), ("secret_env", &r.secret_env)],
        };
        for (key, value) in needs {
            if value.as_deref().is_none_or(str::is_empty) {
                push(
                    key,
                    format!("robot “{}” ({}) needs {key}: the name of the environment variable that holds it", r.name, r.kind.as_str()),
                );
            }
        }
        if r.attempts == 0 {
            push("attempts", format!("robot “{}”: attempts must be at least 1", r.name));
        }
        for m in &r.mention_mobiles {
            if m.is_empty() || !m.chars().all(|c| c.is_ascii_digit()) {
                push("mention_mobiles", format!("robot “{}”: mention_mobiles entry “{m}” is not a mobile number", r.name));
            }
        }
    }
    for o in offices {
        for name in &o.robots {
            if !names.contains(name.as_str()) {
                let message = format!("office “{}”: robot “{name}” is not a [[robot]] of manyi.toml", o.id);
                problems.push(Problem { file: offices_path.to_path_buf(), line: None, message });
            }
        }
    }
    problems
}
