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
//! counted once judged). Every write here is a single-key engine operation,
//! counters moved with `update_and_fetch`: an engine batch takes a lock over
//! the whole database and transactions conflict on the hot counters, which
//! cost the durable-callbacks bench ~40% of its throughput. So the keys of
//! one callback are not written atomically together; they are written in an
//! order that a stop between them leaves readable (body, record, then the
//! pending mark; when settled: record, indexes, counters), and nothing is
//! answered before the group-commit flush that covers them all (the same
//! flush as the callback's effects: none of their own).

use super::Core;
use super::codec::{decode, decode_u64, encode};
use super::error::{Result, StoreError};
use super::records::now_ms;

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
    [b"r/".as_slice(), &id.to_be_bytes()].concat()
}

fn body_key(id: u64) -> Vec<u8> {
    [b"b/".as_slice(), &id.to_be_bytes()].concat()
}

fn pending_key(id: u64) -> Vec<u8> {
    [b"p/".as_slice(), &id.to_be_bytes()].concat()
}

fn quarantine_key(id: u64) -> Vec<u8> {
    [b"q/".as_slice(), &id.to_be_bytes()].concat()
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
        self.raw.insert(body_key(id), encode(&sealed))?;
        self.raw.insert(record_key(id), encode(&rec))?;
        self.raw.insert(pending_key(id), &[][..])?;
        Ok(id)
    }

    /// Record what became of raw callback `id` (a replay keeps the earlier
    /// outcome in its history).
    pub fn settle_raw(&self, id: u64, kind: Option<&str>, outcome: &RawOutcome) -> Result<()> {
        let mut rec = self.raw_callback(id)?;
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
        self.raw.insert(record_key(id), encode(&rec))?;
        match (was, now) {
            (false, true) => {
                self.raw.insert(quarantine_key(id), &[][..])?;
                self.bump_raw("c/quarantined", 1)?;
            }
            (true, false) => {
                self.raw.remove(quarantine_key(id))?;
                self.bump_raw("c/quarantined", -1)?;
            }
            _ => {}
        }
        // Last: a stop before this judges it again at start (a replay of
        // its effects changes nothing).
        if self.raw.remove(pending_key(id))?.is_some() {
            self.bump_raw("c/stored", 1)?;
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
        for item in self.raw.scan_prefix(b"b/") {
            let (_, v) = item?;
            let body: RawBody = decode(&v, "raw callback body")?;
            let plain = self.sealer.open(&body.sealed_body, &raw_aad(body.id))?;
            if !conns.iter().any(|c| contains(&plain, c.as_bytes())) {
                continue;
            }
            let rec = self.raw_callback(body.id).ok();
            self.raw.remove(body_key(body.id))?;
            self.raw.remove(record_key(body.id))?;
            let pending = self.raw.remove(pending_key(body.id))?.is_some();
            if self.raw.remove(quarantine_key(body.id))?.is_some() {
                self.bump_raw("c/quarantined", -1)?;
            }
            if rec.is_some() && !pending {
                self.bump_raw("c/stored", -1)?;
            }
            n += 1;
        }
        for item in self.log.scan_prefix(b"u/") {
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
                self.idx.update_and_fetch("c/unmatched", |old| {
                    let current = old.map(decode_u64).unwrap_or(0);
                    Some(current.saturating_sub(1).to_be_bytes().to_vec())
                })?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Move a counter of tree `raw` (atomic, single key).
    fn bump_raw(&self, key: &str, delta: i64) -> Result<()> {
        self.raw.update_and_fetch(key, |old| {
            let current = old.map(decode_u64).unwrap_or(0);
            Some(
                ((current as i64 + delta).max(0) as u64)
                    .to_be_bytes()
                    .to_vec(),
            )
        })?;
        Ok(())
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
                if !k.starts_with(b"q/") || out.len() >= limit {
                    break;
                }
                let id = decode_u64(&k[2..]);
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
                if !k.starts_with(b"r/") || out.len() >= limit {
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
        for item in self.raw.scan_prefix(b"p/") {
            let (k, _) = item?;
            out.push(decode_u64(&k[2..]));
        }
        Ok(out)
    }

    /// (stored, quarantined) raw callbacks.
    pub fn raw_counts(&self) -> Result<(u64, u64)> {
        let get =
            |k: &str| -> Result<u64> { Ok(self.raw.get(k)?.map(|v| decode_u64(&v)).unwrap_or(0)) };
        Ok((get("c/stored")?, get("c/quarantined")?))
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
