//! The Message-ID of every mail we send, `<{m token}.{nonce}@{domain}>`: the
//! mail's `m` token (its invitation and an HMAC tag, `mail_token.rs`) and a
//! random nonce that makes each mail's id unique (a reminder is another
//! mail). A bounce or complaint quoting the original headers thereby names
//! the mail, and only a Message-ID we made does: the token is checked like
//! every mail token, so nothing needs to be stored per mail.

use super::mail_token::MAIL_TOKEN_LEN;

/// The Message-ID (with its angle brackets) for a mail carrying `token`.
pub fn message_id(token: &str, nonce: u64, domain: &str) -> String {
    format!("<{token}.{nonce:016x}@{domain}>")
}

/// The token inside a Message-ID of ours (with or without its angle
/// brackets and surrounding space), unchecked; `None` for any other shape.
pub fn message_id_token(raw: &str) -> Option<&str> {
    let id = raw.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, _domain) = id.split_once('@')?;
    let (token, nonce) = local.split_once('.')?;
    (token.len() == MAIL_TOKEN_LEN
        && token.bytes().all(|b| b.is_ascii_alphanumeric())
        && nonce.len() == 16
        && nonce.bytes().all(|b| b.is_ascii_hexdigit()))
    .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "m0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn round_trip() {
        let id = message_id(TOKEN, 0x6b1f, "example.com");
        assert_eq!(id, format!("<{TOKEN}.0000000000006b1f@example.com>"));
        assert_eq!(message_id_token(&id), Some(TOKEN));
        assert_eq!(
            message_id_token(&format!(" {} ", &id[1..id.len() - 1])),
            Some(TOKEN)
        );
    }

    #[test]
    fn other_shapes_are_none() {
        for raw in [
            "",
            "<inv-1-0000000000006b1f@example.com>",
            &format!("<{TOKEN}@example.com>"),
            &format!("<{TOKEN}.0000000000006b1f>"),
            &format!("<{}.0000000000006b1f@example.com>", &TOKEN[..48]),
            &format!("<{TOKEN}.00000000006b1f@example.com>"),
            &format!("<{TOKEN}.000000000000zz1f@example.com>"),
        ] {
            assert_eq!(message_id_token(raw), None, "{raw}");
        }
    }
}
