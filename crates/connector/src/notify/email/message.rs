//! The MIME structure of an invitation: multipart/alternative of the text
//! part and a multipart/related HTML part carrying its images inline
//! (Content-ID: the QR code first, then the organisation's logo), with
//! Message-ID and Date; the one-click unsubscribe headers (RFC 8058) and,
//! with a VERP return path, the envelope sender.

use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

use super::Rendered;

/// The Content-ID of the QR image for invitation `id`.
pub fn qr_content_id(id: u64, from: &Mailbox) -> String {
    format!("qr-{id}@{}", from.email.domain())
}

/// The Content-ID of the logo in invitation `id`'s mail.
pub fn logo_content_id(id: u64, from: &Mailbox) -> String {
    format!("logo-{id}@{}", from.email.domain())
}

/// An image the HTML part shows by `cid:`.
#[derive(Debug, Clone)]
pub struct InlineImage {
    pub content_id: String,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
}

/// Why an invitation's message could not be built (the invitation fails
/// with this text).
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("recipient {to:?}: {error}")]
    Recipient {
        to: String,
        error: lettre::address::AddressError,
    },
    #[error("{0}")]
    ContentType(lettre::message::header::ContentTypeErr),
    #[error("cannot build the message: {0}")]
    Build(lettre::error::Error),
}

/// The per-mail headers that are not the content: where to unsubscribe,
/// and where bounces go.
pub struct MailHeaders {
    /// The whole `List-Unsubscribe` value (`<https://…>[, <mailto:…>]`).
    pub list_unsubscribe: String,
    /// The envelope sender (MAIL FROM), when `smtp.return_path` is set.
    pub envelope_from: Option<String>,
    /// The mail's `m` token, carried in its Message-ID so a report quoting
    /// the original headers names the mail (`domain::message_id`); without
    /// one, a Message-ID that names nothing.
    pub message_token: Option<String>,
}

pub fn build_message(
    headers: &MailHeaders,
    from: &Mailbox,
    to_name: Option<&str>,
    to: &str,
    id: u64,
    rendered: &Rendered,
    images: &[InlineImage],
) -> Result<Message, MessageError> {
    let to_addr: lettre::Address = to.parse().map_err(|e| MessageError::Recipient {
        to: to.to_string(),
        error: e,
    })?;
    // A display name is the invitee's own text: control characters (CR, LF,
    // NUL...) have no place in a header, and lettre panics on some of them.
    let to_name = to_name
        .map(|n| n.chars().filter(|c| !c.is_control()).collect::<String>())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    let to = Mailbox::new(to_name, to_addr);
    let nonce: u64 = rand::random();
    let message_id = match &headers.message_token {
        Some(token) => crate::domain::message_id(token, nonce, from.email.domain()),
        None => format!("<inv-{id}-{nonce:016x}@{}>", from.email.domain()),
    };
    let mut related = MultiPart::related().singlepart(SinglePart::html(rendered.html.clone()));
    for image in images {
        let ctype = ContentType::parse(image.content_type).map_err(MessageError::ContentType)?;
        related = related.singlepart(
            Attachment::new_inline(image.content_id.clone()).body(image.bytes.clone(), ctype),
        );
    }
    let mut builder = Message::builder();
    if let Some(sender) = &headers.envelope_from {
        let sender: lettre::Address = sender.parse().map_err(|e| MessageError::Recipient {
            to: sender.clone(),
            error: e,
        })?;
        let envelope = lettre::address::Envelope::new(Some(sender), vec![to.email.clone()])
            .map_err(MessageError::Build)?;
        builder = builder.envelope(envelope);
    }
    builder
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe"),
            headers.list_unsubscribe.clone(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
            "List-Unsubscribe=One-Click".to_string(),
        ))
        .from(from.clone())
        .to(to)
        .subject(rendered.subject.clone())
        .message_id(Some(message_id))
        .date_now()
        .multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::plain(rendered.text.clone()))
                .multipart(related),
        )
        .map_err(MessageError::Build)
}
