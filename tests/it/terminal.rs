//! What an operator reads in the terminal, through the real binary against
//! a real daemon, sandbox and SMTP sink: human output by default (no JSON,
//! no epoch milliseconds, no colour codes in a pipe or with `NO_COLOR`),
//! `--json` for scripts; `status` shows a paused campaign with its reason,
//! a campaign outside its send window with when it opens, readings by
//! state; `records list --state delivered` lists delivered readings;
//! `sweep version --wait` ends with the sweep's result.

use std::process::Command;
use std::time::Duration;

use mydex_test_support::*;

const LONG: Duration = Duration::from_secs(120);

fn extra(day: &str) -> String {
    format!(
        "\n[[campaign]]\nname = \"closed\"\nsend_window = \"{day} 00:00-00:01\"\ntime_zone = \"Europe/London\"\n\n[delivery]\ndir = \"readings\"\nbatch_size = 7\nhold_for = \"1h\"\n"
    )
}

/// A weekday that is neither today nor tomorrow (in any time zone).
fn another_day() -> &'static str {
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let today = chrono::Utc::now().format("%u").to_string();
    let today: usize = today.parse::<usize>().unwrap_or(1) - 1;
    days[(today + 3) % 7]
}

/// The command's stdout, which must have succeeded.
fn human(setup: &Setup, args: &[&str]) -> String {
    let out = setup.cli(args);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("$ mydex-connector {}\n{stdout}", args.join(" "));
    assert_readable(args, &stdout);
    stdout
}

/// No raw JSON, no epoch milliseconds, no colour codes.
fn assert_readable(args: &[&str], text: &str) {
    assert!(!text.contains("{\""), "{args:?} prints JSON:\n{text}");
    assert!(
        !text.contains("at_ms"),
        "{args:?} prints a field name:\n{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "{args:?} prints escape codes:\n{text}"
    );
    let epoch_ms = text
        .split(|c: char| !c.is_ascii_digit())
        .any(|w| w.len() == 13 && w.starts_with('1'));
    assert!(!epoch_ms, "{args:?} prints epoch milliseconds:\n{text}");
}

fn json(setup: &Setup, args: &[&str]) -> serde_json::Value {
    let out = setup.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Readings for each member: `n` each, in `ds_energy_readings`.
fn deliver(setup: &Setup, members: &[serde_json::Value], n: usize) {
    let mut text = String::new();
    for m in members {
        for j in 0..n {
            text += &format!(
                "{}\n",
                serde_json::json!({"mydexid": m["mydexid"], "external_id": format!("e{j}"), "dataset": "ds_energy_readings", "kwh": j})
            );
        }
    }
    let file = setup.dir.path().join("r.jsonl");
    std::fs::write(&file, &text).unwrap();
    let out = setup.cli(&["deliver", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reads_status_lists_and_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let opts = Options {
        extra_config: extra(another_day()),
        ..Default::default()
    };
    let setup = setup(smtp.port, dir, opts).await;
    let members = seed_members(&setup, 2, 1).await;
    let _daemon = setup.daemon();

    // One invitation mailed; readings delivered to both members.
    let file = setup.dir.path().join("people.csv");
    std::fs::write(
        &file,
        "email,name,external_ref\nann@example.com,Ann,MTR-1\n",
    )
    .unwrap();
    human(&setup, &["enqueue", file.to_str().unwrap()]);
    assert_eq!(smtp.wait_for(1, LONG).len(), 1, "{}", setup.log());
    deliver(&setup, &members, 5);
    let s = setup.wait_status(
        |s| s["records"]["delivered"] == 10 && s["invitations"]["sent"] == 1,
        LONG,
    );
    assert_eq!(s["records"]["delivered"], 10, "{s}");

    // Paused with a reason: the answer says so, and so does `status`.
    let paused = human(
        &setup,
        &["campaign", "pause", "meters", "--reason", "mailbox full"],
    );
    assert!(paused.contains("PAUSED: mailbox full"), "{paused}");
    let status = human(&setup, &["status"]);
    assert!(
        status.contains("meters: PAUSED by an operator since ") && status.contains("mailbox full"),
        "{status}"
    );
    assert!(
        status.contains("ago)") || status.contains("(just now)"),
        "a time with how long ago: {status}"
    );
    assert!(
        status.contains("closed: outside its send window") && status.contains(", opens "),
        "{status}"
    );
    assert!(status.contains("delivered"), "{status}");
    let doc = json(&setup, &["status", "--json"]);
    assert_eq!(doc["campaigns"]["meters"]["paused"], true, "{doc}");
    assert!(doc["campaigns"]["meters"]["paused_at_ms"].is_u64(), "{doc}");
    assert!(
        doc["campaigns"]["closed"]["window_opens_ms"].is_u64(),
        "{doc}"
    );
    assert!(
        doc["campaigns"]["meters"]["window_opens_ms"].is_null(),
        "{doc}"
    );

    // Lists: one invitation (not "1 invitations"), with its kind.
    let list = human(&setup, &["invitations", "list"]);
    assert!(list.trim_end().ends_with("\n1 invitation"), "{list}");
    assert!(
        list.contains("connect") && list.contains("ann@example.com"),
        "{list}"
    );
    let listed = json(&setup, &["invitations", "list", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let id = listed[0]["id"].as_u64().unwrap().to_string();
    let shown = human(&setup, &["invitations", "show", &id]);
    assert!(shown.contains("state         sent"), "{shown}");
    assert!(
        shown.contains("history") && shown.contains("MTR-1"),
        "{shown}"
    );
    let shown = json(&setup, &["invitations", "show", &id, "--json"]);
    assert_eq!(shown["state"], "sent", "{shown}");

    // Delivered readings are listable; every state by default.
    let delivered = human(&setup, &["records", "list", "--state", "delivered"]);
    assert!(delivered.contains("10 delivered readings"), "{delivered}");
    assert!(delivered.contains("e4") && delivered.contains("ds_energy_readings"));
    let all = human(&setup, &["records", "list"]);
    assert!(all.contains("10 readings"), "{all}");
    let rows = json(
        &setup,
        &["records", "list", "--state", "delivered", "--json"],
    );
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|r| r["state"] == "delivered"), "{rows:?}");

    // Suppressions, people, callbacks: sentences and tables.
    let added = human(
        &setup,
        &[
            "suppressions",
            "add",
            "--email",
            "bob@example.com",
            "--reason",
            "asked us",
        ],
    );
    assert!(added.contains("added"), "{added}");
    let supp = human(&setup, &["suppressions", "list"]);
    assert!(
        supp.contains("operator") && supp.contains("asked us"),
        "{supp}"
    );
    assert!(supp.contains("1 person suppressed"), "{supp}");
    human(&setup, &["callbacks", "list"]);

    // A sweep followed to its end: its result, not `{"job": ...}`.
    let swept = human(&setup, &["sweep", "version", "--wait"]);
    assert!(
        swept.contains("version sweep run 1 finished")
            && swept.contains("2 checked")
            && swept.contains("held by the brake"),
        "{swept}"
    );
    let started = human(&setup, &["sweep", "expiry"]);
    assert!(
        started.contains("expiry sweep started") || started.contains("already running"),
        "{started}"
    );
    let forgot = human(&setup, &["people", "forget", "--email", "ann@example.com"]);
    assert!(forgot.contains("1 invitation"), "{forgot}");
    let resumed = human(&setup, &["campaign", "resume", "meters"]);
    assert!(resumed.contains("resumed"), "{resumed}");
    setup.keep_for_log_scan().await;
}

/// Colour only on a terminal, and never with `NO_COLOR`: `status` under a
/// pseudo-terminal (`script`) colours PAUSED; with `NO_COLOR` it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colour_only_on_a_terminal_without_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(smtp.port, dir, Options::default()).await;
    let _daemon = setup.daemon();
    human(
        &setup,
        &["campaign", "pause", "meters", "--reason", "checking colour"],
    );
    let on_a_terminal = |no_color: bool| {
        let cmd = format!(
            "{} status --config {}",
            bin().display(),
            setup.config.display()
        );
        let mut c = Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"]).env_remove("NO_COLOR");
        c.env("TERM", "xterm");
        if no_color {
            c.env("NO_COLOR", "1");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let coloured = on_a_terminal(false);
    assert!(
        coloured.contains("\u{1b}["),
        "a terminal gets colour: {coloured:?}"
    );
    let plain = on_a_terminal(true);
    assert!(plain.contains("PAUSED"), "{plain}");
    assert!(!plain.contains("\u{1b}["), "NO_COLOR: {plain:?}");
    // A pipe: no codes either.
    let piped = human(&setup, &["status"]);
    assert!(piped.contains("PAUSED"), "{piped}");
}

/// `demo --keep-running`: its hint is a command that works as printed (the
/// running executable's absolute path and the config), and it says when
/// the member connects through the link it printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kept_demo_says_when_you_connect_and_its_hint_works() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Proc(
        Command::new(bin())
            .args(["demo", "--keep-running", "--dir"])
            .arg(dir.path().join("demo"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = demo.0.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = demo.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str, pred: &dyn Fn(&str) -> bool| loop {
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(l) if pred(&l) => return l,
            Ok(_) => {}
            Err(e) => panic!("no line {what}: {e}"),
        }
    };
    let link = next("with the link", &|l: &str| {
        l.trim_start().starts_with("http")
    });
    let link = link.trim().to_string();
    let hint = next("with the status hint", &|l: &str| l.starts_with("status: "));
    let words: Vec<&str> = hint["status: ".len()..].split_whitespace().collect();
    assert!(words[0].starts_with('/'), "an absolute path: {hint}");
    let out = Command::new(words[0]).args(&words[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{hint}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Invitations"));

    // The member goes through the journey (as the browser would).
    let origin = link.split("/ftc/").next().unwrap().to_string();
    let r = reqwest::Client::new()
        .post(format!("{origin}/_sandbox/journeys"))
        .json(
            &serde_json::json!({"url": link, "mydexid": "youmember1", "email": "you@example.com"}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let said = next("saying you connected", &|l: &str| {
        l.contains("connected in the browser")
    });
    assert!(said.starts_with("you@example.com connected"), "{said}");
    send_signal(pid, "TERM");
    assert!(wait_exit(&mut demo, Duration::from_secs(60)).is_some());
}
