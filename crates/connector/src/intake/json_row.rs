//! One JSON Lines reading row read as a JSON object whose keys all differ.
//! serde_json keeps the last of a repeated key silently, so a row naming
//! `external_id` or `mydexid` twice would be one reading to us and maybe
//! another to whoever wrote or checked the file: such a row is refused.

use serde::de::{Deserialize, Deserializer, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A row's JSON: the object when it is one (keys unique), else `Null`
/// (which `Reading::from_json` refuses as "not a JSON object").
pub(crate) struct JsonRow(pub serde_json::Value);

impl<'de> Deserialize<'de> for JsonRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RowVisitor).map(JsonRow)
    }
}

struct RowVisitor;

impl<'de> Visitor<'de> for RowVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: serde_json::Value = map.next_value()?;
            if out.contains_key(&key) {
                let shown: String = key.chars().take(64).collect();
                return Err(A::Error::custom(format!("key {shown:?} is repeated")));
            }
            out.insert(key, value);
        }
        Ok(serde_json::Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(serde_json::Value::Null)
    }

    fn visit_bool<E: Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_i64<E: Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_u64<E: Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_f64<E: Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_str<E: Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
}

/// Parse one row's text.
pub(crate) fn parse_row(text: &str) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_str::<JsonRow>(text).map(|r| r.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_pass_repeated_keys_and_other_values_do_not() {
        let v = parse_row(r#"{"mydexid":"a","external_id":"e","kwh":1.5,"n":null}"#).unwrap();
        assert_eq!(v["kwh"], 1.5);
        assert!(v["n"].is_null());
        let e = parse_row(r#"{"external_id":"a","external_id":"b"}"#).unwrap_err();
        assert!(
            e.to_string().contains("key \"external_id\" is repeated"),
            "{e}"
        );
        for other in ["[1,{\"a\":1}]", "true", "3", "-3", "1.5", "\"s\"", "null"] {
            assert!(parse_row(other).unwrap().is_null(), "{other}");
        }
        for bad in ["", "{", "{} x", "{\"a\":}", "[1,"] {
            assert!(parse_row(bad).is_err(), "{bad}");
        }
        // Nested objects keep serde_json's own reading (refused later as
        // not a scalar).
        let v = parse_row(r#"{"a":{"b":1,"b":2}}"#).unwrap();
        assert!(v["a"].is_object());
    }
}
