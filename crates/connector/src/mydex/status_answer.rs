//! What a `/connection/status` answer means (docs/mydex-contract.md §4, §6):
//! an answer about one member (not active: `"false"` values, a member-level
//! `Permission Denied`) is kept apart from an answer about *our* connection
//! (`Access Denied: No Connection record`, `Access Denied: Invalid Connection
//! Token`, a 401 a fresh token did not cure), which is the same for every
//! member and must never read as every member having revoked.

use super::error::{MydexError, error_message};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStatus {
    pub exists: bool,
    pub active: bool,
    pub version: Option<u32>,
}

/// The messages Mydex gives when it refuses our connection itself.
const OUR_CONNECTION: [&str; 2] = ["no connection record", "invalid connection token"];

/// Whether an error message is about our connection (NID, Connection Token)
/// rather than one member's.
pub(super) fn about_our_connection(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    OUR_CONNECTION.iter().any(|k| m.contains(k)) || m.trim_start().starts_with("access denied:")
}

fn not_active() -> ConnectionStatus {
    ConnectionStatus {
        exists: false,
        active: false,
        version: None,
    }
}

/// A failed status call: a member's inactive connection, our connection
/// refused (`MydexError::OurConnection`), or an error as it was.
pub(crate) fn from_error(e: MydexError) -> Result<ConnectionStatus, MydexError> {
    match e {
        MydexError::Rejected { status, message } if about_our_connection(&message) => {
            Err(MydexError::OurConnection { status, message })
        }
        // "Permission Denied" (or no such member): that member is not active.
        MydexError::Rejected {
            status: 403 | 404, ..
        } => Ok(not_active()),
        // A 401 after a fresh token, or our client credentials refused.
        MydexError::Unauthorized { status, message } => {
            Err(MydexError::OurConnection { status, message })
        }
        e => Err(e),
    }
}

/// A 2xx status answer: the member's state, or an error body sent with a
/// 2xx (read the same way as the error answers).
pub(crate) fn from_body(status: u16, body: &[u8]) -> Result<ConnectionStatus, MydexError> {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            let message = error_message(body);
            if about_our_connection(&message) {
                return Err(MydexError::OurConnection { status, message });
            }
            return Err(MydexError::Protocol(format!(
                "connection status is not JSON: {message}"
            )));
        }
    };
    let has = |k: &str| v.get(k).is_some();
    if !has("exists") && !has("status") {
        let message = error_message(body);
        if has("error") || has("message") {
            if about_our_connection(&message) {
                return Err(MydexError::OurConnection { status, message });
            }
            if message.to_ascii_lowercase().contains("permission denied") {
                return Ok(not_active());
            }
        }
        return Err(MydexError::Protocol(format!(
            "connection status answer has neither exists nor status: {message}"
        )));
    }
    let truthy = |k: &str| match v.get(k) {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s == "true" || s == "1",
        Some(serde_json::Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    };
    let version = match v.get("version") {
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    Ok(ConnectionStatus {
        exists: truthy("exists"),
        active: truthy("status"),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(status: u16, body: &[u8]) -> Result<ConnectionStatus, MydexError> {
        from_error(MydexError::Rejected {
            status,
            message: error_message(body),
        })
    }

    fn ours(r: Result<ConnectionStatus, MydexError>) -> bool {
        matches!(r, Err(MydexError::OurConnection { .. }))
    }

    #[test]
    fn our_connection_in_every_shape() {
        for status in [400, 401, 403, 404] {
            assert!(ours(rejected(
                status,
                br#"{"error":{"message":"Access Denied: No Connection record"}}"#
            )));
            assert!(ours(rejected(
                status,
                br#"{"error":{"message":"Access Denied: Invalid Connection Token"}}"#
            )));
            assert!(ours(rejected(
                status,
                br#"{"success":0,"message":"Access Denied: No Connection record"}"#
            )));
            assert!(ours(rejected(
                status,
                b"Access Denied: Invalid Connection Token"
            )));
            assert!(ours(rejected(
                status,
                b"  access denied: missing connection parameters in payload"
            )));
        }
        // In a 2xx body too.
        assert!(ours(from_body(
            200,
            br#"{"error":{"message":"Access Denied: No Connection record"}}"#
        )));
        assert!(ours(from_body(200, b"Access Denied: No Connection record")));
        // A 401 a fresh token did not cure.
        assert!(ours(from_error(MydexError::Unauthorized {
            status: 401,
            message: "Access Denied (token expired)".into()
        })));
    }

    #[test]
    fn member_not_active() {
        let inactive = Some(not_active());
        for body in [
            &br#"{"error":{"message":"Permission Denied"}}"#[..],
            br#"{"success":0,"message":"Permission Denied"}"#,
            b"Permission Denied",
            b"",
        ] {
            assert_eq!(rejected(403, body).ok(), inactive);
            assert_eq!(rejected(404, body).ok(), inactive);
        }
        assert_eq!(
            from_body(200, br#"{"error":{"message":"Permission Denied"}}"#).ok(),
            inactive
        );
        let s = from_body(200, br#"{"exists":"false","status":"false"}"#).unwrap();
        assert!(!s.exists && !s.active);
        let s = from_body(200, br#"{"exists":"true","status":"false","version":"2"}"#).unwrap();
        assert!(s.exists && !s.active);
        assert_eq!(s.version, Some(2));
    }

    #[test]
    fn active_in_every_type() {
        for body in [
            &br#"{"exists":"true","status":"true","version":"3"}"#[..],
            br#"{"exists":true,"status":true,"version":3}"#,
            br#"{"exists":1,"status":"1","version":" 3 "}"#,
        ] {
            assert_eq!(
                from_body(200, body).unwrap(),
                ConnectionStatus {
                    exists: true,
                    active: true,
                    version: Some(3)
                }
            );
        }
    }

    #[test]
    fn other_errors_stay_errors() {
        assert!(matches!(
            rejected(
                400,
                br#"{"success":0,"message":"Following fields are missing or empty: uid"}"#
            ),
            Err(MydexError::Rejected { status: 400, .. })
        ));
        let e = MydexError::Unavailable {
            attempts: 5,
            last: "HTTP 503".into(),
        };
        assert!(matches!(from_error(e), Err(MydexError::Unavailable { .. })));
        assert!(matches!(
            from_body(200, b"<html>hello</html>"),
            Err(MydexError::Protocol(_))
        ));
        assert!(matches!(
            from_body(200, br#"{"hello":1}"#),
            Err(MydexError::Protocol(_))
        ));
    }
}
