//! The admin API's bearer-token check for state-changing calls, compared in
//! constant time. Without `admin.token_file` such calls are refused.

use axum::http::{HeaderMap, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// `Ok` when `headers` carry `Authorization: Bearer {expected}`.
pub fn check(
    headers: &HeaderMap,
    expected: Option<&SecretString>,
) -> Result<(), (StatusCode, &'static str)> {
    let Some(expected) = expected else {
        return Err((
            StatusCode::FORBIDDEN,
            "admin.token_file is not configured: state-changing calls are refused",
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .trim();
    let expected = expected.expose_secret().as_bytes();
    // Length differences leak only the length; the bytes compare in constant time.
    let ok = given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected));
    if ok {
        Ok(())
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (admin.token_file)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer() {
        let t = SecretString::from("0123456789abcdef".to_string());
        let mut h = HeaderMap::new();
        assert_eq!(check(&h, Some(&t)).unwrap_err().0, StatusCode::UNAUTHORIZED);
        h.insert("authorization", "Bearer 0123456789abcdeX".parse().unwrap());
        assert!(check(&h, Some(&t)).is_err());
        h.insert("authorization", "Bearer 0123456789abcdef".parse().unwrap());
        assert!(check(&h, Some(&t)).is_ok());
        assert_eq!(check(&h, None).unwrap_err().0, StatusCode::FORBIDDEN);
    }
}
