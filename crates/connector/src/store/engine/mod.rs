//! The storage engine: the only module that names sled. The rest of the
//! store sees tables of ordered byte keys and byte values, write batches,
//! and transactions over one to five tables; a second engine (redb,
//! fjall) would implement these same few types beside this one.

pub(crate) mod compact;
pub(crate) mod compact_error;
pub(crate) mod compact_swap;
mod error;
mod table;
mod tx;

use std::path::Path;

pub use error::EngineError;
#[cfg(test)]
pub(crate) use table::Watch;
pub(crate) use table::{Table, Value, WriteBatch};
pub(crate) use tx::{Transactional, TxError, TxTable, abort};

/// The engine's own log target, capped by the daemon's logging (its debug
/// lines come per page written).
pub const LOG_TARGET: &str = "sled";

/// One open database: a set of named tables sharing one log on disk.
#[derive(Clone)]
pub(crate) struct Engine {
    db: sled::Db,
}

/// How an engine is opened.
pub(crate) struct Tuning {
    /// The page cache, in bytes of pages as stored.
    pub cache_bytes: u64,
    /// How often written pages go to disk without being asked, if at all.
    pub flush_every_ms: Option<u64>,
}

impl Engine {
    /// Open (or create) the database at `path`; a lock held by another
    /// process is [`EngineError::is_locked`].
    pub(crate) fn open(path: &Path, tuning: &Tuning) -> Result<Self, EngineError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(tuning.cache_bytes)
            .flush_every_ms(tuning.flush_every_ms)
            .open()?;
        Ok(Self { db })
    }

    /// A database in a temporary directory of its own, removed when the
    /// last handle goes (for tests).
    #[cfg(test)]
    pub(crate) fn temporary() -> Self {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("a temporary database opens");
        Self { db }
    }

    /// The table named `name`, created empty if the database has none.
    pub(crate) fn table(&self, name: &str) -> Result<Table, EngineError> {
        Ok(Table::new(self.db.open_tree(name)?))
    }

    /// A number never handed out before by this database, increasing.
    pub(crate) fn next_id(&self) -> Result<u64, EngineError> {
        Ok(self.db.generate_id()?)
    }

    /// Make everything written so far durable.
    pub(crate) fn flush(&self) -> Result<(), EngineError> {
        self.db.flush()?;
        Ok(())
    }

    /// The database files' size on disk.
    pub(crate) fn size_on_disk(&self) -> Result<u64, EngineError> {
        Ok(self.db.size_on_disk()?)
    }
}
