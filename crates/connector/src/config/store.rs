//! `[store]`: where the encrypted member store lives, and its key.

use std::path::PathBuf;

use secrecy::SecretBox;
use serde::{Deserialize, Serialize};

use super::show;

use super::error::ConfigError;
use super::validate::Validator;

#[derive(Serialize)]
pub struct StoreSettings {
    #[serde(serialize_with = "show::path")]
    pub path: PathBuf,
    #[serde(skip)]
    pub key: SecretBox<[u8; 32]>,
    #[serde(rename = "key", serialize_with = "show::secret")]
    pub key_source: PathBuf,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    path: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

impl Validator {
    pub(super) fn store(&self, raw: RawStore) -> Result<StoreSettings, ConfigError> {
        let path = self.path(self.required("store.path", raw.path)?);
        let (key, key_source) = self.key_file("store.key_file", "store_key", raw.key_file)?;
        Ok(StoreSettings {
            path,
            key,
            key_source,
        })
    }
}
