//! A table: one ordered map of byte keys to byte values, and the batches
//! that change several of its keys in one atomic step.

use std::ops::RangeBounds;

use super::error::EngineError;

/// A value (or key) read from a table: bytes, cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Value(sled::IVec);

impl std::ops::Deref for Value {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::borrow::Borrow<[u8]> for Value {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq<[u8]> for Value {
    fn eq(&self, other: &[u8]) -> bool {
        self.0 == other
    }
}

impl PartialEq<&[u8]> for Value {
    fn eq(&self, other: &&[u8]) -> bool {
        self.0 == *other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Value {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.0 == other[..]
    }
}

impl From<sled::IVec> for Value {
    fn from(v: sled::IVec) -> Self {
        Self(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Self(sled::IVec::from(v))
    }
}

/// A key and its value, as read by a scan.
pub(crate) type Entry = Result<(Value, Value), EngineError>;

/// Writes to one table applied together, all or none.
#[derive(Default)]
pub(crate) struct WriteBatch(sled::Batch);

impl WriteBatch {
    pub(crate) fn insert(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.0.insert(key.as_ref(), value.as_ref());
    }

    pub(crate) fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.0.remove(key.as_ref());
    }
}

/// Entries of a table in key order (either way).
pub(crate) struct Iter(sled::Iter);

impl Iterator for Iter {
    type Item = Entry;
    fn next(&mut self) -> Option<Entry> {
        self.0
            .next()
            .map(|r| r.map(|(k, v)| (k.into(), v.into())).map_err(Into::into))
    }
}

impl DoubleEndedIterator for Iter {
    fn next_back(&mut self) -> Option<Entry> {
        self.0
            .next_back()
            .map(|r| r.map(|(k, v)| (k.into(), v.into())).map_err(Into::into))
    }
}

impl Iter {
    /// The keys alone.
    pub(crate) fn keys(self) -> impl DoubleEndedIterator<Item = Result<Value, EngineError>> {
        self.map(|r| r.map(|(k, _)| k))
    }
}

/// One named table of a database.
#[derive(Clone)]
pub(crate) struct Table(sled::Tree);

impl Table {
    pub(super) fn new(tree: sled::Tree) -> Self {
        Self(tree)
    }

    pub(crate) fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>, EngineError> {
        Ok(self.0.get(key.as_ref())?.map(Value))
    }

    /// Set `key` to `value`; the value it held before, if any.
    pub(crate) fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<Option<Value>, EngineError> {
        Ok(self.0.insert(key.as_ref(), value.as_ref())?.map(Value))
    }

    /// Remove `key`; the value it held, if any.
    pub(crate) fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<Value>, EngineError> {
        Ok(self.0.remove(key.as_ref())?.map(Value))
    }

    /// Set `key` to `new` only if it holds `old` now (`None`: absent);
    /// whether it did.
    pub(crate) fn compare_and_swap<O: AsRef<[u8]>, N: AsRef<[u8]>>(
        &self,
        key: impl AsRef<[u8]>,
        old: Option<O>,
        new: Option<N>,
    ) -> Result<bool, EngineError> {
        let old = old.as_ref().map(|o| o.as_ref());
        let new = new.as_ref().map(|n| sled::IVec::from(n.as_ref()));
        Ok(self.0.compare_and_swap(key.as_ref(), old, new)?.is_ok())
    }

    /// Replace `key`'s value by what `f` makes of it, atomically (`f` may
    /// run more than once); the value written.
    pub(crate) fn update_and_fetch(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<Option<Value>, EngineError> {
        Ok(self.0.update_and_fetch(key.as_ref(), f)?.map(Value))
    }

    /// Replace `key`'s value by what `f` makes of it, atomically (`f` may
    /// run more than once); the value it replaced.
    pub(crate) fn fetch_and_update(
        &self,
        key: impl AsRef<[u8]>,
        f: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<Option<Value>, EngineError> {
        Ok(self.0.fetch_and_update(key.as_ref(), f)?.map(Value))
    }

    /// Every entry, in key order.
    pub(crate) fn iter(&self) -> Iter {
        Iter(self.0.iter())
    }

    /// The entries whose key starts with `prefix`, in key order.
    pub(crate) fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> Iter {
        Iter(self.0.scan_prefix(prefix.as_ref()))
    }

    /// The entries whose key is in `range`, in key order.
    pub(crate) fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Iter {
        Iter(self.0.range(range))
    }

    /// How many entries the table holds (walks it).
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Apply `batch`, all or none.
    pub(crate) fn apply_batch(&self, batch: WriteBatch) -> Result<(), EngineError> {
        Ok(self.0.apply_batch(batch.0)?)
    }

    /// Make this table's writes (and all before them) durable.
    pub(crate) fn flush(&self) -> Result<(), EngineError> {
        self.0.flush()?;
        Ok(())
    }

    pub(super) fn tree(&self) -> &sled::Tree {
        &self.0
    }

    /// A watch on writes under `prefix` (for tests that check nothing is
    /// written): whether one came within `wait`.
    #[cfg(test)]
    pub(crate) fn watch(&self, prefix: &[u8]) -> Watch {
        Watch(self.0.watch_prefix(prefix))
    }
}

/// Writes seen under a prefix (see [`Table::watch`]).
#[cfg(test)]
pub(crate) struct Watch(sled::Subscriber);

#[cfg(test)]
impl Watch {
    pub(crate) fn wrote_within(&mut self, wait: std::time::Duration) -> bool {
        self.0.next_timeout(wait).is_ok()
    }

    /// The key of the next write (an insert or a removal) within `wait`.
    pub(crate) fn key_within(&mut self, wait: std::time::Duration) -> Option<Vec<u8>> {
        self.0.next_timeout(wait).ok().map(|e| e.key().to_vec())
    }
}
