//! The server-to-server calls Mydex makes to the subscriber's callback URL
//! (`docs/mydex-contract.md` §5): their bodies, their two encodings (JSON, and the
//! PHP-bracket form encoding of older integrations), the `Authentication`
//! header, and delivery with a few retries.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::state::{AppState, CallbackRecord};
use super::wire::CallbackKind;

/// A callback ready to send.
#[derive(Debug, Clone)]
pub struct Callback {
    pub kind: CallbackKind,
    pub body: Map<String, Value>,
    pub linking_token: Option<String>,
}

/// The outcome of delivering one callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The last HTTP status received, or None if no attempt got an answer.
    pub status: Option<u16>,
    pub attempts: u32,
}

/// The permissions granted at `version`, in Mydex's bracket structure.
///
/// Each element of an innermost list carries a single leaf, so the form
/// encoding (`fields[x][0][][access][r][a]=1`, where PHP's `[]` appends a new
/// element per key) decodes back to exactly this JSON.
pub fn fields_for_version(version: u32) -> Value {
    let grant = |read: u8, write: u8, style: &str| {
        json!([[
            {"access": {"r": {"a": read}}},
            {"access": {"r": {"s": style}}},
            {"access": {"w": {"a": write}}},
            {"access": {"w": {"s": style}}}
        ]])
    };
    let mut fields = Map::new();
    fields.insert("field_ds_personal_details".into(), grant(1, 0, "A"));
    fields.insert("field_ds_contact_details".into(), grant(1, 1, "A"));
    // What a meter subscriber connects for: written at every version.
    fields.insert("field_ds_energy_readings".into(), grant(1, 1, "A"));
    if version >= 2 {
        fields.insert("field_ds_events".into(), grant(1, 1, "R"));
    }
    Value::Object(fields)
}

/// Body of an FTC (with `key`) or update (without) callback.
pub fn connection_body(
    uid: u64,
    mydexid: &str,
    key: Option<&str>,
    nid: &str,
    version: u32,
    linking_token: Option<&str>,
) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("uid".into(), json!(uid));
    body.insert("mydexid".into(), json!(mydexid));
    if let Some(key) = key {
        body.insert("key".into(), json!(key));
    }
    body.insert("connection_id".into(), json!(format!("{uid}-{nid}")));
    body.insert("fields".into(), fields_for_version(version));
    if let Some(t) = linking_token {
        body.insert("linking_token".into(), json!(t));
    }
    body
}

/// Body of an identify callback.
pub fn identify_body(mydexid: &str, linking_token: Option<&str>) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("type".into(), json!("identify"));
    body.insert("mydexid".into(), json!(mydexid));
    if let Some(t) = linking_token {
        body.insert("linking_token".into(), json!(t));
    }
    body
}

/// Body of a notification callback (`uid` is a string, as documented).
pub fn notification_body(
    uid: u64,
    nid: &str,
    dataset: &str,
    action: &str,
    updated_id: &str,
    message: Option<&str>,
) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("type".into(), json!("notification"));
    body.insert("uid".into(), json!(uid.to_string()));
    let message = message
        .map(str::to_owned)
        .unwrap_or_else(|| format!("Data for member {uid} has changed"));
    body.insert("message".into(), json!(message));
    body.insert("dataset".into(), json!(dataset));
    body.insert("connection_id".into(), json!(format!("{uid}-{nid}")));
    body.insert("action".into(), json!(action));
    body.insert("updated_id".into(), json!(updated_id));
    body
}

/// Send a callback, retrying connection failures, 5xx and 429.
pub async fn deliver(state: &AppState, cb: Callback) -> Delivery {
    let (url, format, retries, shape) = {
        let s = state.settings.read();
        (
            s.callback_url.clone(),
            s.callback_format,
            s.callback_retries,
            s.callback_shape,
        )
    };
    let shape = shape.next(&state.shape_turn);
    let wire = super::shapes::shape(shape, format, cb.kind, &cb.body);
    let delivery = send_with_retries(state, cb.kind, &url, &wire, retries).await;
    if !delivery.status.is_some_and(|s| (200..300).contains(&s)) {
        tracing::error!(
            kind = cb.kind.name(),
            %url,
            attempts = delivery.attempts,
            "callback not delivered"
        );
    }
    state.log_callback(CallbackRecord {
        method: cb.kind.method().to_string(),
        kind: cb.kind.name().to_owned(),
        status: delivery.status,
        attempts: delivery.attempts,
        linking_token: cb.linking_token,
        url,
        shape: shape.name(),
    });
    delivery
}

/// Send `wire` to `url` once, then up to `retries` more times (with a
/// growing pause) while the answer is a connection failure, a 5xx or a 429.
async fn send_with_retries(
    state: &AppState,
    kind: CallbackKind,
    url: &str,
    wire: &super::shapes::Wire,
    retries: u32,
) -> Delivery {
    let mut delivery = Delivery {
        status: None,
        attempts: 0,
    };
    for attempt in 0..=retries {
        if attempt > 0 {
            let backoff = Duration::from_millis(100u64 << attempt.min(5));
            tokio::time::sleep(backoff).await;
        }
        delivery.attempts += 1;
        let mut request = state
            .http
            .request(kind.method(), url)
            .header("Authentication", &state.connection.token_hash);
        if let Some(ct) = wire.content_type {
            request = request.header("Content-Type", ct);
        }
        match request.body(wire.payload.clone()).send().await {
            Ok(resp) => {
                let status = resp.status();
                delivery.status = Some(status.as_u16());
                if status.is_success() {
                    break;
                }
                tracing::warn!(
                    kind = kind.name(),
                    %url,
                    status = status.as_u16(),
                    attempt = delivery.attempts,
                    "callback answered with an error"
                );
                if !(status.is_server_error() || status.as_u16() == 429) {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(
                    kind = kind.name(),
                    %url,
                    attempt = delivery.attempts,
                    error = %e,
                    "callback delivery failed"
                );
            }
        }
    }
    delivery
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::form_encode;

    #[test]
    fn form_encoding_matches_the_contract_example() {
        let body = connection_body(1, "RBFish123", Some("CJqV"), "3736", 1, None);
        let form = form_encode(&body);
        assert!(form.contains("connection_id=1-3736"));
        assert!(form.contains("uid=1"));
        assert!(form.contains("mydexid=RBFish123"));
        assert!(form.contains("key=CJqV"));
        assert!(form.contains(
            "fields%5Bfield_ds_personal_details%5D%5B0%5D%5B%5D%5Baccess%5D%5Br%5D%5Ba%5D=1"
        ));
    }
}
