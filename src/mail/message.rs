//! The MIME structure of an invitation: multipart/alternative of the text
//! part and a multipart/related HTML part carrying the QR code inline
//! (Content-ID), with Message-ID and Date.

use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

use super::Rendered;

/// The Content-ID of the QR image for invitation `id`.
pub fn qr_content_id(id: u64, from: &Mailbox) -> String {
    format!("qr-{id}@{}", from.email.domain())
}

pub fn build_message(
    from: &Mailbox,
    to_name: Option<&str>,
    to: &str,
    id: u64,
    rendered: Rendered,
    qr_png: Vec<u8>,
) -> Result<Message, String> {
    let to_addr: lettre::Address = to.parse().map_err(|e| format!("recipient {to:?}: {e}"))?;
    let to = Mailbox::new(to_name.map(str::to_string), to_addr);
    let cid = qr_content_id(id, from);
    let nonce: u64 = rand::random();
    let message_id = format!("<inv-{id}-{nonce:016x}@{}>", from.email.domain());
    let png_type = ContentType::parse("image/png").map_err(|e| e.to_string())?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(rendered.subject)
        .message_id(Some(message_id))
        .date_now()
        .multipart(
            MultiPart::alternative()
                .singlepart(SinglePart::plain(rendered.text))
                .multipart(
                    MultiPart::related()
                        .singlepart(SinglePart::html(rendered.html))
                        .singlepart(Attachment::new_inline(cid).body(qr_png, png_type)),
                ),
        )
        .map_err(|e| format!("cannot build the message: {e}"))
}
