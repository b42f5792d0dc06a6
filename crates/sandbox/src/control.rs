//! The `/_sandbox/` endpoints tests drive: complete a one-time link as a
//! member without a browser, look at everything the sandbox has seen,
//! revoke a connection, send a notification, and change settings at run
//! time. JSON in, JSON out; never subject to injected faults.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::args::FaultKind;
use super::callbacks::{self, Callback, deliver};
use super::errors::ApiError;
use super::journey::{self, Credentials, JourneyError};
use super::state::{AppState, Identity, random_id};
use super::wire::{CallbackFormat, CallbackKind};

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::control(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
}

fn journey_error(e: JourneyError) -> ApiError {
    ApiError::Control {
        status: e.status(),
        errors: e.messages(),
    }
}

/// Body of `POST /_sandbox/journeys`.
#[derive(Debug, Deserialize)]
struct JourneyRequest {
    url: String,
    mydexid: String,
    email: Option<String>,
    password: Option<String>,
    private_key: Option<String>,
    /// Defaults to true; false tests the agreement's refusal.
    accept: Option<bool>,
    /// Datasets the member does not grant write access to (e.g.
    /// `["ds_energy_readings"]`); the callback's `fields` say so.
    #[serde(default)]
    withhold: Vec<String>,
}

/// `POST /_sandbox/journeys`: complete a one-time link as a member.
pub async fn journeys(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: JourneyRequest = parse_json(&body)?;
    let id = journey::link_id_from_url(&req.url)
        .ok_or_else(|| journey_error(JourneyError::UnknownLink))?;
    let mydexid = req.mydexid.trim().to_owned();
    let password = req
        .password
        .unwrap_or_else(|| format!("pw-{mydexid}-secret"));
    let completed = {
        let mut world = state.world.lock();
        let link = journey::usable_link(&world, &id)
            .map_err(journey_error)?
            .clone();
        if link.url != req.url.trim() {
            return Err(journey_error(JourneyError::UnknownLink));
        }
        let creds = match world.uid_by_mydexid(&mydexid) {
            Some(_) => Credentials::Login {
                mydexid: mydexid.clone(),
                password: password.clone(),
            },
            None => Credentials::Register {
                mydexid: mydexid.clone(),
                email: req.email.clone().unwrap_or_default(),
                password: password.clone(),
            },
        };
        let identity = journey::identify(&world, &link, creds).map_err(journey_error)?;
        let private_key = match (&req.private_key, &identity) {
            (Some(k), _) => k.clone(),
            (None, Identity::Existing { uid }) => world
                .member(*uid)
                .map(|m| m.private_key.clone())
                .unwrap_or_default(),
            (None, Identity::New { .. }) => format!("pk-{mydexid}-private-key"),
        };
        let done = journey::consent(
            &state,
            &mut world,
            &link,
            &identity,
            &private_key,
            req.accept.unwrap_or(true),
        )
        .map_err(journey_error)?;
        if let Some(l) = world.links.get_mut(&id) {
            l.used = true;
        }
        let mut done = done;
        if let Some(m) = world.member_mut(done.uid) {
            m.withheld = req.withhold.clone();
            if done.callback.body.contains_key("fields") {
                done.callback.body.insert(
                    "fields".into(),
                    super::pds::fields_withholding(m.version, &m.withheld),
                );
            }
        }
        done
    };
    let delivery = deliver(&state, completed.callback).await;
    Ok(Json(json!({
        "uid": completed.uid,
        "mydexid": completed.mydexid,
        "connection_id": completed.connection_id,
        "callback_status": delivery.status,
        "callback_attempts": delivery.attempts,
        "return_to": completed.return_to,
    })))
}

/// `GET /_sandbox/state`.
pub async fn state_dump(State(state): State<Arc<AppState>>) -> Json<Value> {
    let requests: Vec<Value> = state.requests.lock().iter().map(|r| json!(r)).collect();
    let callbacks: Vec<Value> = state.callbacks.lock().iter().map(|c| json!(c)).collect();
    let nid = state.connection.nid.clone();
    let (members, links) = {
        let world = state.world.lock();
        let members: Vec<Value> = world
            .members
            .iter()
            .map(|m| {
                json!({
                    "uid": m.uid,
                    "mydexid": m.mydexid,
                    "email": m.email,
                    "connection_id": m.key.as_ref().map(|_| format!("{}-{nid}", m.uid)),
                    "version": m.version,
                    "revoked": m.revoked,
                    "key": m.key,
                })
            })
            .collect();
        let mut links: Vec<_> = world.links.values().collect();
        links.sort_by_key(|l| l.seq);
        let links: Vec<Value> = links
            .into_iter()
            .map(|l| {
                json!({
                    "id": l.id,
                    "url": l.url,
                    "kind": l.kind,
                    "version": l.version,
                    "mydexid": l.mydexid,
                    "linking_token": l.linking_token,
                    "return_to": l.return_to,
                    "used": l.used,
                    "expired": l.expired(),
                })
            })
            .collect();
        (members, links)
    };
    let c = &state.counts;
    let status_checks: serde_json::Map<String, Value> = state
        .status_checks
        .lock()
        .iter()
        .map(|(uid, n)| (uid.to_string(), json!(n)))
        .collect();
    let pds_creates: serde_json::Map<String, Value> = state
        .pds_creates
        .lock()
        .iter()
        .map(|(uid, n)| (uid.to_string(), json!(n)))
        .collect();
    Json(json!({
        "status_checks": status_checks,
        "pds_creates": pds_creates,
        "requests": requests,
        "members": members,
        "links": links,
        "callbacks": callbacks,
        "counts": {
            "ftc_setup": c.ftc_setup.load(Ordering::Relaxed),
            "identify": c.identify.load(Ordering::Relaxed),
            "status": c.status.load(Ordering::Relaxed),
            "token": c.token.load(Ordering::Relaxed),
            "faults_injected": c.faults_injected.load(Ordering::Relaxed),
            "access_token": c.access_token.load(Ordering::Relaxed),
            "api_connection": c.api_connection.load(Ordering::Relaxed),
            "api_connection_update": c.api_connection_update.load(Ordering::Relaxed),
            "pds_create": c.pds_create.load(Ordering::Relaxed),
            "pds_read": c.pds_read.load(Ordering::Relaxed),
            "pds_rows": c.pds_rows.load(Ordering::Relaxed),
        },
    }))
}

/// `POST /_sandbox/members/{mydexid}/revoke`.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(mydexid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut world = state.world.lock();
    let uid = world
        .uid_by_mydexid(&mydexid)
        .ok_or_else(|| ApiError::control(StatusCode::NOT_FOUND, "unknown MydexID"))?;
    let member = world
        .member_mut(uid)
        .ok_or_else(|| ApiError::control(StatusCode::NOT_FOUND, "unknown MydexID"))?;
    member.revoked = true;
    Ok(Json(
        json!({"uid": uid, "mydexid": member.mydexid, "revoked": true}),
    ))
}

/// `POST /_sandbox/members/{mydexid}/restore`: the member's connection is
/// active again (as after a fault at Mydex that is now fixed).
pub async fn restore(
    State(state): State<Arc<AppState>>,
    Path(mydexid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut world = state.world.lock();
    let uid = world
        .uid_by_mydexid(&mydexid)
        .ok_or_else(|| ApiError::control(StatusCode::NOT_FOUND, "unknown MydexID"))?;
    let member = world
        .member_mut(uid)
        .ok_or_else(|| ApiError::control(StatusCode::NOT_FOUND, "unknown MydexID"))?;
    member.revoked = false;
    Ok(Json(
        json!({"uid": uid, "mydexid": member.mydexid, "revoked": false}),
    ))
}

/// Body of `POST /_sandbox/members/seed`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedRequest {
    #[serde(default)]
    count: u64,
    version: Option<u32>,
    prefix: Option<String>,
    /// Members as another sandbox knew them (a store kept from an earlier
    /// run names their uids and keys), added before the `count` new ones.
    #[serde(default)]
    members: Vec<KnownMember>,
}

/// One member of `SeedRequest.members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnownMember {
    /// Must be the next uid this sandbox hands out (members in uid order).
    uid: u64,
    mydexid: String,
    email: String,
    /// None: registered but never connected.
    key: Option<String>,
    version: u32,
    #[serde(default)]
    revoked: bool,
    #[serde(default)]
    withheld: Vec<String>,
}

/// Add members as another sandbox knew them, keeping their uids.
fn add_known(world: &mut super::state::World, known: Vec<KnownMember>) -> Result<(), ApiError> {
    for k in known {
        let uid = world.add_member(
            k.mydexid.clone(),
            k.email,
            format!("pw-{}-secret", k.mydexid),
            format!("pk-{}-private-key", k.mydexid),
        );
        if uid != k.uid {
            return Err(ApiError::control(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "members: uid {} would be {uid} here (list them in uid order, into a new sandbox)",
                    k.uid
                ),
            ));
        }
        if let Some(m) = world.member_mut(uid) {
            m.key = k.key;
            m.version = k.version;
            m.revoked = k.revoked;
            m.withheld = k.withheld;
        }
    }
    Ok(())
}

/// `POST /_sandbox/members/seed`: add `count` members already connected
/// (at `version`), for load tests and benchmarks that need many members
/// without as many journeys. Answers each member's uid, MydexID and key.
/// `members` first adds members as an earlier sandbox knew them.
pub async fn seed(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: SeedRequest = parse_json(&body)?;
    if req.count > 1_000_000 {
        return Err(ApiError::control(
            StatusCode::UNPROCESSABLE_ENTITY,
            "count: at most 1000000",
        ));
    }
    let prefix = req.prefix.unwrap_or_else(|| "seed".into());
    let version = req.version.unwrap_or(1).max(1);
    let nid = state.connection.nid.clone();
    let mut world = state.world.lock();
    add_known(&mut world, req.members)?;
    let mut out = Vec::with_capacity(req.count as usize);
    for _ in 0..req.count {
        let n = world.members.len();
        let mydexid = format!("{prefix}{n}x");
        let uid = world.add_member(
            mydexid.clone(),
            format!("{mydexid}@example.com"),
            format!("pw-{mydexid}-secret"),
            format!("pk-{mydexid}-private-key"),
        );
        let key = random_id(40);
        if let Some(m) = world.member_mut(uid) {
            m.key = Some(key.clone());
            m.version = version;
        }
        out.push(json!({"uid": uid, "mydexid": mydexid, "connection_id": format!("{uid}-{nid}"), "key": key, "fields": callbacks::fields_for_version(version)}));
    }
    Ok(Json(json!({ "members": out })))
}

/// Body of `POST /_sandbox/notify`.
#[derive(Debug, Deserialize)]
struct NotifyRequest {
    mydexid: String,
    dataset: Option<String>,
    action: Option<String>,
    updated_id: Option<String>,
    message: Option<String>,
}

/// `POST /_sandbox/notify`: send a notification callback for a member.
pub async fn notify(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let req: NotifyRequest = parse_json(&body)?;
    let uid = state
        .world
        .lock()
        .uid_by_mydexid(req.mydexid.trim())
        .ok_or_else(|| ApiError::control(StatusCode::NOT_FOUND, "unknown MydexID"))?;
    let body = callbacks::notification_body(
        uid,
        &state.connection.nid,
        req.dataset.as_deref().unwrap_or("ds_events"),
        req.action.as_deref().unwrap_or("create"),
        req.updated_id.as_deref().unwrap_or("1"),
        req.message.as_deref(),
    );
    let delivery = deliver(
        &state,
        Callback {
            kind: CallbackKind::Notification,
            body,
            linking_token: None,
        },
    )
    .await;
    Ok(Json(json!({
        "uid": uid,
        "callback_status": delivery.status,
        "callback_attempts": delivery.attempts,
    })))
}

/// Body of `PUT /_sandbox/settings`; every key optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsPatch {
    connection_version: Option<u32>,
    fault_rate: Option<f64>,
    faults: Option<Vec<Value>>,
    callback_format: Option<CallbackFormat>,
    callback_shape: Option<super::shapes::CallbackShape>,
    token_ttl: Option<String>,
    link_ttl: Option<String>,
    slow_delay: Option<String>,
    callback_url: Option<String>,
    callback_retries: Option<u32>,
    /// `"no_connection_record"`, `"invalid_connection_token"`,
    /// `"unauthorized"`, or null to answer normally again.
    #[serde(default, deserialize_with = "present")]
    status_denial: Option<Value>,
}

/// A key that is present (even as null) is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn duration(key: &str, v: &str) -> Result<std::time::Duration, ApiError> {
    humantime::parse_duration(v)
        .map_err(|e| ApiError::control(StatusCode::UNPROCESSABLE_ENTITY, format!("{key}: {e}")))
}

/// `GET /_sandbox/settings`.
pub async fn get_settings(State(state): State<Arc<AppState>>) -> Json<Value> {
    let s = state.settings.read();
    Json(json!({
        "connection_version": s.connection_version,
        "fault_rate": s.fault_rate,
        "faults": s.faults.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "callback_format": s.callback_format,
        "callback_shape": s.callback_shape,
        "token_ttl": humantime::format_duration(s.token_ttl).to_string(),
        "link_ttl": humantime::format_duration(s.link_ttl).to_string(),
        "slow_delay": humantime::format_duration(s.slow_delay).to_string(),
        "callback_url": s.callback_url,
        "callback_retries": s.callback_retries,
        "status_denial": s.status_denial,
    }))
}

/// `PUT /_sandbox/settings`: change settings at run time.
pub async fn put_settings(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let patch: SettingsPatch = parse_json(&body)?;
    let checked = patch.check()?;
    checked.apply(&mut state.settings.write());
    Ok(get_settings(State(state)).await)
}

/// A [`SettingsPatch`] whose every value is known good, so applying it
/// cannot fail halfway.
struct CheckedPatch {
    connection_version: Option<u32>,
    fault_rate: Option<f64>,
    faults: Option<Vec<FaultKind>>,
    callback_format: Option<CallbackFormat>,
    callback_shape: Option<super::shapes::CallbackShape>,
    token_ttl: Option<std::time::Duration>,
    link_ttl: Option<std::time::Duration>,
    slow_delay: Option<std::time::Duration>,
    callback_url: Option<String>,
    callback_retries: Option<u32>,
    status_denial: Option<Option<super::denial::StatusDenial>>,
}

fn unprocessable(message: String) -> ApiError {
    ApiError::control(StatusCode::UNPROCESSABLE_ENTITY, message)
}

impl SettingsPatch {
    /// Parse and check every value; the first bad one is the answer.
    fn check(self) -> Result<CheckedPatch, ApiError> {
        if let Some(r) = self.fault_rate
            && !(0.0..=1.0).contains(&r)
        {
            return Err(unprocessable(format!(
                "fault_rate {r} is not between 0 and 1"
            )));
        }
        if self.connection_version == Some(0) {
            return Err(unprocessable(
                "connection_version must be at least 1".into(),
            ));
        }
        let faults = self.faults.as_deref().map(faults_from_json).transpose()?;
        let token_ttl = self
            .token_ttl
            .map(|v| duration("token_ttl", &v))
            .transpose()?;
        let link_ttl = self
            .link_ttl
            .map(|v| duration("link_ttl", &v))
            .transpose()?;
        let status_denial = self
            .status_denial
            .map(|v| super::denial::StatusDenial::from_json(&v))
            .transpose()
            .map_err(|e| unprocessable(e.to_string()))?;
        let slow_delay = self
            .slow_delay
            .map(|v| duration("slow_delay", &v))
            .transpose()?;
        Ok(CheckedPatch {
            connection_version: self.connection_version,
            fault_rate: self.fault_rate,
            faults,
            callback_format: self.callback_format,
            callback_shape: self.callback_shape,
            token_ttl,
            link_ttl,
            slow_delay,
            callback_url: self.callback_url,
            callback_retries: self.callback_retries,
            status_denial,
        })
    }
}

/// `faults` of a settings body: names, or numbers for the statuses.
fn faults_from_json(items: &[Value]) -> Result<Vec<FaultKind>, ApiError> {
    items
        .iter()
        .map(|v| {
            let parsed = match v {
                Value::String(s) => s.parse::<FaultKind>(),
                Value::Number(n) => n.to_string().parse::<FaultKind>(),
                other => return Err(unprocessable(format!("unexpected fault {other}"))),
            };
            parsed.map_err(|e| unprocessable(e.to_string()))
        })
        .collect()
}

impl CheckedPatch {
    /// Set every value the patch carries.
    fn apply(self, s: &mut super::state::Settings) {
        if let Some(v) = self.connection_version {
            s.connection_version = v;
        }
        if let Some(v) = self.fault_rate {
            s.fault_rate = v;
        }
        if let Some(v) = self.faults {
            s.faults = v;
        }
        if let Some(v) = self.callback_format {
            s.callback_format = v;
        }
        if let Some(v) = self.callback_shape {
            s.callback_shape = v;
        }
        if let Some(v) = self.token_ttl {
            s.token_ttl = v;
        }
        if let Some(v) = self.link_ttl {
            s.link_ttl = v;
        }
        if let Some(v) = self.slow_delay {
            s.slow_delay = v;
        }
        if let Some(v) = self.callback_url {
            s.callback_url = v;
        }
        if let Some(v) = self.callback_retries {
            s.callback_retries = v;
        }
        if let Some(v) = self.status_denial {
            s.status_denial = v;
        }
    }
}
