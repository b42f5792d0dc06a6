//! The one error a configuration problem gives: the key and the file it is
//! about (the CLI maps it to exit 78).

/// A configuration problem, named by key and file.
#[derive(Debug, thiserror::Error)]
#[error("configuration error in {file}: `{key}`: {message}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}
