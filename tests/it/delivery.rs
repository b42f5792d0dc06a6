//! Readings delivery through the real binary, the sandbox and
//! a real sled: `deliver` checks files and places them; the daemon stores,
//! batches and POSTs readings once per `external_id`; rows for unknown
//! members are rejected, rows for a member without write access are held
//! with the reason; a 4xx fails its batch with Mydex's message.

use std::time::Duration;

use mydex_test_support::*;

const DELIVERY: &str = "\n[delivery]\ndir = \"readings\"\nbatch_size = 7\nhold_for = \"1h\"\n";

async fn start(members: u64) -> (Setup, Vec<serde_json::Value>, Smtp) {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let opts = Options {
        extra_config: DELIVERY.into(),
        ..Default::default()
    };
    let setup = setup(smtp.port, dir, opts).await;
    let members = seed_members(&setup, members, 1).await;
    (setup, members, smtp)
}

async fn pds_rows(setup: &Setup, mydexid: &str, ds: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        reqwest::get(format!("{}/_sandbox/pds/{mydexid}", setup.sandbox.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    v["datasets"][ds].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_reports_bad_rows_and_places_files() {
    let (setup, _members, _smtp) = start(0).await;
    let file = setup.dir.path().join("r.csv");
    std::fs::write(
        &file,
        "mydexid,external_id,kwh,dataset\nalice1x,r1,1.5,\nalice1x,,2,\n,r3,3,\nalice1x,r4,4,nope\nalice1x,r5\n",
    )
    .unwrap();
    let out = setup.cli(&["deliver", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("r.csv:3: external_id is required"), "{err}");
    assert!(err.contains("r.csv:4: no member"), "{err}");
    assert!(err.contains("r.csv:5: dataset \"nope\""), "{err}");
    assert!(
        err.contains("r.csv:6: has 2 fields, the header has 4"),
        "{err}"
    );
    let placed: Vec<_> = std::fs::read_dir(setup.dir.path().join("readings"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
        .collect();
    assert_eq!(placed.len(), 1);
    let text = std::fs::read_to_string(placed[0].path()).unwrap();
    // One row, on its own line number (the header and refused rows stay
    // as empty lines, so the daemon's rejects name the operator's lines).
    assert_eq!(
        text.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "{text}"
    );
    assert!(text.starts_with("\n{"), "{text}");
    // A missing file, a wrong name, and no [delivery] section.
    let out = setup.cli(&["deliver", "/nonexistent/r.csv"]);
    assert_eq!(out.status.code(), Some(1));
    let out = setup.cli(&["deliver", setup.config.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(".csv, .jsonl or .ndjson"));
    setup.edit_config("[delivery]", "[unused_delivery_section_removed]");
    let text = std::fs::read_to_string(&setup.config).unwrap();
    let cut = text.find("[unused_delivery_section_removed]").unwrap();
    std::fs::write(&setup.config, &text[..cut]).unwrap();
    let out = setup.cli(&["deliver", file.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("delivery.dir"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_land_once_unknown_rejected_no_grant_held_4xx_failed() {
    let (setup, members, _smtp) = start(3).await;
    // The third member granted no write access to the dataset.
    {
        let store = mydex_connector::store::Store::open(
            &setup.dir.path().join("db"),
            &secrecy::SecretBox::new(Box::new([42u8; 32])),
        )
        .unwrap();
        let conn = members[2]["connection_id"].as_str().unwrap();
        store
            .set_member_permissions(
                conn,
                serde_json::json!({
                    "field_ds_energy_readings": {"access": {"r": 1, "w": 0}},
                    "field_ds_contact_details": {"access": {"r": 1, "w": 1}},
                }),
            )
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
    let _daemon = setup.daemon();
    let mut text = String::new();
    for m in &members {
        for j in 0..30 {
            let ds = if j % 2 == 0 {
                "ds_energy_readings"
            } else {
                "ds_contact_details"
            };
            text += &format!(
                "{}\n",
                serde_json::json!({"mydexid": m["mydexid"], "external_id": format!("e{j}"), "dataset": ds, "kwh": j})
            );
        }
    }
    text += "{\"external_ref\": \"NOBODY-1\", \"external_id\": \"x\"}\n";
    let file = setup.dir.path().join("r.jsonl");
    std::fs::write(&file, &text).unwrap();
    let out = setup.cli(&["deliver", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = setup.wait_status(
        |s| s["records"]["delivered"] == 75 && s["records"]["held"] == 15,
        Duration::from_secs(120),
    );
    assert_eq!(s["records"]["delivered"], 75, "{}", s["records"]);
    assert_eq!(s["records"]["held"], 15);
    assert_eq!(s["records"]["failed"], 0);
    assert_eq!(s["records"]["queued"], 0);
    for m in &members[..2] {
        for ds in ["ds_energy_readings", "ds_contact_details"] {
            let rows = pds_rows(&setup, m["mydexid"].as_str().unwrap(), ds).await;
            assert_eq!(rows.len(), 15, "{ds}");
        }
    }
    let rejected = std::fs::read_dir(setup.dir.path().join("readings/rejected")).unwrap();
    let report: String = rejected
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(
        report.contains(":91: unknown member: no member or invitee with external_ref \"NOBODY-1\""),
        "{report}"
    );
    // Every POST at most batch_size rows (7): 60 rows in 15-row groups → 3 POSTs each.
    let st = setup.sandbox_state().await;
    assert!(st["counts"]["pds_create"].as_u64().unwrap() >= 75 / 7);
    // The same file again sends nothing more.
    std::fs::write(&file, &text).unwrap();
    let out = setup.cli(&["deliver", file.to_str().unwrap()]);
    assert!(out.status.success());
    let start = std::time::Instant::now();
    while std::fs::read_dir(setup.dir.path().join("readings"))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "file not taken in"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = setup.status();
    assert_eq!(s["records"]["delivered"], 75);
    let st2 = setup.sandbox_state().await;
    assert_eq!(st2["counts"]["pds_rows"], st["counts"]["pds_rows"]);
    // A value the PDS refuses (over 1024 characters): the batch fails with
    // Mydex's message, nothing is retried.
    let big = setup.dir.path().join("big.jsonl");
    let row = serde_json::json!({"mydexid": members[0]["mydexid"], "external_id": "big", "note": "y".repeat(2000)});
    std::fs::write(&big, format!("{row}\n")).unwrap();
    assert!(
        setup
            .cli(&["deliver", big.to_str().unwrap()])
            .status
            .success()
    );
    let s = setup.wait_status(|s| s["records"]["failed"] == 1, Duration::from_secs(60));
    assert_eq!(s["records"]["failed"], 1, "{}", s["records"]);
    assert_eq!(s["records"]["delivered"], 75);
    setup.keep_for_log_scan().await;
}

/// `POST /records` with the admin token, answering (status, JSON).
async fn post_records(
    setup: &Setup,
    mime: &str,
    body: String,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .post(setup.admin_url("/records"))
        .header("Content-Type", mime)
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invited_held_until_connected_no_grant_held_until_an_update_grants_it() {
    let (setup, _none, smtp) = start(0).await;
    let mut daemon = setup.daemon();
    let people = setup.dir.path().join("people.csv");
    std::fs::write(
        &people,
        "email,external_ref\na@example.com,M-A\nb@example.com,M-B\n",
    )
    .unwrap();
    assert!(
        setup
            .cli(&["enqueue", people.to_str().unwrap()])
            .status
            .success()
    );
    let paths = smtp.wait_for(2, Duration::from_secs(120));
    assert_eq!(paths.len(), 2);

    // The admin API: token, media type, body checked; nothing stored on refusal.
    let rows = |r: &str| {
        (0..3).map(|j| serde_json::json!({"external_ref": r, "external_id": format!("{r}-{j}"), "kwh": j})).collect::<Vec<_>>()
    };
    let mut all = rows("M-A");
    all.extend(rows("M-B"));
    all.push(serde_json::json!({"external_ref": "NOBODY", "external_id": "z"}));
    all.push(serde_json::json!({"external_ref": "M-A"}));
    // A row naming `external_id` twice is refused alone, the key named.
    let body = serde_json::to_string(&all).unwrap().replacen(
        ']',
        r#",{"external_ref":"M-A","external_id":"twice-1","external_id":"twice-2"}]"#,
        1,
    );
    assert_eq!(
        post_records(&setup, "application/json", body.clone(), None)
            .await
            .0,
        401
    );
    assert_eq!(
        post_records(
            &setup,
            "application/json",
            body.clone(),
            Some("wrong-token-0000000000")
        )
        .await
        .0,
        401
    );
    assert_eq!(
        post_records(&setup, "text/plain", body.clone(), Some(ADMIN_TOKEN))
            .await
            .0,
        415
    );
    assert_eq!(
        post_records(
            &setup,
            "application/json",
            "{not json".into(),
            Some(ADMIN_TOKEN)
        )
        .await
        .0,
        400
    );
    // Three times the limit: read to its end before the 413, so the client
    // sees the answer (admin/body_drain.rs).
    let huge = format!("[{{}}{}]", " ".repeat(3 * 4 * 1024 * 1024));
    assert_eq!(
        post_records(&setup, "application/json", huge, Some(ADMIN_TOKEN))
            .await
            .0,
        413
    );
    let (status, answer) = post_records(&setup, "application/json", body, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["held"], 6, "{answer}");
    assert_eq!(answer["rejected"], 3, "{answer}");
    assert!(
        answer["rows"][6]["error"]
            .as_str()
            .unwrap()
            .contains("unknown member"),
        "{answer}"
    );
    assert_eq!(answer["rows"][7]["error"], "external_id is required");
    assert_eq!(
        answer["rows"][8]["error"],
        "not valid JSON: key \"external_id\" is repeated"
    );
    // NDJSON: the same readings again are duplicates.
    let nd: String = rows("M-A").iter().map(|r| format!("{r}\n")).collect();
    let (status, answer) =
        post_records(&setup, "application/x-ndjson", nd, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["rows"][0]["status"], "duplicate", "{answer}");

    // A connects with every grant; B withholds write access to the dataset.
    let mails: Vec<Mail> = paths.iter().map(|p| read_mail(p)).collect();
    let http = reqwest::Client::new();
    for m in &mails {
        let withhold: Vec<&str> = if m.to.starts_with('b') {
            vec!["ds_energy_readings"]
        } else {
            vec![]
        };
        let id = if m.to.starts_with('a') {
            "alicea1x"
        } else {
            "bobbyb1x"
        };
        let r: serde_json::Value = http
            .post(format!("{}/_sandbox/journeys", setup.sandbox.url()))
            .json(&serde_json::json!({"url": m.qr_link, "mydexid": id, "email": m.to, "withhold": withhold}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["callback_status"], 200, "{r}");
    }
    let s = setup.wait_status(
        |s| s["records"]["delivered"] == 3 && s["records"]["held"] == 3,
        Duration::from_secs(60),
    );
    assert_eq!(s["records"]["delivered"], 3, "{}", s["records"]);
    assert_eq!(
        pds_rows(&setup, "alicea1x", "ds_energy_readings")
            .await
            .len(),
        3
    );
    let out = setup.cli(&["records", "list", "--state", "held", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let held: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(held.as_array().unwrap().len(), 3);
    assert_eq!(
        held[0]["reason"], "no write access to ds_energy_readings",
        "{held}"
    );
    assert_eq!(held[0]["member"]["external_ref"], "M-B");
    let table = setup.cli(&["records", "list", "--state", "held"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("3 held readings"));

    // Version 2: the update journey grants the dataset; the rows go out.
    setup
        .sandbox_settings(serde_json::json!({"connection_version": 2}))
        .await;
    setup.stop(daemon);
    setup.edit_config(
        "max_attempts = 12\n",
        "max_attempts = 12\nconnection_version = 2\n",
    );
    daemon = setup.daemon();
    let out = setup.cli(&["sweep", "version"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paths = smtp.wait_for(4, Duration::from_secs(120));
    let update = paths[2..]
        .iter()
        .map(|p| read_mail(p))
        .find(|m| m.to.starts_with('b'))
        .expect("B's update mail");
    let (status, body) = setup.journey(&update.qr_link, "bobbyb1x", &update.to).await;
    assert_eq!(status, 200, "{body}");
    let s = setup.wait_status(|s| s["records"]["delivered"] == 6, Duration::from_secs(60));
    assert_eq!(s["records"]["delivered"], 6, "{}", s["records"]);
    assert_eq!(s["records"]["held"], 0);
    assert_eq!(
        pds_rows(&setup, "bobbyb1x", "ds_energy_readings")
            .await
            .len(),
        3
    );
    setup.keep_for_log_scan().await;
    drop(daemon);
}
