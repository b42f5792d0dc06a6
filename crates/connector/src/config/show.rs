//! How `check-config` shows values that are not plain TOML: the
//! `serialize_with` helpers the settings' `#[derive(Serialize)]` names.
//! A secret is shown as where it was read from, never what it holds.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::rate::{Rate, format_rate};
use super::share::format_share;
use crate::domain::send_window::SendWindow;

/// A secret read from `path`: shown as `<redacted, read from PATH>`.
pub(super) fn secret<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("<redacted, read from {}>", path.display()))
}

/// An optional secret: where it came from, or `(none)`.
pub(super) fn optional_secret<S: Serializer>(
    path: &Option<PathBuf>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => secret(p, s),
        None => s.serialize_str("(none)"),
    }
}

/// The admin token: where it came from, or what its absence means.
pub(super) fn admin_token<S: Serializer>(path: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => secret(p, s),
        None => s.serialize_str("(none: state-changing calls refused)"),
    }
}

/// A duration in humantime (`"10s"`, `"1day"`).
pub(super) fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// Anything by its `Display` (URLs, mailboxes).
pub(super) fn display<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// An optional value by its `Display`, `(none)` when absent.
pub(super) fn display_or_none<T: Display, S: Serializer>(
    v: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_str("(none)"),
    }
}

/// A rate as `"60/1m"`, `"unlimited"` for none.
pub(super) fn rate<S: Serializer>(r: &Option<Rate>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rate(*r))
}

/// A share as `"5%"`.
pub(super) fn share<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_share(*v))
}

/// A share, `off` when none is set.
pub(super) fn share_or_off<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.serialize_str(&format_share(*v)),
        None => s.serialize_str("off"),
    }
}

/// A template path, `(built-in)` when none is set.
pub(super) fn template<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.collect_str(&p.display()),
        None => s.serialize_str("(built-in)"),
    }
}

/// A count, or `"off"` when absent.
pub(super) fn count_or_off<S: Serializer>(n: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match n {
        Some(n) => n.serialize(s),
        None => s.serialize_str("off"),
    }
}

/// A path as text.
pub(super) fn path<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&p.display())
}

/// A command line joined by spaces, `(none)` when absent.
pub(super) fn command<S: Serializer>(c: &Option<Vec<String>>, s: S) -> Result<S::Ok, S::Error> {
    match c {
        Some(c) => s.serialize_str(&c.join(" ")),
        None => s.serialize_str("(none)"),
    }
}

/// A send window and its zone, `(any time)` when none.
pub(super) fn send_window<S: Serializer>(w: &Option<SendWindow>, s: S) -> Result<S::Ok, S::Error> {
    match w {
        Some(w) => s.collect_str(&format_args!("{w} ({})", w.tz)),
        None => s.serialize_str("(any time)"),
    }
}
