//! Typed settings: the TOML file layered with `MYDEX_CONNECTOR__*` environment
//! variables, every key validated once at start. An error names the key and
//! the file (the CLI maps it to exit 78). Secrets are read from `*_file` paths
//! or `$CREDENTIALS_DIRECTORY`, held in `secrecy` wrappers, and never printed.
//!
//! One file per section (`mydex.rs`, `callback.rs`, …): its typed settings,
//! its raw shape and its validation; `raw.rs` the file as a whole,
//! `validate.rs` the shared checks, `secrets.rs` the secret files,
//! `redact.rs` what `check-config` prints.

mod admin;
mod callback;
mod campaigns;
mod invitations;
mod log;
mod mydex;
mod notifications;
mod queue;
mod rate;
mod raw;
mod redact;
mod schedule;
mod secrets;
mod share;
mod smtp;
mod store;
mod swap;
mod validate;

pub use admin::AdminSettings;
pub use callback::CallbackSettings;
pub use campaigns::Campaign;
pub use invitations::InvitationSettings;
pub use log::{LogFormat, LogSettings};
pub use mydex::{Environment, FtcFlow, MydexSettings};
pub use notifications::NotificationSettings;
pub use queue::QueueSettings;
pub use rate::{Rate, RateError, parse_rate};
pub use schedule::ScheduleSettings;
pub use share::{ShareError, parse_share};
pub use smtp::{SmtpSettings, SmtpTarget};
pub use store::StoreSettings;
pub use swap::Swap;

use std::path::{Path, PathBuf};

use secrecy::SecretBox;

use raw::{RawFile, error_key};
use validate::Validator;

/// A configuration problem, named by key and file.
#[derive(Debug, thiserror::Error)]
#[error("configuration error in {file}: `{key}`: {message}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
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
}
