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
    /// Rejected rows kept now (`rejects.rs`).
    Rejected,
    /// Rejected rows ever recorded.
    RejectedTotal,
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
            Counter::Rejected => "c/rejected".into(),
            Counter::RejectedTotal => "c/rejected_total".into(),
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
            "rejected" => Counter::Rejected,
            "rejected_total" => Counter::RejectedTotal,
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
    /// An invitation the dispatcher has work for, one key each, as stores
    /// wrote it before [`IdxKey::WorkBits`] (folded into bits at open).
    Work(u64),
    /// The dispatcher's work as bits: block `id / 64`, its bit `id % 64`.
    WorkBits(u64),
    /// The open-invitation index, as stores wrote it before
    /// [`IdxKey::OpenTag`]: led by the person (the person hash and 16 bytes
    /// of a keyed hash of campaign, kind and identity), folded at open.
    Open { person: [u8; 32], what: [u8; 16] },
    /// The open-invitation index: the tags of 64 consecutive ids, keyed
    /// by id / 64 (`open_blocks.rs`).
    OpenTags(u64),
    /// A retried invitation: the number it was reopened at
    /// (`open_index.rs`).
    OpenReopened(u64),
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
pub(super) const WORK_BITS_PREFIX: &[u8] = b"wb/";
pub(super) const OPEN_PREFIX: &[u8] = b"op/";
pub(super) const OPEN_TAGS_PREFIX: &[u8] = b"ot/";
pub(super) const OPEN_REOPENED_PREFIX: &[u8] = b"oo/";
/// The two keys an invitation had before the open index was led by the
/// person (`o/{campaign}\x1f{kind}\x1f{hash}` and `pi/{person}/{id}`),
/// folded into [`IdxKey::Open`] at open.
pub(super) const LEGACY_OPEN_PREFIX: &[u8] = b"o/";
pub(super) const LEGACY_PERSON_PREFIX: &[u8] = b"pi/";

/// `o/{campaign}\x1f{kind}\x1f{hash}`, an earlier store's open key.
pub(super) fn legacy_open_key(head: &str, hash: &str) -> String {
    format!("o/{head}\u{1f}{hash}")
}

/// `pi/{person}/{id}`, an earlier store's person index key.
pub(super) fn legacy_person_key(person: &str, id: u64) -> Vec<u8> {
    [format!("pi/{person}/").as_bytes(), &id.to_be_bytes()].concat()
}

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
            IdxKey::WorkBits(block) => return with_id(WORK_BITS_PREFIX, *block),
            IdxKey::Open { person, what } => return [OPEN_PREFIX, person, what].concat(),
            IdxKey::OpenTags(block) => return with_id(OPEN_TAGS_PREFIX, *block),
            IdxKey::OpenReopened(id) => return with_id(OPEN_REOPENED_PREFIX, *id),
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
        if let Some(block) = id_after(WORK_BITS_PREFIX, key) {
            return Some(IdxKey::WorkBits(block));
        }
        if let Some(rest) = key.strip_prefix(OPEN_PREFIX)
            && rest.len() == 48
        {
            return Some(IdxKey::Open {
                person: rest[..32].try_into().ok()?,
                what: rest[32..].try_into().ok()?,
            });
        }
        if let Some(id) = id_after(EXPIRY_PREFIX, key) {
            return Some(IdxKey::Expiry(id));
        }
        if let Some(block) = id_after(OPEN_TAGS_PREFIX, key) {
            return Some(IdxKey::OpenTags(block));
        }
        if let Some(id) = id_after(OPEN_REOPENED_PREFIX, key) {
            return Some(IdxKey::OpenReopened(id));
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
/// Rows rejected on their way in: `j/` + milliseconds + id, both
/// big-endian, so they lie in the order they were rejected
/// (`rejects.rs`).
pub(super) const REJECT_PREFIX: &[u8] = b"j/";
/// What the daemon made of a file placed for it, by the name it had
/// there (`rejects.rs`).
pub(super) const VERDICT_PREFIX: &[u8] = b"v/";

/// The key of a rejected row.
pub(super) fn reject_key(at_ms: u64, id: u64) -> Vec<u8> {
    [REJECT_PREFIX, &at_ms.to_be_bytes(), &id.to_be_bytes()].concat()
}

/// The key of a file's verdict.
pub(super) fn verdict_key(source: &str) -> Vec<u8> {
    [VERDICT_PREFIX, source.as_bytes()].concat()
}

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
    /// Callbacks kept and judged, as counted before `JudgedBits` (read
    /// once, to build them, then removed).
    StoredCount,
    /// Callbacks quarantined now, as counted before (removed with it).
    QuarantinedCount,
    /// Which callbacks of block `n` (ids `n * 64` to `n * 64 + 63`) are
    /// judged: a bitmap of 8 bytes (`raw_tally.rs`).
    JudgedBits(u64),
}

pub(super) const RAW_RECORD_PREFIX: &[u8] = b"r/";
pub(super) const RAW_BODY_PREFIX: &[u8] = b"b/";
pub(super) const RAW_PENDING_PREFIX: &[u8] = b"p/";
pub(super) const RAW_QUARANTINED_PREFIX: &[u8] = b"q/";
pub(super) const RAW_JUDGED_PREFIX: &[u8] = b"c/j/";

impl RawKey {
    pub(super) fn encode(&self) -> Vec<u8> {
        match self {
            RawKey::Record(id) => with_id(RAW_RECORD_PREFIX, *id),
            RawKey::Body(id) => with_id(RAW_BODY_PREFIX, *id),
            RawKey::Pending(id) => with_id(RAW_PENDING_PREFIX, *id),
            RawKey::Quarantined(id) => with_id(RAW_QUARANTINED_PREFIX, *id),
            RawKey::StoredCount => b"c/stored".to_vec(),
            RawKey::QuarantinedCount => b"c/quarantined".to_vec(),
            RawKey::JudgedBits(n) => with_id(RAW_JUDGED_PREFIX, *n),
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
            (RAW_JUDGED_PREFIX, RawKey::JudgedBits),
        ];
        ids.into_iter()
            .find_map(|(prefix, make)| id_after(prefix, key).map(make))
    }
}

/// The keys of the readings queue, in one place, typed and tested both ways.
/// They are chosen so a reading costs few writes: a row's key says where it
/// stands (queued under its member and dataset, held, failed), so its state
/// needs no index key of its own, and queued rows lie big-endian by group,
/// then by id, so a claim is one range scan.
///
/// Tree `readings` (values: the row, sealed):
///
/// | key | row |
/// |---|---|
/// | `q` group id | queued, or in a batch not settled (`b/`) |
/// | `h` id | held |
/// | `f` id | failed |
///
/// A delivered row is removed: its `u/` key is what is kept of it.
///
/// Tree `rdx`:
///
/// | key | value |
/// |---|---|
/// | `u/{subject}\x1f{dataset}\x1f{external_id}` | row id: one reading per member, dataset and `external_id` |
/// | `gn/{connection}\x1f{dataset}` | group id, made at the group's first row |
/// | `gi/` group | `{connection}\x1f{dataset}` |
/// | `gv/` group | claims made of the group (guards a claim against a stale scan) |
/// | `b/` group batch | a batch not settled (`batches.rs`) |
/// | `r/{connection}\x1f{dataset}` | a refused try (`holds.rs`) |
/// | `q/{file}` | the last line of a readings file stored |
/// | `c/{state}` | counters |
///
/// Ids and groups are `u64`, big-endian.
pub(super) mod readings {
    use crate::domain::{DatasetName, RowState};

    /// Where a row is kept: its key in tree `readings`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub(crate) enum Slot {
        /// Queued (or in a batch not settled) in `group`.
        Queue {
            group: u64,
            id: u64,
        },
        Held(u64),
        Failed(u64),
    }

    const QUEUE: u8 = b'q';
    const HELD: u8 = b'h';
    const FAILED: u8 = b'f';

    impl Slot {
        /// Where a row in `state` is kept; `None`: delivered, not kept.
        pub(crate) fn for_state(state: RowState, group: Option<u64>, id: u64) -> Option<Slot> {
            match state {
                RowState::Queued | RowState::InFlight | RowState::Unknown => {
                    group.map(|group| Slot::Queue { group, id })
                }
                RowState::Held => Some(Slot::Held(id)),
                RowState::Failed => Some(Slot::Failed(id)),
                RowState::Delivered => None,
            }
        }

        pub(crate) fn key(self) -> Vec<u8> {
            let mut k = Vec::with_capacity(17);
            match self {
                Slot::Queue { group, id } => {
                    k.push(QUEUE);
                    k.extend_from_slice(&group.to_be_bytes());
                    k.extend_from_slice(&id.to_be_bytes());
                }
                Slot::Held(id) => {
                    k.push(HELD);
                    k.extend_from_slice(&id.to_be_bytes());
                }
                Slot::Failed(id) => {
                    k.push(FAILED);
                    k.extend_from_slice(&id.to_be_bytes());
                }
            }
            k
        }

        /// The slot a key names; `None` for anything else (a key of the
        /// layout before this one is 8 bytes, the bare id).
        pub(crate) fn parse(k: &[u8]) -> Option<Slot> {
            let n = |b: &[u8]| b.try_into().ok().map(u64::from_be_bytes);
            match (k.first()?, k.len()) {
                (&QUEUE, 17) => Some(Slot::Queue {
                    group: n(&k[1..9])?,
                    id: n(&k[9..])?,
                }),
                (&HELD, 9) => Some(Slot::Held(n(&k[1..])?)),
                (&FAILED, 9) => Some(Slot::Failed(n(&k[1..])?)),
                _ => None,
            }
        }
    }

    /// The first key of a group's queued rows (a prefix of each).
    pub(crate) fn queue_prefix(group: u64) -> Vec<u8> {
        let mut k = vec![QUEUE];
        k.extend_from_slice(&group.to_be_bytes());
        k
    }

    /// The prefix of every held (`h`) or failed (`f`) row.
    pub(crate) fn state_prefix(state: RowState) -> Option<u8> {
        match state {
            RowState::Held => Some(HELD),
            RowState::Failed => Some(FAILED),
            _ => None,
        }
    }

    pub(crate) const QUEUE_START: u8 = QUEUE;

    pub(crate) fn unique_key(subject: &str, dataset: &DatasetName, external_id: &str) -> Vec<u8> {
        format!("u/{subject}\x1f{dataset}\x1f{external_id}").into_bytes()
    }

    /// The prefix of every `u/` key of a connected member's readings.
    pub(crate) fn unique_prefix_of_connection(conn: &str) -> Vec<u8> {
        format!("u/c:{conn}\x1f").into_bytes()
    }

    pub(crate) fn counter_key(s: RowState) -> crate::store::schema::Counter {
        crate::store::schema::Counter::Rows(s)
    }

    pub(crate) fn progress_key(file: &str) -> Vec<u8> {
        format!("q/{file}").into_bytes()
    }

    /// `gn/{connection}\x1f{dataset}`: the group's id.
    pub(crate) fn group_name_key(conn: &str, dataset: &str) -> Vec<u8> {
        format!("gn/{conn}\x1f{dataset}").into_bytes()
    }

    /// The prefix of every group of a connection.
    pub(crate) fn group_names_of_connection(conn: &str) -> Vec<u8> {
        format!("gn/{conn}\x1f").into_bytes()
    }

    fn group_keyed(prefix: &[u8], group: u64) -> Vec<u8> {
        let mut k = prefix.to_vec();
        k.extend_from_slice(&group.to_be_bytes());
        k
    }

    /// `gi/` group: the group's connection and dataset.
    pub(crate) fn group_id_key(group: u64) -> Vec<u8> {
        group_keyed(b"gi/", group)
    }

    /// `gv/` group: how many claims the group has had.
    pub(crate) fn group_version_key(group: u64) -> Vec<u8> {
        group_keyed(b"gv/", group)
    }

    /// The value of `gi/`: `{connection}\x1f{dataset}`.
    pub(crate) fn group_name_value(conn: &str, dataset: &DatasetName) -> Vec<u8> {
        format!("{conn}\x1f{dataset}").into_bytes()
    }

    /// A `gi/` value read back; `None` if it is not one.
    pub(crate) fn parse_group_name(v: &[u8]) -> Option<(String, DatasetName)> {
        let text = std::str::from_utf8(v).ok()?;
        let (conn, ds) = text.split_once('\x1f')?;
        Some((conn.to_string(), DatasetName::parse(ds).ok()?))
    }

    /// `b/` group batch: a batch not settled.
    pub(crate) fn batch_key(group: u64, batch: u64) -> Vec<u8> {
        let mut k = group_keyed(b"b/", group);
        k.extend_from_slice(&batch.to_be_bytes());
        k
    }

    /// The prefix of a group's batches not settled.
    pub(crate) fn batch_prefix(group: u64) -> Vec<u8> {
        group_keyed(b"b/", group)
    }

    /// Every batch not settled.
    pub(crate) const BATCHES: &[u8] = b"b/";

    /// A member and dataset's refused-try record (`holds.rs`).
    pub(crate) fn held_group_key(conn: &str, dataset: &str) -> Vec<u8> {
        format!("r/{conn}\x1f{dataset}").into_bytes()
    }

    /// Every refused-try record of a member starts so.
    pub(crate) fn held_groups_of_connection(conn: &str) -> Vec<u8> {
        format!("r/{conn}\x1f").into_bytes()
    }

    /// Where every readings file's progress key starts.
    pub(crate) const PROGRESS_PREFIX: &[u8] = b"q/";

    /// The index keys of the layout before rows were keyed by where they
    /// stand (`g/{connection}\x1f{dataset}\x1f{id}` queued, `h/{id}` held,
    /// `f/{id}` failed), moved once at open (`readings_layout.rs`).
    pub(crate) const LEGACY_QUEUED_PREFIX: &[u8] = b"g/";
    pub(crate) const LEGACY_HELD_PREFIX: &[u8] = b"h/";
    pub(crate) const LEGACY_FAILED_PREFIX: &[u8] = b"f/";

    /// The group and batch a `b/` key names; `None` for a key of the layout
    /// before this one (`b/` batch).
    pub(crate) fn parse_batch_key(k: &[u8]) -> Option<(u64, u64)> {
        let rest = k.strip_prefix(BATCHES)?;
        if rest.len() != 16 {
            return None;
        }
        let group = u64::from_be_bytes(rest[..8].try_into().ok()?);
        let batch = u64::from_be_bytes(rest[8..].try_into().ok()?);
        Some((group, batch))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn slots_read_back_as_written_and_sort_by_group_then_id() {
            let slots = [
                Slot::Queue { group: 1, id: 7 },
                Slot::Queue {
                    group: 1,
                    id: 1 << 40,
                },
                Slot::Queue { group: 2, id: 3 },
                Slot::Held(u64::MAX),
                Slot::Failed(0),
            ];
            for s in slots {
                assert_eq!(Slot::parse(&s.key()), Some(s), "{s:?}");
            }
            let mut keys: Vec<Vec<u8>> = slots[..3].iter().map(|s| s.key()).collect();
            keys.sort();
            let back: Vec<Slot> = keys.iter().filter_map(|k| Slot::parse(k)).collect();
            assert_eq!(back, slots[..3].to_vec());
            assert!(
                Slot::Queue { group: 9, id: 9 }
                    .key()
                    .starts_with(&queue_prefix(9))
            );
            // The layout before: the bare id, 8 bytes, is none of these.
            assert_eq!(Slot::parse(&5u64.to_be_bytes()), None);
            assert_eq!(Slot::parse(b"q"), None);
            assert_eq!(
                Slot::for_state(RowState::InFlight, Some(4), 5),
                Some(Slot::Queue { group: 4, id: 5 })
            );
            assert_eq!(Slot::for_state(RowState::Delivered, Some(4), 5), None);
            assert_eq!(Slot::for_state(RowState::Queued, None, 5), None);
        }

        #[test]
        fn batch_and_group_keys_read_back() {
            assert_eq!(parse_batch_key(&batch_key(3, 99)), Some((3, 99)));
            let mut legacy = b"b/".to_vec();
            legacy.extend_from_slice(&99u64.to_be_bytes());
            assert_eq!(parse_batch_key(&legacy), None);
            assert!(batch_key(3, 99).starts_with(&batch_prefix(3)));
            let ds = DatasetName::parse("ds_energy_readings").unwrap();
            let v = group_name_value("1001-9", &ds);
            assert_eq!(parse_group_name(&v), Some(("1001-9".to_string(), ds)));
            assert_eq!(parse_group_name(b"no separator"), None);
            assert!(
                group_name_key("1001-9", "ds_x").starts_with(&group_names_of_connection("1001-9"))
            );
            assert!(
                unique_key("c:1001-9", &DatasetName::parse("ds_x").unwrap(), "r1")
                    .starts_with(&unique_prefix_of_connection("1001-9"))
            );
        }
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
            Counter::Rejected,
            Counter::RejectedTotal,
        ]
    }

    fn idx_keys() -> Vec<IdxKey> {
        let s = |v: &str| v.to_string();
        vec![
            IdxKey::Work(0),
            IdxKey::Work(u64::MAX),
            IdxKey::WorkBits(7),
            IdxKey::Open {
                person: [3; 32],
                what: [b'/'; 16],
            },
            IdxKey::OpenTags(0),
            IdxKey::OpenTags(u64::MAX),
            IdxKey::OpenReopened(7),
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
            RawKey::JudgedBits(5),
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
