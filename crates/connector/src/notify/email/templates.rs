//! Per-campaign subject, text and HTML templates (minijinja). HTML output is
//! auto-escaped, so an invitee's name cannot inject markup; the subject is
//! forced to one line, so it cannot inject headers. Templates are checked at
//! start by rendering a sample, and must carry the link.

use std::collections::BTreeMap;

use minijinja::{AutoEscape, Environment};
use serde::Serialize;

use crate::config::Campaign;

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

pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    pub fn load(campaigns: &[Campaign]) -> Result<Self, TemplateError> {
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
        let t = Self { env };
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

    pub fn render(
        &self,
        campaign: &str,
        mut ctx: MailContext<'_>,
    ) -> Result<Rendered, RenderError> {
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
            .render(context(&ctx))
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
        let full = context(&ctx);
        let text = get("text.txt")?.render(&full).map_err(RenderError::Text)?;
        let html = get("body.html")?.render(&full).map_err(RenderError::Html)?;
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }
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

/// The template context: the fixed names, plus each extra column at top
/// level where it does not shadow one of them (all stay under `vars`).
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
        let t = Templates::load(&[campaign("Hi {{ name }}")]).unwrap();
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
        let e = Templates::load(&[c]).err().unwrap();
        assert_eq!(e.key, "text_template");
        let p2 = dir.path().join("bad.html");
        std::fs::write(&p2, "{% if %}").unwrap();
        let mut c = campaign("Hi");
        c.html_template = Some(p2);
        assert_eq!(Templates::load(&[c]).err().unwrap().key, "html_template");
    }
}
