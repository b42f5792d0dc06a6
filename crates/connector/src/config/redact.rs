//! `check-config`'s view of the settings: the effective configuration as
//! TOML, serialised from the typed settings (`#[derive(Serialize)]` on each
//! section, its odd values shown by the helpers in `show.rs`), every secret
//! replaced by where it came from.

use super::Settings;
impl Settings {
    /// The effective configuration as TOML, every secret replaced by where it came from.
    pub fn redacted(&self) -> String {
        let body = toml::to_string(self).unwrap_or_else(|e| format!("# not shown: {e}\n"));
        let mut out = format!("# effective configuration of {}\n\n", self.source.display());
        for line in body.lines() {
            out += line;
            if self.derived_from_api_url(line) {
                out += "  # from api_url";
            }
            out += "\n";
        }
        out
    }

    /// `line` shows `mydex.ftc_url` or `mydex.status_url` computed from
    /// `api_url` (TOML serialisation has no comments, so the note is added).
    fn derived_from_api_url(&self, line: &str) -> bool {
        (line.starts_with("ftc_url = ") && self.mydex.ftc_url.is_none())
            || (line.starts_with("status_url = ") && self.mydex.status_url.is_none())
    }
}
