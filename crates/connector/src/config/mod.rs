//! Typed settings: the TOML file layered with `MYDEX_CONNECTOR__*` environment
//! variables, every key validated once at start. An error names the key and
//! the file (the CLI maps it to exit 78). Secrets are read from `*_file` paths
//! or `$CREDENTIALS_DIRECTORY`, held in `secrecy` wrappers, and never printed.

mod swap;

pub use swap::Swap;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::Deserialize;

/// A configuration problem, named by key and file.
#[derive(Debug, thiserror::Error)]
#[error("configuration error in {file}: `{key}`: {message}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Sandbox,
    Production,
}

/// How a First Time Connection (or update) link is asked for
/// (docs/mydex-contract.md §2 and §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

pub struct MydexSettings {
    pub environment: Environment,
    pub api_url: reqwest::Url,
    pub token_url: reqwest::Url,
    pub client_id: String,
    pub client_secret: SecretString,
    pub client_secret_source: PathBuf,
    pub connection_nid: String,
    pub connection_token: SecretString,
    pub connection_token_source: PathBuf,
    pub return_to: String,
    pub connection_version: u32,
    pub request_timeout: Duration,
    pub max_attempts: u32,
    pub ftc_flow: FtcFlow,
    /// `mydex.ftc_url`: where the FTC call goes instead of its place under `api_url`.
    pub ftc_url: Option<reqwest::Url>,
    /// `mydex.status_url`: the base of `/connection/status` instead of
    /// `{api_url}/connection/status` (the NID is appended).
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

pub struct CallbackSettings {
    pub listen: SocketAddr,
    pub path: String,
    pub body_limit: usize,
    /// How long a client may take to send a request's headers, and then its
    /// body (default 10s): slow-loris connections are closed after it.
    pub read_timeout: Duration,
    /// Connections served at once (default 256); more are closed at accept.
    pub max_connections: usize,
}

pub struct AdminSettings {
    pub listen: SocketAddr,
    /// `members export --with-keys` is allowed (default false).
    pub allow_key_export: bool,
    pub token: Option<SecretString>,
    pub token_source: Option<PathBuf>,
}

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

pub struct SmtpSettings {
    pub target: SmtpTarget,
    pub password: Option<SecretString>,
    pub password_source: Option<PathBuf>,
    pub from: lettre::message::Mailbox,
    pub timeout: Duration,
    pub max_attempts: u32,
}

pub struct StoreSettings {
    pub path: PathBuf,
    pub key: SecretBox<[u8; 32]>,
    pub key_source: PathBuf,
}

pub struct QueueSettings {
    pub dir: PathBuf,
    pub poll_interval: Duration,
}

pub struct InvitationSettings {
    pub link_ttl: Duration,
    pub reminder_after: Duration,
    pub max_reminders: u32,
    pub concurrency: usize,
}

pub struct ScheduleSettings {
    pub version_check: String,
    pub expiry_check: String,
    /// Connection-status checks in flight at once during a version sweep.
    pub sweep_concurrency: usize,
    /// The version sweep's own limit on status checks (None: unlimited).
    pub sweep_rate: Option<Rate>,
    /// The brake: the largest share (0..=1) of the members a sweep has
    /// checked that it may disconnect before it holds the rest.
    pub max_disconnect_share: f64,
}

/// Where PDX notifications are passed on (besides being kept and counted).
pub struct NotificationSettings {
    /// Program and arguments, run without a shell, the JSON on stdin.
    pub command: Option<Vec<String>>,
    pub webhook_url: Option<reqwest::Url>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

/// At most `count` invitations in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

#[derive(Debug, Clone)]
pub struct Campaign {
    pub name: String,
    pub subject: String,
    pub text_template: Option<PathBuf>,
    pub html_template: Option<PathBuf>,
    pub rate: Option<Rate>,
    /// When its mail may go out; None: any time.
    pub send_window: Option<crate::domain::send_window::SendWindow>,
    /// Reminders: how long after expiry, and how many (from
    /// `[invitations]` unless the campaign sets its own).
    pub reminder_after: Duration,
    pub max_reminders: u32,
    pub reminder_subject: String,
    pub reminder_text_template: Option<PathBuf>,
    pub reminder_html_template: Option<PathBuf>,
    /// Failed invitations in a row after which the campaign pauses itself.
    pub error_threshold: Option<u32>,
    /// A member found revoked gets a new first-time invitation.
    pub reconnect_on_revoke: bool,
    /// `invite = "identify"`: learn the invitee's MydexID first.
    pub identify_first: bool,
}

pub struct Settings {
    pub source: PathBuf,
    pub mydex: MydexSettings,
    pub callback: CallbackSettings,
    pub admin: AdminSettings,
    pub smtp: SmtpSettings,
    pub store: StoreSettings,
    pub queue: QueueSettings,
    pub invitations: InvitationSettings,
    pub schedule: ScheduleSettings,
    pub log: LogSettings,
    pub notifications: NotificationSettings,
    pub campaigns: Vec<Campaign>,
}

// ---- the raw shape of the file -------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    mydex: RawMydex,
    #[serde(default)]
    callback: RawCallback,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    smtp: RawSmtp,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    queue: RawQueue,
    #[serde(default)]
    invitations: RawInvitations,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    notifications: RawNotifications,
    #[serde(default)]
    campaign: Vec<RawCampaign>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNotifications {
    command: Option<Vec<String>>,
    webhook_url: Option<String>,
    #[serde(default, with = "humantime_serde::option")]
    timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMydex {
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCallback {
    listen: Option<String>,
    path: Option<String>,
    body_limit: Option<usize>,
    #[serde(default, with = "humantime_serde::option")]
    read_timeout: Option<Duration>,
    max_connections: Option<usize>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token_file: Option<PathBuf>,
    allow_key_export: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    url: Option<String>,
    password_file: Option<PathBuf>,
    from: Option<String>,
    #[serde(default, with = "humantime_serde::option")]
    timeout: Option<Duration>,
    max_attempts: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    dir: Option<PathBuf>,
    #[serde(default, with = "humantime_serde::option")]
    poll_interval: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInvitations {
    #[serde(default, with = "humantime_serde::option")]
    link_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde::option")]
    reminder_after: Option<Duration>,
    max_reminders: Option<u32>,
    concurrency: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    version_check: Option<String>,
    expiry_check: Option<String>,
    sweep_concurrency: Option<usize>,
    sweep_rate: Option<String>,
    max_disconnect_share: Option<toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<String>,
    format: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCampaign {
    name: Option<String>,
    subject: Option<String>,
    text_template: Option<PathBuf>,
    html_template: Option<PathBuf>,
    rate: Option<String>,
    send_window: Option<String>,
    time_zone: Option<String>,
    #[serde(default, with = "humantime_serde::option")]
    reminder_after: Option<Duration>,
    max_reminders: Option<u32>,
    reminder_subject: Option<String>,
    reminder_text_template: Option<PathBuf>,
    reminder_html_template: Option<PathBuf>,
    error_threshold: Option<u32>,
    reconnect_on_revoke: Option<bool>,
    invite: Option<String>,
}

// ---- loading --------------------------------------------------------------------

impl Settings {
    /// Load and validate `path`, with environment overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let err = |key: &str, message: String| ConfigError {
            file: file.clone(),
            key: key.to_string(),
            message,
        };
        if !path.is_file() {
            return Err(err(
                "(file)",
                "the file does not exist or is not a regular file".into(),
            ));
        }
        let built = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("MYDEX_CONNECTOR")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()
            .map_err(|e| err("(syntax)", e.to_string()))?;
        let raw: RawFile = built
            .try_deserialize()
            .map_err(|e| err(&error_key(&e), e.to_string()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Validator { file, base }.settings(path, raw)
    }

    /// Read another store key file (`rotate-key --new-key-file`) by the same
    /// rules as `store.key_file`: 32 raw bytes or 64 hex characters, a regular
    /// file of bounded size. `flag` names it in errors.
    pub fn read_key_file(
        &self,
        flag: &str,
        path: &Path,
    ) -> Result<SecretBox<[u8; 32]>, ConfigError> {
        let v = Validator {
            file: path.display().to_string(),
            base: std::env::current_dir().unwrap_or_default(),
        };
        let path = v.path(path.to_path_buf());
        if !path.exists() {
            return Err(v.err(flag, format!("{} does not exist", path.display())));
        }
        v.key_file(flag, "store_key_new", Some(path))
            .map(|(k, _)| k)
    }

    /// The campaign rows go to when they name none.
    pub fn default_campaign(&self) -> &Campaign {
        &self.campaigns[0]
    }

    pub fn campaign(&self, name: &str) -> Option<&Campaign> {
        self.campaigns.iter().find(|c| c.name == name)
    }

    /// The effective configuration as TOML, every secret replaced by where it came from.
    pub fn redacted(&self) -> String {
        let secret = |p: &Path| format!("<redacted, read from {}>", p.display());
        let mut out = String::new();
        let m = &self.mydex;
        out += &format!(
            "# effective configuration of {}\n\n[mydex]\nenvironment = {:?}\napi_url = {:?}\ntoken_url = {:?}\nclient_id = {:?}\nclient_secret = {:?}\nconnection_nid = {:?}\nconnection_token = {:?}\nreturn_to = {:?}\nconnection_version = {}\nrequest_timeout = {:?}\nmax_attempts = {}\nftc_flow = {:?}\nftc_url = {:?}{}\nstatus_url = {:?}{}\n",
            self.source.display(),
            match m.environment {
                Environment::Sandbox => "sandbox",
                Environment::Production => "production",
            },
            m.api_url.as_str(),
            m.token_url.as_str(),
            m.client_id,
            secret(&m.client_secret_source),
            m.connection_nid,
            secret(&m.connection_token_source),
            m.return_to,
            m.connection_version,
            humantime::format_duration(m.request_timeout).to_string(),
            m.max_attempts,
            m.ftc_flow.name(),
            m.ftc_endpoint().as_str(),
            if m.ftc_url.is_some() {
                ""
            } else {
                "  # from api_url"
            },
            m.status_base().as_str(),
            if m.status_url.is_some() {
                ""
            } else {
                "  # from api_url"
            },
        );
        out += &format!(
            "\n[callback]\nlisten = \"{}\"\npath = {:?}\nbody_limit = {}\nread_timeout = {:?}\nmax_connections = {}\n",
            self.callback.listen,
            self.callback.path,
            self.callback.body_limit,
            humantime::format_duration(self.callback.read_timeout).to_string(),
            self.callback.max_connections
        );
        out += &format!(
            "\n[admin]\nlisten = \"{}\"\nallow_key_export = {}\ntoken = {:?}\n",
            self.admin.listen,
            self.admin.allow_key_export,
            self.admin
                .token_source
                .as_deref()
                .map(secret)
                .unwrap_or_else(|| "(none: state-changing calls refused)".into())
        );
        let target = match &self.smtp.target {
            SmtpTarget::Smtp { url, .. } => url.clone(),
            SmtpTarget::Outbox(dir) => format!("file://{}", dir.display()),
        };
        out += &format!(
            "\n[smtp]\nurl = {:?}\npassword = {:?}\nfrom = {:?}\ntimeout = {:?}\nmax_attempts = {}\n",
            target,
            self.smtp
                .password_source
                .as_deref()
                .map(secret)
                .unwrap_or_else(|| "(none)".into()),
            self.smtp.from.to_string(),
            humantime::format_duration(self.smtp.timeout).to_string(),
            self.smtp.max_attempts,
        );
        out += &format!(
            "\n[store]\npath = {:?}\nkey = {:?}\n\n[queue]\ndir = {:?}\npoll_interval = {:?}\n",
            self.store.path.display().to_string(),
            secret(&self.store.key_source),
            self.queue.dir.display().to_string(),
            humantime::format_duration(self.queue.poll_interval).to_string(),
        );
        let i = &self.invitations;
        out += &format!(
            "\n[invitations]\nlink_ttl = {:?}\nreminder_after = {:?}\nmax_reminders = {}\nconcurrency = {}\n",
            humantime::format_duration(i.link_ttl).to_string(),
            humantime::format_duration(i.reminder_after).to_string(),
            i.max_reminders,
            i.concurrency
        );
        out += &format!(
            "\n[schedule]\nversion_check = {:?}\nexpiry_check = {:?}\nsweep_concurrency = {}\nsweep_rate = {:?}\nmax_disconnect_share = {:?}\n\n[log]\nlevel = {:?}\nformat = {:?}\n",
            self.schedule.version_check,
            self.schedule.expiry_check,
            self.schedule.sweep_concurrency,
            self.schedule
                .sweep_rate
                .map(|r| format!("{}/{}", r.count, humantime::format_duration(r.per)))
                .unwrap_or("unlimited".into()),
            format_share(self.schedule.max_disconnect_share),
            self.log.level,
            match self.log.format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }
        );
        out += &format!(
            "\n[notifications]\ncommand = {:?}\nwebhook_url = {:?}\ntimeout = {:?}\n",
            self.notifications
                .command
                .as_ref()
                .map(|c| c.join(" "))
                .unwrap_or("(none)".into()),
            self.notifications
                .webhook_url
                .as_ref()
                .map(|u| u.to_string())
                .unwrap_or("(none)".into()),
            humantime::format_duration(self.notifications.timeout).to_string(),
        );
        for c in &self.campaigns {
            out += &format!(
                "\n[[campaign]]\nname = {:?}\nsubject = {:?}\n",
                c.name, c.subject
            );
            let builtin = "(built-in)".to_string();
            out += &format!(
                "text_template = {:?}\nhtml_template = {:?}\nrate = {:?}\n",
                c.text_template
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or(builtin.clone()),
                c.html_template
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or(builtin),
                c.rate
                    .map(|r| format!("{}/{}", r.count, humantime::format_duration(r.per)))
                    .unwrap_or("unlimited".into()),
            );
            out += &format!(
                "send_window = {:?}\nreminder_after = {:?}\nmax_reminders = {}\nreminder_subject = {:?}\nerror_threshold = {}\nreconnect_on_revoke = {}\n",
                c.send_window
                    .map(|w| format!("{w} ({})", w.tz))
                    .unwrap_or("(any time)".into()),
                humantime::format_duration(c.reminder_after).to_string(),
                c.max_reminders,
                c.reminder_subject,
                c.error_threshold
                    .map(|n| n.to_string())
                    .unwrap_or("\"off\"".into()),
                c.reconnect_on_revoke,
            );
        }
        out
    }
}

/// The key a `config` deserialisation error is about, when it says.
fn error_key(e: &config::ConfigError) -> String {
    let text = e.to_string();
    if let Some(start) = text.find("unknown field `") {
        let rest = &text[start + 15..];
        if let Some(end) = rest.find('`') {
            return rest[..end].to_string();
        }
    }
    if let Some(start) = text.rfind(" for key `") {
        let rest = &text[start + 10..];
        if let Some(end) = rest.find('`') {
            return rest[..end].to_string();
        }
    }
    "(value)".to_string()
}

struct Validator {
    file: String,
    base: PathBuf,
}

const MAX_SECRET_FILE: u64 = 64 * 1024;

impl Validator {
    fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn required<T>(&self, key: &str, v: Option<T>) -> Result<T, ConfigError> {
        v.ok_or_else(|| self.err(key, "is required but missing"))
    }

    fn path(&self, p: PathBuf) -> PathBuf {
        if p.is_absolute() {
            p
        } else {
            self.base.join(p)
        }
    }

    fn url(&self, key: &str, raw: &str) -> Result<reqwest::Url, ConfigError> {
        let url = reqwest::Url::parse(raw)
            .map_err(|e| self.err(key, format!("{raw:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(self.err(
                key,
                format!("{raw:?} must be an http or https URL with a host"),
            ));
        }
        Ok(url)
    }

    /// An endpoint URL (`mydex.ftc_url`, `mydex.status_url`): http(s) with a
    /// host, and no query or fragment, since paths and queries are added to it.
    fn endpoint_url(&self, key: &str, raw: &str) -> Result<reqwest::Url, ConfigError> {
        let url = self.url(key, raw.trim())?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err(self.err(key, format!("{raw:?} must not have a query or fragment")));
        }
        Ok(url)
    }

    fn listen(
        &self,
        key: &str,
        raw: Option<String>,
        default: &str,
    ) -> Result<SocketAddr, ConfigError> {
        let raw = raw.unwrap_or_else(|| default.to_string());
        raw.parse()
            .map_err(|_| self.err(key, format!("{raw:?} is not an IP:port address")))
    }

    /// The bytes of secret `name`: from `key` (a path) when given, else from
    /// `$CREDENTIALS_DIRECTORY/name` (systemd `LoadCredential=`), else from
    /// `credentials/name` beside the config file (where the unit loads them
    /// from, so operator commands run as root find the same secrets).
    fn secret_bytes(
        &self,
        key: &str,
        name: &str,
        path: Option<PathBuf>,
        required: bool,
    ) -> Result<Option<(Vec<u8>, PathBuf)>, ConfigError> {
        let path = match path {
            Some(p) => self.path(p),
            None => {
                let beside = self.base.join("credentials").join(name);
                match std::env::var_os("CREDENTIALS_DIRECTORY") {
                    Some(dir) if Path::new(&dir).join(name).is_file() => Path::new(&dir).join(name),
                    _ if beside.is_file() => beside,
                    _ if required => {
                        return Err(self.err(key, format!("is required but missing (or provide the systemd credential `{name}`)")));
                    }
                    _ => return Ok(None),
                }
            }
        };
        let meta = std::fs::metadata(&path)
            .map_err(|e| self.err(key, format!("cannot read {}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(self.err(key, format!("{} is not a regular file", path.display())));
        }
        if meta.len() > MAX_SECRET_FILE {
            return Err(self.err(
                key,
                format!("{} is larger than {MAX_SECRET_FILE} bytes", path.display()),
            ));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o004 != 0 {
                tracing::warn!(key, file = %path.display(), "secret file is readable by every user; chmod o-r it");
            }
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| self.err(key, format!("cannot read {}: {e}", path.display())))?;
        Ok(Some((bytes, path)))
    }

    fn secret_text(
        &self,
        key: &str,
        name: &str,
        path: Option<PathBuf>,
        required: bool,
    ) -> Result<Option<(SecretString, PathBuf)>, ConfigError> {
        let Some((bytes, path)) = self.secret_bytes(key, name, path, required)? else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| self.err(key, format!("{} is not UTF-8 text", path.display())))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        if text.is_empty() {
            return Err(self.err(key, format!("{} is empty", path.display())));
        }
        if text.contains('\n') {
            return Err(self.err(key, format!("{} holds more than one line", path.display())));
        }
        Ok(Some((SecretString::from(text.to_string()), path)))
    }

    fn store_key(
        &self,
        path: Option<PathBuf>,
    ) -> Result<(SecretBox<[u8; 32]>, PathBuf), ConfigError> {
        self.key_file("store.key_file", "store_key", path)
    }

    /// A 32-byte key file (raw, or 64 hex characters), read by the rules of
    /// `store.key_file`; `key` names it in errors.
    fn key_file(
        &self,
        key: &str,
        credential: &str,
        path: Option<PathBuf>,
    ) -> Result<(SecretBox<[u8; 32]>, PathBuf), ConfigError> {
        let (bytes, path) = self
            .secret_bytes(key, credential, path, true)?
            .ok_or_else(|| self.err(key, "is required"))?;
        let mut out = Box::new([0u8; 32]);
        if bytes.len() == 32 {
            out.copy_from_slice(&bytes);
        } else {
            let text = std::str::from_utf8(&bytes).unwrap_or("").trim();
            let decoded = hex::decode(text).ok().filter(|d| d.len() == 32).ok_or_else(|| {
                self.err(key, format!("{} must hold exactly 32 bytes (raw, or 64 hex characters); it holds {} bytes", path.display(), bytes.len()))
            })?;
            out.copy_from_slice(&decoded);
        }
        Ok((SecretBox::new(out), path))
    }

    fn settings(&self, source: &Path, raw: RawFile) -> Result<Settings, ConfigError> {
        let RawFile {
            mydex,
            callback,
            admin,
            smtp,
            store,
            queue,
            invitations,
            schedule,
            log,
            notifications,
            campaign,
        } = raw;

        // [mydex]
        let environment = match mydex.environment.as_deref().unwrap_or("sandbox") {
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
            mydex.api_url.as_deref().unwrap_or(api_default),
        )?;
        let token_url = self.url(
            "mydex.token_url",
            mydex.token_url.as_deref().unwrap_or(token_default),
        )?;
        let return_to = mydex
            .return_to
            .unwrap_or_else(|| return_default.to_string());
        self.url("mydex.return_to", &return_to)?;
        let client_id = self.required(
            "mydex.client_id",
            mydex.client_id.filter(|s| !s.trim().is_empty()),
        )?;
        let (client_secret, client_secret_source) = self
            .secret_text(
                "mydex.client_secret_file",
                "client_secret",
                mydex.client_secret_file,
                true,
            )?
            .ok_or_else(|| self.err("mydex.client_secret_file", "is required"))?;
        let connection_nid = self.required("mydex.connection_nid", mydex.connection_nid)?;
        if connection_nid.is_empty()
            || connection_nid.len() > 32
            || !connection_nid.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(self.err(
                "mydex.connection_nid",
                format!("{connection_nid:?} is not a numeric NID"),
            ));
        }
        let (connection_token, connection_token_source) = self
            .secret_text(
                "mydex.connection_token_file",
                "connection_token",
                mydex.connection_token_file,
                true,
            )?
            .ok_or_else(|| self.err("mydex.connection_token_file", "is required"))?;
        let connection_version = mydex.connection_version.unwrap_or(1);
        if connection_version < 1 {
            return Err(self.err("mydex.connection_version", "must be 1 or more"));
        }
        let request_timeout = mydex.request_timeout.unwrap_or(Duration::from_secs(10));
        if request_timeout.is_zero() {
            return Err(self.err("mydex.request_timeout", "must be more than 0s"));
        }
        let max_attempts = mydex.max_attempts.unwrap_or(8);
        if max_attempts == 0 {
            return Err(self.err("mydex.max_attempts", "must be 1 or more"));
        }
        let ftc_flow = match mydex.ftc_flow.as_deref().map(str::trim) {
            None | Some("ftc_setup") => FtcFlow::FtcSetup,
            Some("connection") => FtcFlow::Connection,
            Some(other) => {
                return Err(self.err(
                    "mydex.ftc_flow",
                    format!("{other:?} is neither \"ftc_setup\" (POST /ftc/setup) nor \"connection\" (/access-token + /api/connection)"),
                ));
            }
        };
        let ftc_url = mydex
            .ftc_url
            .map(|raw| self.endpoint_url("mydex.ftc_url", &raw))
            .transpose()?;
        let status_url = mydex
            .status_url
            .map(|raw| self.endpoint_url("mydex.status_url", &raw))
            .transpose()?;

        // [callback]
        if callback.tls_cert_file.is_some() || callback.tls_key_file.is_some() {
            return Err(self.err(
                "callback.tls_cert_file",
                "serving TLS directly is not supported by this version; terminate TLS in a reverse proxy in front of callback.listen",
            ));
        }
        let cb_listen = self.listen("callback.listen", callback.listen, "127.0.0.1:8080")?;
        let cb_path = callback.path.unwrap_or_else(|| "/mydex/callback".into());
        if !cb_path.starts_with('/') || cb_path.len() > 200 || cb_path.contains(['?', '#', ' ']) {
            return Err(self.err(
                "callback.path",
                format!("{cb_path:?} must be a path starting with `/`"),
            ));
        }
        let body_limit = callback.body_limit.unwrap_or(64 * 1024);
        if !(1024..=16 * 1024 * 1024).contains(&body_limit) {
            return Err(self.err(
                "callback.body_limit",
                "must be between 1024 and 16777216 bytes",
            ));
        }
        let read_timeout = callback.read_timeout.unwrap_or(Duration::from_secs(10));
        if !(Duration::from_millis(100)..=Duration::from_secs(300)).contains(&read_timeout) {
            return Err(self.err("callback.read_timeout", "must be between 100ms and 5m"));
        }
        let max_connections = callback.max_connections.unwrap_or(256);
        if !(1..=65536).contains(&max_connections) {
            return Err(self.err("callback.max_connections", "must be between 1 and 65536"));
        }

        // [admin]
        let admin_listen = self.listen("admin.listen", admin.listen, "127.0.0.1:8081")?;
        let admin_token =
            self.secret_text("admin.token_file", "admin_token", admin.token_file, false)?;
        if let Some((t, p)) = &admin_token
            && t.expose_secret().len() < 16
        {
            return Err(self.err(
                "admin.token_file",
                format!("{}: the token must be at least 16 characters", p.display()),
            ));
        }
        if admin_listen == cb_listen {
            return Err(self.err("admin.listen", "must differ from callback.listen"));
        }

        // [smtp]
        let smtp_url = self.required("smtp.url", smtp.url)?;
        let (target, username) = if let Some(rest) = smtp_url.strip_prefix("file://") {
            if rest.is_empty() {
                return Err(self.err("smtp.url", "file:// needs a directory path"));
            }
            (SmtpTarget::Outbox(self.path(PathBuf::from(rest))), None)
        } else {
            let parsed = reqwest::Url::parse(&smtp_url)
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
            let username =
                (!parsed.username().is_empty()).then(|| percent_decode(parsed.username()));
            if lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(&smtp_url).is_err() {
                return Err(self.err("smtp.url", "is not understood by the SMTP client (lettre)"));
            }
            (
                SmtpTarget::Smtp {
                    url: smtp_url.clone(),
                    username: username.clone(),
                },
                username,
            )
        };
        let password = self.secret_text(
            "smtp.password_file",
            "smtp_password",
            smtp.password_file,
            false,
        )?;
        if username.is_some() && password.is_none() {
            return Err(self.err(
                "smtp.password_file",
                "is required when smtp.url names a user",
            ));
        }
        let from_raw = self.required("smtp.from", smtp.from)?;
        let from: lettre::message::Mailbox = from_raw
            .parse()
            .map_err(|e| self.err("smtp.from", format!("{from_raw:?} is not a mailbox: {e}")))?;
        let smtp_timeout = smtp.timeout.unwrap_or(Duration::from_secs(30));
        let smtp_attempts = smtp.max_attempts.unwrap_or(8).max(1);

        // [store]
        let store_path = self.path(self.required("store.path", store.path)?);
        let (key, key_source) = self.store_key(store.key_file)?;

        // [queue]
        let queue_dir = self.path(self.required("queue.dir", queue.dir)?);
        let poll_interval = queue.poll_interval.unwrap_or(Duration::from_secs(2));

        // [invitations]
        let link_ttl = invitations
            .link_ttl
            .unwrap_or(Duration::from_secs(24 * 3600));
        if link_ttl.is_zero() || link_ttl > Duration::from_secs(24 * 3600) {
            return Err(self.err(
                "invitations.link_ttl",
                "must be more than 0s and at most 24h (Mydex's links die after 24h)",
            ));
        }
        let concurrency = invitations.concurrency.unwrap_or(8);
        if !(1..=1024).contains(&concurrency) {
            return Err(self.err("invitations.concurrency", "must be between 1 and 1024"));
        }

        // [schedule]: checked as cron here so a typo fails at start.
        let version_check = schedule
            .version_check
            .unwrap_or_else(|| "0 0 3 * * *".into());
        let expiry_check = schedule
            .expiry_check
            .unwrap_or_else(|| "0 */5 * * * *".into());
        for (key, expr) in [
            ("schedule.version_check", &version_check),
            ("schedule.expiry_check", &expiry_check),
        ] {
            crate::domain::cron::parse_cron(expr).map_err(|m| self.err(key, m))?;
        }
        let sweep_concurrency = schedule.sweep_concurrency.unwrap_or(16);
        if !(1..=1024).contains(&sweep_concurrency) {
            return Err(self.err("schedule.sweep_concurrency", "must be between 1 and 1024"));
        }
        let sweep_rate = match schedule.sweep_rate {
            None => parse_rate("100/s").map_err(|m| self.err("schedule.sweep_rate", m))?,
            Some(r) => parse_rate(&r).map_err(|m| self.err("schedule.sweep_rate", m))?,
        };
        let max_disconnect_share = match &schedule.max_disconnect_share {
            None => 0.05,
            Some(v) => parse_share(v).map_err(|m| self.err("schedule.max_disconnect_share", m))?,
        };
        let default_reminder_after = invitations
            .reminder_after
            .unwrap_or(Duration::from_secs(72 * 3600));
        let default_max_reminders = invitations.max_reminders.unwrap_or(2);
        if default_max_reminders > 100 {
            return Err(self.err("invitations.max_reminders", "must be at most 100"));
        }

        // [log]
        let level = log.level.unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            return Err(self.err(
                "log.level",
                format!("{level:?} is not a level or filter (error, warn, info, debug, trace)"),
            ));
        }
        let format = match log.format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(self.err(
                    "log.format",
                    format!("{other:?} is neither \"text\" nor \"json\""),
                ));
            }
        };

        // [notifications]
        let command = match notifications.command {
            None => None,
            Some(c) if c.is_empty() || c[0].trim().is_empty() => {
                return Err(self.err(
                    "notifications.command",
                    "must name a program: [\"/path/to/program\", \"arg\", ...]",
                ));
            }
            Some(mut c) => {
                let program = PathBuf::from(&c[0]);
                if !program.is_absolute() && c[0].contains('/') {
                    c[0] = self.path(program).display().to_string();
                }
                Some(c)
            }
        };
        let webhook_url = notifications
            .webhook_url
            .map(|u| self.url("notifications.webhook_url", &u))
            .transpose()?;
        let notify_timeout = notifications.timeout.unwrap_or(Duration::from_secs(10));
        if notify_timeout.is_zero() {
            return Err(self.err("notifications.timeout", "must be more than 0s"));
        }

        // [[campaign]]
        if campaign.is_empty() {
            return Err(self.err("campaign", "at least one [[campaign]] is required"));
        }
        let mut names = HashSet::new();
        let mut campaigns = Vec::new();
        for (i, c) in campaign.into_iter().enumerate() {
            let key = |k: &str| format!("campaign[{i}].{k}");
            let name = self.required(&key("name"), c.name)?;
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                return Err(self.err(
                    &key("name"),
                    format!("{name:?}: letters, digits, `-`, `_` and `.` only, 1 to 64"),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(self.err(&key("name"), format!("{name:?} is used by two campaigns")));
            }
            let subject = c
                .subject
                .unwrap_or_else(|| "Connect to your Personal Data Store".into());
            if subject.contains(['\r', '\n']) {
                return Err(self.err(&key("subject"), "must be one line"));
            }
            let template = |k: &str, p: Option<PathBuf>| -> Result<Option<PathBuf>, ConfigError> {
                let Some(p) = p else { return Ok(None) };
                let p = self.path(p);
                if !p.is_file() {
                    return Err(self.err(&key(k), format!("{} does not exist", p.display())));
                }
                Ok(Some(p))
            };
            let text_template = template("text_template", c.text_template)?;
            let html_template = template("html_template", c.html_template)?;
            let rate = match c.rate {
                None => None,
                Some(r) => parse_rate(&r).map_err(|m| self.err(&key("rate"), m))?,
            };
            let tz = match &c.time_zone {
                None => chrono_tz::Tz::UTC,
                Some(z) => crate::domain::send_window::parse_tz(z)
                    .map_err(|m| self.err(&key("time_zone"), m))?,
            };
            let send_window = match &c.send_window {
                None => None,
                Some(w) => Some(
                    crate::domain::send_window::SendWindow::parse(w, tz)
                        .map_err(|m| self.err(&key("send_window"), m))?,
                ),
            };
            if c.time_zone.is_some() && send_window.is_none() {
                return Err(self.err(&key("time_zone"), "only means something with a send_window"));
            }
            let max_reminders = c.max_reminders.unwrap_or(default_max_reminders);
            if max_reminders > 100 {
                return Err(self.err(&key("max_reminders"), "must be at most 100"));
            }
            let reminder_subject = c
                .reminder_subject
                .unwrap_or_else(|| format!("Reminder: {subject}"));
            if reminder_subject.contains(['\r', '\n']) {
                return Err(self.err(&key("reminder_subject"), "must be one line"));
            }
            let reminder_text_template =
                template("reminder_text_template", c.reminder_text_template)?;
            let reminder_html_template =
                template("reminder_html_template", c.reminder_html_template)?;
            let identify_first = match c.invite.as_deref().unwrap_or("connect") {
                "connect" => false,
                "identify" => true,
                other => {
                    return Err(self.err(
                        &key("invite"),
                        format!("{other:?} is neither \"connect\" nor \"identify\""),
                    ));
                }
            };
            if c.error_threshold == Some(0) {
                return Err(self.err(&key("error_threshold"), "must be 1 or more"));
            }
            campaigns.push(Campaign {
                name,
                subject,
                text_template,
                html_template,
                rate,
                send_window,
                reminder_after: c.reminder_after.unwrap_or(default_reminder_after),
                max_reminders,
                reminder_subject,
                reminder_text_template,
                reminder_html_template,
                error_threshold: c.error_threshold,
                reconnect_on_revoke: c.reconnect_on_revoke.unwrap_or(false),
                identify_first,
            });
        }

        Ok(Settings {
            source: source.to_path_buf(),
            mydex: MydexSettings {
                environment,
                api_url,
                token_url,
                client_id,
                client_secret,
                client_secret_source,
                connection_nid,
                connection_token,
                connection_token_source,
                return_to,
                connection_version,
                request_timeout,
                max_attempts,
                ftc_flow,
                ftc_url,
                status_url,
            },
            callback: CallbackSettings {
                listen: cb_listen,
                path: cb_path,
                body_limit,
                read_timeout,
                max_connections,
            },
            admin: AdminSettings {
                listen: admin_listen,
                allow_key_export: admin.allow_key_export.unwrap_or(false),
                token_source: admin_token.as_ref().map(|(_, p)| p.clone()),
                token: admin_token.map(|(t, _)| t),
            },
            smtp: SmtpSettings {
                target,
                password_source: password.as_ref().map(|(_, p)| p.clone()),
                password: password.map(|(t, _)| t),
                from,
                timeout: smtp_timeout,
                max_attempts: smtp_attempts,
            },
            store: StoreSettings {
                path: store_path,
                key,
                key_source,
            },
            queue: QueueSettings {
                dir: queue_dir,
                poll_interval,
            },
            invitations: InvitationSettings {
                link_ttl,
                reminder_after: default_reminder_after,
                max_reminders: default_max_reminders,
                concurrency,
            },
            schedule: ScheduleSettings {
                version_check,
                expiry_check,
                sweep_concurrency,
                sweep_rate,
                max_disconnect_share,
            },
            log: LogSettings { level, format },
            notifications: NotificationSettings {
                command,
                webhook_url,
                timeout: notify_timeout,
            },
            campaigns,
        })
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// `schedule.max_disconnect_share`: `"5%"` or a fraction such as `0.05`
/// (a bare `5` would be ambiguous and is refused); 0% to 100%.
pub fn parse_share(v: &toml::Value) -> Result<f64, String> {
    let share = match v {
        toml::Value::String(s) => {
            let t = s.trim();
            match t.strip_suffix('%') {
                Some(p) => p
                    .trim()
                    .parse::<f64>()
                    .map(|p| p / 100.0)
                    .map_err(|_| format!("{s:?} is not a percentage such as \"5%\""))?,
                None => t.parse::<f64>().map_err(|_| {
                    format!("{s:?} is neither a percentage (\"5%\") nor a fraction (0.05)")
                })?,
            }
        }
        toml::Value::Float(f) => *f,
        toml::Value::Integer(i) => *i as f64,
        other => {
            return Err(format!(
                "must be a percentage (\"5%\") or a fraction (0.05), not {}",
                other.type_str()
            ));
        }
    };
    if !share.is_finite() || !(0.0..=1.0).contains(&share) {
        return Err("must be between 0% and 100% (a fraction between 0 and 1)".into());
    }
    Ok(share)
}

/// A share as `check-config` prints it (`"5%"`).
fn format_share(share: f64) -> String {
    let pct = share * 100.0;
    if (pct - pct.round()).abs() < 1e-9 {
        format!("{}%", pct.round())
    } else {
        format!("{pct}%")
    }
}

/// `"60/min"`, `"10/s"`, `"1000/h"`, `"5/90s"`; `"unlimited"` or `"off"` for none.
pub fn parse_rate(raw: &str) -> Result<Option<Rate>, String> {
    let raw = raw.trim();
    if matches!(raw, "unlimited" | "off" | "none") {
        return Ok(None);
    }
    let bad =
        || format!("{raw:?} is not a rate like \"60/min\", \"10/s\", \"1000/h\" or \"5/90s\"");
    let (count, per) = raw.split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!("{raw:?}: the count must be 1 or more"));
    }
    let per = match per.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        "d" | "day" => Duration::from_secs(86400),
        other => humantime::parse_duration(other).map_err(|_| bad())?,
    };
    if per.is_zero() {
        return Err(bad());
    }
    Ok(Some(Rate { count, per }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn disconnect_share_as_percentage_or_fraction() {
        use super::parse_share;
        let v = |s: &str| toml::Value::String(s.into());
        assert_eq!(parse_share(&v("5%")).unwrap(), 0.05);
        assert_eq!(parse_share(&v(" 12.5 % ")).unwrap(), 0.125);
        assert_eq!(parse_share(&toml::Value::Float(0.05)).unwrap(), 0.05);
        assert_eq!(parse_share(&v("0.3")).unwrap(), 0.3);
        assert_eq!(parse_share(&toml::Value::Integer(0)).unwrap(), 0.0);
        assert_eq!(parse_share(&v("100%")).unwrap(), 1.0);
        for bad in ["101%", "-1%", "five", "5", "%"] {
            assert!(parse_share(&v(bad)).is_err(), "{bad}");
        }
        assert!(parse_share(&toml::Value::Float(1.5)).is_err());
        assert!(parse_share(&toml::Value::Boolean(true)).is_err());
        assert_eq!(super::format_share(0.05), "5%");
    }

    use super::*;

    #[test]
    fn rates() {
        assert_eq!(
            parse_rate("60/min").unwrap(),
            Some(Rate {
                count: 60,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(
            parse_rate("5/90s").unwrap(),
            Some(Rate {
                count: 5,
                per: Duration::from_secs(90)
            })
        );
        assert_eq!(parse_rate("off").unwrap(), None);
        assert!(parse_rate("0/min").is_err());
        assert!(parse_rate("ten/min").is_err());
        assert!(parse_rate("10").is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b"), "a@b");
        assert_eq!(percent_decode("a%4"), "a%4");
    }
}
