//! Readings delivery (issue 13) through the real binary, the sandbox and
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
    assert_eq!(text.lines().count(), 1, "{text}");
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
            .unwrap();
        store.flush_blocking().unwrap();
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
