//! DNS rebinding on the admin API, and the admin token's own edges, through
//! the real binary. A web page in a local browser can make a name of its own
//! resolve to 127.0.0.1 and read our admin port, but its requests carry that
//! name in `Host`: without the admin token, every route but the probes
//! answers such a request 421 and nothing, and a token-less answer to a
//! local client never carries a one-time link or a linking token. With the
//! token, the Host does not matter and the answers are as before. A token
//! file written by `echo` (a trailing newline) works; a wrong token flood
//! is counted in `/metrics` and warned about at most once a second.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use mydex_test_support::*;

/// Every token-less read route of the admin API, for these invitations and
/// callbacks.
fn read_paths(invitations: &[u64], callbacks: &[u64]) -> Vec<String> {
    let mut paths: Vec<String> = [
        "/invitations",
        "/invitations?state=sent",
        "/members",
        "/callbacks",
        "/callbacks?quarantined=true",
        "/suppressions",
        "/status",
    ]
    .map(String::from)
    .to_vec();
    paths.extend(invitations.iter().map(|id| format!("/invitations/{id}")));
    paths.extend(callbacks.iter().map(|id| format!("/callbacks/{id}")));
    paths
}

/// GET `path` with exactly this `Host` (and bearer token, if any).
async fn get(port: u16, path: &str, host: &str, bearer: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .header(reqwest::header::HOST, host);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// An HTTP/1.0 GET with no `Host` at all, over a plain socket: the status
/// and body.
fn get_without_host(port: u16, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// The one-time links (URL and id) and linking tokens the sandbox handed
/// out: what no token-less answer may carry.
async fn secrets(setup: &Setup) -> Vec<String> {
    let state = setup.sandbox_state().await;
    let mut out = Vec::new();
    for l in state["links"].as_array().unwrap() {
        for field in ["url", "id", "linking_token"] {
            if let Some(v) = l[field].as_str() {
                out.push(v.to_string());
            }
        }
    }
    assert!(out.len() >= 6, "two links with their tokens: {state}");
    out
}

fn assert_none_in(body: &str, secrets: &[String], what: &str) {
    for s in secrets {
        assert!(!body.contains(s.as_str()), "{what} carries {s:?}: {body}");
    }
}

/// Two invitations mailed; the first one's member connected (a callback
/// with its linking token stored), the second one's link still live.
async fn one_connected_one_live(setup: &Setup, smtp: &Smtp) {
    let file = setup.dir.path().join("people.csv");
    std::fs::write(
        &file,
        "email,name,external_ref\nrebind-a@example.com,Ann Rebind,RB-1\nrebind-b@example.com,Bob Rebind,RB-2\n",
    )
    .unwrap();
    let out = setup.cli(&["enqueue", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mails: Vec<Mail> = smtp
        .wait_for(2, Duration::from_secs(180))
        .iter()
        .map(|p| read_mail(p))
        .collect();
    assert_eq!(mails.len(), 2, "{}", setup.log());
    let first = mails
        .iter()
        .find(|m| m.to == "rebind-a@example.com")
        .unwrap();
    let (status, body) = setup.journey(&first.qr_link, "rebindann1", &first.to).await;
    assert_eq!(status, 200, "{body}");
    let s = setup.wait_status(
        |s| s["invitations"]["connected"] == 1 && s["invitations"]["sent"] == 1,
        Duration::from_secs(180),
    );
    assert_eq!(s["invitations"]["connected"], 1, "{s}");
}

/// The ids of the stored callbacks (listed with the token).
async fn callback_ids(port: u16, bearer: Option<&str>) -> Vec<u64> {
    let host = format!("127.0.0.1:{port}");
    let (status, body) = get(port, "/callbacks", &host, bearer).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<u64> = v["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_u64())
        .collect();
    assert!(!ids.is_empty(), "{body}");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebinding_host_reads_nothing_and_local_reads_carry_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    // No admin.token_file: token-less reads are open on loopback.
    setup.edit_config("token_file = \"secrets/admin_token\"\n", "");
    let daemon = setup.daemon();
    one_connected_one_live(&setup, &smtp).await;
    let secrets = secrets(&setup).await;
    let port = setup.admin_port;
    let paths = read_paths(&[0, 1], &callback_ids(port, None).await);

    // A name that is not the listener, the listener's name with another
    // port, or no Host at all: 421 and nothing about anyone.
    let personal = [
        "rebind-a@",
        "rebind-b@",
        "Ann Rebind",
        "Bob Rebind",
        "RB-1",
        "RB-2",
    ];
    let hostile = [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        format!("localhost:{}", port.wrapping_sub(1)),
    ];
    let mut refused = 0;
    for path in &paths {
        for host in &hostile {
            let (status, body) = get(port, path, host, None).await;
            assert_eq!(status, 421, "{path} with Host {host}: {body}");
            assert_none_in(&body, &secrets, path);
            for p in personal {
                assert!(!body.contains(p), "{path} with Host {host}: {body}");
            }
            refused += 1;
        }
        let p = path.clone();
        let (status, body) = tokio::task::spawn_blocking(move || get_without_host(port, &p))
            .await
            .unwrap();
        assert_eq!(status, 421, "{path} without Host: {body}");
        assert!(!body.contains("rebind-"), "{body}");
        refused += 1;
    }
    println!("{refused} token-less reads with a foreign or no Host: all 421, no personal data");

    // The probes answer whatever the Host, and carry no personal data.
    for path in ["/healthz", "/metrics"] {
        let (status, body) = get(port, path, "evil.example", None).await;
        assert_eq!(status, 200, "{path}: {body}");
        for p in personal {
            assert!(!body.contains(p), "{path}: {body}");
        }
        let p = path.to_string();
        let (status, _) = tokio::task::spawn_blocking(move || get_without_host(port, &p))
            .await
            .unwrap();
        assert_eq!(status, 200, "{path} without Host");
    }

    // The listener's own names: answered, never with a link or a token.
    let mut answered = 0;
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
    ] {
        for path in &paths {
            let (status, body) = get(port, path, &host, None).await;
            assert_eq!(status, 200, "{path} with Host {host}: {body}");
            assert_none_in(&body, &secrets, path);
            answered += 1;
        }
        let (_, listed) = get(port, "/invitations", &host, None).await;
        assert!(listed.contains("rebind-b@example.com"), "{listed}");
        for id in [0, 1] {
            let (_, shown) = get(port, &format!("/invitations/{id}"), &host, None).await;
            let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
            assert!(shown.get("link").is_none(), "{shown}");
            assert!(
                shown["withheld"].as_str().unwrap().contains("link"),
                "{shown}"
            );
        }
    }
    println!(
        "{answered} token-less reads naming the listener: 200, no one-time link, no linking token"
    );

    // The CLI names the listener as it is configured: its reads still work.
    for args in [
        ["invitations", "show", "1"].as_slice(),
        ["callbacks", "list"].as_slice(),
        ["status"].as_slice(),
    ] {
        let out = setup.cli(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_none_in(&String::from_utf8_lossy(&out.stdout), &secrets, "the CLI");
    }
    let metrics = get(port, "/metrics", &format!("127.0.0.1:{port}"), None)
        .await
        .1;
    let line = format!("mydex_connector_admin_refused_total{{reason=\"misdirected\"}} {refused}");
    assert!(metrics.contains(&line), "{line} in:\n{metrics}");
    setup.stop(daemon);

    // With a token (in a file written by `echo`: a trailing newline), the
    // Host does not matter and the answers carry the link and the token.
    std::fs::write(
        setup.dir.path().join("secrets/admin_token"),
        format!("{ADMIN_TOKEN}\n"),
    )
    .unwrap();
    setup.edit_config(
        "[admin]\n",
        "[admin]\ntoken_file = \"secrets/admin_token\"\n",
    );
    let daemon = setup.daemon();
    let live = setup.sandbox_state().await["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["used"] == false)
        .map(|l| l["url"].as_str().unwrap().to_string())
        .unwrap();
    let (_, listed) = get(port, "/invitations", "evil.example", Some(ADMIN_TOKEN)).await;
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let live_id = listed["invitations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["email"] == "rebind-b@example.com")
        .and_then(|i| i["id"].as_u64())
        .unwrap();
    for host in ["evil.example".to_string(), format!("127.0.0.1:{port}")] {
        let path = format!("/invitations/{live_id}");
        let (status, body) = get(port, &path, &host, Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200, "{body}");
        let shown: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(shown["link"], live.as_str(), "{shown}");
        let ids = callback_ids(port, Some(ADMIN_TOKEN)).await;
        let (status, body) = get(
            port,
            &format!("/callbacks/{}", ids[0]),
            &host,
            Some(ADMIN_TOKEN),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("\"linking_token\":\"lt"), "{body}");
        assert!(
            body.contains("\"key\":\"<redacted>\""),
            "the member key stays hidden: {body}"
        );
    }
    let out = setup.cli(&["invitations", "show", &live_id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&live));
    // Without it, the token-less read is refused now, on any Host.
    let (status, _) = get(port, "/invitations/1", "evil.example", None).await;
    assert_eq!(status, 421);
    let (status, _) = get(port, "/invitations/1", &format!("127.0.0.1:{port}"), None).await;
    assert_eq!(status, 401);
    println!(
        "with the token (its file ending in a newline): link and linking token shown, whatever the Host"
    );
    setup.keep_for_log_scan().await;
    setup.stop(daemon);
}

/// `line` without its terminal colours (`ESC [ ... m`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// How many lines of the log hold `needle`, and the sum of their `refused=`.
fn refusal_lines(log: &str, needle: &str) -> (usize, u64) {
    let lines: Vec<String> = log
        .lines()
        .map(plain)
        .filter(|l| l.contains(needle))
        .collect();
    let total = lines
        .iter()
        .filter_map(|l| l.split("refused=").nth(1))
        .filter_map(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .filter_map(|n| n.parse::<u64>().ok())
        .sum();
    (lines.len(), total)
}

/// `n` requests from `tasks` clients at once; each request made by `make`.
async fn flood(
    n: usize,
    tasks: usize,
    make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> Vec<u16> {
    let make = std::sync::Arc::new(make);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (make, next) = (make.clone(), next.clone());
        set.spawn(async move {
            let http = reqwest::Client::new();
            let mut statuses = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                statuses.push(make(&http).send().await.unwrap().status().as_u16());
            }
            statuses
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_admin_tokens_are_counted_and_warned_about_once_a_second() {
    const WRONG: usize = 4_500;
    const MISDIRECTED: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    std::fs::write(
        setup.dir.path().join("secrets/admin_token"),
        format!("{ADMIN_TOKEN}  \n\n"),
    )
    .unwrap();
    let daemon = setup.daemon();
    let url = setup.admin_url("/invitations");
    let started = Instant::now();
    let u = url.clone();
    let statuses = flood(WRONG, 8, move |h| {
        h.get(&u).bearer_auth("not-the-admin-token-0123456789")
    })
    .await;
    assert_eq!(statuses.len(), WRONG);
    assert!(statuses.iter().all(|s| *s == 401), "every wrong token 401");
    let u = url.clone();
    let statuses = flood(MISDIRECTED, 8, move |h| {
        h.get(&u).header("host", "evil.example")
    })
    .await;
    assert!(statuses.iter().all(|s| *s == 421), "every foreign Host 421");
    // Each second begun gives at most one line of each kind.
    let seconds = started.elapsed().as_secs() + 2;
    // The right token (its file had trailing blanks and lines) still works.
    let ok = reqwest::Client::new()
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let log = setup.log();
    let (token_lines, token_refused) = refusal_lines(&log, "admin call refused");
    let (host_lines, host_refused) = refusal_lines(&log, "its Host does not name this listener");
    println!(
        "{WRONG} wrong tokens and {MISDIRECTED} foreign Hosts in {} s: {token_lines} and {host_lines} warning lines (counting {token_refused} and {host_refused}; the rest after the last line)",
        started.elapsed().as_secs()
    );
    assert!(
        token_lines >= 1 && token_lines as u64 <= seconds,
        "{token_lines} lines in {seconds} s"
    );
    assert!(
        host_lines >= 1 && host_lines as u64 <= seconds,
        "{host_lines} lines in {seconds} s"
    );
    assert!(token_refused >= 1 && token_refused <= WRONG as u64);
    assert!(host_refused >= 1 && host_refused <= MISDIRECTED as u64);
    assert!(
        !log.contains("not-the-admin-token"),
        "a given token is never logged"
    );
    let metrics = setup.metrics().await;
    for line in [
        format!("mydex_connector_admin_refused_total{{reason=\"wrong_token\"}} {WRONG}"),
        format!("mydex_connector_admin_refused_total{{reason=\"misdirected\"}} {MISDIRECTED}"),
    ] {
        assert!(metrics.contains(&line), "{line} in:\n{metrics}");
    }
    setup.keep_for_log_scan().await;
    setup.stop(daemon);

    // A token that can never match is refused at start (exit 78, naming the
    // key): 8 characters in 16 bytes, or a line break inside.
    for (text, why) in [
        ("ééééééé\u{e9}\n", "at least 16 characters; it has 8"),
        ("0123456789abcdef\n0123456789abcdef\n", "control character"),
    ] {
        std::fs::write(setup.dir.path().join("secrets/admin_token"), text).unwrap();
        let out = setup.cli(&["check-config"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{err}");
        assert!(
            err.contains("admin.token_file") && err.contains(why),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_names_a_wildcard_listener_as_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    let port = setup.admin_port;
    setup.edit_config(
        &format!("listen = \"127.0.0.1:{port}\""),
        &format!("listen = \"0.0.0.0:{port}\""),
    );
    let daemon = setup.daemon();
    // `status` sends no token: it works because the CLI names the listener
    // 127.0.0.1:port, not 0.0.0.0:port.
    let s = setup.status();
    assert_eq!(s["invitations"]["queued"], 0, "{s}");
    let out = setup.cli(&["invitations", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The wildcard address is no name of the listener for a token-less call.
    let (status, _) = get(port, "/status", &format!("0.0.0.0:{port}"), None).await;
    assert_eq!(status, 421);
    let (status, _) = get(
        port,
        "/status",
        &format!("0.0.0.0:{port}"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    println!("admin.listen = 0.0.0.0:{port}: status and invitations list through the CLI answered");
    setup.keep_for_log_scan().await;
    setup.stop(daemon);
}
