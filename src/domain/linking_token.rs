//! Our own opaque id for one invitation, sent to Mydex as `linking_token` and
//! echoed back in the callback: 128 random bits from the OS, hex-encoded.

use std::fmt;

use rand::RngCore;
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LinkingToken(String);

impl LinkingToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        Self(format!("lt_{}", hex::encode(bytes)))
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
        let a = LinkingToken::generate();
        let b = LinkingToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 35);
        assert_eq!(LinkingToken::from_callback(a.as_str()), Some(a));
        assert!(LinkingToken::from_callback("").is_none());
        assert!(LinkingToken::from_callback("a/../b").is_none());
        assert!(LinkingToken::from_callback(&"a".repeat(129)).is_none());
    }
}
