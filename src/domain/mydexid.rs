//! A MydexID, by the Registration rules: trimmed, alphanumeric, 3 to 60
//! characters, not made only of digits.

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
}

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

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MydexId {
    type Error = MydexIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
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
}
