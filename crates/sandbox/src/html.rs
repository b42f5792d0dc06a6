//! The markup every member page shares: escaping, the page frame (viewport,
//! style sheet, banner, one `<h1>`, a `<main>`), the error summary, and form
//! fields whose errors are tied to them (`aria-invalid`, `aria-describedby`).
//! No JavaScript anywhere: focus goes to the first invalid field by
//! `autofocus`.

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = include_str!("style.css");

/// A whole page: `title` is both the `<title>` and the only `<h1>`.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{t} - Mydex sandbox</title>\n<style>\n{STYLE}</style></head>\n<body>\n\
<header class=\"banner\"><div class=\"inner\"><span class=\"brand\">Mydex</span> \
<span class=\"tag\">Sandbox: a local stand-in, not the real Mydex</span></div></header>\n\
<main id=\"main\">\n<h1>{t}</h1>\n{body}\n</main>\n</body></html>\n",
        t = esc(title)
    )
}

/// One problem for the summary: its message and the id of the field it
/// belongs to (None: a problem of the whole form).
#[derive(Debug, Clone)]
pub struct Problem {
    pub message: String,
    pub target: Option<String>,
}

/// The error summary above a form (`role="alert"`): each problem links to
/// its field. Empty when there is none.
pub fn summary(problems: &[Problem]) -> String {
    if problems.is_empty() {
        return String::new();
    }
    let items: String = problems
        .iter()
        .map(|p| match &p.target {
            Some(id) => format!(
                "<li><a href=\"#{}\">{}</a></li>\n",
                esc(id),
                esc(&p.message)
            ),
            None => format!("<li>{}</li>\n", esc(&p.message)),
        })
        .collect();
    format!(
        "<div class=\"summary\" role=\"alert\" aria-labelledby=\"summary-title\">\n\
<h2 id=\"summary-title\">There is a problem</h2>\n<ul>\n{items}</ul>\n</div>\n"
    )
}

/// A text, email or password field with its label, hint and errors.
#[derive(Debug, Default)]
pub struct Input<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub label: &'a str,
    /// `text`, `email` or `password`.
    pub kind: &'a str,
    pub autocomplete: &'a str,
    pub value: &'a str,
    pub hint: Option<&'a str>,
    pub errors: Vec<String>,
    /// Invalid without a message of its own: described by this error id
    /// (a failed login marks the MydexID too, the message sits at the password).
    pub invalid_with: Option<String>,
    pub readonly: bool,
    pub autofocus: bool,
}

/// The id of a field's error message.
pub fn error_id(field_id: &str) -> String {
    format!("{field_id}-error")
}

impl Input<'_> {
    pub fn invalid(&self) -> bool {
        !self.errors.is_empty() || self.invalid_with.is_some()
    }

    pub fn render(&self) -> String {
        let id = esc(self.id);
        let mut described = Vec::new();
        let mut inner = format!("<label for=\"{id}\">{}</label>\n", esc(self.label));
        if let Some(hint) = self.hint {
            described.push(format!("{id}-hint"));
            inner.push_str(&format!(
                "<p class=\"hint\" id=\"{id}-hint\">{}</p>\n",
                esc(hint)
            ));
        }
        inner.push_str(&error_block(self.id, &self.errors, &mut described));
        if let Some(other) = &self.invalid_with {
            described.push(esc(other));
        }
        let mut attrs = format!(
            "id=\"{id}\" name=\"{}\" type=\"{}\" autocomplete=\"{}\"",
            esc(self.name),
            esc(self.kind),
            esc(self.autocomplete)
        );
        if self.kind != "password" {
            attrs.push_str(&format!(" value=\"{}\"", esc(self.value)));
        }
        if self.kind == "text" || self.kind == "email" {
            attrs.push_str(" autocapitalize=\"none\" spellcheck=\"false\"");
        }
        push_state(&mut attrs, self.invalid(), &described, self.autofocus);
        if self.readonly {
            attrs.push_str(" readonly");
        }
        let class = if self.invalid() {
            "field invalid"
        } else {
            "field"
        };
        format!("<div class=\"{class}\">\n{inner}<input {attrs}>\n</div>\n")
    }
}

/// The error messages of a field, each its own `<p class="error">`, inside
/// one element whose id the field's `aria-describedby` names.
fn error_block(field_id: &str, errors: &[String], described: &mut Vec<String>) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let eid = esc(&error_id(field_id));
    described.push(eid.clone());
    let lines: String = errors
        .iter()
        .map(|e| {
            format!(
                "<p class=\"error\"><span class=\"visually-hidden\">Error: </span>{}</p>\n",
                esc(e)
            )
        })
        .collect();
    format!("<div id=\"{eid}\">\n{lines}</div>\n")
}

fn push_state(attrs: &mut String, invalid: bool, described: &[String], autofocus: bool) {
    if invalid {
        attrs.push_str(" aria-invalid=\"true\"");
    }
    if !described.is_empty() {
        attrs.push_str(&format!(" aria-describedby=\"{}\"", described.join(" ")));
    }
    if autofocus {
        attrs.push_str(" autofocus");
    }
}

/// A checkbox with its label to the right, kept ticked after an error.
pub fn checkbox(
    id: &str,
    name: &str,
    label: &str,
    checked: bool,
    errors: &[String],
    autofocus: bool,
) -> String {
    let mut described = Vec::new();
    let block = error_block(id, errors, &mut described);
    let mut attrs = format!(
        "id=\"{}\" name=\"{}\" type=\"checkbox\" value=\"1\"",
        esc(id),
        esc(name)
    );
    if checked {
        attrs.push_str(" checked");
    }
    push_state(&mut attrs, !errors.is_empty(), &described, autofocus);
    let class = if errors.is_empty() {
        "field"
    } else {
        "field invalid"
    };
    format!(
        "<div class=\"{class}\">\n{block}<div class=\"check\"><input {attrs}>\
<label for=\"{}\">{}</label></div>\n</div>\n",
        esc(id),
        esc(label)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_field_points_at_its_message() {
        let html = Input {
            id: "register-email",
            name: "email",
            label: "Email",
            kind: "email",
            autocomplete: "email",
            value: "a\"<b>",
            errors: vec!["Email address is not valid".into()],
            autofocus: true,
            ..Default::default()
        }
        .render();
        assert!(html.contains("aria-invalid=\"true\""));
        assert!(html.contains("aria-describedby=\"register-email-error\""));
        assert!(html.contains("<div id=\"register-email-error\">"));
        assert!(html.contains("value=\"a&quot;&lt;b&gt;\""));
        assert!(html.contains(" autofocus"));
        assert!(html.contains("<label for=\"register-email\">Email</label>"));
    }

    #[test]
    fn a_valid_field_is_plain_and_passwords_are_never_echoed() {
        let html = Input {
            id: "p",
            name: "password",
            label: "Password",
            kind: "password",
            autocomplete: "new-password",
            value: "secret",
            hint: Some("At least 8"),
            ..Default::default()
        }
        .render();
        assert!(!html.contains("aria-invalid") && !html.contains("secret"));
        assert!(html.contains("aria-describedby=\"p-hint\""));
    }

    #[test]
    fn page_has_viewport_and_one_h1() {
        let html = page("T<", "<p>x</p>");
        assert!(html.contains("name=\"viewport\""));
        assert_eq!(html.matches("<h1>").count(), 1);
        assert!(html.contains("<h1>T&lt;</h1>"));
        assert!(!html.contains("<script"));
    }
}
