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
}
