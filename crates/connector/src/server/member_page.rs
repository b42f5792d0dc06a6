//! The frame of the pages we serve to members (the unsubscribe pages):
//! a viewport for phones, the style of the member pages they met at Mydex
//! (`member_page.css`), a banner naming the organisation, one `<h1>`, a
//! `<main>`, and a footer saying whom to contact. No JavaScript; everything
//! interpolated is escaped (the contact is linked by `contact_html`).

use crate::notify::email::{Templates, escape_html};

const STYLE: &str = include_str!("member_page.css");

/// A whole page: `title` is the `<h1>` and, with the organisation's name,
/// the `<title>`; `body` is HTML already.
pub fn page(templates: &Templates, title: &str, body: &str) -> String {
    let org = templates.organisation();
    let name = escape_html(&org.name);
    let mut footer = String::new();
    if let Some(contact) = templates.contact_html() {
        footer.push_str(&format!(
            "<p class=\"small\">Questions? Contact {name}: {contact}</p>\n"
        ));
    }
    if let Some(privacy) = &org.privacy_url {
        footer.push_str(&format!(
            "<p class=\"small\"><a href=\"{}\">How {name} uses your data</a></p>\n",
            escape_html(privacy.as_str())
        ));
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{t} - {name}</title>\n<style>\n{STYLE}</style></head>\n<body>\n\
<header class=\"banner\"><div class=\"inner\"><span class=\"brand\">{name}</span></div></header>\n\
<main id=\"main\">\n<h1>{t}</h1>\n{body}\n{footer}</main>\n</body></html>\n",
        t = escape_html(title)
    )
}

/// A page without an organisation to name: what an edge serves (it holds no
/// templates), with the same viewport and style.
pub fn plain(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{t}</title>\n<style>\n{STYLE}</style></head>\n<body>\n\
<main id=\"main\">\n<h1>{t}</h1>\n{body}\n</main>\n</body></html>\n",
        t = escape_html(title)
    )
}
