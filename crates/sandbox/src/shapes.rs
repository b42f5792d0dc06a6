//! Every shape of callback Mydex publishes (docs/mydex-contract.md §5), so the
//! connector can be tried against all of them: `uid` as a string, absent, or
//! not the prefix of `connection_id`; PHP-bracket forms with the `""` key and
//! `value` attributes, with or without a `Content-Type`; JSON labelled as a
//! form, as text, or not at all. `rotate` sends the next shape with each callback.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};

use super::wire::{CallbackFormat, CallbackKind, form_encode};

/// How the sandbox shapes the callbacks it sends.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Deserialize,
    serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum CallbackShape {
    /// The contract's neat shape in `--callback-format` (today's default).
    #[default]
    Json,
    /// JSON with `uid` as a string and `fields` in the published layout.
    JsonStringUid,
    /// PHP-bracket form, `fields[…][0][][access][r][a]=1` with `value` attributes.
    Form,
    /// The same form with no `Content-Type` header.
    FormUntyped,
    /// A JSON body labelled `application/x-www-form-urlencoded`.
    JsonAsForm,
    /// A JSON body labelled `text/plain`.
    JsonAsText,
    /// A JSON body with no `Content-Type` header.
    JsonUntyped,
    /// The older published form: no `uid` at all.
    NoUid,
    /// The published form example: a `uid` that is not `connection_id`'s prefix.
    UidMismatch,
    /// Each callback in the next of the shapes above, in turn.
    Rotate,
}

impl CallbackShape {
    /// The shapes `rotate` goes through, in order.
    pub const ROTATION: [CallbackShape; 9] = [
        CallbackShape::Json,
        CallbackShape::JsonStringUid,
        CallbackShape::Form,
        CallbackShape::FormUntyped,
        CallbackShape::JsonAsForm,
        CallbackShape::JsonAsText,
        CallbackShape::JsonUntyped,
        CallbackShape::NoUid,
        CallbackShape::UidMismatch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CallbackShape::Json => "json",
            CallbackShape::JsonStringUid => "json-string-uid",
            CallbackShape::Form => "form",
            CallbackShape::FormUntyped => "form-untyped",
            CallbackShape::JsonAsForm => "json-as-form",
            CallbackShape::JsonAsText => "json-as-text",
            CallbackShape::JsonUntyped => "json-untyped",
            CallbackShape::NoUid => "no-uid",
            CallbackShape::UidMismatch => "uid-mismatch",
            CallbackShape::Rotate => "rotate",
        }
    }

    /// The shape of the next callback (`rotate` advances `turn`).
    pub fn next(self, turn: &AtomicU64) -> CallbackShape {
        match self {
            CallbackShape::Rotate => {
                let n = turn.fetch_add(1, Ordering::Relaxed) as usize;
                Self::ROTATION[n % Self::ROTATION.len()]
            }
            other => other,
        }
    }
}

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// A callback body on the wire: its `Content-Type` (None: no header) and bytes.
pub struct Wire {
    pub content_type: Option<&'static str>,
    pub payload: String,
}

/// Shape one callback body. `shape` is never `Rotate` here (see `next`).
pub fn shape(
    shape: CallbackShape,
    format: CallbackFormat,
    kind: CallbackKind,
    body: &Map<String, Value>,
) -> Wire {
    let json = |b: &Map<String, Value>| serde_json::to_string(b).unwrap_or_default();
    let connection = matches!(kind, CallbackKind::Ftc | CallbackKind::Update);
    let mut b = body.clone();
    if connection
        && shape != CallbackShape::Json
        && let Some(fields) = b.get("fields").cloned()
    {
        let with_values = !matches!(
            shape,
            CallbackShape::JsonStringUid
                | CallbackShape::JsonAsForm
                | CallbackShape::JsonAsText
                | CallbackShape::JsonUntyped
        );
        b.insert("fields".into(), published_fields(&fields, with_values));
    }
    let (content_type, payload) = match shape {
        CallbackShape::Json | CallbackShape::Rotate => match format {
            CallbackFormat::Json => (Some(JSON), json(body)),
            CallbackFormat::Form => (Some(FORM), form_encode(body)),
        },
        CallbackShape::JsonStringUid => {
            if let Some(uid) = b.get("uid").cloned() {
                let s = match uid {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                b.insert("uid".into(), json!(s));
            }
            (Some(JSON), json(&b))
        }
        CallbackShape::Form => (Some(FORM), form_encode(&b)),
        CallbackShape::FormUntyped => (None, form_encode(&b)),
        CallbackShape::JsonAsForm => (Some(FORM), json(&b)),
        CallbackShape::JsonAsText => (Some("text/plain"), json(&b)),
        CallbackShape::JsonUntyped => (None, json(&b)),
        CallbackShape::NoUid => {
            if connection {
                b.remove("uid");
            }
            (Some(FORM), form_encode(&b))
        }
        CallbackShape::UidMismatch => {
            if connection && let Some(uid) = b.get("uid").and_then(Value::as_u64) {
                // As in the published example (`uid=1` for `123-3736`).
                b.insert("uid".into(), json!(if uid == 1 { 2 } else { 1 }));
            }
            (Some(FORM), form_encode(&b))
        }
    };
    Wire {
        content_type,
        payload,
    }
}

/// The sandbox's grants (lists of one-leaf `access` entries per dataset, see
/// `fields_for_version`) in the published layout: one `""` entry per dataset
/// instance holding `access` (and a `value`, if asked), which form-encodes
/// as `fields[field_ds_x][0][][access][r][a]=1`.
pub fn published_fields(fields: &Value, with_values: bool) -> Value {
    let Value::Object(datasets) = fields else {
        return fields.clone();
    };
    let mut out = Map::new();
    for (name, instances) in datasets {
        let mut access = Map::new();
        merge_access(instances, &mut access);
        let mut entry = Map::new();
        entry.insert("access".into(), Value::Object(access));
        if with_values {
            entry.insert("value".into(), json!(format!("sandbox data for {name}")));
        }
        out.insert(name.clone(), json!({"0": {"": entry}}));
    }
    Value::Object(out)
}

fn merge_access(node: &Value, into: &mut Map<String, Value>) {
    match node {
        Value::Array(items) => items.iter().for_each(|v| merge_access(v, into)),
        Value::Object(m) => {
            if let Some(Value::Object(access)) = m.get("access") {
                for (dir, leaves) in access {
                    let slot = into
                        .entry(dir.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let (Value::Object(slot), Value::Object(leaves)) = (slot, leaves) {
                        for (k, v) in leaves {
                            slot.insert(k.clone(), v.clone());
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callbacks::{connection_body, fields_for_version};
    use mydex_connector::mydex::callback_body::{Callback, parse_request};

    #[test]
    fn published_layout_keeps_every_grant() {
        let p = published_fields(&fields_for_version(2), true);
        assert_eq!(
            p["field_ds_contact_details"]["0"][""]["access"],
            json!({"r": {"a": 1, "s": "A"}, "w": {"a": 1, "s": "A"}})
        );
        assert_eq!(p["field_ds_events"]["0"][""]["access"]["w"]["s"], "R");
        assert!(p["field_ds_personal_details"]["0"][""]["value"].is_string());
    }

    #[test]
    fn every_shape_parses_to_the_same_credentials() {
        let body = connection_body(1001, "RBFish123", Some("k3y"), "45678", 2, Some("lt_1"));
        let turn = AtomicU64::new(0);
        let mut seen = Vec::new();
        // What the connector compares a replay by is the same for every shape.
        let mut fingerprints = std::collections::HashSet::new();
        for _ in 0..CallbackShape::ROTATION.len() * 2 {
            let s = CallbackShape::Rotate.next(&turn);
            seen.push(s);
            for format in [CallbackFormat::Json, CallbackFormat::Form] {
                let w = shape(s, format, CallbackKind::Ftc, &body);
                let (cb, _) = parse_request(w.content_type, w.payload.as_bytes(), false, "45678")
                    .unwrap_or_else(|e| panic!("{}: {e}", s.name()));
                let Callback::Connect(c) = cb else {
                    panic!("{}: not a connection", s.name())
                };
                assert_eq!(c.uid, 1001, "{}", s.name());
                assert_eq!(c.connection_id, "1001-45678");
                assert_eq!(c.linking_token.as_deref(), Some("lt_1"));
                assert_eq!(c.mydexid.as_ref().map(|m| m.as_str()), Some("RBFish123"));
                let g = c.grants();
                assert_eq!(
                    g.readable(),
                    vec![
                        "ds_contact_details",
                        "ds_energy_readings",
                        "ds_events",
                        "ds_personal_details"
                    ],
                    "{}",
                    s.name()
                );
                assert_eq!(
                    g.writable(),
                    vec!["ds_contact_details", "ds_energy_readings", "ds_events"]
                );
                assert_eq!(
                    c.uid_mismatch().is_some(),
                    s == CallbackShape::UidMismatch,
                    "{}",
                    s.name()
                );
                assert_eq!(c.uid_sent.is_none(), s == CallbackShape::NoUid);
                let fp = mydex_connector::domain::CallbackFingerprint::of(&c, false);
                fingerprints.insert(serde_json::to_string(&fp).unwrap_or_default());
                if s == CallbackShape::FormUntyped {
                    assert!(w.content_type.is_none());
                }
            }
        }
        for s in CallbackShape::ROTATION {
            assert_eq!(seen.iter().filter(|x| **x == s).count(), 2);
        }
        assert_eq!(fingerprints.len(), 1, "one fingerprint for every shape");
    }
}
