//! The bodies Mydex POSTs and PUTs to our callback URL (docs/mydex-contract.md
//! §5), parsed once from JSON or PHP-bracket form into typed values, in every
//! shape Mydex publishes: `uid` an int, a string, absent, or not the prefix of
//! `connection_id` (then both are kept, the prefix is used); JSON or form
//! whatever the `Content-Type` says; MydexIDs as Mydex sends them. A body with
//! `type` is identify or notification; without, FTC (POST) or update (PUT).

use secrecy::SecretString;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::{Credentials, Event, LinkingToken, MydexId};

#[derive(Debug)]
pub enum Callback {
    Connect(Credentials),
    Update(Credentials),
    Event(Event),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CallbackError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Form(#[from] super::php_form::FormError),
    #[error("body must be an object")]
    NotObject,
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{0}` has the wrong type or form: {1}")]
    Invalid(&'static str, String),
    #[error("unknown callback type {0:?}")]
    UnknownType(String),
    #[error("{0}")]
    Encoding(#[from] UnsupportedEncoding),
}

pub enum Encoding {
    Json,
    Form,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("Content-Type must be application/json or application/x-www-form-urlencoded")]
pub struct UnsupportedEncoding;

impl Encoding {
    /// The encoding a `Content-Type` header names, if it names one we read.
    pub fn from_content_type(content_type: Option<&str>) -> Result<Self, UnsupportedEncoding> {
        let mime = content_type
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            "application/json" => Ok(Encoding::Json),
            "application/x-www-form-urlencoded" => Ok(Encoding::Form),
            m if m.ends_with("+json") || m == "text/json" => Ok(Encoding::Json),
            _ => Err(UnsupportedEncoding),
        }
    }

    /// What the body is, whatever its label: JSON when its first
    /// non-whitespace byte opens an object or array, a form otherwise.
    pub fn sniff(body: &[u8]) -> Self {
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{' | b'[') => Encoding::Json,
            _ => Encoding::Form,
        }
    }
}

/// Parse a callback request's body: the one entry point the callback server
/// calls. What the body is decides, not only its `Content-Type` (docs/mydex-
/// contract.md §5: JSON arrives labelled as a form, forms with no type, and
/// `text/plain` happens): what the body looks like is tried first, then the
/// other encoding; an error only when neither parses (the first try's).
/// The label is not needed for that; it is taken so the signature stays.
pub fn parse_request(
    _content_type: Option<&str>,
    body: &[u8],
    is_put: bool,
    nid: &str,
) -> Result<(Callback, Value), CallbackError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let (first, second) = match Encoding::sniff(body) {
        Encoding::Json => (Encoding::Json, Encoding::Form),
        Encoding::Form => (Encoding::Form, Encoding::Json),
    };
    match parse(first, body, is_put, nid) {
        Ok(v) => Ok(v),
        // The error is told in the terms of what the body looks like.
        Err(e) => parse(second, body, is_put, nid).map_err(|_| e),
    }
}

/// Parse a callback body. `nid` is our Dedicated Connection, which every
/// `connection_id` must end with.
pub fn parse(
    encoding: Encoding,
    body: &[u8],
    is_put: bool,
    nid: &str,
) -> Result<(Callback, Value), CallbackError> {
    let value = match encoding {
        Encoding::Json => {
            serde_json::from_slice::<Value>(body).map_err(|e| CallbackError::Json(e.to_string()))?
        }
        Encoding::Form => super::php_form::parse(body)?,
    };
    let obj = value.as_object().ok_or(CallbackError::NotObject)?;
    let callback = match obj.get("type") {
        Some(t) => parse_event(obj, t)?,
        None => {
            let creds = parse_credentials(obj, is_put, nid)?;
            if is_put {
                Callback::Update(creds)
            } else {
                Callback::Connect(creds)
            }
        }
    };
    Ok((callback, redact(value)))
}

/// An event: the body has a `type` (`identify` or `notification`).
fn parse_event(obj: &serde_json::Map<String, Value>, t: &Value) -> Result<Callback, CallbackError> {
    Ok(match t.as_str() {
        Some("identify") => Callback::Event(Event::Identify {
            mydexid: mydexid(obj.get("mydexid"))?
                .ok_or(CallbackError::Missing("mydexid"))?
                .to_string(),
            linking_token: linking_token(obj.get("linking_token"))?,
        }),
        Some("notification") => Callback::Event(Event::Notification {
            uid: opt_text(obj, "uid", 32)?,
            connection_id: opt_text(obj, "connection_id", 64)?,
            dataset: name(obj, "dataset")?,
            action: name(obj, "action")?,
            updated_id: opt_text(obj, "updated_id", 128)?,
            message: opt_text(obj, "message", 1024)?,
        }),
        Some(other) => {
            return Err(CallbackError::UnknownType(other.chars().take(40).collect()));
        }
        None => return Err(CallbackError::Invalid("type", "must be a string".into())),
    })
}

/// Member credentials: a body without a `type` (an FTC, or an update when
/// `is_put`).
fn parse_credentials(
    obj: &serde_json::Map<String, Value>,
    is_put: bool,
    nid: &str,
) -> Result<Credentials, CallbackError> {
    let connection_id = text(obj, "connection_id", 64)?.trim().to_string();
    let uid = connection_uid(&connection_id, nid)?;
    let uid_sent = uid_sent(obj.get("uid"))?;
    if let Some(sent) = &uid_sent
        && sent.parse::<u64>().ok() != Some(uid)
    {
        tracing::warn!(
            connection_id = %connection_id,
            uid_sent = %sent,
            "callback uid differs from its connection_id; using the connection_id's uid and keeping both"
        );
    }
    let key = member_key(obj.get("key"), is_put)?;
    let fields = granted_fields(obj.get("fields"))?;
    Ok(Credentials {
        uid,
        uid_sent,
        mydexid: mydexid(obj.get("mydexid"))?,
        key,
        connection_id,
        fields,
        linking_token: linking_token(obj.get("linking_token"))?,
    })
}

/// connection_id is "{uid}-{nid}" (§5): the uid we use is its prefix.
fn connection_uid(connection_id: &str, nid: &str) -> Result<u64, CallbackError> {
    let uid = connection_id
        .strip_suffix(&format!("-{nid}"))
        .ok_or_else(|| {
            CallbackError::Invalid("connection_id", format!("must end with \"-{nid}\""))
        })?;
    uid.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        CallbackError::Invalid(
            "connection_id",
            format!("must be \"{{uid}}-{nid}\" with a positive integer uid"),
        )
    })
}

/// The member key: required in an FTC, optional in an update.
fn member_key(v: Option<&Value>, is_put: bool) -> Result<Option<SecretString>, CallbackError> {
    match v {
        None | Some(Value::Null) if is_put => Ok(None),
        None | Some(Value::Null) => Err(CallbackError::Missing("key")),
        Some(Value::String(k))
            if !k.is_empty() && k.len() <= 512 && !k.chars().any(char::is_control) =>
        {
            Ok(Some(SecretString::from(k.clone())))
        }
        Some(_) => Err(CallbackError::Invalid(
            "key",
            "must be a non-empty string of at most 512 characters".into(),
        )),
    }
}

/// The permissions granted (`fields`), or null.
fn granted_fields(v: Option<&Value>) -> Result<Value, CallbackError> {
    match v {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(v @ (Value::Object(_) | Value::Array(_))) => Ok(v.clone()),
        // A form with `fields=` and nothing in it.
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Value::Null),
        Some(_) => Err(CallbackError::Invalid(
            "fields",
            "must be an object or array".into(),
        )),
    }
}

/// A digest of the callback as understood, for replay detection.
pub fn digest(method: &str, redacted_body: &Value, key: Option<&str>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(redacted_body.to_string().as_bytes());
    if let Some(k) = key {
        h.update([0]);
        h.update(k.as_bytes());
    }
    h.finalize().into()
}

/// The body without the member key, safe to keep and log.
fn redact(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut()
        && obj.contains_key("key")
    {
        obj.insert("key".into(), Value::String("<redacted>".into()));
    }
    v
}

/// The `uid` as sent (an int, or a string in notifications and forms), kept
/// as text; absent is fine, the uid is the `connection_id`'s prefix.
fn uid_sent(v: Option<&Value>) -> Result<Option<String>, CallbackError> {
    let s = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(_) => {
            return Err(CallbackError::Invalid(
                "uid",
                "must be an integer or a string".into(),
            ));
        }
    };
    if s.len() > 64 || s.chars().any(char::is_control) {
        return Err(CallbackError::Invalid(
            "uid",
            "at most 64 characters, no control characters".into(),
        ));
    }
    Ok((!s.is_empty()).then_some(s))
}

fn mydexid(v: Option<&Value>) -> Result<Option<MydexId>, CallbackError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        // A MydexID from Mydex is taken as sent: it may predate the
        // Registration rules (docs/mydex-contract.md §5, §9).
        Some(Value::String(s)) => MydexId::from_mydex(s)
            .map(Some)
            .map_err(|e| CallbackError::Invalid("mydexid", e.to_string())),
        Some(Value::Number(n)) => Ok(MydexId::from_mydex(&n.to_string()).ok()),
        Some(_) => Err(CallbackError::Invalid("mydexid", "must be a string".into())),
    }
}

fn linking_token(v: Option<&Value>) -> Result<Option<String>, CallbackError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => LinkingToken::from_callback(s)
            .map(|t| Some(t.as_str().to_string()))
            .ok_or_else(|| {
                CallbackError::Invalid(
                    "linking_token",
                    "letters, digits, `_` and `-` only, at most 128".into(),
                )
            }),
        Some(_) => Err(CallbackError::Invalid(
            "linking_token",
            "must be a string".into(),
        )),
    }
}

fn text(
    obj: &serde_json::Map<String, Value>,
    key: &'static str,
    max: usize,
) -> Result<String, CallbackError> {
    opt_text(obj, key, max)?.ok_or(CallbackError::Missing(key))
}

fn opt_text(
    obj: &serde_json::Map<String, Value>,
    key: &'static str,
    max: usize,
) -> Result<Option<String>, CallbackError> {
    let s = match obj.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(CallbackError::Invalid(key, "must be a string".into())),
    };
    if s.len() > max || s.chars().any(char::is_control) {
        return Err(CallbackError::Invalid(
            key,
            format!("at most {max} characters, no control characters"),
        ));
    }
    Ok(if s.is_empty() { None } else { Some(s) })
}

fn name(obj: &serde_json::Map<String, Value>, key: &'static str) -> Result<String, CallbackError> {
    let s = text(obj, key, 64)?;
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(CallbackError::Invalid(
            key,
            "letters, digits, `_` and `-` only".into(),
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const JSON: Option<&str> = Some("application/json");
    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    #[test]
    fn json_ftc_and_form_ftc_agree() {
        let json = br#"{"uid":1001,"mydexid":"RBFish123","key":"k3y","connection_id":"1001-45678","fields":{"a":1},"linking_token":"lt_abc"}"#;
        let (cb, red) = parse(Encoding::Json, json, false, "45678").unwrap();
        assert!(
            matches!(&cb, Callback::Connect(c) if c.uid == 1001 && c.linking_token.as_deref() == Some("lt_abc"))
        );
        assert_eq!(red["key"], "<redacted>");
        let form = b"uid=1001&mydexid=RBFish123&key=k3y&connection_id=1001-45678&fields[a]=1&linking_token=lt_abc";
        let (cb, _) = parse(Encoding::Form, form, false, "45678").unwrap();
        assert!(matches!(cb, Callback::Connect(c) if c.uid == 1001));
    }

    #[test]
    fn rejects_wrong_shapes() {
        let p = |b: &[u8], put| parse(Encoding::Json, b, put, "45678").map(|_| ());
        assert_eq!(p(br#"[1]"#, false), Err(CallbackError::NotObject));
        assert_eq!(
            p(br#"{"uid":1,"connection_id":"1-45678"}"#, false),
            Err(CallbackError::Missing("key"))
        );
        assert!(p(br#"{"uid":1,"connection_id":"1-45678"}"#, true).is_ok());
        // A uid that is not the connection_id's prefix is now kept (issue
        // 11: Mydex's published example has one); a uid of the wrong type
        // is still refused.
        assert!(p(br#"{"uid":"x","key":"k","connection_id":"1-45678"}"#, false).is_ok());
        assert!(matches!(
            p(br#"{"uid":[1],"key":"k","connection_id":"1-45678"}"#, false),
            Err(CallbackError::Invalid("uid", _))
        ));
        assert!(matches!(
            p(br#"{"uid":1,"key":"k","connection_id":"1-99"}"#, false),
            Err(CallbackError::Invalid("connection_id", _))
        ));
        assert!(matches!(
            p(br#"{"key":"k","connection_id":"x-45678"}"#, false),
            Err(CallbackError::Invalid("connection_id", _))
        ));
        assert!(matches!(
            p(br#"{"uid":1,"key":"k"}"#, false),
            Err(CallbackError::Missing("connection_id"))
        ));
        assert!(matches!(
            p(br#"{"uid":1,"key":7,"connection_id":"1-45678"}"#, false),
            Err(CallbackError::Invalid("key", _))
        ));
        assert!(matches!(
            p(br#"{"type":"evil"}"#, false),
            Err(CallbackError::UnknownType(_))
        ));
        assert!(matches!(
            p(br#"{"type":"identify"}"#, false),
            Err(CallbackError::Missing("mydexid"))
        ));
        assert!(matches!(
            p(
                br#"{"uid":1,"key":"k","connection_id":"1-45678","linking_token":"../x"}"#,
                false
            ),
            Err(CallbackError::Invalid("linking_token", _))
        ));
        assert!(p(br#"{"type":"notification","uid":"4020","message":"m","dataset":"ds_events","connection_id":"4020-40000","action":"create","updated_id":"1"}"#, false).is_ok());
    }

    #[test]
    fn the_body_decides_not_only_its_label() {
        let json = br#" {"uid":"7","key":"k","connection_id":"7-45678"}"#;
        let form = b"uid=7&key=k&connection_id=7-45678";
        for body in [&json[..], &form[..]] {
            for ct in [
                JSON,
                FORM,
                None,
                Some("text/plain; charset=utf-8"),
                Some("application/octet-stream"),
                Some("nonsense"),
            ] {
                let (cb, _) = parse_request(ct, body, false, "45678")
                    .unwrap_or_else(|e| panic!("{ct:?} {}: {e}", String::from_utf8_lossy(body)));
                assert!(matches!(cb, Callback::Connect(c) if c.uid == 7));
            }
        }
        // A byte-order mark is not content.
        let bom = [b"\xEF\xBB\xBF".as_slice(), json].concat();
        assert!(parse_request(JSON, &bom, false, "45678").is_ok());
        // Nothing parses: the error of what the body looks like.
        assert!(matches!(
            parse_request(JSON, b"{not json", false, "45678"),
            Err(CallbackError::Json(_))
        ));
        assert!(matches!(
            parse_request(FORM, &[0xff, 0xfe, 0x00], false, "45678"),
            Err(CallbackError::Form(_))
        ));
        // Another NID stays an error, in either encoding.
        assert!(matches!(
            parse_request(
                FORM,
                br#"{"uid":1,"key":"k","connection_id":"1-99"}"#,
                false,
                "45678"
            ),
            Err(CallbackError::Invalid("connection_id", _))
        ));
        assert!(matches!(
            parse_request(JSON, b"uid=1&key=k&connection_id=1-99", false, "45678"),
            Err(CallbackError::Invalid("connection_id", _))
        ));
    }

    /// What a fixture must parse to.
    struct Expect {
        uid: u64,
        uid_sent: Option<&'static str>,
        connection_id: &'static str,
        mydexid: Option<&'static str>,
        key: Option<&'static str>,
        read: &'static [&'static str],
        write: &'static [&'static str],
    }

    fn credentials(file: &str, body: &[u8], ct: Option<&str>, put: bool, nid: &str) -> Credentials {
        // Under its own type, with none, and mislabelled: the same result.
        let wrong = if ct == JSON { FORM } else { JSON };
        let mut out = Vec::new();
        for ct in [ct, None, wrong, Some("text/plain")] {
            match parse_request(ct, body, put, nid) {
                Ok((Callback::Connect(c), _)) if !put => out.push(c),
                Ok((Callback::Update(c), _)) if put => out.push(c),
                other => panic!("{file} as {ct:?}: {other:?}"),
            }
        }
        let first = out.remove(0);
        for c in &out {
            assert_eq!(c.uid, first.uid, "{file}");
            assert_eq!(c.uid_sent, first.uid_sent, "{file}");
            assert_eq!(c.fields, first.fields, "{file}");
        }
        first
    }

    fn check(file: &str, c: &Credentials, e: Expect) {
        assert_eq!(c.uid, e.uid, "{file}: uid");
        assert_eq!(c.uid_sent.as_deref(), e.uid_sent, "{file}: uid_sent");
        assert_eq!(c.connection_id, e.connection_id, "{file}: connection_id");
        assert_eq!(
            c.mydexid.as_ref().map(|m| m.as_str()),
            e.mydexid,
            "{file}: mydexid"
        );
        assert_eq!(
            c.key.as_ref().map(|k| k.expose_secret()),
            e.key,
            "{file}: key"
        );
        let g = c.grants();
        assert_eq!(g.readable(), e.read, "{file}: read grants");
        assert_eq!(g.writable(), e.write, "{file}: write grants");
    }

    macro_rules! fixture {
        ($name:literal) => {
            (
                $name,
                &include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/../../tests/fixtures/callbacks/",
                    $name
                ))[..],
            )
        };
    }

    #[test]
    fn fixtures_ftc_json() {
        let (f, b) = fixture!("ftc-neat.json");
        let c = credentials(f, b, JSON, false, "4567");
        assert_eq!(c.linking_token.as_deref(), Some("lt_4f2a9c"));
        assert_eq!(c.uid_mismatch(), None);
        check(
            f,
            &c,
            Expect {
                uid: 587,
                uid_sent: Some("587"),
                connection_id: "587-4567",
                mydexid: Some("RBFish123"),
                key: Some("6nD1a7EATbP7ewmZCpNkxzzyMvuIKqQQ"),
                read: &["ds_personal_details"],
                write: &[],
            },
        );

        let (f, b) = fixture!("ftc-string-uid.json");
        let c = credentials(f, b, JSON, false, "4567");
        check(
            f,
            &c,
            Expect {
                uid: 587,
                uid_sent: Some("587"),
                connection_id: "587-4567",
                mydexid: Some("RBFish123"),
                key: Some("6nD1a7EATbP7ewmZCpNkxzzyMvuIKqQQ"),
                read: &["ds_personal_details"],
                write: &[],
            },
        );

        let (f, b) = fixture!("ftc-pre-rules-mydexid.json");
        let c = credentials(f, b, JSON, false, "4567");
        check(
            f,
            &c,
            Expect {
                uid: 587,
                uid_sent: Some("587"),
                connection_id: "587-4567",
                mydexid: Some("12345"),
                key: Some("6nD1a7EATbP7ewmZCpNkxzzyMvuIKqQQ"),
                read: &["ds_personal_details"],
                write: &[],
            },
        );
        // The same body for another NID is an error (to be quarantined).
        assert!(matches!(
            parse_request(JSON, b, false, "4568"),
            Err(CallbackError::Invalid("connection_id", _))
        ));
    }

    #[test]
    fn fixtures_ftc_forms() {
        let (f, b) = fixture!("ftc-published-form.txt");
        let c = credentials(f, b, FORM, false, "3736");
        // uid=1 is not the prefix of 123-3736: both kept, the prefix used.
        assert_eq!(c.uid_mismatch(), Some("1"));
        check(
            f,
            &c,
            Expect {
                uid: 123,
                uid_sent: Some("1"),
                connection_id: "123-3736",
                mydexid: Some("RBFish123"),
                key: Some("CJqVflobLSL6FPAscotDu10QqzHhBFtG"),
                read: &["ds_personal_details"],
                write: &["ds_personal_details"],
            },
        );
        assert_eq!(
            c.grants()
                .get("ds_personal_details")
                .unwrap()
                .read_style
                .as_deref(),
            Some("A")
        );

        let (f, b) = fixture!("ftc-older-no-uid.txt");
        let c = credentials(f, b, FORM, false, "3736");
        check(
            f,
            &c,
            Expect {
                uid: 123,
                uid_sent: None,
                connection_id: "123-3736",
                mydexid: Some("RBFish123"),
                key: Some("CJqVflobLSL6FPAscotDu10QqzHhBFtG"),
                read: &["ds_personal_details"],
                write: &[],
            },
        );

        let (f, b) = fixture!("ftc-fields-value.txt");
        let c = credentials(f, b, FORM, false, "3736");
        check(
            f,
            &c,
            Expect {
                uid: 123,
                uid_sent: Some("123"),
                connection_id: "123-3736",
                mydexid: Some("RBFish123"),
                key: Some("CJqVflobLSL6FPAscotDu10QqzHhBFtG"),
                read: &["ds_home", "ds_personal_details"],
                write: &["ds_home"],
            },
        );
        // Kept as JSON with the `""` key, values included.
        assert_eq!(
            c.fields["field_ds_personal_details"]["0"][""]["value"],
            "Robert Fish"
        );
        assert_eq!(c.fields["field_ds_home"]["0"][""]["access"]["w"]["s"], "R");
    }

    #[test]
    fn fixtures_update_put() {
        let (f, b) = fixture!("update-put.json");
        let c = credentials(f, b, JSON, true, "4567");
        check(
            f,
            &c,
            Expect {
                uid: 587,
                uid_sent: Some("587"),
                connection_id: "587-4567",
                mydexid: Some("RBFish123"),
                key: None,
                read: &["ds_events", "ds_personal_details"],
                write: &["ds_events", "ds_personal_details"],
            },
        );
        // As a POST (an FTC) it would lack its key.
        assert_eq!(
            parse_request(JSON, b, false, "4567").map(|_| ()),
            Err(CallbackError::Missing("key"))
        );
    }

    #[test]
    fn fixtures_events() {
        for (f, b, mydexid) in [
            (
                fixture!("identify.json").0,
                fixture!("identify.json").1,
                "johncitizen",
            ),
            (
                fixture!("identify-pre-rules-mydexid.json").0,
                fixture!("identify-pre-rules-mydexid.json").1,
                "john_citizen",
            ),
        ] {
            for ct in [JSON, None, FORM] {
                match parse_request(ct, b, false, "45678") {
                    Ok((
                        Callback::Event(Event::Identify {
                            mydexid: m,
                            linking_token,
                        }),
                        _,
                    )) => {
                        assert_eq!(m, mydexid, "{f}");
                        assert_eq!(linking_token.as_deref(), Some("lt_4f2a9c"), "{f}");
                    }
                    other => panic!("{f}: {other:?}"),
                }
            }
        }
        let (f, b) = fixture!("notification.json");
        for ct in [JSON, None, FORM] {
            match parse_request(ct, b, false, "45678") {
                Ok((
                    Callback::Event(Event::Notification {
                        uid,
                        connection_id,
                        dataset,
                        action,
                        updated_id,
                        ..
                    }),
                    _,
                )) => {
                    assert_eq!(uid.as_deref(), Some("4020"), "{f}");
                    assert_eq!(connection_id.as_deref(), Some("4020-40000"), "{f}");
                    assert_eq!((dataset.as_str(), action.as_str()), ("ds_events", "create"));
                    assert_eq!(updated_id.as_deref(), Some("1"));
                }
                other => panic!("{f}: {other:?}"),
            }
        }
    }

    #[test]
    fn fixtures_redacted_keep_no_key() {
        for (f, b) in [
            fixture!("ftc-neat.json"),
            fixture!("ftc-published-form.txt"),
        ] {
            let nid = if f.ends_with(".txt") { "3736" } else { "4567" };
            let (_, red) = parse_request(None, b, false, nid).unwrap();
            assert_eq!(red["key"], "<redacted>", "{f}");
            assert!(!red.to_string().contains("6nD1a7") && !red.to_string().contains("CJqVflob"));
        }
    }
}
