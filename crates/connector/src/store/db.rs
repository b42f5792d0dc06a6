//! Opening the store's database and the key check: the low-level steps shared
//! by `Core::open` and key rotation (which opens the database itself, with
//! two keys).

use std::path::Path;

use super::crypto::Sealer;
use super::engine::{Engine, Table, Tuning};
use super::error::{Result, StoreError};

/// The engine's page cache. A large one let the daemon's memory grow with
/// the number of invitations; the hot set (the work index, open invitations,
/// counters) fits in far less.
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

pub(super) const KEY_CHECK: &[u8] = b"mydex-connector store key check v1";
/// Where, in `meta`, the key check is kept (sealed with `meta` as AAD).
pub(super) const KEY_CHECK_NAME: &str = "key_check";

/// How long a held lock is waited for before the store is called in use:
/// the engine lets go of its files on a background thread, moments after
/// the last handle of this process is dropped.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Open the database; a lock still held by another process after
/// [`LOCK_GRACE`] is `InUse`. What an interrupted `store compact` left
/// beside it is cleared first.
pub(super) fn open_db(path: &Path) -> Result<Engine> {
    super::engine::compact_swap::recover(path)?;
    let tuning = Tuning {
        cache_bytes: CACHE_BYTES,
        flush_every_ms: Some(200),
    };
    let until = std::time::Instant::now() + LOCK_GRACE;
    loop {
        match Engine::open(path, &tuning) {
            Ok(engine) => return Ok(engine),
            Err(e) if e.is_locked() && std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) if e.is_locked() => {
                return Err(StoreError::InUse {
                    path: path.display().to_string(),
                });
            }
            Err(e) => return Err(StoreError::Engine(e)),
        }
    }
}

/// Refuse a key that does not open the store; seal the key check under it
/// if the store has none yet (a new store).
pub(super) fn check_key(meta: &Table, sealer: &Sealer, path: &Path) -> Result<()> {
    match meta.get(KEY_CHECK_NAME)? {
        Some(sealed) => {
            let sealed = std::str::from_utf8(&sealed)
                .map_err(|_| StoreError::Corrupt("meta/key_check".into()))?;
            match sealer.open(sealed, b"meta") {
                Ok(v) if v == KEY_CHECK => {}
                _ => {
                    return Err(StoreError::WrongKey {
                        path: path.display().to_string(),
                    });
                }
            }
        }
        None => {
            meta.insert(KEY_CHECK_NAME, sealer.seal(KEY_CHECK, b"meta").as_bytes())?;
            meta.flush()?;
        }
    }
    Ok(())
}
