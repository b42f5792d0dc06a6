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

/// A URL with its user and password (`https://user:pass@host`) shown as
/// `<redacted>`: either may be a secret.
pub(super) fn url<S: Serializer>(u: &reqwest::Url, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&url_text(u.as_str()))
}

/// An optional URL as [`url`] shows it, `(none)` when absent.
pub(super) fn url_or_none<S: Serializer>(
    u: &Option<reqwest::Url>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match u {
        Some(u) => url(u, s),
        None => s.serialize_str("(none)"),
    }
}

/// A URL given as text with any user and password replaced by
/// `<redacted>`; used wherever configuration shows or quotes a URL
/// (`check-config`, error messages), including text that does not parse.
pub(super) fn url_text(raw: &str) -> String {
    let Some(start) = raw.find("://").map(|i| i + 3) else {
        return raw.to_string();
    };
    let authority_end = raw[start..]
        .find(['/', '?', '#'])
        .map_or(raw.len(), |i| start + i);
    match raw[start..authority_end].rfind('@') {
        Some(at) => format!("{}<redacted>{}", &raw[..start], &raw[start + at..]),
        None => raw.to_string(),
    }
}

/// Anything by its `Display` (mailboxes, values with no secret in them).
pub(super) fn display<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
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
/// A path, or `(none)`.
pub(super) fn path_or_none<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => path(p, s),
        None => s.serialize_str("(none)"),
    }
}

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

#[cfg(test)]
mod tests {
    use super::url_text;

    #[test]
    fn user_and_password_in_a_url_are_redacted() {
        assert_eq!(
            url_text("https://user:pa%40ss@api.example.com:8443/x?y=1"),
            "https://<redacted>@api.example.com:8443/x?y=1"
        );
        assert_eq!(url_text("https://tok@h/p@q"), "https://<redacted>@h/p@q");
        assert_eq!(url_text("https://a:b@"), "https://<redacted>@");
        assert_eq!(url_text("https://h.example/a@b"), "https://h.example/a@b");
        assert_eq!(url_text("not a url"), "not a url");
    }
}
