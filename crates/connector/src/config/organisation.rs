//! `[organisation]`: who the mails and our pages say is asking. A member
//! decides from the invitation alone whether to trust it, so the built-in
//! templates name the organisation, link its website and privacy notice,
//! say whom to contact and may show its logo (read here once, inline in
//! every mail's HTML part like the QR code).
//!
//! Without the section the daemon still runs (configs written before it
//! existed keep working): the name is `smtp.from`'s display name (else its
//! domain), and `check-config` and the daemon's start warn that the mails
//! give no contact, website or privacy notice.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use super::error::ConfigError;
use super::show;
use super::validate::Validator;

/// The largest logo accepted: it travels in every mail.
pub const MAX_LOGO_BYTES: u64 = 100 * 1024;
/// The largest logo side, in pixels.
pub const MAX_LOGO_SIDE: usize = 2000;
/// The longest `name` and `contact`, in characters.
const MAX_NAME_CHARS: usize = 120;
const MAX_CONTACT_CHARS: usize = 300;

#[derive(Debug, Clone, Serialize)]
pub struct Organisation {
    pub name: String,
    #[serde(serialize_with = "show::url_or_none")]
    pub website: Option<reqwest::Url>,
    /// Free text shown as given (an address in it becomes a `mailto:` link).
    #[serde(serialize_with = "text_or_none")]
    pub contact: Option<String>,
    #[serde(serialize_with = "show::url_or_none")]
    pub privacy_url: Option<reqwest::Url>,
    #[serde(rename = "logo_file", serialize_with = "logo_shown")]
    pub logo: Option<Logo>,
    /// False: no `[organisation]` in the file; `name` comes from `smtp.from`.
    #[serde(skip)]
    pub configured: bool,
}

/// The logo image as read at load: PNG, JPEG or GIF, its size in pixels.
#[derive(Debug, Clone)]
pub struct Logo {
    pub path: PathBuf,
    pub bytes: Arc<[u8]>,
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrganisation {
    name: Option<String>,
    website: Option<String>,
    contact: Option<String>,
    privacy_url: Option<String>,
    logo_file: Option<PathBuf>,
}

fn text_or_none<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_deref().unwrap_or("(none)"))
}

fn logo_shown<S: Serializer>(v: &Option<Logo>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(l) => s.serialize_str(&format!(
            "{} ({}, {}x{} px, {} bytes)",
            l.path.display(),
            l.content_type,
            l.width,
            l.height,
            l.bytes.len()
        )),
        None => s.serialize_str("(none)"),
    }
}

impl Organisation {
    /// What an operator should hear about at `check-config` and at start:
    /// the section missing, or the keys a member would look for.
    pub fn warnings(&self) -> Vec<String> {
        if !self.configured {
            return vec![format!(
                "[organisation] is missing: the mails and the unsubscribe page name {:?} (from \
                 smtp.from) and give no contact, website or privacy notice; add \
                 [organisation] with name, contact, website and privacy_url",
                self.name
            )];
        }
        let mut out = Vec::new();
        if self.website.is_none() {
            out.push("organisation.website is not set: the mails link no website".to_string());
        }
        if self.privacy_url.is_none() {
            out.push(
                "organisation.privacy_url is not set: the mails link no privacy notice".to_string(),
            );
        }
        out
    }
}

impl Validator {
    /// `[organisation]`, or what stands in for it (`from`'s name).
    pub(super) fn organisation(
        &self,
        raw: Option<RawOrganisation>,
        from: &lettre::message::Mailbox,
    ) -> Result<Organisation, ConfigError> {
        let Some(raw) = raw else {
            let name = from
                .name
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| from.email.domain().to_string());
            return Ok(Organisation {
                name,
                website: None,
                contact: None,
                privacy_url: None,
                logo: None,
                configured: false,
            });
        };
        let name = self.required("organisation.name", raw.name)?;
        let name = self.line("organisation.name", &name, MAX_NAME_CHARS)?;
        let contact = self.required("organisation.contact", raw.contact)?;
        let contact = self.line("organisation.contact", &contact, MAX_CONTACT_CHARS)?;
        let website = raw
            .website
            .map(|w| self.url("organisation.website", w.trim()))
            .transpose()?;
        let privacy_url = raw
            .privacy_url
            .map(|w| self.url("organisation.privacy_url", w.trim()))
            .transpose()?;
        let logo = raw.logo_file.map(|p| self.logo(p)).transpose()?;
        Ok(Organisation {
            name,
            website,
            contact: Some(contact),
            privacy_url,
            logo,
            configured: true,
        })
    }

    /// One line of text, trimmed, not empty, at most `max` characters.
    fn line(&self, key: &str, raw: &str, max: usize) -> Result<String, ConfigError> {
        let t = raw.trim();
        if t.is_empty() {
            return Err(self.err(key, "is empty"));
        }
        if t.chars().any(char::is_control) {
            return Err(self.err(
                key,
                "holds a line break or other control character: one line of text",
            ));
        }
        let n = t.chars().count();
        if n > max {
            return Err(self.err(key, format!("is {n} characters long; at most {max}")));
        }
        Ok(t.to_string())
    }

    /// `organisation.logo_file`: a PNG, JPEG or GIF of bounded size.
    fn logo(&self, raw: PathBuf) -> Result<Logo, ConfigError> {
        let key = "organisation.logo_file";
        let path = self.path(raw);
        let shown = path.display();
        let meta = std::fs::metadata(&path)
            .map_err(|e| self.err(key, format!("cannot read {shown}: {e}")))?;
        if !meta.is_file() {
            return Err(self.err(key, format!("{shown} is not a regular file")));
        }
        if meta.len() > MAX_LOGO_BYTES {
            return Err(self.err(
                key,
                format!(
                    "{shown} is {} bytes; a logo travels in every mail, so at most {MAX_LOGO_BYTES} bytes",
                    meta.len()
                ),
            ));
        }
        let bytes =
            std::fs::read(&path).map_err(|e| self.err(key, format!("cannot read {shown}: {e}")))?;
        let not_image = || {
            self.err(
                key,
                format!("{shown} is not a PNG, JPEG or GIF image (what mail programs show inline)"),
            )
        };
        let content_type = match imagesize::image_type(&bytes).map_err(|_| not_image())? {
            imagesize::ImageType::Png => "image/png",
            imagesize::ImageType::Jpeg => "image/jpeg",
            imagesize::ImageType::Gif => "image/gif",
            _ => return Err(not_image()),
        };
        let size = imagesize::blob_size(&bytes).map_err(|_| not_image())?;
        if size.width == 0 || size.height == 0 {
            return Err(not_image());
        }
        if size.width > MAX_LOGO_SIDE || size.height > MAX_LOGO_SIDE {
            return Err(self.err(
                key,
                format!(
                    "{shown} is {}x{} px; at most {MAX_LOGO_SIDE} px a side",
                    size.width, size.height
                ),
            ));
        }
        Ok(Logo {
            path,
            bytes: bytes.into(),
            content_type,
            width: size.width as u32,
            height: size.height as u32,
        })
    }
}
