//! One JSON row (a reading or an invitee, a line of a JSON Lines file or an
//! element of an admin API body) read as a JSON object whose keys all
//! differ. serde_json keeps the last of a repeated key silently, so a row
//! naming `external_id`, `email` or `mydexid` twice would be one row to us
//! and maybe another to whoever wrote or checked the file: such a row is
//! refused, with the key named.

use serde::de::{Deserialize, Deserializer, Error, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A row as read: an object with unique keys, an object with a repeated
/// key (the first one repeated, shortened), or not an object at all; at
/// the top of an admin API body, an array of rows.
enum Row {
    Object(serde_json::Map<String, serde_json::Value>),
    Repeated(String),
    Other,
    Rows(Vec<Row>),
}

impl Row {
    /// The row's JSON: the object, `Null` when it is not one (which the
    /// domain parsers refuse as "not a JSON object"), an error naming a
    /// repeated key.
    fn into_value(self) -> Result<serde_json::Value, serde_json::Error> {
        match self {
            Row::Object(map) => Ok(serde_json::Value::Object(map)),
            Row::Repeated(key) => Err(serde_json::Error::custom(format!(
                "key {key:?} is repeated"
            ))),
            Row::Other | Row::Rows(_) => Ok(serde_json::Value::Null),
        }
    }
}

impl<'de> Deserialize<'de> for Row {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RowVisitor { top: false })
    }
}

/// A body's top value: an array there is rows, not a row.
struct Top(Row);

impl<'de> Deserialize<'de> for Top {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RowVisitor { top: true }).map(Top)
    }
}

struct RowVisitor {
    top: bool,
}

impl<'de> Visitor<'de> for RowVisitor {
    type Value = Row;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        let mut repeated = None;
        while let Some(key) = map.next_key::<String>()? {
            if repeated.is_some() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value: serde_json::Value = map.next_value()?;
            if out.contains_key(&key) {
                repeated = Some(key.chars().take(64).collect());
                continue;
            }
            out.insert(key, value);
        }
        Ok(match repeated {
            Some(key) => Row::Repeated(key),
            None => Row::Object(out),
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if self.top {
            let mut rows = Vec::new();
            while let Some(row) = seq.next_element::<Row>()? {
                rows.push(row);
            }
            return Ok(Row::Rows(rows));
        }
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Row::Other)
    }

    fn visit_bool<E: Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Row::Other)
    }

    fn visit_i64<E: Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Row::Other)
    }

    fn visit_u64<E: Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Row::Other)
    }

    fn visit_f64<E: Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Row::Other)
    }

    fn visit_str<E: Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Row::Other)
    }

    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(Row::Other)
    }
}

/// Parse one row's text.
pub(crate) fn parse_row(text: &str) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::from_str::<Row>(text)?.into_value()
}

/// The rows of a body, each its JSON or why not, in order.
pub(crate) type BodyRows = Vec<Result<serde_json::Value, serde_json::Error>>;

/// An admin API body: a JSON array of rows, or one object (one row).
/// `Ok(None)`: valid JSON but neither. Each row is read on its own, so a
/// row with a repeated key is refused alone (its error in its place) and
/// the others go on.
pub(crate) fn parse_body(body: &[u8]) -> Result<Option<BodyRows>, serde_json::Error> {
    Ok(match serde_json::from_slice::<Top>(body)?.0 {
        Row::Rows(rows) => Some(rows.into_iter().map(Row::into_value).collect()),
        Row::Other => None,
        row => Some(vec![row.into_value()]),
    })
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

    #[test]
    fn a_body_is_rows_each_judged_alone() {
        let rows = parse_body(br#"[{"a":1},{"b":1,"b":2,"c":3},7,{"d":"x"}]"#)
            .unwrap()
            .unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].as_ref().unwrap()["a"], 1);
        let e = rows[1].as_ref().unwrap_err().to_string();
        assert!(e.contains("key \"b\" is repeated"), "{e}");
        assert!(rows[2].as_ref().unwrap().is_null());
        assert_eq!(rows[3].as_ref().unwrap()["d"], "x");
        let one = parse_body(br#"{"a":1,"a":1}"#).unwrap().unwrap();
        assert!(one[0].is_err());
        for neither in ["3", "\"s\"", "null", "true"] {
            assert!(
                parse_body(neither.as_bytes()).unwrap().is_none(),
                "{neither}"
            );
        }
        for bad in ["", "[", "[{}", "{\"a\":}", "[] x"] {
            assert!(parse_body(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse_body(b"[]").unwrap().unwrap().is_empty());
    }
}
