//! A person as the suppression list knows them: a keyed hash (HMAC-SHA256)
//! of their normalised address, so the list keeps no address, and a stolen
//! copy of it cannot be tested against guesses without the store's key.

use std::fmt;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

use super::Email;

/// The keyed hash of one normalised address, in hex (64 characters).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersonHash(String);

impl PersonHash {
    pub fn of(key: &SecretBox<[u8; 32]>, email: &Email) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"person\0");
        mac.update(email.normalized().as_bytes());
        Self(hex::encode(mac.finalize().into_bytes()))
    }

    /// A hash read back (64 lowercase hex characters), or `None`.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.len() == 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 characters: enough to tell people apart in a log.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Debug for PersonHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonHash({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SecretBox<[u8; 32]> {
        SecretBox::new(Box::new([b; 32]))
    }

    #[test]
    fn same_person_same_hash_and_no_address() {
        let a = Email::parse("Ann@Example.com").unwrap();
        let b = Email::parse("ann@example.com").unwrap();
        let h = PersonHash::of(&key(1), &a);
        assert_eq!(h, PersonHash::of(&key(1), &b));
        assert_ne!(h, PersonHash::of(&key(2), &a));
        assert!(!h.as_str().contains("ann"));
        assert_eq!(PersonHash::parse(h.as_str()), Some(h.clone()));
        assert_eq!(PersonHash::parse("zz"), None);
    }
}
