//! The admin API through the real binary: `/metrics` read by the Prometheus
//! client library's text-format parsers, `/readyz` failing while the SMTP
//! server is down and recovering after, `POST /invitees` with good, bad,
//! unauthenticated and oversized bodies.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mydex_test_support::*;

/// Complete the journeys of these mails in the sandbox as new members.
async fn complete(setup: &Setup, mails: &[Mail]) {
    let http = reqwest::Client::new();
    for (i, m) in mails.iter().enumerate() {
        let r = http
            .post(format!("{}/_sandbox/journeys", setup.sandbox.url()))
            .json(&serde_json::json!({"url": m.qr_link, "mydexid": format!("adm{i}member"), "email": m.to}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
}

async fn post_invitees(
    setup: &Setup,
    content_type: &str,
    body: impl Into<reqwest::Body>,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .post(setup.admin_url("/invitees"))
        .header("content-type", content_type)
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// POST 3× `/invitees`' 4 MiB limit over a plain socket, writing every
/// byte before reading: the answer as text, or why a write or read failed.
fn oversized_over_a_socket(port: u16) -> String {
    use std::io::{Read, Write};
    let total = 3 * 4 * 1024 * 1024;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return "connect failed".into();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let head = format!(
        "POST /invitees HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {total}\r\n\r\n"
    );
    if let Err(e) = s.write_all(head.as_bytes()) {
        return format!("writing the head failed: {e}");
    }
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        if let Err(e) = s.write_all(&chunk) {
            return format!("writing the body failed after {sent} bytes: {e}");
        }
        sent += chunk.len();
    }
    let mut answer = Vec::new();
    match s.read_to_end(&mut answer) {
        Ok(_) => String::from_utf8_lossy(&answer).into_owned(),
        Err(e) => format!(
            "reading the answer failed: {e} (after {} bytes)",
            answer.len()
        ),
    }
}

/// Parse with `prometheus_client.parser` (Prometheus text) and
/// `prometheus_client.openmetrics.parser`; the samples as JSON.
fn parse_metrics(dir: &Path, text: &str) -> Vec<serde_json::Value> {
    let file = dir.join("metrics.txt");
    std::fs::write(&file, text).unwrap();
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families as prom
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
text = open(sys.argv[1]).read()
families = list(om(text))
prom_families = list(prom(text))
assert len(prom_families) > 0
out = []
for f in families:
    for s in f.samples:
        out.append({"family": f.name, "type": f.type, "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
        .expect("python3 with prometheus-client (.ci/run installs it)");
    assert!(
        out.status.success(),
        "the parsers refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample(samples: &[serde_json::Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .and_then(|s| s["value"].as_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_a_small_campaign() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    let _d = setup.daemon();
    let people: Vec<_> = (0..5)
        .map(|i| serde_json::json!({"email": format!("m{i}@example.com"), "external_ref": format!("MTR-{i}")}))
        .collect();
    let (status, body) = post_invitees(
        &setup,
        "application/json",
        serde_json::to_vec(&people).unwrap(),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let paths = smtp.wait_for(5, Duration::from_secs(60));
    assert_eq!(paths.len(), 5, "{}", setup.log());
    let mails: Vec<Mail> = paths.iter().map(|p| read_mail(p)).collect();
    complete(&setup, &mails).await;
    let s = setup.wait_status(
        |s| s["invitations"]["connected"] == 5,
        Duration::from_secs(120),
    );
    assert_eq!(s["invitations"]["connected"], 5, "{s}");

    // A mail reaches the SMTP server (and its journey may complete) before
    // the daemon has counted it sent: read /metrics once the counts of the
    // campaign have settled, then check every figure.
    let settled = |samples: &[serde_json::Value]| {
        sample(
            samples,
            "mydex_connector_emails_total",
            &[("result", "sent")],
        ) == Some(5.0)
            && sample(
                samples,
                "mydex_connector_callbacks_total",
                &[("type", "ftc"), ("result", "connected")],
            ) == Some(5.0)
            && sample(samples, "mydex_connector_queue_depth", &[]) == Some(0.0)
    };
    let start = Instant::now();
    let (ctype, text, samples) = loop {
        let resp = reqwest::get(setup.admin_url("/metrics")).await.unwrap();
        assert_eq!(resp.status(), 200);
        let ctype = resp.headers()["content-type"].to_str().unwrap().to_string();
        let text = resp.text().await.unwrap();
        let samples = parse_metrics(setup.dir.path(), &text);
        if settled(&samples) || start.elapsed() > Duration::from_secs(120) {
            break (ctype, text, samples);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("content-type: {ctype}\n{text}");
    let get = |name: &str, labels: &[(&str, &str)]| sample(&samples, name, labels);
    let inv = "mydex_connector_invitations";
    assert_eq!(
        get(inv, &[("campaign", "meters"), ("state", "connected")]),
        Some(5.0)
    );
    assert_eq!(
        get(inv, &[("campaign", "meters"), ("state", "queued")]),
        Some(0.0)
    );
    assert_eq!(
        get("mydex_connector_emails_total", &[("result", "sent")]),
        Some(5.0)
    );
    assert_eq!(
        get("mydex_connector_emails_total", &[("result", "failed")]),
        Some(0.0)
    );
    assert_eq!(
        get(
            "mydex_connector_mydex_calls_total",
            &[("endpoint", "/ftc/setup"), ("status", "ok")]
        ),
        Some(5.0)
    );
    assert_eq!(
        get(
            "mydex_connector_mydex_call_duration_seconds_count",
            &[("endpoint", "/ftc/setup")]
        ),
        Some(5.0)
    );
    assert_eq!(
        get(
            "mydex_connector_mydex_call_duration_seconds_bucket",
            &[("endpoint", "/ftc/setup"), ("le", "+Inf")]
        ),
        Some(5.0)
    );
    assert_eq!(
        get(
            "mydex_connector_callbacks_total",
            &[("type", "ftc"), ("result", "connected")]
        ),
        Some(5.0)
    );
    assert_eq!(
        get("mydex_connector_members", &[("kind", "total")]),
        Some(5.0)
    );
    assert_eq!(get("mydex_connector_queue_depth", &[]), Some(0.0));
    assert_eq!(get("mydex_connector_queue_files", &[]), Some(0.0));
    setup.keep_for_log_scan().await;
}

async fn readyz(setup: &Setup) -> (u16, serde_json::Value) {
    let resp = reqwest::get(setup.admin_url("/readyz")).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_smtp_is_down_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let first = smtp(dir.path(), &[]);
    let port = first.port;
    let setup = setup(port, dir, Options::default()).await;
    let _d = setup.daemon();

    // Ready once its first checks have answered (a token from the sandbox,
    // a connection to the SMTP server: slow on a loaded machine).
    let start = Instant::now();
    let (status, doc) = loop {
        let (status, doc) = readyz(&setup).await;
        if status == 200 || start.elapsed() > Duration::from_secs(60) {
            break (status, doc);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("up: {status} {doc}");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["ready"], true);
    for check in ["store", "mydex_token", "smtp"] {
        assert_eq!(doc["checks"][check]["ok"], true, "{check}: {doc}");
    }

    drop(first); // the SMTP server process is killed
    let (status, doc) = readyz(&setup).await;
    println!("SMTP down: {status} {doc}");
    assert_eq!(status, 503, "{doc}");
    assert_eq!(doc["ready"], false);
    assert_eq!(doc["checks"]["smtp"]["ok"], false);
    assert!(
        doc["checks"]["smtp"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );
    assert_eq!(doc["checks"]["store"]["ok"], true);
    assert_eq!(doc["checks"]["mydex_token"]["ok"], true);

    let _second = smtp_at(setup.dir.path(), Some(port), &[]);
    let start = Instant::now();
    let (status, doc) = loop {
        let (status, doc) = readyz(&setup).await;
        if status == 200 || start.elapsed() > Duration::from_secs(120) {
            break (status, doc);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("SMTP back: {status} {doc}");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["checks"]["smtp"]["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_invitees_good_bad_unauthenticated_oversized() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(
        smtp.port,
        dir,
        Options {
            extra_config: "\n[[campaign]]\nname = \"second\"\n".into(),
            ..Options::default()
        },
    )
    .await;
    let _d = setup.daemon();
    let good =
        serde_json::json!([{"email": "a@example.com", "name": "Ann", "external_ref": "MTR-A"}]);

    // Unauthenticated, wrong token: refused, nothing stored.
    for token in [None, Some("wrong-token-wrong-token")] {
        let (status, body) =
            post_invitees(&setup, "application/json", good.to_string(), token).await;
        assert_eq!(status, 401, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("bearer"),
            "{body}"
        );
    }

    // A JSON array: good rows stored, each bad one named with its reason.
    let body = serde_json::json!([
        {"email": "a@example.com", "name": "Ann", "external_ref": "MTR-A"},
        {"email": "not-an-email"},
        {"email": "b@example.com", "campaign": "nope"},
        "just a string",
        {"name": "no email"},
        {"email": "c@example.com", "campaign": "second", "tariff": "green"},
    ]);
    // A row naming `email` twice (which serde_json alone would collapse
    // to the last) is refused alone, the key named.
    let body = body.to_string().replacen(
        ']',
        r#",{"email":"e@example.com","name":"Eve","email":"f@example.com"}]"#,
        1,
    );
    let (status, doc) = post_invitees(&setup, "application/json", body, Some(ADMIN_TOKEN)).await;
    println!("array: {status} {doc}");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["queued"], 2);
    assert_eq!(doc["rejected"], 5);
    let rows = doc["rows"].as_array().unwrap();
    let row = |n: u64| rows.iter().find(|r| r["row"] == n).unwrap();
    assert_eq!(row(1)["status"], "queued");
    assert!(
        row(2)["error"]
            .as_str()
            .unwrap()
            .contains("not a valid address"),
        "{doc}"
    );
    assert!(
        row(3)["error"].as_str().unwrap().contains("not configured"),
        "{doc}"
    );
    assert!(
        row(4)["error"].as_str().unwrap().contains("object"),
        "{doc}"
    );
    assert!(row(5)["error"].as_str().unwrap().contains("email"), "{doc}");
    assert_eq!(row(6)["status"], "queued");
    assert_eq!(row(7)["error"], "not valid JSON: key \"email\" is repeated");

    // NDJSON: a repeat is a duplicate, a broken line is named.
    let ndjson = "{\"email\":\"a@example.com\",\"name\":\"Ann\",\"external_ref\":\"MTR-A\"}\n{\"email\":\"d@example.com\",\"external_ref\":\"MTR-D\"}\n{broken\n";
    let (status, doc) =
        post_invitees(&setup, "application/x-ndjson", ndjson, Some(ADMIN_TOKEN)).await;
    println!("ndjson: {status} {doc}");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["queued"], 1);
    assert_eq!(doc["duplicates"], 1);
    assert_eq!(doc["rejected"], 1);
    assert!(
        doc["rows"][2]["error"].as_str().unwrap().contains("JSON"),
        "{doc}"
    );

    // Every row bad: 422. Not JSON: 400. Wrong type: 415.
    let (status, _) = post_invitees(
        &setup,
        "application/json",
        "[{\"email\":\"x\"}]",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 422);
    let (status, doc) = post_invitees(&setup, "application/json", "{nope", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 400, "{doc}");
    let (status, _) = post_invitees(&setup, "text/csv", "email\na@b.c\n", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 415);

    // Oversized: 413 with a message, nothing stored.
    // Three times the limit: the admin listener reads an oversized body to
    // its end (up to 4× the limit) before answering, so the client still
    // sending sees the 413, not a reset connection (a loaded CI run once
    // saw a broken pipe here).
    let row =
        r#"{"email":"z@example.com","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
    let mut huge = format!("[{row}");
    while huge.len() <= 3 * 4 * 1024 * 1024 {
        huge.push(',');
        huge.push_str(row);
    }
    huge.push(']');
    assert!(huge.len() > 4 * 1024 * 1024);
    let (status, doc) = post_invitees(&setup, "application/json", huge, Some(ADMIN_TOKEN)).await;
    println!("oversized: {status} {doc}");
    assert_eq!(status, 413);
    assert!(
        doc["error"].as_str().unwrap().contains("larger than"),
        "{doc}"
    );
    // The same over a plain socket that writes all 12 MiB before it reads:
    // every write goes through and the answer is a whole 413, which holds
    // only if the listener reads the body to its end (admin/body_drain.rs;
    // without it the listener closes with 8 MiB unread, the kernel resets
    // the connection, and the writes fail).
    let port = setup.admin_port;
    let raw = tokio::task::spawn_blocking(move || oversized_over_a_socket(port))
        .await
        .unwrap();
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(
        raw.to_ascii_lowercase().contains("connection: close"),
        "{raw}"
    );
    assert!(raw.contains("larger than"), "{raw}");

    // Exactly the three good people were stored and mailed: once the daemon
    // has recorded all three sent, nothing is left to mail, so the messages
    // counted then are all there will be.
    let s = setup.wait_status(|s| s["invitations"]["sent"] == 3, Duration::from_secs(120));
    assert_eq!(s["invitations"]["sent"], 3, "{s}\n{}", setup.log());
    let paths = smtp.messages();
    let mut to: Vec<String> = paths.iter().map(|p| read_mail(p).to).collect();
    to.sort();
    assert_eq!(
        to,
        ["a@example.com", "c@example.com", "d@example.com"],
        "{paths:?}"
    );
    let s = setup.status();
    assert_eq!(s["store"], serde_json::json!({"ok": true}), "{s}");
    let total: u64 = [
        "queued",
        "link_issued",
        "sent",
        "connected",
        "expired",
        "failed",
    ]
    .iter()
    .map(|k| s["invitations"][k].as_u64().unwrap())
    .sum();
    assert_eq!(total, 3, "{s}");
    setup.keep_for_log_scan().await;
}
