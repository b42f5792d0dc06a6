//! `contrib/`: every metric name the Grafana dashboard and the Prometheus
//! alert rules use is one a running daemon (serving HTTPS, so the
//! certificate's metric is there) exports on `/metrics`; the dashboard's
//! queries and the rules are valid PromQL (`promtool check rules`, when
//! promtool is installed: `.ci/run` installs Debian's `prometheus`).

use std::collections::BTreeSet;

use mydex_test_support::*;

/// Names of the delivery metrics (fixed by docs/plans/delivery.md):
/// allowed until the daemon
/// exports them. Remove an entry once `/metrics` has it.
const NOT_YET_EXPORTED: &[&str] = &[
    "mydex_connector_records",
    "mydex_connector_delivery_latency_seconds_bucket",
];

/// Every sample name the exposition can carry, from its `# TYPE` lines.
fn exported(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        let mut it = line.split(' ');
        if it.next() != Some("#") || it.next() != Some("TYPE") {
            continue;
        }
        let (Some(name), Some(kind)) = (it.next(), it.next()) else {
            continue;
        };
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            _ => &[""],
        };
        for s in suffixes {
            names.insert(format!("{name}{s}"));
        }
    }
    names
}

/// The `mydex_connector_*` names in `text`.
fn used(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("mydex_connector_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        // Not a part of a longer word (e.g. a file name), not the bare prefix.
        let alone =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'-');
        if alone && end > start + "mydex_connector_".len() {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// Every `expr` of the dashboard's panels.
fn dashboard_exprs(dashboard: &serde_json::Value) -> Vec<String> {
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    for p in panels {
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has queries", p["title"]);
        for t in targets {
            let e = t["expr"].as_str().expect("expr").to_string();
            assert!(e.contains("mydex_connector_"), "{e}");
            exprs.push(e);
        }
    }
    exprs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_use_only_exported_metrics() {
    use crate::callback_tls::{DAY, TLS_KEYS, TestCa, write_pair};
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let ca = TestCa::new();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.root_pem()).unwrap();
    let setup = setup(
        smtp.port,
        dir,
        Options {
            sandbox_ca_file: Some(ca_file),
            ..Default::default()
        },
    )
    .await;
    write_pair(setup.dir.path(), &ca.leaf(1, 90 * DAY));
    setup.edit_config("[callback]\n", TLS_KEYS);
    setup.edit_config("rate = \"unlimited\"", "rate = \"60/min\"");
    let daemon = setup.daemon();
    // One invitation through, so that the families with labels (Mydex
    // calls, callbacks) have a series and are exported.
    let file = setup.dir.path().join("one.csv");
    std::fs::write(&file, "email,external_ref\none@example.com,ONE-1\n").unwrap();
    assert!(
        setup
            .cli(&["enqueue", file.to_str().unwrap()])
            .status
            .success()
    );
    let mail = read_mail(&smtp.wait_for(1, std::time::Duration::from_secs(120))[0]);
    setup
        .sandbox_settings(serde_json::json!({"callback_url": format!("https://127.0.0.1:{}/mydex/callback", setup.callback_port)}))
        .await;
    let (status, body) = setup
        .journey(&mail.qr_link, "contribmember1", &mail.to)
        .await;
    assert_eq!(status, 200, "{body}");
    let metrics = setup.metrics().await;
    setup.stop(daemon);
    let mut known = exported(&metrics);
    known.extend(NOT_YET_EXPORTED.iter().map(|s| s.to_string()));
    for allowed in NOT_YET_EXPORTED {
        if exported(&metrics).contains(*allowed) {
            println!("note: {allowed} is exported now; drop it from NOT_YET_EXPORTED");
        }
    }

    let root = repo_root();
    let alerts = std::fs::read_to_string(root.join("contrib/prometheus/alerts.yml")).unwrap();
    let dashboard_text =
        std::fs::read_to_string(root.join("contrib/grafana/mydex-connector.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard_text).unwrap();
    let exprs = dashboard_exprs(&dashboard);
    for (file, text) in [
        ("alerts.yml", alerts.as_str()),
        ("mydex-connector.json", dashboard_text.as_str()),
    ] {
        let names = used(text);
        assert!(names.len() >= 7, "{file}: {names:?}");
        let unknown: Vec<_> = names.iter().filter(|n| !known.contains(*n)).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics the daemon does not export: {unknown:?}\nexported: {known:?}"
        );
        println!("{file}: {} metric names, all exported", names.len());
    }
    assert!(
        metrics.contains("mydex_connector_campaign_rate_limit_per_second{campaign=\"meters\"} 1.0"),
        "{metrics}"
    );

    // The dashboard's queries as recording rules, for promtool's parser.
    let Ok(out) = std::process::Command::new("promtool")
        .arg("--version")
        .output()
    else {
        println!("promtool not installed: PromQL syntax not checked here (.ci/run checks it)");
        return;
    };
    assert!(out.status.success());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e.replace("$instance", ".*");
        rules += &format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        );
    }
    let file = setup.dir.path().join("dashboard-rules.yml");
    std::fs::write(&file, rules).unwrap();
    for f in [file, root.join("contrib/prometheus/alerts.yml")] {
        let out = std::process::Command::new("promtool")
            .args(["check", "rules"])
            .arg(&f)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        println!("promtool check rules {}: {}", f.display(), text.trim());
        assert!(out.status.success(), "{text}");
    }
}
