//! The version sweep's two guards against mass disconnection, through the
//! real binary, the sandbox and a real SMTP server: Mydex refusing *our*
//! connection stops the sweep and touches no member (and fails `/readyz`),
//! and the brake holds members when too many come back revoked, until
//! `sweep confirm`.

use std::collections::HashSet;
use std::time::Duration;

use mydex_test_support::*;

const LONG: Duration = Duration::from_secs(120);

fn sweep(setup: &Setup, job: &str) -> serde_json::Value {
    let out = setup.cli(&["sweep", job, "--json"]);
    assert!(
        out.status.success(),
        "sweep {job}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Start a version sweep and wait until run `n` has ended.
fn sweep_and_wait(setup: &Setup, n: u64) -> serde_json::Value {
    let doc = sweep(setup, "version");
    assert_eq!(doc["trigger"], "started", "{doc}");
    let s = setup.wait_status(
        |s| s["sweeps"]["version"]["run"] == n && s["sweeps"]["version"]["finished"] == true,
        LONG,
    );
    assert_eq!(s["sweeps"]["version"]["run"], n, "{s}\n{}", setup.log());
    assert_eq!(s["sweeps"]["version"]["finished"], true, "{s}");
    s
}

async fn sandbox_post(setup: &Setup, path: &str) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", setup.sandbox.url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

async fn readyz(setup: &Setup) -> (u16, serde_json::Value) {
    let r = reqwest::get(setup.admin_url("/readyz")).await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn metrics(setup: &Setup) -> String {
    setup.metrics().await
}

fn has_line(metrics: &str, line: &str) -> bool {
    metrics.lines().any(|l| l == line)
}

fn invitations_total(s: &serde_json::Value) -> u64 {
    s["invitations"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

fn options(members_campaign_extra: &str) -> Options {
    Options {
        extra_config: members_campaign_extra.into(),
        schedule: format!(
            "version_check = \"{NEVER}\"\nexpiry_check = \"{NEVER}\"\nsweep_concurrency = 4\n"
        ),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mydex_refusing_our_connection_stops_the_sweep_and_touches_no_member() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, options("reconnect_on_revoke = true\n")).await;
    let members = seed_members(&setup, 10, 1).await;
    setup
        .sandbox_settings(serde_json::json!({"status_denial": "no_connection_record"}))
        .await;
    let _daemon = setup.daemon();

    // Every check answers 403 "Access Denied: No Connection record".
    let s = sweep_and_wait(&setup, 1);
    let last = &s["sweeps"]["version"]["last"];
    assert!(
        last["stopped"]
            .as_str()
            .is_some_and(|r| r.contains("Access Denied: No Connection record")),
        "{s}"
    );
    assert_eq!(last["disconnected"], 0, "{s}");
    assert_eq!(last["held"], 0, "{s}");
    assert_eq!(last["checked"], 0, "{s}");
    assert_eq!(s["members"]["disconnected"], 0, "{s}");
    assert_eq!(s["members"]["total"], 10, "{s}");
    assert_eq!(invitations_total(&s), 0, "nobody invited: {s}");
    assert!(s["sweeps"]["version"]["brake"].is_null(), "{s}");
    let denied = &s["sweeps"]["version"]["connection_denied"];
    assert!(
        denied["reason"]
            .as_str()
            .is_some_and(|r| r.contains("No Connection record")),
        "{s}"
    );
    // It stopped at once: no more checks than were in flight.
    let asked = setup.sandbox_state().await["counts"]["status"]
        .as_u64()
        .unwrap();
    assert!((1..=4).contains(&asked), "{asked} status checks");

    let (code, body) = readyz(&setup).await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["checks"]["mydex_connection"]["ok"], false, "{body}");
    assert!(
        body["checks"]["mydex_connection"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("Access Denied: No Connection record")),
        "{body}"
    );
    assert!(has_line(
        &metrics(&setup).await,
        "mydex_connector_mydex_connection_denied 1"
    ));

    // A 401 that a fresh token does not cure is the same: no member touched,
    // and the error is not logged a second time.
    setup
        .sandbox_settings(serde_json::json!({"status_denial": "unauthorized"}))
        .await;
    let s = sweep_and_wait(&setup, 2);
    let last = &s["sweeps"]["version"]["last"];
    assert!(
        last["stopped"].as_str().is_some_and(|r| r.contains("401")),
        "{s}"
    );
    assert_eq!(s["members"]["disconnected"], 0, "{s}");
    assert_eq!(invitations_total(&s), 0, "{s}");
    let log = setup.log();
    assert_eq!(
        log.matches("Mydex refuses our connection on status checks")
            .count(),
        1,
        "logged once: {log}"
    );
    assert!(log.contains("Mydex still refuses our connection"));
    assert!(smtp.messages().is_empty(), "no mail");

    // The cause fixed, and one member really revoked: exactly that one goes.
    setup
        .sandbox_settings(serde_json::json!({"status_denial": null}))
        .await;
    let gone = members[3]["mydexid"].as_str().unwrap();
    sandbox_post(&setup, &format!("/_sandbox/members/{gone}/revoke")).await;
    let s = sweep_and_wait(&setup, 3);
    let last = &s["sweeps"]["version"]["last"];
    assert!(last["stopped"].is_null(), "{s}");
    assert_eq!(last["checked"], 10, "{s}\n{}", setup.log());
    assert_eq!(last["disconnected"], 1, "{s}");
    assert_eq!(last["held"], 0, "{s}");
    assert_eq!(last["invited"], 1, "{s}");
    assert_eq!(s["members"]["disconnected"], 1, "{s}");
    assert!(s["sweeps"]["version"]["connection_denied"].is_null(), "{s}");
    assert!(s["sweeps"]["version"]["brake"].is_null(), "{s}");
    let mail = smtp.wait_for(1, LONG);
    assert_eq!(mail.len(), 1);
    assert_eq!(read_mail(&mail[0]).to, format!("{gone}@example.com"));
    let mut ready = (0, serde_json::Value::Null);
    for _ in 0..300 {
        ready = readyz(&setup).await;
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ready.0, 200, "{}", ready.1);
    assert_eq!(ready.1["checks"]["mydex_connection"]["ok"], true);
    assert!(setup.log().contains("Mydex accepts our connection again"));
    setup.keep_for_log_scan().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brake_holds_a_mass_revocation_until_sweep_confirm() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, options("reconnect_on_revoke = true\n")).await;
    let members = seed_members(&setup, 60, 1).await;
    // 18 of 60 (30%) come back revoked, spread over the member base.
    let revoked: Vec<String> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 < 3)
        .map(|(_, m)| m["mydexid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(revoked.len(), 18);
    for id in &revoked {
        sandbox_post(&setup, &format!("/_sandbox/members/{id}/revoke")).await;
    }
    let daemon = setup.daemon();

    let s = sweep_and_wait(&setup, 1);
    let last = &s["sweeps"]["version"]["last"];
    assert_eq!(last["checked"], 60, "{s}\n{}", setup.log());
    assert_eq!(last["disconnected"], 0, "{s}");
    assert_eq!(last["held"], 18, "{s}");
    assert_eq!(last["invited"], 0, "{s}");
    assert_eq!(s["members"]["disconnected"], 0, "{s}");
    assert_eq!(invitations_total(&s), 0, "no re-invitation: {s}");
    let brake = &s["sweeps"]["version"]["brake"];
    assert_eq!(brake["engaged"], true, "{s}");
    assert_eq!(brake["held"], 18, "{s}");
    assert!(
        brake["reason"]
            .as_str()
            .is_some_and(|r| r.contains("schedule.max_disconnect_share (5%)")),
        "{s}"
    );
    let m = metrics(&setup).await;
    assert!(has_line(&m, "mydex_connector_sweep_brake_engaged 1"), "{m}");
    assert!(has_line(&m, "mydex_connector_sweep_held_members 18"), "{m}");
    assert_eq!(setup.log().matches("the brake is engaged").count(), 1);
    let table = setup.cli(&["status"]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("SWEEP BRAKE ENGAGED: 18 members held")
    );

    // It survives a restart; a second sweep still holds, and two members
    // found active again ("the cause fixed") are no longer held.
    setup.stop(daemon);
    let _daemon = setup.daemon();
    let s = setup.status();
    assert_eq!(s["sweeps"]["version"]["brake"]["held"], 18, "{s}");
    for id in &revoked[..2] {
        sandbox_post(&setup, &format!("/_sandbox/members/{id}/restore")).await;
    }
    let s = sweep_and_wait(&setup, 2);
    let brake = &s["sweeps"]["version"]["brake"];
    assert_eq!(brake["engaged"], true, "{s}");
    assert_eq!(brake["held"], 16, "{s}\n{}", setup.log());
    assert_eq!(s["members"]["disconnected"], 0, "{s}");
    assert_eq!(invitations_total(&s), 0, "{s}");
    assert!(smtp.messages().is_empty(), "no mail while braked");

    // The operator confirms: exactly the 16 go, each re-invited once.
    let doc = sweep(&setup, "confirm");
    assert_eq!(doc["disconnected"], 16, "{doc}\n{}", setup.log());
    assert_eq!(doc["invited"], 16, "{doc}");
    let s = setup.status();
    assert_eq!(s["members"]["disconnected"], 16, "{s}");
    assert!(s["sweeps"]["version"]["brake"].is_null(), "{s}");
    assert!(has_line(
        &metrics(&setup).await,
        "mydex_connector_sweep_brake_engaged 0"
    ));
    let paths = smtp.wait_for(16, LONG);
    assert_eq!(paths.len(), 16, "{}", setup.log());
    let to: HashSet<String> = paths.iter().map(|p| read_mail(p).to).collect();
    let expected: HashSet<String> = revoked[2..]
        .iter()
        .map(|id| format!("{id}@example.com"))
        .collect();
    assert_eq!(to, expected);
    // Nothing left to confirm.
    let again = sweep(&setup, "confirm");
    assert!(again.to_string().contains("not engaged"), "{again}");
    // A later sweep finds the base healthy: nothing held, nothing more gone.
    let s = sweep_and_wait(&setup, 3);
    let last = &s["sweeps"]["version"]["last"];
    assert_eq!(last["checked"], 44, "{s}");
    assert_eq!(last["held"], 0, "{s}");
    assert_eq!(last["disconnected"], 0, "{s}");
    assert_eq!(s["members"]["disconnected"], 16, "{s}");
    setup.keep_for_log_scan().await;
}
