//! Both ways of asking Mydex for a First Time Connection link, through the
//! real binary, the sandbox and a real SMTP server: the older flow of
//! Mydex's example scripts (`mydex.ftc_flow = "connection"`: a short access
//! token, then `/api/connection`, and `/api/connection/update` for an
//! update), with faults on the API; the per-endpoint URLs
//! (`mydex.ftc_url`, `mydex.status_url`) taking the place of `api_url`;
//! their validation; and the client's token handling in the older flow
//! (a 401 on the short-token call fetches a new OAuth token, once).
//! The default `/ftc/setup` flow is what every other pipeline test runs.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use mydex_test_support::*;
use serde_json::{Value, json};

fn enqueue(setup: &Setup, name: &str, people: &[(String, String)]) {
    let mut body = String::from("email,name,external_ref\n");
    for (i, (email, name)) in people.iter().enumerate() {
        body += &format!("{email},{name},MTR-{i:05}\n");
    }
    let file = setup.dir.path().join(name);
    std::fs::write(&file, body).unwrap();
    let out = setup.cli(&["enqueue", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sweep_now(setup: &Setup) {
    let out = setup.cli(&["sweep", "version", "--json"]);
    assert!(
        out.status.success(),
        "sweep: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["trigger"], "started", "{doc}");
}

fn people(prefix: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("{prefix}{i}@example.com"), format!("Person {i}")))
        .collect()
}

fn links_by_url(state: &Value) -> HashMap<String, Value> {
    state["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["url"].as_str().unwrap().to_string(), l.clone()))
        .collect()
}

/// `/ftc/begin/{nid}/{token}/{version}` under the sandbox's base URL.
fn assert_mydex_shaped(link: &str, base: &str, version: u32) {
    let rest = link
        .strip_prefix(&format!("{base}/ftc/begin/45678/"))
        .unwrap_or_else(|| panic!("{link} is not a Mydex-shaped FTC link"));
    let (token, v) = rest.split_once('/').expect("token/version");
    assert!(token.len() >= 16, "{link}");
    assert_eq!(v, version.to_string(), "{link}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_connection_flow_connects_a_campaign_and_updates_it() {
    let n = 8;
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    setup.edit_config(
        "max_attempts = 12\n",
        "max_attempts = 12\nftc_flow = \"connection\"\n",
    );
    setup.edit_config(
        "token_file = \"secrets/admin_token\"",
        "token_file = \"secrets/admin_token\"\nallow_key_export = true",
    );
    let checked = setup.cli(&["check-config"]);
    assert!(checked.status.success());
    let shown = String::from_utf8_lossy(&checked.stdout);
    assert!(shown.contains("ftc_flow = \"connection\""), "{shown}");
    assert!(
        shown.contains(&format!(
            "ftc_url = \"{}/api/connection\"",
            setup.sandbox.url()
        )),
        "{shown}"
    );
    // Transient faults on every API call, the new ones included: each
    // attempt fetches a fresh short access token, so retries still work.
    setup
        .sandbox_settings(json!({"fault_rate": 0.2, "faults": ["500", "503", "429", "drop"]}))
        .await;
    let daemon = setup.daemon();

    enqueue(&setup, "people.csv", &people("member", n));
    let paths = smtp.wait_for(n, Duration::from_secs(180));
    assert_eq!(paths.len(), n, "{}", setup.log());
    let first: Vec<Mail> = paths.iter().map(|p| read_mail(p)).collect();
    setup.sandbox_settings(json!({"fault_rate": 0.0})).await;
    let state = setup.sandbox_state().await;
    let links = links_by_url(&state);
    let base = setup.sandbox.url();
    let mut mydexid_of = HashMap::new();
    for (i, m) in first.iter().enumerate() {
        // Our own QR code of the bare-string URL Mydex answered.
        assert_eq!(m.qr_link, m.text_link);
        assert_mydex_shaped(&m.text_link, &base, 1);
        let link = &links[&m.text_link];
        assert_eq!(link["kind"], "ftc");
        assert!(link["linking_token"].is_string(), "{link}");
        let id = format!("member{i}x");
        let (status, body) = setup.journey(&m.qr_link, &id, &m.to).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["callback_status"], 200, "{body}");
        mydexid_of.insert(m.to.clone(), id);
    }
    let counts = &state["counts"];
    assert_eq!(counts["ftc_setup"], 0, "{counts}");
    assert!(
        counts["api_connection"].as_u64().unwrap() >= n as u64,
        "{counts}"
    );
    // At least one short token per call that reached /api/connection.
    assert!(
        counts["access_token"].as_u64() >= counts["api_connection"].as_u64(),
        "{counts}"
    );
    let s = setup.wait_status(
        |s| s["invitations"]["connected"] == n,
        Duration::from_secs(60),
    );
    assert_eq!(s["invitations"]["connected"], n, "{s}");
    assert_eq!(s["members"]["total"], n, "{s}");

    // Every key the sandbox issued is exportable, and equal.
    let out = setup.cli(&["members", "export", "--format", "json", "--with-keys"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exported: Value = serde_json::from_slice(&out.stdout).unwrap();
    let exported: HashMap<String, String> = exported
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["connection_id"].as_str().unwrap().to_string(),
                m["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let issued: HashMap<String, String> = setup.sandbox_state().await["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["connection_id"].as_str().unwrap().to_string(),
                m["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(exported, issued);

    // The calls of the older flow are counted in /metrics under their own names.
    let metrics = setup.metrics().await;
    for endpoint in ["/access-token", "/api/connection"] {
        assert!(
            metrics.contains(&format!("endpoint=\"{endpoint}\",status=\"ok\"")),
            "{endpoint} in {metrics}"
        );
    }

    // The Dedicated Connection moves to version 2: a sweep invites every
    // member to update, through /api/connection/update.
    setup
        .sandbox_settings(json!({"connection_version": 2}))
        .await;
    setup.stop(daemon);
    setup.edit_config(
        "max_attempts = 12\n",
        "max_attempts = 12\nconnection_version = 2\n",
    );
    let _daemon = setup.daemon();
    sweep_now(&setup);
    let s = setup.wait_status(
        |s| s["sweeps"]["version"]["finished"] == true,
        Duration::from_secs(60),
    );
    assert_eq!(s["sweeps"]["version"]["last"]["outdated"], n, "{s}");
    let paths = smtp.wait_for(2 * n, Duration::from_secs(120));
    assert_eq!(paths.len(), 2 * n, "{}", setup.log());
    let second: Vec<Mail> = paths[n..].iter().map(|p| read_mail(p)).collect();
    let state = setup.sandbox_state().await;
    let links = links_by_url(&state);
    assert!(
        state["counts"]["api_connection_update"].as_u64().unwrap() >= n as u64,
        "{}",
        state["counts"]
    );
    let recipients: HashSet<&str> = second.iter().map(|m| m.to.as_str()).collect();
    assert_eq!(recipients.len(), n, "each member mailed once");
    for m in &second {
        assert_eq!(m.qr_link, m.text_link);
        assert_mydex_shaped(&m.text_link, &base, 2);
        let link = &links[&m.text_link];
        assert_eq!(link["version"], 2, "{link}");
        assert_eq!(link["mydexid"], mydexid_of[&m.to].as_str(), "{link}");
        let (status, body) = setup.journey(&m.qr_link, &mydexid_of[&m.to], &m.to).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["callback_status"], 200, "{body}");
    }
    let s = setup.wait_status(
        |s| s["members"]["outdated"] == 0 && s["invitations"]["connected"] == 2 * n,
        Duration::from_secs(60),
    );
    assert_eq!(s["members"]["outdated"], 0, "{s}");
    assert_eq!(s["invitations"]["connected"], 2 * n, "{s}");
    assert_eq!(s["members"]["total"], n, "{s}");
    let members = setup.sandbox_state().await["members"].clone();
    assert!(
        members
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["version"] == 2),
        "{members}"
    );
    assert_eq!(setup.sandbox_state().await["counts"]["ftc_setup"], 0);
    setup.keep_for_log_scan().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftc_url_and_status_url_take_the_place_of_api_url() {
    let n = 3;
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    let sbx = setup.sandbox.url();
    // Nothing listens at api_url: only the per-endpoint URLs can work.
    let dead = format!("http://127.0.0.1:{}", free_port());
    setup.edit_config(
        &format!("api_url = \"{sbx}\"\n"),
        &format!(
            "api_url = \"{dead}\"\nftc_url = \"{sbx}/ftc/setup\"\nstatus_url = \"{sbx}/connection/status/\"\n"
        ),
    );
    let checked = setup.cli(&["check-config"]);
    let shown = String::from_utf8_lossy(&checked.stdout);
    assert!(
        shown.contains(&format!("status_url = \"{sbx}/connection/status/\"\n")),
        "{shown}"
    );
    let _daemon = setup.daemon();
    enqueue(&setup, "people.csv", &people("url", n));
    let paths = smtp.wait_for(n, Duration::from_secs(120));
    assert_eq!(paths.len(), n, "{}", setup.log());
    for (i, p) in paths.iter().enumerate() {
        let m = read_mail(p);
        assert_mydex_shaped(&m.text_link, &sbx, 1);
        let (status, body) = setup.journey(&m.qr_link, &format!("url{i}x"), &m.to).await;
        assert_eq!(status, 200, "{body}");
    }
    let s = setup.wait_status(|s| s["members"]["total"] == n, Duration::from_secs(60));
    assert_eq!(s["members"]["total"], n, "{s}");
    sweep_now(&setup);
    let s = setup.wait_status(
        |s| s["sweeps"]["version"]["finished"] == true,
        Duration::from_secs(60),
    );
    let last = &s["sweeps"]["version"]["last"];
    assert_eq!(last["checked"], n, "{s}");
    assert_eq!(last["errors"], 0, "{s}");
    let state = setup.sandbox_state().await;
    assert_eq!(state["counts"]["ftc_setup"], n, "{}", state["counts"]);
    assert_eq!(state["counts"]["status"], n, "{}", state["counts"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ftc_flow_and_endpoint_urls_are_validated_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    let good = std::fs::read_to_string(&setup.config).unwrap();
    let with = |line: &str| {
        good.replacen(
            "max_attempts = 12\n",
            &format!("max_attempts = 12\n{line}\n"),
            1,
        )
    };
    // The default: /ftc/setup under api_url.
    let out = setup.cli(&["check-config"]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("ftc_flow = \"ftc_setup\""), "{shown}");
    let sbx = setup.sandbox.url();
    assert!(
        shown.contains(&format!("ftc_url = \"{sbx}/ftc/setup\"  # from api_url")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!(
            "status_url = \"{sbx}/connection/status\"  # from api_url"
        )),
        "{shown}"
    );
    let cases = [
        (
            "ftc_flow = \"legacy\"",
            "mydex.ftc_flow",
            "\"legacy\" is neither",
        ),
        ("ftc_flow = 2", "mydex.ftc_flow", ""),
        (
            "ftc_url = \"ftp://x.example/ftc\"",
            "mydex.ftc_url",
            "http or https",
        ),
        ("ftc_url = \"not a url\"", "mydex.ftc_url", "is not a URL"),
        (
            "ftc_url = \"https://x.example/ftc#a\"",
            "mydex.ftc_url",
            "query or fragment",
        ),
        (
            "status_url = \"https://x.example/s?nid=1\"",
            "mydex.status_url",
            "query or fragment",
        ),
        ("status_url = \"\"", "mydex.status_url", "is not a URL"),
    ];
    for (line, key, says) in cases {
        let path = setup.dir.path().join("case.toml");
        std::fs::write(&path, with(line)).unwrap();
        let out = std::process::Command::new(bin())
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{line}: {err}");
        assert!(
            err.contains(key) && err.contains(says) && err.contains(path.to_str().unwrap()),
            "{line}: names {key} and the file: {err}"
        );
    }
    // Environment variables set the flow and the URL too.
    let out = std::process::Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&setup.config)
        .env("MYDEX_CONNECTOR__MYDEX__FTC_FLOW", "connection")
        .env(
            "MYDEX_CONNECTOR__MYDEX__FTC_URL",
            "https://idp.example.org/api/connection",
        )
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(shown.contains("ftc_flow = \"connection\""), "{shown}");
    assert!(
        shown.contains("ftc_url = \"https://idp.example.org/api/connection\"\n"),
        "{shown}"
    );
}

/// A config for the client alone (no daemon), with flow `connection`,
/// against the sandbox at `sbx` with this Connection Token.
fn client_config(dir: &std::path::Path, sbx: &str, token: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("client_secret"), CLIENT_SECRET).unwrap();
    std::fs::write(dir.join("connection_token"), token).unwrap();
    std::fs::write(dir.join("store.key"), [42u8; 32]).unwrap();
    let config = dir.join("client.toml");
    std::fs::write(
        &config,
        format!(
            r#"[mydex]
api_url = "{sbx}"
token_url = "{sbx}/oauth2/token"
client_id = "sandbox-client"
client_secret_file = "client_secret"
connection_nid = "45678"
connection_token_file = "connection_token"
ftc_flow = "connection"
request_timeout = "5s"

[callback]
public_url = "https://connect.example.com"

[smtp]
url = "smtp://127.0.0.1:25"
from = "connect@example.com"

[store]
path = "db"
key_file = "store.key"

[queue]
dir = "queue"

[[campaign]]
name = "meters"
subject = "Connect"
"#
        ),
    )
    .unwrap();
    config
}

fn new_client(config: &std::path::Path) -> mydex_connector::mydex::MydexClient {
    let settings = mydex_connector::config::Settings::load(config).unwrap();
    mydex_connector::mydex::MydexClient::new(
        &settings.mydex,
        std::sync::Arc::new(mydex_connector::metrics::Metrics::default()),
    )
    .unwrap()
}

async fn sandbox_state(sbx: &str) -> Value {
    reqwest::get(format!("{sbx}/_sandbox/state"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn request_log(state: &Value) -> Vec<String> {
    state["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap(),
                r["status"]
            )
        })
        .collect()
}

fn sandbox_args(listen: std::net::SocketAddr) -> mydex_sandbox::SandboxArgs {
    mydex_sandbox::SandboxArgs {
        listen,
        connection_token: TOKEN.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_older_flow_fetches_a_fresh_oauth_token_once_when_the_short_token_call_says_401() {
    use mydex_connector::mydex::{FtcRequest, MydexError};
    let dir = tempfile::tempdir().unwrap();
    let sb = mydex_sandbox::start(sandbox_args("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let (addr, sbx) = (sb.addr, sb.url());
    let client = new_client(&client_config(dir.path(), &sbx, TOKEN));
    let ask = |lt: &str, mydexid: Option<&str>, version: Option<u32>| FtcRequest {
        linking_token: lt.into(),
        mydexid: mydexid.map(str::to_string),
        version,
    };

    let link = client.ftc_setup(&ask("lt-1", None, None)).await.unwrap();
    assert!(
        link.url.starts_with(&format!("{sbx}/ftc/begin/45678/")),
        "{}",
        link.url
    );
    assert!(link.url.ends_with("/1"), "{}", link.url);
    assert_eq!(link.qr, None, "a bare string answer has no QR");
    assert_eq!(
        request_log(&sandbox_state(&sbx).await),
        [
            "POST /oauth2/token 200",
            "GET /access-token/45678 200",
            "POST /api/connection 200",
        ]
    );

    // A restarted sandbox knows no token: the cached one gets a 401 on the
    // short-token call, and the client fetches a new one, once.
    sb.shutdown().await;
    let sb = mydex_sandbox::start(sandbox_args(addr)).await.unwrap();
    let link = client
        .ftc_setup(&ask("lt-2", Some("alice1"), Some(2)))
        .await
        .unwrap();
    assert!(link.url.ends_with("/2"), "an update link: {}", link.url);
    let state = sandbox_state(&sbx).await;
    assert_eq!(
        request_log(&state),
        [
            "GET /access-token/45678 401",
            "POST /oauth2/token 200",
            "GET /access-token/45678 200",
            "POST /api/connection/update 200",
        ]
    );
    assert_eq!(state["links"][0]["linking_token"], "lt-2");
    assert_eq!(state["links"][0]["mydexid"], "alice1");
    sb.shutdown().await;

    // A client holding another Connection Token: the Authentication header
    // does not match, which is final (no retry).
    let sb = mydex_sandbox::start(sandbox_args("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let other = tempfile::tempdir().unwrap();
    let wrong = new_client(&client_config(
        other.path(),
        &sb.url(),
        "another-connection-token",
    ));
    match wrong.ftc_setup(&ask("lt-3", None, None)).await {
        Err(MydexError::Rejected {
            status: 403,
            message,
        }) => {
            assert_eq!(message, "Access Denied: Invalid Authentication")
        }
        other => panic!("expected a 403 refusal, got {other:?}"),
    }
    let state = sandbox_state(&sb.url()).await;
    assert_eq!(state["counts"]["api_connection"], 1);
    sb.shutdown().await;
}
