//! The invitation pipeline end to end, through the real binary, against the
//! sandbox and a real SMTP server: queue → link → email with QR → journey →
//! callback → credentials in sled.

use std::time::Duration;

use mydex_sandbox::CallbackFormat;
use mydex_test_support::*;

fn csv(n: usize) -> String {
    let mut s = String::from("email,name,external_ref,tariff\n");
    for i in 0..n {
        s += &format!("person{i}@example.com,Person {i},MTR-{i:05},green\n");
    }
    s
}

/// Complete every mailed link in the sandbox as a new member, 32 at a
/// time: concurrent callbacks are what a real campaign brings (and what once
/// hung the store's flush).
async fn complete_journeys(setup: &Setup, mails: &[Mail]) {
    use futures_util::StreamExt;
    let http = reqwest::Client::new();
    let base = setup.sandbox.url();
    futures_util::stream::iter(mails.iter().enumerate())
        .map(|(i, m)| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let resp = http
                    .post(format!("{base}/_sandbox/journeys"))
                    .json(&serde_json::json!({"url": m.qr_link, "mydexid": format!("member{i}x"), "email": m.to}))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status();
                let body: serde_json::Value = resp.json().await.unwrap();
                assert!(status.is_success(), "journey {i}: {status} {body}");
                assert_eq!(body["callback_status"], 200, "callback delivered: {body}");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

async fn hundred(opts: Options) {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, opts).await;
    let _daemon = setup.daemon();
    let file = setup.dir.path().join("people.csv");
    std::fs::write(&file, csv(100)).unwrap();
    let out = setup.cli(&["enqueue", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    smtp.wait_for(100, Duration::from_secs(300));
    // Give a duplicate time to show up.
    std::thread::sleep(Duration::from_secs(1));
    let paths = smtp.messages();
    assert_eq!(
        paths.len(),
        100,
        "100 emails arrived; log:\n{}",
        setup.log()
    );
    let mails: Vec<Mail> = paths.iter().map(|p| read_mail(p)).collect();
    let mut recipients: Vec<String> = mails.iter().map(|m| m.to.clone()).collect();
    recipients.sort();
    let mut expected: Vec<String> = (0..100).map(|i| format!("person{i}@example.com")).collect();
    expected.sort();
    assert_eq!(recipients, expected, "each to the right address, once");
    for m in &mails {
        assert_eq!(
            m.qr_link, m.text_link,
            "the QR code decodes to exactly the link"
        );
        assert!(
            m.html.contains(&m.text_link),
            "the link is in the HTML part"
        );
        assert!(m.has_date && !m.message_id.is_empty());
    }

    complete_journeys(&setup, &mails).await;
    let status = setup.wait_status(
        |s| s["invitations"]["connected"] == 100,
        Duration::from_secs(120),
    );
    assert_eq!(
        status["invitations"]["connected"],
        100,
        "{status}\n{}",
        setup.log()
    );
    assert_eq!(status["invitations"]["failed"], 0);
    assert_eq!(status["members"]["total"], 100);

    // No member key in plaintext anywhere in the store.
    let state: serde_json::Value = reqwest::get(format!("{}/_sandbox/state", setup.sandbox.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let members = state["members"].as_array().unwrap();
    assert_eq!(members.len(), 100);
    setup.keep_for_log_scan().await;
    drop(_daemon);
    for m in members {
        let key = m["key"].as_str().unwrap();
        let hits = contains_bytes(&setup.dir.path().join("db"), key.as_bytes());
        assert!(hits.is_empty(), "member key found in {hits:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_invitees_connect_with_json_callbacks() {
    hundred(Options::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_invitees_connect_with_form_callbacks_and_faults() {
    hundred(Options {
        format: CallbackFormat::Form,
        fault_rate: 0.2,
        token_ttl: Duration::from_secs(3),
        ..Options::default()
    })
    .await;
}
