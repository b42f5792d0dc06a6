//! The token a mail carries to name its invitation (hence one person) in the
//! one-click unsubscribe URL (`u`), the VERP return path (`b`) and its
//! Message-ID (`m`, see `message_id.rs`): the
//! invitation id and a 128-bit HMAC tag, in lowercase hex so it survives MTAs
//! that case-fold local parts. Unguessable without the store's token key;
//! parsing takes any bytes and answers `None` for anything not ours.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Characters of a token: the kind and 24 bytes in hex.
pub const MAIL_TOKEN_LEN: usize = 49;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// In `List-Unsubscribe`: clicking it unsubscribes.
    Unsubscribe,
    /// In the envelope sender: a bounce sent back to it names the mail.
    Bounce,
    /// In the Message-ID: a report quoting the original headers names the mail.
    Message,
}

impl TokenKind {
    fn tag(self) -> u8 {
        match self {
            TokenKind::Unsubscribe => b'u',
            TokenKind::Bounce => b'b',
            TokenKind::Message => b'm',
        }
    }
}

/// A token checked against the key: the invitation it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailToken {
    pub kind: TokenKind,
    pub invitation: u64,
}

fn tag(key: &SecretBox<[u8; 32]>, kind: TokenKind, id: u64) -> [u8; 16] {
    // HMAC accepts a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(&[kind.tag()]);
    mac.update(&id.to_be_bytes());
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

impl MailToken {
    /// The token of invitation `id` for `kind`, signed with `key`.
    pub fn sign(key: &SecretBox<[u8; 32]>, kind: TokenKind, id: u64) -> String {
        let mut raw = id.to_be_bytes().to_vec();
        raw.extend_from_slice(&tag(key, kind, id));
        format!("{}{}", kind.tag() as char, hex::encode(raw))
    }

    /// Any bytes in; `Some` only for a token this key made.
    pub fn parse(key: &SecretBox<[u8; 32]>, raw: &[u8]) -> Option<Self> {
        if raw.len() != MAIL_TOKEN_LEN {
            return None;
        }
        let kind = match raw[0] {
            b'u' | b'U' => TokenKind::Unsubscribe,
            b'b' | b'B' => TokenKind::Bounce,
            b'm' | b'M' => TokenKind::Message,
            _ => return None,
        };
        let bytes = hex::decode(&raw[1..]).ok()?;
        let id = u64::from_be_bytes(bytes[..8].try_into().ok()?);
        let expected = tag(key, kind, id);
        bool::from(expected.ct_eq(&bytes[8..])).then_some(Self {
            kind,
            invitation: id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> SecretBox<[u8; 32]> {
        SecretBox::new(Box::new([b; 32]))
    }

    #[test]
    fn round_trip_and_length() {
        for kind in [
            TokenKind::Unsubscribe,
            TokenKind::Bounce,
            TokenKind::Message,
        ] {
            let t = MailToken::sign(&key(1), kind, 42);
            assert_eq!(t.len(), MAIL_TOKEN_LEN);
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            );
            let parsed = MailToken::parse(&key(1), t.as_bytes()).expect("parses");
            assert_eq!(
                parsed,
                MailToken {
                    kind,
                    invitation: 42
                }
            );
        }
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let t = MailToken::sign(&key(1), TokenKind::Bounce, 7).to_uppercase();
        assert_eq!(
            MailToken::parse(&key(1), t.as_bytes()).map(|t| t.invitation),
            Some(7)
        );
    }

    #[test]
    fn every_altered_byte_is_refused() {
        let t = MailToken::sign(&key(1), TokenKind::Unsubscribe, 9);
        for i in 0..t.len() {
            let mut b = t.clone().into_bytes();
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
            assert_eq!(MailToken::parse(&key(1), &b), None, "byte {i}");
        }
    }

    #[test]
    fn wrong_kind_or_key_is_refused() {
        let t = MailToken::sign(&key(1), TokenKind::Unsubscribe, 9);
        let swapped = format!("b{}", &t[1..]);
        assert_eq!(MailToken::parse(&key(1), swapped.as_bytes()), None);
        assert_eq!(MailToken::parse(&key(2), t.as_bytes()), None);
        assert_eq!(MailToken::parse(&key(1), &t.as_bytes()[..48]), None);
    }

    proptest! {
        #[test]
        fn any_bytes_are_none(raw in proptest::collection::vec(any::<u8>(), 0..80)) {
            prop_assert_eq!(MailToken::parse(&key(1), &raw), None);
        }
    }
}
