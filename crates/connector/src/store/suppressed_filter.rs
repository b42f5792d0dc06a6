//! Who may be on the suppression list, kept in memory so that storing an
//! invitation for someone who is not on it costs no read. The list's key
//! (`s/{hash}`) is a keyed hash, so each such read lands on a random page
//! of the index, which the engine's small cache rarely holds: it was a
//! quarter of an ingest's time. Most people in an intake file are on no
//! list.
//!
//! The filter holds the first 64 bits of each listed person's hash, loaded
//! when the store opens and added to before every write that lists someone
//! (never taken off: someone taken off the list costs a read, as before).
//! It can answer "may be listed" for someone who is not, never "not listed"
//! for someone who is, except for the moment between reading it and
//! writing an invitation while the same person is being listed: that
//! invitation is then queued, and the dispatcher's check of the list
//! right before the mail fails it (`pipeline/dispatcher.rs`).

use std::collections::HashSet;
use std::sync::RwLock;

use super::engine::Table;
use super::error::Result;
use super::schema::{self, IdxKey};
use crate::domain::PersonHash;

#[derive(Default)]
pub(super) struct SuppressedFilter {
    /// `None` until loaded: until then, anyone may be listed.
    listed: RwLock<Option<HashSet<u64>>>,
}

/// The first 64 bits of a person hash (hex), or `None` if it is not one.
fn fingerprint(hash: &str) -> Option<u64> {
    u64::from_str_radix(hash.get(..16)?, 16).ok()
}

impl SuppressedFilter {
    /// Read every listed person from `idx`. A key that is not a person's
    /// leaves the filter unloaded (every check then reads the list), so an
    /// odd entry costs speed, never a suppression.
    pub(super) fn load(&self, idx: &Table) -> Result<()> {
        let mut listed = HashSet::new();
        for key in idx.scan_prefix(schema::SUPPRESSION_PREFIX).keys() {
            let key = key?;
            let print = match IdxKey::decode(&key) {
                Some(IdxKey::Suppression(hash)) => fingerprint(&hash),
                _ => None,
            };
            match print {
                Some(p) => listed.insert(p),
                None => {
                    tracing::warn!(
                        "a suppression key is not a person's; every invitation stored will read the list"
                    );
                    return Ok(());
                }
            };
        }
        *self.listed.write().unwrap_or_else(|e| e.into_inner()) = Some(listed);
        Ok(())
    }

    /// Whether `person` may be on the list (`false`: certainly not).
    pub(super) fn may_list(&self, person: &PersonHash) -> bool {
        let listed = self.listed.read().unwrap_or_else(|e| e.into_inner());
        match (listed.as_ref(), fingerprint(person.as_str())) {
            (Some(set), Some(print)) => set.contains(&print),
            _ => true,
        }
    }

    /// `person` is about to be listed: called before the write.
    pub(super) fn add(&self, person: &PersonHash) {
        let mut listed = self.listed.write().unwrap_or_else(|e| e.into_inner());
        if let (Some(set), Some(print)) = (listed.as_mut(), fingerprint(person.as_str())) {
            set.insert(print);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::engine::Engine;

    fn person(c: char) -> PersonHash {
        PersonHash::parse(&c.to_string().repeat(64)).expect("a person hash")
    }

    #[test]
    fn listed_people_always_may_be_and_others_are_not_once_loaded() {
        let db = Engine::temporary();
        let idx = db.table("idx").unwrap();
        idx.insert(
            IdxKey::Suppression(person('a').as_str().to_string()).encode(),
            b"x",
        )
        .unwrap();
        let f = SuppressedFilter::default();
        // Not loaded yet: anyone may be listed.
        assert!(f.may_list(&person('b')));
        f.load(&idx).unwrap();
        assert!(f.may_list(&person('a')));
        assert!(!f.may_list(&person('b')));
        f.add(&person('b'));
        assert!(f.may_list(&person('b')));
        assert!(!f.may_list(&person('c')));
    }
}
