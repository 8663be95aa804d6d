//! Deliver: rendered reports as email, to an SMTP server or to the outbox
//! directory of `.eml` files when none is configured.
//!
//! This stage builds and sends messages; whether a recipient should get one
//! (the exactly-once rule) is decided by the pipeline from the delivery
//! records in state.db, using [`content_hash`] to note what was sent.
//!
//! Group robots (企业微信 / 钉钉) are the second channel: [`robot`] sends,
//! [`robot_text`] writes what they show.

pub mod robot;
pub mod robot_text;

use crate::config::{SmtpConfig, SmtpSecurity};
use crate::render::{Attachment as ReportAttachment, Rendered};
use crate::retry::Backoff;
use base64::Engine as _;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Address, Message, SmtpTransport, Transport};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors of delivery, each naming the recipient or file.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// An address could not be used.
    #[error("address “{address}”: {reason}")]
    Address {
        /// The address as configured.
        address: String,
        /// Why it is not usable.
        reason: String,
    },
    /// The message could not be built.
    #[error("building the message “{subject}”: {source}")]
    Build {
        /// Subject of the message.
        subject: String,
        /// lettre's error.
        source: lettre::error::Error,
    },
    /// The outbox could not be written.
    #[error("outbox: {0}")]
    Outbox(#[from] crate::store::StoreError),
    /// The SMTP password is not in the environment.
    #[error("the SMTP password is read from the environment variable {var}, which is not set (or not valid UTF-8): set it before running")]
    Password {
        /// Name of the variable.
        var: String,
    },
    /// The extra root certificate could not be used.
    #[error("mail.smtp.ca_file “{path}”: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// Why it is not usable.
        reason: String,
    },
    /// TLS could not be set up for the server.
    #[error("TLS settings for the SMTP server “{host}”: {source}")]
    Tls {
        /// Host name.
        host: String,
        /// lettre's error.
        source: lettre::transport::smtp::Error,
    },
}

/// Why a message did not reach its recipients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendFailure {
    /// The server refused for good (5xx): sending the same again will not help.
    #[error("refused by the server: {reply}")]
    Permanent {
        /// The server's reply, with its code.
        reply: String,
    },
    /// Temporary failures (4xx, connection lost, timeout) until the attempts ran out.
    #[error("temporary failure, gave up after {attempts} attempt(s): {reply}")]
    Temporary {
        /// The last error or reply.
        reply: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Not attempted: an earlier message showed the server unreachable or the
    /// account refused, so the rest of the run does not hammer it.
    #[error("not attempted: {reason}")]
    NotAttempted {
        /// The failure that stopped sending.
        reason: String,
    },
}

/// Hash of what a recipient reads: subject, text, HTML, images and
/// attachments. Headers such as Date and Message-ID are left out so that an
/// unchanged report hashes the same.
pub fn content_hash(r: &Rendered) -> String {
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for p in [&r.subject, &r.text, &r.html] {
        part(p.as_bytes());
    }
    for i in &r.images {
        part(i.cid.as_bytes());
        part(&i.png);
    }
    for a in &r.attachments {
        part(a.filename.as_bytes());
        part(&a.bytes);
    }
    hex::encode(&h.finalize()[..16])
}

/// A Message-ID derived from what identifies the message (job, period,
/// office, recipients...), so that a copy sent again after a
/// crash carries the same id and mail systems that deduplicate by Message-ID
/// show it once.
pub fn message_id(from: &str, key: &[&str]) -> String {
    let mut h = Sha256::new();
    for k in key {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
    }
    let domain = from.parse::<Mailbox>().map(|m| m.email.domain().to_string()).unwrap_or_else(|_| "manyi.invalid".into());
    format!("<{}.manyi@{domain}>", hex::encode(&h.finalize()[..16]))
}

fn parse_address(addr: &str) -> Result<Address, DeliverError> {
    addr.parse().map_err(|e: lettre::address::AddressError| DeliverError::Address { address: addr.into(), reason: e.to_string() })
}

/// Builds the MIME message: multipart/mixed ⊃ (multipart/related ⊃
/// (multipart/alternative of text and HTML) + the CID images), then the
/// attachments.
pub fn build_message(from: &str, to: &[String], report: &Rendered, message_id: &str) -> Result<Message, DeliverError> {
    let from: Mailbox =
        from.parse().map_err(|e: lettre::address::AddressError| DeliverError::Address { address: from.into(), reason: e.to_string() })?;
    let mut builder = Message::builder().from(from).subject(report.subject.clone()).date_now().message_id(Some(message_id.into()));
    for addr in to {
        builder = builder.to(Mailbox::new(None, parse_address(addr)?));
    }
    let build_err = |source| DeliverError::Build { subject: report.subject.clone(), source };
    let mut related = MultiPart::related().multipart(MultiPart::alternative_plain_html(report.text.clone(), report.html.clone()));
    let png = ContentType::parse("image/png").map_err(|e| build_err(lettre::error::Error::Io(std::io::Error::other(e))))?;
    for img in &report.images {
        related = related.singlepart(Attachment::new_inline(img.cid.clone()).body(img.png.clone(), png.clone()));
    }
    let mut mixed = MultiPart::mixed().multipart(related);
    for a in &report.attachments {
        mixed = mixed.singlepart(attachment_part(a).map_err(build_err)?);
    }
    builder.multipart(mixed).map_err(build_err)
}

/// An attachment whose non-ASCII name survives every mail client: lettre puts
/// it in Content-Disposition as RFC 2231 `filename*=` (the standard), and
/// the Content-Type gets `name=` in RFC 2047 form too, which is what
/// Outlook, Foxmail and the web mail of Chinese providers read first.
fn attachment_part(a: &ReportAttachment) -> Result<SinglePart, lettre::error::Error> {
    let name = if a.filename.is_ascii() {
        a.filename.clone()
    } else {
        format!("=?utf-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(a.filename.as_bytes()))
    };
    let ct = ContentType::parse(&format!("{}; name=\"{name}\"", a.content_type))
        .or_else(|_| ContentType::parse(&a.content_type))
        .map_err(|e| lettre::error::Error::Io(std::io::Error::other(format!("content type “{}”: {e}", a.content_type))))?;
    Ok(Attachment::new(a.filename.clone()).body(a.bytes.clone(), ct))
}

/// Writes a message to the outbox as `<name>.eml`; returns the path.
///
/// A delivered `.eml` is never overwritten: the same bytes again are left as
/// they are, different bytes under the same name go to `<name>.2.eml`,
/// `<name>.3.eml` … (an outbox file may already have been handed on, and an
/// inspection asks what was sent).
pub fn write_outbox(outbox: &Path, name: &str, message: &Message) -> Result<PathBuf, DeliverError> {
    let bytes = message.formatted();
    for n in 1u32..=999 {
        let path = if n == 1 { outbox.join(format!("{name}.eml")) } else { outbox.join(format!("{name}.{n}.eml")) };
        match std::fs::read(&path) {
            Ok(existing) if existing == bytes => return Ok(path),
            Ok(_) => {
                tracing::warn!(path = %path.display(), "an outbox file of this name holds another message; not overwritten");
                continue;
            }
            Err(_) => {
                crate::store::write_atomic(&path, &bytes)?;
                return Ok(path);
            }
        }
    }
    let path = outbox.join(format!("{name}.eml"));
    Err(crate::store::StoreError::Io {
        path,
        source: std::io::Error::other("999 different messages under one outbox name; clear the outbox"),
    }
    .into())
}

/// A connection to the SMTP server, reused from message to message, with
/// the retry policy for temporary failures.
pub struct Mailer {
    transport: SmtpTransport,
    from: Address,
    backoff: Backoff,
    stopped: Option<String>,
}

impl Mailer {
    /// Sets up the transport from the configuration; reads the password
    /// from its environment variable. Connects only when sending.
    pub fn new(cfg: &SmtpConfig, from: &str, base_dir: &Path) -> Result<Mailer, DeliverError> {
        let from_box: Mailbox = from
            .parse()
            .map_err(|e: lettre::address::AddressError| DeliverError::Address { address: from.into(), reason: e.to_string() })?;
        let tls_err = |source| DeliverError::Tls { host: cfg.host.clone(), source };
        let mut tls = TlsParameters::builder(cfg.host.clone());
        if let Some(ca) = &cfg.ca_file {
            let path = base_dir.join(ca);
            let pem = std::fs::read(&path).map_err(|e| DeliverError::Certificate { path: path.clone(), reason: e.to_string() })?;
            let cert = Certificate::from_pem(&pem).map_err(|e| DeliverError::Certificate { path, reason: e.to_string() })?;
            tls = tls.add_root_certificate(cert);
        }
        let tls = match cfg.security {
            SmtpSecurity::Starttls => Tls::Required(tls.build_rustls().map_err(tls_err)?),
            SmtpSecurity::Tls => Tls::Wrapper(tls.build_rustls().map_err(tls_err)?),
            SmtpSecurity::Plain => Tls::None,
        };
        let mut builder = SmtpTransport::builder_dangerous(cfg.host.clone())
            .port(cfg.port())
            .tls(tls)
            .timeout(Some(Duration::from_secs(cfg.timeout_secs)))
            // The pipeline sends one message at a time: one connection, kept
            // open between messages and offices.
            .pool_config(PoolConfig::new().max_size(1).idle_timeout(Duration::from_secs(60)));
        if let Some(user) = &cfg.username {
            let password = match &cfg.password_env {
                Some(var) => std::env::var(var).map_err(|_| DeliverError::Password { var: var.clone() })?,
                None => String::new(),
            };
            builder =
                builder.credentials(Credentials::new(user.clone(), password)).authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        Ok(Mailer {
            transport: builder.build(),
            from: from_box.email,
            // `attempts` counts the first try, as the policy does; SMTP waits have no cap.
            backoff: Backoff::tries(cfg.attempts, Duration::from_millis(cfg.backoff_ms), Duration::MAX),
            stopped: None,
        })
    }

    /// Sends a message to these envelope recipients (which may be a subset
    /// of its To header), retrying temporary failures under the shared
    /// backoff policy ([`Backoff`]). Returns the server's reply to the message.
    pub fn send(&mut self, message: &Message, to: &[String]) -> Result<String, SendFailure> {
        if let Some(reason) = &self.stopped {
            return Err(SendFailure::NotAttempted { reason: reason.clone() });
        }
        let rcpt = to
            .iter()
            .map(|a| parse_address(a).map_err(|e| SendFailure::Permanent { reply: e.to_string() }))
            .collect::<Result<Vec<_>, _>>()?;
        let envelope = lettre::address::Envelope::new(Some(self.from.clone()), rcpt)
            .map_err(|e| SendFailure::Permanent { reply: format!("envelope: {e}") })?;
        let bytes = message.formatted();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.transport.send_raw(&envelope, &bytes) {
                Ok(resp) => return Ok(reply_text(resp.code().to_string(), resp.message())),
                Err(e) => {
                    let reply = describe(&e);
                    let code = e.status().map(u16::from);
                    if e.is_permanent() {
                        // The account is refused: every message would be.
                        if matches!(code, Some(530 | 534 | 535 | 538)) {
                            self.stopped = Some(format!("the server refused the account: {reply}"));
                        }
                        return Err(SendFailure::Permanent { reply });
                    }
                    let Some(wait) = self.backoff.wait_after(attempt, None) else {
                        if code.is_none() {
                            // No reply at all (refused, dropped, timed out) after
                            // every attempt: the rest of the run fails fast.
                            self.stopped = Some(format!("the server could not be reached: {reply}"));
                        }
                        return Err(SendFailure::Temporary { reply, attempts: attempt });
                    };
                    tracing::warn!(attempt, wait_ms = wait.as_millis() as u64, %reply, "temporary SMTP failure; retrying");
                    std::thread::sleep(wait);
                }
            }
        }
    }
}

impl Drop for Mailer {
    fn drop(&mut self) {
        self.transport.shutdown();
    }
}

fn reply_text<'a>(code: String, lines: impl Iterator<Item = &'a str>) -> String {
    let text = lines.collect::<Vec<_>>().join(" ");
    if text.is_empty() { code } else { format!("{code} {text}") }
}

/// The server's reply as it sent it (`550 5.1.1 …`) when there is one,
/// otherwise lettre's error with its causes (connection refused, reset…).
fn describe(e: &lettre::transport::smtp::Error) -> String {
    if let Some(code) = e.status() {
        let text = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_default();
        return format!("{code} {text}").trim_end().to_string();
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
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
