//! The sandbox's `callback_shape` through real HTTP: each published shape
//! goes on the wire as Mydex's pages show it (headers and body as received
//! by a plain HTTP server), `rotate` goes through them in turn, the setting
//! is read back and bad values are refused.

use mydex_test_support::contract::*;
use serde_json::{Value, json};

async fn connect(env: &Env, mydexid: &str) -> Received {
    let url = env
        .ftc_link(json!({"linking_token": format!("lt-{mydexid}")}))
        .await;
    let (status, v) = env
        .journey(json!({"url": url, "mydexid": mydexid, "email": format!("{mydexid}@example.com")}))
        .await;
    assert_eq!(status, 200, "{v}");
    env.receiver.last()
}

fn get<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn each_shape_on_the_wire() {
    let env = Env::start_with(|a| {
        a.callback_shape = mydex_sandbox::CallbackShape::Form;
    })
    .await;

    // form: PHP brackets, the `[]` key, value attributes.
    let cb = connect(&env, "shapeform1").await;
    assert_eq!(
        cb.header("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let pairs = cb.form();
    assert_eq!(get(&pairs, "uid"), Some("1001"));
    assert_eq!(get(&pairs, "connection_id"), Some("1001-45678"));
    assert_eq!(
        get(
            &pairs,
            "fields[field_ds_personal_details][0][][access][r][a]"
        ),
        Some("1")
    );
    assert_eq!(
        get(
            &pairs,
            "fields[field_ds_personal_details][0][][access][w][a]"
        ),
        Some("0")
    );
    assert!(get(&pairs, "fields[field_ds_personal_details][0][][value]").is_some());
    let key = get(&pairs, "key").unwrap().to_string();
    let state = env.state().await;
    assert_eq!(
        state["members"][0]["key"],
        key.as_str(),
        "the key recorded is the key sent"
    );
    assert_eq!(state["callbacks"][0]["shape"], "form");

    // The setting reads back; bad values are refused.
    // (An unknown value fails to decode, as an unknown callback_format does.)
    assert_eq!(env.settings(json!({"callback_shape": "bogus"})).await, 400);
    assert_eq!(env.settings(json!({"callback_shape": "rotate"})).await, 200);
    let v: Value = env
        .http
        .get(format!("{}/_sandbox/settings", env.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["callback_shape"], "rotate");

    // rotate: one callback in each shape, in turn.
    let mut seen = Vec::new();
    for i in 0..9 {
        let cb = connect(&env, &format!("shaperot{i}")).await;
        let ct = cb.header("content-type");
        let body = cb.body.clone();
        let is_json = body.trim_start().starts_with('{');
        let shape = match (ct.as_deref(), is_json) {
            (Some("application/json"), true) => {
                let v = cb.json();
                if v["uid"].is_string() {
                    assert!(v["fields"]["field_ds_personal_details"]["0"][""].is_object());
                    "json-string-uid"
                } else {
                    assert!(v["uid"].is_u64());
                    "json"
                }
            }
            (Some("application/x-www-form-urlencoded"), true) => "json-as-form",
            (Some("text/plain"), true) => "json-as-text",
            (None, false) => "form-untyped",
            (None, true) => "json-untyped",
            (Some("application/x-www-form-urlencoded"), false) => {
                let pairs = cb.form();
                let conn = get(&pairs, "connection_id").unwrap().to_string();
                match get(&pairs, "uid") {
                    None => "no-uid",
                    Some(uid) if format!("{uid}-45678") != conn => {
                        assert_eq!(uid, "1");
                        "uid-mismatch"
                    }
                    Some(_) => "form",
                }
            }
            other => panic!("unexpected {other:?}: {body}"),
        };
        seen.push(shape);
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            "form",
            "form-untyped",
            "json",
            "json-as-form",
            "json-as-text",
            "json-string-uid",
            "json-untyped",
            "no-uid",
            "uid-mismatch"
        ]
    );
    let state = env.state().await;
    let mut shapes: Vec<&str> = state["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|c| c["shape"].as_str().unwrap())
        .collect();
    shapes.sort();
    assert_eq!(shapes, seen, "the state names each shape sent");
    env.stop().await;
}
