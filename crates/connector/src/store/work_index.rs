//! The dispatcher's work index: which invitations need dispatching (queued,
//! link issued), as bitmaps of 64 consecutive ids (`wb/{id / 64}` in `idx`,
//! big-endian, value a `u64` whose bit `id % 64` is set). Ids are handed
//! out in increasing order, so a batch of 1,000 new invitations sets about
//! sixteen keys rather than writing one each, and the engine keeps a sixty-fourth
//! of the keys (and of the pages it tracks in memory) it kept for one key an
//! invitation (`w/{id}`, written by stores before: [`Core::fold_work_index_once`]
//! turns them into bits once).
//!
//! Every change happens inside a transaction (`tx_transition`, inserts,
//! forgetting), which the engine runs one at a time, so setting a bit is a plain
//! read-modify-write of its block.

use super::engine::{Table, Transactional, TxTable, Value};
use super::schema::{self, IdxKey, tables};

use super::{Core, Result, TxResult, decode_u64};

const PREFIX: &[u8] = schema::WORK_BITS_PREFIX;

/// The key of earlier stores, one per invitation: `w/{id}`.
const OLD: &[u8] = schema::WORK_PREFIX;

/// Set in `meta` once the old keys are folded into bits.
const DONE: &str = "work_index_v2";

fn block_key(block: u64) -> Vec<u8> {
    IdxKey::WorkBits(block).encode()
}

fn split(id: u64) -> (u64, u64) {
    (id / 64, 1u64 << (id % 64))
}

/// Mark `ids` as work, one read and one write per block of 64 they touch.
pub(super) fn tx_set(idx: &TxTable<'_>, ids: &[u64]) -> TxResult<()> {
    let mut i = 0;
    while i < ids.len() {
        let (block, _) = split(ids[i]);
        let mut bits = 0u64;
        while i < ids.len() && split(ids[i]).0 == block {
            bits |= split(ids[i]).1;
            i += 1;
        }
        let key = block_key(block);
        let have = idx.get(&key)?.map(|v| decode_u64(&v)).unwrap_or(0);
        if have | bits != have {
            idx.insert(key, (have | bits).to_be_bytes())?;
        }
    }
    Ok(())
}

/// `id` is no longer work (its block's key goes with its last bit).
pub(super) fn tx_clear(idx: &TxTable<'_>, id: u64) -> TxResult<()> {
    let (block, bit) = split(id);
    let key = block_key(block);
    let Some(have) = idx.get(&key)?.map(|v| decode_u64(&v)) else {
        return Ok(());
    };
    if have & bit == 0 {
        return Ok(());
    }
    match have & !bit {
        0 => idx.remove(key)?,
        rest => idx.insert(key, rest.to_be_bytes())?,
    };
    Ok(())
}

/// Up to `limit` ids of work after `after` (from the start with `None`),
/// ascending.
pub(super) fn ids_after(idx: &Table, after: Option<u64>, limit: usize) -> Result<Vec<u64>> {
    let first = match after {
        None => 0,
        Some(u64::MAX) => return Ok(Vec::new()),
        Some(id) => id + 1,
    };
    let mut out = Vec::new();
    for item in idx.range(block_key(first / 64)..) {
        let (k, v) = item?;
        if !k.starts_with(PREFIX) || out.len() >= limit {
            break;
        }
        let block = decode_u64(&k[PREFIX.len()..]);
        let mut bits = decode_u64(&v);
        while bits != 0 && out.len() < limit {
            let id = block * 64 + u64::from(bits.trailing_zeros());
            bits &= bits - 1;
            if id >= first {
                out.push(id);
            }
        }
    }
    Ok(out)
}

impl Core {
    /// Once per store written before the work index held bits: each
    /// transaction turns up to 1,000 `w/{id}` keys into bits and removes
    /// them, so a kill resumes where it stood (a bit set twice is one bit).
    pub(super) fn fold_work_index_once(&self) -> Result<()> {
        let meta = self.db.table(tables::META)?;
        if meta.get(DONE)?.is_some() {
            return Ok(());
        }
        let mut folded = 0u64;
        loop {
            let keys: Vec<Value> = self
                .idx
                .scan_prefix(OLD)
                .keys()
                .take(1_000)
                .collect::<std::result::Result<_, _>>()?;
            if keys.is_empty() {
                break;
            }
            let ids: Vec<u64> = keys.iter().map(|k| decode_u64(&k[OLD.len()..])).collect();
            self.idx.transaction(|idx| {
                tx_set(idx, &ids)?;
                for k in &keys {
                    idx.remove(k)?;
                }
                Ok::<_, super::engine::TxError<super::StoreError>>(())
            })?;
            folded += ids.len() as u64;
        }
        if folded > 0 {
            tracing::info!(folded, "store: the work index is kept as bits (once)");
        }
        meta.insert(DONE, [1u8])?;
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretBox;

    #[test]
    fn bits_set_read_in_order_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let s = Core::open(dir.path(), &SecretBox::new(Box::new([1; 32]))).unwrap();
        let ids = [3u64, 63, 64, 65, 200, 1_000_000];
        s.idx.transaction(|idx| tx_set(idx, &ids)).unwrap();
        assert_eq!(ids_after(&s.idx, None, 100).unwrap(), ids);
        assert_eq!(ids_after(&s.idx, Some(63), 2).unwrap(), [64, 65]);
        assert_eq!(
            ids_after(&s.idx, Some(1_000_000), 9).unwrap(),
            Vec::<u64>::new()
        );
        for id in [64, 65, 3] {
            s.idx.transaction(|idx| tx_clear(idx, id)).unwrap();
        }
        assert_eq!(ids_after(&s.idx, None, 100).unwrap(), [63, 200, 1_000_000]);
        assert_eq!(
            s.idx.scan_prefix(PREFIX).count(),
            3,
            "an emptied block is removed"
        );
    }

    #[test]
    fn old_keys_are_folded_into_bits_once() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretBox::new(Box::new([1; 32]));
        {
            let s = Core::open(dir.path(), &key).unwrap();
            for id in (10u64..2_600).step_by(2) {
                let mut k = OLD.to_vec();
                k.extend_from_slice(&id.to_be_bytes());
                s.idx.insert(k, []).unwrap();
            }
            s.db.table(tables::META).unwrap().remove(DONE).unwrap();
            s.flush_blocking().unwrap();
        }
        let s = Core::open(dir.path(), &key).unwrap();
        assert_eq!(s.idx.scan_prefix(OLD).count(), 0);
        let want: Vec<u64> = (10u64..2_600).step_by(2).collect();
        assert_eq!(ids_after(&s.idx, None, usize::MAX).unwrap(), want);
    }
}
