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
//! daemon starts: it stopped before answering them), `c/stored` and
//! `c/quarantined` counters (`stored` counts those judged: a pending one is
//! counted once judged). A callback's keys are written in one transaction
//! of this tree when it is kept (pending mark, body, record), and again when
//! it is settled (record, quarantine index, counters, the pending mark
//! removed): a kill between two of them would leave a record nobody judges
//! or a count that disagrees with the records for good. The transactions
//! touch this tree only: not the callback's effects, so the hot counters
//! conflict only with each other. Nothing is answered before the
//! group-commit flush that covers them (the same flush as the callback's
//! effects: none of their own).

use super::Core;
use super::codec::{decode, decode_u64, encode, tx_decode};
use super::engine::{Transactional, TxTable};
use super::error::{Result, StoreError, TxResult};
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

/// Move a counter of tree `raw` within a transaction.
fn tx_bump(raw: &TxTable<'_>, key: RawKey, delta: i64) -> TxResult<()> {
    let key = key.encode();
    let current = raw.get(&key)?.map(|v| decode_u64(&v)).unwrap_or(0);
    raw.insert(key, ((current as i64 + delta).max(0) as u64).to_be_bytes())?;
    Ok(())
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
        self.raw.transaction(|raw| {
            raw.insert(pending_key(id), [])?;
            raw.insert(body_key(id), &sealed)?;
            raw.insert(record_key(id), &rec)?;
            Ok::<_, super::engine::TxError<StoreError>>(())
        })?;
        Ok(id)
    }

    /// Record what became of raw callback `id` (a replay keeps the earlier
    /// outcome in its history).
    pub fn settle_raw(&self, id: u64, kind: Option<&str>, outcome: &RawOutcome) -> Result<()> {
        self.raw.transaction(|raw| {
            let mut rec: RawCallback = match raw.get(record_key(id))? {
                Some(v) => tx_decode(&v, "raw callback")?,
                None => return Err(super::engine::abort(StoreError::NotFound(id))),
            };
            let was_pending = rec.outcome == RawOutcome::Pending;
            let was = matches!(rec.outcome, RawOutcome::Quarantined { .. });
            let now = matches!(outcome, RawOutcome::Quarantined { .. });
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
            raw.insert(record_key(id), encode(&rec))?;
            match (was, now) {
                (false, true) => {
                    raw.insert(quarantine_key(id), [])?;
                    tx_bump(raw, RawKey::QuarantinedCount, 1)?;
                }
                (true, false) => {
                    raw.remove(quarantine_key(id))?;
                    tx_bump(raw, RawKey::QuarantinedCount, -1)?;
                }
                _ => {}
            }
            if raw.remove(pending_key(id))?.is_some() {
                tx_bump(raw, RawKey::StoredCount, 1)?;
            }
            Ok(())
        })
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
            let id = body.id;
            self.raw.transaction(|raw| {
                raw.remove(body_key(id))?;
                let had_record = raw.remove(record_key(id))?.is_some();
                let pending = raw.remove(pending_key(id))?.is_some();
                if raw.remove(quarantine_key(id))?.is_some() {
                    tx_bump(raw, RawKey::QuarantinedCount, -1)?;
                }
                if had_record && !pending {
                    tx_bump(raw, RawKey::StoredCount, -1)?;
                }
                Ok::<_, super::engine::TxError<StoreError>>(())
            })?;
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

    /// (stored, quarantined) raw callbacks.
    pub fn raw_counts(&self) -> Result<(u64, u64)> {
        let get = |k: RawKey| -> Result<u64> {
            Ok(self
                .raw
                .get(k.encode())?
                .map(|v| decode_u64(&v))
                .unwrap_or(0))
        };
        Ok((get(RawKey::StoredCount)?, get(RawKey::QuarantinedCount)?))
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretBox;

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
