//! How we read a Mydex HTTP answer, for the API client and the OAuth2
//! token fetch alike: transport errors in words, `Retry-After`, and a body
//! read with a size limit.

use std::time::Duration;

use super::error::{AttemptError, MydexError};

/// Largest answer body we read from Mydex.
const MAX_BODY: usize = 1 << 20;

pub(super) fn transport_error(what: &str, e: &reqwest::Error) -> AttemptError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    AttemptError::Transient {
        why: format!("{kind}: {what} request failed: {}", error_chain(e)),
        retry_after: None,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

pub(super) fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    retry_after_value(v, std::time::SystemTime::now())
}

/// A `Retry-After` value (RFC 9110 §10.2.3): delay seconds, or an HTTP date
/// (IMF-fixdate, or the obsolete RFC 850 and asctime forms) read against
/// `now`; a date already past means no wait. Anything else: `None`.
fn retry_after_value(v: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Read at most `MAX_BODY` bytes of an answer; a larger one is a protocol error.
pub(super) async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, AttemptError> {
    if resp.content_length().is_some_and(|n| n as usize > MAX_BODY) {
        return Err(AttemptError::Permanent(MydexError::Protocol(format!(
            "answer larger than {MAX_BODY} bytes"
        ))));
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > MAX_BODY {
                    return Err(AttemptError::Permanent(MydexError::Protocol(format!(
                        "answer larger than {MAX_BODY} bytes"
                    ))));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(transport_error("reading answer", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date.
    const EXAMPLE: u64 = 784_111_777;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn retry_after_in_seconds() {
        let now = SystemTime::now();
        assert_eq!(
            retry_after_value("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(retry_after_value(" 0 ", now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_as_a_date_in_the_future() {
        let now = at(EXAMPLE - 90);
        let want = Some(Duration::from_secs(90));
        assert_eq!(
            retry_after_value("Sun, 06 Nov 1994 08:49:37 GMT", now),
            want
        );
        // The obsolete forms RFC 9110 still asks recipients to read.
        assert_eq!(
            retry_after_value("Sunday, 06-Nov-94 08:49:37 GMT", now),
            want
        );
        assert_eq!(retry_after_value("Sun Nov  6 08:49:37 1994", now), want);
        // Against the real clock, as the client reads it.
        let soon = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let wait = retry_after_value(&soon, SystemTime::now()).expect("a date");
        assert!(
            wait <= Duration::from_secs(30) && wait >= Duration::from_secs(20),
            "{wait:?}"
        );
    }

    #[test]
    fn retry_after_as_a_date_in_the_past_means_no_wait() {
        assert_eq!(
            retry_after_value("Sun, 06 Nov 1994 08:49:37 GMT", at(EXAMPLE + 3600)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after_value("Sun, 06 Nov 1994 08:49:37 GMT", SystemTime::now()),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        let now = SystemTime::now();
        for v in [
            "",
            "soon",
            "-5",
            "1.5",
            "2026-12-01T21:00:00Z",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "99999999999999999999999",
        ] {
            assert_eq!(retry_after_value(v, now), None, "{v:?}");
        }
    }
}
