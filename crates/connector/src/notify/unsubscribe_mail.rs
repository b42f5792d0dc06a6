//! An unsubscribe request by mail (RFC 2369 `mailto:`): with
//! `smtp.unsubscribe_mailto` set, every mail's `List-Unsubscribe` also names
//! `<mailto:{address}?subject=unsubscribe%20{token}>`. A mail client sends
//! that mail; the MTA pipes it to `mydex-connector bounce`, which reads it
//! here. The person is named by the token in the Subject and only by it:
//! the From of a mail is whatever its sender wrote, so it names nobody.
//! The token is checked by the daemon (it holds the key); here only its
//! shape, so a mail without one is refused before anything is asked.

use mail_parser::MessageParser;

use crate::domain::MAIL_TOKEN_LEN;

/// Why a mail is not an unsubscribe request of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsubscribeMailError {
    #[error("not a mail message")]
    NotMail,
    #[error("not addressed to the unsubscribe address (smtp.unsubscribe_mailto)")]
    NotForUs,
    #[error("its Subject is not \"unsubscribe\" followed by an unsubscribe token of ours")]
    NoToken,
}

/// The unsubscribe token (lowercase) of an unsubscribe mail sent to
/// `mailto`: the Subject is `unsubscribe {token}` (a reply's `Re:` and
/// surrounding spaces allowed), the token `u` and 48 hex digits.
pub fn unsubscribe_request(raw: &[u8], mailto: &str) -> Result<String, UnsubscribeMailError> {
    let msg = MessageParser::default()
        .parse_headers(raw)
        .ok_or(UnsubscribeMailError::NotMail)?;
    let addressed = ["Delivered-To", "X-Original-To", "Envelope-To", "To"]
        .iter()
        .filter_map(|h| msg.header_raw(*h))
        .any(|v| {
            v.split([',', ' ', '\t', '\r', '\n'])
                .map(|w| w.trim().trim_start_matches('<').trim_end_matches('>'))
                .any(|w| w.eq_ignore_ascii_case(mailto))
        });
    if !addressed {
        return Err(UnsubscribeMailError::NotForUs);
    }
    let subject = msg.subject().ok_or(UnsubscribeMailError::NoToken)?;
    token_of(subject).ok_or(UnsubscribeMailError::NoToken)
}

/// `[Re: ]unsubscribe {token}` → the token.
fn token_of(subject: &str) -> Option<String> {
    let mut words = subject.split_whitespace().peekable();
    while words
        .peek()
        .is_some_and(|w| w.eq_ignore_ascii_case("re:") || w.eq_ignore_ascii_case("fwd:"))
    {
        words.next();
    }
    if !words.next()?.eq_ignore_ascii_case("unsubscribe") {
        return None;
    }
    let token = words.next()?;
    if words.next().is_some()
        || token.len() != MAIL_TOKEN_LEN
        || !token.starts_with(['u', 'U'])
        || !token.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    Some(token.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOKEN: &str = "u0123456789abcdef0123456789abcdef0123456789abcdef";

    fn mail(to: &str, subject: &str) -> Vec<u8> {
        format!("From: Ann <ann@example.com>\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nplease\r\n")
            .into_bytes()
    }

    #[test]
    fn the_subject_carries_the_token() {
        let to = "Unsubscribe <unsubscribe@example.com>";
        assert_eq!(
            unsubscribe_request(
                &mail(to, &format!("unsubscribe {TOKEN}")),
                "unsubscribe@example.com"
            ),
            Ok(TOKEN.to_string())
        );
        assert_eq!(
            unsubscribe_request(
                &mail(
                    "UNSUBSCRIBE@example.com",
                    &format!("Re: Unsubscribe {}", TOKEN.to_uppercase())
                ),
                "unsubscribe@example.com"
            ),
            Ok(TOKEN.to_string())
        );
    }

    #[test]
    fn no_token_another_address_or_a_bounce_token_are_refused() {
        let to = "unsubscribe@example.com";
        for subject in [
            "unsubscribe".to_string(),
            "please unsubscribe me".into(),
            format!("unsubscribe {}", &TOKEN[..48]),
            format!("unsubscribe {TOKEN} now"),
            format!("unsubscribe b{}", &TOKEN[1..]),
            format!("unsubscribe {}!", &TOKEN[..48]),
        ] {
            assert_eq!(
                unsubscribe_request(&mail(to, &subject), to),
                Err(UnsubscribeMailError::NoToken),
                "{subject}"
            );
        }
        assert_eq!(
            unsubscribe_request(
                &mail("other@example.com", &format!("unsubscribe {TOKEN}")),
                to
            ),
            Err(UnsubscribeMailError::NotForUs)
        );
    }

    proptest! {
        #[test]
        fn any_bytes_are_refused_or_a_token(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(t) = unsubscribe_request(&raw, "unsubscribe@example.com") {
                prop_assert_eq!(t.len(), MAIL_TOKEN_LEN);
            }
        }
    }
}
