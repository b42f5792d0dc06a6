//! The store's core: the one owner of the database. Every change is a transaction
//! (compare-and-swap on the invitation's state, indexes and counters moved in
//! the same step), so two workers can never both move one invitation and a
//! restart finds each where it stood.
//!
//! Trees: `invitations` (id → JSON), `members` (connection_id → JSON with the
//! sealed key), `idx` (prefixed keys: `op/` person and open invitee → ids
//! (`open_index.rs`), `wb/` work to
//! dispatch, `c/` counters (`c/cs/` by campaign and state), `q/` intake
//! progress, `t/` linking token → id for tokens issued before tokens carried
//! their invitation's id), `log` (unmatched callbacks, identify and
//! notification events, replay digests), `raw` (every authenticated callback
//! as it arrived, body sealed, and its outcome), `meta` (the key check). The
//! lifecycle adds to `idx`: `x/` the expiry index, `m/` member → last
//! lifecycle invitation, `k/` sweep runs, `p/` campaign pauses. The mail
//! side adds `s/` the suppression list, `sb/`
//! soft bounces, `bd/` bounce reports seen (`suppressions.rs`, `bounces.rs`).
//! Values holding personal data (invitations, members, readings, `s/`
//! entries, the `log`'s unmatched callbacks and events) are sealed whole
//! (`sealed.rs`); `forget.rs` erases a person.

mod apply_callback;
mod batches;
mod bounces;
mod brake;
mod campaign_pauses;
mod codec;
mod compact;
mod crypto;
mod db;
mod durable;
mod engine;
mod error;
mod expiry_index;
mod facade;
mod forget;
mod holds;
mod identify;
mod invitations;
mod mail_keys;
mod migrate;
mod open_blocks;
mod open_index;
mod open_tag_fold;
mod open_tags;
mod packing;
pub(crate) mod raw_callbacks;
mod raw_tally;
mod reading_erasure;
mod reading_groups;
mod reading_listing;
mod readings;
mod readings_layout;
mod records;
pub mod rejects;
mod report;
mod rotation;
mod rotation_journal;
mod schema;
mod sealed;
mod seen;
mod suppressed_filter;
mod suppression_record;
mod suppressions;
mod sweeps;
mod work_index;
mod write_health;

use std::path::Path;

use engine::{Engine, Table, TxTable};
use secrecy::SecretBox;

use codec::{decode, decode_u64, encode};
use error::TxResult;
use schema::{Counter, id_key, tables};

pub use crate::domain::{
    Credentials, Event, HistoryEntry, Invitation, Kind, LastCheck, Member, MemberStatus, State,
};
pub use apply_callback::CallbackOutcome;
pub use batches::{Batch, BatchState, Claim, Settle};
pub use bounces::{Bounce, BounceOutcome, BounceType};
pub use brake::{Brake, ConnectionDenied, Held};
pub use campaign_pauses::{CampaignPause, PausedBy};
pub use compact::{CompactReport, compact_store};
pub use crypto::{CryptoError, Sealer};
pub use engine::compact_error::CompactError;
pub use engine::compact_swap::{CompactStep, Recovery};
pub use engine::{EngineError, LOG_TARGET as ENGINE_LOG_TARGET};
pub use error::{Result, StoreError};
pub use facade::{BounceReport, NewMember, ReadingPlacer, ReadingToPlace, StatusReads, Store};
pub use forget::{ForgetTarget, Forgotten};
pub use invitations::{InsertOutcome, NewInvitation};
pub use mail_keys::MailKeys;
pub use migrate::{
    CURRENT as SCHEMA_VERSION, OnDisk, VERSION_FILE, batches_done as migration_batches,
    on_disk as schema_on_disk,
};
pub use raw_callbacks::{PastOutcome, RawCallback, RawFilter, RawOutcome, raw_aad};
pub use reading_listing::DeliveredReading;
pub use readings::{
    NewReading, Placement, ReadingOutcome, ReadingRow, RecordCounts, member_gate, subject_of,
};
pub use records::{CallbackRecord, now_ms};
pub use report::InvitationFilter;
#[cfg(test)]
pub(crate) use rotation::rotate_key;
pub use rotation::{RotationReport, fingerprint};
pub use seen::{Arrival, FirstOutcome};
pub use suppressions::{Suppressed, Suppression, SuppressionSource};
pub use sweeps::{CheckResult, Checked, ImportMember, SweepRun};
pub use write_health::{EXIT_STORE_FAILED, StoreHealth, disk_takes_writes};

/// The store's synchronous core: every call may block on disk. Outside
/// `store/` it is reached only through [`Store`] (`facade/`).
#[derive(Clone)]
pub(crate) struct Core {
    db: Engine,
    invitations: Table,
    members: Table,
    idx: Table,
    log: Table,
    /// Every authenticated callback as it arrived (`raw_callbacks.rs`).
    raw: Table,
    /// Readings to deliver and their indexes (`readings.rs`, `batches.rs`).
    readings: Table,
    rdx: Table,
    sealer: std::sync::Arc<Sealer>,
    /// Suppression hashes and mail tokens (`mail_keys.rs`).
    mail_keys: std::sync::Arc<MailKeys>,
    commit: durable::GroupCommit,
    health: std::sync::Arc<StoreHealth>,
    path: std::path::PathBuf,
    /// Who may be on the suppression list (`suppressed_filter.rs`).
    suppressed: std::sync::Arc<suppressed_filter::SuppressedFilter>,
    /// The open-invitation index in memory (`open_tags.rs`).
    open: std::sync::Arc<open_tags::OpenTags>,
    /// Raw callbacks judged and quarantined (`raw_tally.rs`).
    raw_tally: std::sync::Arc<raw_tally::RawTally>,
}

impl Core {
    /// Open (or create) the store; refuse a key that does not open it, and
    /// a store whose key rotation is unfinished (with either key).
    pub fn open(path: &Path, key: &SecretBox<[u8; 32]>) -> Result<Self> {
        // The schema version first: a newer store is refused before the engine
        // or anything of ours writes (`migrate.rs`).
        migrate::on_disk(path)?;
        let db = db::open_db(path)?;
        let sealer = Sealer::new(key);
        let meta = db.table(tables::META)?;
        let found = migrate::found(&meta, path)?;
        if let Some(journal) = rotation_journal::journal(&meta)? {
            // What the engine's own recovery changed on opening (after a
            // kill, the log's torn tail zeroed) made durable now, not left
            // to its background thread racing this process's exit: so a
            // second refused start finds nothing to redo and writes nothing.
            db.flush()?;
            return Err(StoreError::RotationUnfinished {
                path: path.display().to_string(),
                fingerprint: journal.new_key_fingerprint,
            });
        }
        db::check_key(&meta, &sealer, path)?;
        let mail_keys = std::sync::Arc::new(MailKeys::open(&meta, &sealer)?);
        let health = std::sync::Arc::new(StoreHealth::default());
        let commit = durable::GroupCommit::start(db.clone(), health.clone())
            .map_err(|e| StoreError::Engine(engine::EngineError::from_io(e)))?;
        let store = Self {
            commit,
            health,
            path: path.to_owned(),
            invitations: db.table(tables::INVITATIONS)?,
            members: db.table(tables::MEMBERS)?,
            idx: db.table(tables::IDX)?,
            log: db.table(tables::LOG)?,
            raw_tally: Default::default(),
            raw: db.table(tables::RAW)?,
            readings: db.table(tables::READINGS)?,
            rdx: db.table(tables::RDX)?,
            db,
            sealer: std::sync::Arc::new(sealer),
            mail_keys,
            suppressed: Default::default(),
            open: Default::default(),
        };
        store.ensure_campaign_counters()?;
        // Once per store: seal what a version before sealing wrote in clear.
        if meta.get(sealed::CONVERGED)?.is_none() {
            sealed::seal_legacy(&store.db, &store.sealer, &sealed::SEALED)?;
            store.hash_legacy_open_keys()?;
            meta.insert(sealed::CONVERGED, [1u8])?;
            meta.insert(sealed::LOG_CONVERGED, [1u8])?;
            meta.flush()?;
        }
        // Once per store sealed before its `log` records were.
        if meta.get(sealed::LOG_CONVERGED)?.is_none() {
            sealed::seal_legacy(&store.db, &store.sealer, &sealed::LOG_SEALED)?;
            meta.insert(sealed::LOG_CONVERGED, [1u8])?;
            meta.flush()?;
        }
        migrate::upgrade(&store.db, path, found)?;
        // Once per store written before readings were keyed by state, and
        // before the person and work indexes were folded (version 4).
        store.migrate_readings_layout(&meta)?;
        store.fold_person_index_once()?;
        store.fold_work_index_once()?;
        // Version 5: the open-invitation index keyed by invitation.
        store.fold_open_tags_once()?;
        store.suppressed.load(&store.idx)?;
        store.load_raw_tally()?;
        store.load_open_tags();
        Ok(store)
    }

    /// Make everything written so far durable.
    /// Callers waiting at the same time share one flush (group commit).
    pub async fn flush(&self) -> Result<()> {
        self.commit
            .flush()
            .await
            .map_err(|e| StoreError::Flush(e.to_string()))
    }

    /// Why the store cannot write, if a flush failed (see `write_health.rs`).
    pub fn failure(&self) -> Option<String> {
        self.health.failure()
    }

    /// Note an error from a store operation: an I/O error from the engine means
    /// this open database cannot write any more (see `write_health.rs`).
    pub fn note_error(&self, e: &StoreError) {
        if let StoreError::Engine(e) = e
            && let Some(io) = e.io()
        {
            self.health
                .mark_failed(&format!("I/O error: {}", write_health::io_words(io)));
        }
    }

    /// Resolves once a flush has failed.
    pub async fn wait_failed(&self) {
        self.health.wait_failed().await
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// For `/readyz`: a small write (the facade makes it durable), and the
    /// counters read back.
    pub fn probe_write(&self, current_version: u32) -> Result<()> {
        let meta = self.db.table(tables::META)?;
        meta.insert("readyz_probe", now_ms().to_be_bytes())?;
        self.counts(current_version).map(|_| ())
    }

    /// How many flushes the group commit has run (for metrics and benches).
    pub fn flushes(&self) -> u64 {
        self.commit.flushes()
    }

    /// Suppression hashes and mail tokens.
    pub fn mail_keys(&self) -> &MailKeys {
        &self.mail_keys
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Counts for `/status`.
    pub fn counts(&self, current_version: u32) -> Result<StatusCounts> {
        let mut c = StatusCounts::default();
        for s in State::ALL {
            c.invitations
                .push((s, self.counter(&Counter::Invitations(s))?));
        }
        for item in self.idx.scan_prefix(schema::MEMBERS_AT_VERSION_PREFIX) {
            let (k, v) = item?;
            let version = match Counter::decode(&k) {
                Some(Counter::MembersAtVersion(v)) => v,
                _ => 0,
            };
            let n = decode_u64(&v);
            c.members_total += n;
            if version < current_version {
                c.members_outdated += n;
            }
        }
        c.members_disconnected = self.counter(&Counter::MembersDisconnected)?;
        c.unmatched_callbacks = self.counter(&Counter::Unmatched)?;
        c.events_identify = self.counter(&Counter::IdentifyEvents)?;
        c.events_notification = self.counter(&Counter::NotificationEvents)?;
        (c.callbacks_stored, c.callbacks_quarantined) = self.raw_counts()?;
        Ok(c)
    }

    fn counter(&self, key: &Counter) -> Result<u64> {
        Ok(self
            .idx
            .get(key.encode())?
            .map(|v| decode_u64(&v))
            .unwrap_or(0))
    }

    pub fn member(&self, connection_id: &str) -> Result<Option<Member>> {
        let conn = connection_id.as_bytes();
        self.members
            .get(conn)?
            .map(|v| sealed::open(&self.sealer, sealed::MEMBERS, conn, &v, "member"))
            .transpose()
    }

    pub fn all_members(&self) -> impl Iterator<Item = Result<Member>> + '_ {
        self.members.iter().map(|item| {
            let (k, v) = item?;
            sealed::open(&self.sealer, sealed::MEMBERS, &k, &v, "member")
        })
    }

    /// Up to `limit` members after connection id `after`, in key order.
    pub fn members_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<Member>> {
        let start = match after {
            Some(a) => std::ops::Bound::Excluded(a.as_bytes().to_vec()),
            None => std::ops::Bound::Unbounded,
        };
        self.members
            .range::<Vec<u8>, _>((start, std::ops::Bound::Unbounded))
            .take(limit)
            .map(|item| {
                let (k, v) = item?;
                sealed::open(&self.sealer, sealed::MEMBERS, &k, &v, "member")
            })
            .collect()
    }

    /// The unmatched callbacks kept (sealed, or in clear if written so).
    #[cfg(test)]
    pub fn unmatched(&self) -> impl Iterator<Item = Result<CallbackRecord>> + '_ {
        self.log.scan_prefix(schema::UNMATCHED_PREFIX).map(|item| {
            let (k, v) = item?;
            sealed::open(&self.sealer, sealed::LOG, &k, &v, "unmatched callback")
        })
    }

    /// The database files' size on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }
}

#[derive(Debug, Default, Clone)]
pub struct StatusCounts {
    pub invitations: Vec<(State, u64)>,
    pub members_total: u64,
    pub members_outdated: u64,
    pub members_disconnected: u64,
    pub unmatched_callbacks: u64,
    pub events_identify: u64,
    pub events_notification: u64,
    /// Authenticated callbacks kept as they arrived (and judged).
    pub callbacks_stored: u64,
    /// Of those, the ones quarantined now.
    pub callbacks_quarantined: u64,
}

/// Add `delta` to a counter inside a transaction.
fn bump(idx: &TxTable<'_>, counter: &Counter, delta: i64) -> TxResult<()> {
    let key = counter.encode();
    let current = idx.get(&key)?.map(|v| decode_u64(&v)).unwrap_or(0);
    let next = (current as i64 + delta).max(0) as u64;
    idx.insert(key, next.to_be_bytes())?;
    Ok(())
}

impl Core {
    /// `flush` for blocking contexts (intake runs on a blocking thread).
    pub fn flush_blocking(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}
