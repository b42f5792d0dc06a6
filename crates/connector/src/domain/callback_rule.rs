//! What a credentials callback (an FTC POST or an update PUT) may change,
//! decided without a database. The `Authentication` header is the same for
//! every callback of our connection, so whoever has seen one callback can
//! send another: a linking token that has connected a member is used once,
//! and a member's key changes only through a journey this daemon started (an
//! invitation it issued, answered for the first time). The store gathers the
//! facts inside its transaction and acts on the [`Admission`].

use std::fmt;

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::{Credentials, Kind, State};

/// What a credentials callback says, as we would keep it, hashed: its kind,
/// connection id, MydexID, linking token, member key and the grants read
/// from its `fields`. Two callbacks with the same fingerprint change
/// nothing the other did not, whatever their encoding (JSON or form), the
/// layout of their `fields`, the `value` attributes beside the grants, or a
/// `uid` that is absent, a string or an int. Kept only inside sealed
/// records (it covers the member key).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CallbackFingerprint([u8; 32]);

impl CallbackFingerprint {
    /// The fingerprint of `creds`, an update when `is_update`.
    pub fn of(creds: &Credentials, is_update: bool) -> Self {
        let mut h = Sha256::new();
        put(&mut h, b"callback-fingerprint-v1");
        put(&mut h, if is_update { b"update" } else { b"ftc" });
        put(&mut h, creds.connection_id.as_bytes());
        put_opt(
            &mut h,
            creds.mydexid.as_ref().map(|m| m.as_str().as_bytes()),
        );
        put_opt(&mut h, creds.linking_token.as_deref().map(str::as_bytes));
        put_opt(
            &mut h,
            creds.key.as_ref().map(|k| k.expose_secret().as_bytes()),
        );
        for (dataset, g) in creds.grants().datasets() {
            put(&mut h, dataset.as_bytes());
            put(&mut h, &[u8::from(g.read), u8::from(g.write)]);
            put_opt(&mut h, g.read_style.as_deref().map(str::as_bytes));
            put_opt(&mut h, g.write_style.as_deref().map(str::as_bytes));
        }
        Self(h.finalize().into())
    }
}

/// Length-prefixed, so no two sequences of fields hash the same bytes.
fn put(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

fn put_opt(h: &mut Sha256, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            h.update([1]);
            put(h, b);
        }
        None => h.update([0]),
    }
}

impl fmt::Debug for CallbackFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallbackFingerprint({}…)", hex::encode(&self.0[..4]))
    }
}

impl serde::Serialize for CallbackFingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for CallbackFingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(Self(out))
    }
}

/// The invitation a callback answers (named by its linking token, or an
/// update's open invitation for the member), as the rule needs it.
#[derive(Debug, Clone, Copy)]
pub struct Answering {
    pub id: u64,
    pub kind: Kind,
    pub state: State,
    /// What the callback that connected it said (none before this was kept).
    pub fingerprint: Option<CallbackFingerprint>,
}

impl Answering {
    /// Its linking token has already been answered.
    pub fn is_used(&self) -> bool {
        self.state == State::Connected || self.fingerprint.is_some()
    }
}

/// What the store knows when a credentials callback arrives.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    pub is_update: bool,
    pub carries_key: bool,
    pub fingerprint: CallbackFingerprint,
    pub invitation: Option<Answering>,
    /// A member with the callback's connection id is held (any status).
    pub member_held: bool,
}

/// What a credentials callback may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Apply it: the member stored (with the key it carries, if any), the
    /// invitation it answers connected.
    Apply,
    /// It says what was already applied: nothing changes.
    Replay,
    /// Nothing of ours matches it: kept as unmatched, with why.
    Unmatched(&'static str),
    /// It would change what we hold without a journey of ours: kept
    /// quarantined, never applied.
    Refuse(Refusal),
}

/// Why a callback is quarantined instead of applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its linking token already connected a member, and it says something
    /// else (another key, connection id, MydexID or grants).
    TokenUsed { invitation: u64 },
    /// An update carrying a member key that answers no invitation of ours.
    KeyOutsideJourney,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::TokenUsed { invitation } => write!(
                f,
                "linking token already used (invitation {invitation} is connected; this callback says something else)"
            ),
            Refusal::KeyOutsideJourney => f.write_str(
                "a new member key outside an update journey of ours (no open invitation answers it)",
            ),
        }
    }
}

/// The rule: a used linking token admits only what it already said; an
/// unused one, the journey it was issued for; without an invitation of
/// ours, a first connection is kept unmatched and an update may change a
/// held member's permissions, never their key.
pub fn admit(f: &Facts) -> Admission {
    match f.invitation {
        Some(inv) if inv.is_used() => match inv.fingerprint {
            Some(fp) if fp == f.fingerprint => Admission::Replay,
            _ => Admission::Refuse(Refusal::TokenUsed { invitation: inv.id }),
        },
        Some(_) if f.is_update && !f.member_held => {
            Admission::Unmatched("update for a connection_id we do not hold")
        }
        Some(_) => Admission::Apply,
        None if !f.is_update => Admission::Unmatched("linking_token matches no invitation"),
        None if !f.member_held => Admission::Unmatched("update for a connection_id we do not hold"),
        None if f.carries_key => Admission::Refuse(Refusal::KeyOutsideJourney),
        None => Admission::Apply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MydexId;
    use secrecy::SecretString;
    use serde_json::json;

    fn creds(key: Option<&str>, conn: &str, fields: serde_json::Value) -> Credentials {
        Credentials {
            uid: 1001,
            uid_sent: Some("1001".into()),
            mydexid: MydexId::from_mydex("RBFish123").ok(),
            key: key.map(|k| SecretString::from(k.to_string())),
            connection_id: conn.into(),
            fields,
            linking_token: Some("lt2_x".into()),
        }
    }

    fn grants_json() -> serde_json::Value {
        json!({"field_ds_energy_readings": [[{"access": {"r": {"a": 1}}}, {"access": {"w": {"a": 1}}}]]})
    }

    fn facts(invitation: Option<Answering>, fp: CallbackFingerprint) -> Facts {
        Facts {
            is_update: false,
            carries_key: true,
            fingerprint: fp,
            invitation,
            member_held: false,
        }
    }

    fn inv(state: State, fingerprint: Option<CallbackFingerprint>) -> Answering {
        Answering {
            id: 7,
            kind: Kind::Connect,
            state,
            fingerprint,
        }
    }

    #[test]
    fn the_fingerprint_is_what_we_keep_not_how_it_was_written() {
        let neat = creds(Some("k1"), "1001-45678", grants_json());
        // The published form's layout: one "" entry per instance, strings,
        // a `value` beside the access, another uid as sent.
        let form = json!({"field_ds_energy_readings": {"0": {"": {
            "access": {"r": {"a": "1"}, "w": {"a": "1"}}, "value": "data"}}}});
        let mut published = creds(Some("k1"), "1001-45678", form);
        published.uid_sent = None;
        let a = CallbackFingerprint::of(&neat, false);
        assert_eq!(a, CallbackFingerprint::of(&published, false));
        let other_key = creds(Some("k2"), "1001-45678", grants_json());
        let other_conn = creds(Some("k1"), "1002-45678", grants_json());
        let fewer = creds(Some("k1"), "1001-45678", json!({}));
        for c in [&other_key, &other_conn, &fewer] {
            assert_ne!(a, CallbackFingerprint::of(c, false));
        }
        assert_ne!(a, CallbackFingerprint::of(&neat, true), "the kind counts");
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(
            serde_json::from_str::<CallbackFingerprint>(&text).unwrap(),
            a
        );
        assert!(!format!("{a:?}").contains(&text[5..20]));
    }

    #[test]
    fn a_used_token_admits_only_what_it_said() {
        let fp = CallbackFingerprint::of(&creds(Some("k1"), "1001-45678", grants_json()), false);
        let other = CallbackFingerprint::of(&creds(Some("k2"), "1001-45678", grants_json()), false);
        let used = inv(State::Connected, Some(fp));
        assert_eq!(admit(&facts(Some(used), fp)), Admission::Replay);
        assert_eq!(
            admit(&facts(Some(used), other)),
            Admission::Refuse(Refusal::TokenUsed { invitation: 7 })
        );
        // Connected before fingerprints were kept: only the byte-identical
        // replay (caught before the rule) is a replay.
        let legacy = inv(State::Connected, None);
        assert_eq!(
            admit(&facts(Some(legacy), fp)),
            Admission::Refuse(Refusal::TokenUsed { invitation: 7 })
        );
        // An identify invitation connected to a member we held is used too.
        let identified = Answering {
            kind: Kind::Identify,
            ..legacy
        };
        assert!(matches!(
            admit(&facts(Some(identified), fp)),
            Admission::Refuse(_)
        ));
        assert!(
            Refusal::TokenUsed { invitation: 7 }
                .to_string()
                .starts_with("linking token already used")
        );
    }

    #[test]
    fn an_unused_token_admits_its_journey() {
        let fp = CallbackFingerprint::of(&creds(Some("k1"), "1001-45678", grants_json()), false);
        for state in [
            State::Queued,
            State::LinkIssued,
            State::Sent,
            State::Expired,
            State::Failed,
        ] {
            assert_eq!(
                admit(&facts(Some(inv(state, None)), fp)),
                Admission::Apply,
                "{state:?}"
            );
        }
        // An update journey of ours may bring a key.
        let update = Facts {
            is_update: true,
            carries_key: true,
            member_held: true,
            invitation: Some(Answering {
                kind: Kind::Update { version: 2 },
                ..inv(State::Sent, None)
            }),
            fingerprint: fp,
        };
        assert_eq!(admit(&update), Admission::Apply);
        let not_held = Facts {
            member_held: false,
            ..update
        };
        assert!(matches!(admit(&not_held), Admission::Unmatched(_)));
    }

    #[test]
    fn without_an_invitation_a_key_never_changes() {
        let fp = CallbackFingerprint::of(&creds(None, "1001-45678", grants_json()), true);
        let base = Facts {
            is_update: true,
            carries_key: false,
            fingerprint: fp,
            invitation: None,
            member_held: true,
        };
        assert_eq!(admit(&base), Admission::Apply, "permissions only");
        let keyed = Facts {
            carries_key: true,
            ..base
        };
        assert_eq!(admit(&keyed), Admission::Refuse(Refusal::KeyOutsideJourney));
        let stranger = Facts {
            member_held: false,
            ..keyed
        };
        assert!(matches!(admit(&stranger), Admission::Unmatched(_)));
        let ftc = Facts {
            is_update: false,
            ..base
        };
        assert_eq!(
            admit(&ftc),
            Admission::Unmatched("linking_token matches no invitation"),
            "a first connection of a held member is kept, not applied"
        );
    }
}
