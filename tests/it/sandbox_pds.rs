//! The sandbox's PDS data calls (docs/mydex-contract.md §8) over
//! real HTTP: the checks a real PDS makes, in order; batches and single
//! rows; filters and `[]`; a repeated POST duplicates (Mydex has no
//! idempotency key); the `lost` fault writes, then drops the answer; the
//! member's own page after logging in.

use mydex_test_support::contract::*;
use serde_json::{Value, json};

struct Member {
    uid: u64,
    mydexid: String,
    con: String,
    key: String,
}

async fn seeded(env: &Env) -> Member {
    let r: Value = env
        .http
        .post(format!("{}/_sandbox/members/seed", env.base))
        .json(&json!({"count": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m = &r["members"][0];
    Member {
        uid: m["uid"].as_u64().unwrap(),
        mydexid: m["mydexid"].as_str().unwrap().into(),
        con: m["connection_id"].as_str().unwrap().into(),
        key: m["key"].as_str().unwrap().into(),
    }
}

fn query(m: &Member, key: &str, dataset: &str) -> Vec<(&'static str, String)> {
    vec![
        ("uid", m.uid.to_string()),
        ("con_id", m.con.clone()),
        ("key", key.into()),
        ("source_type", "connection".into()),
        ("instance", "0".into()),
        ("dataset", dataset.into()),
    ]
}

async fn create(env: &Env, token: Option<&str>, q: &[(&str, String)], body: Value) -> (u16, Value) {
    let mut req = env
        .http
        .post(format!("{}/api/pds/transaction", env.base))
        .query(q)
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

async fn read(env: &Env, token: &str, m: &Member, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut q = query(m, &m.key, "ds_energy_readings");
    q.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let resp = env
        .http
        .get(format!("{}/api/pds/transaction/{}.json", env.base, m.uid))
        .bearer_auth(token)
        .query(&q)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

#[tokio::test]
async fn create_and_read_with_the_checks_of_a_real_pds() {
    let env = Env::start().await;
    let m = seeded(&env).await;
    let token = env.token().await;
    let rows = json!({"ds_energy_readings": [{"external_id": "a", "kwh": 1.5}, {"external_id": "b", "kwh": "2"}]});
    let q = query(&m, &m.key, "ds_energy_readings");
    // Bearer first, then the query, then the member, then the grant.
    assert_eq!(create(&env, None, &q, rows.clone()).await.0, 401);
    let (s, v) = create(&env, Some(&token), &q[..2], rows.clone()).await;
    assert_eq!(s, 400);
    assert_eq!(
        v["message"],
        "Following fields are missing or empty: source_type, instance, key, dataset"
    );
    assert_eq!(
        create(
            &env,
            Some(&token),
            &query(&m, "wrong-key", "ds_energy_readings"),
            rows.clone()
        )
        .await
        .0,
        403
    );
    let mut bad_con = q.clone();
    bad_con[1].1 = format!("{}-99999", m.uid);
    assert_eq!(
        create(&env, Some(&token), &bad_con, rows.clone()).await.0,
        403
    );
    let (s, v) = create(
        &env,
        Some(&token),
        &query(&m, &m.key, "ds_personal_details"),
        json!({"ds_personal_details": [{"x": "1"}]}),
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(
        v["error"]["message"],
        "Access Denied: no write access to dataset ds_personal_details"
    );
    let (s, v) = create(
        &env,
        Some(&token),
        &q,
        json!({"ds_energy_readings": [{"note": "y".repeat(1025)}]}),
    )
    .await;
    assert_eq!((s, v["success"].clone()), (400, json!(0)));
    assert_eq!(
        create(&env, Some(&token), &q, json!({"other": []})).await.0,
        400
    );

    // Nothing yet: `[]`, as PHP encodes an empty array.
    assert_eq!(read(&env, &token, &m, &[]).await, (200, json!([])));
    let (s, v) = create(&env, Some(&token), &q, rows.clone()).await;
    assert_eq!((s, v["success"].clone()), (200, json!(1)), "{v}");
    // One row alone, not in a list.
    assert_eq!(
        create(
            &env,
            Some(&token),
            &q,
            json!({"ds_energy_readings": {"external_id": "c"}})
        )
        .await
        .0,
        200
    );
    let (s, all) = read(&env, &token, &m, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(all.as_object().unwrap().len(), 3);
    let (_, one) = read(
        &env,
        &token,
        &m,
        &[
            ("filters[external_id][operator]", "="),
            ("filters[external_id][value]", "b"),
        ],
    )
    .await;
    let one = one.as_object().unwrap();
    assert_eq!(one.len(), 1);
    let (id, row) = one.iter().next().unwrap();
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["kwh"], "2", "values kept as strings");
    let (_, none) = read(
        &env,
        &token,
        &m,
        &[
            ("filters[external_id][operator]", "="),
            ("filters[external_id][value]", "zzz"),
        ],
    )
    .await;
    assert_eq!(none, json!([]));
    // A second POST of the same rows duplicates them, as Mydex does.
    assert_eq!(create(&env, Some(&token), &q, rows).await.0, 200);
    let (_, all) = read(&env, &token, &m, &[]).await;
    assert_eq!(all.as_object().unwrap().len(), 5);
    let dump: Value = env
        .http
        .get(format!("{}/_sandbox/pds/{}", env.base, m.mydexid))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        dump["datasets"]["ds_energy_readings"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    let st = env.state().await;
    assert_eq!(st["counts"]["pds_rows"], 5);
}

#[tokio::test]
async fn the_lost_fault_writes_then_drops_the_answer() {
    let env = Env::start().await;
    let m = seeded(&env).await;
    let token = env.token().await;
    assert_eq!(
        env.settings(json!({"fault_rate": 1.0, "faults": ["lost"]}))
            .await,
        200
    );
    let q = query(&m, &m.key, "ds_energy_readings");
    let sent = env
        .http
        .post(format!("{}/api/pds/transaction", env.base))
        .bearer_auth(&token)
        .query(&q)
        .json(&json!({"ds_energy_readings": [{"external_id": "lost-1"}]}))
        .send()
        .await;
    assert!(sent.is_err(), "no answer: {sent:?}");
    assert_eq!(env.settings(json!({"fault_rate": 0.0})).await, 200);
    let (_, v) = read(&env, &token, &m, &[]).await;
    assert_eq!(
        v.as_object().map(|o| o.len()),
        Some(1),
        "the row was written: {v}"
    );
}

#[tokio::test]
async fn the_member_sees_their_pds_after_logging_in() {
    let env = Env::start().await;
    let m = seeded(&env).await;
    let token = env.token().await;
    let q = query(&m, &m.key, "ds_energy_readings");
    let row = json!({"ds_energy_readings": [{"external_id": "<b>x</b>", "kwh": "3"}]});
    assert_eq!(create(&env, Some(&token), &q, row).await.0, 200);
    let page = env
        .http
        .get(format!("{}/pds", env.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"password\""), "{page}");
    let wrong = env
        .http
        .post(format!("{}/pds", env.base))
        .form(&[("mydexid", m.mydexid.as_str()), ("password", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    let pw = format!("pw-{}-secret", m.mydexid);
    let page = env
        .http
        .post(format!("{}/pds", env.base))
        .form(&[("mydexid", m.mydexid.as_str()), ("password", pw.as_str())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Your Personal Data Store"), "{page}");
    // Each dataset under its human name (ds_energy_readings).
    assert!(page.contains("<h2>Energy readings</h2>"), "{page}");
    assert!(
        page.contains("&lt;b&gt;x&lt;/b&gt;") && !page.contains("<b>x</b>"),
        "escaped: {page}"
    );
}
