//! `[smtp]`: where invitations are mailed (an SMTP server, or a directory
//! outbox), as whom, and the server's password.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::show;

use super::error::ConfigError;
use super::validate::Validator;

#[derive(Debug, Clone)]
pub enum SmtpTarget {
    /// lettre's SMTP URL (with the password, if any, kept apart).
    Smtp {
        url: String,
        username: Option<String>,
    },
    /// A directory outbox: each message written as an `.eml` file.
    Outbox(PathBuf),
}

/// As `check-config` shows it: the URL, or `file://` and the outbox.
impl std::fmt::Display for SmtpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SmtpTarget::Smtp { url, .. } => f.write_str(url),
            SmtpTarget::Outbox(dir) => write!(f, "file://{}", dir.display()),
        }
    }
}

#[derive(Serialize)]
pub struct SmtpSettings {
    #[serde(rename = "url", serialize_with = "show::display")]
    pub target: SmtpTarget,
    #[serde(skip)]
    pub password: Option<SecretString>,
    #[serde(rename = "password", serialize_with = "show::optional_secret")]
    pub password_source: Option<PathBuf>,
    #[serde(serialize_with = "show::display")]
    pub from: lettre::message::Mailbox,
    #[serde(serialize_with = "show::duration")]
    pub timeout: Duration,
    pub max_attempts: u32,
    /// VERP envelope sender with one `{token}` (a bounce names the mail).
    pub return_path: Option<String>,
    /// A `mailto:` unsubscribe address beside the one-click URL.
    pub unsubscribe_mailto: Option<String>,
    /// Soft bounces of one address after which it counts as hard.
    pub max_soft_bounces: u32,
    /// DKIM signing: domain, selector and key, all three or none.
    pub dkim: Option<super::dkim::DkimSettings>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    url: Option<String>,
    password_file: Option<PathBuf>,
    from: Option<String>,
    #[serde(default, with = "humantime_serde::option")]
    timeout: Option<Duration>,
    max_attempts: Option<u32>,
    return_path: Option<String>,
    unsubscribe_mailto: Option<String>,
    max_soft_bounces: Option<u32>,
    dkim_domain: Option<String>,
    dkim_selector: Option<String>,
    dkim_key_file: Option<PathBuf>,
}

impl Validator {
    pub(super) fn smtp(&self, raw: RawSmtp) -> Result<SmtpSettings, ConfigError> {
        let url = self.required("smtp.url", raw.url)?;
        let target = self.smtp_target(url)?;
        let username = match &target {
            SmtpTarget::Smtp { username, .. } => username.clone(),
            SmtpTarget::Outbox(_) => None,
        };
        let password = self.secret_text(
            "smtp.password_file",
            "smtp_password",
            raw.password_file,
            false,
        )?;
        if username.is_some() && password.is_none() {
            return Err(self.err(
                "smtp.password_file",
                "is required when smtp.url names a user",
            ));
        }
        let from_raw = self.required("smtp.from", raw.from)?;
        let from = self.mailbox("smtp.from", &from_raw)?;
        let return_path = raw.return_path.map(|r| self.return_path(r)).transpose()?;
        let unsubscribe_mailto = raw
            .unsubscribe_mailto
            .map(|m| self.address("smtp.unsubscribe_mailto", m))
            .transpose()?;
        let max_soft_bounces = raw.max_soft_bounces.unwrap_or(3);
        if !(1..=100).contains(&max_soft_bounces) {
            return Err(self.err("smtp.max_soft_bounces", "must be between 1 and 100"));
        }
        let dkim = self.dkim(raw.dkim_domain, raw.dkim_selector, raw.dkim_key_file)?;
        Ok(SmtpSettings {
            return_path,
            unsubscribe_mailto,
            max_soft_bounces,
            dkim,
            target,
            password_source: password.as_ref().map(|(_, p)| p.clone()),
            password: password.map(|(t, _)| t),
            from,
            timeout: raw.timeout.unwrap_or(Duration::from_secs(30)),
            max_attempts: raw.max_attempts.unwrap_or(8).max(1),
        })
    }

    /// `smtp.return_path`: one `{token}`, a valid address once it is filled.
    fn return_path(&self, raw: String) -> Result<String, ConfigError> {
        if raw.matches("{token}").count() != 1 {
            return Err(self.err(
                "smtp.return_path",
                "must hold `{token}` exactly once, e.g. \"bounces+{token}@example.com\"",
            ));
        }
        let sample = raw.replace("{token}", &"b".repeat(crate::domain::MAIL_TOKEN_LEN));
        let (local, _) = sample.split_once('@').unwrap_or((&sample, ""));
        if local.contains('@') || !raw.split('@').next().unwrap_or("").contains("{token}") {
            return Err(self.err("smtp.return_path", "`{token}` must be in the local part"));
        }
        self.address("smtp.return_path", sample)?;
        Ok(raw)
    }

    /// An email address (for `key`).
    fn address(&self, key: &str, raw: String) -> Result<String, ConfigError> {
        crate::domain::Email::parse(&raw)
            .map(|e| e.as_str().to_string())
            .map_err(|e| self.err(key, e.to_string()))
    }

    /// `smtp.url`: `file://dir`, or an smtp(s) URL lettre understands, with
    /// no password in it.
    fn smtp_target(&self, url: String) -> Result<SmtpTarget, ConfigError> {
        if let Some(rest) = url.strip_prefix("file://") {
            if rest.is_empty() {
                return Err(self.err("smtp.url", "file:// needs a directory path"));
            }
            return Ok(SmtpTarget::Outbox(self.path(PathBuf::from(rest))));
        }
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| self.err("smtp.url", format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "smtp" | "smtps") || parsed.host_str().is_none() {
            return Err(self.err("smtp.url", "must be smtp://host[:port][?tls=required|opportunistic], smtps://host[:port], or file:///dir"));
        }
        if parsed.password().is_some() {
            return Err(self.err(
                "smtp.url",
                "holds a password: put it in smtp.password_file instead",
            ));
        }
        let username = (!parsed.username().is_empty()).then(|| percent_decode(parsed.username()));
        if lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&url).is_err() {
            return Err(self.err("smtp.url", "is not understood by the SMTP client (lettre)"));
        }
        Ok(SmtpTarget::Smtp { url, username })
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b"), "a@b");
        assert_eq!(percent_decode("a%4"), "a%4");
    }
}
