//! `mydex-connector bounce --config PATH [FILE]`: one delivery status
//! notification (or complaint report) from FILE or standard input, as an
//! MTA's pipe transport or a mailbox script delivers it, parsed here and
//! sent to the running daemon's `POST /bounces`; or an unsubscribe mail
//! sent to `smtp.unsubscribe_mailto` (the person named by the token of its
//! Subject, never by its From). A report is acted on only when it names a
//! mail of ours (VERP token, returned Message-ID or unsubscribe token, the
//! daemon checks), and then only on that mail's recipient; else it is
//! `ignored` (counted by the daemon). Exit codes for the MTA:
//! 0 applied, 65 (EX_DATAERR) ignored, not a report of ours or too large
//! (the MTA returns it to the postmaster rather than retrying), 75
//! (EX_TEMPFAIL) the daemon is unreachable or failing (the MTA tries again
//! later).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::commands::config_path::ConfigPath;
use mydex_connector::admin_api::bounces::{BounceRecorded, UnsubscribedByMail};
use mydex_connector::config::Settings;
use mydex_connector::notify::bounce::{BounceReport, DsnError, MAX_REPORT_BYTES, parse_report};
use mydex_connector::notify::unsubscribe_mail::unsubscribe_request;

const EX_DATAERR: u8 = 65;
const EX_TEMPFAIL: u8 = 75;

#[derive(clap::Args, Debug)]
pub struct BounceArgs {
    /// The message (default: standard input).
    file: Option<PathBuf>,
    /// Print the daemon's JSON answer instead of a sentence.
    #[arg(long)]
    json: bool,
}

/// At most one byte over the cap, into a buffer allocated once.
fn read_input(file: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    let limit = MAX_REPORT_BYTES as u64 + 1;
    let mut raw = Vec::with_capacity(MAX_REPORT_BYTES + 64);
    match file {
        Some(p) => std::fs::File::open(p)
            .with_context(|| format!("cannot open {}", p.display()))?
            .take(limit)
            .read_to_end(&mut raw)?,
        None => std::io::stdin().lock().take(limit).read_to_end(&mut raw)?,
    };
    Ok(raw)
}

pub async fn run(args: BounceArgs, config: &ConfigPath) -> anyhow::Result<ExitCode> {
    let settings = config.load()?;
    let raw = read_input(args.file.as_ref())?;
    if raw.len() > MAX_REPORT_BYTES {
        // Drain the rest so the MTA's pipe does not fail on a closed reader.
        if args.file.is_none() {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        }
        eprintln!(
            "mydex-connector bounce: the message is over {MAX_REPORT_BYTES} bytes; not a bounce report we read; nothing changed"
        );
        return Ok(ExitCode::from(EX_DATAERR));
    }
    let report = match parse_report(&raw, settings.smtp.return_path.as_deref()) {
        Ok(r) => r,
        Err(DsnError::NotAReport(why)) if settings.smtp.unsubscribe_mailto.is_some() => {
            let mailto = settings.smtp.unsubscribe_mailto.as_deref().unwrap_or("");
            return match unsubscribe_request(&raw, mailto) {
                Ok(token) => unsubscribe(&settings, &token, args.json).await,
                Err(e) => {
                    eprintln!(
                        "mydex-connector bounce: not a bounce or complaint report ({why}), nor an unsubscribe mail of ours: {e}; nothing changed"
                    );
                    Ok(ExitCode::from(EX_DATAERR))
                }
            };
        }
        Err(e) => {
            eprintln!("mydex-connector bounce: {e}; nothing changed");
            return Ok(ExitCode::from(EX_DATAERR));
        }
    };
    drop(raw);
    send_report(&settings, &report, args.json).await
}

/// What recording the bounce did, in words (or the daemon's JSON).
fn recorded(answer: serde_json::Value, json: bool) -> String {
    let typed = serde_json::from_value::<BounceRecorded>(answer.clone());
    match typed {
        _ if json => answer.to_string(),
        Ok(BounceRecorded::Duplicate { person }) => {
            format!("duplicate: this report was seen before (person {person}); nothing changed")
        }
        Ok(BounceRecorded::SoftNoted { count, max, person }) => {
            format!("person {person}: soft bounce {count} of {max} before they are suppressed")
        }
        Ok(BounceRecorded::Suppressed {
            reason,
            failed,
            person,
        }) => format!(
            "person {person} suppressed ({reason}); {}",
            super::human::counted(
                failed as u64,
                "open invitation failed",
                "open invitations failed"
            )
        ),
        Err(_) => answer.to_string(),
    }
}

/// Why a report is ignored.
const NOT_OURS: &str = "the report names no mail of ours (no VERP token, Message-ID or unsubscribe token of a mail we sent)";

/// One line for the recipients a report lists beyond the mail it names.
fn listed(n: usize) -> String {
    match n {
        1 => "the 1 recipient it lists was not acted on".into(),
        n => format!("the {n} recipients it lists were not acted on"),
    }
}

/// Send a parsed report to the daemon: applied to the recipient of the
/// mail it names, or ignored (a report naming no mail is sent too, so the
/// daemon counts it).
async fn send_report(
    settings: &Settings,
    r: &BounceReport,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let http = crate::commands::admin_client::loopback_client(Duration::from_secs(60))?;
    let mut body = serde_json::json!({
        "type": r.kind.as_str(),
        "diagnostic": r.diagnostic,
        "report_id": r.report_id,
    });
    if let Some(t) = &r.token {
        body["token"] = t.clone().into();
    }
    if let Some(m) = &r.message_id {
        body["message_id"] = m.clone().into();
    }
    let (status, answer) = match post_bounce(&http, settings, &body).await {
        Ok(a) => a,
        // Nothing of ours to apply later: not worth the MTA's retries.
        Err(_) if !r.names_a_mail() => {
            eprintln!(
                "mydex-connector bounce: ignored: {NOT_OURS}; {}; nothing changed (not counted: the daemon did not answer)",
                listed(r.listed)
            );
            return Ok(ExitCode::from(EX_DATAERR));
        }
        Err(code) => return Ok(code),
    };
    let why = answer["error"].as_str().unwrap_or("(no message)");
    if status.is_success() {
        println!("{} bounce: {}", r.kind.as_str(), recorded(answer, json));
        if r.listed > 1 {
            println!(
                "the report lists {} recipients: only the recipient of the mail it names was acted on",
                r.listed
            );
        }
        Ok(ExitCode::SUCCESS)
    } else if status.is_server_error() {
        eprintln!("mydex-connector bounce: the daemon answered {status}: {why}; try again later");
        Ok(ExitCode::from(EX_TEMPFAIL))
    } else if answer["result"] == "ignored" {
        eprintln!(
            "mydex-connector bounce: ignored: {NOT_OURS}; {}; nothing changed",
            listed(r.listed)
        );
        Ok(ExitCode::from(EX_DATAERR))
    } else {
        eprintln!("mydex-connector bounce: the daemon answered {status}: {why}; nothing changed");
        Ok(ExitCode::from(EX_DATAERR))
    }
}

/// Send an unsubscribe mail's token to the daemon (`POST /bounces`,
/// `"type": "unsubscribe"`); the same exit codes as a report.
async fn unsubscribe(settings: &Settings, token: &str, json: bool) -> anyhow::Result<ExitCode> {
    let http = crate::commands::admin_client::loopback_client(Duration::from_secs(60))?;
    let body = serde_json::json!({"type": "unsubscribe", "token": token});
    let (status, answer) = match post_bounce(&http, settings, &body).await {
        Ok(a) => a,
        Err(code) => return Ok(code),
    };
    if status.is_success() {
        let said = match serde_json::from_value::<UnsubscribedByMail>(answer.clone()) {
            Ok(u) if !json => format!("invitation {} unsubscribed", u.invitation),
            _ => answer.to_string(),
        };
        println!("unsubscribe by mail: {said}");
        return Ok(ExitCode::SUCCESS);
    }
    let why = answer["error"].as_str().unwrap_or("(no message)");
    if status.is_server_error() {
        eprintln!("mydex-connector bounce: the daemon answered {status}: {why}; try again later");
    } else if answer["result"] == "ignored" {
        eprintln!(
            "mydex-connector bounce: ignored: the unsubscribe mail's token names no mail of ours; nothing changed"
        );
    } else if why.contains("nothing changed") {
        eprintln!("mydex-connector bounce: the daemon answered {status}: {why}");
    } else {
        eprintln!("mydex-connector bounce: the daemon answered {status}: {why}; nothing changed");
    }
    Ok(ExitCode::from(if status.is_server_error() {
        EX_TEMPFAIL
    } else {
        EX_DATAERR
    }))
}

/// POST one body to the daemon's `/bounces` (bearer token when configured):
/// its status and answer, or `EX_TEMPFAIL` when the daemon cannot be
/// reached (the MTA keeps the message and tries again).
async fn post_bounce(
    http: &reqwest::Client,
    settings: &Settings,
    body: &serde_json::Value,
) -> Result<(reqwest::StatusCode, serde_json::Value), ExitCode> {
    let url = format!("{}/bounces", super::admin_client::admin_base(settings));
    let mut req = http.post(&url).json(body);
    if let Some(t) = &settings.admin.token {
        req = req.bearer_auth(t.expose_secret());
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            Ok((status, resp.json().await.unwrap_or_default()))
        }
        Err(e) => {
            eprintln!(
                "mydex-connector bounce: cannot reach the daemon at {url} ({e}); try again later"
            );
            Err(ExitCode::from(EX_TEMPFAIL))
        }
    }
}
