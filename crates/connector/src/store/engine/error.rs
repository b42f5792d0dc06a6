//! The engine's error: what the database reported, with the I/O cause
//! kept apart so the store can tell a full disk from a corrupt page.

/// An error from the database underneath.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(#[from] sled::Error);

impl EngineError {
    /// The operating system's error, if the database could not read or
    /// write its files.
    pub(crate) fn io(&self) -> Option<&std::io::Error> {
        match &self.0 {
            sled::Error::Io(io) => Some(io),
            _ => None,
        }
    }

    /// An I/O error of our own (a thread that did not start) as the
    /// engine's.
    pub(crate) fn from_io(e: std::io::Error) -> Self {
        Self(sled::Error::Io(e))
    }

    /// Another process holds the database's lock.
    pub(crate) fn is_locked(&self) -> bool {
        self.io().is_some_and(|io| {
            io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock")
        })
    }
}
