//! Rows rejected on their way in, kept so an operator can list them
//! (`rejects list`, `GET /rejects`) long after the command that placed them
//! said "queued": each under `j/` + when + id in `log` (in the order they
//! came), sealed whole because a reason may quote the address or the value
//! it refuses; and what the daemon made of each file placed for it (`v/` +
//! the name it had there), which `enqueue --wait` and `deliver --wait` ask
//! for. Neither grows without bound: rejects older than [`MAX_AGE`] go,
//! and past [`CAP`] the oldest go first; verdicts older than [`MAX_AGE`] go,
//! and past [`VERDICT_CAP`] the oldest.

use super::Core;
use super::codec::{decode, decode_u64, encode};
use super::engine::Transactional;
use super::error::Result;
use super::schema::{self, Counter};
use super::sealed::{LOG, open, seal};
use crate::domain::{IntakeVerdict, Rejection};

/// Rejects older than this are dropped (30 days).
pub const MAX_AGE_MS: u64 = 30 * 24 * 3600 * 1000;
/// [`MAX_AGE_MS`] in words, for the docs and answers.
pub const MAX_AGE: &str = "30 days";
/// Most rejects kept; past it, the oldest are dropped.
pub const CAP: u64 = 100_000;
/// Most verdicts kept.
pub const VERDICT_CAP: usize = 10_000;
/// Rejects dropped per transaction while pruning.
const PRUNE_CHUNK: usize = 1_000;

/// A verdict as kept: the answer and when it was made.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptVerdict {
    at_ms: u64,
    verdict: IntakeVerdict,
}

impl Core {
    /// Keep `rows` (one transaction, counted), then drop what is past the
    /// age or the cap.
    pub fn record_rejects(&self, rows: &[Rejection]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(rows.len());
        for _ in rows {
            ids.push(self.db.next_id()?);
        }
        (&self.log, &self.idx).transaction(|(log_t, idx)| {
            for (row, id) in rows.iter().zip(&ids) {
                let key = schema::reject_key(row.at_ms, *id);
                log_t.insert(key.as_slice(), seal(&self.sealer, LOG, &key, row))?;
            }
            let n = rows.len() as i64;
            super::bump(idx, &Counter::Rejected, n)?;
            super::bump(idx, &Counter::RejectedTotal, n)?;
            Ok(())
        })?;
        self.prune_rejects(super::now_ms().saturating_sub(MAX_AGE_MS), CAP)
    }

    /// Drop rejects from before `cutoff_ms`, then the oldest while more
    /// than `cap` are kept.
    pub fn prune_rejects(&self, cutoff_ms: u64, cap: u64) -> Result<()> {
        loop {
            let held = self.counter(&Counter::Rejected)?;
            let over = held.saturating_sub(cap) as usize;
            let mut doomed = Vec::new();
            for item in self.log.scan_prefix(schema::REJECT_PREFIX) {
                let (k, _) = item?;
                if doomed.len() >= PRUNE_CHUNK || (doomed.len() >= over && at_of(&k) >= cutoff_ms) {
                    break;
                }
                doomed.push(k.to_vec());
            }
            if doomed.is_empty() {
                return Ok(());
            }
            (&self.log, &self.idx).transaction(|(log_t, idx)| {
                let mut gone = 0i64;
                for k in &doomed {
                    if log_t.remove(k.as_slice())?.is_some() {
                        gone += 1;
                    }
                }
                super::bump(idx, &Counter::Rejected, -gone)
            })?;
            if doomed.len() < PRUNE_CHUNK {
                return Ok(());
            }
        }
    }

    /// Rejects kept now.
    pub fn rejected_count(&self) -> Result<u64> {
        self.counter(&Counter::Rejected)
    }

    /// Up to `limit` rejects from `since_ms` on, after the one with cursor
    /// `after` (see [`cursor_of`]), oldest first; with `source`, only those
    /// of the file placed under that name.
    pub fn rejects_page(
        &self,
        since_ms: u64,
        after: Option<&[u8]>,
        source: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Rejection>, Option<Vec<u8>>)> {
        use std::ops::Bound;
        let start = match after {
            Some(k) => Bound::Excluded([schema::REJECT_PREFIX, k].concat()),
            None => Bound::Included(schema::reject_key(since_ms, 0)),
        };
        let mut out = Vec::new();
        let mut last = None;
        for item in self.log.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (k, v) = item?;
            if !k.starts_with(schema::REJECT_PREFIX) {
                return Ok((out, None));
            }
            if out.len() >= limit {
                return Ok((out, last));
            }
            last = Some(k[schema::REJECT_PREFIX.len()..].to_vec());
            let row: Rejection = open(&self.sealer, LOG, &k, &v, "rejected row")?;
            if source.is_none_or(|s| s == row.source) {
                out.push(row);
            }
        }
        Ok((out, None))
    }

    /// Keep what the daemon made of the file placed as `source`.
    pub fn record_verdict(&self, source: &str, verdict: &IntakeVerdict) -> Result<()> {
        let kept = KeptVerdict {
            at_ms: super::now_ms(),
            verdict: verdict.clone(),
        };
        self.log
            .insert(schema::verdict_key(source), encode(&kept))?;
        self.prune_verdicts(kept.at_ms.saturating_sub(MAX_AGE_MS))
    }

    /// The verdict on the file placed as `source`, once it was taken in.
    pub fn verdict(&self, source: &str) -> Result<Option<IntakeVerdict>> {
        match self.log.get(schema::verdict_key(source))? {
            Some(v) => Ok(Some(decode::<KeptVerdict>(&v, "verdict")?.verdict)),
            None => Ok(None),
        }
    }

    /// Drop verdicts from before `cutoff_ms`, and the oldest past the cap.
    fn prune_verdicts(&self, cutoff_ms: u64) -> Result<()> {
        let mut all = Vec::new();
        for item in self.log.scan_prefix(schema::VERDICT_PREFIX) {
            let (k, v) = item?;
            let at = decode::<KeptVerdict>(&v, "verdict").map_or(0, |kv| kv.at_ms);
            all.push((at, k.to_vec()));
        }
        all.sort();
        let over = all.len().saturating_sub(VERDICT_CAP);
        for (i, (at, k)) in all.into_iter().enumerate() {
            if i >= over && at >= cutoff_ms {
                break;
            }
            self.log.remove(k)?;
        }
        Ok(())
    }
}

/// When a reject key's row was rejected.
fn at_of(key: &[u8]) -> u64 {
    key.get(schema::REJECT_PREFIX.len()..schema::REJECT_PREFIX.len() + 8)
        .map_or(0, decode_u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Core;

    fn core() -> (tempfile::TempDir, Core) {
        let dir = tempfile::tempdir().unwrap();
        let key = secrecy::SecretBox::new(Box::new([7u8; 32]));
        let c = Core::open(&dir.path().join("db"), &key).unwrap();
        (dir, c)
    }

    fn row(at_ms: u64, line: u64, source: &str) -> Rejection {
        Rejection {
            file: "invitees.csv".into(),
            source: source.into(),
            line,
            reason: format!("bad row {line}"),
            at_ms,
        }
    }

    #[test]
    fn rejects_are_listed_in_order_paged_and_pruned() {
        let (_d, c) = core();
        let now = super::super::now_ms();
        let rows: Vec<Rejection> = (1..=5).map(|i| row(now + i, i, "a")).collect();
        c.record_rejects(&rows).unwrap();
        c.record_rejects(&[row(now + 9, 9, "b")]).unwrap();
        assert_eq!(c.rejected_count().unwrap(), 6);
        let (page, next) = c.rejects_page(0, None, None, 4).unwrap();
        assert_eq!(
            page.iter().map(|r| r.line).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        let (rest, end) = c.rejects_page(0, next.as_deref(), None, 4).unwrap();
        assert_eq!(rest.iter().map(|r| r.line).collect::<Vec<_>>(), [5, 9]);
        assert!(end.is_none());
        let (b, _) = c.rejects_page(0, None, Some("b"), 10).unwrap();
        assert_eq!(b.len(), 1);
        let (since, _) = c.rejects_page(now + 4, None, None, 10).unwrap();
        assert_eq!(since.len(), 3);
        // Past the cap the oldest go; past the age, the old ones.
        c.prune_rejects(0, 4).unwrap();
        assert_eq!(c.rejected_count().unwrap(), 4);
        let (left, _) = c.rejects_page(0, None, None, 10).unwrap();
        assert_eq!(left[0].line, 3);
        c.prune_rejects(now + 5, CAP).unwrap();
        let (left, _) = c.rejects_page(0, None, None, 10).unwrap();
        assert_eq!(left.iter().map(|r| r.line).collect::<Vec<_>>(), [5, 9]);
        assert_eq!(c.rejected_count().unwrap(), 2);
        assert_eq!(c.counter(&Counter::RejectedTotal).unwrap(), 6);
    }

    #[test]
    fn verdicts_are_kept_by_name() {
        let (_d, c) = core();
        assert!(c.verdict("x.jsonl").unwrap().is_none());
        let v = IntakeVerdict {
            file: "in.csv".into(),
            stored: 3,
            rejected: 1,
            ..Default::default()
        };
        c.record_verdict("x.jsonl", &v).unwrap();
        assert_eq!(c.verdict("x.jsonl").unwrap(), Some(v));
    }
}
