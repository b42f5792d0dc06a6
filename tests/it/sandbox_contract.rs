//! Contract tests for the sandbox through real HTTP: OAuth2, /ftc/setup,
//! /identify, one-time links, callbacks (JSON and form), connection status,
//! revocation, notifications, faults, and the /_sandbox endpoints.

use std::time::{Duration, Instant};

use mydex_test_support::contract::*;
use serde_json::{Value, json};

fn err_message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

// ---------- OAuth2 ----------

#[tokio::test]
async fn token_is_issued_for_client_credentials_with_basic_auth() {
    let env = Env::start().await;
    let resp = env
        .token_response(
            "sandbox-client",
            "sandbox-secret",
            "grant_type=client_credentials&scope=mydex%3Apdx",
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    assert!(v["access_token"].as_str().unwrap().len() >= 32);
    env.stop().await;
}

#[tokio::test]
async fn token_client_id_and_secret_are_url_encoded_in_basic_auth() {
    let env = Env::start_with(|a| {
        a.client_id = "my client:1".into();
        a.client_secret = "s3cr:t/+ü".into();
    })
    .await;
    let resp = env
        .token_response(
            "my client:1",
            "s3cr:t/+ü",
            "grant_type=client_credentials&scope=mydex:pdx",
        )
        .await;
    assert_eq!(resp.status(), 200);
    env.stop().await;
}

#[tokio::test]
async fn token_rejects_wrong_or_missing_client() {
    let env = Env::start().await;
    let body = "grant_type=client_credentials&scope=mydex%3Apdx";
    for (id, secret) in [
        ("sandbox-client", "wrong"),
        ("wrong", "sandbox-secret"),
        ("", ""),
    ] {
        let resp = env.token_response(id, secret, body).await;
        assert_eq!(resp.status(), 401, "{id}:{secret}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"], "invalid_client");
    }
    let resp = env
        .http
        .post(format!("{}/oauth2/token", env.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Secret in the body instead of Basic is not the contract.
    let resp = env
        .http
        .post(format!("{}/oauth2/token", env.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "mydex:pdx"),
            ("client_id", "sandbox-client"),
            ("client_secret", "sandbox-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    env.stop().await;
}

#[tokio::test]
async fn token_rejects_bad_grant_and_unknown_scope() {
    let env = Env::start().await;
    let resp = env
        .token_response(
            "sandbox-client",
            "sandbox-secret",
            "grant_type=password&scope=mydex%3Apdx",
        )
        .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "unsupported_grant_type");
    let resp = env
        .token_response(
            "sandbox-client",
            "sandbox-secret",
            "grant_type=client_credentials&scope=other",
        )
        .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"], "invalid_scope");
    env.stop().await;
}

#[tokio::test]
async fn token_without_pdx_scope_is_refused_by_the_api() {
    let env = Env::start().await;
    let resp = env
        .token_response(
            "sandbox-client",
            "sandbox-secret",
            "grant_type=client_credentials",
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let token = v["access_token"].as_str().unwrap();
    let resp = env.post_api("/ftc/setup", token, &env.setup_body()).await;
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(err_message(&v), "Access Denied");
    assert_eq!(
        v["error"]["reason"],
        "The access token is missing the mydex:pdx scope"
    );
    env.stop().await;
}

#[tokio::test]
async fn api_refuses_missing_unknown_and_expired_bearer() {
    let env = Env::start_with(|a| a.token_ttl = Duration::from_secs(3)).await;
    let resp = env
        .http
        .post(format!("{}/ftc/setup", env.base))
        .json(&env.setup_body())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("www-authenticate").is_some());
    let resp = env.post_api("/ftc/setup", "nope", &env.setup_body()).await;
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["reason"], "Invalid access token");

    let token = env.token().await;
    let resp = env.post_api("/identify", &token, &env.setup_body()).await;
    assert_eq!(resp.status(), 201);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    for path in ["/ftc/setup", "/identify"] {
        let resp = env.post_api(path, &token, &env.setup_body()).await;
        assert_eq!(resp.status(), 401, "{path}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["reason"], "The access token has expired");
    }
    let (status, v) = env.status(&token, NID, "1001", "1001-45678", "k").await;
    assert_eq!(status, 401);
    assert_eq!(v["error"]["reason"], "The access token has expired");
    env.stop().await;
}

// ---------- /ftc/setup and /identify ----------

fn decode_qr(data_uri: &str) -> String {
    use base64::Engine;
    let b64 = data_uri
        .strip_prefix("data:image/png;base64,")
        .expect("a PNG data URI");
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let img = image::load_from_memory(&png).unwrap().to_luma8();
    let (w, h) = img.dimensions();
    let mut prepared =
        rqrr::PreparedImage::prepare_from_greyscale(w as usize, h as usize, |x, y| {
            img.get_pixel(x as u32, y as u32).0[0]
        });
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1);
    grids[0].decode().unwrap().1
}

#[tokio::test]
async fn ftc_setup_answers_201_with_one_time_url_and_qr_png_of_it() {
    let env = Env::start().await;
    let token = env.token().await;
    let mut body = env.setup_body();
    body["linking_token"] = json!("inv-1");
    let resp = env.post_api("/ftc/setup", &token, &body).await;
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    let url = v["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/ftc/begin/", env.base)),
        "{url}"
    );
    assert_eq!(decode_qr(v["qr"].as_str().unwrap()), url);
    let state = env.state().await;
    let link = &state["links"][0];
    assert_eq!(link["url"], url);
    // Shaped like Mydex's links: /ftc/begin/{nid}/{token}/{version}.
    assert_eq!(
        url,
        format!(
            "{}/ftc/begin/{NID}/{}/1",
            env.base,
            link["id"].as_str().unwrap()
        )
    );
    assert_eq!(link["kind"], "ftc");
    assert_eq!(link["version"], 1);
    assert_eq!(link["linking_token"], "inv-1");
    assert_eq!(link["return_to"], RETURN_TO);
    assert_eq!(link["used"], false);
    assert_eq!(state["counts"]["ftc_setup"], 1);
    env.stop().await;
}

#[tokio::test]
async fn public_url_is_used_in_links() {
    let env = Env::start_with(|a| a.public_url = Some("https://login.example.org/".into())).await;
    let url = env.ftc_link(json!({})).await;
    assert!(
        url.starts_with("https://login.example.org/ftc/begin/"),
        "{url}"
    );
    env.stop().await;
}

#[tokio::test]
async fn ftc_setup_validates_exactly_as_documented() {
    let env = Env::start().await;
    let token = env.token().await;
    let hash = token_hash();
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"connection_nid": "999", "connection_token_hash": hash, "return_to": RETURN_TO}),
            403,
            "Access Denied: No Connection record",
        ),
        (
            json!({"connection_nid": NID, "connection_token_hash": sha512_hex("wrong"), "return_to": RETURN_TO}),
            403,
            "Access Denied: Invalid Connection Token",
        ),
        (
            json!({"connection_token_hash": hash, "return_to": RETURN_TO}),
            400,
            "Access Denied: Missing connection parameters in payload",
        ),
        (
            json!({"connection_nid": NID, "return_to": RETURN_TO}),
            400,
            "Access Denied: Missing connection parameters in payload",
        ),
        (
            json!({"connection_nid": "", "connection_token_hash": hash, "return_to": RETURN_TO}),
            400,
            "Access Denied: Missing connection parameters in payload",
        ),
        (
            json!({"connection_nid": NID, "connection_token_hash": hash}),
            400,
            "Following fields are missing or empty: return_to",
        ),
        (
            json!({"connection_nid": NID, "connection_token_hash": hash, "return_to": "  "}),
            400,
            "Following fields are missing or empty: return_to",
        ),
        (
            json!({"connection_nid": NID, "connection_token_hash": hash, "return_to": RETURN_TO, "version": 0}),
            400,
            "version cannot be lower than 1",
        ),
        (
            json!({"connection_nid": NID, "connection_token_hash": hash, "return_to": RETURN_TO, "version": "-3"}),
            400,
            "version cannot be lower than 1",
        ),
        (
            json!({"connection_nid": NID, "connection_token_hash": hash, "return_to": RETURN_TO, "version": 2}),
            400,
            "version higher than 1 but no mydexid in payload",
        ),
        (
            json!({"connection_nid": NID, "connection_token_hash": hash, "return_to": RETURN_TO, "version": "2", "mydexid": ""}),
            400,
            "version higher than 1 but no mydexid in payload",
        ),
    ];
    for (body, status, message) in cases {
        let resp = env.post_api("/ftc/setup", &token, &body).await;
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v, json!({"error": {"message": message}}), "{body}");
    }
    // Accepted forms: version as a number or a string, NID as a number,
    // the hash in upper case.
    for body in [
        json!({"connection_nid": NID, "connection_token_hash": hash, "return_to": RETURN_TO, "version": 1}),
        json!({"connection_nid": NID, "connection_token_hash": hash, "return_to": RETURN_TO, "version": "2", "mydexid": "alice1"}),
        json!({"connection_nid": 45678, "connection_token_hash": hash.to_uppercase(), "return_to": RETURN_TO}),
    ] {
        let resp = env.post_api("/ftc/setup", &token, &body).await;
        assert_eq!(resp.status(), 201, "{body}");
    }
    // Not JSON: the OpenAPI 400 shape.
    let resp = env
        .http
        .post(format!("{}/ftc/setup", env.base))
        .bearer_auth(&token)
        .header("Content-Type", "application/json")
        .body("connection_nid=45678")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["success"], 0);
    assert!(v["message"].is_string());
    env.stop().await;
}

#[tokio::test]
async fn identify_validates_and_answers_201() {
    let env = Env::start().await;
    let token = env.token().await;
    let hash = token_hash();
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"connection_nid": "1", "connection_token_hash": hash, "return_to": RETURN_TO}),
            403,
            "Access Denied: No Connection record",
        ),
        (
            json!({"connection_nid": NID, "connection_token_hash": "abc", "return_to": RETURN_TO}),
            403,
            "Access Denied: Invalid Connection Token",
        ),
        (
            json!({"return_to": RETURN_TO}),
            400,
            "Access Denied: Missing connection parameters in payload",
        ),
        (
            json!({"connection_nid": NID, "connection_token_hash": hash}),
            400,
            "Following fields are missing or empty: return_to",
        ),
    ];
    for (body, status, message) in cases {
        let resp = env.post_api("/identify", &token, &body).await;
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(err_message(&v), message);
    }
    let resp = env.post_api("/identify", &token, &env.setup_body()).await;
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    let url = v["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/identify/", env.base)));
    assert_eq!(decode_qr(v["qr"].as_str().unwrap()), url);
    env.stop().await;
}

// ---------- one-time links ----------

#[tokio::test]
async fn link_works_once_then_410_and_unknown_is_404() {
    let env = Env::start().await;
    let url = env.ftc_link(json!({})).await;
    let resp = env.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(page.contains("Register") && page.contains("Log in"));
    let resp = env.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 410);
    assert!(resp.text().await.unwrap().contains("already been used"));
    let resp = env
        .http
        .get(format!("{}/ftc/begin/doesnotexist", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // An identify link is not an FTC link.
    let id_url = env.identify_link("t").await;
    let id = id_url.rsplit('/').next().unwrap();
    let resp = env
        .http
        .get(format!("{}/ftc/begin/{NID}/{id}/1", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // An FTC link's NID and version are its own: another is unknown (and
    // leaves the link unused).
    let fresh = env.ftc_link(json!({})).await;
    let token = fresh.rsplit('/').nth(1).unwrap();
    for wrong in [
        format!("{}/ftc/begin/{NID}/{token}/2", env.base),
        format!("{}/ftc/begin/99999/{token}/1", env.base),
        format!("{}/ftc/begin/{token}", env.base),
    ] {
        let resp = env.http.get(&wrong).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{wrong}");
    }
    assert_eq!(env.http.get(&fresh).send().await.unwrap().status(), 200);
    // A journey on a visited link is refused too.
    let (status, v) = env
        .journey(json!({"url": url, "mydexid": "alice1", "email": "a@example.com"}))
        .await;
    assert_eq!(status, 410);
    assert!(
        v["errors"][0]
            .as_str()
            .unwrap()
            .contains("already been used")
    );
    env.stop().await;
}

#[tokio::test]
async fn link_expires_after_link_ttl() {
    let env = Env::start_with(|a| a.link_ttl = Duration::from_millis(500)).await;
    let url = env.ftc_link(json!({})).await;
    let url2 = env.ftc_link(json!({})).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let resp = env.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 410);
    assert!(resp.text().await.unwrap().contains("expired"));
    let (status, _) = env
        .journey(json!({"url": url2, "mydexid": "alice1", "email": "a@example.com"}))
        .await;
    assert_eq!(status, 410);
    let state = env.state().await;
    assert_eq!(state["links"][0]["expired"], true);
    // The TTL can be changed at run time.
    assert_eq!(env.settings(json!({"link_ttl": "1h"})).await, 200);
    let url3 = env.ftc_link(json!({})).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(env.http.get(&url3).send().await.unwrap().status(), 200);
    env.stop().await;
}

// ---------- journeys and callbacks ----------

#[tokio::test]
async fn ftc_journey_posts_json_callback_with_authentication_header() {
    let env = Env::start().await;
    let url = env.ftc_link(json!({"linking_token": "inv-42"})).await;
    let (status, v) = env
        .journey(json!({"url": url, "mydexid": "alice1", "email": "alice@example.com"}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["uid"], 1001);
    assert_eq!(v["mydexid"], "alice1");
    assert_eq!(v["connection_id"], "1001-45678");
    assert_eq!(v["callback_status"], 200);
    assert_eq!(v["callback_attempts"], 1);

    let cb = env.receiver.last();
    assert_eq!(cb.method, "POST");
    assert_eq!(cb.header("authentication").unwrap(), token_hash());
    assert_eq!(cb.header("content-type").unwrap(), "application/json");
    let body = cb.json();
    let key = body["key"].as_str().unwrap().to_owned();
    assert!(key.len() >= 32 && key.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(
        body,
        json!({
            "uid": 1001,
            "mydexid": "alice1",
            "key": key,
            "connection_id": "1001-45678",
            "linking_token": "inv-42",
            "fields": body["fields"].clone(),
        })
    );
    assert_eq!(
        body["fields"]["field_ds_personal_details"][0][0],
        json!({"access": {"r": {"a": 1}}})
    );
    assert!(body.get("type").is_none());

    let state = env.state().await;
    let m = &state["members"][0];
    assert_eq!(m["uid"], 1001);
    assert_eq!(m["key"], key);
    assert_eq!(m["version"], 1);
    assert_eq!(m["connection_id"], "1001-45678");
    assert_eq!(state["links"][0]["used"], true);
    assert_eq!(state["callbacks"][0]["type"], "ftc");
    assert_eq!(state["callbacks"][0]["linking_token"], "inv-42");
    // The link is now used.
    let (status, _) = env.journey(json!({"url": url, "mydexid": "alice1"})).await;
    assert_eq!(status, 410);
    env.stop().await;
}

#[tokio::test]
async fn ftc_journey_without_linking_token_omits_it() {
    let env = Env::start().await;
    let url = env.ftc_link(json!({})).await;
    let (status, _) = env
        .journey(json!({"url": url, "mydexid": "bob22", "email": "bob@example.com"}))
        .await;
    assert_eq!(status, 200);
    assert!(env.receiver.last().json().get("linking_token").is_none());
    env.stop().await;
}

#[tokio::test]
async fn form_callbacks_use_php_brackets_and_carry_the_same_data() {
    let env = Env::start_with(|a| a.callback_format = mydex_sandbox::CallbackFormat::Form).await;
    let url = env.ftc_link(json!({"linking_token": "inv 7&x"})).await;
    let (status, _) = env
        .journey(json!({"url": url, "mydexid": "RBFish123", "email": "rb@example.com"}))
        .await;
    assert_eq!(status, 200);
    let cb = env.receiver.last();
    assert_eq!(cb.method, "POST");
    assert_eq!(cb.header("authentication").unwrap(), token_hash());
    assert_eq!(
        cb.header("content-type").unwrap(),
        "application/x-www-form-urlencoded"
    );
    assert!(cb.body.contains(
        "fields%5Bfield_ds_personal_details%5D%5B0%5D%5B%5D%5Baccess%5D%5Br%5D%5Ba%5D=1"
    ));
    assert!(cb.body.contains("linking_token=inv+7%26x"));
    let pairs = cb.form();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("uid").as_deref(), Some("1001"));
    assert_eq!(get("mydexid").as_deref(), Some("RBFish123"));
    assert_eq!(get("connection_id").as_deref(), Some("1001-45678"));
    assert_eq!(get("linking_token").as_deref(), Some("inv 7&x"));
    let key = get("key").unwrap();
    let state = env.state().await;
    assert_eq!(state["members"][0]["key"], key.as_str());
    // Same data as JSON: switch format and compare the fields structure.
    let field_pairs: Vec<_> = pairs
        .iter()
        .filter(|(k, _)| k.starts_with("fields["))
        .collect();
    assert!(field_pairs.contains(&&(
        "fields[field_ds_personal_details][0][][access][r][a]".to_owned(),
        "1".to_owned()
    )));
    assert!(field_pairs.contains(&&(
        "fields[field_ds_personal_details][0][][access][w][a]".to_owned(),
        "0".to_owned()
    )));
    assert_eq!(env.settings(json!({"callback_format": "json"})).await, 200);
    let url = env.ftc_link(json!({})).await;
    env.journey(json!({"url": url, "mydexid": "RBFish123"}))
        .await;
    let fields = env.receiver.last().json()["fields"].clone();
    let mut from_json = Vec::new();
    flatten("fields", &fields, &mut from_json);
    let from_form: Vec<(String, String)> = field_pairs.into_iter().cloned().collect();
    assert_eq!(from_json, from_form);
    env.stop().await;
}

/// PHP-style flattening used to compare the JSON and form bodies.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                flatten(&format!("{prefix}[{k}]"), v, out);
            }
        }
        Value::Array(items) => {
            let nested = items.iter().all(Value::is_array);
            for (i, v) in items.iter().enumerate() {
                let p = if nested {
                    format!("{prefix}[{i}]")
                } else {
                    format!("{prefix}[]")
                };
                flatten(&p, v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

#[tokio::test]
async fn update_journey_puts_without_key_and_only_for_the_named_member() {
    let env = Env::start().await;
    for (id, email) in [
        ("alice1", "alice@example.com"),
        ("bob22", "bob@example.com"),
    ] {
        let url = env.ftc_link(json!({})).await;
        let (status, _) = env
            .journey(json!({"url": url, "mydexid": id, "email": email}))
            .await;
        assert_eq!(status, 200);
    }
    let token = env.token().await;
    let state = env.state().await;
    let key = state["members"][0]["key"].as_str().unwrap().to_owned();
    let (_, v) = env.status(&token, NID, "1001", "1001-45678", &key).await;
    assert_eq!(
        v,
        json!({"exists": "true", "status": "true", "version": "1"})
    );

    assert_eq!(env.settings(json!({"connection_version": 2})).await, 200);
    let url = env
        .ftc_link(json!({"mydexid": "alice1", "version": 2, "linking_token": "upd-1"}))
        .await;
    // Another MydexID may not complete it.
    let (status, v) = env.journey(json!({"url": url, "mydexid": "bob22"})).await;
    assert_eq!(status, 403);
    assert_eq!(
        v["errors"][0],
        "This one-time link was intended for a different MydexID"
    );
    let (status, v) = env.journey(json!({"url": url, "mydexid": "alice1"})).await;
    assert_eq!(status, 200, "{v}");
    let cb = env.receiver.last();
    assert_eq!(cb.method, "PUT");
    assert_eq!(cb.header("authentication").unwrap(), token_hash());
    let body = cb.json();
    assert!(body.get("key").is_none());
    assert_eq!(body["uid"], 1001);
    assert_eq!(body["mydexid"], "alice1");
    assert_eq!(body["connection_id"], "1001-45678");
    assert_eq!(body["linking_token"], "upd-1");
    assert!(body["fields"]["field_ds_events"].is_array());
    // The key is unchanged and the version moved on.
    let (_, v) = env.status(&token, NID, "1001", "1001-45678", &key).await;
    assert_eq!(
        v,
        json!({"exists": "true", "status": "true", "version": "2"})
    );
    let state = env.state().await;
    assert_eq!(state["callbacks"][2]["type"], "update");
    assert_eq!(state["callbacks"][2]["method"], "PUT");
    env.stop().await;
}

#[tokio::test]
async fn reconnection_sends_a_fresh_key_and_the_old_one_is_denied() {
    let env = Env::start().await;
    let url = env.ftc_link(json!({})).await;
    env.journey(json!({"url": url, "mydexid": "alice1", "email": "a@example.com"}))
        .await;
    let key1 = env.receiver.last().json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let url = env.ftc_link(json!({})).await;
    let (status, v) = env.journey(json!({"url": url, "mydexid": "alice1"})).await;
    assert_eq!(status, 200);
    assert_eq!(v["uid"], 1001);
    let cb = env.receiver.last();
    assert_eq!(cb.method, "POST");
    let key2 = cb.json()["key"].as_str().unwrap().to_owned();
    assert_ne!(key1, key2);
    let token = env.token().await;
    let (status, v) = env.status(&token, NID, "1001", "1001-45678", &key1).await;
    assert_eq!(status, 403);
    assert_eq!(err_message(&v), "Permission Denied");
    let (status, _) = env.status(&token, NID, "1001", "1001-45678", &key2).await;
    assert_eq!(status, 200);
    env.stop().await;
}

#[tokio::test]
async fn identify_journey_sends_type_identify() {
    let env = Env::start().await;
    let url = env.identify_link("who-1").await;
    let (status, v) = env
        .journey(json!({"url": url, "mydexid": "carol3", "email": "carol@example.com"}))
        .await;
    assert_eq!(status, 200, "{v}");
    let cb = env.receiver.last();
    assert_eq!(cb.method, "POST");
    assert_eq!(cb.header("authentication").unwrap(), token_hash());
    assert_eq!(
        cb.json(),
        json!({"type": "identify", "mydexid": "carol3", "linking_token": "who-1"})
    );
    // An existing member needs no registration.
    let url = env.identify_link("who-2").await;
    let (status, _) = env.journey(json!({"url": url, "mydexid": "carol3"})).await;
    assert_eq!(status, 200);
    assert_eq!(env.receiver.last().json()["linking_token"], "who-2");
    env.stop().await;
}

#[tokio::test]
async fn notification_callback_is_sent_on_demand() {
    let env = Env::start().await;
    let url = env.ftc_link(json!({})).await;
    env.journey(json!({"url": url, "mydexid": "alice1", "email": "a@example.com"}))
        .await;
    let resp = env
        .http
        .post(format!("{}/_sandbox/notify", env.base))
        .json(&json!({"mydexid": "alice1", "dataset": "ds_events", "action": "create", "updated_id": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["callback_status"], 200);
    let cb = env.receiver.last();
    assert_eq!(cb.method, "POST");
    assert_eq!(cb.header("authentication").unwrap(), token_hash());
    assert_eq!(
        cb.json(),
        json!({
            "type": "notification",
            "uid": "1001",
            "message": "Data for member 1001 has changed",
            "dataset": "ds_events",
            "connection_id": "1001-45678",
            "action": "create",
            "updated_id": "1",
        })
    );
    let resp = env
        .http
        .post(format!("{}/_sandbox/notify", env.base))
        .json(&json!({"mydexid": "nobody1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    env.stop().await;
}

#[tokio::test]
async fn failed_callbacks_are_retried() {
    let env = Env::start().await;
    env.receiver.script(&[500, 503]);
    let url = env.ftc_link(json!({})).await;
    let (status, v) = env
        .journey(json!({"url": url, "mydexid": "alice1", "email": "a@example.com"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["callback_status"], 200);
    assert_eq!(v["callback_attempts"], 3);
    assert_eq!(env.receiver.seen().len(), 3);
    // A 4xx is final.
    env.receiver.script(&[401]);
    let url = env.ftc_link(json!({})).await;
    let (_, v) = env.journey(json!({"url": url, "mydexid": "alice1"})).await;
    assert_eq!(v["callback_status"], 401);
    assert_eq!(v["callback_attempts"], 1);
    // Nobody listening: every attempt fails. Port 1 (tcpmux) is privileged
    // and unused, so no other test can be listening there; a port freed by
    // a dropped listener could be taken by another test meanwhile.
    let dead_url = "http://127.0.0.1:1/cb";
    assert_eq!(
        env.settings(json!({"callback_url": dead_url, "callback_retries": 1}))
            .await,
        200
    );
    let url = env.ftc_link(json!({})).await;
    let (status, v) = env.journey(json!({"url": url, "mydexid": "alice1"})).await;
    assert_eq!(status, 200);
    assert_eq!(v["callback_status"], Value::Null);
    assert_eq!(v["callback_attempts"], 2);
    let state = env.state().await;
    assert_eq!(state["callbacks"][2]["status"], Value::Null);
    env.stop().await;
}

#[tokio::test]
async fn journey_validates_registration_and_login() {
    let env = Env::start().await;
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"mydexid": "", "email": "x@example.com"}),
            vec!["MydexID is required"],
        ),
        (
            json!({"mydexid": "ab", "email": "x@example.com"}),
            vec!["MydexID must be between 3 and 60 characters long"],
        ),
        (
            json!({"mydexid": "123456", "email": "x@example.com"}),
            vec!["MydexID cannot be made up only of numbers"],
        ),
        (
            json!({"mydexid": "bad_id", "email": "x@example.com"}),
            vec!["MydexID must contain only letters and numbers"],
        ),
        (
            json!({"mydexid": "newbie1"}),
            vec!["Email address is required"],
        ),
        (
            json!({"mydexid": "newbie1", "email": "not-an-email"}),
            vec!["Email address is not valid"],
        ),
        (
            json!({"mydexid": "newbie1", "email": "x@example.com", "password": "short"}),
            vec!["Password must be at least 8 characters long"],
        ),
        (
            json!({"mydexid": "newbie12", "email": "x@example.com", "password": "newbie12"}),
            vec!["Password cannot be the same as the MydexID"],
        ),
        (
            json!({"mydexid": "newbie1", "email": "x@example.com", "private_key": "pk"}),
            vec!["Private Key must be between 8 and 128 characters long"],
        ),
        (
            json!({"mydexid": "newbie1", "email": "x@example.com", "password": "password99", "private_key": "password99"}),
            vec!["Private Key cannot be the same as the password"],
        ),
        (
            json!({"mydexid": "newbie1", "email": "x@example.com", "accept": false}),
            vec![
                "You must accept the Data Sharing and Services Agreement and the terms of service",
            ],
        ),
    ];
    let url = env.ftc_link(json!({})).await;
    for (mut body, errors) in cases {
        body["url"] = json!(url);
        let (status, v) = env.journey(body.clone()).await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(v, json!({"errors": errors}), "{body}");
    }
    // Failed attempts do not use the link.
    let (status, _) = env
        .journey(json!({"url": url, "mydexid": "  alice1 ", "email": " alice@example.com "}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(env.state().await["members"][0]["mydexid"], "alice1");
    // Taken MydexID or email, wrong password or private key.
    let url = env.ftc_link(json!({})).await;
    let (status, v) = env
        .journey(json!({"url": url, "mydexid": "other1", "email": "ALICE@example.com"}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"], json!(["Email address is already in use"]));
    let (status, v) = env
        .journey(json!({"url": url, "mydexid": "alice1", "password": "wrongpassword"}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"], json!(["Unrecognised MydexID or password"]));
    let (status, v) = env
        .journey(json!({"url": url, "mydexid": "alice1", "private_key": "wrong-private-key"}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"], json!(["Incorrect Private Key"]));
    let (status, _) = env
        .journey(json!({"url": format!("{}/ftc/begin/nope", env.base), "mydexid": "alice1"}))
        .await;
    assert_eq!(status, 404);
    env.stop().await;
}

#[tokio::test]
async fn hundreds_of_journeys_get_distinct_uids() {
    let env = Env::start().await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let url = env
            .ftc_link(json!({"linking_token": format!("inv-{i}")}))
            .await;
        let http = env.http.clone();
        let base = env.base.clone();
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(format!("{base}/_sandbox/journeys"))
                .json(&json!({"url": url, "mydexid": format!("member{i}"), "email": format!("m{i}@example.com")}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let v: Value = resp.json().await.unwrap();
            v["uid"].as_u64().unwrap()
        }));
    }
    let mut uids = Vec::new();
    for t in tasks {
        uids.push(t.await.unwrap());
    }
    uids.sort();
    assert_eq!(uids, (1001..1201).collect::<Vec<u64>>());
    assert_eq!(env.receiver.seen().len(), 200);
    env.stop().await;
}

// ---------- connection status and revocation ----------

#[tokio::test]
async fn connection_status_checks_key_bearer_and_denies_revoked_or_unknown() {
    let env = Env::start().await;
    let url = env.ftc_link(json!({})).await;
    env.journey(json!({"url": url, "mydexid": "alice1", "email": "a@example.com"}))
        .await;
    let key = env.receiver.last().json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = env.token().await;
    let (status, v) = env.status(&token, NID, "1001", "1001-45678", &key).await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({"exists": "true", "status": "true", "version": "1"})
    );

    for (nid, uid, con_id, k, code, message) in [
        (
            NID,
            "1001",
            "1001-45678",
            "wrong-key",
            403,
            "Permission Denied",
        ),
        (
            NID,
            "1002",
            "1002-45678",
            key.as_str(),
            403,
            "Permission Denied",
        ),
        (
            NID,
            "1001",
            "1002-45678",
            key.as_str(),
            403,
            "Permission Denied",
        ),
        (
            NID,
            "abc",
            "abc-45678",
            key.as_str(),
            403,
            "Permission Denied",
        ),
        (
            "999",
            "1001",
            "1001-999",
            key.as_str(),
            403,
            "Access Denied: No Connection record",
        ),
        (
            NID,
            "",
            "1001-45678",
            key.as_str(),
            400,
            "Following fields are missing or empty: uid",
        ),
        (
            NID,
            "1001",
            "",
            key.as_str(),
            400,
            "Following fields are missing or empty: con_id",
        ),
    ] {
        let (status, v) = env.status(&token, nid, uid, con_id, k).await;
        assert_eq!(status, code, "{nid} {uid} {con_id}");
        assert_eq!(err_message(&v), message);
    }
    // No Connection-Token header at all.
    let resp = env
        .http
        .get(format!(
            "{}/connection/status/{NID}?uid=1001&con_id=1001-45678",
            env.base
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Bad bearer.
    let (status, _) = env.status("bad", NID, "1001", "1001-45678", &key).await;
    assert_eq!(status, 401);

    let revoke = |m: &str| {
        env.http
            .post(format!("{}/_sandbox/members/{m}/revoke", env.base))
            .send()
    };
    assert_eq!(revoke("alice1").await.unwrap().status(), 200);
    assert_eq!(revoke("nobody1").await.unwrap().status(), 404);
    let (status, v) = env.status(&token, NID, "1001", "1001-45678", &key).await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({"exists": "true", "status": "false", "version": "1"})
    );
    assert_eq!(env.state().await["members"][0]["revoked"], true);
    // Connecting again restores it.
    let url = env.ftc_link(json!({})).await;
    env.journey(json!({"url": url, "mydexid": "alice1"})).await;
    let key = env.receiver.last().json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, v) = env.status(&token, NID, "1001", "1001-45678", &key).await;
    assert_eq!(v["status"], "true");
    assert_eq!(env.state().await["counts"]["status"], 12);
    env.stop().await;
}

// ---------- the older FTC flow: /access-token + /api/connection ----------

#[tokio::test]
async fn older_flow_answers_the_link_as_a_bare_json_string() {
    let env = Env::start().await;
    let bearer = env.token().await;
    let short = env.short_token(&bearer).await;
    assert!(short.len() >= 16);
    let mut body = env.setup_body();
    body["linking_token"] = json!("inv-7");
    let auth = sha512_hex(&format!("{short}{TOKEN}"));
    let resp = env
        .post_connection("/api/connection", &bearer, Some(&short), Some(&auth), &body)
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let url = v.as_str().expect("a bare JSON string, no {url, qr}");
    let state = env.state().await;
    let link = &state["links"][0];
    assert_eq!(
        url,
        format!(
            "{}/ftc/begin/{NID}/{}/1",
            env.base,
            link["id"].as_str().unwrap()
        )
    );
    assert_eq!(link["kind"], "ftc");
    assert_eq!(link["linking_token"], "inv-7");
    assert_eq!(state["counts"]["access_token"], 1);
    assert_eq!(state["counts"]["api_connection"], 1);
    assert_eq!(state["counts"]["ftc_setup"], 0);
    // The link works like any other: a member connects, the key arrives.
    let (status, j) = env
        .journey(json!({"url": url, "mydexid": "alice1", "email": "a@example.com"}))
        .await;
    assert_eq!(status, 200, "{j}");
    let cb = env.receiver.last().json();
    assert_eq!(cb["linking_token"], "inv-7");
    assert_eq!(cb["key"], env.state().await["members"][0]["key"]);
    env.stop().await;
}

#[tokio::test]
async fn older_flow_update_goes_through_api_connection_update() {
    let env = Env::start().await;
    let url = env.connection_link("/api/connection", json!({})).await;
    env.journey(json!({"url": url, "mydexid": "alice1", "email": "a@example.com"}))
        .await;
    env.settings(json!({"connection_version": 2})).await;
    // As Mydex's update script sends it: version as a string.
    let url = env
        .connection_link(
            "/api/connection/update",
            json!({"mydexid": "alice1", "version": "2", "linking_token": "up-1"}),
        )
        .await;
    assert!(url.ends_with("/2"), "{url}");
    let (status, _) = env.journey(json!({"url": url, "mydexid": "alice1"})).await;
    assert_eq!(status, 200);
    let cb = env.receiver.last();
    assert_eq!(cb.method, "PUT");
    assert_eq!(cb.json()["linking_token"], "up-1");
    assert_eq!(env.state().await["members"][0]["version"], 2);
    assert_eq!(env.state().await["counts"]["api_connection_update"], 1);
    // An update names the member and a version above 1.
    let bearer = env.token().await;
    for (extra, message) in [
        (
            json!({"mydexid": "alice1"}),
            "version must be higher than 1 for an update",
        ),
        (
            json!({"mydexid": "alice1", "version": 1}),
            "version must be higher than 1 for an update",
        ),
        (
            json!({"version": 2}),
            "version higher than 1 but no mydexid in payload",
        ),
    ] {
        let short = env.short_token(&bearer).await;
        let auth = sha512_hex(&format!("{short}{TOKEN}"));
        let mut body = env.setup_body();
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let resp = env
            .post_connection(
                "/api/connection/update",
                &bearer,
                Some(&short),
                Some(&auth),
                &body,
            )
            .await;
        assert_eq!(resp.status(), 400, "{extra}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v, json!({"error": {"message": message}}), "{extra}");
    }
    env.stop().await;
}

#[tokio::test]
async fn older_flow_checks_the_short_token_and_its_hash() {
    let env = Env::start().await;
    let bearer = env.token().await;
    let body = env.setup_body();
    let right = |short: &str| sha512_hex(&format!("{short}{TOKEN}"));
    let denied = |v: &Value, message: &str| {
        assert_eq!(v, &json!({"error": {"message": message}}));
    };
    async fn answer(resp: reqwest::Response) -> (u16, Value) {
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    // A wrong hash: the short token hashed with another Connection Token,
    // or the Connection Token's own hash.
    for wrong in [
        |s: &str| sha512_hex(&format!("{s}wrong-token")),
        |_: &str| token_hash(),
        |s: &str| sha512_hex(&format!("{TOKEN}{s}")),
    ] {
        let short = env.short_token(&bearer).await;
        let (status, v) = answer(
            env.post_connection(
                "/api/connection",
                &bearer,
                Some(&short),
                Some(&wrong(&short)),
                &body,
            )
            .await,
        )
        .await;
        assert_eq!(status, 403);
        denied(&v, "Access Denied: Invalid Authentication");
        // The short token was used up by that request.
        let (status, v) = answer(
            env.post_connection(
                "/api/connection",
                &bearer,
                Some(&short),
                Some(&right(&short)),
                &body,
            )
            .await,
        )
        .await;
        assert_eq!(status, 403);
        denied(&v, "Access Denied: Invalid Short Access Token");
    }

    // The right hash (in any case) works once; the same short token again is refused.
    let short = env.short_token(&bearer).await;
    let (status, v) = answer(
        env.post_connection(
            "/api/connection",
            &bearer,
            Some(&short),
            Some(&right(&short).to_uppercase()),
            &body,
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert!(v.is_string());
    for path in ["/api/connection", "/api/connection/update"] {
        let (status, v) = answer(
            env.post_connection(path, &bearer, Some(&short), Some(&right(&short)), &body)
                .await,
        )
        .await;
        assert_eq!(status, 403, "{path}");
        denied(&v, "Access Denied: Invalid Short Access Token");
    }
    // A short token the sandbox never issued.
    let (status, v) = answer(
        env.post_connection(
            "/api/connection",
            &bearer,
            Some("made-up"),
            Some(&right("made-up")),
            &body,
        )
        .await,
    )
    .await;
    assert_eq!(status, 403);
    denied(&v, "Access Denied: Invalid Short Access Token");

    // Missing headers.
    let short = env.short_token(&bearer).await;
    let (status, v) = answer(
        env.post_connection(
            "/api/connection",
            &bearer,
            None,
            Some(&right(&short)),
            &body,
        )
        .await,
    )
    .await;
    assert_eq!(status, 403);
    denied(&v, "Access Denied: Missing Short-Access-Token header");
    let (status, v) = answer(
        env.post_connection("/api/connection", &bearer, Some(&short), None, &body)
            .await,
    )
    .await;
    assert_eq!(status, 403);
    denied(&v, "Access Denied: Missing Authentication header");

    // The bearer is checked first, on both calls.
    let (status, v) = env.access_token("nope", NID).await;
    assert_eq!(status, 401);
    assert_eq!(v["error"]["reason"], "Invalid access token");
    let short = env.short_token(&bearer).await;
    let resp = env
        .post_connection(
            "/api/connection",
            "nope",
            Some(&short),
            Some(&right(&short)),
            &body,
        )
        .await;
    assert_eq!(resp.status(), 401);
    // Another NID has no record.
    let (status, v) = env.access_token(&bearer, "99999").await;
    assert_eq!(status, 403);
    denied(&v, "Access Denied: No Connection record");

    // The body is checked as /ftc/setup's is, after the headers.
    let short = env.short_token(&bearer).await;
    let mut bad = env.setup_body();
    bad["connection_token_hash"] = json!(sha512_hex("wrong"));
    let (status, v) = answer(
        env.post_connection(
            "/api/connection",
            &bearer,
            Some(&short),
            Some(&right(&short)),
            &bad,
        )
        .await,
    )
    .await;
    assert_eq!(status, 403);
    denied(&v, "Access Denied: Invalid Connection Token");

    let counts = &env.state().await["counts"];
    assert_eq!(counts["access_token"], 9);
    assert_eq!(counts["api_connection"], 13);
    assert_eq!(counts["api_connection_update"], 1);
    assert_eq!(env.state().await["links"].as_array().unwrap().len(), 1);
    env.stop().await;
}

#[tokio::test]
async fn faults_apply_to_the_older_flow() {
    let env = with_fault("503").await;
    let (status, _) = env.access_token("x", NID).await;
    assert_eq!(status, 503);
    for path in ["/api/connection", "/api/connection/update"] {
        let resp = env
            .post_connection(path, "x", Some("s"), Some("a"), &env.setup_body())
            .await;
        assert_eq!(resp.status(), 503, "{path}");
    }
    let state = env.state().await;
    assert_eq!(state["counts"]["faults_injected"], 3);
    env.stop().await;
}

// ---------- faults ----------

/// The `slow` fault's delay: long enough that a loaded machine's own
/// delays cannot be mistaken for it.
const SLOW: Duration = Duration::from_secs(8);

async fn with_fault(fault: &str) -> Env {
    let env = Env::start().await;
    assert_eq!(
        env.settings(json!({"fault_rate": 1.0, "faults": [fault], "slow_delay": "8s"}))
            .await,
        200
    );
    env
}

#[tokio::test]
async fn faults_answer_500_503_and_429_with_retry_after() {
    for (fault, code) in [("500", 500), ("503", 503), ("429", 429)] {
        let env = with_fault(fault).await;
        let resp = env
            .token_response(
                "sandbox-client",
                "sandbox-secret",
                "grant_type=client_credentials&scope=mydex%3Apdx",
            )
            .await;
        assert_eq!(resp.status().as_u16(), code);
        if code == 429 {
            assert_eq!(resp.headers()["retry-after"], "1");
        }
        for path in ["/ftc/setup", "/identify"] {
            let resp = env.post_api(path, "x", &env.setup_body()).await;
            assert_eq!(resp.status().as_u16(), code, "{path}");
        }
        let (status, _) = env.status("x", NID, "1", "1-45678", "k").await;
        assert_eq!(status, code);
        // The /_sandbox endpoints are never faulted.
        let state = env.state().await;
        assert_eq!(state["counts"]["faults_injected"], 4);
        assert_eq!(state["requests"].as_array().unwrap().len(), 4);
        assert_eq!(state["requests"][0]["status"], code);
        env.stop().await;
    }
}

#[tokio::test]
async fn slow_fault_outlasts_a_client_timeout() {
    let env = with_fault("slow").await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client
        .post(format!("{}/ftc/setup", env.base))
        .json(&env.setup_body())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    // Given up before the slow answer would have come; a loaded machine
    // may take a while past the 300 ms timeout itself.
    assert!(started.elapsed() < SLOW);
    // Without a timeout the answer comes, late.
    let started = Instant::now();
    let resp = env.post_api("/ftc/setup", "x", &env.setup_body()).await;
    assert_eq!(resp.status(), 401);
    assert!(started.elapsed() >= SLOW);
    env.stop().await;
}

#[tokio::test]
async fn drop_fault_closes_the_connection_without_an_answer() {
    let env = with_fault("drop").await;
    let started = Instant::now();
    let err = env
        .http
        .post(format!("{}/ftc/setup", env.base))
        .json(&env.setup_body())
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_timeout() && err.status().is_none(), "{err}");
    // Closed, not answered late: well within the slow fault's delay.
    assert!(started.elapsed() < SLOW);
    // Raw TCP: the peer closes with no bytes of HTTP.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(env.sb.addr).await.unwrap();
    s.write_all(b"POST /identify HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(SLOW, s.read_to_end(&mut buf))
        .await
        .expect("closed promptly")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // The sandbox still serves, and pages are never faulted.
    assert_eq!(env.settings(json!({"fault_rate": 0.0})).await, 200);
    let url = env.ftc_link(json!({})).await;
    assert_eq!(env.settings(json!({"fault_rate": 1.0})).await, 200);
    assert_eq!(env.http.get(&url).send().await.unwrap().status(), 200);
    let state = env.state().await;
    assert_eq!(state["requests"][0]["status"], 0);
    env.stop().await;
}

#[tokio::test]
async fn partial_fault_rate_faults_some_calls() {
    let env = Env::start_with(|a| {
        a.fault_rate = 0.5;
        a.faults = vec![mydex_sandbox::FaultKind::Status503];
    })
    .await;
    let mut faulted = 0;
    for _ in 0..200 {
        let resp = env.post_api("/identify", "x", &env.setup_body()).await;
        match resp.status().as_u16() {
            503 => faulted += 1,
            401 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!((50..150).contains(&faulted), "{faulted}");
    assert_eq!(env.state().await["counts"]["faults_injected"], faulted);
    env.stop().await;
}

// ---------- control ----------

#[tokio::test]
async fn settings_reject_bad_values() {
    let env = Env::start().await;
    assert_eq!(env.settings(json!({"fault_rate": 2.0})).await, 422);
    assert_eq!(env.settings(json!({"faults": ["boom"]})).await, 422);
    assert_eq!(env.settings(json!({"token_ttl": "soon"})).await, 422);
    assert_eq!(env.settings(json!({"connection_version": 0})).await, 422);
    assert_eq!(env.settings(json!({"nope": 1})).await, 400);
    assert_eq!(
        env.settings(json!({"token_ttl": "2s", "faults": ["500", 429]}))
            .await,
        200
    );
    let v: Value = env
        .http
        .get(format!("{}/_sandbox/settings", env.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["token_ttl"], "2s");
    assert_eq!(v["faults"], json!(["500", "429"]));
    let resp = env
        .token_response(
            "sandbox-client",
            "sandbox-secret",
            "grant_type=client_credentials&scope=mydex%3Apdx",
        )
        .await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["expires_in"], 2);
    env.stop().await;
}

#[tokio::test]
async fn state_logs_requests_and_counts() {
    let env = Env::start().await;
    let token = env.token().await;
    env.post_api("/ftc/setup", &token, &env.setup_body()).await;
    env.post_api("/identify", &token, &env.setup_body()).await;
    let state = env.state().await;
    let reqs = state["requests"].as_array().unwrap();
    let seen: Vec<(String, String, u64)> = reqs
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_owned(),
                r["path"].as_str().unwrap().to_owned(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("POST".into(), "/oauth2/token".into(), 200),
            ("POST".into(), "/ftc/setup".into(), 201),
            ("POST".into(), "/identify".into(), 201),
        ]
    );
    assert!(reqs[0]["at_ms"].as_u64().unwrap() > 1_600_000_000_000);
    assert_eq!(
        state["counts"],
        json!({
            "ftc_setup": 1, "identify": 1, "status": 0, "token": 1, "faults_injected": 0,
            "access_token": 0, "api_connection": 0, "api_connection_update": 0,
            "pds_create": 0, "pds_read": 0, "pds_rows": 0,
        })
    );
    assert_eq!(state["links"].as_array().unwrap().len(), 2);
    assert_eq!(state["links"][1]["kind"], "identify");
    env.stop().await;
}

#[tokio::test]
async fn restart_is_clean() {
    let env = Env::start().await;
    let url = env.ftc_link(json!({})).await;
    env.journey(json!({"url": url, "mydexid": "alice1", "email": "a@example.com"}))
        .await;
    let addr = env.sb.addr;
    env.sb.shutdown().await;
    let sb = mydex_sandbox::start(mydex_sandbox::SandboxArgs {
        listen: addr,
        ..Default::default()
    })
    .await
    .unwrap();
    let v: Value = reqwest::get(format!("{}/_sandbox/state", sb.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["members"], json!([]));
    assert_eq!(v["links"], json!([]));
    sb.shutdown().await;
    let _ = secs(0);
}

#[tokio::test]
async fn a_link_is_completed_once_even_under_concurrency() {
    let env = Env::start().await;
    let url = env.ftc_link(json!({})).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (http, base, url) = (env.http.clone(), env.base.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            http.post(format!("{base}/_sandbox/journeys"))
                .json(&json!({"url": url, "mydexid": format!("racer{i}"), "email": format!("r{i}@example.com")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1);
    assert_eq!(statuses.iter().filter(|s| **s == 410).count(), 19);
    assert_eq!(env.receiver.seen().len(), 1);
    env.stop().await;
}

#[tokio::test]
async fn form_encoding_covers_update_identify_and_notification() {
    let env = Env::start_with(|a| {
        a.callback_format = mydex_sandbox::CallbackFormat::Form;
    })
    .await;
    let url = env.ftc_link(json!({})).await;
    env.journey(json!({"url": url, "mydexid": "alice1", "email": "a@example.com"}))
        .await;
    env.settings(json!({"connection_version": 2})).await;
    let url = env
        .ftc_link(json!({"mydexid": "alice1", "version": "2", "linking_token": "u"}))
        .await;
    let (status, _) = env.journey(json!({"url": url, "mydexid": "alice1"})).await;
    assert_eq!(status, 200);
    let cb = env.receiver.last();
    assert_eq!(cb.method, "PUT");
    assert_eq!(cb.header("authentication").unwrap(), token_hash());
    let pairs = cb.form();
    assert!(pairs.iter().all(|(k, _)| k != "key"));
    assert!(pairs.contains(&("uid".into(), "1001".into())));
    assert!(pairs.contains(&("linking_token".into(), "u".into())));
    assert!(pairs.contains(&(
        "fields[field_ds_events][0][][access][w][a]".into(),
        "1".into()
    )));

    let url = env.identify_link("who").await;
    env.journey(json!({"url": url, "mydexid": "alice1"})).await;
    let mut pairs = env.receiver.last().form();
    pairs.sort();
    assert_eq!(
        pairs,
        vec![
            ("linking_token".into(), "who".into()),
            ("mydexid".into(), "alice1".into()),
            ("type".into(), "identify".into()),
        ]
    );

    env.http
        .post(format!("{}/_sandbox/notify", env.base))
        .json(&json!({"mydexid": "alice1", "dataset": "ds_events", "action": "update", "updated_id": "9", "message": "hi & bye"}))
        .send()
        .await
        .unwrap();
    let cb = env.receiver.last();
    assert!(cb.body.contains("message=hi+%26+bye"));
    let mut pairs = cb.form();
    pairs.sort();
    assert_eq!(
        pairs,
        vec![
            ("action".into(), "update".into()),
            ("connection_id".into(), "1001-45678".into()),
            ("dataset".into(), "ds_events".into()),
            ("message".into(), "hi & bye".into()),
            ("type".into(), "notification".into()),
            ("uid".into(), "1001".into()),
            ("updated_id".into(), "9".into()),
        ]
    );
    env.stop().await;
}

#[tokio::test]
async fn api_requires_json_content_type() {
    let env = Env::start().await;
    let token = env.token().await;
    for path in ["/ftc/setup", "/identify"] {
        let resp = env
            .http
            .post(format!("{}{path}", env.base))
            .bearer_auth(&token)
            .body(env.setup_body().to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            v,
            json!({"success": 0, "message": "Content-Type must be application/json"})
        );
    }
    // The token endpoint wants a form.
    let resp = env
        .http
        .post(format!("{}/oauth2/token", env.base))
        .header(
            "Authorization",
            Env::basic("sandbox-client", "sandbox-secret"),
        )
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    env.stop().await;
}

#[tokio::test]
async fn update_link_for_an_unknown_member_cannot_register() {
    let env = Env::start().await;
    let url = env
        .ftc_link(json!({"mydexid": "ghost1", "version": 2}))
        .await;
    let (status, v) = env
        .journey(json!({"url": url, "mydexid": "ghost1", "email": "g@example.com"}))
        .await;
    assert_eq!(status, 422);
    assert_eq!(v["errors"], json!(["Unrecognised MydexID or password"]));
    // A version-1 link naming a member not yet registered lets them register.
    let url = env.ftc_link(json!({"mydexid": "newbie1"})).await;
    let (status, v) = env
        .journey(json!({"url": url, "mydexid": "other22", "email": "o@example.com"}))
        .await;
    assert_eq!(status, 403, "{v}");
    let (status, _) = env
        .journey(json!({"url": url, "mydexid": "newbie1", "email": "n@example.com"}))
        .await;
    assert_eq!(status, 200);
    env.stop().await;
}
