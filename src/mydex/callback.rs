//! The bodies Mydex POSTs and PUTs to our callback URL (MYDEX-CONTRACT.md §5),
//! parsed once from JSON or PHP-bracket form into typed values. A body with
//! `type` is identify or notification; without, FTC (POST) or update (PUT).

use secrecy::SecretString;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::domain::{LinkingToken, MydexId};
use crate::store::{Credentials, Event};

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
    /// The encoding of a body from its `Content-Type` header.
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
            _ => Err(UnsupportedEncoding),
        }
    }
}

/// Parse a callback request's body given its `Content-Type` header: the one
/// entry point the callback server calls.
pub fn parse_request(
    content_type: Option<&str>,
    body: &[u8],
    is_put: bool,
    nid: &str,
) -> Result<(Callback, Value), CallbackError> {
    let encoding = Encoding::from_content_type(content_type)?;
    parse(encoding, body, is_put, nid)
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
        Some(t) => match t.as_str() {
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
        },
        None => {
            let uid = uid(obj.get("uid"))?;
            let connection_id = text(obj, "connection_id", 64)?;
            if connection_id != format!("{uid}-{nid}") {
                return Err(CallbackError::Invalid(
                    "connection_id",
                    format!("must be \"{{uid}}-{nid}\""),
                ));
            }
            let key = match obj.get("key") {
                None | Some(Value::Null) if is_put => None,
                None | Some(Value::Null) => return Err(CallbackError::Missing("key")),
                Some(Value::String(k))
                    if !k.is_empty() && k.len() <= 512 && !k.chars().any(char::is_control) =>
                {
                    Some(SecretString::from(k.clone()))
                }
                Some(_) => {
                    return Err(CallbackError::Invalid(
                        "key",
                        "must be a non-empty string of at most 512 characters".into(),
                    ));
                }
            };
            let fields = match obj.get("fields") {
                None | Some(Value::Null) => Value::Null,
                Some(v @ (Value::Object(_) | Value::Array(_))) => v.clone(),
                Some(_) => {
                    return Err(CallbackError::Invalid(
                        "fields",
                        "must be an object or array".into(),
                    ));
                }
            };
            let creds = Credentials {
                uid,
                mydexid: mydexid(obj.get("mydexid"))?,
                key,
                connection_id,
                fields,
                linking_token: linking_token(obj.get("linking_token"))?,
            };
            if is_put {
                Callback::Update(creds)
            } else {
                Callback::Connect(creds)
            }
        }
    };
    Ok((callback, redact(value)))
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

fn uid(v: Option<&Value>) -> Result<u64, CallbackError> {
    match v {
        None | Some(Value::Null) => Err(CallbackError::Missing("uid")),
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| CallbackError::Invalid("uid", "must be a positive integer".into())),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| CallbackError::Invalid("uid", "must be a positive integer".into())),
        Some(_) => Err(CallbackError::Invalid(
            "uid",
            "must be a positive integer".into(),
        )),
    }
}

fn mydexid(v: Option<&Value>) -> Result<Option<MydexId>, CallbackError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => MydexId::parse(s)
            .map(Some)
            .map_err(|e| CallbackError::Invalid("mydexid", e.to_string())),
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
        assert!(matches!(
            p(br#"{"uid":"x","key":"k","connection_id":"1-45678"}"#, false),
            Err(CallbackError::Invalid("uid", _))
        ));
        assert!(matches!(
            p(br#"{"uid":1,"key":"k","connection_id":"1-99"}"#, false),
            Err(CallbackError::Invalid("connection_id", _))
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
}
