//! A member as the store keeps it: their connection to us (`connection_id`,
//! version, permissions) with the connection key sealed.

use serde::{Deserialize, Serialize};

use super::{Credentials, Invitation, MydexId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    Active,
    Disconnected,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub connection_id: String,
    pub uid: u64,
    /// The `uid` Mydex sent when it was not the prefix of `connection_id`
    /// (kept as sent; `uid` is the prefix, used for API calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid_sent: Option<String>,
    pub mydexid: Option<MydexId>,
    pub version: u32,
    pub permissions: serde_json::Value,
    pub status: MemberStatus,
    /// The member connection key, sealed (see `store/crypto.rs`).
    pub sealed_key: String,
    pub invitation_id: Option<u64>,
    pub campaign: Option<String>,
    pub email: Option<String>,
    pub external_ref: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The last version-sweep check of this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<LastCheck>,
}

/// What one version-sweep run found for a member.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastCheck {
    pub run: u64,
    pub at_ms: u64,
    pub active: bool,
    pub version: Option<u32>,
}

/// What a member's connection callback brings, with what it answers: the
/// invitation it completes and the member as we held them, if any.
pub struct CallbackAnswer<'a> {
    pub creds: &'a Credentials,
    pub invitation: Option<&'a Invitation>,
    pub existing: Option<&'a Member>,
    pub is_update: bool,
    pub current_version: u32,
}

impl Member {
    /// The member after a callback the rule admitted (`callback_rule.rs`):
    /// what the callback carries (connection, permissions, MydexID, and
    /// the key, `sealed_key`, if it carried one), the version of the
    /// invitation it answers (an update without one is at the current
    /// version), and the rest from that invitation or the member as held.
    pub fn after_callback(a: &CallbackAnswer<'_>, sealed_key: Option<String>, now_ms: u64) -> Self {
        let (invitation, existing, creds) = (a.invitation, a.existing, a.creds);
        let version = match invitation {
            Some(inv) => inv.version,
            None if a.is_update => a.current_version,
            None => existing.map(|m| m.version).unwrap_or(a.current_version),
        };
        let held = |f: fn(&Member) -> Option<String>| existing.and_then(f);
        Member {
            connection_id: creds.connection_id.clone(),
            uid: creds.uid,
            uid_sent: creds.uid_mismatch().map(str::to_string),
            mydexid: creds
                .mydexid
                .clone()
                .or_else(|| existing.and_then(|m| m.mydexid.clone())),
            version,
            permissions: creds.fields.clone(),
            status: MemberStatus::Active,
            sealed_key: sealed_key
                .or_else(|| existing.map(|m| m.sealed_key.clone()))
                .unwrap_or_default(),
            invitation_id: invitation
                .map(|i| i.id)
                .or(existing.and_then(|m| m.invitation_id)),
            campaign: invitation
                .map(|i| i.campaign.clone())
                .or_else(|| held(|m| m.campaign.clone())),
            email: invitation
                .map(|i| i.invitee.email.to_string())
                .or_else(|| held(|m| m.email.clone())),
            external_ref: invitation
                .and_then(|i| i.invitee.external_ref.clone())
                .or_else(|| held(|m| m.external_ref.clone())),
            created_ms: existing.map(|m| m.created_ms).unwrap_or(now_ms),
            updated_ms: now_ms,
            last_check: existing.and_then(|m| m.last_check),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(key: bool) -> Credentials {
        Credentials {
            uid: 1001,
            uid_sent: None,
            mydexid: None,
            key: key.then(|| secrecy::SecretString::from("k".repeat(64))),
            connection_id: "1001-9".into(),
            fields: serde_json::json!({"ds_meter": ["read"]}),
            linking_token: None,
        }
    }

    fn held() -> Member {
        Member {
            connection_id: "1001-9".into(),
            uid: 1001,
            uid_sent: None,
            mydexid: None,
            version: 1,
            permissions: serde_json::Value::Null,
            status: MemberStatus::Disconnected,
            sealed_key: "sealed-old".into(),
            invitation_id: Some(3),
            campaign: Some("spring".into()),
            email: Some("a@example.com".into()),
            external_ref: Some("M-1".into()),
            created_ms: 10,
            updated_ms: 10,
            last_check: None,
        }
    }

    #[test]
    fn an_update_without_a_key_keeps_the_key_held_and_takes_the_current_version() {
        let (c, old) = (creds(false), held());
        let a = CallbackAnswer {
            creds: &c,
            invitation: None,
            existing: Some(&old),
            is_update: true,
            current_version: 4,
        };
        let m = Member::after_callback(&a, None, 99);
        assert_eq!(m.sealed_key, "sealed-old");
        assert_eq!(m.version, 4);
        assert_eq!(m.status, MemberStatus::Active);
        assert_eq!(m.campaign.as_deref(), Some("spring"));
        assert_eq!((m.created_ms, m.updated_ms), (10, 99));
        assert_eq!(m.permissions, serde_json::json!({"ds_meter": ["read"]}));
    }

    #[test]
    fn a_first_connection_takes_the_new_key_and_a_held_member_keeps_its_version() {
        let (c, old) = (creds(true), held());
        let a = CallbackAnswer {
            creds: &c,
            invitation: None,
            existing: Some(&old),
            is_update: false,
            current_version: 4,
        };
        let m = Member::after_callback(&a, Some("sealed-new".into()), 5);
        assert_eq!(m.sealed_key, "sealed-new");
        assert_eq!(m.version, 1);
    }
}
