//! One person to invite, as read from a queue file row or the admin API:
//! the email we mail, and what we know of them (name, the meter or device
//! they belong to, their MydexID if known, extra template variables).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Email, EmailError, MydexId, MydexIdError};

/// Longest value accepted in any one field.
pub const MAX_FIELD_LEN: usize = 1024;
const MAX_VARS: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitee {
    pub email: Email,
    pub name: Option<String>,
    pub external_ref: Option<String>,
    pub mydexid: Option<MydexId>,
    /// The campaign the row named, if it named one.
    pub campaign: Option<String>,
    /// Other columns, passed to the templates.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InviteeError {
    #[error("column `email` is missing or empty")]
    MissingEmail,
    #[error("{0}")]
    Email(#[from] EmailError),
    #[error("{0}")]
    MydexId(#[from] MydexIdError),
    #[error("field `{0}` is longer than {MAX_FIELD_LEN} characters")]
    TooLong(String),
    #[error("field `{0}` contains control characters")]
    ControlChars(String),
    #[error(
        "column name {0:?} is not usable: letters, digits and `_` only, not starting with a digit"
    )]
    BadColumn(String),
    #[error("more than {MAX_VARS} extra columns")]
    TooManyColumns,
    #[error("field `{0}` must be a string or number, not an object or array")]
    NotScalar(String),
}

#[derive(Default)]
struct PartialInvitee {
    name: Option<String>,
    external_ref: Option<String>,
    mydexid: Option<MydexId>,
    campaign: Option<String>,
    vars: BTreeMap<String, String>,
}

impl Invitee {
    /// Parse one row given as column → value. Empty values count as absent.
    pub fn from_fields<I>(fields: I) -> Result<Self, InviteeError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut email = None;
        let mut inv = PartialInvitee {
            name: None,
            external_ref: None,
            mydexid: None,
            campaign: None,
            vars: BTreeMap::new(),
        };
        for (key, value) in fields {
            let key = key.trim().to_string();
            if value.chars().count() > MAX_FIELD_LEN {
                return Err(InviteeError::TooLong(key));
            }
            let value = value.trim().to_string();
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(InviteeError::ControlChars(key));
            }
            if value.is_empty() {
                continue;
            }
            match key.as_str() {
                "email" => email = Some(Email::parse(&value)?),
                "name" => inv.name = Some(value),
                "external_ref" => inv.external_ref = Some(value),
                "mydexid" => inv.mydexid = Some(MydexId::parse(&value)?),
                "campaign" => inv.campaign = Some(value),
                _ => {
                    let usable = key
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && key.len() <= 64
                        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !usable {
                        return Err(InviteeError::BadColumn(key.chars().take(64).collect()));
                    }
                    if inv.vars.len() >= MAX_VARS {
                        return Err(InviteeError::TooManyColumns);
                    }
                    inv.vars.insert(key, value);
                }
            }
        }
        Ok(Invitee {
            email: email.ok_or(InviteeError::MissingEmail)?,
            name: inv.name,
            external_ref: inv.external_ref,
            mydexid: inv.mydexid,
            campaign: inv.campaign,
            vars: inv.vars,
        })
    }

    /// Parse one JSON object (a JSON Lines row or an admin API item).
    pub fn from_json(
        value: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, InviteeError> {
        let mut fields = Vec::with_capacity(value.len());
        for (k, v) in value {
            let s = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Null => String::new(),
                _ => return Err(InviteeError::NotScalar(k)),
            };
            fields.push((k, s));
        }
        Self::from_fields(fields)
    }

    /// What makes two rows the same person within a campaign.
    pub fn identity(&self) -> String {
        format!(
            "{}\u{1f}{}",
            self.email.normalized(),
            self.external_ref.as_deref().unwrap_or("")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_known_and_extra_columns() {
        let inv = Invitee::from_fields(row(&[
            ("email", "ann@example.com"),
            ("name", "Ann"),
            ("external_ref", "MTR-1"),
            ("mydexid", ""),
            ("tariff", "green"),
        ]))
        .unwrap();
        assert_eq!(inv.email.as_str(), "ann@example.com");
        assert_eq!(inv.mydexid, None);
        assert_eq!(inv.vars.get("tariff").map(String::as_str), Some("green"));
    }

    #[test]
    fn rejects_what_it_must() {
        assert_eq!(
            Invitee::from_fields(row(&[("name", "Ann")])),
            Err(InviteeError::MissingEmail)
        );
        assert!(matches!(
            Invitee::from_fields(row(&[("email", "ann@example.com"), ("mydexid", "12")])),
            Err(InviteeError::MydexId(_))
        ));
        assert_eq!(
            Invitee::from_fields(row(&[
                ("email", "a@example.com"),
                ("name", "Ann\r\nBcc: x@y.z")
            ])),
            Err(InviteeError::ControlChars("name".into()))
        );
        assert!(matches!(
            Invitee::from_fields(row(&[("email", "a@example.com"), ("bad col", "x")])),
            Err(InviteeError::BadColumn(_))
        ));
        let long = "x".repeat(MAX_FIELD_LEN + 1);
        assert_eq!(
            Invitee::from_fields(row(&[("email", "a@example.com"), ("name", &long)])),
            Err(InviteeError::TooLong("name".into()))
        );
    }
}
