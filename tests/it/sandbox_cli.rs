//! The real binary: `mydex-connector sandbox --listen 127.0.0.1:0` prints
//! its bound address and serves; a TOML `--config` fills in defaults.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use sha2::{Digest, Sha512};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mydex-connector"))
        .arg("sandbox")
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("binary runs");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("a line on stderr")
            .expect("readable stderr");
        if let Some(url) = line.strip_prefix("sandbox listening on ") {
            break url.trim().to_owned();
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Running(child), url)
}

#[tokio::test]
async fn binary_serves_the_sandbox_on_the_printed_address() {
    let (_child, url) = spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--nid",
        "777",
        "--client-id",
        "cli-client",
    ]);
    assert!(url.starts_with("http://127.0.0.1:"));
    assert!(!url.ends_with(":0"));
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{url}/oauth2/token"))
        .basic_auth("cli-client", Some("sandbox-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "mydex:pdx")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let token: Value = resp.json().await.unwrap();
    let resp = http
        .post(format!("{url}/ftc/setup"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&json!({
            "connection_nid": "777",
            "connection_token_hash": hex::encode(Sha512::digest(b"sandbox-connection-token")),
            "return_to": "https://sbx-my.mydex.org",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{url}/ftc/begin/"))
    );
}

#[tokio::test]
async fn binary_reads_config_file_and_secret_files() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "file-token\n").unwrap();
    let config = dir.path().join("sandbox.toml");
    std::fs::write(
        &config,
        format!(
            "nid = \"31337\"\nconnection_token_file = {:?}\ntoken_ttl = \"5s\"\nfaults = \"500,drop\"\n",
            token_file.display().to_string()
        ),
    )
    .unwrap();
    let (_child, url) = spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--config",
        config.to_str().unwrap(),
    ]);
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{url}/oauth2/token"))
        .basic_auth("sandbox-client", Some("sandbox-secret"))
        .form(&[("grant_type", "client_credentials"), ("scope", "mydex:pdx")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["expires_in"], 5);
    let resp = http
        .post(format!("{url}/identify"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&json!({
            "connection_nid": "31337",
            "connection_token_hash": hex::encode(Sha512::digest(b"file-token")),
            "return_to": "https://sbx-my.mydex.org",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let settings: Value = http
        .get(format!("{url}/_sandbox/settings"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings["faults"], json!(["500", "drop"]));
}

#[test]
fn binary_rejects_bad_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_mydex-connector"))
        .args(["sandbox", "--faults", "500,boom"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("boom"));
}
