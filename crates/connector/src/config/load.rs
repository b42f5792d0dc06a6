//! Loading: the file layered with `MYDEX_CONNECTOR__*` environment
//! variables, deserialised into its raw shape, then validated section by
//! section into [`Settings`].

use std::path::{Path, PathBuf};

use secrecy::SecretBox;

use super::Settings;
use super::error::ConfigError;
use super::raw::{RawFile, error_key};
use super::validate::Validator;

impl Settings {
    /// Load and validate `path`, with environment overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let err = |key: &str, message: String| ConfigError {
            file: file.clone(),
            key: key.to_string(),
            message,
        };
        if !path.is_file() {
            return Err(err(
                "(file)",
                "the file does not exist or is not a regular file".into(),
            ));
        }
        let built = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("MYDEX_CONNECTOR")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()
            .map_err(|e| err("(syntax)", e.to_string()))?;
        let raw: RawFile = built
            .try_deserialize()
            .map_err(|e| err(&error_key(&e), e.to_string()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        settings(&Validator { file, base }, path, raw)
    }

    /// Read another store key file (`rotate-key --new-key-file`) by the same
    /// rules as `store.key_file`: 32 raw bytes or 64 hex characters, a regular
    /// file of bounded size. `flag` names it in errors.
    pub fn read_key_file(
        &self,
        flag: &str,
        path: &Path,
    ) -> Result<SecretBox<[u8; 32]>, ConfigError> {
        let v = Validator {
            file: path.display().to_string(),
            base: std::env::current_dir().unwrap_or_default(),
        };
        let path = v.path(path.to_path_buf());
        if !path.exists() {
            return Err(v.err(flag, format!("{} does not exist", path.display())));
        }
        v.key_file(flag, "store_key_new", Some(path))
            .map(|(k, _)| k)
    }
}

/// Every section in the file's order (each validated in its own file), so
/// the first error reported is the one it always was.
fn settings(v: &Validator, source: &Path, raw: RawFile) -> Result<Settings, ConfigError> {
    let mydex = v.mydex(raw.mydex)?;
    let callback = v.callback(raw.callback)?;
    let admin = v.admin(raw.admin, callback.listen)?;
    let smtp = v.smtp(raw.smtp)?;
    let store = v.store(raw.store)?;
    let queue = v.queue(raw.queue)?;
    let invitations = v.invitations(raw.invitations)?;
    let schedule = v.schedule(raw.schedule)?;
    let log = v.log(raw.log)?;
    let notifications = v.notifications(raw.notifications)?;
    let organisation = v.organisation(raw.organisation, &smtp.from)?;
    let campaigns = v.campaigns(raw.campaign, &invitations)?;
    let delivery = v.delivery(raw.delivery, mydex.request_timeout, queue.settle)?;
    let mut dirs = vec![
        ("store.path", store.path.as_path()),
        ("queue.dir", queue.dir.as_path()),
    ];
    if let Some(d) = &delivery {
        dirs.push(("delivery.dir", d.dir.as_path()));
    }
    v.distinct_dirs(&dirs)?;
    Ok(Settings {
        source: PathBuf::from(source),
        mydex,
        callback,
        admin,
        smtp,
        store,
        queue,
        invitations,
        schedule,
        log,
        notifications,
        organisation,
        campaigns,
        delivery,
    })
}
