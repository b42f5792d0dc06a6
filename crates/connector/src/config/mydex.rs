//! `[mydex]`: which Mydex environment, its URLs, the connection's identity
//! and secrets, and how FTC links are asked for.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize, Serializer};

use super::show;

use super::error::ConfigError;
use super::validate::Validator;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Sandbox,
    Production,
}

/// How a First Time Connection (or update) link is asked for
/// (docs/mydex-contract.md §2 and §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FtcFlow {
    /// `POST {api}/ftc/setup`, answered `{url, qr}`.
    FtcSetup,
    /// `GET {api}/access-token/{nid}` for a short access token, then
    /// `POST {api}/api/connection` (`/api/connection/update` for an update),
    /// answered with the URL as a bare JSON string.
    Connection,
}

impl FtcFlow {
    pub fn name(self) -> &'static str {
        match self {
            FtcFlow::FtcSetup => "ftc_setup",
            FtcFlow::Connection => "connection",
        }
    }
}

/// Serialised with `ftc_url` and `status_url` as used (see `show::mydex`).
#[derive(Serialize)]
pub struct MydexSettings {
    pub environment: Environment,
    #[serde(serialize_with = "show::url")]
    pub api_url: reqwest::Url,
    #[serde(serialize_with = "show::url")]
    pub token_url: reqwest::Url,
    pub client_id: String,
    #[serde(skip)]
    pub client_secret: SecretString,
    #[serde(rename = "client_secret", serialize_with = "show::secret")]
    pub client_secret_source: PathBuf,
    pub connection_nid: String,
    #[serde(skip)]
    pub connection_token: SecretString,
    #[serde(rename = "connection_token", serialize_with = "show::secret")]
    pub connection_token_source: PathBuf,
    #[serde(serialize_with = "show_text_url")]
    pub return_to: String,
    pub connection_version: u32,
    #[serde(serialize_with = "show::duration")]
    pub request_timeout: Duration,
    pub max_attempts: u32,
    pub ftc_flow: FtcFlow,
    /// `mydex.ftc_url`: where the FTC call goes instead of its place under `api_url`.
    #[serde(skip)]
    pub ftc_url: Option<reqwest::Url>,
    /// `mydex.status_url`: the base of `/connection/status` instead of
    /// `{api_url}/connection/status` (the NID is appended).
    #[serde(skip)]
    pub status_url: Option<reqwest::Url>,
}

/// `base` with `path` appended to its path (no double slash).
fn join_path(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    let joined = format!("{}{path}", url.path().trim_end_matches('/'));
    url.set_path(&joined);
    url
}

impl MydexSettings {
    /// The URL of the FTC call for a first connection: `ftc_url`, or
    /// `{api_url}/ftc/setup` (flow `ftc_setup`) or `{api_url}/api/connection`
    /// (flow `connection`).
    pub fn ftc_endpoint(&self) -> reqwest::Url {
        match (&self.ftc_url, self.ftc_flow) {
            (Some(url), _) => url.clone(),
            (None, FtcFlow::FtcSetup) => join_path(&self.api_url, "/ftc/setup"),
            (None, FtcFlow::Connection) => join_path(&self.api_url, "/api/connection"),
        }
    }

    /// The URL of an update (version > 1) call: the FTC URL itself for flow
    /// `ftc_setup`, `{ftc URL}/update` for flow `connection`.
    pub fn ftc_update_endpoint(&self) -> reqwest::Url {
        match self.ftc_flow {
            FtcFlow::FtcSetup => self.ftc_endpoint(),
            FtcFlow::Connection => join_path(&self.ftc_endpoint(), "/update"),
        }
    }

    /// `GET {api_url}/access-token/{nid}` (flow `connection`).
    pub fn access_token_endpoint(&self) -> reqwest::Url {
        join_path(
            &self.api_url,
            &format!("/access-token/{}", self.connection_nid),
        )
    }

    /// `POST {api_url}/identify`.
    pub fn identify_endpoint(&self) -> reqwest::Url {
        join_path(&self.api_url, "/identify")
    }

    /// `status_url`, or `{api_url}/connection/status`.
    pub fn status_base(&self) -> reqwest::Url {
        self.status_url
            .clone()
            .unwrap_or_else(|| join_path(&self.api_url, "/connection/status"))
    }

    /// `{status base}/{nid}`: the status call without its query.
    pub fn status_endpoint(&self) -> reqwest::Url {
        join_path(&self.status_base(), &format!("/{}", self.connection_nid))
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMydex {
    environment: Option<String>,
    api_url: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret_file: Option<PathBuf>,
    connection_nid: Option<String>,
    connection_token_file: Option<PathBuf>,
    return_to: Option<String>,
    connection_version: Option<u32>,
    #[serde(default, with = "humantime_serde::option")]
    request_timeout: Option<Duration>,
    max_attempts: Option<u32>,
    ftc_flow: Option<String>,
    ftc_url: Option<String>,
    status_url: Option<String>,
}

/// `[mydex]`'s environment and the URLs it defaults.
struct Place {
    environment: Environment,
    api_url: reqwest::Url,
    token_url: reqwest::Url,
    return_to: String,
}

/// The connection's identity and its two secrets.
struct Identity {
    client_id: String,
    client_secret: (SecretString, PathBuf),
    connection_nid: String,
    connection_token: (SecretString, PathBuf),
}

impl Validator {
    pub(super) fn mydex(&self, mut raw: RawMydex) -> Result<MydexSettings, ConfigError> {
        let place = self.mydex_place(&mut raw)?;
        let id = self.mydex_identity(&mut raw)?;
        let connection_version = raw.connection_version.unwrap_or(1);
        if connection_version < 1 {
            return Err(self.err("mydex.connection_version", "must be 1 or more"));
        }
        let request_timeout = raw.request_timeout.unwrap_or(Duration::from_secs(10));
        if request_timeout.is_zero() {
            return Err(self.err("mydex.request_timeout", "must be more than 0s"));
        }
        let max_attempts = raw.max_attempts.unwrap_or(8);
        if max_attempts == 0 {
            return Err(self.err("mydex.max_attempts", "must be 1 or more"));
        }
        let ftc_flow = match raw.ftc_flow.as_deref().map(str::trim) {
            None | Some("ftc_setup") => FtcFlow::FtcSetup,
            Some("connection") => FtcFlow::Connection,
            Some(other) => {
                return Err(self.err(
                    "mydex.ftc_flow",
                    format!("{other:?} is neither \"ftc_setup\" (POST /ftc/setup) nor \"connection\" (/access-token + /api/connection)"),
                ));
            }
        };
        let endpoint = |key: &str, url: Option<String>| {
            url.map(|raw| self.endpoint_url(key, &raw)).transpose()
        };
        let ftc_url = endpoint("mydex.ftc_url", raw.ftc_url)?;
        let status_url = endpoint("mydex.status_url", raw.status_url)?;
        Ok(MydexSettings {
            environment: place.environment,
            api_url: place.api_url,
            token_url: place.token_url,
            client_id: id.client_id,
            client_secret: id.client_secret.0,
            client_secret_source: id.client_secret.1,
            connection_nid: id.connection_nid,
            connection_token: id.connection_token.0,
            connection_token_source: id.connection_token.1,
            return_to: place.return_to,
            connection_version,
            request_timeout,
            max_attempts,
            ftc_flow,
            ftc_url,
            status_url,
        })
    }

    fn mydex_place(&self, raw: &mut RawMydex) -> Result<Place, ConfigError> {
        let environment = match raw.environment.as_deref().unwrap_or("sandbox") {
            "sandbox" => Environment::Sandbox,
            "production" => Environment::Production,
            other => {
                return Err(self.err(
                    "mydex.environment",
                    format!("{other:?} is neither \"sandbox\" nor \"production\""),
                ));
            }
        };
        let (api_default, token_default, return_default) = match environment {
            Environment::Sandbox => (
                "https://sbx-api.mydex.org",
                "https://sbx-op.mydexid.org/oauth2/token",
                "https://sbx-my.mydex.org",
            ),
            Environment::Production => (
                "https://api.mydex.org",
                "https://op.mydexid.org/oauth2/token",
                "https://my.mydex.org",
            ),
        };
        let api_url = self.url(
            "mydex.api_url",
            raw.api_url.as_deref().unwrap_or(api_default),
        )?;
        let token_url = self.url(
            "mydex.token_url",
            raw.token_url.as_deref().unwrap_or(token_default),
        )?;
        let return_to = raw
            .return_to
            .take()
            .unwrap_or_else(|| return_default.to_string());
        self.url("mydex.return_to", &return_to)?;
        Ok(Place {
            environment,
            api_url,
            token_url,
            return_to,
        })
    }

    /// `mydex.connection_token_file` alone (an edge reads no more of
    /// `[mydex]`).
    pub(super) fn connection_token(
        &self,
        raw: &mut RawMydex,
    ) -> Result<(SecretString, PathBuf), ConfigError> {
        self.required_secret_text(
            "mydex.connection_token_file",
            "connection_token",
            raw.connection_token_file.take(),
        )
    }

    fn mydex_identity(&self, raw: &mut RawMydex) -> Result<Identity, ConfigError> {
        let client_id = self.required(
            "mydex.client_id",
            raw.client_id.take().filter(|s| !s.trim().is_empty()),
        )?;
        let client_secret = self.required_secret_text(
            "mydex.client_secret_file",
            "client_secret",
            raw.client_secret_file.take(),
        )?;
        let connection_nid = self.required("mydex.connection_nid", raw.connection_nid.take())?;
        if connection_nid.is_empty()
            || connection_nid.len() > 32
            || !connection_nid.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(self.err(
                "mydex.connection_nid",
                format!("{connection_nid:?} is not a numeric NID"),
            ));
        }
        let connection_token = self.required_secret_text(
            "mydex.connection_token_file",
            "connection_token",
            raw.connection_token_file.take(),
        )?;
        Ok(Identity {
            client_id,
            client_secret,
            connection_nid,
            connection_token,
        })
    }
}

/// `return_to` as `check-config` shows it: any user and password redacted.
fn show_text_url<S: Serializer>(u: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&show::url_text(u))
}

/// `[mydex]` with `ftc_url` and `status_url` as they are used: set, or
/// computed from `api_url`.
pub(super) fn shown<S: Serializer>(m: &MydexSettings, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Shown<'a> {
        #[serde(flatten)]
        settings: &'a MydexSettings,
        ftc_url: String,
        status_url: String,
    }
    Shown {
        settings: m,
        ftc_url: show::url_text(m.ftc_endpoint().as_str()),
        status_url: show::url_text(m.status_base().as_str()),
    }
    .serialize(s)
}
