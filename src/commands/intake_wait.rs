//! `enqueue --wait` and `deliver --wait`: after placing files, ask the
//! running daemon (`GET /intake/verdict`) what it made of each, and print
//! it: rows stored, duplicates, rows rejected with their lines and reasons
//! (`enqueue`'s and `deliver`'s own included). Exit 0 when every row was
//! stored, 1 when any was rejected or a duplicate, 75 when there is no
//! verdict: the daemon is not running, or took the file not in time.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use mydex_connector::config::Settings;
use mydex_connector::domain::VerdictAnswer;

use crate::commands::admin_client::{AdminClient, admin_base};

/// Exit status when the daemon gave no verdict (EX_TEMPFAIL).
pub const NO_VERDICT: u8 = 75;
/// How often the daemon is asked.
const POLL: Duration = Duration::from_millis(250);

/// A file placed for the daemon: as the operator named it, and the name
/// it was placed under.
pub struct Placed {
    pub shown: String,
    pub name: String,
}

/// `--wait`'s options.
#[derive(clap::Args, Debug, Clone)]
pub struct WaitArgs {
    /// Wait for the daemon to take the files in, and print what it made of
    /// them (stored, duplicates, rejected rows with their lines and reasons).
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits for the daemon's verdict.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub wait_timeout: Duration,
    /// With `--wait`: print the verdicts as JSON (an array, one per file).
    #[arg(long)]
    pub json: bool,
}

/// Wait for the verdict on every file of `placed` (in `dir`, for the
/// messages); print them; the exit status.
pub fn wait(settings: &Settings, placed: &[Placed], args: &WaitArgs, dir: &str) -> ExitCode {
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| handle.block_on(wait_async(settings, placed, args, dir)))
}

async fn wait_async(
    settings: &Settings,
    placed: &[Placed],
    args: &WaitArgs,
    dir: &str,
) -> ExitCode {
    let client = match AdminClient::with_timeout(settings, Duration::from_secs(15)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot wait for the daemon's verdict: {e:#}");
            return ExitCode::from(NO_VERDICT);
        }
    };
    let deadline = Instant::now() + args.wait_timeout;
    let mut answers: Vec<Option<VerdictAnswer>> = placed.iter().map(|_| None).collect();
    loop {
        for (p, slot) in placed.iter().zip(answers.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            match ask(&client, &p.name).await {
                Ok(a) if a.state == "done" => *slot = Some(a),
                Ok(_) => {}
                Err(e) => {
                    eprintln!(
                        "no verdict: the daemon does not answer at {} ({e:#}). The files are placed in {dir} and are taken in when it runs; see `rejects list` then.",
                        admin_base(settings)
                    );
                    return ExitCode::from(NO_VERDICT);
                }
            }
        }
        if answers.iter().all(Option::is_some) {
            break;
        }
        if Instant::now() >= deadline {
            let waiting: Vec<&str> = placed
                .iter()
                .zip(&answers)
                .filter(|(_, a)| a.is_none())
                .map(|(p, _)| p.shown.as_str())
                .collect();
            eprintln!(
                "no verdict within {}: the daemon has not taken in {} (placed in {dir}). Is its intake running (`status`, the daemon's log)? They stay placed; see `rejects list` later.",
                humantime::format_duration(args.wait_timeout),
                waiting.join(", ")
            );
            return ExitCode::from(NO_VERDICT);
        }
        tokio::time::sleep(POLL).await;
    }
    let answers: Vec<VerdictAnswer> = answers.into_iter().flatten().collect();
    print(&answers, args.json);
    let bad = answers
        .iter()
        .filter_map(|a| a.verdict.as_ref())
        .any(|v| v.rejected + v.duplicates > 0);
    if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

async fn ask(client: &AdminClient, name: &str) -> anyhow::Result<VerdictAnswer> {
    let doc = client
        .get("/intake/verdict", &[("name", name.to_string())])
        .await?;
    Ok(serde_json::from_value(doc)?)
}

/// `n thing` or `n things`, with thousands separated.
fn count(n: u64, one: &str, many: &str) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out} {}", if n == 1 { one } else { many })
}

fn print(answers: &[VerdictAnswer], json: bool) {
    if json {
        match serde_json::to_string_pretty(answers) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("cannot print the verdicts: {e}"),
        }
        return;
    }
    for a in answers {
        let Some(v) = &a.verdict else { continue };
        let mut parts = vec![count(v.stored, "row stored", "rows stored")];
        if v.held > 0 {
            parts.push(format!("{} held for their member", v.held));
        }
        parts.push(count(v.duplicates, "duplicate", "duplicates"));
        parts.push(format!("{} rejected", v.rejected));
        println!("{}: {}", v.file, parts.join(", "));
        for r in &a.rejects {
            println!("  {}:{}: {}", r.file, r.line, r.reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn counts_read_as_words() {
        assert_eq!(count(1, "row", "rows"), "1 row");
        assert_eq!(count(1234567, "row", "rows"), "1,234,567 rows");
        assert_eq!(count(0, "duplicate", "duplicates"), "0 duplicates");
    }
}
