//! The PDS data calls (docs/mydex-contract.md §8): create rows in a
//! member's transactional dataset, once (Mydex has no idempotency key, so a
//! POST is never retried here after it may have reached Mydex), and read
//! rows back by `external_id`. The member key travels in the URL query: no
//! URL, query or key is ever formatted into an error, a log line or a
//! metric label (errors come from `reqwest::Error::without_url`), and
//! redirects are not followed (one would carry the key on).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};

use super::client::MydexClient;
use super::error::{AttemptError, error_message};
use super::status_answer::about_our_connection;
use crate::config::MydexSettings;

const CREATE: &str = "/api/pds/transaction";
const READ: &str = "/api/pds/transaction/read";

/// What a read-back found: `external_id` → Mydex's row id.
pub type Found = HashMap<String, String>;

/// The member a call is for (their key stays secret).
pub struct PdsMember<'a> {
    pub uid: u64,
    pub connection_id: &'a str,
    pub key: &'a SecretString,
}

/// What one create call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// Nothing reached Mydex (no connection, no token).
    NotSent(String),
    /// Mydex refused our connection itself: pause, never hold rows.
    OurConnection(String),
    /// Mydex refused this member or dataset (403): hold the rows.
    Refused(String),
    /// Any other 4xx: the rows fail with Mydex's message.
    Failed(String),
    /// Sent, no usable answer (5xx, 429, timeout, reset): read back.
    Unknown(String),
}

/// Why a read-back did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the dataset is not readable: {0}")]
    Forbidden(String),
    #[error("{0}")]
    Unavailable(String),
}

/// The PDS calls, sharing the API client's token cache.
pub struct PdsClient {
    mydex: Arc<MydexClient>,
    http: reqwest::Client,
    create_url: reqwest::Url,
    read_base: reqwest::Url,
}

impl PdsClient {
    pub fn new(settings: &MydexSettings, mydex: Arc<MydexClient>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .user_agent(concat!("mydex-connector/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mut create_url = settings.api_url.clone();
        let base = create_url.path().trim_end_matches('/').to_string();
        create_url.set_path(&format!("{base}{CREATE}"));
        let mut read_base = settings.api_url.clone();
        read_base.set_path(&format!("{base}/api/pds/transaction/"));
        Ok(Self {
            mydex,
            http,
            create_url,
            read_base,
        })
    }

    fn query(&self, url: &mut reqwest::Url, m: &PdsMember<'_>, dataset: &str) {
        url.query_pairs_mut()
            .append_pair("uid", &m.uid.to_string())
            .append_pair("con_id", m.connection_id)
            .append_pair("key", m.key.expose_secret())
            .append_pair("source_type", "connection")
            .append_pair("instance", "0")
            .append_pair("dataset", dataset);
    }

    /// POST `{dataset: [rows]}` once; a 401 (refused before it was
    /// processed) is sent again once with a fresh token.
    pub async fn create_once(
        &self,
        m: &PdsMember<'_>,
        dataset: &str,
        rows: &[serde_json::Value],
    ) -> CreateOutcome {
        let mut url = self.create_url.clone();
        self.query(&mut url, m, dataset);
        let body = serde_json::json!({ dataset: rows });
        for attempt in 0..2 {
            let token = match self.mydex.bearer().await {
                Ok(t) => t,
                Err(e) => return CreateOutcome::NotSent(format!("no access token: {e}")),
            };
            let started = Instant::now();
            let sent = self
                .http
                .post(url.clone())
                .bearer_auth(token.expose_secret())
                .json(&body)
                .send()
                .await;
            let outcome = classify(sent).await;
            let (label, failed) = outcome_label(&outcome);
            self.mydex
                .note_call(CREATE, &label, started.elapsed(), failed.as_deref());
            match outcome {
                Answer::Unauthorized if attempt == 0 => self.mydex.drop_token().await,
                Answer::Unauthorized => {
                    return CreateOutcome::NotSent("Mydex answered 401 to a fresh token".into());
                }
                Answer::Ok(_) => return CreateOutcome::Created,
                Answer::Connect(why) => return CreateOutcome::NotSent(why),
                Answer::Transient(why) => return CreateOutcome::Unknown(why),
                Answer::Status(403, msg) => return refusal(msg),
                Answer::Status(_, msg) => return CreateOutcome::Failed(msg),
            }
        }
        CreateOutcome::NotSent("Mydex answered 401".into())
    }

    /// The rows of `dataset` whose `external_id` is one of `ids`
    /// (`external_id` → Mydex's row id), read one id at a time with a
    /// filter, and filtered here too (in case the filter is ignored).
    pub async fn read_external_ids(
        &self,
        m: &PdsMember<'_>,
        dataset: &str,
        ids: &[String],
    ) -> Result<Found, ReadError> {
        let mut found = HashMap::new();
        for id in ids {
            if found.contains_key(id) {
                continue;
            }
            let rows = self.read_one(m, dataset, id).await?;
            let all = rows.len() > 1 && rows.iter().any(|(e, _)| e != id);
            for (e, pds_id) in rows {
                found.entry(e).or_insert(pds_id);
            }
            if all {
                // Mydex ignored the filter: this answer holds every row.
                break;
            }
        }
        found.retain(|k, _| ids.contains(k));
        Ok(found)
    }

    async fn read_one(
        &self,
        m: &PdsMember<'_>,
        dataset: &str,
        external_id: &str,
    ) -> Result<Vec<(String, String)>, ReadError> {
        let mut url = self.read_base.clone();
        let path = format!("{}{}.json", url.path(), m.uid);
        url.set_path(&path);
        self.query(&mut url, m, dataset);
        url.query_pairs_mut()
            .append_pair("filters[external_id][operator]", "=")
            .append_pair("filters[external_id][value]", external_id);
        let mut last = String::new();
        for attempt in 0..4u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let token = match self.mydex.bearer().await {
                Ok(t) => t,
                Err(e) => return Err(ReadError::Unavailable(format!("no access token: {e}"))),
            };
            let started = Instant::now();
            let sent = self
                .http
                .get(url.clone())
                .bearer_auth(token.expose_secret())
                .send()
                .await;
            let outcome = classify(sent).await;
            let (label, failed) = outcome_label(&outcome);
            self.mydex
                .note_call(READ, &label, started.elapsed(), failed.as_deref());
            match outcome {
                Answer::Ok(body) => return parse_rows(&body),
                Answer::Unauthorized => self.mydex.drop_token().await,
                Answer::Status(403, msg) => return Err(ReadError::Forbidden(msg)),
                Answer::Status(s, msg) => {
                    return Err(ReadError::Unavailable(format!("HTTP {s}: {msg}")));
                }
                Answer::Connect(why) | Answer::Transient(why) => last = why,
            }
        }
        Err(ReadError::Unavailable(last))
    }
}

fn refusal(msg: String) -> CreateOutcome {
    let m = msg.to_ascii_lowercase();
    let member_level = m.contains("no write access") || m.contains("permission denied");
    if !member_level && about_our_connection(&msg) {
        CreateOutcome::OurConnection(msg)
    } else {
        CreateOutcome::Refused(msg)
    }
}

/// One HTTP exchange, by what it means for a PDS call.
enum Answer {
    Ok(Vec<u8>),
    Unauthorized,
    /// The request never left (connect error).
    Connect(String),
    /// 5xx, 429, timeout, reset: the request may have been processed.
    Transient(String),
    Status(u16, String),
}

async fn classify(sent: Result<reqwest::Response, reqwest::Error>) -> Answer {
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return transport(e),
    };
    let status = resp.status().as_u16();
    let body = match super::http::read_limited(resp).await {
        Ok(b) => b,
        Err(AttemptError::Transient { why, .. }) => return Answer::Transient(why),
        Err(e) => return Answer::Transient(e.to_string()),
    };
    match status {
        200..=299 => Answer::Ok(body),
        401 => Answer::Unauthorized,
        429 | 500..=599 => Answer::Transient(format!("HTTP {status}: {}", error_message(&body))),
        s => Answer::Status(s, error_message(&body)),
    }
}

/// A transport error in words, without its URL (which holds the key).
fn transport(e: reqwest::Error) -> Answer {
    let connect = e.is_connect();
    let kind = if e.is_timeout() {
        "timeout"
    } else if connect {
        "connect"
    } else {
        "transport"
    };
    let e = e.without_url();
    let mut why = format!("{kind}: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(inner) = src {
        why.push_str(": ");
        why.push_str(&inner.to_string());
        src = inner.source();
    }
    if connect {
        Answer::Connect(why)
    } else {
        Answer::Transient(why)
    }
}

fn outcome_label(a: &Answer) -> (String, Option<String>) {
    match a {
        Answer::Ok(_) => ("ok".into(), None),
        Answer::Unauthorized => ("401".into(), None),
        Answer::Connect(w) => ("transient:connect".into(), Some(w.clone())),
        Answer::Transient(w) => (
            format!("transient:{}", w.split(':').next().unwrap_or("")),
            Some(w.clone()),
        ),
        Answer::Status(s, _) => (s.to_string(), None),
    }
}

/// A transactional read's answer: an object keyed by row id (`[]` when
/// empty, as PHP encodes it), each row flat with string values. Returns
/// (external_id, row id) for rows that carry an `external_id`.
pub fn parse_rows(body: &[u8]) -> Result<Vec<(String, String)>, ReadError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ReadError::Unavailable(format!("read answer is not JSON: {e}")))?;
    let rows: Vec<(String, &serde_json::Value)> = match &v {
        serde_json::Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        serde_json::Value::Array(items) => items.iter().map(|v| (String::new(), v)).collect(),
        _ => {
            return Err(ReadError::Unavailable(
                "read answer is neither an object nor a list".into(),
            ));
        }
    };
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    Ok(rows
        .into_iter()
        .filter_map(|(key, row)| {
            let ext = text(row.get("external_id")?)?;
            let id = row.get("id").and_then(text).unwrap_or(key);
            Some((ext, id))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_answers_in_every_shape() {
        assert_eq!(parse_rows(b"[]").unwrap(), vec![]);
        assert_eq!(parse_rows(b"{}").unwrap(), vec![]);
        let rows = parse_rows(br#"{"5": {"id": "5", "ds_id": "5", "external_id": "r1", "kwh": "2"}, "6": {"external_id": 7}}"#).unwrap();
        assert_eq!(
            rows,
            vec![("r1".into(), "5".into()), ("7".into(), "6".into())]
        );
        assert!(parse_rows(b"nope").is_err());
        assert!(parse_rows(b"3").is_err());
    }

    #[test]
    fn refusals_about_a_member_hold_and_about_us_pause() {
        assert!(matches!(
            refusal("Permission Denied".into()),
            CreateOutcome::Refused(_)
        ));
        assert!(matches!(
            refusal("Access Denied: no write access to dataset ds_x".into()),
            CreateOutcome::Refused(_)
        ));
        assert!(matches!(
            refusal("Access Denied: Invalid connection token".into()),
            CreateOutcome::OurConnection(_)
        ));
    }

    #[tokio::test]
    async fn a_transport_error_names_no_url_or_key() {
        let url = "http://127.0.0.1:9/api/pds/transaction?uid=1&key=SECRETKEY123";
        let e = reqwest::Client::new().post(url).send().await.unwrap_err();
        let Answer::Connect(why) = transport(e) else {
            panic!("not a connect error")
        };
        assert!(
            !why.contains("SECRETKEY123") && !why.contains("key="),
            "{why}"
        );
    }
}
