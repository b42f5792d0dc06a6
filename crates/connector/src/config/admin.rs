//! `[admin]`: the loopback admin listener and the token its state-changing
//! calls need. The token file's text is taken without the whitespace around
//! it (a file written by `echo` ends with a newline, which no client sends),
//! and refused when what is left could never be sent or is too short.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::show;

use super::error::ConfigError;
use super::validate::Validator;

#[derive(Serialize)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// `members export --with-keys` is allowed (default false).
    pub allow_key_export: bool,
    #[serde(skip)]
    pub token: Option<SecretString>,
    #[serde(rename = "token", serialize_with = "show::admin_token")]
    pub token_source: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    listen: Option<String>,
    token_file: Option<PathBuf>,
    allow_key_export: Option<bool>,
}

impl Validator {
    /// `callback_listen`: the admin listener must differ from it.
    pub(super) fn admin(
        &self,
        raw: RawAdmin,
        callback_listen: SocketAddr,
    ) -> Result<AdminSettings, ConfigError> {
        let listen = self.listen("admin.listen", raw.listen, "127.0.0.1:8081")?;
        let token = self
            .secret_bytes("admin.token_file", "admin_token", raw.token_file, false)?
            .map(|(bytes, p)| match admin_token(&bytes) {
                Ok(t) => Ok((t, p)),
                Err(e) => Err(self.err("admin.token_file", format!("{}: {e}", p.display()))),
            })
            .transpose()?;
        if listen == callback_listen {
            return Err(self.err("admin.listen", "must differ from callback.listen"));
        }
        Ok(AdminSettings {
            listen,
            allow_key_export: raw.allow_key_export.unwrap_or(false),
            token_source: token.as_ref().map(|(_, p)| p.clone()),
            token: token.map(|(t, _)| t),
        })
    }
}

/// The fewest characters (not bytes) an admin token may have.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Why the text of `admin.token_file` cannot be the admin token.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AdminTokenError {
    #[error("is not UTF-8 text")]
    NotText,
    #[error("is empty")]
    Empty,
    #[error(
        "holds a line break, tab or other control character inside the token: no client can send it in a header"
    )]
    Control,
    #[error("the token must be at least {MIN_TOKEN_CHARS} characters; it has {0}")]
    TooShort(usize),
}

/// The admin token in a file's bytes: the text without the whitespace
/// around it, at least `MIN_TOKEN_CHARS` characters, with no control
/// character left (it could never match a header).
pub fn admin_token(bytes: &[u8]) -> Result<SecretString, AdminTokenError> {
    let text = std::str::from_utf8(bytes).map_err(|_| AdminTokenError::NotText)?;
    let token = text.trim();
    if token.is_empty() {
        return Err(AdminTokenError::Empty);
    }
    if token.chars().any(char::is_control) {
        return Err(AdminTokenError::Control);
    }
    let chars = token.chars().count();
    if chars < MIN_TOKEN_CHARS {
        return Err(AdminTokenError::TooShort(chars));
    }
    Ok(SecretString::from(token.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn whitespace_around_is_dropped_and_characters_are_counted() {
        let t = "0123456789abcdef";
        for file in [
            t.to_string(),
            format!("{t}\n"),
            format!("{t}\r\n"),
            format!("{t} \t\n\n"),
            format!("  {t}\n"),
        ] {
            let got = admin_token(file.as_bytes()).unwrap();
            assert_eq!(got.expose_secret(), t, "{file:?}");
        }
        // Sixteen bytes but eight characters: too short.
        assert_eq!(
            admin_token("ééééééé\u{e9}".as_bytes()).map(|_| ()),
            Err(AdminTokenError::TooShort(8))
        );
        assert!(admin_token("ééééééééééééééé\u{e9}\n".as_bytes()).is_ok());
        assert_eq!(
            admin_token(b"0123456789abcdef\n0123").map(|_| ()),
            Err(AdminTokenError::Control)
        );
        assert_eq!(admin_token(b" \n").map(|_| ()), Err(AdminTokenError::Empty));
        assert_eq!(
            admin_token(b"\xff0123456789abcdef").map(|_| ()),
            Err(AdminTokenError::NotText)
        );
    }
}
