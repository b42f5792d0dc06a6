//! The journal of an unfinished key rotation, kept in `meta`: written first
//! by `rotate-key`, removed last; while it is there `Core::open` refuses
//! the store with either key (see `rotation.rs`).

use super::codec::decode;
use super::engine::Table;
use super::error::Result;

/// Where, in `meta`, an unfinished rotation's journal is kept.
pub(super) const JOURNAL: &str = "key_rotation";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Journal {
    pub new_key_fingerprint: String,
    pub old_key_fingerprint: String,
    pub started_ms: u64,
}

pub(super) fn journal(meta: &Table) -> Result<Option<Journal>> {
    meta.get(JOURNAL)?
        .map(|v| decode(&v, "meta/key_rotation"))
        .transpose()
}
