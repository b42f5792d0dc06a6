//! How records are kept in the engine: JSON values, big-endian `u64` counters
//! and ids. Shared by every part of the store.

use super::engine::abort;

use super::error::{Result, StoreError, TxResult};

pub(super) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(super) fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own records (strings, numbers, maps) cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

pub(super) fn decode_u64(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

pub(super) fn tx_decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> TxResult<T> {
    decode(bytes, what).map_err(abort)
}
