//! Where the daemon's log lines go and at which level: journald when run
//! under systemd (`JOURNAL_STREAM` set), otherwise JSON lines or human text
//! on stderr (`log.format`). The level sits behind a reload handle so SIGHUP
//! can change it while the daemon runs.

use crate::store::ENGINE_LOG_TARGET;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Changes the level of the installed subscriber.
#[derive(Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, tracing_subscriber::Registry>,
    /// `RUST_LOG` was set at start: it wins over `log.level`.
    pinned_by_env: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{0:?} is not a level or filter (error, warn, info, debug, trace)")]
    BadLevel(String),
    #[error("cannot change the log level: {0}")]
    Reload(String),
}

impl LogControl {
    /// Apply `level` (a level or an `EnvFilter` directive), unless `RUST_LOG`
    /// fixed the level at start. Returns what is in force afterwards.
    pub fn set_level(&self, level: &str) -> Result<String, LogError> {
        if self.pinned_by_env {
            return Ok(format!(
                "{} (from RUST_LOG, which overrides log.level)",
                std::env::var("RUST_LOG").unwrap_or_default()
            ));
        }
        let filter = EnvFilter::try_new(with_noisy_capped(level))
            .map_err(|_| LogError::BadLevel(level.into()))?;
        self.handle
            .reload(filter)
            .map_err(|e| LogError::Reload(e.to_string()))?;
        Ok(level.to_string())
    }
}

/// Whether stderr is connected to the journal (systemd sets `JOURNAL_STREAM`
/// to the device:inode of the stream it gave us).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(var) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = var.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(m) => m.dev() == dev && m.ino() == ino,
        Err(_) => false,
    }
}

/// The storage engine's own debug and trace lines come per page written
/// (hundreds of MB for a large ingest), and some are logged from
/// crossbeam-epoch destructors as a thread exits, when the log layer's
/// thread-local buffer is already gone: the process then aborts on its way
/// out. So the engine stays at `info` unless the filter names it.
///
/// tokio-cron-scheduler says "Uninited" and "Job creator created" at `info`
/// on every start: noise in an operator's journal, so it stays at `warn`
/// unless the filter names it.
fn with_noisy_capped(spec: &str) -> String {
    let mut out = spec.trim().to_string();
    let engine_cap = format!("{ENGINE_LOG_TARGET}=info");
    for (target, cap) in [
        (ENGINE_LOG_TARGET, engine_cap.as_str()),
        ("tokio_cron_scheduler", "tokio_cron_scheduler=warn"),
    ] {
        if !spec.contains(target) {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(cap);
        }
    }
    out
}

/// Colour in text logs only on a terminal, and never with `NO_COLOR` set
/// (to anything but the empty string): a pipe or a file gets plain text.
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Install the global subscriber once. `RUST_LOG`, when set, overrides `level`.
/// Returns `None` when a subscriber was already installed (tests, demo).
pub fn init(level: &str, format: LogFormat) -> Option<LogControl> {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| EnvFilter::try_new(with_noisy_capped(&spec)).ok());
    let pinned_by_env = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(with_noisy_capped(level)));
    let (filter, handle) = reload::Layer::new(filter);

    let journald = if stderr_is_journal() {
        tracing_journald::layer()
            .ok()
            .map(|l| l.with_syslog_identifier("mydex-connector".into()))
    } else {
        None
    };
    let output: Box<dyn Layer<_> + Send + Sync> = match (journald, format) {
        (Some(j), _) => Box::new(j),
        (None, LogFormat::Json) => Box::new(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr),
        ),
        (None, LogFormat::Text) => Box::new(
            tracing_subscriber::fmt::layer()
                .with_ansi(colour_on_stderr())
                .with_writer(std::io::stderr),
        ),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .ok()?;
    Some(LogControl {
        handle,
        pinned_by_env,
    })
}

#[cfg(test)]
mod tests {
    use super::with_noisy_capped;
    use crate::store::ENGINE_LOG_TARGET as E;

    #[test]
    fn noisy_libraries_are_capped_unless_named() {
        let caps = format!("{E}=info,tokio_cron_scheduler=warn");
        let caps = caps.as_str();
        assert_eq!(with_noisy_capped("trace"), format!("trace,{caps}"));
        assert_eq!(
            with_noisy_capped("info,mydex_connector=debug"),
            format!("info,mydex_connector=debug,{caps}")
        );
        assert_eq!(
            with_noisy_capped(&format!("trace,{E}=debug")),
            format!("trace,{E}=debug,tokio_cron_scheduler=warn")
        );
        assert_eq!(
            with_noisy_capped("info,tokio_cron_scheduler=info"),
            format!("info,tokio_cron_scheduler=info,{E}=info")
        );
        assert_eq!(with_noisy_capped(""), caps);
    }
}
