//! DKIM signing of every mail (lettre's signer), with the headers a
//! mailbox provider checks under the signature, including both one-click
//! unsubscribe headers (RFC 8058 requires them signed). Built once from
//! `smtp.dkim_*`; its `Debug` shows the selector and domain only.

use lettre::Message;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::HeaderName;
use secrecy::ExposeSecret;

use crate::config::{DkimAlgorithm, DkimSettings};

pub struct Signer {
    config: DkimConfig,
    selector: String,
    domain: String,
}

#[derive(Debug, thiserror::Error)]
#[error("smtp.dkim_key_file: the DKIM signer refuses the key")]
pub struct DkimError;

/// The message's own headers under the signature. Not Content-Type: lettre
/// writes it with the multipart body, after the signature is made, so it
/// cannot be covered (the body hash covers the parts).
const SIGNED: [&str; 8] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

impl Signer {
    pub fn new(settings: &DkimSettings) -> Result<Self, DkimError> {
        let algorithm = match settings.key.algorithm {
            DkimAlgorithm::Rsa => DkimSigningAlgorithm::Rsa,
            DkimAlgorithm::Ed25519 => DkimSigningAlgorithm::Ed25519,
        };
        let key = DkimSigningKey::new(settings.key.text.expose_secret(), algorithm)
            .map_err(|_| DkimError)?;
        let config = DkimConfig::new(
            settings.selector.clone(),
            settings.domain.clone(),
            key,
            SIGNED
                .iter()
                .map(|h| HeaderName::new_from_ascii_str(h))
                .collect(),
            DkimCanonicalization {
                header: DkimCanonicalizationType::Relaxed,
                body: DkimCanonicalizationType::Relaxed,
            },
        );
        Ok(Self {
            config,
            selector: settings.selector.clone(),
            domain: settings.domain.clone(),
        })
    }

    /// Sign `message` (the last change made to it).
    pub fn sign(&self, message: &mut Message) {
        message.sign(&self.config);
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer(s={}; d={})", self.selector, self.domain)
    }
}
