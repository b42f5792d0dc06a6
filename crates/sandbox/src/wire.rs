//! How a sandbox callback goes on the wire: its kind (which sets the HTTP
//! method), the encoding chosen by `--callback-format`, and the PHP-bracket
//! form encoding. Both the sender (`callbacks.rs`) and the body shapes
//! (`shapes.rs`) use these, so they live apart from either.

use axum::http::Method;
use serde::Deserialize;
use serde_json::{Map, Value};

/// How callbacks are encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CallbackFormat {
    /// `application/json`
    Json,
    /// `application/x-www-form-urlencoded` with PHP-style brackets
    Form,
}

/// What a callback reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackKind {
    /// First Time Connection completed (POST, with `key`).
    Ftc,
    /// Update (re-consent) completed (PUT, without `key`).
    Update,
    /// Identify completed (POST, `type: identify`).
    Identify,
    /// PDX notification (POST, `type: notification`).
    Notification,
}

impl CallbackKind {
    pub fn name(self) -> &'static str {
        match self {
            CallbackKind::Ftc => "ftc",
            CallbackKind::Update => "update",
            CallbackKind::Identify => "identify",
            CallbackKind::Notification => "notification",
        }
    }

    pub fn method(self) -> Method {
        match self {
            CallbackKind::Update => Method::PUT,
            _ => Method::POST,
        }
    }
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Bool(b) => out.push((prefix.to_owned(), if *b { "1" } else { "0" }.to_owned())),
        Value::Number(n) => out.push((prefix.to_owned(), n.to_string())),
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{prefix}[{k}]"), v, out);
            }
        }
        Value::Array(items) => {
            let nested = items.iter().all(Value::is_array);
            for (i, v) in items.iter().enumerate() {
                let key = if nested {
                    format!("{prefix}[{i}]")
                } else {
                    format!("{prefix}[]")
                };
                flatten(&key, v, out);
            }
        }
    }
}

/// The PHP-bracket form encoding of a body, percent-encoded (brackets too).
pub fn form_encode(body: &Map<String, Value>) -> String {
    let mut pairs = Vec::new();
    for (k, v) in body {
        flatten(k, v, &mut pairs);
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode_component(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'*');
    percent_encoding::utf8_percent_encode(s, SET)
        .to_string()
        .replace("%20", "+")
}
