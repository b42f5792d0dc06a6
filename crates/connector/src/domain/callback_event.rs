//! Callbacks as typed events: what a Mydex callback says, parsed once from
//! the wire (`mydex/callback_body.rs`) and then applied by the store.

use secrecy::SecretString;

use super::MydexId;

/// Member credentials from an FTC (POST, with `key`) or update (PUT, without).
#[derive(Debug)]
pub struct Credentials {
    /// The uid we use: the prefix of `connection_id` ("{uid}-{nid}").
    pub uid: u64,
    /// The `uid` field as Mydex sent it, if it sent one (it may not be the
    /// prefix of `connection_id`: docs/mydex-contract.md §5).
    pub uid_sent: Option<String>,
    pub mydexid: Option<MydexId>,
    pub key: Option<SecretString>,
    pub connection_id: String,
    pub fields: serde_json::Value,
    pub linking_token: Option<String>,
}

impl Credentials {
    /// The `uid` sent, when it is not the uid of `connection_id`.
    pub fn uid_mismatch(&self) -> Option<&str> {
        self.uid_sent
            .as_deref()
            .filter(|s| s.parse::<u64>().ok() != Some(self.uid))
    }

    /// Which datasets the member granted, read from `fields`.
    pub fn grants(&self) -> super::Grants {
        super::Grants::from_fields(&self.fields)
    }
}

#[derive(Debug, Clone)]
pub enum Event {
    Identify {
        mydexid: String,
        linking_token: Option<String>,
    },
    Notification {
        uid: Option<String>,
        connection_id: Option<String>,
        dataset: String,
        action: String,
        updated_id: Option<String>,
        message: Option<String>,
    },
}
