//! Our own opaque id for one invitation, sent to Mydex as `linking_token` and
//! echoed back in the callback: 128 random bits from the OS, hex-encoded,
//! after the invitation's id. The id lets a callback find its invitation
//! without an index entry per invitation (a million of them cost the store tens
//! of MiB of memory); the random part, compared in constant time with the
//! one stored in the invitation, is what makes the token unguessable.

use std::fmt;

use rand::RngCore;
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LinkingToken(String);

const PREFIX: &str = "lt2_";

impl LinkingToken {
    /// A fresh token for invitation `id`.
    pub fn for_invitation(id: u64) -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("{PREFIX}{id:016x}{}", hex::encode(bytes)))
    }

    /// The invitation a token names, if it has our current shape (tokens
    /// issued before it, `lt_` and 32 hex digits, are found by index).
    pub fn invitation_id(&self) -> Option<u64> {
        let rest = self.0.strip_prefix(PREFIX)?;
        if rest.len() != 48 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(&rest[..16], 16).ok()
    }

    /// Equal to `other`, in time that does not depend on where they differ.
    pub fn matches(&self, other: &LinkingToken) -> bool {
        use subtle::ConstantTimeEq;
        self.0.len() == other.0.len() && bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }

    /// A token as it comes back in a callback: only checked for shape, so a
    /// hostile value cannot become a huge or odd store key.
    pub fn from_callback(raw: &str) -> Option<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= 128
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then(|| Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LinkingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LinkingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkingToken({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_well_formed() {
        let a = LinkingToken::for_invitation(7);
        let b = LinkingToken::for_invitation(7);
        assert_ne!(a, b);
        assert!(!a.matches(&b));
        assert!(a.matches(&a.clone()));
        assert_eq!(a.as_str().len(), 52);
        assert_eq!(a.invitation_id(), Some(7));
        let big = LinkingToken::for_invitation(u64::MAX);
        assert_eq!(big.invitation_id(), Some(u64::MAX));
        // Older tokens, and anything else, name no invitation by shape.
        let old = LinkingToken::from_callback("lt_0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(old.invitation_id(), None);
        let odd = LinkingToken::from_callback(&format!("lt2_{}", "z".repeat(48))).unwrap();
        assert_eq!(odd.invitation_id(), None);
        assert_eq!(LinkingToken::from_callback(a.as_str()), Some(a));
        assert!(LinkingToken::from_callback("").is_none());
        assert!(LinkingToken::from_callback("a/../b").is_none());
        assert!(LinkingToken::from_callback(&"a".repeat(129)).is_none());
    }
}
