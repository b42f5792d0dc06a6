//! Opening the store at start. The first start of a newer release may
//! upgrade a large store in place (`store/migrate.rs`), which can outlast
//! the unit's start timeout (`TimeoutStartSec`, 90 s by default): systemd
//! would kill the upgrade and start it again and again. While the upgrade
//! makes progress, the service manager is asked for more time
//! (`EXTEND_TIMEOUT_USEC`) and told why (`STATUS=`); an open that makes no
//! progress gets no more time than the unit allows.

use std::path::PathBuf;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::store::{Store, StoreError};

/// How often progress is looked at.
const TICK: Duration = Duration::from_secs(5);
/// How much more time each look that saw progress asks for.
const EXTEND_USEC: u32 = 60_000_000;

/// Open the store, asking for more start time while an upgrade of it
/// makes progress.
pub(super) async fn open_store(path: PathBuf, key: [u8; 32]) -> Result<Store, StoreError> {
    let task = Store::open_async(path, secrecy::SecretBox::new(Box::new(key)));
    tokio::pin!(task);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
    let mut seen = crate::store::migration_batches();
    loop {
        tokio::select! {
            opened = &mut task => return opened,
            _ = tick.tick() => {
                let now = crate::store::migration_batches();
                if now != seen {
                    seen = now;
                    let states = [
                        NotifyState::ExtendTimeoutUsec(EXTEND_USEC),
                        NotifyState::Status("upgrading the store in place (progress in the log)"),
                    ];
                    if let Err(e) = sd_notify::notify(&states) {
                        tracing::warn!(error = %e, "cannot notify the service manager");
                    }
                }
            }
        }
    }
}
