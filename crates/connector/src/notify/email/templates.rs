//! Per-campaign subject, text and HTML templates (minijinja). HTML output is
//! auto-escaped, so an invitee's name cannot inject markup; the subject is
//! forced to one line, so it cannot inject headers. Templates are checked at
//! start by rendering a sample, and must carry the link. Every mail also
//! gets `organisation` (from `[organisation]`) and `link_valid_for`
//! (`invitations.link_ttl` in words); a name that is only blanks counts as
//! no name, so a greeting never shows a placeholder.

use std::collections::BTreeMap;
use std::time::Duration;

use minijinja::{AutoEscape, Environment};
use serde::Serialize;

use super::contact::{contact_address, contact_html};
use super::duration_words::duration_in_words;
use crate::config::{Campaign, Organisation};

const BUILTIN_TEXT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../config/templates/invite.txt"
));
const BUILTIN_HTML: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../config/templates/invite.html"
));
const BUILTIN_REMINDER_TEXT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../config/templates/reminder.txt"
));
const BUILTIN_REMINDER_HTML: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../config/templates/reminder.html"
));

#[derive(Debug, thiserror::Error)]
#[error("campaign {campaign:?}: `{key}`: {message}")]
pub struct TemplateError {
    pub campaign: String,
    pub key: &'static str,
    pub message: String,
}

impl TemplateError {
    /// As a configuration error of `file`, naming the campaign's key.
    pub fn in_config(&self, file: &std::path::Path) -> crate::config::ConfigError {
        crate::config::ConfigError {
            file: file.display().to_string(),
            key: format!("campaign {:?}.{}", self.campaign, self.key),
            message: self.message.clone(),
        }
    }
}

/// What a template can use.
#[derive(Debug, Serialize)]
pub struct MailContext<'a> {
    pub name: Option<&'a str>,
    pub email: &'a str,
    pub external_ref: Option<&'a str>,
    pub mydexid: Option<&'a str>,
    pub campaign: &'a str,
    pub kind: &'a str,
    pub version: u32,
    /// 0 for the first mail; n for the n-th reminder (its own templates).
    pub reminder: u32,
    pub max_reminders: u32,
    pub link: &'a str,
    /// `cid:` URL of the inline QR image.
    pub qr_src: &'a str,
    /// `cid:` URL of the inline logo (`organisation.logo_file`), if any.
    pub logo_src: Option<&'a str>,
    /// The one-click unsubscribe page of this mail.
    pub unsubscribe_url: &'a str,
    pub subject: String,
    pub vars: &'a BTreeMap<String, String>,
}

pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// `organisation` as the templates see it.
#[derive(Debug, Serialize)]
struct OrganisationView {
    name: String,
    website: Option<String>,
    /// The free text as written (for text parts).
    contact: Option<String>,
    /// The first address in `contact`, if any.
    contact_email: Option<String>,
    privacy_url: Option<String>,
}

pub struct Templates {
    env: Environment<'static>,
    organisation: Organisation,
    /// `contact` as HTML (addresses and URLs linked); safe to show as is.
    contact_html: Option<String>,
    view: OrganisationView,
    link_valid_for: String,
}

impl Templates {
    /// The campaigns' templates, with who is asking and how long a link
    /// lasts (`link_ttl`).
    pub fn load(
        campaigns: &[Campaign],
        organisation: &Organisation,
        link_ttl: Duration,
    ) -> Result<Self, TemplateError> {
        let env = environment(campaigns)?;
        let t = Self {
            env,
            view: OrganisationView {
                name: organisation.name.clone(),
                website: organisation.website.as_ref().map(|u| u.to_string()),
                contact: organisation.contact.clone(),
                contact_email: organisation.contact.as_deref().and_then(contact_address),
                privacy_url: organisation.privacy_url.as_ref().map(|u| u.to_string()),
            },
            contact_html: organisation.contact.as_deref().map(contact_html),
            organisation: organisation.clone(),
            link_valid_for: duration_in_words(link_ttl),
        };
        for c in campaigns {
            t.check(c)?;
        }
        Ok(t)
    }

    /// Render a sample and insist the link is in both parts.
    fn check(&self, c: &Campaign) -> Result<(), TemplateError> {
        self.check_one(c, 0)?;
        self.check_one(c, 1)
    }

    fn check_one(&self, c: &Campaign, reminder: u32) -> Result<(), TemplateError> {
        let (text_key, html_key) = if reminder == 0 {
            ("text_template", "html_template")
        } else {
            ("reminder_text_template", "reminder_html_template")
        };
        let vars = BTreeMap::new();
        let link = "https://sbx-api.mydex.org/ftc/begin/CHECK-LINK-1234";
        let ctx = MailContext {
            name: Some("Sample Person"),
            email: "sample@example.com",
            external_ref: Some("METER-1"),
            mydexid: None,
            campaign: &c.name,
            kind: "connect",
            version: 1,
            reminder,
            max_reminders: c.max_reminders,
            link,
            qr_src: "cid:qr",
            logo_src: self.organisation.logo.as_ref().map(|_| "cid:logo"),
            unsubscribe_url: "https://connect.example.com/unsubscribe/CHECK",
            subject: String::new(),
            vars: &vars,
        };
        let r = self.render(&c.name, ctx).map_err(|e| TemplateError {
            campaign: c.name.clone(),
            key: "template",
            message: e.to_string(),
        })?;
        if !r.text.contains(link) {
            return Err(TemplateError {
                campaign: c.name.clone(),
                key: text_key,
                message: "must include {{ link }}".into(),
            });
        }
        if !r.html.contains(link) {
            return Err(TemplateError {
                campaign: c.name.clone(),
                key: html_key,
                message: "must include {{ link }}".into(),
            });
        }
        Ok(())
    }

    /// `[organisation]` as loaded (the logo's bytes, for the message).
    pub fn organisation(&self) -> &Organisation {
        &self.organisation
    }

    /// `organisation.contact` as HTML, its addresses and URLs linked.
    pub fn contact_html(&self) -> Option<&str> {
        self.contact_html.as_deref()
    }

    pub fn render(
        &self,
        campaign: &str,
        mut ctx: MailContext<'_>,
    ) -> Result<Rendered, RenderError> {
        ctx.name = ctx.name.map(str::trim).filter(|n| !n.is_empty());
        let prefix = if ctx.reminder > 0 {
            format!("{campaign}/reminder")
        } else {
            campaign.to_string()
        };
        let get = |part: &'static str| {
            self.env
                .get_template(&format!("{prefix}/{part}"))
                .map_err(|e| RenderError::Missing(part, e))
        };
        let subject_raw = get("subject.txt")?
            .render(self.context(&ctx))
            .map_err(RenderError::Subject)?;
        let subject: String = subject_raw
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(250)
            .collect();
        ctx.subject = subject.clone();
        let full = self.context(&ctx);
        let text = get("text.txt")?.render(&full).map_err(RenderError::Text)?;
        let html = get("body.html")?.render(&full).map_err(RenderError::Html)?;
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }
}

/// Every campaign's subject, text and HTML templates (first mail and
/// reminder), read from their files or built in.
fn environment(campaigns: &[Campaign]) -> Result<Environment<'static>, TemplateError> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    for c in campaigns {
        let err = |key, message: String| TemplateError {
            campaign: c.name.clone(),
            key,
            message,
        };
        let read = |key,
                    path: &Option<std::path::PathBuf>,
                    builtin: &str|
         -> Result<String, TemplateError> {
            match path {
                None => Ok(builtin.to_string()),
                Some(p) => std::fs::read_to_string(p)
                    .map_err(|e| err(key, format!("cannot read {}: {e}", p.display()))),
            }
        };
        let text = read("text_template", &c.text_template, BUILTIN_TEXT)?;
        let html = read("html_template", &c.html_template, BUILTIN_HTML)?;
        env.add_template_owned(format!("{}/subject.txt", c.name), c.subject.clone())
            .map_err(|e| err("subject", e.to_string()))?;
        env.add_template_owned(format!("{}/text.txt", c.name), text)
            .map_err(|e| err("text_template", e.to_string()))?;
        env.add_template_owned(format!("{}/body.html", c.name), html)
            .map_err(|e| err("html_template", e.to_string()))?;
        let text = read(
            "reminder_text_template",
            &c.reminder_text_template,
            BUILTIN_REMINDER_TEXT,
        )?;
        let html = read(
            "reminder_html_template",
            &c.reminder_html_template,
            BUILTIN_REMINDER_HTML,
        )?;
        env.add_template_owned(
            format!("{}/reminder/subject.txt", c.name),
            c.reminder_subject.clone(),
        )
        .map_err(|e| err("reminder_subject", e.to_string()))?;
        env.add_template_owned(format!("{}/reminder/text.txt", c.name), text)
            .map_err(|e| err("reminder_text_template", e.to_string()))?;
        env.add_template_owned(format!("{}/reminder/body.html", c.name), html)
            .map_err(|e| err("reminder_html_template", e.to_string()))?;
    }
    Ok(env)
}

/// Why an invitation's mail could not be rendered (the invitation fails
/// with this text).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {0}: {1}")]
    Missing(&'static str, minijinja::Error),
    #[error("subject: {0}")]
    Subject(minijinja::Error),
    #[error("text template: {0}")]
    Text(minijinja::Error),
    #[error("html template: {0}")]
    Html(minijinja::Error),
}

impl Templates {
    /// The template context: the fixed names and `organisation`,
    /// `link_valid_for`, plus each extra column at top level where it does
    /// not shadow one of them (all stay under `vars`).
    fn context(&self, ctx: &MailContext<'_>) -> minijinja::Value {
        // Parsed URLs (quotes and angle brackets percent-encoded) are safe
        // in HTML as they are, like the link; escaping their slashes would
        // only make them harder to read in the source.
        let safe = |s: &Option<String>| s.clone().map(minijinja::Value::from_safe_string);
        let organisation = minijinja::context! {
            website => safe(&self.view.website),
            privacy_url => safe(&self.view.privacy_url),
            contact_html => safe(&self.contact_html),
            ..minijinja::Value::from(minijinja::value::Serde(&self.view))
        };
        minijinja::context! {
            organisation => organisation,
            link_valid_for => self.link_valid_for.clone(),
            ..context(ctx)
        }
    }
}

/// The invitation's own names, plus each extra column at top level where it
/// does not shadow one of them (all stay under `vars`).
fn context(ctx: &MailContext<'_>) -> minijinja::Value {
    let mut map = match serde_json::to_value(ctx) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    for (k, v) in ctx.vars {
        if !map.contains_key(k) {
            map.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
    }
    // The link is a parsed http(s) URL (quotes and angle brackets are
    // percent-encoded), so it is safe in HTML as it is; escaping its slashes
    // would only make it harder to find in the message.
    let link = match reqwest::Url::parse(ctx.link) {
        Ok(u) => minijinja::Value::from_safe_string(u.to_string()),
        Err(_) => minijinja::Value::from(ctx.link),
    };
    let unsubscribe_url = match reqwest::Url::parse(ctx.unsubscribe_url) {
        Ok(u) => minijinja::Value::from_safe_string(u.to_string()),
        Err(_) => minijinja::Value::from(ctx.unsubscribe_url),
    };
    minijinja::context! { link => link, unsubscribe_url => unsubscribe_url, ..minijinja::Value::from(minijinja::value::Serde(map)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn org() -> Organisation {
        Organisation {
            name: "Example Energy".into(),
            website: Some("https://example.com".parse().unwrap()),
            contact: Some("Call 0800 123 456 or write to help@example.com".into()),
            privacy_url: Some("https://example.com/privacy".parse().unwrap()),
            logo: None,
            configured: true,
        }
    }

    fn ctx<'a>(
        name: Option<&'a str>,
        kind: &'a str,
        reminder: u32,
        vars: &'a BTreeMap<String, String>,
    ) -> MailContext<'a> {
        MailContext {
            name,
            email: "a@example.com",
            external_ref: Some("MTR-1"),
            mydexid: None,
            campaign: "c1",
            kind,
            version: 2,
            reminder,
            max_reminders: 2,
            link: "https://x.example/ftc/begin/1",
            qr_src: "cid:qr",
            logo_src: None,
            unsubscribe_url: "https://x.example/unsubscribe/u1",
            subject: String::new(),
            vars,
        }
    }

    #[test]
    fn the_builtin_mails_name_the_organisation_and_never_greet_a_placeholder() {
        let t = Templates::load(&[campaign("Hi")], &org(), DAY).unwrap();
        let vars = BTreeMap::new();
        for (kind, reminder) in [
            ("connect", 0),
            ("update", 0),
            ("identify", 0),
            ("connect", 1),
            ("update", 1),
        ] {
            for name in [Some("Ann Example"), None, Some("   ")] {
                let r = t.render("c1", ctx(name, kind, reminder, &vars)).unwrap();
                let at = format!("{kind} {reminder} {name:?}");
                for part in [&r.text, &r.html] {
                    assert!(part.contains("Example Energy"), "{at}: {part}");
                    assert!(part.contains("24 hours"), "{at}: {part}");
                    assert!(
                        part.contains("works once") || part.contains("only once"),
                        "{at}: {part}"
                    );
                    assert!(part.contains("https://x.example/ftc/begin/1"), "{at}");
                    assert!(
                        !part.contains("Hello ,") && !part.contains("Hello You"),
                        "{at}: {part}"
                    );
                    assert!(!part.contains("Hello   ,"), "{at}");
                }
                match name {
                    Some("Ann Example") => {
                        assert!(r.text.starts_with("Hello Ann Example,"), "{at}: {}", r.text)
                    }
                    _ => assert!(r.text.starts_with("Hello,"), "{at}: {}", r.text),
                }
                assert!(
                    r.html.contains("href=\"mailto:help@example.com\""),
                    "{at}: {}",
                    r.html
                );
                assert!(
                    r.text
                        .contains("Call 0800 123 456 or write to help@example.com"),
                    "{at}"
                );
                assert!(r.html.contains("https://example.com/privacy"), "{at}");
                assert!(r.html.contains("name=\"viewport\""), "{at}");
            }
        }
        let three_hours =
            Templates::load(&[campaign("Hi")], &org(), Duration::from_secs(3 * 3600)).unwrap();
        let r = three_hours
            .render("c1", ctx(None, "connect", 0, &vars))
            .unwrap();
        assert!(
            r.text.contains("3 hours") && r.html.contains("3 hours"),
            "{}",
            r.text
        );
        assert!(!r.text.contains("24 hours"));
    }

    fn campaign(subject: &str) -> Campaign {
        Campaign {
            name: "c1".into(),
            subject: subject.into(),
            text_template: None,
            html_template: None,
            rate: None,
            send_window: None,
            reminder_after: std::time::Duration::from_secs(3600),
            max_reminders: 2,
            reminder_subject: format!("Reminder: {subject}"),
            reminder_text_template: None,
            reminder_html_template: None,
            error_threshold: None,
            bounce_threshold: None,
            reconnect_on_revoke: false,
            identify_first: false,
        }
    }

    #[test]
    fn hostile_fields_are_escaped_and_subject_is_one_line() {
        let t = Templates::load(&[campaign("Hi {{ name }}")], &org(), DAY).unwrap();
        let vars = BTreeMap::new();
        let r = t
            .render(
                "c1",
                MailContext {
                    name: Some("<script>alert(1)</script>\r\nBcc: evil@example.com"),
                    email: "a@example.com",
                    external_ref: Some("\"><img src=x>"),
                    mydexid: None,
                    campaign: "c1",
                    kind: "connect",
                    version: 1,
                    reminder: 0,
                    max_reminders: 2,
                    link: "https://x.example/ftc/begin/1",
                    qr_src: "cid:qr",
                    logo_src: None,
                    unsubscribe_url: "https://x.example/unsubscribe/u1",
                    subject: String::new(),
                    vars: &vars,
                },
            )
            .unwrap();
        assert!(!r.html.contains("<script>"));
        assert!(r.html.contains("&lt;script&gt;"));
        assert!(!r.html.contains("\"><img src=x>"));
        assert!(!r.subject.contains('\n') && !r.subject.contains('\r'));
        assert!(r.text.contains("https://x.example/ftc/begin/1"));
        assert!(r.text.contains("https://x.example/unsubscribe/u1"));
        assert!(r.html.contains("https://x.example/unsubscribe/u1"));
    }

    #[test]
    fn a_template_without_the_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.txt");
        std::fs::write(&p, "Hello {{ name }}").unwrap();
        let mut c = campaign("Hi");
        c.text_template = Some(p);
        let e = Templates::load(&[c], &org(), DAY).err().unwrap();
        assert_eq!(e.key, "text_template");
        let p2 = dir.path().join("bad.html");
        std::fs::write(&p2, "{% if %}").unwrap();
        let mut c = campaign("Hi");
        c.html_template = Some(p2);
        assert_eq!(
            Templates::load(&[c], &org(), DAY).err().unwrap().key,
            "html_template"
        );
    }
}
