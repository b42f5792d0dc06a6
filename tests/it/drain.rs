//! SIGTERM in the middle of a 1,000-invitation campaign, through the real
//! binary with the sandbox and a real SMTP server, journeys completing as
//! mails arrive: the daemon drains and exits 0 within its bound; after a
//! restart every invitation ends connected, none is lost, and any one mailed
//! twice is counted and printed (only those in flight at the kill may be).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use mydex_test_support::*;

const N: usize = 1000;
const CONCURRENCY: usize = 16;

/// Recipient and link of a mail, from its text part (no QR decoding: fast).
fn to_and_link(path: &Path) -> Option<(String, String)> {
    let raw = std::fs::read(path).ok()?;
    let msg = mail_parser::MessageParser::default().parse(&raw)?;
    let to = msg.to()?.first()?.address()?.to_string();
    let text = msg.body_text(0)?.to_string();
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/ftc/begin/"))?
        .to_string();
    Some((to, link))
}

/// Completes the journey of every recipient's first mail while `run` is set.
struct Completer {
    seen: HashSet<std::path::PathBuf>,
    done: HashSet<String>,
    per_recipient: BTreeMap<String, usize>,
}

impl Completer {
    /// Read new mails and complete up to `max` journeys.
    async fn pass(
        &mut self,
        smtp: &Smtp,
        sandbox: &str,
        http: &reqwest::Client,
        max: usize,
    ) -> usize {
        let mut completed = 0;
        for p in smtp.messages() {
            if completed >= max {
                break;
            }
            if !self.seen.insert(p.clone()) {
                continue;
            }
            let Some((to, link)) = to_and_link(&p) else {
                panic!("unreadable mail {}", p.display());
            };
            *self.per_recipient.entry(to.clone()).or_default() += 1;
            if self.done.contains(&to) {
                continue;
            }
            let n = self.done.len();
            let r = http
                .post(format!("{sandbox}/_sandbox/journeys"))
                .json(
                    &serde_json::json!({"url": link, "mydexid": format!("drain{n}x"), "email": to}),
                )
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: serde_json::Value = r.json().await.unwrap();
            assert!(status.is_success(), "journey for {to}: {status} {body}");
            assert_eq!(body["callback_status"], 200, "callback delivered: {body}");
            self.done.insert(to);
            completed += 1;
        }
        completed
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_campaign_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    let started = Instant::now();
    let mut daemon = setup.daemon();
    let file = setup.dir.path().join("campaign.csv");
    let mut csv = String::from("email,name,external_ref\n");
    for i in 0..N {
        csv += &format!("p{i}@example.com,Person {i},MTR-{i:05}\n");
    }
    std::fs::write(&file, csv).unwrap();
    let out = setup.cli(&["enqueue", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let http = reqwest::Client::new();
    let sandbox = setup.sandbox.url();
    let mut completer = Completer {
        seen: HashSet::new(),
        done: HashSet::new(),
        per_recipient: BTreeMap::new(),
    };
    // Journeys complete as mails arrive, until a third of the campaign is out.
    let kill_at = N / 3;
    while smtp.messages().len() < kill_at {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "stuck before the kill: {}",
            setup.log()
        );
        completer.pass(&smtp, &sandbox, &http, 20).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // SIGTERM mid-campaign (no journey in flight: the sandbox's callback
    // would otherwise hit a closed port).
    let before = setup.status();
    let term_at = Instant::now();
    assert_eq!(send_signal(daemon.0.id() as i32, "TERM"), 0);
    let exit = wait_exit(&mut daemon, Duration::from_secs(90));
    let took = term_at.elapsed();
    let mailed_at_kill = smtp.messages().len();
    println!(
        "SIGTERM with {} mails out ({} connected, {} queued, {} link_issued): exit {:?} after {:.2} s",
        mailed_at_kill,
        before["invitations"]["connected"],
        before["invitations"]["queued"],
        before["invitations"]["link_issued"],
        exit.and_then(|s| s.code()),
        took.as_secs_f64()
    );
    assert_eq!(
        exit.and_then(|s| s.code()),
        Some(0),
        "log:\n{}",
        setup.log()
    );
    assert!(
        took < Duration::from_secs(45),
        "drain is bounded (20 s in flight + flush): took {took:?}"
    );
    assert!(
        mailed_at_kill < N,
        "the kill came mid-campaign ({mailed_at_kill} of {N} mailed)"
    );

    // Restart; journeys go on until every invitation is connected.
    let _daemon = setup.daemon();
    let after_restart = setup.status();
    println!("after restart: {}", after_restart["invitations"]);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        completer.pass(&smtp, &sandbox, &http, 20).await;
        let s = setup.status();
        if s["invitations"]["connected"] == N as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all connected: {s}\n{}",
            setup.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let a late duplicate show up before counting.
    tokio::time::sleep(Duration::from_secs(1)).await;
    completer.pass(&smtp, &sandbox, &http, 20).await;

    let s = setup.status();
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
    assert_eq!(total, N as u64, "none lost, none added: {s}");
    assert_eq!(s["invitations"]["failed"], 0);
    assert_eq!(s["members"]["total"], N as u64);
    let expected: HashSet<String> = (0..N).map(|i| format!("p{i}@example.com")).collect();
    let got: HashSet<String> = completer.per_recipient.keys().cloned().collect();
    assert_eq!(got, expected, "every invitee was mailed");
    let twice: Vec<(&String, &usize)> = completer
        .per_recipient
        .iter()
        .filter(|(_, n)| **n > 1)
        .collect();
    println!(
        "{} mails for {N} invitees; mailed more than once: {} {:?}; total {:.1} s",
        smtp.messages().len(),
        twice.len(),
        twice,
        started.elapsed().as_secs_f64()
    );
    assert!(
        twice.len() <= CONCURRENCY,
        "only invitations in flight at the kill (at most invitations.concurrency = {CONCURRENCY}) may be mailed twice: {twice:?}"
    );
    setup.keep_for_log_scan().await;
}
