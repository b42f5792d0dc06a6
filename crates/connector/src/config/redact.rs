//! `check-config`'s view of the settings: the effective configuration as
//! TOML, every secret replaced by where it came from.

use std::path::Path;

use super::Settings;
use super::log::LogFormat;
use super::mydex::Environment;
use super::rate::format_rate;
use super::share::format_share;
use super::smtp::SmtpTarget;

impl Settings {
    // Long: hand-written TOML, one format! per section; to be derived.
    /// The effective configuration as TOML, every secret replaced by where it came from.
    pub fn redacted(&self) -> String {
        let secret = |p: &Path| format!("<redacted, read from {}>", p.display());
        let mut out = String::new();
        let m = &self.mydex;
        out += &format!(
            "# effective configuration of {}\n\n[mydex]\nenvironment = {:?}\napi_url = {:?}\ntoken_url = {:?}\nclient_id = {:?}\nclient_secret = {:?}\nconnection_nid = {:?}\nconnection_token = {:?}\nreturn_to = {:?}\nconnection_version = {}\nrequest_timeout = {:?}\nmax_attempts = {}\nftc_flow = {:?}\nftc_url = {:?}{}\nstatus_url = {:?}{}\n",
            self.source.display(),
            match m.environment {
                Environment::Sandbox => "sandbox",
                Environment::Production => "production",
            },
            m.api_url.as_str(),
            m.token_url.as_str(),
            m.client_id,
            secret(&m.client_secret_source),
            m.connection_nid,
            secret(&m.connection_token_source),
            m.return_to,
            m.connection_version,
            humantime::format_duration(m.request_timeout).to_string(),
            m.max_attempts,
            m.ftc_flow.name(),
            m.ftc_endpoint().as_str(),
            if m.ftc_url.is_some() {
                ""
            } else {
                "  # from api_url"
            },
            m.status_base().as_str(),
            if m.status_url.is_some() {
                ""
            } else {
                "  # from api_url"
            },
        );
        out += &format!(
            "\n[callback]\nlisten = \"{}\"\npath = {:?}\nbody_limit = {}\nread_timeout = {:?}\nmax_connections = {}\n",
            self.callback.listen,
            self.callback.path,
            self.callback.body_limit,
            humantime::format_duration(self.callback.read_timeout).to_string(),
            self.callback.max_connections
        );
        out += &format!(
            "\n[admin]\nlisten = \"{}\"\nallow_key_export = {}\ntoken = {:?}\n",
            self.admin.listen,
            self.admin.allow_key_export,
            self.admin
                .token_source
                .as_deref()
                .map(secret)
                .unwrap_or_else(|| "(none: state-changing calls refused)".into())
        );
        let target = match &self.smtp.target {
            SmtpTarget::Smtp { url, .. } => url.clone(),
            SmtpTarget::Outbox(dir) => format!("file://{}", dir.display()),
        };
        out += &format!(
            "\n[smtp]\nurl = {:?}\npassword = {:?}\nfrom = {:?}\ntimeout = {:?}\nmax_attempts = {}\n",
            target,
            self.smtp
                .password_source
                .as_deref()
                .map(secret)
                .unwrap_or_else(|| "(none)".into()),
            self.smtp.from.to_string(),
            humantime::format_duration(self.smtp.timeout).to_string(),
            self.smtp.max_attempts,
        );
        out += &format!(
            "\n[store]\npath = {:?}\nkey = {:?}\n\n[queue]\ndir = {:?}\npoll_interval = {:?}\n",
            self.store.path.display().to_string(),
            secret(&self.store.key_source),
            self.queue.dir.display().to_string(),
            humantime::format_duration(self.queue.poll_interval).to_string(),
        );
        let i = &self.invitations;
        out += &format!(
            "\n[invitations]\nlink_ttl = {:?}\nreminder_after = {:?}\nmax_reminders = {}\nconcurrency = {}\n",
            humantime::format_duration(i.link_ttl).to_string(),
            humantime::format_duration(i.reminder_after).to_string(),
            i.max_reminders,
            i.concurrency
        );
        out += &format!(
            "\n[schedule]\nversion_check = {:?}\nexpiry_check = {:?}\nsweep_concurrency = {}\nsweep_rate = {:?}\nmax_disconnect_share = {:?}\n\n[log]\nlevel = {:?}\nformat = {:?}\n",
            self.schedule.version_check,
            self.schedule.expiry_check,
            self.schedule.sweep_concurrency,
            format_rate(self.schedule.sweep_rate),
            format_share(self.schedule.max_disconnect_share),
            self.log.level,
            match self.log.format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }
        );
        out += &format!(
            "\n[notifications]\ncommand = {:?}\nwebhook_url = {:?}\ntimeout = {:?}\n",
            self.notifications
                .command
                .as_ref()
                .map(|c| c.join(" "))
                .unwrap_or("(none)".into()),
            self.notifications
                .webhook_url
                .as_ref()
                .map(|u| u.to_string())
                .unwrap_or("(none)".into()),
            humantime::format_duration(self.notifications.timeout).to_string(),
        );
        for c in &self.campaigns {
            out += &format!(
                "\n[[campaign]]\nname = {:?}\nsubject = {:?}\n",
                c.name, c.subject
            );
            let builtin = "(built-in)".to_string();
            out += &format!(
                "text_template = {:?}\nhtml_template = {:?}\nrate = {:?}\n",
                c.text_template
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or(builtin.clone()),
                c.html_template
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or(builtin),
                format_rate(c.rate),
            );
            out += &format!(
                "send_window = {:?}\nreminder_after = {:?}\nmax_reminders = {}\nreminder_subject = {:?}\nerror_threshold = {}\nreconnect_on_revoke = {}\n",
                c.send_window
                    .map(|w| format!("{w} ({})", w.tz))
                    .unwrap_or("(any time)".into()),
                humantime::format_duration(c.reminder_after).to_string(),
                c.max_reminders,
                c.reminder_subject,
                c.error_threshold
                    .map(|n| n.to_string())
                    .unwrap_or("\"off\"".into()),
                c.reconnect_on_revoke,
            );
        }
        out
    }
}
