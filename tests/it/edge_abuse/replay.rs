//! Replays that would change what we hold, through the real binary, the
//! sandbox and a real SMTP server. The `Authentication` header is the same
//! for every callback of our connection, so whoever has seen one callback
//! can send another: a connected member's callback resent with another key
//! or another connection id is quarantined with the reason `linking token
//! already used` (kept, listed, answered 2xx), and the stored key and the
//! member count stay as they were; the same callback again, byte for byte
//! or in another encoding, is a `replay`; a key in an update that answers
//! no journey of ours is quarantined too. And what the daemon keeps of an
//! unmatched callback is sealed at rest: the store's files, scanned after
//! a clean stop, hold neither its MydexID nor its linking token.

use std::time::Duration;

use mydex_test_support::*;

const NID: &str = "45678";
/// Keys an attacker would send; none may reach the store or the log.
const FORGED_KEY: &str = "ForgedReplayKey0000000000000000000000001";
const OTHER_MEMBER_KEY: &str = "ForgedReplayKey0000000000000000000000002";
const UPDATE_KEY: &str = "ForgedReplayKey0000000000000000000000003";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn cli_json(setup: &Setup, args: &[&str]) -> serde_json::Value {
    let out = setup.cli(args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&out.stdout)))
}

/// Send one authenticated callback; the HTTP status and the JSON answer.
async fn send(
    setup: &Setup,
    method: reqwest::Method,
    content_type: &str,
    body: String,
) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .request(method, setup.callback_url())
        .header("Authentication", mydex_connector::mydex::token_hash(TOKEN))
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

async fn post_json(setup: &Setup, body: &serde_json::Map<String, serde_json::Value>) -> String {
    let (status, answer) = send(
        setup,
        reqwest::Method::POST,
        "application/json",
        serde_json::to_string(body).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer["status"].as_str().unwrap_or_default().to_string()
}

/// Connection id → key, as the daemon holds them (an admin read).
fn stored_keys(setup: &Setup) -> Vec<(String, String)> {
    let doc = cli_json(
        setup,
        &["members", "export", "--format", "json", "--with-keys"],
    );
    doc.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["connection_id"].as_str().unwrap().to_string(),
                m["key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The member's first connection in the published form encoding (the same
/// grants as the sandbox's JSON at version 1, in the bracket layout).
fn as_published_form(uid: u64, mydexid: &str, key: &str, token: &str) -> String {
    let mut pairs = vec![
        ("connection_id".to_string(), format!("{uid}-{NID}")),
        ("uid".to_string(), uid.to_string()),
        ("mydexid".to_string(), mydexid.to_string()),
        ("key".to_string(), key.to_string()),
        ("linking_token".to_string(), token.to_string()),
    ];
    for (dataset, write) in [
        ("field_ds_personal_details", "0"),
        ("field_ds_contact_details", "1"),
        ("field_ds_energy_readings", "1"),
    ] {
        for (leaf, value) in [
            ("[r][a]", "1"),
            ("[r][s]", "A"),
            ("[w][a]", write),
            ("[w][s]", "A"),
        ] {
            pairs.push((
                format!("fields[{dataset}][0][][access]{leaf}"),
                value.to_string(),
            ));
        }
    }
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// One invitee mailed, their journey completed in the sandbox: the member's
/// (uid, MydexID, key, linking token) as the sandbox sent them.
async fn connect_one(setup: &Setup, smtp: &Smtp) -> (u64, String, String, String) {
    let file = setup.dir.path().join("people.csv");
    std::fs::write(
        &file,
        "email,name,external_ref\nreplayed@example.com,Rae Played,MTR-R1\n",
    )
    .unwrap();
    let out = setup.cli(&["enqueue", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let paths = smtp.wait_for(1, Duration::from_secs(180));
    assert_eq!(paths.len(), 1, "{}", setup.log());
    let mail = read_mail(&paths[0]);
    let (status, body) = setup
        .journey(&mail.qr_link, "replayme1", "replayed@example.com")
        .await;
    assert!(
        status < 300 && body["callback_status"] == 200,
        "{status} {body}"
    );
    let state = setup.sandbox_state().await;
    let member = &state["members"][0];
    let callback = &state["callbacks"][0];
    assert_eq!(callback["type"], "ftc", "{state}");
    (
        member["uid"].as_u64().unwrap(),
        member["mydexid"].as_str().unwrap().to_string(),
        member["key"].as_str().unwrap().to_string(),
        callback["linking_token"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_replay_is_quarantined_and_changes_nothing_we_hold() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    setup.edit_config(
        "token_file = \"secrets/admin_token\"",
        "token_file = \"secrets/admin_token\"\nallow_key_export = true",
    );
    let _daemon = setup.daemon();
    let (uid, mydexid, key, token) = connect_one(&setup, &smtp).await;
    let conn = format!("{uid}-{NID}");
    assert_eq!(stored_keys(&setup), [(conn.clone(), key.clone())]);
    let ftc = |uid: u64, key: &str| {
        mydex_sandbox::connection_body(uid, &mydexid, Some(key), NID, 1, Some(&token))
    };

    // The same callback again, byte for byte as the sandbox sent it, and in
    // the published form encoding: nothing to change.
    assert_eq!(post_json(&setup, &ftc(uid, &key)).await, "replay");
    let (status, answer) = send(
        &setup,
        reqwest::Method::POST,
        "application/x-www-form-urlencoded",
        as_published_form(uid, &mydexid, &key, &token),
    )
    .await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("replay")));

    // Another key, then another member, with the used linking token.
    let mut quarantined = Vec::new();
    for body in [ftc(uid, FORGED_KEY), ftc(uid + 7000, OTHER_MEMBER_KEY)] {
        let (status, answer) = send(
            &setup,
            reqwest::Method::POST,
            "application/json",
            serde_json::to_string(&body).unwrap(),
        )
        .await;
        assert_eq!(status, 200, "answered 2xx once kept: {answer}");
        assert_eq!(answer["status"], "quarantined", "{answer}");
        quarantined.push(answer["id"].as_u64().unwrap());
    }
    // An update that brings a key without a journey of ours.
    let mut update = mydex_sandbox::connection_body(uid, &mydexid, Some(UPDATE_KEY), NID, 2, None);
    update.remove("linking_token");
    let (status, answer) = send(
        &setup,
        reqwest::Method::PUT,
        "application/json",
        serde_json::to_string(&update).unwrap(),
    )
    .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("quarantined"))
    );
    let update_id = answer["id"].as_u64().unwrap();

    let listed = cli_json(&setup, &["callbacks", "list", "--quarantined", "--json"]);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    for id in &quarantined {
        let c = listed.iter().find(|c| c["id"] == *id).expect("listed");
        let reason = c["reason"].as_str().unwrap();
        assert!(reason.contains("linking token already used"), "{c}");
        assert_eq!(c["kind"], "ftc", "{c}");
    }
    let c = listed.iter().find(|c| c["id"] == update_id).unwrap();
    assert!(
        c["reason"]
            .as_str()
            .unwrap()
            .contains("outside an update journey"),
        "{c}"
    );
    // Replaying a quarantined one by hand does not apply it either.
    let out = setup.cli(&["callbacks", "replay", &quarantined[0].to_string()]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let s = setup.status();
    assert_eq!(s["members"]["total"], 1, "{s}");
    assert_eq!(s["invitations"]["connected"], 1, "{s}");
    assert_eq!(s["callbacks"]["quarantined"], 3, "{s}");
    assert_eq!(s["callbacks"]["unmatched"], 0, "{s}");
    assert_eq!(
        stored_keys(&setup),
        [(conn.clone(), key.clone())],
        "the stored key is the one Mydex sent first"
    );
    let sandbox = setup.sandbox_state().await;
    assert_eq!(sandbox["members"][0]["key"], key.as_str());

    // Kept, never dropped: each forged body is there to show (key hidden).
    let shown = cli_json(
        &setup,
        &["callbacks", "show", &quarantined[1].to_string(), "--json"],
    );
    assert_eq!(shown["state"], "quarantined", "{shown}");
    assert!(!shown.to_string().contains(OTHER_MEMBER_KEY), "{shown}");
    assert!(shown.to_string().contains(&format!("{}-{NID}", uid + 7000)));

    let log = setup.log();
    for k in [FORGED_KEY, OTHER_MEMBER_KEY, UPDATE_KEY, key.as_str()] {
        assert!(!log.contains(k), "a key is in the log");
    }
    assert!(!log.contains(&token), "the linking token is in the log");
    setup.keep_for_log_scan().await;
}

/// Whether any file under `dir` holds `needle` (case-sensitive bytes).
fn on_disk(dir: &std::path::Path, needle: &str) -> bool {
    !contains_bytes(dir, needle.as_bytes()).is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmatched_callbacks_and_events_are_sealed_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    let daemon = setup.daemon();
    let mydexid = "SealedAtRestMydex";
    let token = "lt2_00000000deadbeef0123456789abcdef0123456789abcdef";
    let conn = format!("8642-{NID}");
    let ftc = mydex_sandbox::connection_body(
        8642,
        mydexid,
        Some("UnmatchedKey0001"),
        NID,
        1,
        Some(token),
    );
    assert_eq!(post_json(&setup, &ftc).await, "unmatched");
    let identify = serde_json::json!({"type": "identify", "mydexid": "SealedIdentifyMydex", "linking_token": "lt_sealedidentifytoken0000000000000"});
    assert_eq!(
        post_json(&setup, identify.as_object().unwrap()).await,
        "recorded"
    );
    // A control: what the store does keep in clear (a raw callback's
    // Content-Type) is found by the same scan.
    let (status, _) = send(
        &setup,
        reqwest::Method::POST,
        "application/json; profile=ClearControlMarker",
        serde_json::to_string(&ftc).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let s = setup.status();
    assert_eq!(s["callbacks"]["unmatched"], 1, "{s}");
    setup.stop(daemon);

    let db = setup.dir.path().join("db");
    assert!(
        on_disk(&db, "ClearControlMarker"),
        "the scan sees clear text"
    );
    for needle in [
        mydexid,
        token,
        conn.as_str(),
        "SealedIdentifyMydex",
        "lt_sealedidentifytoken",
        "field_ds_energy_readings",
    ] {
        assert!(
            !on_disk(&db, needle),
            "{needle:?} is in the store's files in clear"
        );
    }
    // Still read after a restart: the replay is known.
    let _daemon = setup.daemon();
    assert_eq!(post_json(&setup, &ftc).await, "replay");
    let s = setup.status();
    assert_eq!(s["callbacks"]["unmatched"], 1, "{s}");
    setup.keep_for_log_scan().await;
}
