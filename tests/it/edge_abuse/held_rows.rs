//! A held row must not hammer Mydex. A reading for a member who revoked at
//! Mydex (we still hold them as connected) is refused with a 403 and held;
//! it used to be released and sent again on every 2 s look at the held
//! rows (21 refused writes in 20 s for one reading, the store rewritten on
//! every pass). Through the real binary, the sandbox as Mydex and its PDS,
//! and a real SMTP server: over a minute the sandbox receives at most 5
//! writes for that member, `/metrics` counts each try, a second reading
//! for them waits without a write of its own, and once the cause may have
//! cleared (the member connects again: their callback; or a status check
//! finds them connected) the held readings go at once, not after the
//! backoff.

use std::time::{Duration, Instant};

use mydex_test_support::*;

const LONG: Duration = Duration::from_secs(180);

fn config(extra_campaign: &str) -> Options {
    Options {
        extra_config: format!(
            "{extra_campaign}\n[delivery]\ndir = \"readings\"\nbatch_size = 4\nhold_for = \"1h\"\n"
        ),
        ..Default::default()
    }
}

/// `deliver FILE` with `text` succeeds.
fn deliver(setup: &Setup, name: &str, text: &str) {
    let file = setup.dir.path().join(name);
    std::fs::write(&file, text).unwrap();
    let out = setup.cli(&["deliver", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn sandbox_post(setup: &Setup, path: &str) {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", setup.sandbox.url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
}

/// Writes (`POST /api/pds/transaction`) the sandbox received for `uid`.
async fn pds_creates(setup: &Setup, uid: u64) -> u64 {
    setup.sandbox_state().await["pds_creates"][uid.to_string()]
        .as_u64()
        .unwrap_or(0)
}

/// The value of one `/metrics` sample (0 when absent).
async fn metric(setup: &Setup, sample: &str) -> u64 {
    let text = setup.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// Wait (up to `limit`) until `sample` is at least `n`; its value.
async fn wait_metric(setup: &Setup, sample: &str, n: u64, limit: Duration) -> u64 {
    let start = Instant::now();
    loop {
        let v = metric(setup, sample).await;
        if v >= n || start.elapsed() > limit {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

const BACKOFF: &str = "mydex_connector_held_retries_total{cause=\"backoff\"}";
const CHANGED: &str = "mydex_connector_held_retries_total{cause=\"member_changed\"}";

/// Start a version sweep and wait until it has finished.
fn sweep(setup: &Setup) {
    let out = setup.cli(&["sweep", "version"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = setup.wait_status(
        |s| s["sweeps"]["version"]["finished"] == true,
        Duration::from_secs(120),
    );
    assert_eq!(s["sweeps"]["version"]["finished"], true, "{s}");
}

/// The `external_id`s the member's PDS holds in `ds_energy_readings`.
async fn pds_ids(setup: &Setup, mydexid: &str) -> Vec<String> {
    let v: serde_json::Value =
        reqwest::get(format!("{}/_sandbox/pds/{mydexid}", setup.sandbox.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let mut ids: Vec<String> = v["datasets"]["ds_energy_readings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["external_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Long: one journey from invitation to reconnection, each step asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_members_reading_costs_mydex_a_few_writes_a_minute_and_goes_when_they_reconnect()
{
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, config("reconnect_on_revoke = true\n")).await;
    let _daemon = setup.daemon();

    // A member connects through the real journey.
    let people = setup.dir.path().join("people.csv");
    std::fs::write(&people, "email,external_ref\nheld@example.com,M-HELD\n").unwrap();
    let out = setup.cli(&["enqueue", people.to_str().unwrap()]);
    assert!(out.status.success());
    let mails = smtp.wait_for(1, LONG);
    assert_eq!(mails.len(), 1, "{}", setup.log());
    let mail = read_mail(&mails[0]);
    let (status, body) = setup.journey(&mail.qr_link, "heldmember1", &mail.to).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["callback_status"], 200, "{body}");
    let uid = body["uid"].as_u64().unwrap();

    // They revoke at Mydex; we still hold them as connected.
    sandbox_post(&setup, "/_sandbox/members/heldmember1/revoke").await;
    deliver(
        &setup,
        "r1.csv",
        "external_ref,external_id,kwh\nM-HELD,r1,1.5\n",
    );
    let s = setup.wait_status(|s| s["records"]["held"] == 1, LONG);
    assert_eq!(s["records"]["held"], 1, "{}\n{}", s["records"], setup.log());
    let refused_at = Instant::now();
    assert_eq!(pds_creates(&setup, uid).await, 1, "one refused write");
    let held = setup.cli(&["records", "list", "--state", "held", "--json"]);
    let held: serde_json::Value = serde_json::from_slice(&held.stdout).unwrap();
    let reason = held[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("Mydex refused: "), "{held}");

    // A second reading for them waits with the first, without a write.
    deliver(
        &setup,
        "r2.csv",
        "external_ref,external_id,kwh\nM-HELD,r2,2.5\n",
    );
    let s = setup.wait_status(|s| s["records"]["held"] == 2, LONG);
    assert_eq!(s["records"]["held"], 2, "{}", s["records"]);

    // A minute on: the backoff's one try, counted, and nothing else.
    let tries = wait_metric(&setup, BACKOFF, 1, Duration::from_secs(300)).await;
    assert!(tries >= 1, "no try after the backoff:\n{}", setup.log());
    if let Some(rest) = Duration::from_secs(61).checked_sub(refused_at.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    let writes = pds_creates(&setup, uid).await;
    eprintln!(
        "held_rows: {writes} writes for the revoked member in {} s, {tries} backoff tries",
        refused_at.elapsed().as_secs()
    );
    assert!(
        (2..=5).contains(&writes),
        "{writes} writes for one revoked member in over a minute"
    );
    assert_eq!(metric(&setup, CHANGED).await, 0);
    let s = setup.status();
    assert_eq!(s["records"]["held"], 2, "{}", s["records"]);
    assert_eq!(s["records"]["delivered"], 0, "{}", s["records"]);

    // A status check finds them revoked: disconnected, invited again; they
    // connect again, and their callback sends the held readings at once.
    sweep(&setup);
    let s = setup.wait_status(|s| s["members"]["disconnected"] == 1, LONG);
    assert_eq!(s["members"]["disconnected"], 1, "{s}");
    let mails = smtp.wait_for(2, LONG);
    assert_eq!(mails.len(), 2, "the reconnection mail: {}", setup.log());
    let again = read_mail(&mails[1]);
    let (status, body) = setup
        .journey(&again.qr_link, "heldmember1", &again.to)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["callback_status"], 200, "{body}");
    let s = setup.wait_status(|s| s["records"]["delivered"] == 2, LONG);
    assert_eq!(s["records"]["delivered"], 2, "{}", s["records"]);
    assert_eq!(s["records"]["held"], 0, "{}", s["records"]);
    // Sent because the member changed, not because the backoff (two
    // minutes after its first try) happened to be over meanwhile.
    let changed = wait_metric(&setup, CHANGED, 1, Duration::from_secs(10)).await;
    let backoff = metric(&setup, BACKOFF).await;
    assert!(
        changed == 1 || backoff > tries,
        "the try after the callback is counted as the member's change: {changed}, {backoff}"
    );
    assert_eq!(pds_ids(&setup, "heldmember1").await, ["r1", "r2"]);
    let writes_after = pds_creates(&setup, uid).await;
    assert!(
        writes_after <= writes + 2,
        "{writes} then {writes_after} writes"
    );
    setup.keep_for_log_scan().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_check_finding_the_member_connected_again_sends_the_held_reading() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, config("")).await;
    let members = seed_members(&setup, 1, 1).await;
    let (uid, mydexid) = (
        members[0]["uid"].as_u64().unwrap(),
        members[0]["mydexid"].as_str().unwrap().to_string(),
    );
    let _daemon = setup.daemon();
    sandbox_post(&setup, &format!("/_sandbox/members/{mydexid}/revoke")).await;
    let row = serde_json::json!({"mydexid": mydexid, "external_id": "s1", "kwh": 1});
    deliver(&setup, "s.jsonl", &format!("{row}\n"));
    let s = setup.wait_status(|s| s["records"]["held"] == 1, LONG);
    assert_eq!(s["records"]["held"], 1, "{}\n{}", s["records"], setup.log());
    assert_eq!(pds_creates(&setup, uid).await, 1);

    // The fault at Mydex is fixed; the next status check sees it.
    sandbox_post(&setup, &format!("/_sandbox/members/{mydexid}/restore")).await;
    sweep(&setup);
    let s = setup.wait_status(|s| s["records"]["delivered"] == 1, LONG);
    assert_eq!(s["records"]["delivered"], 1, "{}", s["records"]);
    let changed = wait_metric(&setup, CHANGED, 1, Duration::from_secs(10)).await;
    let backoff = metric(&setup, BACKOFF).await;
    let writes = pds_creates(&setup, uid).await;
    if backoff == 0 {
        assert_eq!(changed, 1, "the try is counted as the member's change");
        assert_eq!(writes, 2, "refused once, then sent");
    } else {
        // A machine so loaded that a minute passed: the backoff's try came
        // first; still no more than one write per try.
        assert!(writes <= 2 + backoff, "{writes} writes, {backoff} tries");
    }
    assert_eq!(pds_ids(&setup, &mydexid).await, ["s1"]);
    setup.keep_for_log_scan().await;
}
