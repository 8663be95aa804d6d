//! Group robots: 企业微信 / 政务微信 webhooks and 钉钉 custom robots (加签).
//!
//! This stage builds the JSON bodies and sends them, pacing each robot and
//! retrying throttling, 5xx and broken connections under the shared
//! [`Backoff`]; whether a robot should get a message at all is decided by the
//! pipeline from the delivery records, as for email.

use crate::config::{RobotConfig, RobotKind};
use crate::retry::Backoff;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// 企业微信: the most bytes of a markdown message's content.
pub const MARKDOWN_MAX: usize = 4096;
/// 企业微信: the most bytes of a text message's content.
pub const TEXT_MAX: usize = 2048;
/// 企业微信: the largest image, before base64.
pub const IMAGE_MAX: usize = 2 * 1024 * 1024;
/// 企业微信: the largest uploaded file.
pub const FILE_MAX: usize = 20 * 1024 * 1024;

/// 企业微信 errcode: the robot sent too much (more than 20 a minute).
pub const WECOM_THROTTLED: i64 = 45009;
/// 钉钉 errcode: the robot sent too fast.
pub const DINGTALK_THROTTLED: i64 = 130_101;
/// Errcodes that mean the key, token or signature is wrong: every message
/// would fail the same way, so the robot is not tried again in this run.
const REFUSED: [i64; 4] = [93000, 40001, 300_001, 310_000];

/// One message to a robot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RobotMessage {
    /// Markdown (钉钉 needs a title for the notification; 企业微信 ignores it).
    Markdown {
        /// Notification title.
        title: String,
        /// The markdown.
        text: String,
        /// Whether to @ the robot's `mention_mobiles`.
        mention: bool,
    },
    /// Plain text, with the robot's `mention_mobiles` @-ed when `mention`.
    Text {
        /// The text.
        content: String,
        /// Whether to @ the robot's `mention_mobiles`.
        mention: bool,
    },
    /// A PNG (企业微信 only).
    Image {
        /// PNG bytes.
        png: Vec<u8>,
    },
    /// A file, uploaded first and then sent by its media id (企业微信 only).
    File {
        /// File name shown in the group.
        filename: String,
        /// Its bytes.
        bytes: Vec<u8>,
    },
}

impl RobotMessage {
    /// What the message is, for logs and records.
    pub fn what(&self) -> &'static str {
        match self {
            RobotMessage::Markdown { .. } => "markdown",
            RobotMessage::Text { .. } => "text",
            RobotMessage::Image { .. } => "image",
            RobotMessage::File { .. } => "file",
        }
    }
}

/// Why a robot did not get a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RobotFailure {
    /// The API answered with an errcode other than 0.
    #[error("errcode {errcode}: {errmsg} (after {attempts} attempt(s))")]
    Api {
        /// The errcode.
        errcode: i64,
        /// The errmsg.
        errmsg: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The server answered with an HTTP status other than 200.
    #[error("HTTP {status}: {body} (after {attempts} attempt(s))")]
    Http {
        /// The status.
        status: u16,
        /// The start of the body.
        body: String,
        /// Attempts made.
        attempts: u32,
    },
    /// No answer: refused, dropped or timed out.
    #[error("no answer after {attempts} attempt(s): {reason}")]
    Transport {
        /// reqwest's error with its causes.
        reason: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A key, token or secret is not in the environment.
    #[error("the environment variable {var} (the {what} of robot “{robot}”) is not set: set it before running")]
    Secret {
        /// The variable.
        var: String,
        /// Key, token or secret.
        what: &'static str,
        /// The robot.
        robot: String,
    },
    /// The message is larger than the API takes.
    #[error("{what} of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The robot kind has no such message type (钉钉 takes no images or files).
    #[error("{kind} robots take no {what} messages")]
    Unsupported {
        /// The kind.
        kind: &'static str,
        /// The message type.
        what: &'static str,
    },
    /// Not attempted: an earlier message showed the robot refused or unreachable.
    #[error("not attempted: {reason}")]
    NotAttempted {
        /// What stopped sending to this robot.
        reason: String,
    },
}

/// The 钉钉 加签 signature: the URL-encoded base64 of
/// HMAC-SHA256(secret, "{timestamp}\n{secret}"), timestamp in milliseconds.
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return String::new() };
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    url_encode(&base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The JSON body of a message; a file message names `media_id`, which the
/// upload returned (or a placeholder in a dry run). Checks the size limits.
pub fn body(robot: &RobotConfig, msg: &RobotMessage, media_id: &str) -> Result<Value, RobotFailure> {
    let mobiles = |mention: bool| if mention { robot.mention_mobiles.clone() } else { Vec::new() };
    let limit = |what, size, limit| if size > limit { Err(RobotFailure::TooLarge { what, size, limit }) } else { Ok(()) };
    let unsupported = || RobotFailure::Unsupported { kind: robot.kind.as_str(), what: msg.what() };
    Ok(match (robot.kind, msg) {
        (RobotKind::Wecom, RobotMessage::Markdown { text, .. }) => {
            limit("markdown content", text.len(), MARKDOWN_MAX)?;
            json!({"msgtype": "markdown", "markdown": {"content": text}})
        }
        (RobotKind::Wecom, RobotMessage::Text { content, mention }) => {
            limit("text content", content.len(), TEXT_MAX)?;
            json!({"msgtype": "text", "text": {"content": content, "mentioned_mobile_list": mobiles(*mention)}})
        }
        (RobotKind::Wecom, RobotMessage::Image { png }) => {
            limit("image", png.len(), IMAGE_MAX)?;
            let b64 = base64::engine::general_purpose::STANDARD.encode(png);
            json!({"msgtype": "image", "image": {"base64": b64, "md5": md5_hex(png)}})
        }
        (RobotKind::Wecom, RobotMessage::File { bytes, .. }) => {
            limit("file", bytes.len(), FILE_MAX)?;
            json!({"msgtype": "file", "file": {"media_id": media_id}})
        }
        (RobotKind::Dingtalk, RobotMessage::Markdown { title, text, mention }) => {
            limit("markdown text", text.len(), MARKDOWN_MAX)?;
            json!({"msgtype": "markdown", "markdown": {"title": title, "text": text}, "at": {"atMobiles": mobiles(*mention), "isAtAll": false}})
        }
        (RobotKind::Dingtalk, RobotMessage::Text { content, mention }) => {
            limit("text content", content.len(), TEXT_MAX)?;
            json!({"msgtype": "text", "text": {"content": content}, "at": {"atMobiles": mobiles(*mention), "isAtAll": false}})
        }
        (RobotKind::Dingtalk, RobotMessage::Image { .. } | RobotMessage::File { .. }) => return Err(unsupported()),
    })
}

/// Hash of what a message shows, for its delivery record.
pub fn message_hash(msg: &RobotMessage) -> String {
    use sha2::Digest;
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part(msg.what().as_bytes());
    match msg {
        RobotMessage::Markdown { title, text, .. } => {
            part(title.as_bytes());
            part(text.as_bytes());
        }
        RobotMessage::Text { content, .. } => part(content.as_bytes()),
        RobotMessage::Image { png } => part(png),
        RobotMessage::File { filename, bytes } => {
            part(filename.as_bytes());
            part(bytes);
        }
    }
    hex::encode(&h.finalize()[..16])
}

/// The URL a message is posted to, with the key or token shown as `***`:
/// for dry runs and logs.
pub fn redacted_url(robot: &RobotConfig) -> String {
    let base = robot.base_url.trim_end_matches('/');
    match robot.kind {
        RobotKind::Wecom => format!("{base}/cgi-bin/webhook/send?key=***"),
        RobotKind::Dingtalk => format!("{base}/robot/send?access_token=***&timestamp=…&sign=…"),
    }
}

/// How a request ended, before the retry policy decides.
enum Answer {
    Ok(Value),
    Retry(RobotFailure),
    Fail(RobotFailure),
}

/// The robots of a run: one HTTP client, each robot paced on its own, and a
/// robot that refused the key or could not be reached not tried again.
pub struct RobotClient {
    http: reqwest::blocking::Client,
    last_sent: HashMap<String, Instant>,
    stopped: HashMap<String, String>,
}

impl RobotClient {
    /// A client for a run; connects only when sending.
    pub fn new() -> Result<RobotClient, reqwest::Error> {
        let http = reqwest::blocking::Client::builder().connect_timeout(Duration::from_secs(10)).build()?;
        Ok(RobotClient { http, last_sent: HashMap::new(), stopped: HashMap::new() })
    }

    /// Sends one message (a file: its upload, then the message); returns the
    /// API's answer, `errcode 0: ok`.
    pub fn send(&mut self, robot: &RobotConfig, msg: &RobotMessage) -> Result<String, RobotFailure> {
        if let Some(reason) = self.stopped.get(&robot.name) {
            return Err(RobotFailure::NotAttempted { reason: reason.clone() });
        }
        let result = self.send_unchecked(robot, msg);
        if let Err(f) = &result {
            let stop = match f {
                RobotFailure::Api { errcode, .. } => REFUSED.contains(errcode),
                RobotFailure::Secret { .. } | RobotFailure::Transport { .. } => true,
                _ => false,
            };
            if stop {
                self.stopped.insert(robot.name.clone(), format!("an earlier message to robot “{}” failed: {f}", robot.name));
            }
        }
        result
    }

    fn send_unchecked(&mut self, robot: &RobotConfig, msg: &RobotMessage) -> Result<String, RobotFailure> {
        let media_id = match (robot.kind, msg) {
            (RobotKind::Wecom, RobotMessage::File { filename, bytes }) => {
                body(robot, msg, "")?;
                let answer = self.post(robot, |c, url| c.upload(url, filename, bytes), Endpoint::Upload)?;
                answer.get("media_id").and_then(Value::as_str).unwrap_or_default().to_string()
            }
            _ => String::new(),
        };
        let json = body(robot, msg, &media_id)?;
        let answer = self.post(robot, |c, url| c.http.post(url).json(&json), Endpoint::Send)?;
        Ok(format!("errcode 0: {}", answer.get("errmsg").and_then(Value::as_str).unwrap_or("ok")))
    }

    fn upload(&self, url: &str, filename: &str, bytes: &[u8]) -> reqwest::blocking::RequestBuilder {
        // reqwest's multipart feature is not enabled for one form: built by hand.
        let boundary = format!("manyi-{}", md5_hex(bytes));
        let mut form = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"{}\"; filelength={}\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
            filename.replace(['"', '\r', '\n'], "_"),
            bytes.len()
        )
        .into_bytes();
        form.extend_from_slice(bytes);
        form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.http.post(url).header("Content-Type", format!("multipart/form-data; boundary={boundary}")).body(form)
    }

    /// Posts to a robot endpoint under the pace and the retry policy.
    fn post(
        &mut self,
        robot: &RobotConfig,
        request: impl Fn(&Self, &str) -> reqwest::blocking::RequestBuilder,
        endpoint: Endpoint,
    ) -> Result<Value, RobotFailure> {
        let backoff = Backoff::tries(robot.attempts, Duration::from_millis(robot.backoff_ms), Duration::from_secs(120));
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A fresh URL each try: 钉钉 signs the timestamp, which must be recent.
            let url = endpoint.url(robot)?;
            self.pace(robot);
            let sent = request(self, &url).timeout(Duration::from_secs(robot.timeout_secs.max(1))).send();
            let failure = match judge(sent, attempt) {
                Answer::Ok(v) => return Ok(v),
                Answer::Fail(f) => return Err(f),
                Answer::Retry(f) => f,
            };
            let Some(wait) = backoff.wait_after(attempt, None) else { return Err(failure) };
            tracing::warn!(robot = %robot.name, attempt, wait_ms = wait.as_millis() as u64, failure = %failure, "robot send failed; retrying");
            std::thread::sleep(wait);
        }
    }

    /// Waits until the robot's least interval since its last request has passed.
    fn pace(&mut self, robot: &RobotConfig) {
        let interval = Duration::from_millis(robot.min_interval_ms);
        if let Some(last) = self.last_sent.get(&robot.name) {
            let since = last.elapsed();
            if since < interval {
                std::thread::sleep(interval - since);
            }
        }
        self.last_sent.insert(robot.name.clone(), Instant::now());
    }
}

/// Which endpoint of a robot a request goes to.
#[derive(Clone, Copy)]
enum Endpoint {
    Send,
    Upload,
}

impl Endpoint {
    /// The URL with the key, or the token, timestamp and signature, read from
    /// the environment now.
    fn url(self, robot: &RobotConfig) -> Result<String, RobotFailure> {
        let secret = |var: &Option<String>, what: &'static str| {
            let var = var.clone().unwrap_or_default();
            std::env::var(&var).ok().filter(|v| !v.is_empty()).ok_or(RobotFailure::Secret { var, what, robot: robot.name.clone() })
        };
        let base = robot.base_url.trim_end_matches('/');
        Ok(match (robot.kind, self) {
            (RobotKind::Wecom, Endpoint::Send) => {
                format!("{base}/cgi-bin/webhook/send?key={}", url_encode(&secret(&robot.key_env, "key")?))
            }
            (RobotKind::Wecom, Endpoint::Upload) => {
                format!("{base}/cgi-bin/webhook/upload_media?key={}&type=file", url_encode(&secret(&robot.key_env, "key")?))
            }
            (RobotKind::Dingtalk, _) => {
                let token = secret(&robot.token_env, "access token")?;
                let sec = secret(&robot.secret_env, "secret")?;
                let ts = chrono::Utc::now().timestamp_millis();
                format!("{base}/robot/send?access_token={}&timestamp={ts}&sign={}", url_encode(&token), dingtalk_sign(&sec, ts))
            }
        })
    }
}

/// Sorts an HTTP result into success, a failure worth retrying (throttled,
/// 5xx, 429, no answer) and one that is not.
fn judge(sent: reqwest::Result<reqwest::blocking::Response>, attempts: u32) -> Answer {
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return Answer::Retry(RobotFailure::Transport { reason: describe(e), attempts }),
    };
    let status = resp.status().as_u16();
    let text = match resp.text() {
        Ok(t) => t,
        Err(e) => return Answer::Retry(RobotFailure::Transport { reason: describe(e), attempts }),
    };
    if status != 200 {
        let body: String = text.chars().take(200).collect();
        let f = RobotFailure::Http { status, body, attempts };
        return if status >= 500 || status == 429 { Answer::Retry(f) } else { Answer::Fail(f) };
    }
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        let body: String = text.chars().take(200).collect();
        return Answer::Fail(RobotFailure::Http { status, body: format!("not JSON: {body}"), attempts });
    };
    match v.get("errcode").and_then(Value::as_i64) {
        Some(0) => Answer::Ok(v),
        code => {
            let errcode = code.unwrap_or(-1);
            let errmsg = v.get("errmsg").and_then(Value::as_str).unwrap_or_default().to_string();
            let f = RobotFailure::Api { errcode, errmsg, attempts };
            if matches!(errcode, WECOM_THROTTLED | DINGTALK_THROTTLED) { Answer::Retry(f) } else { Answer::Fail(f) }
        }
    }
}

/// reqwest's error with its causes (connection refused, reset…), without the URL (it holds the key).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// The MD5 (lower-case hex) 企业微信 asks of an image message.
fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_the_rfc_1321_examples() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(md5_hex(b"message digest"), "f96b697d7cb7938d525a2f31aaf161d0");
    }

    #[test]
    fn dingtalk_signature_matches_a_known_vector() {
        // Computed independently with Python:
        // base64(hmac.new(b"SECtest", b"1700000000000\nSECtest", sha256).digest()), then URL-encoded.
        assert_eq!(dingtalk_sign("SECtest", 1_700_000_000_000), "aZLLrriXgn05YbwaGR7knYsLeJADjr9NwLaNNKpxh4g%3D");
    }

    #[test]
    fn url_encoding_leaves_only_unreserved_characters() {
        assert_eq!(url_encode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(url_encode("k-1_2.3~"), "k-1_2.3~");
    }
}
