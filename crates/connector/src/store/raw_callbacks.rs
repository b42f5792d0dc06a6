//! Every authenticated callback, kept as it arrived before anything judges
//! it: method, Content-Type and the body bytes, the body sealed under the
//! store key (it may hold a member key), and then what became of it —
//! applied (connected, updated, unmatched, replay, recorded) or quarantined
//! with the reason. A parse error or a panic cannot lose what Mydex sent
//! (it sends a member's key once); an operator replays quarantined ones
//! after an upgrade or a config fix (docs/mydex-contract.md §5).
//!
//! Tree `raw`: `r/{id}` → the record (JSON, small: rewritten when settled),
//! `b/{id}` → the sealed body (written once), `q/{id}` → the index of the
//! quarantined ones, `p/{id}` → of the pending ones (judged again when the
//! daemon starts: it stopped before answering them), `c/j/{block}` → which
//! are judged, a bit each (`raw_tally.rs`: the counts, exact after any
//! kill). Every write here is a single-key engine operation: an engine
//! batch or transaction holds every other writer of the database off while
//! it commits, which cost the durable-callbacks bench ~40% of its
//! throughput. So the keys of one callback are written in an order that a
//! stop between them leaves readable and countable: kept, mark, body, then
//! record (a mark without a record is dropped at start); settled, record,
//! quarantine index, judged bit, then the mark removed (a stop before that
//! judges it again at start, which sets the same bit). Nothing is answered
//! before the group-commit flush that covers them all (the same flush as
//! the callback's effects: none of their own).

use super::Core;
use super::codec::{decode, decode_u64, encode};
use super::error::{Result, StoreError};
use super::records::now_ms;
use super::schema::{self, Counter, RawKey};

/// What became of a raw callback.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RawOutcome {
    /// Stored, not judged yet (or the daemon stopped before it was).
    Pending,
    /// Parsed and applied: `connected`, `updated`, `unmatched`, `replay`
    /// or `recorded`.
    Applied { status: String },
    /// Kept without effect, with why.
    Quarantined { reason: String },
}

impl RawOutcome {
    pub fn state(&self) -> &'static str {
        match self {
            RawOutcome::Pending => "pending",
            RawOutcome::Applied { .. } => "applied",
            RawOutcome::Quarantined { .. } => "quarantined",
        }
    }
}

/// An earlier outcome of a callback that was replayed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PastOutcome {
    pub until_ms: u64,
    #[serde(flatten)]
    pub outcome: RawOutcome,
}

/// A callback as it arrived, and its outcome.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RawCallback {
    pub id: u64,
    pub received_ms: u64,
    pub method: String,
    pub content_type: Option<String>,
    /// Body length in bytes.
    pub size: u64,
    /// `ftc`, `update`, `identify` or `notification` once parsed.
    #[serde(default)]
    pub kind: Option<String>,
    pub outcome: RawOutcome,
    /// Outcomes before replays, oldest first (the last few).
    #[serde(default)]
    pub history: Vec<PastOutcome>,
}

/// The body of raw callback `id` exactly as it arrived, sealed with
/// `raw_aad(id)` (under `b/{id}`, apart from its record, so that settling a
/// record does not rewrite its body).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RawBody {
    pub id: u64,
    pub sealed_body: String,
}

/// Earlier outcomes kept per record.
const HISTORY: usize = 10;

/// Associated data binding a sealed body to its record.
pub fn raw_aad(id: u64) -> Vec<u8> {
    format!("raw/{id}").into_bytes()
}

fn record_key(id: u64) -> Vec<u8> {
    RawKey::Record(id).encode()
}

fn body_key(id: u64) -> Vec<u8> {
    RawKey::Body(id).encode()
}

fn pending_key(id: u64) -> Vec<u8> {
    RawKey::Pending(id).encode()
}

fn quarantine_key(id: u64) -> Vec<u8> {
    RawKey::Quarantined(id).encode()
}

/// Which raw callbacks to list.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawFilter {
    pub quarantined_only: bool,
}

impl Core {
    /// Keep an authenticated callback as it arrived (pending); its id.
    /// Not flushed here: the caller's flush covers it with its effects.
    pub fn keep_raw(&self, method: &str, content_type: Option<&str>, body: &[u8]) -> Result<u64> {
        let id = self.db.next_id()?;
        let rec = RawCallback {
            id,
            received_ms: now_ms(),
            method: method.to_string(),
            content_type: content_type.map(str::to_string),
            size: body.len() as u64,
            kind: None,
            outcome: RawOutcome::Pending,
            history: Vec::new(),
        };
        let sealed = RawBody {
            id,
            sealed_body: self.sealer.seal(body, &raw_aad(id)),
        };
        let (sealed, rec) = (encode(&sealed), encode(&rec));
        // The mark first, the record last: the engine recovers a prefix of
        // its writes, so a stop between them leaves a mark whose record is
        // missing, which the next start drops (`drop_unrecorded_raw`: Mydex
        // was not answered and sends it again), never a record nobody
        // judges.
        self.raw.insert(pending_key(id), [])?;
        self.raw.insert(body_key(id), sealed)?;
        self.raw.insert(record_key(id), rec)?;
        Ok(id)
    }

    /// Record what became of raw callback `id` (a replay keeps the earlier
    /// outcome in its history).
    pub fn settle_raw(&self, id: u64, kind: Option<&str>, outcome: &RawOutcome) -> Result<()> {
        let mut rec = self.raw_callback(id)?;
        let was_pending = rec.outcome == RawOutcome::Pending;
        if !was_pending {
            rec.history.push(PastOutcome {
                until_ms: now_ms(),
                outcome: rec.outcome.clone(),
            });
            let extra = rec.history.len().saturating_sub(HISTORY);
            rec.history.drain(..extra);
        }
        rec.outcome = outcome.clone();
        if let Some(k) = kind {
            rec.kind = Some(k.to_string());
        }
        self.raw.insert(record_key(id), encode(&rec))?;
        if matches!(outcome, RawOutcome::Quarantined { .. }) {
            if self.raw.insert(quarantine_key(id), [])?.is_none() {
                self.raw_tally.quarantine(true);
            }
        } else if self.raw.remove(quarantine_key(id))?.is_some() {
            self.raw_tally.quarantine(false);
        }
        self.raw_tally.judged(&self.raw, id)?;
        // Last: a stop before this judges it again at start (a replay of
        // its effects changes nothing, its bit is set already).
        self.raw.remove(pending_key(id))?;
        Ok(())
    }

    /// Drop the pending mark (and the body) of a callback whose record was
    /// never written: the daemon stopped while keeping it, before any
    /// answer, so Mydex sends it again.
    pub fn drop_unrecorded_raw(&self, id: u64) -> Result<()> {
        if self.raw.get(record_key(id))?.is_none() {
            self.raw.remove(body_key(id))?;
            self.raw.remove(pending_key(id))?;
        }
        Ok(())
    }

    /// Erase every raw callback whose body names one of `conns` (their
    /// connection key came in it), opening each sealed body to look, and
    /// the unmatched callbacks kept for them (`log`, `u/`). For `people
    /// forget --disconnect`; how many were erased.
    pub(super) fn forget_raw(&self, conns: &[String]) -> Result<usize> {
        if conns.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        for item in self.raw.scan_prefix(schema::RAW_BODY_PREFIX) {
            let (_, v) = item?;
            let body: RawBody = decode(&v, "raw callback body")?;
            let plain = self.sealer.open(&body.sealed_body, &raw_aad(body.id))?;
            if !conns.iter().any(|c| contains(&plain, c.as_bytes())) {
                continue;
            }
            // The bit first, the body last: a stop in between leaves the
            // body, found again by the next `people forget`, which does
            // the rest again.
            let id = body.id;
            self.raw_tally.erased(&self.raw, id)?;
            if self.raw.remove(quarantine_key(id))?.is_some() {
                self.raw_tally.quarantine(false);
            }
            self.raw.remove(record_key(id))?;
            self.raw.remove(pending_key(id))?;
            self.raw.remove(body_key(id))?;
            n += 1;
        }
        for item in self.log.scan_prefix(schema::UNMATCHED_PREFIX) {
            let (k, v) = item?;
            let rec: super::CallbackRecord = super::sealed::open(
                &self.sealer,
                super::sealed::LOG,
                &k,
                &v,
                "unmatched callback",
            )?;
            if rec
                .connection_id
                .as_ref()
                .is_some_and(|c| conns.contains(c))
            {
                self.log.remove(&k)?;
                self.idx
                    .update_and_fetch(Counter::Unmatched.encode(), |old| {
                        let current = old.map(decode_u64).unwrap_or(0);
                        Some(current.saturating_sub(1).to_be_bytes().to_vec())
                    })?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// One raw callback, or `NotFound`.
    pub fn raw_callback(&self, id: u64) -> Result<RawCallback> {
        self.raw
            .get(record_key(id))?
            .map(|v| decode(&v, "raw callback"))
            .transpose()?
            .ok_or(StoreError::NotFound(id))
    }

    /// The body of a raw callback, opened (it may hold a member key: never
    /// log or show it unredacted).
    pub fn raw_body(&self, rec: &RawCallback) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let sealed: RawBody = self
            .raw
            .get(body_key(rec.id))?
            .map(|v| decode(&v, "raw callback body"))
            .transpose()?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("the body of callback {} is missing", rec.id))
            })?;
        Ok(zeroize::Zeroizing::new(
            self.sealer.open(&sealed.sealed_body, &raw_aad(rec.id))?,
        ))
    }

    /// Raw callbacks by id, after `after`, at most `limit`.
    pub fn raw_callbacks(
        &self,
        filter: RawFilter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RawCallback>> {
        let start = after.map(|a| a.saturating_add(1)).unwrap_or(0);
        let mut out = Vec::new();
        if filter.quarantined_only {
            for item in self.raw.range(quarantine_key(start)..) {
                let (k, _) = item?;
                let Some(RawKey::Quarantined(id)) = RawKey::decode(&k) else {
                    break;
                };
                if out.len() >= limit {
                    break;
                }
                // A record settled otherwise meanwhile is skipped.
                if let Ok(rec) = self.raw_callback(id)
                    && matches!(rec.outcome, RawOutcome::Quarantined { .. })
                {
                    out.push(rec);
                }
            }
        } else {
            for item in self.raw.range(record_key(start)..) {
                let (k, v) = item?;
                if !matches!(RawKey::decode(&k), Some(RawKey::Record(_))) || out.len() >= limit {
                    break;
                }
                out.push(decode(&v, "raw callback")?);
            }
        }
        Ok(out)
    }

    /// Ids of the callbacks kept but not judged (the daemon stopped first).
    pub fn pending_raw(&self) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for item in self.raw.scan_prefix(schema::RAW_PENDING_PREFIX) {
            let (k, _) = item?;
            if let Some(RawKey::Pending(id)) = RawKey::decode(&k) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Count the raw callbacks judged and quarantined (at open).
    pub(super) fn load_raw_tally(&self) -> Result<()> {
        self.raw_tally.load(&self.raw, judged_id)
    }

    /// (stored, quarantined) raw callbacks.
    pub fn raw_counts(&self) -> Result<(u64, u64)> {
        Ok(self.raw_tally.counts())
    }
}

/// The id of raw callback record `value` if it has been judged (for
/// `raw_tally.rs`, converting a store counted the old way).
fn judged_id(value: &[u8]) -> Result<Option<u64>> {
    let rec: RawCallback = decode(value, "raw callback")?;
    Ok((rec.outcome != RawOutcome::Pending).then_some(rec.id))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretBox;

    #[test]
    fn a_stop_at_any_write_leaves_the_counts_agreeing_with_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretBox::new(Box::new([5u8; 32]));
        let s = Core::open(dir.path(), &key).unwrap();
        let applied = RawOutcome::Applied {
            status: "connected".into(),
        };
        // Kept in part: the mark and the body, no record (a stop between).
        let partial = s.keep_raw("POST", None, b"{}").unwrap();
        s.raw.remove(record_key(partial)).unwrap();
        // Settled in part: its bit set, its mark not yet removed.
        let judged = s.keep_raw("POST", None, b"{}").unwrap();
        s.settle_raw(judged, Some("ftc"), &applied).unwrap();
        s.raw.insert(pending_key(judged), []).unwrap();
        drop(s);

        let s = Core::open(dir.path(), &key).unwrap();
        assert_eq!(s.raw_counts().unwrap(), (1, 0));
        assert_eq!(s.pending_raw().unwrap(), [partial, judged]);
        // What the start does with them (`callback_judge::judge_pending`).
        s.drop_unrecorded_raw(partial).unwrap();
        s.settle_raw(judged, Some("ftc"), &applied).unwrap();
        assert!(s.pending_raw().unwrap().is_empty());
        assert!(s.raw.get(body_key(partial)).unwrap().is_none());
        let listed = s.raw_callbacks(RawFilter::default(), None, 10).unwrap();
        assert_eq!(listed.iter().map(|r| r.id).collect::<Vec<_>>(), [judged]);
        assert_eq!(
            s.raw_counts().unwrap(),
            (1, 0),
            "judged twice, counted once"
        );
    }

    #[test]
    fn kept_sealed_settled_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Core::open(dir.path(), &SecretBox::new(Box::new([5u8; 32]))).unwrap();
        let body = b"uid=1&key=SECRET-KEY&connection_id=1-2";
        let a = s
            .keep_raw("POST", Some("application/x-www-form-urlencoded"), body)
            .unwrap();
        let b = s.keep_raw("PUT", None, b"\xff\xfe").unwrap();
        let rec = s.raw_callback(a).unwrap();
        let stored = s.raw.get(body_key(a)).unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&stored).contains("SECRET"));
        assert_eq!(s.raw_body(&rec).unwrap().as_slice(), body);
        assert_eq!(rec.outcome, RawOutcome::Pending);
        assert_eq!(s.raw_counts().unwrap(), (0, 0), "counted once judged");
        assert_eq!(s.pending_raw().unwrap(), [a, b]);

        let q = RawOutcome::Quarantined {
            reason: "why".into(),
        };
        s.settle_raw(a, None, &q).unwrap();
        s.settle_raw(b, None, &q).unwrap();
        s.settle_raw(b, None, &q).unwrap();
        assert_eq!(s.raw_counts().unwrap(), (2, 2));
        assert!(s.pending_raw().unwrap().is_empty());
        let listed = s
            .raw_callbacks(
                RawFilter {
                    quarantined_only: true,
                },
                None,
                10,
            )
            .unwrap();
        assert_eq!(listed.iter().map(|r| r.id).collect::<Vec<_>>(), [a, b]);
        s.settle_raw(
            a,
            Some("ftc"),
            &RawOutcome::Applied {
                status: "connected".into(),
            },
        )
        .unwrap();
        assert_eq!(s.raw_counts().unwrap(), (2, 1));
        let rec = s.raw_callback(a).unwrap();
        assert_eq!(rec.history.len(), 1);
        assert_eq!(rec.kind.as_deref(), Some("ftc"));
        let listed = s
            .raw_callbacks(
                RawFilter {
                    quarantined_only: true,
                },
                None,
                10,
            )
            .unwrap();
        assert_eq!(listed.iter().map(|r| r.id).collect::<Vec<_>>(), [b]);
        assert_eq!(
            s.raw_callbacks(RawFilter::default(), Some(a), 10)
                .unwrap()
                .len(),
            1
        );
        assert!(matches!(
            s.raw_callback(999_999),
            Err(StoreError::NotFound(_))
        ));
    }
}
