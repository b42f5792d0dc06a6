//! The open-invitation index on disk, in blocks of 64 consecutive ids
//! (`ot/{id / 64}` in `idx`, big-endian): a `u64` whose bit `id % 64` says
//! the invitation has an entry, then the tags of the set bits in slot
//! order, 8 bytes each. Ids are handed out in increasing order, so a batch
//! of 1,000 new invitations reads and writes about sixteen keys, all at the
//! end of the key space, and the copy in memory (`open_tags.rs`) is loaded
//! from a sixty-fourth of the keys one entry each would take.
//!
//! Every change happens inside a transaction (inserts, retries, forgetting),
//! which the engine runs one at a time, so a change is a plain
//! read-modify-write of its block.

use super::engine::{Table, TxTable};
use super::schema::{self, IdxKey};
use super::{Result, StoreError, TxResult};

/// The slots of one block: a tag per id that has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Block([Option<u64>; 64]);

fn split(id: u64) -> (u64, usize) {
    (id / 64, (id % 64) as usize)
}

impl Block {
    fn empty() -> Self {
        Block([None; 64])
    }

    /// A block as stored: `None` for bytes that are not one.
    pub(super) fn decode(v: &[u8]) -> Option<Self> {
        let bits = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
        let tags = v.get(8..)?;
        if tags.len() != bits.count_ones() as usize * 8 {
            return None;
        }
        let mut out = Block::empty();
        let mut next = tags.chunks_exact(8);
        for (slot, tag) in out.0.iter_mut().enumerate() {
            if bits & (1 << slot) != 0 {
                *tag = Some(u64::from_be_bytes(next.next()?.try_into().ok()?));
            }
        }
        Some(out)
    }

    /// `None` once no slot holds a tag (the key goes).
    pub(super) fn encode(&self) -> Option<Vec<u8>> {
        let mut bits = 0u64;
        let mut out = vec![0u8; 8];
        for (slot, tag) in self.0.iter().enumerate() {
            if let Some(t) = tag {
                bits |= 1 << slot;
                out.extend_from_slice(&t.to_be_bytes());
            }
        }
        out[..8].copy_from_slice(&bits.to_be_bytes());
        (bits != 0).then_some(out)
    }

    /// `(tag, id)` of every slot held, for block number `block`.
    fn entries(&self, block: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter_map(move |(slot, t)| t.map(|t| (t, block * 64 + slot as u64)))
    }
}

fn read(idx: &TxTable<'_>, block: u64) -> TxResult<Block> {
    match idx.get(IdxKey::OpenTags(block).encode())? {
        None => Ok(Block::empty()),
        Some(v) => Block::decode(&v).ok_or_else(|| {
            super::engine::abort(StoreError::Corrupt(format!("open-index block {block}")))
        }),
    }
}

fn write(idx: &TxTable<'_>, block: u64, b: &Block) -> TxResult<()> {
    let key = IdxKey::OpenTags(block).encode();
    match b.encode() {
        Some(v) => idx.insert(key, v)?,
        None => idx.remove(key)?,
    };
    Ok(())
}

/// Give each `(id, tag)` (ids ascending) its entry: one read and one write
/// per block of 64 they touch.
pub(super) fn tx_set(idx: &TxTable<'_>, entries: &[(u64, u64)]) -> TxResult<()> {
    let mut i = 0;
    while i < entries.len() {
        let (block, _) = split(entries[i].0);
        let mut b = read(idx, block)?;
        while i < entries.len() && split(entries[i].0).0 == block {
            b.0[split(entries[i].0).1] = Some(entries[i].1);
            i += 1;
        }
        write(idx, block, &b)?;
    }
    Ok(())
}

/// Remove `id`'s entry, if it has one.
pub(super) fn tx_clear(idx: &TxTable<'_>, id: u64) -> TxResult<()> {
    let (block, slot) = split(id);
    let mut b = read(idx, block)?;
    if b.0[slot].take().is_some() {
        write(idx, block, &b)?;
    }
    Ok(())
}

/// Every entry as `make(tag, id)`, block by block; `expected` sizes the
/// array (the invitations held), so it is not grown by doubling. `None` as
/// soon as `wanted` says the entries are no longer wanted (asked every
/// 1,024 blocks).
pub(super) fn entries<T>(
    idx: &Table,
    expected: usize,
    wanted: &dyn Fn() -> bool,
    make: impl Fn(u64, u64) -> T,
) -> Result<Option<Vec<T>>> {
    let mut out = Vec::with_capacity(expected);
    for (n, item) in idx.scan_prefix(schema::OPEN_TAGS_PREFIX).enumerate() {
        if n % 1024 == 1023 && !wanted() {
            return Ok(None);
        }
        let (k, v) = item?;
        let (Some(IdxKey::OpenTags(block)), Some(b)) = (IdxKey::decode(&k), Block::decode(&v))
        else {
            return Err(StoreError::Corrupt("an open-index block".into()));
        };
        out.extend(b.entries(block).map(|(tag, id)| make(tag, id)));
    }
    Ok(Some(out))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A bare `idx` table in a scratch database (the directory and the
    /// engine kept alive beside it).
    pub(in crate::store) fn scratch_idx() -> (tempfile::TempDir, super::super::engine::Engine, Table)
    {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::engine::Engine::open(
            dir.path(),
            &super::super::engine::Tuning {
                cache_bytes: 1 << 20,
                flush_every_ms: None,
            },
        )
        .unwrap();
        let t = db.table("idx").unwrap();
        (dir, db, t)
    }

    #[test]
    fn a_load_no_longer_wanted_stops_and_a_wanted_one_reads_every_block() {
        let (_dir, _db, t) = scratch_idx();
        let mut b = Block::empty();
        b.0[5] = Some(9);
        let v = b.encode().unwrap();
        for block in 0..1_100u64 {
            t.insert(IdxKey::OpenTags(block).encode(), v.as_slice())
                .unwrap();
        }
        assert_eq!(entries(&t, 0, &|| false, |t, i| (t, i)).unwrap(), None);
        let all = entries(&t, 0, &|| true, |t, i| (t, i)).unwrap().unwrap();
        assert_eq!(all.len(), 1_100);
        assert_eq!(all[1], (9, 64 + 5));
        t.insert(IdxKey::OpenTags(2_000).encode(), [0u8; 9].as_slice())
            .unwrap();
        assert!(matches!(
            entries(&t, 0, &|| true, |t, i| (t, i)),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn blocks_read_back_and_refuse_torn_bytes() {
        let mut b = Block::empty();
        assert_eq!(b.encode(), None);
        b.0[0] = Some(7);
        b.0[63] = Some(u64::MAX);
        let v = b.encode().unwrap();
        assert_eq!(v.len(), 8 + 16);
        assert_eq!(Block::decode(&v), Some(b.clone()));
        assert_eq!(Block::decode(&v[..v.len() - 1]), None);
        assert_eq!(Block::decode(&[0; 7]), None);
        assert_eq!(
            b.entries(2).collect::<Vec<_>>(),
            vec![(7, 128), (u64::MAX, 191)]
        );
    }
}
