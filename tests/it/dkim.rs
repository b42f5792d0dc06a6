//! DKIM through the real binary and the real SMTP server: every mail signed
//! with the configured key verifies with dkimpy (an independent verifier,
//! against the public key's TXT value, no DNS) for RSA as PKCS#1 and PKCS#8
//! and for Ed25519, and fails once one byte of the body is changed; bad keys
//! and a partial set of keys are configuration errors naming the key (78).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mydex_test_support::*;

fn fixtures() -> std::path::PathBuf {
    repo_root().join("tests/fixtures/dkim")
}

/// dkimpy's verdict on `msg` with the public key in `txt`.
fn verify(msg: &Path, txt: &Path) -> (bool, String) {
    let script = repo_root().join("crates/test-support/dkim_verify.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(msg)
        .arg(txt)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn dkim_config(setup: &Setup, key: &str) {
    std::fs::copy(fixtures().join(key), setup.dir.path().join("dkim.key")).unwrap();
    setup.edit_config(
        "from = \"Example Energy <connect@example.com>\"\n",
        "from = \"Example Energy <connect@example.com>\"\ndkim_domain = \"example.com\"\ndkim_selector = \"mc2026\"\ndkim_key_file = \"dkim.key\"\n",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_mail_verifies_and_fails_after_one_body_byte_changes() {
    for (key, txt) in [
        ("rsa2048-pkcs1.pem", "rsa2048.txt"),
        ("rsa2048-pkcs8.pem", "rsa2048.txt"),
        ("ed25519-pkcs8.pem", "ed25519.txt"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let smtp = smtp(dir.path(), &[]);
        let setup = setup(smtp.port, dir, Options::default()).await;
        dkim_config(&setup, key);
        let daemon = setup.daemon();
        let file = setup.dir.path().join("p.csv");
        std::fs::write(&file, "email,name\nsig@example.com,Sig\n").unwrap();
        let out = setup.cli(&["enqueue", file.to_str().unwrap()]);
        assert!(out.status.success());
        let paths = smtp.wait_for(1, Duration::from_secs(60));
        assert_eq!(paths.len(), 1, "{key}: {}", setup.log());
        let raw = std::fs::read(&paths[0]).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("DKIM-Signature:"), "{key}: unsigned");
        let sig_headers = text[text.find("DKIM-Signature:").unwrap()..]
            .split("b=")
            .next()
            .unwrap()
            .to_ascii_lowercase();
        for h in [
            "list-unsubscribe",
            "list-unsubscribe-post",
            "from",
            "subject",
        ] {
            assert!(
                sig_headers.contains(h),
                "{key}: {h} not signed: {sig_headers}"
            );
        }
        let txt = fixtures().join(txt);
        let (ok, said) = verify(&paths[0], &txt);
        assert!(ok, "{key}: {said}");

        // One byte of the body changed: the signature no longer holds.
        let body_at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut changed = raw.clone();
        let i = (body_at..changed.len())
            .find(|&i| changed[i].is_ascii_lowercase() && i > body_at + 100)
            .unwrap();
        changed[i] = changed[i].to_ascii_uppercase();
        let altered = setup.dir.path().join("altered.eml");
        std::fs::write(&altered, &changed).unwrap();
        let (ok, said) = verify(&altered, &txt);
        assert!(!ok, "{key}: an altered body still verifies: {said}");
        setup.stop(daemon);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_and_a_partial_set_are_configuration_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let setup = setup(free_port(), dir, Options::default()).await;
    let original = std::fs::read_to_string(&setup.config).unwrap();
    let garbage = "-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5IGF0IGFsbA==\n-----END RSA PRIVATE KEY-----\n";
    let cases: Vec<(&str, Option<Vec<u8>>, &str, &str)> = vec![
        (
            "all three",
            Some(std::fs::read(fixtures().join("rsa1024.pem")).unwrap()),
            "smtp.dkim_key_file",
            "2048",
        ),
        (
            "all three",
            Some(garbage.as_bytes().to_vec()),
            "smtp.dkim_key_file",
            "PKCS#1",
        ),
        (
            "all three",
            Some(b"hello\n".to_vec()),
            "smtp.dkim_key_file",
            "not a PEM",
        ),
        ("all three", None, "smtp.dkim_key_file", "dkim.key"),
        (
            "no selector",
            Some(std::fs::read(fixtures().join("rsa2048-pkcs1.pem")).unwrap()),
            "smtp.dkim_selector",
            "together",
        ),
    ];
    for (shape, key, names, why) in cases {
        let key_path = setup.dir.path().join("dkim.key");
        let _ = std::fs::remove_file(&key_path);
        if let Some(k) = &key {
            std::fs::write(&key_path, k).unwrap();
        }
        let keys = if shape == "no selector" {
            "dkim_domain = \"example.com\"\ndkim_key_file = \"dkim.key\"\n"
        } else {
            "dkim_domain = \"example.com\"\ndkim_selector = \"mc2026\"\ndkim_key_file = \"dkim.key\"\n"
        };
        std::fs::write(
            &setup.config,
            original.replace(
                "from = \"Example Energy <connect@example.com>\"\n",
                &format!("from = \"Example Energy <connect@example.com>\"\n{keys}"),
            ),
        )
        .unwrap();
        let out = setup.cli(&["check-config"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{names} {why}: {err}");
        assert!(
            err.contains(names) && err.contains(why),
            "{names} {why}: {err}"
        );
        assert!(
            !err.contains("bm90IGEga2V5") && !err.contains("MII"),
            "the key is never quoted: {err}"
        );
    }
}
