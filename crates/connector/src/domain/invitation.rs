//! An invitation as the store keeps it: whom, for which campaign and
//! connection version, where it stands (`State`) and how it got there.

use serde::{Deserialize, Serialize};

use super::{CallbackFingerprint, Invitee, LinkingToken, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    Connect,
    /// Stored as `update_version`: the invitation's own `version` sits next
    /// to it once flattened into the record.
    Update {
        #[serde(rename = "update_version")]
        version: u32,
    },
    /// Learn a returning member's MydexID first (`/identify`); the identify
    /// callback then completes it, or turns it into a first connection.
    Identify,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at_ms: u64,
    pub state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Invitation {
    pub id: u64,
    pub campaign: String,
    #[serde(flatten)]
    pub kind: Kind,
    /// The connection version the member consents to through this invitation.
    pub version: u32,
    pub invitee: Invitee,
    pub state: State,
    pub linking_token: LinkingToken,
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default)]
    pub link_issued_ms: Option<u64>,
    /// Attempts at the current step (Mydex call or mail), reset on progress.
    #[serde(default)]
    pub attempts: u32,
    #[serde(default)]
    pub next_attempt_ms: u64,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub reminders: u32,
    #[serde(default)]
    pub connection_id: Option<String>,
    /// When the expiry sweep found the link unused past `link_ttl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_ms: Option<u64>,
    /// What the callback that connected it said (`callback_rule.rs`): a
    /// later callback with its linking token is a replay only if it says
    /// the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_fingerprint: Option<CallbackFingerprint>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub history: Vec<HistoryEntry>,
}

impl Invitation {
    /// An update callback that names no linking token we know completes
    /// this invitation if it is the member's update invitation and still
    /// waits for an answer.
    pub fn awaits_update_callback(&self) -> bool {
        matches!(self.kind, Kind::Update { .. })
            && !matches!(self.state, State::Failed | State::Connected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_invitation_round_trips() {
        let inv = Invitation {
            id: 7,
            campaign: "c".into(),
            kind: Kind::Update { version: 3 },
            version: 3,
            invitee: serde_json::from_value(serde_json::json!({"email": "a@example.com", "name": null, "external_ref": null, "mydexid": "abc123x", "campaign": null})).unwrap(),
            state: State::Queued,
            linking_token: LinkingToken::for_invitation(7),
            link: None,
            link_issued_ms: None,
            attempts: 0,
            next_attempt_ms: 0,
            reason: None,
            reminders: 0,
            connection_id: None,
            expired_ms: None,
            callback_fingerprint: None,
            created_ms: 1,
            updated_ms: 1,
            history: vec![],
        };
        let bytes = serde_json::to_vec(&inv).unwrap();
        let back: Invitation = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.kind, Kind::Update { version: 3 });
        assert_eq!(back.version, 3);
        assert!(back.awaits_update_callback());
        for (kind, state, awaits) in [
            (Kind::Update { version: 3 }, State::Sent, true),
            (Kind::Update { version: 3 }, State::Connected, false),
            (Kind::Update { version: 3 }, State::Failed, false),
            (Kind::Connect, State::Sent, false),
        ] {
            let i = Invitation {
                kind,
                state,
                ..back.clone()
            };
            assert_eq!(i.awaits_update_callback(), awaits, "{kind:?} {state:?}");
        }
    }
}
