//! How a Mydex call can fail, and Mydex's own message for the operator. The
//! API answers errors in three shapes (see docs/mydex-contract.md §2): all parsed.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum MydexError {
    /// Mydex refused the request; retrying the same request will not help.
    #[error("Mydex refused ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// Our OAuth2 client credentials were refused.
    #[error("Mydex OAuth2 refused our client credentials ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// Still failing after every retry (5xx, 429, timeouts, resets).
    #[error("Mydex unavailable after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
    /// Mydex refused our connection itself (a wrong NID, a rotated
    /// Connection Token, a 401 a fresh token did not cure): the same for
    /// every member, never one member's revocation (docs/mydex-contract.md §6).
    #[error("Mydex refuses our connection ({status}): {message}")]
    OurConnection { status: u16, message: String },
    /// The answer was not what the contract says.
    #[error("unexpected answer from Mydex: {0}")]
    Protocol(String),
}

impl MydexError {
    pub fn is_permanent(&self) -> bool {
        !matches!(self, MydexError::Unavailable { .. })
    }
}

/// One attempt's failure, before the retry decision.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AttemptError {
    #[error("{why}")]
    Transient {
        why: String,
        retry_after: Option<Duration>,
    },
    #[error("HTTP {status}: {message}")]
    Unauthorized { status: u16, message: String },
    #[error(transparent)]
    Permanent(MydexError),
}

/// Why no access token can be had now (for `/readyz`); it never holds a
/// secret.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TokenUnavailable(#[from] pub(crate) AttemptError);

const MAX_MESSAGE: usize = 500;

/// Mydex's message from an error body, whichever of the documented shapes:
/// `{"error":{"message":..,"reason":..}}`, `{"success":0,"message":..}`, or text.
pub fn error_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => {
            let err = v.get("error");
            let msg = err
                .and_then(|e| e.get("message").or(Some(e)))
                .and_then(|m| m.as_str())
                .or_else(|| v.get("message").and_then(|m| m.as_str()))
                .map(str::to_string);
            let reason = err.and_then(|e| e.get("reason")).and_then(|r| r.as_str());
            match (msg, reason) {
                (Some(m), Some(r)) if !r.is_empty() => format!("{m} ({r})"),
                (Some(m), _) => m,
                (None, _) => v.to_string(),
            }
        }
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    };
    let clean: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE)
        .collect();
    if clean.is_empty() {
        "(no message)".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_three_shapes() {
        assert_eq!(
            error_message(br#"{"error":{"message":"Access Denied: No Connection record"}}"#),
            "Access Denied: No Connection record"
        );
        assert_eq!(
            error_message(br#"{"success":0,"message":"version cannot be lower than 1"}"#),
            "version cannot be lower than 1"
        );
        assert_eq!(
            error_message(br#"{"error":{"message":"Unauthorized","reason":"token expired"}}"#),
            "Unauthorized (token expired)"
        );
        assert_eq!(
            error_message(b"<html>Bad gateway</html>"),
            "<html>Bad gateway</html>"
        );
        assert_eq!(error_message(b""), "(no message)");
        assert_eq!(error_message(&vec![b'x'; 10_000]).len(), MAX_MESSAGE);
    }
}
