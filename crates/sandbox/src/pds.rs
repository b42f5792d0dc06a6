//! The PDS data calls of docs/mydex-contract.md §8 for transactional
//! datasets: `POST /api/pds/transaction` (one row or a batch) and
//! `GET /api/pds/transaction/{uid}.json` (filters `=` and `>=`; `[]` when
//! nothing matches, as PHP encodes an empty array), with the checks a real
//! PDS makes, in order: bearer with `mydex:pdx` (401); the query's
//! `source_type=connection`, `instance=0`, `uid`, `con_id`, `key`,
//! `dataset` (400); `con_id` = `{uid}-{nid}`, the member's key, not revoked
//! (403 `Permission Denied`); the body (400); the member's grant for the
//! dataset (403). Rows are kept per member and dataset, values as strings;
//! a repeated POST duplicates them, as Mydex does. `GET /_sandbox/pds/{mydexid}`
//! shows what a member holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use super::api::PERMISSION_DENIED;
use super::callbacks::fields_for_version;
use super::errors::ApiError;
use super::oauth::check_bearer;
use super::state::{AppState, Counts, Member, Row, ct_eq};

/// Longest value of a row's field.
const MAX_VALUE: usize = 1024;
/// Most rows in one POST.
const MAX_ROWS: usize = 1000;

/// The datasets `fields` grants write access to.
pub fn writable(fields: &Value) -> Vec<String> {
    fn writes(v: &Value) -> bool {
        match v {
            Value::Object(m) => m.iter().any(|(k, v)| {
                (k == "w" && v.get("a").and_then(Value::as_u64) == Some(1)) || writes(v)
            }),
            Value::Array(items) => items.iter().any(writes),
            _ => false,
        }
    }
    let Value::Object(map) = fields else {
        return Vec::new();
    };
    map.iter()
        .filter(|(_, v)| writes(v))
        .map(|(k, _)| k.trim_start_matches("field_").to_string())
        .collect()
}

/// The `fields` of a member at `version`, without write access to the
/// datasets they withheld.
pub fn fields_withholding(version: u32, withheld: &[String]) -> Value {
    let mut fields = fields_for_version(version);
    if let Value::Object(map) = &mut fields {
        for ds in withheld {
            let name = format!("field_{}", ds.trim_start_matches("field_"));
            if map.contains_key(&name) {
                map.insert(
                    name,
                    json!([[
                        {"access": {"r": {"a": 1}}},
                        {"access": {"r": {"s": "A"}}},
                        {"access": {"w": {"a": 0}}},
                        {"access": {"w": {"s": "A"}}}
                    ]]),
                );
            }
        }
    }
    fields
}

fn can_write(member: &Member, dataset: &str) -> bool {
    !member.withheld.iter().any(|w| w == dataset)
        && writable(&fields_for_version(member.version))
            .iter()
            .any(|d| d == dataset)
}

/// The query checks shared by create and read; the member's uid and dataset.
fn check_query(
    state: &AppState,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    uid_in_path: Option<&str>,
) -> Result<(u64, String), ApiError> {
    check_bearer(state, headers)?;
    let get = |k: &str| q.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
    let mut missing = Vec::new();
    for k in ["source_type", "instance", "con_id", "key", "dataset"] {
        if get(k).is_none() {
            missing.push(k);
        }
    }
    let uid_text = uid_in_path.or_else(|| get("uid"));
    if uid_text.is_none() {
        missing.insert(0, "uid");
    }
    if !missing.is_empty() {
        return Err(ApiError::BadPayload(format!(
            "Following fields are missing or empty: {}",
            missing.join(", ")
        )));
    }
    if get("source_type") != Some("connection") || get("instance") != Some("0") {
        return Err(ApiError::BadPayload(
            "source_type must be connection and instance 0".into(),
        ));
    }
    let denied = || ApiError::mydex(StatusCode::FORBIDDEN, PERMISSION_DENIED);
    let uid: u64 = uid_text.unwrap_or("").parse().map_err(|_| denied())?;
    if get("con_id") != Some(format!("{uid}-{}", state.connection.nid).as_str()) {
        return Err(denied());
    }
    let world = state.world.lock();
    let member = world.member(uid).ok_or_else(denied)?;
    let key = member.key.as_deref().ok_or_else(denied)?;
    if member.revoked || !ct_eq(get("key").unwrap_or(""), key) {
        return Err(denied());
    }
    Ok((uid, get("dataset").unwrap_or("").to_string()))
}

fn no_access(kind: &str, dataset: &str) -> ApiError {
    ApiError::mydex(
        StatusCode::FORBIDDEN,
        format!("Access Denied: no {kind} access to dataset {dataset}"),
    )
}

/// The rows of a create body `{dataset: row | [rows]}`, values as strings.
fn body_rows(body: &Bytes, dataset: &str) -> Result<Vec<Row>, ApiError> {
    let bad = |m: &str| ApiError::BadPayload(m.to_string());
    let v: Value = serde_json::from_slice(body).map_err(|_| bad("body is not JSON"))?;
    let items = match v.get(dataset) {
        Some(Value::Array(items)) => items.clone(),
        Some(row @ Value::Object(_)) => vec![row.clone()],
        _ => return Err(bad(&format!("body must be {{\"{dataset}\": [rows]}}"))),
    };
    if items.is_empty() || items.len() > MAX_ROWS {
        return Err(bad("between 1 and 1000 rows per call"));
    }
    items
        .iter()
        .map(|item| {
            let obj = item
                .as_object()
                .ok_or_else(|| bad("a row must be an object"))?;
            obj.iter()
                .map(|(k, v)| {
                    let text = match v {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => (*b as u8).to_string(),
                        Value::Null => String::new(),
                        _ => return Err(bad(&format!("field {k} must be a scalar"))),
                    };
                    if text.chars().count() > MAX_VALUE {
                        return Err(bad(&format!("field {k} is longer than {MAX_VALUE}")));
                    }
                    Ok((k.clone(), text))
                })
                .collect()
        })
        .collect()
}

/// `POST /api/pds/transaction?uid&con_id&key&source_type&instance&dataset`.
pub async fn create(
    State(state): State<Arc<AppState>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    Counts::bump(&state.counts.pds_create);
    if let Some(uid) = q.get("uid").and_then(|u| u.trim().parse::<u64>().ok()) {
        *state.pds_creates.lock().entry(uid).or_default() += 1;
    }
    let (uid, dataset) = check_query(&state, &headers, &q, None)?;
    let rows = body_rows(&body, &dataset)?;
    {
        let world = state.world.lock();
        let member = world
            .member(uid)
            .ok_or_else(|| no_access("write", &dataset))?;
        if !can_write(member, &dataset) {
            return Err(no_access("write", &dataset));
        }
    }
    let mut pds = state.pds.lock();
    let first = pds.next_id + 1;
    let n = rows.len() as u64;
    pds.next_id += n;
    let table = pds.rows.entry(uid).or_default().entry(dataset).or_default();
    for (i, mut row) in rows.into_iter().enumerate() {
        let id = first + i as u64;
        row.insert("id".into(), id.to_string());
        row.insert("ds_id".into(), id.to_string());
        table.insert(id, row);
    }
    state
        .counts
        .pds_rows
        .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    Ok(Json(json!({"success": 1, "last_insert_id": first + n - 1})))
}

/// `GET /api/pds/transaction/{uid}.json?...&filters[f][operator]=..&filters[f][value]=..`.
pub async fn read(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    Counts::bump(&state.counts.pds_read);
    let uid_text = file.strip_suffix(".json").unwrap_or("");
    let (uid, dataset) = check_query(&state, &headers, &q, Some(uid_text))?;
    {
        let world = state.world.lock();
        let member = world
            .member(uid)
            .ok_or_else(|| no_access("read", &dataset))?;
        let readable = fields_for_version(member.version)
            .get(format!("field_{dataset}"))
            .is_some();
        if !readable {
            return Err(no_access("read", &dataset));
        }
    }
    let filters = filters(&q)?;
    let pds = state.pds.lock();
    let mut out = Map::new();
    if let Some(table) = pds.rows.get(&uid).and_then(|d| d.get(&dataset)) {
        for (id, row) in table {
            if filters.iter().all(|f| f.matches(row)) {
                out.insert(id.to_string(), json!(row));
            }
        }
    }
    Ok(Json(if out.is_empty() {
        json!([])
    } else {
        Value::Object(out)
    }))
}

struct Filter {
    field: String,
    op: String,
    value: String,
}

impl Filter {
    fn matches(&self, row: &Row) -> bool {
        let Some(v) = row.get(&self.field) else {
            return false;
        };
        match self.op.as_str() {
            "=" => *v == self.value,
            _ => match (v.parse::<f64>(), self.value.parse::<f64>()) {
                (Ok(a), Ok(b)) => a >= b,
                _ => v.as_str() >= self.value.as_str(),
            },
        }
    }
}

fn filters(q: &HashMap<String, String>) -> Result<Vec<Filter>, ApiError> {
    let mut out = Vec::new();
    for (k, op) in q {
        let Some(field) = k
            .strip_prefix("filters[")
            .and_then(|r| r.strip_suffix("][operator]"))
        else {
            continue;
        };
        if op != "=" && op != ">=" {
            return Err(ApiError::BadPayload(format!("unknown operator {op:?}")));
        }
        let value = q
            .get(&format!("filters[{field}][value]"))
            .cloned()
            .unwrap_or_default();
        out.push(Filter {
            field: field.to_string(),
            op: op.clone(),
            value,
        });
    }
    Ok(out)
}

/// `GET /_sandbox/pds/{mydexid}`: the member's rows by dataset (id order).
pub async fn dump(
    State(state): State<Arc<AppState>>,
    Path(mydexid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let uid = state
        .world
        .lock()
        .uid_by_mydexid(&mydexid)
        .ok_or_else(|| ApiError::control(StatusCode::NOT_FOUND, "unknown MydexID"))?;
    Ok(Json(
        json!({"uid": uid, "datasets": member_rows(&state, uid)}),
    ))
}

/// A member's rows by dataset, in id order.
pub fn member_rows(state: &AppState, uid: u64) -> BTreeMap<String, Vec<Row>> {
    let pds = state.pds.lock();
    pds.rows
        .get(&uid)
        .map(|d| {
            d.iter()
                .map(|(ds, t)| (ds.clone(), t.values().cloned().collect()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn energy_readings_are_writable_at_every_version_unless_withheld() {
        for v in 1..=3 {
            assert!(writable(&fields_for_version(v)).contains(&"ds_energy_readings".to_string()));
        }
        let f = fields_withholding(1, &["ds_energy_readings".into()]);
        assert!(!writable(&f).contains(&"ds_energy_readings".to_string()));
        assert!(writable(&f).contains(&"ds_contact_details".to_string()));
    }
}
