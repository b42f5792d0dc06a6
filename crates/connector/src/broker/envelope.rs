//! What an edge seals and the daemon opens: a callback as it was received
//! (method, content type, the `Authentication` header, body, arrival time),
//! or a one-click unsubscribe (its token). Carried as JSON inside the sealed
//! box; the `Authentication` header inside lets the daemon check again that
//! Mydex sent it, so a message sealed by anyone else who knows the public
//! key (it is public) changes nothing. The `Nats-Msg-Id` is a hash of the
//! request keyed with the Connection Token: the same request through any
//! edge gets the same id (JetStream stores it once), and the id says nothing
//! of the body to whoever reads the broker.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Why an opened envelope is not one of ours.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a sealed request of a known shape: {0}")]
    Shape(String),
    #[error("the body is not valid base64")]
    Body,
}

/// A callback as an edge received it, after its authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedCallback {
    /// `POST` or `PUT`.
    pub method: String,
    pub content_type: Option<String>,
    /// The `Authentication` header as received (lowercased).
    pub authentication: String,
    pub body: Vec<u8>,
    /// When the edge received it (ms since the Unix epoch).
    pub arrived_ms: u64,
}

/// A one-click unsubscribe as an edge received it: the token in its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedUnsubscribe {
    pub token: String,
    pub arrived_ms: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Wire {
    Callback {
        method: String,
        #[serde(default)]
        content_type: Option<String>,
        authentication: String,
        body: String,
        arrived_ms: u64,
    },
    Unsubscribe {
        token: String,
        arrived_ms: u64,
    },
}

type HmacSha256 = Hmac<Sha256>;

/// `HMAC-SHA256(connection token, parts joined by NUL)`, hex.
fn keyed_id(token: &[u8], parts: &[&[u8]]) -> String {
    // Any key length is accepted by HMAC.
    let mut mac = match HmacSha256::new_from_slice(token) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            mac.update(&[0]);
        }
        mac.update(p);
    }
    hex::encode(mac.finalize().into_bytes())
}

impl ReceivedCallback {
    /// The JSON to seal (cleared from memory when dropped).
    pub fn to_plain(&self) -> Zeroizing<Vec<u8>> {
        let wire = Wire::Callback {
            method: self.method.clone(),
            content_type: self.content_type.clone(),
            authentication: self.authentication.clone(),
            body: base64::engine::general_purpose::STANDARD.encode(&self.body),
            arrived_ms: self.arrived_ms,
        };
        Zeroizing::new(serde_json::to_vec(&wire).unwrap_or_default())
    }

    /// Its `Nats-Msg-Id`: the request (method, content type, body) hashed
    /// with the Connection Token.
    pub fn msg_id(&self, connection_token: &[u8]) -> String {
        let ctype = self.content_type.as_deref().unwrap_or("");
        let parts: [&[u8]; 4] = [
            b"callback",
            self.method.as_bytes(),
            ctype.as_bytes(),
            &self.body,
        ];
        keyed_id(connection_token, &parts)
    }
}

impl ReceivedUnsubscribe {
    pub fn to_plain(&self) -> Zeroizing<Vec<u8>> {
        let wire = Wire::Unsubscribe {
            token: self.token.clone(),
            arrived_ms: self.arrived_ms,
        };
        Zeroizing::new(serde_json::to_vec(&wire).unwrap_or_default())
    }

    pub fn msg_id(&self, connection_token: &[u8]) -> String {
        keyed_id(connection_token, &[b"unsubscribe", self.token.as_bytes()])
    }
}

/// What an opened box held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Callback(ReceivedCallback),
    Unsubscribe(ReceivedUnsubscribe),
}

impl Received {
    /// Parse an opened box.
    pub fn parse(plain: &[u8]) -> Result<Self, EnvelopeError> {
        let wire: Wire =
            serde_json::from_slice(plain).map_err(|e| EnvelopeError::Shape(e.to_string()))?;
        Ok(match wire {
            Wire::Callback {
                method,
                content_type,
                authentication,
                body,
                arrived_ms,
            } => {
                let body = base64::engine::general_purpose::STANDARD
                    .decode(body.as_bytes())
                    .map_err(|_| EnvelopeError::Body)?;
                if method != "POST" && method != "PUT" {
                    return Err(EnvelopeError::Shape(format!("method {method:?}")));
                }
                Received::Callback(ReceivedCallback {
                    method,
                    content_type,
                    authentication,
                    body,
                    arrived_ms,
                })
            }
            Wire::Unsubscribe { token, arrived_ms } => {
                Received::Unsubscribe(ReceivedUnsubscribe { token, arrived_ms })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callback_goes_round_and_its_id_is_keyed() {
        let cb = ReceivedCallback {
            method: "PUT".into(),
            content_type: Some("application/json".into()),
            authentication: "abc".into(),
            body: br#"{"key":"k-1"}"#.to_vec(),
            arrived_ms: 7,
        };
        let back = Received::parse(&cb.to_plain()).unwrap();
        assert_eq!(back, Received::Callback(cb.clone()));
        assert_eq!(cb.msg_id(b"t"), cb.msg_id(b"t"));
        assert_ne!(cb.msg_id(b"t"), cb.msg_id(b"u"));
        let mut other = cb.clone();
        other.body.push(b' ');
        assert_ne!(cb.msg_id(b"t"), other.msg_id(b"t"));
        assert!(Received::parse(b"{}").is_err());
        assert!(Received::parse(br#"{"kind":"callback","method":"GET","authentication":"","body":"","arrived_ms":1}"#).is_err());
    }
}
