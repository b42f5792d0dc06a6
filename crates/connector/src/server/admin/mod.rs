//! The admin API (loopback by default): `/healthz`, `/readyz`, `/status`
//! with the JSON of `docs/book/src/admin-api.md` (plus, with the lifecycle running, `sweeps`
//! and a `campaigns` object by name), `/metrics` in Prometheus text format;
//! and, behind the bearer token (`bearer.rs`), `POST /invitees`, the operator
//! routes the CLI uses (`operator.rs`, `callbacks_routes.rs`) and the lifecycle's sweep and
//! campaign routes (`lifecycle_routes.rs`). Without the token, every route
//! but the probes (`/healthz`, `/readyz`, `/metrics`) answers only a request
//! whose `Host` names the listener (`local_host.rs`: DNS rebinding).

mod admin_state;
pub mod bearer;
mod body_drain;
pub mod bounces;
pub mod callbacks_routes;
pub mod disclosure;
pub mod invitees;
mod last_known;
pub mod lifecycle_routes;
pub mod local_host;
pub mod operator;
pub mod people;
pub mod readyz;
pub mod records;
pub mod rejects;
pub mod suppression_check;
pub mod suppressions;

pub use admin_state::AdminState;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::admin_api::status::{
    CallbackCounts, CampaignProgress, Campaigns, MemberCounts, RecordCounts, StatusDoc,
};
use crate::metrics::Snapshot;
use crate::store::Store;

pub fn router(state: Arc<AdminState>) -> Router {
    use axum::routing::{get, post};
    let mut guarded = Router::new()
        .route(
            "/invitees",
            limited(post(invitees::post), invitees::MAX_BODY),
        )
        .route(
            "/records",
            limited(post(records::post).get(records::list), records::MAX_BODY),
        )
        .route("/invitations", get(operator::list))
        .route("/invitations/retry-failed", post(operator::retry_failed))
        .route("/invitations/{id}", get(operator::show))
        .route("/invitations/{id}/retry", post(operator::retry))
        .route("/members", get(operator::members))
        .route("/rejects", get(rejects::list))
        .route("/intake/verdict", get(rejects::verdict))
        .route("/callbacks", get(callbacks_routes::list))
        .route(
            "/callbacks/replay-quarantined",
            post(callbacks_routes::replay_quarantined),
        )
        .route("/callbacks/{id}", get(callbacks_routes::show))
        .route("/callbacks/{id}/replay", post(callbacks_routes::replay))
        .route("/bounces", limited(post(bounces::post), bounces::MAX_BODY))
        .route(
            "/suppressions",
            get(suppressions::list).post(suppressions::add),
        )
        .route("/suppressions/remove", post(suppressions::remove))
        .route(
            "/suppressions/check",
            limited(post(suppression_check::post), suppression_check::MAX_BODY),
        )
        .route(
            "/people/forget",
            limited(post(people::forget), people::MAX_BODY),
        );
    if state.stall.is_some() {
        guarded = guarded.route("/debug/stall", post(stall));
    }
    let guarded = guarded.route_layer(axum::middleware::from_fn_with_state(
        state.gate.clone(),
        bearer::require_bearer,
    ));
    // Counts only, for anyone on the machine, but not for a rebinding page.
    let local = Router::new().route("/status", get(status)).route_layer(
        axum::middleware::from_fn_with_state(state.gate.clone(), bearer::require_local_host),
    );
    // Probes answer whatever the Host (or none): a scraper or a health
    // check names the machine as it likes, and they carry no personal data.
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz::readyz))
        .route("/metrics", get(metrics))
        .merge(local)
        .merge(guarded)
        .with_state(state)
}

/// A route with a body limit: axum's, and the drain that lets a client still
/// sending an oversized body read the 413 (`body_drain.rs`).
fn limited(
    route: axum::routing::MethodRouter<Arc<AdminState>>,
    limit: usize,
) -> axum::routing::MethodRouter<Arc<AdminState>> {
    route
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(move |r, n| {
            body_drain::drain_over_limit(limit, r, n)
        }))
}

#[derive(serde::Deserialize)]
struct StallQuery {
    seconds: f64,
}

/// Test hook (only with `MYDEX_CONNECTOR_TEST_HOOKS=1`): stall the main loop.
async fn stall(
    State(st): State<Arc<AdminState>>,
    axum::extract::Query(q): axum::extract::Query<StallQuery>,
) -> Response {
    let Some(tx) = &st.stall else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !(0.0..=3600.0).contains(&q.seconds) {
        return (StatusCode::BAD_REQUEST, "seconds must be 0..=3600\n").into_response();
    }
    match tx.try_send(std::time::Duration::from_secs_f64(q.seconds)) {
        Ok(()) => (StatusCode::ACCEPTED, "stalling\n").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy\n").into_response(),
    }
}

/// The status document (also what `mydex-connector status --json` prints).
pub async fn status_json(
    store: &Store,
    current_version: u32,
    campaigns: &[String],
    uptime_s: u64,
) -> Result<serde_json::Value, crate::store::StoreError> {
    let reads = store.status_reads(current_version).await?;
    Ok(status_of(&reads, current_version, campaigns, uptime_s))
}

/// The status document from what the store answered.
fn status_of(
    r: &crate::store::StatusReads,
    current_version: u32,
    campaigns: &[String],
    uptime_s: u64,
) -> serde_json::Value {
    let c = &r.counts;
    let rc = &r.records;
    let doc = StatusDoc {
        invitations: c
            .invitations
            .iter()
            .map(|(s, n)| (s.as_str().to_string(), *n))
            .collect(),
        members: MemberCounts {
            total: c.members_total,
            outdated: c.members_outdated,
            disconnected: c.members_disconnected,
        },
        callbacks: CallbackCounts {
            unmatched: c.unmatched_callbacks,
            identify: c.events_identify,
            notification: c.events_notification,
            notifications_by_dataset_action: r.notifications.clone().into_iter().collect(),
            quarantined: c.callbacks_quarantined,
            stored: c.callbacks_stored,
        },
        connection_version: current_version,
        suppressed: r.suppressed,
        rejected: Some(r.rejected),
        campaigns: Campaigns::Names(campaigns.to_vec()),
        uptime_seconds: uptime_s,
        // `queued` counts every reading not yet settled (queued, in
        // flight, outcome unknown).
        records: RecordCounts {
            queued: rc.queued + rc.in_flight + rc.unknown,
            delivered: rc.delivered,
            held: rc.held,
            failed: rc.failed,
            in_flight: rc.in_flight,
            unknown: rc.unknown,
        },
        ..StatusDoc::default()
    };
    serde_json::to_value(doc).unwrap_or_default()
}

async fn status(State(st): State<Arc<AdminState>>) -> Response {
    let read = status_doc(&st).await.map_err(|e| e.to_string());
    let (mut doc, store) = match read {
        Ok(doc) => {
            st.last_status.remember(&doc);
            // Fresh counts; the store may still have stopped taking writes.
            let failure = st.store.failure();
            (doc, last_known::store_condition(failure.as_deref(), None))
        }
        Err(e) => {
            let why = st.store.failure().unwrap_or(e);
            let Some((doc, as_of)) = st.last_status.recall() else {
                let store = last_known::store_condition(Some(&why), None);
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(serde_json::json!({"error": format!("cannot read the store: {why}"), "store": store})),
                )
                    .into_response();
            };
            (doc, last_known::store_condition(Some(&why), Some(as_of)))
        }
    };
    // What lives in memory is always current, whatever the store says.
    doc["uptime_seconds"] = st.started.elapsed().as_secs().into();
    if let Some(broker) = &st.nats {
        doc["nats"] = nats_status(broker, &st.metrics, st.nats_held.as_deref()).await;
    }
    doc["store"] = store;
    let parts = match &st.lifecycle {
        Some(l) => l.status_parts().await,
        None => Vec::new(),
    };
    if let Some(obj) = doc.as_object_mut() {
        for (k, v) in parts {
            obj.insert(k.into(), v);
        }
    }
    axum::Json(doc).into_response()
}

/// `"nats": {"connected", "pending", "held", "seal_key",
/// "previous_seal_key"}`: whether the connection is up, the messages
/// waiting for the daemon in the streams it reads (asked now, within 2 s;
/// else the last figure read, from `/metrics`' lag), those of them held
/// lately because they are sealed to a key it does not hold, and the
/// fingerprints of the keys it opens with.
async fn nats_status(
    broker: &crate::broker::Broker,
    metrics: &crate::metrics::Metrics,
    held: Option<&crate::broker::Held>,
) -> serde_json::Value {
    use crate::broker::Topic;
    let ask = async {
        let mut total = 0u64;
        for topic in Topic::ALL.into_iter().filter(|t| t.consumed()) {
            total += broker.pending(topic).await.ok()?;
        }
        Some(total)
    };
    let fresh = tokio::time::timeout(std::time::Duration::from_secs(2), ask)
        .await
        .ok()
        .flatten();
    let pending = fresh.or_else(|| metrics.nats_lag_total());
    let mut doc = serde_json::json!({"connected": broker.connected(), "pending": pending});
    if let Some(held) = held {
        let now = std::time::Instant::now();
        let n: u64 = held.by_stream(now).iter().map(|(_, n)| n).sum();
        doc["held"] = n.into();
        doc["seal_key"] = held.ours().first().cloned().into();
        doc["previous_seal_key"] = held.ours().get(1).cloned().into();
    }
    doc
}

/// The status document as the store holds it now.
async fn status_doc(s: &AdminState) -> Result<serde_json::Value, crate::store::StoreError> {
    let uptime = s.started.elapsed().as_secs();
    let reads = s.store.status_reads(s.current_version).await?;
    let mut doc = status_of(&reads, s.current_version, &s.campaigns, uptime);
    doc["campaign_progress"] = campaign_progress(s, &reads.by_campaign);
    doc["bounces"] = serde_json::json!({"ignored": s.metrics.bounces_ignored()});
    doc["members_by_version"] = reads
        .members_by_version
        .iter()
        .map(|(v, n)| (v.to_string(), serde_json::Value::from(*n)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    Ok(doc)
}

/// Per campaign: its configured rate (as of the last reload) and its
/// invitations by state.
fn campaign_progress(
    st: &AdminState,
    counts: &std::collections::HashMap<(String, crate::store::State), u64>,
) -> serde_json::Value {
    let mut out = std::collections::BTreeMap::new();
    let campaigns = match &st.lifecycle {
        Some(l) => l.control.campaigns(),
        None => st.settings.campaigns.clone(),
    };
    for c in &campaigns {
        let mut states = std::collections::BTreeMap::new();
        let mut total = 0;
        for s in crate::store::State::ALL {
            let n = counts.get(&(c.name.clone(), s)).copied().unwrap_or(0);
            total += n;
            states.insert(s.as_str().to_string(), n);
        }
        let rate = c
            .rate
            .map(|r| format!("{}/{}", r.count, humantime::format_duration(r.per)));
        out.insert(
            c.name.clone(),
            CampaignProgress {
                rate: rate.unwrap_or_else(|| "unlimited".into()),
                total,
                invitations: states,
            },
        );
    }
    serde_json::to_value(out).unwrap_or_default()
}

async fn metrics(State(st): State<Arc<AdminState>>) -> Response {
    if let Some(held) = &st.nats_held {
        for (stream, n) in held.by_stream(std::time::Instant::now()) {
            st.metrics.nats_held(&stream, n);
        }
    }
    let read = snapshot(&st).await.map_err(|e| e.to_string());
    let snap = match read {
        Ok(snap) => {
            st.last_snapshot.remember(&snap);
            snap
        }
        // The last counts read, marked as a store that cannot write.
        Err(e) => match st.last_snapshot.recall() {
            Some((mut snap, _)) => {
                snap.store_write_failed = true;
                snap.uptime_seconds = st.started.elapsed().as_secs();
                snap
            }
            None => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("cannot read the store: {e}\n"),
                )
                    .into_response();
            }
        },
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render(&snap),
    )
        .into_response()
}

/// The store's side of `/metrics`.
async fn snapshot(st: &AdminState) -> Result<Snapshot, crate::store::StoreError> {
    let store = &st.store;
    let job = crate::pipeline::version_sweep::JOB;
    let c = store.counts(st.current_version).await?;
    let invitations = invitations_by_campaign(st).await?;
    let count = |s: crate::store::State| {
        c.invitations
            .iter()
            .find(|(x, _)| *x == s)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    Ok(Snapshot {
        suppressed: store.suppressed_count().await?,
        rejected: store.rejected_count().await?,
        bounces: bounces_by_campaign(st).await?,
        invitations,
        members_total: c.members_total,
        members_outdated: c.members_outdated,
        members_disconnected: c.members_disconnected,
        unmatched_callbacks: c.unmatched_callbacks,
        callbacks_quarantined: c.callbacks_quarantined,
        callbacks_stored: c.callbacks_stored,
        queue_files: crate::intake::pending_files(&st.settings.queue.dir)
            .map(|f| f.len() as u64)
            .unwrap_or(0),
        queue_depth: count(crate::store::State::Queued) + count(crate::store::State::LinkIssued),
        uptime_seconds: st.started.elapsed().as_secs(),
        store_flushes: st.store.flushes(),
        sweeps: sweeps(st).await,
        sweep_held: store.held_count(job).await? as u64,
        sweep_brake: store.brake(job).await?.is_some(),
        mydex_connection_denied: store.connection_denied(job).await?.is_some(),
        callback_tls_cert_expiry: st.tls.as_ref().map(|t| t.current().not_after),
        campaigns: st
            .lifecycle
            .as_ref()
            .map(|l| l.control.gauges())
            .unwrap_or_default(),
        store_write_failed: st.store.failure().is_some(),
        mydex_api_failing: st.mydex.api_health().is_err(),
        records: records(st).await?,
    })
}

/// Invitations by campaign and state: every configured campaign with every
/// state, and those of campaigns no longer configured (they still count).
async fn invitations_by_campaign(
    st: &AdminState,
) -> Result<Vec<(String, String, u64)>, crate::store::StoreError> {
    let by_campaign = st.store.counts_by_campaign().await?;
    let mut invitations = Vec::new();
    for campaign in &st.campaigns {
        for state in crate::store::State::ALL {
            let n = by_campaign
                .get(&(campaign.clone(), state))
                .copied()
                .unwrap_or(0);
            invitations.push((campaign.clone(), state.as_str().to_string(), n));
        }
    }
    for ((campaign, state), n) in &by_campaign {
        if !st.campaigns.contains(campaign) {
            invitations.push((campaign.clone(), state.as_str().to_string(), *n));
        }
    }
    Ok(invitations)
}

/// Bounces by configured campaign and type (hard, soft, complaint).
async fn bounces_by_campaign(
    st: &AdminState,
) -> Result<Vec<(String, String, u64)>, crate::store::StoreError> {
    let mut bounces = Vec::new();
    for campaign in &st.campaigns {
        let (_, hard, soft, complaints) = st.store.campaign_bounces(campaign).await?;
        for (kind, n) in [("hard", hard), ("soft", soft), ("complaint", complaints)] {
            bounces.push((campaign.clone(), kind.to_string(), n));
        }
    }
    Ok(bounces)
}

/// Each sweep job's progress (none before the scheduler runs).
async fn sweeps(st: &AdminState) -> Vec<crate::metrics::SweepProgress> {
    let Some(l) = &st.lifecycle else {
        return Vec::new();
    };
    l.sweep_progress()
        .await
        .into_iter()
        .map(|(job, running, last)| crate::metrics::SweepProgress {
            job: job.into(),
            running,
            run: last.as_ref().map_or(0, |r| r.run),
            checked: last.as_ref().map_or(0, |r| r.checked),
            errors: last.as_ref().map_or(0, |r| r.errors),
        })
        .collect()
}

/// Readings by state.
async fn records(st: &AdminState) -> Result<Vec<(&'static str, u64)>, crate::store::StoreError> {
    let r = st.store.record_counts().await?;
    Ok(vec![
        ("queued", r.queued),
        ("in_flight", r.in_flight),
        ("unknown", r.unknown),
        ("delivered", r.delivered),
        ("held", r.held),
        ("failed", r.failed),
    ])
}
