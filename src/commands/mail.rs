//! `mydex-connector mail preview|test`: the exact mail a campaign sends,
//! composed by the daemon's own code (`notify::email::compose`) for a
//! sample invitee or a `--row`, without asking Mydex for a link (the link
//! and the unsubscribe token are placeholders that say so). `preview`
//! writes `preview.eml` (the whole message: every part, its headers, DKIM
//! when configured) and `preview.html` (the HTML part with its images, for
//! a browser); `test` sends it to one address through `[smtp]`, "[test]"
//! in its subject, with no daemon running.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::commands::config_path::ConfigPath;
use mydex_connector::config::{Campaign, Settings};
use mydex_connector::domain::{Email, Invitee};
use mydex_connector::notify::email::{
    Composed, Draft, MailHeaders, Mailer, Signer, Templates, compose,
};

/// The link in a preview: where Mydex's one-time link goes, saying what it is.
pub const PLACEHOLDER_LINK: &str = "https://placeholder.invalid/ftc/begin/\
PREVIEW-PLACEHOLDER-not-a-real-link-the-real-mail-carries-a-one-time-link-from-Mydex";
/// The unsubscribe token in a preview (the daemon answers it 404).
const PLACEHOLDER_TOKEN: &str = "PREVIEW-PLACEHOLDER-not-a-real-unsubscribe-token";

/// A mistake on the command line (exit 2), found after clap's own checks.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[derive(clap::Subcommand, Debug)]
pub enum MailCommand {
    /// Render the mail to DIR/preview.eml and DIR/preview.html.
    Preview(PreviewArgs),
    /// Send the preview to one address through the configured SMTP server.
    Test(TestArgs),
}

/// What to render: the same for `preview` and `test`.
#[derive(clap::Args, Debug)]
pub struct MailOptions {
    /// The campaign (default: the row's, else the first configured).
    #[arg(long)]
    campaign: Option<String>,
    /// Which mail: the first invitation, an update (re-consent), a
    /// reminder, or an identify invitation.
    #[arg(long, value_enum, default_value = "connect")]
    kind: MailKind,
    /// The invitee as `key=value` pairs, comma-separated, as the columns
    /// of an invitee file (`email` required; `name` and others optional);
    /// a value with a comma in double quotes. Default: a sample invitee.
    #[arg(long)]
    row: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct PreviewArgs {
    #[command(flatten)]
    options: MailOptions,
    /// Where preview.eml and preview.html go (created if missing).
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct TestArgs {
    #[command(flatten)]
    options: MailOptions,
    /// The address the test mail goes to.
    #[arg(long)]
    to: String,
    /// Also write preview.eml and preview.html here.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailKind {
    Connect,
    Update,
    Reminder,
    Identify,
}

pub async fn run(command: MailCommand, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    match command {
        MailCommand::Preview(args) => {
            let (composed, _) = prepare(config, &args.options, None)?;
            write_files(&composed, &args.out)?;
            Ok(ExitCode::SUCCESS)
        }
        MailCommand::Test(args) => {
            let to = Email::parse(&args.to)
                .map_err(|e| UsageError(format!("--to {:?}: {e}", args.to)))?;
            let (composed, settings) = prepare(config, &args.options, Some(to.as_str()))?;
            if let Some(out) = &args.out {
                write_files(&composed, out)?;
            }
            let mailer = Mailer::new(&settings.smtp, 1)?;
            mailer
                .send(composed.message)
                .await
                .with_context(|| format!("the test mail to {} was not sent", to.as_str()))?;
            println!(
                "sent {:?} to {} through {}",
                composed.subject,
                to.as_str(),
                settings.smtp.target
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The composed mail (to `test_to` when testing) and the settings.
fn prepare(
    config: &ConfigPath,
    o: &MailOptions,
    test_to: Option<&str>,
) -> anyhow::Result<(Composed, Settings)> {
    let settings = config.load()?;
    let invitee = match &o.row {
        Some(row) => parse_row(row)?,
        None => sample_invitee()?,
    };
    let campaign = pick_campaign(&settings, o.campaign.as_deref(), &invitee)?.clone();
    let templates = Templates::load(
        &settings.campaigns,
        &settings.organisation,
        settings.invitations.link_ttl,
    )
    .map_err(|e| e.in_config(&settings.source))?;
    let signer = match &settings.smtp.dkim {
        Some(d) => Some(
            Signer::new(d).map_err(|e| mydex_connector::config::ConfigError {
                file: settings.source.display().to_string(),
                key: "smtp.dkim_key_file".into(),
                message: e.to_string(),
            })?,
        ),
        None => None,
    };
    let (kind, reminder) = match o.kind {
        MailKind::Connect => ("connect", 0),
        MailKind::Update => ("update", 0),
        MailKind::Reminder => ("connect", 1),
        MailKind::Identify => ("identify", 0),
    };
    let unsubscribe_url = format!(
        "{}/unsubscribe/{PLACEHOLDER_TOKEN}",
        settings.callback.public_url
    );
    let draft = Draft {
        id: 0,
        campaign: &campaign.name,
        invitee: &invitee,
        to: test_to.unwrap_or(invitee.email.as_str()),
        kind,
        version: settings.mydex.connection_version,
        reminder,
        max_reminders: campaign.max_reminders,
        link: PLACEHOLDER_LINK,
        unsubscribe_url: &unsubscribe_url,
        headers: headers(&settings, &unsubscribe_url),
        subject_prefix: test_to.map(|_| "[test]"),
    };
    let composed = compose(&templates, &settings.smtp.from, signer.as_ref(), draft)
        .context("the mail cannot be composed")?;
    Ok((composed, settings))
}

/// The headers a real mail carries, with the placeholder token.
fn headers(settings: &Settings, unsubscribe_url: &str) -> MailHeaders {
    let mut list_unsubscribe = format!("<{unsubscribe_url}>");
    if let Some(mailto) = &settings.smtp.unsubscribe_mailto {
        list_unsubscribe.push_str(&format!(
            ", <mailto:{mailto}?subject=unsubscribe%20{PLACEHOLDER_TOKEN}>"
        ));
    }
    MailHeaders {
        list_unsubscribe,
        envelope_from: settings
            .smtp
            .return_path
            .as_ref()
            .map(|r| r.replace("{token}", "preview")),
        message_token: None,
    }
}

/// `--campaign`, else the row's, else the first; an unknown one is a
/// usage error naming those there are.
fn pick_campaign<'a>(
    settings: &'a Settings,
    flag: Option<&str>,
    invitee: &Invitee,
) -> anyhow::Result<&'a Campaign> {
    let known = || {
        settings
            .campaigns
            .iter()
            .map(|c| format!("{:?}", c.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let (Some(f), Some(r)) = (flag, invitee.campaign.as_deref())
        && f != r
    {
        return Err(UsageError(format!(
            "--campaign {f:?} and the row's campaign {r:?} differ: give one"
        ))
        .into());
    }
    match flag.or(invitee.campaign.as_deref()) {
        None => Ok(settings.default_campaign()),
        Some(name) => settings.campaign(name).ok_or_else(|| {
            UsageError(format!(
                "no campaign {name:?} in {}; configured: {}",
                settings.source.display(),
                known()
            ))
            .into()
        }),
    }
}

fn sample_invitee() -> anyhow::Result<Invitee> {
    Invitee::from_fields([
        ("email".to_string(), "sam.sample@example.com".to_string()),
        ("name".to_string(), "Sam Sample".to_string()),
        ("external_ref".to_string(), "MTR-0001234".to_string()),
    ])
    .context("the sample invitee")
}

/// `--row 'email=…,name=…'`: pairs split at commas outside double quotes,
/// then read as one row of an invitee file.
pub fn parse_row(row: &str) -> Result<Invitee, UsageError> {
    let bad = |m: String| UsageError(format!("--row: {m}"));
    let mut fields: Vec<(String, String)> = Vec::new();
    for pair in split_pairs(row).map_err(bad)? {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(bad(format!("{pair:?} is not key=value")));
        };
        let key = key.trim().to_string();
        if key.is_empty() {
            return Err(bad(format!("{pair:?} has no key")));
        }
        if fields.iter().any(|(k, _)| *k == key) {
            return Err(bad(format!("`{key}` is given twice")));
        }
        fields.push((key, unquote(value.trim())));
    }
    Invitee::from_fields(fields).map_err(|e| bad(e.to_string()))
}

/// The `key=value` pieces of `row`, split at commas outside quotes.
fn split_pairs(row: &str) -> Result<Vec<String>, String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in row.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("a double quote is not closed".into());
    }
    out.push(cur);
    Ok(out.into_iter().filter(|p| !p.trim().is_empty()).collect())
}

/// A value without its surrounding double quotes (`""` inside is one).
fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner.replace("\"\"", "\""),
        None => v.to_string(),
    }
}

/// `preview.eml` and `preview.html` in `dir`, and what they hold.
fn write_files(composed: &Composed, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let eml = dir.join("preview.eml");
    let html = dir.join("preview.html");
    let raw = composed.message.formatted();
    std::fs::write(&eml, &raw).with_context(|| format!("cannot write {}", eml.display()))?;
    std::fs::write(&html, composed.html_for_browser())
        .with_context(|| format!("cannot write {}", html.display()))?;
    let head = String::from_utf8_lossy(&raw);
    let header = |name: &str| {
        head.split("\r\n\r\n")
            .next()
            .unwrap_or("")
            .split("\r\n")
            .find(|l| l.len() > name.len() && l[..name.len()].eq_ignore_ascii_case(name))
            .map(|l| l[name.len()..].trim().to_string())
            .unwrap_or_else(|| "(none)".into())
    };
    println!("wrote {} ({} bytes)", eml.display(), raw.len());
    println!("wrote {} (the HTML part, images inline)", html.display());
    println!("  From:    {}", header("From:"));
    println!("  To:      {}", header("To:"));
    println!("  Subject: {}", composed.subject);
    println!(
        "  Parts:   text/plain, text/html{}",
        composed
            .images
            .iter()
            .map(|i| format!(", {}", i.content_type))
            .collect::<String>()
    );
    let dkim = head.contains("\r\nDKIM-Signature:") || head.starts_with("DKIM-Signature:");
    println!(
        "  DKIM:    {}",
        if dkim {
            "signed"
        } else {
            "not signed (smtp.dkim_* not set)"
        }
    );
    println!("  Link:    a placeholder, not a real link: {PLACEHOLDER_LINK}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_as_invitee_files_do() {
        let i = parse_row("email=ann@example.com,name=\"Example, Ann\",tariff=green").unwrap();
        assert_eq!(i.email.as_str(), "ann@example.com");
        assert_eq!(i.name.as_deref(), Some("Example, Ann"));
        assert_eq!(i.vars["tariff"], "green");
        let i = parse_row("email=bob@example.com").unwrap();
        assert_eq!(i.name, None);
        for bad in [
            "name=Ann",
            "email=not-an-address",
            "email",
            "=x,email=a@example.com",
            "email=a@example.com,email=b@example.com",
            "email=\"a@example.com",
            "email=a@example.com,bad-column=1",
        ] {
            assert!(parse_row(bad).is_err(), "{bad}");
        }
    }
}
