//! Without `admin.token_file`, on the loopback admin listener: the operator's
//! read commands (`status`, `invitations list|show`, `members export`,
//! `callbacks list`: every GET) work; writes and a read of member keys are
//! refused with 403. With a token, reads need it again.

use std::time::Duration;

use mydex_test_support::*;

fn ok(setup: &Setup, args: &[&str]) -> String {
    let out = setup.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_no_token_on_loopback_writes_do() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    setup.edit_config("token_file = \"secrets/admin_token\"\n", "");
    let daemon = setup.daemon();
    let file = setup.dir.path().join("people.csv");
    std::fs::write(&file, "email,external_ref\nread@example.com,READ-1\n").unwrap();
    ok(&setup, &["enqueue", file.to_str().unwrap()]);
    let mail = read_mail(&smtp.wait_for(1, Duration::from_secs(120))[0]);
    let (status, body) = setup.journey(&mail.qr_link, "readmember1", &mail.to).await;
    assert_eq!(status, 200, "{body}");
    setup.wait_status(
        |s| s["invitations"]["connected"] == 1,
        Duration::from_secs(60),
    );

    // The CLI's reads, with no token anywhere.
    let listed = ok(&setup, &["invitations", "list", "--json"]);
    assert!(listed.contains("READ-1"), "{listed}");
    let shown = ok(&setup, &["invitations", "show", "0"]);
    assert!(shown.contains("connected"), "{shown}");
    let members = ok(&setup, &["members", "export"]);
    assert!(members.contains("readmember1"), "{members}");
    let callbacks = ok(&setup, &["callbacks", "list"]);
    assert!(!callbacks.trim().is_empty());
    println!("without a token: invitations list/show, members export, callbacks list answered");

    // Writes and key reads: 403, nothing done.
    let http = reqwest::Client::new();
    let post = http
        .post(setup.admin_url("/invitees"))
        .json(&serde_json::json!([{"email": "new@example.com"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 403);
    let keys = http
        .get(setup.admin_url("/members?with_keys=true"))
        .send()
        .await
        .unwrap();
    assert_eq!(keys.status(), 403);
    let retry = setup.cli(&["invitations", "retry", "--all-failed"]);
    assert!(!retry.status.success());
    assert_eq!(setup.status()["invitations"]["queued"], 0);
    setup.stop(daemon);

    // With a token configured, a read without it is refused.
    setup.edit_config(
        "[admin]\n",
        "[admin]\ntoken_file = \"secrets/admin_token\"\n",
    );
    let daemon = setup.daemon();
    let r = http
        .get(setup.admin_url("/invitations"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(setup.admin_url("/invitations"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    setup.keep_for_log_scan().await;
    setup.stop(daemon);
}
