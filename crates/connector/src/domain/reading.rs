//! A reading to deliver into a member's PDS, parsed once at intake: who it
//! is for (`MemberRef`), its dataset (`DatasetName`), its own id
//! (`external_id`, unique per member and dataset) and its fields, kept as
//! given. `RowState` is the life of a stored reading and its transition
//! table (as `State` is for invitations).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest `external_id`.
pub const MAX_EXTERNAL_ID: usize = 128;
/// Most fields in one row (besides the member, `dataset` and `external_id`).
pub const MAX_FIELDS: usize = 100;
/// Longest field value.
pub const MAX_VALUE: usize = 4096;
/// Field names a row may not use: Mydex's own columns and the call's parameters.
const RESERVED: [&str; 5] = ["id", "ds_id", "uid", "con_id", "key"];

/// Why a row is not a reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadingError {
    #[error("no member: one of external_ref, mydexid or connection_id is required")]
    NoMember,
    #[error("more than one of external_ref, mydexid and connection_id is given")]
    TwoMembers,
    #[error("external_id is required")]
    NoExternalId,
    #[error("external_id is longer than {MAX_EXTERNAL_ID} characters or holds control characters")]
    BadExternalId,
    #[error("dataset {0:?} is not a dataset name like ds_energy_readings")]
    BadDataset(String),
    #[error("field name {0:?} is not allowed (lowercase letters, digits and _, at most 64)")]
    BadFieldName(String),
    #[error("field {0:?} is reserved")]
    Reserved(String),
    #[error("more than {MAX_FIELDS} fields")]
    TooManyFields,
    #[error("field {0:?} is longer than {MAX_VALUE} characters")]
    ValueTooLong(String),
    #[error("field {0:?} must be a string, number or boolean")]
    NotScalar(String),
    #[error("{0} is empty or invalid")]
    BadMember(&'static str),
    #[error("the row is not a JSON object")]
    NotAnObject,
}

/// A transactional dataset's name: `ds_` then 1-60 of `[a-z0-9_]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatasetName(String);

impl DatasetName {
    pub fn parse(raw: &str) -> Result<Self, ReadingError> {
        let s = raw.trim();
        let ok = s.strip_prefix("ds_").is_some_and(|rest| {
            (1..=60).contains(&rest.len())
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(ReadingError::BadDataset(raw.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a reading is for, as the row names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRef {
    ExternalRef(String),
    MydexId(String),
    ConnectionId(String),
}

impl MemberRef {
    /// The column name this reference came from.
    pub fn column(&self) -> &'static str {
        match self {
            MemberRef::ExternalRef(_) => "external_ref",
            MemberRef::MydexId(_) => "mydexid",
            MemberRef::ConnectionId(_) => "connection_id",
        }
    }
}

/// One reading as parsed: nothing past intake has to check it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    pub member: MemberRef,
    /// The row's own dataset, when it names one.
    pub dataset: Option<DatasetName>,
    pub external_id: String,
    /// Every other column, as given (numbers and booleans as their text).
    pub fields: BTreeMap<String, String>,
}

impl Reading {
    /// A row of named text values (a CSV row with its header); empty values
    /// are absent.
    pub fn from_fields<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ReadingError> {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            if !v.trim().is_empty() {
                map.insert(k.trim().to_ascii_lowercase(), v.to_string());
            }
        }
        Self::from_map(map)
    }

    /// A JSON object (a JSON Lines row, a `POST /records` row); scalars kept
    /// as given, `null` absent.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, ReadingError> {
        let obj = value.as_object().ok_or(ReadingError::NotAnObject)?;
        let mut map = BTreeMap::new();
        for (k, v) in obj {
            let text = match v {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return Err(ReadingError::NotScalar(short(k))),
            };
            map.insert(k.clone(), text);
        }
        Self::from_map(map)
    }

    fn from_map(mut map: BTreeMap<String, String>) -> Result<Self, ReadingError> {
        let member = member_of(&mut map)?;
        let external_id = map
            .remove("external_id")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or(ReadingError::NoExternalId)?;
        if external_id.chars().count() > MAX_EXTERNAL_ID
            || external_id.chars().any(char::is_control)
        {
            return Err(ReadingError::BadExternalId);
        }
        let dataset = map
            .remove("dataset")
            .map(|d| DatasetName::parse(&d))
            .transpose()?;
        if map.len() > MAX_FIELDS {
            return Err(ReadingError::TooManyFields);
        }
        for (k, v) in &map {
            check_field(k, v)?;
        }
        Ok(Reading {
            member,
            dataset,
            external_id,
            fields: map,
        })
    }
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

fn member_of(map: &mut BTreeMap<String, String>) -> Result<MemberRef, ReadingError> {
    let take = |map: &mut BTreeMap<String, String>, k: &'static str| {
        map.remove(k).map(|v| {
            let v = v.trim().to_string();
            if v.is_empty() || v.len() > 256 || v.chars().any(char::is_control) {
                Err(ReadingError::BadMember(k))
            } else {
                Ok(v)
            }
        })
    };
    let refs = [
        take(map, "external_ref").map(|r| r.map(MemberRef::ExternalRef)),
        take(map, "mydexid").map(|r| r.map(MemberRef::MydexId)),
        take(map, "connection_id").map(|r| r.map(MemberRef::ConnectionId)),
    ];
    let mut found = refs.into_iter().flatten();
    let first = found.next().ok_or(ReadingError::NoMember)?;
    if found.next().is_some() {
        return Err(ReadingError::TwoMembers);
    }
    first
}

fn check_field(name: &str, value: &str) -> Result<(), ReadingError> {
    let mut bytes = name.bytes();
    let ok = name.len() <= 64
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(ReadingError::BadFieldName(short(name)));
    }
    if RESERVED.contains(&name) {
        return Err(ReadingError::Reserved(name.to_string()));
    }
    if value.chars().count() > MAX_VALUE {
        return Err(ReadingError::ValueTooLong(name.to_string()));
    }
    Ok(())
}

/// Where a stored reading stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowState {
    /// Waiting to be sent.
    Queued,
    /// Claimed into a batch whose POST is under way.
    InFlight,
    /// Sent, no answer: read back before anything is sent again.
    Unknown,
    Delivered,
    /// Waiting for its member to connect or grant write access.
    Held,
    Failed,
}

impl RowState {
    pub const ALL: [RowState; 6] = [
        RowState::Queued,
        RowState::InFlight,
        RowState::Unknown,
        RowState::Delivered,
        RowState::Held,
        RowState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RowState::Queued => "queued",
            RowState::InFlight => "in_flight",
            RowState::Unknown => "unknown",
            RowState::Delivered => "delivered",
            RowState::Held => "held",
            RowState::Failed => "failed",
        }
    }

    /// The moves a reading may make; every other is refused by the store.
    pub fn allowed(self, to: RowState) -> bool {
        use RowState::*;
        matches!(
            (self, to),
            (Queued, InFlight)
                | (Queued, Held)
                | (InFlight, Delivered)
                | (InFlight, Unknown)
                | (InFlight, Held)
                | (InFlight, Failed)
                | (InFlight, Queued)
                | (Unknown, Delivered)
                | (Unknown, Queued)
                | (Unknown, Failed)
                | (Held, Queued)
                | (Held, Failed)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: serde_json::Value) -> Result<Reading, ReadingError> {
        Reading::from_json(&v)
    }

    #[test]
    fn a_good_row_keeps_its_fields_as_given() {
        let r = row(json!({"external_ref": "M-1", "external_id": "r1", "kwh": 1.5, "ok": true, "note": null})).unwrap();
        assert_eq!(r.member, MemberRef::ExternalRef("M-1".into()));
        assert_eq!(r.external_id, "r1");
        assert_eq!(r.fields.get("kwh").unwrap(), "1.5");
        assert_eq!(r.fields.get("ok").unwrap(), "true");
        assert!(!r.fields.contains_key("note"));
        assert_eq!(r.dataset, None);
    }

    #[test]
    fn exactly_one_member() {
        assert_eq!(
            row(json!({"external_id": "r"})).unwrap_err(),
            ReadingError::NoMember
        );
        assert_eq!(
            row(json!({"external_id": "r", "mydexid": "a", "connection_id": "1-2"})).unwrap_err(),
            ReadingError::TwoMembers
        );
        assert_eq!(
            row(json!({"external_id": "r", "mydexid": " "})).unwrap_err(),
            ReadingError::BadMember("mydexid")
        );
    }

    #[test]
    fn external_id_required_bounded_no_controls() {
        assert_eq!(
            row(json!({"mydexid": "a"})).unwrap_err(),
            ReadingError::NoExternalId
        );
        assert_eq!(
            row(json!({"mydexid": "a", "external_id": "x".repeat(129)})).unwrap_err(),
            ReadingError::BadExternalId
        );
        assert_eq!(
            row(json!({"mydexid": "a", "external_id": "a\u{7}b"})).unwrap_err(),
            ReadingError::BadExternalId
        );
    }

    #[test]
    fn field_names_values_and_reserved() {
        let base = || json!({"mydexid": "a", "external_id": "r"});
        let with = |k: &str, v: serde_json::Value| {
            let mut b = base();
            b[k] = v;
            row(b)
        };
        assert!(matches!(
            with("Bad-Name", json!("1")),
            Err(ReadingError::BadFieldName(_))
        ));
        assert!(matches!(
            with("key", json!("1")),
            Err(ReadingError::Reserved(_))
        ));
        assert!(matches!(
            with("v", json!("x".repeat(4097))),
            Err(ReadingError::ValueTooLong(_))
        ));
        assert!(matches!(
            with("v", json!([1])),
            Err(ReadingError::NotScalar(_))
        ));
        let mut many = base();
        for i in 0..101 {
            many[format!("f{i}")] = json!("1");
        }
        assert_eq!(row(many).unwrap_err(), ReadingError::TooManyFields);
        assert_eq!(row(json!([1])).unwrap_err(), ReadingError::NotAnObject);
    }

    #[test]
    fn datasets() {
        assert!(DatasetName::parse("ds_energy_readings").is_ok());
        assert!(DatasetName::parse("ds_").is_err());
        assert!(DatasetName::parse("field_ds_x").is_err());
        assert!(DatasetName::parse("ds_X").is_err());
        assert!(DatasetName::parse(&format!("ds_{}", "a".repeat(61))).is_err());
        assert!(matches!(
            row(json!({"mydexid": "a", "external_id": "r", "dataset": "nope"})),
            Err(ReadingError::BadDataset(_))
        ));
    }

    #[test]
    fn csv_rows_skip_empty_values() {
        let r = Reading::from_fields([
            ("connection_id", "1001-45678"),
            ("external_id", "r9"),
            ("kwh", "2"),
            ("mydexid", ""),
        ])
        .unwrap();
        assert_eq!(r.member, MemberRef::ConnectionId("1001-45678".into()));
        assert_eq!(r.fields.len(), 1);
    }

    #[test]
    fn the_transition_table() {
        use RowState::*;
        let allowed: Vec<(RowState, RowState)> = RowState::ALL
            .iter()
            .flat_map(|a| RowState::ALL.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.allowed(*b))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Queued, InFlight),
                (Queued, Held),
                (InFlight, Queued),
                (InFlight, Unknown),
                (InFlight, Delivered),
                (InFlight, Held),
                (InFlight, Failed),
                (Unknown, Queued),
                (Unknown, Delivered),
                (Unknown, Failed),
                (Held, Queued),
                (Held, Failed),
            ]
        );
    }
}
