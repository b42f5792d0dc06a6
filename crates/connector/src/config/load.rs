//! Loading: the file layered with `MYDEX_CONNECTOR__*` environment
//! variables, deserialised into its raw shape, then validated section by
//! section into [`Settings`]. Every problem is reported at once
//! (`problems.rs`), each at its line or its environment variable.

use std::path::{Path, PathBuf};

use secrecy::SecretBox;

use super::error::{ConfigError, ConfigErrors, Origin, Problem};
use super::problems::{Problems, Report};
use super::raw::RawFile;
use super::validate::Validator;
use super::{NatsSettings, Settings};

/// Checks run again after each problem found, at most: each run takes a
/// key out, so a file has far fewer.
const MAX_RUNS: usize = 500;

impl Settings {
    /// Load and validate `path`, with environment overrides; every problem
    /// found is in the error.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
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
            )
            .into());
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| err("(file)", format!("cannot be read: {e}")))?;
        let doc = syntax(&file, &text)?;
        let built = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("MYDEX_CONNECTOR")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build()
            .map_err(|e| err("(environment)", e.to_string()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let v = Validator {
            file: file.clone(),
            base,
        };
        let mut report = Report::new(file, &text, doc, built.cache);
        let mut warned = false;
        for _ in 0..MAX_RUNS {
            let raw: RawFile = match report.tree.clone().try_deserialize() {
                Ok(raw) => raw,
                Err(e) => {
                    let (key, message) = super::deser_error::key_and_message(e);
                    if report.add(&key, message) {
                        continue;
                    }
                    break;
                }
            };
            // The checks' warnings (a secret readable by all) once, not
            // again at each run.
            let checked = match std::mem::replace(&mut warned, true) {
                false => settings(&v, path, raw),
                true => tracing::subscriber::with_default(
                    tracing::subscriber::NoSubscriber::default(),
                    || settings(&v, path, raw),
                ),
            };
            match checked {
                Ok(s) if report.is_empty() => return Ok(s),
                Ok(_) => break,
                Err(Problems(found)) => {
                    let mut again = false;
                    for e in found {
                        again |= report.add(&e.key, e.message);
                    }
                    if !again {
                        break;
                    }
                }
            }
        }
        Err(report.into_errors())
    }
}

/// The file layered with environment overrides, in its raw shape, and the
/// validator for its sections (shared with `EdgeSettings::load`).
pub(super) fn read_raw(path: &Path) -> Result<(Validator, RawFile), ConfigError> {
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
    let raw: RawFile = built.try_deserialize().map_err(|e| {
        let (key, message) = super::deser_error::key_and_message(e);
        err(&key, message)
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((Validator { file, base }, raw))
}

impl Settings {
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

/// The file as TOML, or every syntax error in it, each at its line.
fn syntax<'t>(
    file: &str,
    text: &'t str,
) -> Result<toml::Spanned<toml::de::DeTable<'t>>, ConfigErrors> {
    let (doc, errors) = toml::de::DeTable::parse_recoverable(text);
    if errors.is_empty() {
        return Ok(doc);
    }
    let problems = errors
        .iter()
        .map(|e| Problem {
            key: "(syntax)".into(),
            origin: Origin::File {
                path: file.to_string(),
                line: e
                    .span()
                    .map(|s| text.get(..s.start).unwrap_or(text).matches('\n').count() + 1),
            },
            message: format!("not valid TOML: {}", e.message().trim()),
        })
        .collect();
    Err(ConfigErrors {
        file: file.to_string(),
        problems,
    })
}

/// Every section (each validated in its own file), each checked even when
/// another failed, so one run reports the first problem of each.
fn settings(v: &Validator, source: &Path, raw: RawFile) -> Result<Settings, Problems> {
    let mut p = Problems::default();
    let mydex = p.take(v.mydex(raw.mydex));
    let callback = p.take(v.callback(raw.callback));
    let admin = callback
        .as_ref()
        .and_then(|c| p.take(v.admin(raw.admin, c.listen)));
    let smtp = p.take(v.smtp(raw.smtp));
    let store = p.take(v.store(raw.store));
    let at = store.as_ref().map(|s| s.path.as_path());
    let queue = p.take(v.queue(raw.queue, at));
    let invitations = p.take(v.invitations(raw.invitations));
    let schedule = p.take(v.schedule(raw.schedule));
    let log = p.take(v.log(raw.log));
    let notifications = p.take(v.notifications(raw.notifications));
    let from = smtp.as_ref().map(|s| &s.from);
    let organisation = from.and_then(|f| p.take(v.organisation(raw.organisation, f)));
    let campaigns = invitations
        .as_ref()
        .and_then(|i| p.take(v.campaigns(raw.campaign, i)));
    let nats = p.take(v.nats(raw.nats));
    let delivery = match (&mydex, &queue) {
        (Some(m), Some(q)) => p.take(v.delivery(raw.delivery, m.request_timeout, (q.settle, at))),
        _ => None,
    };
    let (
        Some(mydex),
        Some(callback),
        Some(admin),
        Some(smtp),
        Some(store),
        Some(queue),
        Some(invitations),
        Some(schedule),
        Some(log),
        Some(notifications),
        Some(organisation),
        Some(campaigns),
        Some(delivery),
        Some(nats),
    ) = (
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
        nats,
    )
    else {
        return Err(p);
    };
    distinct_dirs(v, &store, &queue, delivery.as_ref())?;
    sources_have_nats(v, &queue, delivery.as_ref(), nats.is_some())?;
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
        nats,
    })
}

/// `source = "nats"` reads the broker `[nats]` describes: refused
/// without that section, naming the key.
fn sources_have_nats(
    v: &Validator,
    queue: &super::QueueSettings,
    delivery: Option<&super::DeliverySettings>,
    has_nats: bool,
) -> Result<(), Problems> {
    let sources = [
        ("queue.source", Some(queue.source)),
        ("delivery.source", delivery.map(|d| d.source)),
    ];
    let missing: Vec<_> = sources
        .into_iter()
        .filter(|(_, s)| !has_nats && *s == Some(super::IntakeSource::Nats))
        .map(|(key, _)| v.err(key, "is \"nats\" but the file has no [nats] section"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Problems(missing))
    }
}

/// The store, the queue and the readings each in a directory of their own.
fn distinct_dirs(
    v: &Validator,
    store: &super::StoreSettings,
    queue: &super::QueueSettings,
    delivery: Option<&super::DeliverySettings>,
) -> Result<(), ConfigError> {
    let mut dirs = vec![
        ("store.path", store.path.as_path()),
        ("queue.dir", queue.dir.as_path()),
    ];
    if let Some(d) = delivery {
        dirs.push(("delivery.dir", d.dir.as_path()));
    }
    v.distinct_dirs(&dirs)
}

impl NatsSettings {
    /// `[nats]` alone from the file at `path` (with environment overrides):
    /// what `nats setup` needs, from a daemon's or an edge's file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let (v, raw) = read_raw(path)?;
        v.nats(raw.nats)?
            .ok_or_else(|| v.err("nats", "the file has no [nats] section"))
    }
}
