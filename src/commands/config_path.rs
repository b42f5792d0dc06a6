//! The configuration file every command that needs one reads: the global
//! `--config PATH`, else `MYDEX_CONNECTOR_CONFIG`, else the packaged default
//! (`/etc/mydex-connector/mydex-connector.toml`). Kept with where the path came
//! from, so a missing file is reported with how to name another.

use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use mydex_connector::config::{ConfigError, ConfigErrors, Settings};

/// Where the packaged configuration lives (the .deb installs it there).
pub const DEFAULT_CONFIG: &str = "/etc/mydex-connector/mydex-connector.toml";

/// The environment variable that names the configuration file when
/// `--config` is not given.
pub const CONFIG_ENV: &str = "MYDEX_CONNECTOR_CONFIG";

/// How the path was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--config PATH` on the command line.
    Flag,
    /// `MYDEX_CONNECTOR_CONFIG`.
    Env,
    /// Neither: the packaged default.
    Default,
}

/// The configuration file as chosen on the command line or by default.
#[derive(Debug, Clone)]
pub struct ConfigPath {
    path: PathBuf,
    origin: Origin,
}

impl ConfigPath {
    pub fn new(path: PathBuf, source: Option<ValueSource>) -> Self {
        let origin = match source {
            Some(ValueSource::EnvVariable) => Origin::Env,
            Some(ValueSource::DefaultValue) | None => Origin::Default,
            Some(_) => Origin::Flag,
        };
        Self { path, origin }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Load and validate the file, after checking it is there: a missing
    /// file names the path, how it was chosen and how to choose another.
    pub fn load(&self) -> Result<Settings, ConfigErrors> {
        self.check_exists()?;
        Settings::load(&self.path)
    }

    /// A missing file is a configuration error (exit 78) that says where the
    /// path came from and how to name another.
    pub fn check_exists(&self) -> Result<(), ConfigError> {
        if self.path.exists() {
            return Ok(());
        }
        let how = match self.origin() {
            Origin::Flag => "named by --config".to_string(),
            Origin::Env => format!("named by {CONFIG_ENV}"),
            Origin::Default => format!(
                "the default; name another with --config PATH or the environment variable {CONFIG_ENV}"
            ),
        };
        Err(ConfigError {
            file: self.path.display().to_string(),
            key: "(file)".into(),
            message: format!("the file does not exist ({how})"),
        })
    }
}
