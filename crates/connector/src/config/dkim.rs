//! `smtp.dkim_domain`, `dkim_selector`, `dkim_key_file` (or the `dkim_key`
//! credential): DKIM signing of every mail, all three or none; the key read
//! and checked here, so a bad key is a configuration error naming the key.

use std::path::PathBuf;

use serde::Serialize;

use super::dkim_key::DkimKey;
use super::error::ConfigError;
use super::validate::Validator;

/// What signs every mail.
#[derive(Serialize)]
pub struct DkimSettings {
    pub domain: String,
    pub selector: String,
    /// The private key as PEM, in the form the signer reads.
    #[serde(skip)]
    pub key: DkimKey,
    #[serde(rename = "key_file", serialize_with = "super::show::path")]
    pub key_source: PathBuf,
}

impl Validator {
    pub(super) fn dkim(
        &self,
        domain: Option<String>,
        selector: Option<String>,
        key_file: Option<PathBuf>,
    ) -> Result<Option<DkimSettings>, ConfigError> {
        let key = self.secret_pem("smtp.dkim_key_file", "dkim_key", key_file)?;
        let (domain, selector, (pem, source)) = match (domain, selector, key) {
            (None, None, None) => return Ok(None),
            (Some(d), Some(s), Some(k)) => (d, s, k),
            (d, s, _) => {
                let missing = if d.is_none() {
                    "smtp.dkim_domain"
                } else if s.is_none() {
                    "smtp.dkim_selector"
                } else {
                    "smtp.dkim_key_file"
                };
                return Err(self.err(
                    missing,
                    "is required: DKIM needs smtp.dkim_domain, smtp.dkim_selector and smtp.dkim_key_file (or the dkim_key credential) together",
                ));
            }
        };
        let label = |v: &str| {
            !v.is_empty()
                && v.len() <= 253
                && v.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                })
        };
        if !label(&domain) {
            return Err(self.err(
                "smtp.dkim_domain",
                format!("{domain:?} is not a domain name"),
            ));
        }
        if !label(&selector) {
            return Err(self.err(
                "smtp.dkim_selector",
                format!("{selector:?} is not a DNS label"),
            ));
        }
        let key = super::dkim_key::read(&pem).map_err(|why| {
            self.err("smtp.dkim_key_file", format!("{}: {why}", source.display()))
        })?;
        Ok(Some(DkimSettings {
            domain,
            selector,
            key,
            key_source: source,
        }))
    }
}
