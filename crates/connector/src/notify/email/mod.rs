//! The invitation email: templates rendered with the invitee's fields and
//! who is asking (`[organisation]`), the one-time link in both parts, its
//! QR code (and the organisation's logo) inline, composed in one place for
//! the daemon and `mail preview`, sent over SMTP (or into a directory
//! outbox) with lettre.

mod compose;
mod contact;
mod dkim;
mod duration_words;
mod message;
mod outage;
pub use mydex_qr as qr;
mod templates;
mod transport;

pub use compose::{ComposeError, Composed, Draft, compose};
pub use contact::{contact_address, contact_html, escape_html};
pub use dkim::{DkimError, Signer};
pub use duration_words::duration_in_words;
pub use message::{
    InlineImage, MailHeaders, MessageError, build_message, logo_content_id, qr_content_id,
};
pub use outage::Outage;
pub use qr::qr_png;
pub use templates::{MailContext, RenderError, Rendered, TemplateError, Templates};
pub use transport::{MailError, Mailer, MailerSetupError, SmtpUnreachable};
