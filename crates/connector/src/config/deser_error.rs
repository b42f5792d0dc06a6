//! What the `config` crate says when the merged values do not fit the
//! file's shape, turned into the key it is about and words an operator
//! reads: an unknown key gets "did you mean `client_id`?" (the closest of
//! the keys its section has), never the whole list.

/// The key (`section.key`, `campaign[0].rate`; empty: the top level) and
/// what is wrong with it.
pub(super) fn key_and_message(e: config::ConfigError) -> (String, String) {
    let (key, message) = match e {
        config::ConfigError::At { error, key, .. } => (key.unwrap_or_default(), error.to_string()),
        config::ConfigError::Type {
            unexpected,
            expected,
            key,
            ..
        } => (
            key.unwrap_or_default(),
            format!("expected {expected}, found {unexpected}"),
        ),
        other => (String::new(), other.to_string()),
    };
    match unknown_field(&message) {
        Some((field, expected)) => {
            let key = match key.is_empty() {
                true => field.to_string(),
                false => format!("{key}.{field}"),
            };
            let what = if key.contains('.') { "key" } else { "section" };
            let message = match suggestion(field, &expected) {
                Some(s) => format!("unknown {what}; did you mean `{s}`?"),
                None => format!("unknown {what}"),
            };
            (key, message)
        }
        None => (key, message),
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`",
/// or "there are no fields"): the field and the expected names.
fn unknown_field(message: &str) -> Option<(&str, Vec<&str>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    let (field, tail) = (&rest[..end], &rest[end + 1..]);
    let expected = tail.split('`').skip(1).step_by(2).collect();
    Some((field, expected))
}

/// The expected name closest to `field`, when it is close enough to be the
/// one meant (a typo, a transposition, a missing or extra letter).
fn suggestion<'e>(field: &str, expected: &[&'e str]) -> Option<&'e str> {
    let field = field.to_ascii_lowercase();
    expected
        .iter()
        .map(|e| (strsim::jaro_winkler(&field, e), *e))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, e)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_gets_the_key_meant() {
        let all = [
            "environment",
            "api_url",
            "token_url",
            "client_id",
            "client_secret_file",
            "connection_nid",
        ];
        assert_eq!(suggestion("clinet_id", &all), Some("client_id"));
        assert_eq!(
            suggestion("client_secret", &all),
            Some("client_secret_file")
        );
        assert_eq!(suggestion("enviroment", &all), Some("environment"));
        assert_eq!(suggestion("zzz", &all), None);
        let msg = "unknown field `clinet_id`, expected one of `api_url`, `client_id`";
        assert_eq!(
            unknown_field(msg),
            Some(("clinet_id", vec!["api_url", "client_id"]))
        );
        assert_eq!(
            unknown_field("unknown field `x`, there are no fields"),
            Some(("x", vec![]))
        );
    }
}
