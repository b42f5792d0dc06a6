//! Showing a stored callback body to an operator without the member key it
//! may hold, whatever its shape: JSON (any field whose name holds `key`, at
//! any depth), a form (PHP brackets included), or text and bytes of no known
//! shape (anything after a `key` and `=` or `:`). A key must not reach a
//! terminal, a log or a support ticket (docs/mydex-contract.md §5). For a
//! caller without the admin token, `Hide::KeysAndTokens` hides the same way
//! every field named like a token (the linking token) too.

use serde_json::{Map, Value};

pub const REDACTED: &str = "<redacted>";

/// What is hidden: member keys always; tokens too from a caller without
/// the admin token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hide {
    Keys,
    KeysAndTokens,
}

impl Hide {
    /// The words whose fields are hidden.
    fn words(self) -> &'static [&'static str] {
        match self {
            Hide::Keys => &["key"],
            Hide::KeysAndTokens => &["key", "token"],
        }
    }

    /// Whether a field name may hold what is hidden.
    fn hides(self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.words().iter().any(|w| name.contains(w))
    }
}

/// The body as an operator may see it: `{"as": "json"|"form"|"text", ...}`
/// with every key replaced by `<redacted>`.
pub fn redact_body(body: &[u8]) -> Value {
    redact_body_hiding(body, Hide::Keys)
}

/// `redact_body`, hiding what `hide` says.
pub fn redact_body_hiding(body: &[u8], hide: Hide) -> Value {
    let (text, decoded) = decode(body);
    let mut shown = redact_text_shape(&text, hide);
    if let Some(obj) = shown.as_object_mut()
        && let Some(d) = decoded
    {
        obj.insert("decoded_from".into(), d.into());
    }
    shown
}

/// Text of the body: UTF-8 (a BOM dropped), else UTF-16 (by BOM or by its
/// zero bytes), else Latin-1 (every byte a character); and which, when not
/// UTF-8.
fn decode(body: &[u8]) -> (String, Option<&'static str>) {
    let body = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    if let Some(decoded) = utf16(body) {
        return decoded;
    }
    if let Ok(s) = std::str::from_utf8(body) {
        return (s.to_string(), None);
    }
    (
        body.iter().map(|b| char::from(*b)).collect(),
        Some("latin-1"),
    )
}

/// UTF-16 text, told by its BOM or by zero bytes in every other place.
fn utf16(body: &[u8]) -> Option<(String, Option<&'static str>)> {
    if !body.len().is_multiple_of(2) || body.is_empty() {
        return None;
    }
    let (le, rest) = match body {
        [0xff, 0xfe, rest @ ..] => (Some(true), rest),
        [0xfe, 0xff, rest @ ..] => (Some(false), rest),
        _ => (None, body),
    };
    let zeros_odd = rest.iter().skip(1).step_by(2).filter(|b| **b == 0).count();
    let zeros_even = rest.iter().step_by(2).filter(|b| **b == 0).count();
    let half = rest.len() / 4;
    let le = le.or(if zeros_odd > half && zeros_even == 0 {
        Some(true)
    } else if zeros_even > half && zeros_odd == 0 {
        Some(false)
    } else {
        None
    })?;
    let units: Vec<u16> = rest
        .chunks_exact(2)
        .map(|c| {
            if le {
                u16::from_le_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], c[1]])
            }
        })
        .collect();
    let s = String::from_utf16(&units).ok()?;
    Some((s, Some(if le { "utf-16le" } else { "utf-16be" })))
}

fn redact_text_shape(text: &str, hide: Hide) -> Value {
    let trimmed = text.trim();
    if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
        return serde_json::json!({ "as": "json", "body": json_hiding(v, hide) });
    }
    if looks_like_form(trimmed) {
        let fields: Vec<Value> = form_urlencoded::parse(trimmed.as_bytes())
            .map(|(name, value)| {
                let shown = if hide.hides(&name) {
                    REDACTED.to_string()
                } else {
                    text_hiding(&value, hide)
                };
                Value::Array(vec![text_hiding(&name, hide).into(), shown.into()])
            })
            .collect();
        return serde_json::json!({ "as": "form", "fields": fields });
    }
    serde_json::json!({ "as": "text", "body": text_hiding(&percent_decode(text), hide) })
}

/// `name=value&...` with names of form characters only.
fn looks_like_form(text: &str) -> bool {
    !text.is_empty()
        && text.split('&').all(|pair| match pair.split_once('=') {
            Some((name, _)) => {
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.[]%+".contains(c))
            }
            None => false,
        })
        && !text.contains(char::is_whitespace)
}

fn percent_decode(text: &str) -> String {
    form_urlencoded::parse(format!("x={}", text.replace('&', "%26")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A JSON value with every keyish field's value replaced, at any depth;
/// strings are redacted as text too (a form or JSON inside a string).
pub fn redact_json(v: Value) -> Value {
    json_hiding(v, Hide::Keys)
}

fn json_hiding(v: Value, hide: Hide) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if hide.hides(&k) {
                        Value::String(REDACTED.into())
                    } else {
                        json_hiding(v, hide)
                    };
                    (k, v)
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| json_hiding(v, hide)).collect())
        }
        Value::String(s) => Value::String(text_hiding(&s, hide)),
        other => other,
    }
}

/// Text with the value after every `key` followed by `=` or `:` (quotes,
/// brackets and spaces between allowed) replaced by `<redacted>`.
pub fn redact_text(text: &str) -> String {
    text_hiding(text, Hide::Keys)
}

/// `redact_text` for each word `hide` names.
fn text_hiding(text: &str, hide: Hide) -> String {
    let mut text = text.to_string();
    for word in hide.words() {
        text = hide_after(&text, word);
    }
    text
}

/// Text with the value after every `word` followed by `=` or `:`
/// replaced by `<redacted>`.
fn hide_after(text: &str, word: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut from = 0;
    while let Some(found) = lower[from..].find(word) {
        let mut i = from + found + word.len();
        while i < bytes.len() && matches!(bytes[i], b'"' | b'\'' | b']' | b' ' | b'\t' | b'\\') {
            i += 1;
        }
        if i < bytes.len() && matches!(bytes[i], b'=' | b':') {
            i += 1;
            while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'"' | b'\'' | b'\\') {
                i += 1;
            }
            let start = i;
            while i < bytes.len()
                && !matches!(
                    bytes[i],
                    b'&' | b'"' | b'\'' | b',' | b'}' | b';' | b' ' | b'\t' | b'\r' | b'\n' | b'\\'
                )
            {
                i += 1;
            }
            if i > start {
                // `start` and `i` sit next to ASCII bytes: char boundaries.
                out.push_str(&text[copied..start]);
                out.push_str(REDACTED);
                copied = i;
            }
        }
        from = i.max(from + found + word.len());
        // Stay on a char boundary.
        while from < text.len() && !text.is_char_boundary(from) {
            from += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "CJqVsEcReTkEy";

    fn no_key(v: &Value) {
        let s = v.to_string();
        assert!(!s.contains(K), "{s}");
        assert!(s.contains(REDACTED), "{s}");
    }

    #[test]
    fn json_at_any_depth_and_inside_strings() {
        no_key(&redact_body(
            format!(r#"{{"uid":1,"key":"{K}","a":{{"b":[{{"member_key":"{K}"}}]}}}}"#).as_bytes(),
        ));
        no_key(&redact_body(
            format!(r#"{{"note":"key={K}&x=1","key":{{"v":"{K}"}}}}"#).as_bytes(),
        ));
        no_key(&redact_body(
            format!("\u{feff}{{\"key\":\"{K}\"}}").as_bytes(),
        ));
    }

    #[test]
    fn forms_text_and_other_encodings() {
        no_key(&redact_body(
            format!("connection_id=123-3736&uid=1&key={K}&fields[a][0][][access][r][a]=1")
                .as_bytes(),
        ));
        no_key(&redact_body(format!("data[key]={K}").as_bytes()));
        // Truncated JSON, text, percent-encoded.
        no_key(&redact_body(
            format!(r#"{{"uid": 1, "key" : "{K}"#).as_bytes(),
        ));
        no_key(&redact_body(format!("junk key%3D{K} more").as_bytes()));
        // UTF-16 JSON, and Latin-1 bytes.
        let utf16: Vec<u8> = format!(r#"{{"key":"{K}"}}"#)
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        no_key(&redact_body(&utf16));
        let mut latin = format!("name=Ren\u{e9}&key={K}").into_bytes();
        latin.retain(|b| *b != 0xc3);
        latin.push(0xff);
        no_key(&redact_body(&latin));
        // Nothing keyish: shown as is.
        assert_eq!(redact_text("mydexid=abc"), "mydexid=abc");
        assert_eq!(redact_text("monkey business"), "monkey business");
        // Random bytes do not panic.
        for seed in 0..200u32 {
            let bytes: Vec<u8> = (0..64u32)
                .map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i * 97) >> 3) as u8)
                .collect();
            let _ = redact_body(&bytes);
        }
    }

    #[test]
    fn tokens_are_hidden_from_a_caller_without_the_admin_token() {
        let t = "lt2_000000000000002a0123456789abcdef0123456789abcdef";
        for body in [
            format!(r#"{{"type":"identify","mydexid":"m1","linking_token":"{t}"}}"#),
            format!("uid=1&key={K}&linking_token={t}"),
            format!("garbled linking_token: {t} key={K}"),
        ] {
            let shown = redact_body_hiding(body.as_bytes(), Hide::KeysAndTokens).to_string();
            assert!(!shown.contains(t) && !shown.contains(K), "{shown}");
            let shown = redact_body(body.as_bytes()).to_string();
            assert!(shown.contains(t) && !shown.contains(K), "{shown}");
        }
    }

    proptest::proptest! {
        /// A key placed anywhere in any JSON, form or text around it is
        /// never shown, and nothing panics.
        #[test]
        fn a_key_is_never_shown(
            prefix in "[ -~]{0,40}",
            name in "(key|member_key|KEY|data\\[key\\])",
            sep in "(=|:|\" : |\":\")",
            key in "[A-Za-z0-9]{16,40}",
            suffix in "[ -~]{0,40}",
            nested in proptest::collection::vec("[a-z_]{1,8}", 0..4),
        ) {
            // Text and form shapes.
            let text = format!("{prefix}{name}{sep}{key}&{suffix}");
            let shown = redact_body(text.as_bytes()).to_string();
            proptest::prop_assert!(!shown.contains(&key), "{text:?} -> {shown}");
            // JSON at some depth.
            let mut v = serde_json::json!({ "key": key.clone() });
            for n in &nested {
                v = serde_json::json!({ n.clone(): v, "note": prefix.clone() });
            }
            let shown = redact_body(v.to_string().as_bytes()).to_string();
            proptest::prop_assert!(!shown.contains(&key), "{v} -> {shown}");
        }

        #[test]
        fn any_bytes_get_an_answer(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = redact_body(&body);
        }
    }
}
