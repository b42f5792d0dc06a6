//! What DKIM costs: invitation mails built and signed per second
//! with RSA-2048 and with Ed25519 (lettre's signer, the daemon's own
//! `Signer`, relaxed/relaxed over the headers the daemon signs), beside the
//! same mails built unsigned, and beside the part around us measured in the
//! same run: mails sent per second over SMTP (the daemon's `Mailer`, 64 at
//! once as `invitations.concurrency` by default) to a local SMTP server that
//! accepts and counts every message. Run with `cargo bench --bench dkim`
//! (release); knobs `BENCH_MAILS` (2,000 per figure), `BENCH_SENDERS` (64). Under `cargo test --all-targets`
//! it makes a small smoke run instead. One core signs; the machine's other
//! work shares it, so the figures are lower bounds.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use mydex_connector::config::Settings;
use mydex_connector::notify::email::{
    InlineImage, MailHeaders, Mailer, Rendered, Signer, build_message, qr_png,
};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Settings with the DKIM key `key` (a fixture under tests/fixtures/dkim).
fn settings(dir: &Path, smtp_port: u16, key: Option<&str>) -> anyhow::Result<Settings> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dkim");
    let dkim = match key {
        Some(k) => format!(
            "dkim_domain = \"example.com\"\ndkim_selector = \"mc2026\"\ndkim_key_file = \"{}\"\n",
            fixtures.join(k).display()
        ),
        None => String::new(),
    };
    std::fs::create_dir_all(dir.join("secrets"))?;
    std::fs::write(dir.join("secrets/client_secret"), "bench-secret")?;
    std::fs::write(
        dir.join("secrets/connection_token"),
        "bench-token-0123456789",
    )?;
    std::fs::write(dir.join("secrets/store.key"), [7u8; 32])?;
    let path = dir.join(format!("config-{}.toml", key.unwrap_or("none")));
    std::fs::write(
        &path,
        format!(
            r#"[mydex]
api_url = "http://127.0.0.1:9"
token_url = "http://127.0.0.1:9/oauth2/token"
client_id = "bench"
client_secret_file = "secrets/client_secret"
connection_nid = "45678"
connection_token_file = "secrets/connection_token"

[callback]
listen = "127.0.0.1:0"
public_url = "https://connect.example.com"

[admin]
listen = "127.0.0.1:1"

[smtp]
url = "smtp://127.0.0.1:{smtp_port}"
from = "Example Energy <connect@example.com>"
return_path = "bounces+{{token}}@example.com"
{dkim}
[store]
path = "db"
key_file = "secrets/store.key"

[queue]
dir = "queue"

[[campaign]]
name = "bench"
"#
        ),
    )?;
    Ok(Settings::load(&path)?)
}

/// A typical invitation's parts: the text, HTML and QR code of a mail.
struct Parts {
    rendered: Rendered,
    qr: InlineImage,
    headers: MailHeaders,
}

fn parts() -> anyhow::Result<Parts> {
    let link = "https://sbx-api.mydex.org/connect/ftc?token=0123456789abcdef0123456789abcdef";
    let text = format!(
        "Dear Ann,\n\nExample Energy invites you to connect your Personal Data Store.\n\nOpen {link}\nor scan the QR code.\n\nUnsubscribe: https://connect.example.com/unsubscribe/u0123\n"
    );
    Ok(Parts {
        rendered: Rendered {
            subject: "Connect your Personal Data Store to Example Energy".into(),
            html: format!(
                "<!doctype html><html><body><p>Dear Ann,</p><p>Example Energy invites you to connect your Personal Data Store.</p><p><a href=\"{link}\">Connect</a></p><p><img src=\"cid:qr\" alt=\"QR code\"></p>{}</body></html>",
                "<p>Why we ask, what we keep, how to stop: a paragraph of the usual length for such a mail.</p>".repeat(8)
            ),
            text,
        },
        qr: InlineImage {
            content_id: "qr-1@example.com".into(),
            content_type: "image/png",
            bytes: qr_png(link)?,
        },
        headers: MailHeaders {
            list_unsubscribe: "<https://connect.example.com/unsubscribe/u0123456789abcdef0123456789abcdef0123456789abcdef>, <mailto:unsubscribe@example.com?subject=unsubscribe%20u0123456789abcdef0123456789abcdef0123456789abcdef>".into(),
            envelope_from: Some("bounces+b0123456789abcdef0123456789abcdef0123456789abcdef@example.com".into()),
            message_token: None,
        },
    })
}

/// Mails built (and signed by `signer`) per second.
fn build_rate(
    settings: &Settings,
    p: &Parts,
    signer: Option<&Signer>,
    n: u64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    for i in 0..n {
        let rendered = Rendered {
            subject: p.rendered.subject.clone(),
            text: p.rendered.text.clone(),
            html: p.rendered.html.clone(),
        };
        let mut m = build_message(
            &p.headers,
            &settings.smtp.from,
            Some("Ann Example"),
            &format!("ann{i}@example.com"),
            i,
            &rendered,
            std::slice::from_ref(&p.qr),
        )?;
        if let Some(s) = signer {
            s.sign(&mut m);
        }
        std::hint::black_box(&m);
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// Unsigned mails sent per second over SMTP, `senders` at once.
async fn send_rate(
    settings: &Settings,
    p: &Parts,
    n: u64,
    senders: u64,
    sink: &AtomicUsize,
) -> anyhow::Result<f64> {
    let mailer = Arc::new(Mailer::new(&settings.smtp, senders as usize)?);
    let mut messages = Vec::with_capacity(n as usize);
    for i in 0..n {
        let rendered = Rendered {
            subject: p.rendered.subject.clone(),
            text: p.rendered.text.clone(),
            html: p.rendered.html.clone(),
        };
        messages.push(build_message(
            &p.headers,
            &settings.smtp.from,
            None,
            &format!("ann{i}@example.com"),
            i,
            &rendered,
            std::slice::from_ref(&p.qr),
        )?);
    }
    let before = sink.load(Ordering::Relaxed);
    let queue = Arc::new(parking_lot::Mutex::new(messages));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..senders {
        let (mailer, queue) = (mailer.clone(), queue.clone());
        tasks.spawn(async move {
            loop {
                let Some(m) = queue.lock().pop() else {
                    return Ok::<_, anyhow::Error>(());
                };
                mailer.send(m).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        sink.load(Ordering::Relaxed) - before == n as usize,
        "the SMTP server did not count every mail"
    );
    Ok(rate)
}

fn main() -> anyhow::Result<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let n = env_num("BENCH_MAILS", if full { 2000 } else { 5 });
    let senders = env_num("BENCH_SENDERS", 64);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let dir = tempfile::tempdir()?;
        let (port, sink) = mydex_test_support::smtp_sink::start().await?;
        let plain = settings(dir.path(), port, None)?;
        let rsa = settings(dir.path(), port, Some("rsa2048-pkcs1.pem"))?;
        let ed = settings(dir.path(), port, Some("ed25519-pkcs8.pem"))?;
        let signer = |s: &Settings| -> anyhow::Result<Signer> {
            let dkim = s
                .smtp
                .dkim
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("no dkim settings"))?;
            Ok(Signer::new(dkim)?)
        };
        let (rsa_signer, ed_signer) = (signer(&rsa)?, signer(&ed)?);
        let p = parts()?;
        // Warm up (allocator, lazy statics) before measuring.
        build_rate(&plain, &p, Some(&rsa_signer), 5.min(n))?;
        let unsigned = build_rate(&plain, &p, None, n)?;
        let with_rsa = build_rate(&rsa, &p, Some(&rsa_signer), n)?;
        let with_ed = build_rate(&ed, &p, Some(&ed_signer), n)?;
        let smtp = send_rate(&plain, &p, n, senders, &sink).await?;
        println!(
            "dkim: {n} invitation mails each: built unsigned {unsigned:.0}/s; built and signed with RSA-2048 {with_rsa:.0}/s, with Ed25519 {with_ed:.0}/s; sent over SMTP to a local server that only counts ({senders} at once, unsigned) {smtp:.0}/s"
        );
        Ok(())
    })
}
