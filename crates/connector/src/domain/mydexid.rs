//! A MydexID, by the Registration rules: trimmed, alphanumeric, 3 to 60
//! characters, not made only of digits. Those rules apply to what we send and
//! to invitee files; a MydexID that Mydex sends us (it may predate the rules,
//! docs/mydex-contract.md §5, §9) is taken as it is, by `from_mydex`.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MydexId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MydexIdError {
    #[error("MydexID is empty")]
    Empty,
    #[error("MydexID must be alphanumeric")]
    NotAlphanumeric,
    #[error("MydexID must not be made only of numbers")]
    OnlyDigits,
    #[error("MydexID must be 3 to 60 characters long")]
    Length,
    #[error("MydexID from Mydex is longer than {MAX_FROM_MYDEX} bytes or holds control characters")]
    Unreadable,
}

/// The longest MydexID accepted from Mydex: far above the Registration
/// rules' 60, only there to bound what we store.
pub const MAX_FROM_MYDEX: usize = 255;

impl MydexId {
    pub fn parse(raw: &str) -> Result<Self, MydexIdError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(MydexIdError::Empty);
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(MydexIdError::NotAlphanumeric);
        }
        if s.chars().all(|c| c.is_ascii_digit()) {
            return Err(MydexIdError::OnlyDigits);
        }
        if !(3..=60).contains(&s.len()) {
            return Err(MydexIdError::Length);
        }
        Ok(Self(s.to_string()))
    }

    /// A MydexID as Mydex sends it: any non-empty trimmed string without
    /// control characters, up to `MAX_FROM_MYDEX` bytes. Never refused for
    /// the Registration rules, which older MydexIDs may not meet.
    pub fn from_mydex(raw: &str) -> Result<Self, MydexIdError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(MydexIdError::Empty);
        }
        if s.len() > MAX_FROM_MYDEX || s.chars().any(char::is_control) {
            return Err(MydexIdError::Unreadable);
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Reading a stored MydexID back is lenient: a member's MydexID came from
/// Mydex and may predate the Registration rules. Intake checks invitee
/// files with `parse` before anything is stored.
impl TryFrom<String> for MydexId {
    type Error = MydexIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::from_mydex(&s)
    }
}

impl From<MydexId> for String {
    fn from(m: MydexId) -> Self {
        m.0
    }
}

impl fmt::Display for MydexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_rules() {
        assert_eq!(
            MydexId::parse("  RBFish123 ").unwrap().as_str(),
            "RBFish123"
        );
        assert_eq!(MydexId::parse(""), Err(MydexIdError::Empty));
        assert_eq!(MydexId::parse("   "), Err(MydexIdError::Empty));
        assert_eq!(MydexId::parse("ab"), Err(MydexIdError::Length));
        assert_eq!(MydexId::parse(&"a".repeat(61)), Err(MydexIdError::Length));
        assert!(MydexId::parse(&"a".repeat(60)).is_ok());
        assert_eq!(MydexId::parse("12345"), Err(MydexIdError::OnlyDigits));
        assert_eq!(
            MydexId::parse("john_citizen"),
            Err(MydexIdError::NotAlphanumeric)
        );
        assert_eq!(MydexId::parse("jöhn"), Err(MydexIdError::NotAlphanumeric));
    }

    #[test]
    fn from_mydex_takes_what_mydex_sends() {
        for old in ["john_citizen", "12345", "ab", "jöhn.smith", "R B Fish"] {
            assert_eq!(MydexId::from_mydex(old).unwrap().as_str(), old);
        }
        assert_eq!(MydexId::from_mydex("  ab ").unwrap().as_str(), "ab");
        assert_eq!(MydexId::from_mydex(" "), Err(MydexIdError::Empty));
        assert_eq!(MydexId::from_mydex("a\nb"), Err(MydexIdError::Unreadable));
        assert_eq!(
            MydexId::from_mydex(&"a".repeat(MAX_FROM_MYDEX + 1)),
            Err(MydexIdError::Unreadable)
        );
        // Stored members read back whatever Mydex sent.
        let id: MydexId = serde_json::from_str("\"12345\"").unwrap();
        assert_eq!(id.as_str(), "12345");
    }
}
