//! The invitation email: templates rendered with the invitee's fields, the
//! one-time link in both parts, its QR code inline, sent over SMTP (or into
//! a directory outbox) with lettre.

mod dkim;
mod message;
mod outage;
pub use mydex_qr as qr;
mod templates;
mod transport;

pub use dkim::{DkimError, Signer};
pub use message::{MailHeaders, MessageError, build_message, qr_content_id};
pub use outage::Outage;
pub use qr::qr_png;
pub use templates::{MailContext, RenderError, Rendered, TemplateError, Templates};
pub use transport::{MailError, Mailer, MailerSetupError, SmtpUnreachable};
