//! `[admin]`: the loopback admin listener and the token its state-changing
//! calls need.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
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
        let token = self.secret_text("admin.token_file", "admin_token", raw.token_file, false)?;
        if let Some((t, p)) = &token
            && t.expose_secret().len() < 16
        {
            return Err(self.err(
                "admin.token_file",
                format!("{}: the token must be at least 16 characters", p.display()),
            ));
        }
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
