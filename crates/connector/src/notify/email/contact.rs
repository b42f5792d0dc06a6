//! `organisation.contact` as HTML: the operator's free text shown as given
//! (escaped), each email address in it a `mailto:` link and each http(s)
//! URL a link, so a member can write or click straight from the mail or
//! the unsubscribe page. Used by the templates and by the pages we serve.

/// Escape text for HTML content and attribute values.
pub fn escape_html(s: &str) -> String {
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

/// What a word of the text is.
enum Word<'a> {
    Address(&'a str),
    Url(&'a str),
    Text,
}

/// Characters a sentence puts around an address or URL.
fn is_wrapping(c: char) -> bool {
    matches!(
        c,
        '.' | ',' | ';' | ':' | '!' | '?' | '(' | ')' | '<' | '>' | '[' | ']' | '"' | '\''
    )
}

fn word(core: &str) -> Word<'_> {
    if (core.starts_with("https://") || core.starts_with("http://"))
        && reqwest::Url::parse(core).is_ok_and(|u| u.host_str().is_some())
    {
        return Word::Url(core);
    }
    let core = core.strip_prefix("mailto:").unwrap_or(core);
    if core.contains('@') && crate::domain::Email::parse(core).is_ok() {
        return Word::Address(core);
    }
    Word::Text
}

/// The first email address in `text`, if any (for templates that want
/// only the address).
pub fn contact_address(text: &str) -> Option<String> {
    text.split_whitespace()
        .find_map(|w| match word(w.trim_matches(is_wrapping)) {
            Word::Address(a) => Some(a.to_string()),
            _ => None,
        })
}

/// `text` as HTML, escaped, its addresses and URLs linked.
pub fn contact_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(rest.len());
        out.push_str(&escape_html(&rest[..start]));
        rest = &rest[start..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let whole = &rest[..end];
        rest = &rest[end..];
        let core = whole.trim_matches(is_wrapping);
        let Some(at) = whole.find(core).filter(|_| !core.is_empty()) else {
            out.push_str(&escape_html(whole));
            continue;
        };
        let (before, after) = (&whole[..at], &whole[at + core.len()..]);
        let linked = match word(core) {
            Word::Address(a) => format!(
                "<a href=\"mailto:{}\">{}</a>",
                escape_html(a),
                escape_html(core)
            ),
            Word::Url(u) => format!("<a href=\"{}\">{}</a>", escape_html(u), escape_html(u)),
            Word::Text => escape_html(core),
        };
        out.push_str(&escape_html(before));
        out.push_str(&linked);
        out.push_str(&escape_html(after));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_urls_are_linked_the_rest_escaped() {
        assert_eq!(
            contact_html("help@example.com"),
            "<a href=\"mailto:help@example.com\">help@example.com</a>"
        );
        assert_eq!(
            contact_html("Call 0800 123 456, or write to help@example.com."),
            "Call 0800 123 456, or write to <a href=\"mailto:help@example.com\">help@example.com</a>."
        );
        assert_eq!(
            contact_html("Our team (https://example.com/help) <b>"),
            "Our team (<a href=\"https://example.com/help\">https://example.com/help</a>) &lt;b&gt;"
        );
        assert_eq!(contact_html("a@b"), "a@b");
        assert_eq!(
            contact_address("Phone 0800 or mailto:team@example.org"),
            Some("team@example.org".into())
        );
        assert_eq!(contact_address("Phone 0800"), None);
        assert!(!contact_html("\"><script>x@y.z").contains("<script>"));
    }
}
