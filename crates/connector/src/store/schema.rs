//! The store's key schema: every table and every kind of key in it, defined
//! once. A key is built only by [`IdxKey::encode`] (and its siblings) and
//! read back only by their `decode`, so the layout on disk is this file
//! and nothing else. Ids are big-endian so that keys sort in the order the
//! records were made; text parts are separated by `\x1f`, `/` or a fixed
//! width, as each family has always been written (a store written before
//! this file reads the same).

use crate::domain::{RowState, State};

/// The tables of the store.
pub(super) mod tables {
    /// Invitation id → the sealed invitation.
    pub const INVITATIONS: &str = "invitations";
    /// Connection id → the sealed member.
    pub const MEMBERS: &str = "members";
    /// Indexes, counters and small records ([`super::IdxKey`]).
    pub const IDX: &str = "idx";
    /// Unmatched callbacks, events and replay digests ([`super::LogKey`]).
    pub const LOG: &str = "log";
    /// Every authenticated callback as it arrived ([`super::RawKey`]).
    pub const RAW: &str = "raw";
    /// Readings to deliver.
    pub const READINGS: &str = "readings";
    /// The readings' indexes and batches.
    pub const RDX: &str = "rdx";
    /// The key check, the mail keys, markers of work done once.
    pub const META: &str = "meta";

    /// Every table, in the order they are listed here.
    pub const ALL: [&str; 8] = [INVITATIONS, MEMBERS, IDX, LOG, RAW, READINGS, RDX, META];
}

/// A store-wide count, kept so that `/status` never walks the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Counter {
    /// Invitations in a state.
    Invitations(State),
    /// Invitations of a campaign in a state.
    CampaignState {
        campaign: String,
        state: State,
    },
    /// Invitations of a campaign mailed so far.
    Mailed(String),
    /// Members connected at a version.
    MembersAtVersion(u32),
    MembersDisconnected,
    Unmatched,
    IdentifyEvents,
    NotificationEvents,
    /// Notification events by dataset and action.
    Notifications {
        dataset: String,
        action: String,
    },
    Suppressed,
    /// Bounces of a campaign by type (`hard`, `soft`).
    Bounces {
        campaign: String,
        kind: String,
    },
    /// Readings in a state (kept in `rdx`, beside the readings).
    Rows(RowState),
}

/// Where each counter family starts (for scans).
pub(super) const CAMPAIGN_STATE_PREFIX: &[u8] = b"c/cs/";
pub(super) const MEMBERS_AT_VERSION_PREFIX: &[u8] = b"c/mv/";
pub(super) const NOTIFICATIONS_PREFIX: &[u8] = b"c/notif/";

impl Counter {
    pub(super) fn encode(&self) -> Vec<u8> {
        match self {
            Counter::Invitations(s) => format!("c/inv/{}", s.as_str()),
            Counter::CampaignState { campaign, state } => {
                format!("c/cs/{campaign}\u{1f}{}", state.as_str())
            }
            Counter::Mailed(c) => format!("c/mailed/{c}"),
            Counter::MembersAtVersion(v) => format!("c/mv/{v}"),
            Counter::MembersDisconnected => "c/members_disconnected".into(),
            Counter::Unmatched => "c/unmatched".into(),
            Counter::IdentifyEvents => "c/ev/identify".into(),
            Counter::NotificationEvents => "c/ev/notification".into(),
            Counter::Notifications { dataset, action } => format!("c/notif/{dataset}/{action}"),
            Counter::Suppressed => "c/suppressed".into(),
            Counter::Bounces { campaign, kind } => format!("c/bounce/{campaign}\u{1f}{kind}"),
            Counter::Rows(s) => format!("c/{}", s.as_str()),
        }
        .into_bytes()
    }

    pub(super) fn decode(key: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(key.strip_prefix(b"c/")?).ok()?;
        let state = |s: &str| State::ALL.into_iter().find(|x| x.as_str() == s);
        Some(match text {
            "members_disconnected" => Counter::MembersDisconnected,
            "unmatched" => Counter::Unmatched,
            "ev/identify" => Counter::IdentifyEvents,
            "ev/notification" => Counter::NotificationEvents,
            "suppressed" => Counter::Suppressed,
            _ if !text.contains('/') => {
                Counter::Rows(RowState::ALL.into_iter().find(|s| s.as_str() == text)?)
            }
            _ => {
                let (family, rest) = text.split_once('/')?;
                match family {
                    "inv" => Counter::Invitations(state(rest)?),
                    "cs" => {
                        let (campaign, s) = rest.rsplit_once('\u{1f}')?;
                        Counter::CampaignState {
                            campaign: campaign.into(),
                            state: state(s)?,
                        }
                    }
                    "mailed" => Counter::Mailed(rest.into()),
                    "mv" => Counter::MembersAtVersion(rest.parse().ok()?),
                    "notif" => {
                        let (dataset, action) = rest.split_once('/')?;
                        Counter::Notifications {
                            dataset: dataset.into(),
                            action: action.into(),
                        }
                    }
                    "bounce" => {
                        let (campaign, kind) = rest.rsplit_once('\u{1f}')?;
                        Counter::Bounces {
                            campaign: campaign.into(),
                            kind: kind.into(),
                        }
                    }
                    _ => return None,
                }
            }
        })
    }
}

/// A key of the `idx` table (counters aside: [`Counter`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum IdxKey {
    /// An invitation the dispatcher has work for.
    Work(u64),
    /// A mailed or expired invitation the expiry sweep looks at.
    Expiry(u64),
    /// How far an intake file has been stored (its last line).
    IntakeProgress(String),
    /// A linking token issued before tokens carried their invitation's id.
    LegacyToken(String),
    /// A MydexID (lowercased) → its member's connection id.
    MydexId(String),
    /// A member → the invitation last queued for them.
    MemberInvitation(String),
    /// A sweep's last run.
    SweepRun(String),
    /// A sweep's brake.
    SweepBrake(String),
    /// A sweep's record of Mydex denying its status checks.
    SweepDenied(String),
    /// A member a sweep's brake holds.
    SweepHeld { job: String, connection_id: String },
    /// A campaign's pause.
    Pause(String),
    /// A suppressed person (keyed hash of the address).
    Suppression(String),
    /// A person's soft bounces.
    SoftBounce(String),
    /// A bounce report already counted for a person.
    BounceSeen { report: String, person: String },
    /// The expiry index has been filled for invitations from before it.
    ExpiryBackfilled,
}

/// Where each `idx` family starts (for scans).
pub(super) const WORK_PREFIX: &[u8] = b"w/";
pub(super) const EXPIRY_PREFIX: &[u8] = b"x/";
pub(super) const PAUSE_PREFIX: &[u8] = b"p/";
pub(super) const SUPPRESSION_PREFIX: &[u8] = b"s/";
pub(super) const SWEEP_HELD_PREFIX: &[u8] = b"h/";

/// The keys of one sweep's held members start so.
pub(super) fn sweep_held_prefix(job: &str) -> Vec<u8> {
    format!("h/{job}/").into_bytes()
}

fn with_id(prefix: &[u8], id: u64) -> Vec<u8> {
    [prefix, &id.to_be_bytes()].concat()
}

fn id_after(prefix: &[u8], key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(
        key.strip_prefix(prefix)?.try_into().ok()?,
    ))
}

impl IdxKey {
    pub(super) fn encode(&self) -> Vec<u8> {
        let text = match self {
            IdxKey::Work(id) => return with_id(WORK_PREFIX, *id),
            IdxKey::Expiry(id) => return with_id(EXPIRY_PREFIX, *id),
            IdxKey::IntakeProgress(file) => format!("q/{file}"),
            IdxKey::LegacyToken(t) => format!("t/{t}"),
            IdxKey::MydexId(id) => format!("d/{}", id.to_lowercase()),
            IdxKey::MemberInvitation(conn) => format!("m/{conn}"),
            IdxKey::SweepRun(job) => format!("k/{job}"),
            IdxKey::SweepBrake(job) => format!("k/{job}/brake"),
            IdxKey::SweepDenied(job) => format!("k/{job}/denied"),
            IdxKey::SweepHeld { job, connection_id } => format!("h/{job}/{connection_id}"),
            IdxKey::Pause(c) => format!("p/{c}"),
            IdxKey::Suppression(person) => format!("s/{person}"),
            IdxKey::SoftBounce(person) => format!("sb/{person}"),
            IdxKey::BounceSeen { report, person } => format!("bd/{report}/{person}"),
            IdxKey::ExpiryBackfilled => "k/expiry-index-v1".into(),
        };
        text.into_bytes()
    }

    pub(super) fn decode(key: &[u8]) -> Option<Self> {
        if let Some(id) = id_after(WORK_PREFIX, key) {
            return Some(IdxKey::Work(id));
        }
        if let Some(id) = id_after(EXPIRY_PREFIX, key) {
            return Some(IdxKey::Expiry(id));
        }
        let text = std::str::from_utf8(key).ok()?;
        let (family, rest) = text.split_once('/')?;
        let s = |v: &str| v.to_string();
        Some(match family {
            "q" => IdxKey::IntakeProgress(s(rest)),
            "t" => IdxKey::LegacyToken(s(rest)),
            "d" => IdxKey::MydexId(s(rest)),
            "m" => IdxKey::MemberInvitation(s(rest)),
            "k" if rest == "expiry-index-v1" => IdxKey::ExpiryBackfilled,
            "k" => match rest.rsplit_once('/') {
                Some((job, "brake")) => IdxKey::SweepBrake(s(job)),
                Some((job, "denied")) => IdxKey::SweepDenied(s(job)),
                _ => IdxKey::SweepRun(s(rest)),
            },
            "h" => {
                let (job, conn) = rest.split_once('/')?;
                IdxKey::SweepHeld {
                    job: s(job),
                    connection_id: s(conn),
                }
            }
            "p" => IdxKey::Pause(s(rest)),
            "s" => IdxKey::Suppression(s(rest)),
            "sb" => IdxKey::SoftBounce(s(rest)),
            "bd" => {
                let (report, person) = rest.rsplit_once('/')?;
                IdxKey::BounceSeen {
                    report: s(report),
                    person: s(person),
                }
            }
            _ => return None,
        })
    }
}

/// A key of the `log` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum LogKey {
    /// A callback nothing matched, by id.
    Unmatched(u64),
    /// An identify or notification event, by id.
    Event(u64),
    /// The digest of a callback applied (replays are known by it).
    Seen([u8; 32]),
}

pub(super) const UNMATCHED_PREFIX: &[u8] = b"u/";
pub(super) const EVENT_PREFIX: &[u8] = b"e/";
pub(super) const SEEN_PREFIX: &[u8] = b"s/";

impl LogKey {
    pub(super) fn encode(&self) -> Vec<u8> {
        match self {
            LogKey::Unmatched(id) => with_id(UNMATCHED_PREFIX, *id),
            LogKey::Event(id) => with_id(EVENT_PREFIX, *id),
            LogKey::Seen(digest) => [SEEN_PREFIX, digest].concat(),
        }
    }

    /// (The daemon scans `log` by prefix and never parses its keys.)
    #[cfg(test)]
    pub(super) fn decode(key: &[u8]) -> Option<Self> {
        if let Some(id) = id_after(UNMATCHED_PREFIX, key) {
            return Some(LogKey::Unmatched(id));
        }
        if let Some(id) = id_after(EVENT_PREFIX, key) {
            return Some(LogKey::Event(id));
        }
        Some(LogKey::Seen(
            key.strip_prefix(SEEN_PREFIX)?.try_into().ok()?,
        ))
    }
}

/// A key of the `raw` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RawKey {
    /// A callback's record (when, how judged).
    Record(u64),
    /// A callback's body, sealed.
    Body(u64),
    /// A callback not judged yet.
    Pending(u64),
    /// A callback quarantined now.
    Quarantined(u64),
    /// Callbacks kept and judged.
    StoredCount,
    /// Callbacks quarantined now.
    QuarantinedCount,
}

pub(super) const RAW_RECORD_PREFIX: &[u8] = b"r/";
pub(super) const RAW_BODY_PREFIX: &[u8] = b"b/";
pub(super) const RAW_PENDING_PREFIX: &[u8] = b"p/";
pub(super) const RAW_QUARANTINED_PREFIX: &[u8] = b"q/";

impl RawKey {
    pub(super) fn encode(&self) -> Vec<u8> {
        match self {
            RawKey::Record(id) => with_id(RAW_RECORD_PREFIX, *id),
            RawKey::Body(id) => with_id(RAW_BODY_PREFIX, *id),
            RawKey::Pending(id) => with_id(RAW_PENDING_PREFIX, *id),
            RawKey::Quarantined(id) => with_id(RAW_QUARANTINED_PREFIX, *id),
            RawKey::StoredCount => b"c/stored".to_vec(),
            RawKey::QuarantinedCount => b"c/quarantined".to_vec(),
        }
    }

    pub(super) fn decode(key: &[u8]) -> Option<Self> {
        match key {
            b"c/stored" => return Some(RawKey::StoredCount),
            b"c/quarantined" => return Some(RawKey::QuarantinedCount),
            _ => {}
        }
        let ids = [
            (RAW_RECORD_PREFIX, RawKey::Record as fn(u64) -> RawKey),
            (RAW_BODY_PREFIX, RawKey::Body),
            (RAW_PENDING_PREFIX, RawKey::Pending),
            (RAW_QUARANTINED_PREFIX, RawKey::Quarantined),
        ];
        ids.into_iter()
            .find_map(|(prefix, make)| id_after(prefix, key).map(make))
    }
}

/// The key of a record keyed by its id alone (invitations): big-endian,
/// so the table is in the order the records were made.
pub(super) fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters() -> Vec<Counter> {
        let c = || "spring\u{1f}x/y".to_string();
        vec![
            Counter::Invitations(State::Queued),
            Counter::CampaignState {
                campaign: c(),
                state: State::Sent,
            },
            Counter::Mailed(c()),
            Counter::MembersAtVersion(7),
            Counter::MembersDisconnected,
            Counter::Unmatched,
            Counter::IdentifyEvents,
            Counter::NotificationEvents,
            Counter::Notifications {
                dataset: "ds_meter".into(),
                action: "create/update".into(),
            },
            Counter::Suppressed,
            Counter::Bounces {
                campaign: c(),
                kind: "hard".into(),
            },
            Counter::Rows(RowState::InFlight),
        ]
    }

    fn idx_keys() -> Vec<IdxKey> {
        let s = |v: &str| v.to_string();
        vec![
            IdxKey::Work(0),
            IdxKey::Work(u64::MAX),
            IdxKey::Expiry(42),
            IdxKey::IntakeProgress(s("file/with/slashes.csv")),
            IdxKey::LegacyToken(s("abc")),
            IdxKey::MydexId(s("alice")),
            IdxKey::MemberInvitation(s("1001-9")),
            IdxKey::SweepRun(s("version_sweep")),
            IdxKey::SweepBrake(s("version_sweep")),
            IdxKey::SweepDenied(s("version_sweep")),
            IdxKey::SweepHeld {
                job: s("version_sweep"),
                connection_id: s("1001-9"),
            },
            IdxKey::Pause(s("spring/2026")),
            IdxKey::Suppression(s("0a1b")),
            IdxKey::SoftBounce(s("0a1b")),
            IdxKey::BounceSeen {
                report: s("r/1"),
                person: s("0a1b"),
            },
            IdxKey::ExpiryBackfilled,
        ]
    }

    #[test]
    fn every_counter_reads_back_as_written() {
        for c in counters() {
            assert_eq!(Counter::decode(&c.encode()), Some(c.clone()), "{c:?}");
        }
        assert_eq!(Counter::decode(b"c/nothing"), None);
        assert_eq!(Counter::decode(b"x/1"), None);
    }

    #[test]
    fn every_idx_key_reads_back_as_written() {
        for k in idx_keys() {
            assert_eq!(IdxKey::decode(&k.encode()), Some(k.clone()), "{k:?}");
        }
        assert_eq!(IdxKey::decode(b"zz/1"), None);
    }

    #[test]
    fn log_and_raw_keys_read_back_as_written() {
        for k in [
            LogKey::Unmatched(3),
            LogKey::Event(9),
            LogKey::Seen([7; 32]),
        ] {
            assert_eq!(LogKey::decode(&k.encode()), Some(k.clone()), "{k:?}");
        }
        for k in [
            RawKey::Record(1),
            RawKey::Body(2),
            RawKey::Pending(3),
            RawKey::Quarantined(4),
            RawKey::StoredCount,
            RawKey::QuarantinedCount,
        ] {
            assert_eq!(RawKey::decode(&k.encode()), Some(k.clone()), "{k:?}");
        }
    }

    #[test]
    fn the_layout_on_disk_is_the_one_stores_were_written_with() {
        assert_eq!(
            Counter::Invitations(State::Queued).encode(),
            b"c/inv/queued"
        );
        assert_eq!(IdxKey::Work(1).encode(), b"w/\0\0\0\0\0\0\0\x01");
        assert_eq!(IdxKey::MydexId("Alice".into()).encode(), b"d/alice");
        assert_eq!(LogKey::Unmatched(9).encode(), b"u/\0\0\0\0\0\0\0\x09");
        assert_eq!(RawKey::StoredCount.encode(), b"c/stored");
    }

    #[test]
    fn ids_sort_in_the_order_they_were_made() {
        let keys: Vec<_> = [1u64, 255, 256, 70_000, u64::MAX]
            .iter()
            .map(|id| IdxKey::Work(*id).encode())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }
}
