//! What an admin answer may disclose to whom. A one-time link opens a
//! person's journey and a linking token ties a callback to them, so only a
//! caller who presented the admin token sees them (`bearer.rs` tells who
//! that is). Token-less reads get answers built without them: the views
//! that could show them take a `Bearer` proof (`Caller::bearer`). As a
//! second line, every token-less answer passes through `scrub`, which cuts
//! anything shaped like one of our linking tokens wherever it sits (a
//! reason, a history note, a callback body).

use axum::body::Body;
use axum::http::StatusCode;
use axum::http::header::CONTENT_LENGTH;
use axum::response::{IntoResponse, Response};

use crate::server::callback_redact::REDACTED;

/// The shapes of our linking tokens: a prefix, then hex digits (48 today,
/// 32 for tokens issued before); a run of 16 or more is cut.
const PREFIXES: [&[u8]; 2] = [b"lt2_", b"lt_"];
const MIN_HEX: usize = 16;

/// `response` with every linking token in its body cut.
pub async fn scrub(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(serde_json::json!({ "error": e.to_string() })),
            )
                .into_response();
        }
    };
    match scrub_bytes(&bytes) {
        None => Response::from_parts(parts, Body::from(bytes)),
        Some(clean) => {
            parts.headers.remove(CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(clean))
        }
    }
}

/// `text` with each linking-token-shaped run replaced by `<redacted>`, or
/// none when it holds none.
pub fn scrub_bytes(text: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < text.len() {
        let Some(end) = token_at(text, i) else {
            i += 1;
            continue;
        };
        let o = out.get_or_insert_with(|| Vec::with_capacity(text.len()));
        o.extend_from_slice(&text[copied..i]);
        o.extend_from_slice(REDACTED.as_bytes());
        copied = end;
        i = end;
    }
    let mut o = out?;
    o.extend_from_slice(&text[copied..]);
    Some(o)
}

/// Where a linking token starting at `at` ends, if one does.
fn token_at(text: &[u8], at: usize) -> Option<usize> {
    if at > 0 && text[at - 1].is_ascii_alphanumeric() {
        return None;
    }
    let rest = &text[at..];
    let prefix = PREFIXES.iter().find(|p| rest.starts_with(p))?;
    let hex = rest[prefix.len()..]
        .iter()
        .take_while(|b| b.is_ascii_hexdigit())
        .count();
    (hex >= MIN_HEX).then_some(at + prefix.len() + hex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::LinkingToken;

    #[test]
    fn linking_tokens_are_cut_wherever_they_sit() {
        let t = LinkingToken::for_invitation(42);
        let text = format!(
            r#"{{"reason":"Mydex: linking_token {t} unknown","note":"lt_0123456789abcdef0123456789abcdef.","x":"{t}"}}"#
        );
        let clean = String::from_utf8(scrub_bytes(text.as_bytes()).unwrap()).unwrap();
        assert!(!clean.contains(t.as_str()), "{clean}");
        assert!(!clean.contains("0123456789abcdef"), "{clean}");
        assert_eq!(clean.matches(REDACTED).count(), 3, "{clean}");
        serde_json::from_str::<serde_json::Value>(&clean).expect("still JSON");
    }

    #[test]
    fn other_text_is_left_alone() {
        for text in [
            "",
            "plain",
            "default_0123456789abcdef0123",
            "lt_short",
            "lt2_0123",
            "salt_0123456789abcdef0123",
        ] {
            assert_eq!(scrub_bytes(text.as_bytes()), None, "{text}");
        }
    }
}
