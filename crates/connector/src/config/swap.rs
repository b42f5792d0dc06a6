//! A value the running daemon reads often and a SIGHUP reload replaces
//! whole; here beside the configuration so the dispatcher can hold one
//! without depending on the reload machinery.

use std::sync::Arc;

use parking_lot::RwLock;

/// A value the running daemon reads often and a reload replaces whole.
pub struct Swap<T>(RwLock<Arc<T>>);

impl<T> Swap<T> {
    pub fn new(value: T) -> Self {
        Self(RwLock::new(Arc::new(value)))
    }

    pub fn get(&self) -> Arc<T> {
        self.0.read().clone()
    }

    pub fn set(&self, value: T) {
        *self.0.write() = Arc::new(value);
    }
}
