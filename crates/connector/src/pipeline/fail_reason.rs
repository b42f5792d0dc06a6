//! Why the dispatcher failed an invitation for good: the reason stored on
//! it (`reason`), logged, and counted against its campaign's error
//! threshold. The texts are the ones operators know.

use crate::mydex::MydexError;
use crate::notify::email::{MessageError, RenderError};

#[derive(Debug, thiserror::Error)]
pub enum FailReason {
    /// Mydex refused the link (anything but "unavailable").
    #[error("{0}")]
    Mydex(MydexError),
    #[error("campaign {0:?} is no longer configured")]
    CampaignGone(String),
    /// No QR code could be made of the link.
    #[error("{0}")]
    Qr(mydex_qr::LinkQrError),
    #[error("{0}")]
    Render(RenderError),
    #[error("{0}")]
    Message(MessageError),
    /// The SMTP server refused the message for good (5xx).
    #[error("SMTP refused: {0}")]
    SmtpRefused(String),
    /// Transient SMTP failures until `smtp.max_attempts`.
    #[error("SMTP still failing after {attempts} attempts: {why}")]
    SmtpExhausted { attempts: u32, why: String },
    /// The person went on the suppression list (its reason: `unsubscribed`,
    /// `bounced: …`) while the mail was on its way.
    #[error("{0}")]
    Suppressed(String),
}
