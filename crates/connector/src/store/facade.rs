//! The one door to the store for the rest of the daemon. The store's work
//! blocks on disk, so it must not run on the runtime's threads; this is the
//! only place that crosses to a blocking thread, and it reports a blocking
//! task that failed in one way ([`StoreError::Blocking`]).

use std::path::Path;
use std::sync::Arc;

use secrecy::SecretBox;

use super::{Core, Result, StoreError};

/// The store, shared by every part of the daemon (cheap to clone).
#[derive(Clone)]
pub struct Store {
    core: Arc<Core>,
}

impl Store {
    /// Open (or create) the store at `path` with `key` (see [`Core::open`]).
    pub fn open(path: &Path, key: &SecretBox<[u8; 32]>) -> Result<Self> {
        Ok(Self {
            core: Arc::new(Core::open(path, key)?),
        })
    }

    /// Run `work` on the core on a blocking thread.
    #[allow(dead_code)]
    pub(crate) async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Core) -> Result<T> + Send + 'static,
    {
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || work(&core))
            .await
            .map_err(|e| StoreError::Blocking(e.to_string()))?
    }
}

/// While callers move to the facade's own methods, they may still reach
/// the core's.
impl std::ops::Deref for Store {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}
