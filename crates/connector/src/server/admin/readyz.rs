//! `/readyz`: whether the daemon can do its work right now — the store
//! takes a small durable write, a Mydex access token can be had, the Mydex API has not been
//! failing lately (a quarter or more of the last 30 s of calls), the SMTP
//! server answers, Mydex has not refused our connection on the version
//! sweep's last status check (`mydex_connection`) — each
//! check reported on its own; 503 while any fails, so a load balancer or an
//! operator's probe sees it. With HTTPS on the callback listener,
//! `callback_tls`: a warning (in `warnings`, still ready) when the
//! certificate expires within 14 days, a failure once it has expired.
//! With `[nats]`, `nats_seal_key`: a failure while callbacks or
//! unsubscribes sealed to a key this daemon does not hold wait in NATS
//! (held, not lost: `broker/held.rs`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::admin_state::AdminState;

/// No check may hold the probe longer than this.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why Mydex's refusal of our connection keeps the daemon unready.
#[derive(Debug, thiserror::Error)]
enum ConnectionCheck {
    #[error("{0} (on a status check; clears when a later sweep's status check succeeds)")]
    Denied(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn verdict<E: std::fmt::Display>(
    r: Result<Result<(), E>, tokio::time::error::Elapsed>,
) -> serde_json::Value {
    match r {
        Ok(Ok(())) => json!({"ok": true}),
        Ok(Err(e)) => json!({"ok": false, "error": e.to_string()}),
        Err(_) => {
            json!({"ok": false, "error": format!("no answer within {}s", CHECK_TIMEOUT.as_secs())})
        }
    }
}

pub async fn readyz(State(st): State<Arc<AdminState>>) -> Response {
    let store = st.store.clone();
    let version = st.current_version;
    let store_check =
        tokio::time::timeout(CHECK_TIMEOUT, async move { store.probe(version).await });
    let mydex_check = tokio::time::timeout(CHECK_TIMEOUT, st.mydex.token_obtainable());
    let smtp_check = tokio::time::timeout(CHECK_TIMEOUT, st.mailer.reachable());
    let (store_r, mydex_r, smtp_r) = tokio::join!(store_check, mydex_check, smtp_check);
    let connection = match st
        .store
        .connection_denied(crate::pipeline::version_sweep::JOB)
        .await
    {
        Ok(None) => Ok(()),
        Ok(Some(d)) => Err(ConnectionCheck::Denied(d.reason)),
        Err(e) => Err(ConnectionCheck::Store(e)),
    };
    let mut checks = json!({
        "store": verdict(store_r),
        "mydex_token": verdict(mydex_r),
        "mydex_api": verdict(Ok(st.mydex.api_health())),
        "mydex_connection": verdict(Ok(connection)),
        "smtp": verdict(smtp_r),
    });
    if let Some(held) = &st.nats_held {
        checks["nats_seal_key"] = seal_key_check(held);
    }
    let mut warnings = Vec::new();
    if let Some(tls) = &st.tls {
        let (check, warning) = tls_check(tls);
        checks["callback_tls"] = check;
        warnings.extend(warning);
    }
    let ready = [
        "store",
        "mydex_token",
        "mydex_api",
        "mydex_connection",
        "smtp",
    ]
    .iter()
    .all(|k| checks[k]["ok"] == true)
        && ["callback_tls", "nats_seal_key"]
            .iter()
            .all(|k| checks.get(k).is_none_or(|c| c["ok"] == true));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"ready": ready, "checks": checks, "warnings": warnings})),
    )
        .into_response()
}

/// Whether messages sealed to another key wait in NATS: which keys, how
/// many, and what to do.
fn seal_key_check(held: &crate::broker::Held) -> serde_json::Value {
    let ours = held.ours().join(", ");
    let mut check = json!({"ok": true, "seal_key": held.ours().first()});
    if let Some(previous) = held.ours().get(1) {
        check["previous_seal_key"] = previous.as_str().into();
    }
    let keys = held.by_key(std::time::Instant::now());
    if keys.is_empty() {
        return check;
    }
    let waiting: Vec<String> = keys
        .iter()
        .map(|(fingerprint, n)| format!("{n} sealed to {fingerprint}"))
        .collect();
    let error = format!(
        "callbacks or unsubscribes sealed to another key are waiting in NATS, held (not lost): {}; this daemon opens {ours}. Restart it with the private key of that fingerprint (nats.seal_key_file, or nats.previous_seal_key_file while rotating), or give the edges this daemon's seal.pub",
        waiting.join(", ")
    );
    check["ok"] = false.into();
    check["error"] = error.into();
    check["held"] = json!(keys);
    check
}

/// The certificate's check, and a warning when it is near its end.
fn tls_check(tls: &crate::server::tls::CallbackTls) -> (serde_json::Value, Option<String>) {
    use crate::server::tls::{Expiry, WARN_DAYS, expiry, unix_now};
    let pair = tls.current();
    let expires = chrono::DateTime::from_timestamp(pair.not_after, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    let mut check = json!({"ok": true, "serial": pair.serial, "expires": expires});
    let mut warning = None;
    match expiry(pair.not_after, unix_now()) {
        Expiry::Fine { days_left } => check["days_left"] = days_left.into(),
        Expiry::Soon { days_left } => {
            let w = format!(
                "callback certificate {} expires in {days_left} days ({expires}), within {WARN_DAYS}: renew it and reload (SIGHUP)",
                pair.serial
            );
            check["days_left"] = days_left.into();
            check["warning"] = w.clone().into();
            warning = Some(w);
        }
        Expiry::Expired => {
            check["ok"] = false.into();
            check["error"] = format!(
                "callback certificate {} expired at {expires}: Mydex cannot deliver callbacks",
                pair.serial
            )
            .into();
        }
    }
    (check, warning)
}
