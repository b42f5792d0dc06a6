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

#[cfg(test)]
mod tests {
    use super::Settings;

    #[test]
    fn secrets_shown_as_their_source_and_derived_urls_noted() {
        let dir = std::env::temp_dir().join(format!("cfg-redact-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, body) in [
            ("client_secret", "s3cret-client\n"),
            ("connection_token", "s3cret-token\n"),
            ("store_key", &"ab".repeat(32)),
        ] {
            std::fs::write(dir.join(name), body).unwrap();
        }
        let config = dir.join("c.toml");
        std::fs::write(
            &config,
            "[mydex]\nclient_id = \"x\"\nconnection_nid = \"1\"\nclient_secret_file = \"client_secret\"\nconnection_token_file = \"connection_token\"\n[callback]\npublic_url = \"https://connect.example.com\"\n[smtp]\nurl = \"file:///tmp/outbox\"\nfrom = \"a@b.example\"\n[store]\npath = \"db\"\nkey_file = \"store_key\"\n[queue]\ndir = \"q\"\n[[campaign]]\nname = \"x\"\nsubject = 'Say \"hi\"'\n",
        )
        .unwrap();
        let shown = Settings::load(&config).unwrap().redacted();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!shown.contains("s3cret"), "{shown}");
        let key = format!(
            "key = \"<redacted, read from {}>\"\n",
            dir.join("store_key").display()
        );
        assert!(shown.contains(&key), "{shown}");
        assert!(shown.contains("token = \"(none: state-changing calls refused)\"\n"));
        assert!(shown.contains("password = \"(none)\"\n"), "{shown}");
        assert!(
            shown.contains("ftc_url = \"https://sbx-api.mydex.org/ftc/setup\"  # from api_url\n")
        );
        assert!(shown.contains("max_disconnect_share = \"5%\"\n"), "{shown}");
        assert!(shown.contains("error_threshold = \"off\"\n"), "{shown}");
        assert!(shown.contains("[[campaign]]\nname = \"x\"\n"), "{shown}");
    }
}
