//! Typed settings: the TOML file layered with `MYDEX_CONNECTOR__*` environment
//! variables, every key validated once at start. Every problem is reported
//! at once, each naming the key and its file line or environment variable
//! (`problems.rs`; `key_path.rs` names keys, `deser_error.rs` words what the
//! `config` crate says); the CLI maps them to exit 78. Secrets are read from `*_file` paths
//! or `$CREDENTIALS_DIRECTORY`, held in `secrecy` wrappers, and never printed.
//!
//! One file per section (`mydex.rs`, `callback.rs`, …): its typed settings,
//! its raw shape and its validation. `load.rs` reads the file, `raw.rs` is
//! its shape as a whole, `validate.rs` the shared checks, `secrets.rs` the
//! secret files, `redact.rs` and `show.rs` what `check-config` prints.

mod admin;
mod callback;
mod campaigns;
mod delivery;
mod deser_error;
mod dirs;
mod dkim;
mod dkim_key;
mod edge;
mod error;
mod intake_source;
mod invitations;
mod key_path;
mod load;
mod log;
mod mailbox;
mod mydex;
mod nats;
mod notifications;
mod organisation;
mod problems;
mod queue;
mod rate;
mod raw;
mod redact;
mod route_path;
mod schedule;
mod secrets;
mod share;
mod show;
mod smtp;
mod store;
mod swap;
mod tls;
mod validate;

pub use admin::AdminSettings;
pub use callback::CallbackSettings;
pub use campaigns::Campaign;
pub use delivery::DeliverySettings;
pub use dkim::DkimSettings;
pub use dkim_key::{DkimAlgorithm, DkimKey};
pub use edge::EdgeSettings;
pub use error::{ConfigError, ConfigErrors, Origin as ConfigOrigin, Problem as ConfigProblem};
pub use intake_source::IntakeSource;
pub use invitations::InvitationSettings;
pub use log::{LogFormat, LogSettings};
pub use mydex::{Environment, FtcFlow, MydexSettings};
pub use nats::{NatsPrefix, NatsSettings, PrefixError};
pub use notifications::NotificationSettings;
pub use organisation::{Logo, MAX_LOGO_BYTES, Organisation};
pub use queue::QueueSettings;
pub use rate::{Rate, RateError, parse_rate};
pub use schedule::ScheduleSettings;
pub use share::{ShareError, parse_share};
pub use smtp::{SmtpSettings, SmtpTarget};
pub use store::StoreSettings;
pub use swap::Swap;
pub use tls::{TlsPair, TlsPairError, provider as tls_provider};

use std::path::PathBuf;

use serde::Serialize;

/// The validated configuration ([`Settings::load`]). Serialised, it is what
/// `check-config` prints ([`Settings::redacted`]).
#[derive(Serialize)]
pub struct Settings {
    #[serde(skip)]
    pub source: PathBuf,
    #[serde(serialize_with = "mydex::shown")]
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
    /// `[organisation]`: who the mails and pages say is asking.
    pub organisation: Organisation,
    #[serde(rename = "campaign")]
    pub campaigns: Vec<Campaign>,
    /// `[delivery]` (readings into members' PDS); None: not configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySettings>,
    /// `[nats]` (the JetStream broker); None: not configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsSettings>,
}

impl Settings {
    /// The campaign rows go to when they name none.
    pub fn default_campaign(&self) -> &Campaign {
        &self.campaigns[0]
    }

    pub fn campaign(&self, name: &str) -> Option<&Campaign> {
        self.campaigns.iter().find(|c| c.name == name)
    }
}
