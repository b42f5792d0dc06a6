//! The store's error type: what can go wrong opening, reading or changing
//! the store, with the texts shown to operators. Its own module so the
//! store's parts (rotation, raw callbacks) share it without depending on
//! the `Core` itself.

use super::engine::{EngineError, TxError};

use super::crypto::CryptoError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store database: {0}")]
    Engine(#[from] EngineError),
    #[error(
        "the store at {path} does not open with the configured store.key_file (wrong key?); nothing was changed"
    )]
    WrongKey { path: String },
    #[error(
        "the store at {path} has an unfinished key rotation (to the key with fingerprint {fingerprint}): rerun `mydex-connector rotate-key` with the same new key before starting the daemon; nothing was changed"
    )]
    RotationUnfinished { path: String, fingerprint: String },
    /// The store was written by a newer release (`migrate.rs`).
    #[error(
        "the store at {path} has schema version {found}, newer than this release reads (up to {supported}): it was written by a newer mydex-connector; run that release or a later one; nothing was changed"
    )]
    TooNew {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error(
        "the store at {path} is in use by another process (is the daemon running? stop it first)"
    )]
    InUse { path: String },
    /// `rotate-key` cannot go on with these keys, with why.
    #[error("{0}")]
    RotationRefused(String),
    #[error("a stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("invitation {id} is {actual}, not {expected}")]
    Conflict {
        id: u64,
        actual: &'static str,
        expected: String,
    },
    #[error("no invitation {0}")]
    NotFound(u64),
    /// An operator's request that the records do not allow, with why.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Crypto(#[from] CryptoError),
    /// `people forget` found nothing held for that address or external ref.
    #[error("no such person: the store holds nothing for that {0}; nothing was changed")]
    NoSuchPerson(&'static str),
    #[error("cannot flush the store to disk: {0}")]
    Flush(String),
    /// `store compact` refused or stopped, with why.
    #[error("{0}")]
    Compact(#[from] super::engine::compact_error::CompactError),
    /// The blocking task running a store call failed (it panicked, or the
    /// runtime is shutting down).
    #[error("a store call did not finish: {0}")]
    Blocking(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Aborts inside a transaction closure.
pub(super) type TxResult<T> = std::result::Result<T, TxError<StoreError>>;

impl StoreError {
    /// The store key does not fit the store (wrong key, or a rotation to
    /// finish): an operator's configuration problem, not a crash to retry.
    pub fn is_key_problem(&self) -> bool {
        matches!(
            self,
            StoreError::WrongKey { .. }
                | StoreError::RotationUnfinished { .. }
                | StoreError::RotationRefused(_)
        )
    }

    /// A store the configuration points at that this binary must not open
    /// (a key problem, or a store newer than the binary): exit 78, and
    /// systemd does not restart into it.
    pub fn is_config_problem(&self) -> bool {
        self.is_key_problem() || matches!(self, StoreError::TooNew { .. })
    }
}
