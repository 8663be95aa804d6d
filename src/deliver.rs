//! Deliver: rendered reports as email, to an SMTP server or to the outbox
//! directory of `.eml` files when none is configured.
//!
//! This stage builds and sends messages; whether a recipient should get one
//! (the exactly-once rule) is decided by the pipeline from the delivery
//! records in state.db, using [`content_hash`] to note what was sent.

use crate::render::Rendered;
use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, Message};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

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

/// Builds the MIME message: multipart/alternative of text and HTML.
pub fn build_message(from: &str, to: &[String], report: &Rendered) -> Result<Message, DeliverError> {
    let from: Mailbox =
        from.parse().map_err(|e: lettre::address::AddressError| DeliverError::Address { address: from.into(), reason: e.to_string() })?;
    let mut builder = Message::builder().from(from).subject(report.subject.clone()).date_now();
    for addr in to {
        let a: Address = addr
            .parse()
            .map_err(|e: lettre::address::AddressError| DeliverError::Address { address: addr.clone(), reason: e.to_string() })?;
        builder = builder.to(Mailbox::new(None, a));
    }
    builder
        .multipart(MultiPart::alternative_plain_html(report.text.clone(), report.html.clone()))
        .map_err(|source| DeliverError::Build { subject: report.subject.clone(), source })
}

/// Writes a message to the outbox as `<name>.eml`; returns the path.
pub fn write_outbox(outbox: &Path, name: &str, message: &Message) -> Result<PathBuf, DeliverError> {
    let path = outbox.join(format!("{name}.eml"));
    crate::store::write_atomic(&path, &message.formatted())?;
    Ok(path)
}
