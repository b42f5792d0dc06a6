//! Reading a bounce: an RFC 3464 delivery status notification
//! (`multipart/report; report-type=delivery-status`, as Postfix and Exim
//! write them) or an RFC 5965 complaint (`report-type=feedback-report`),
//! parsed with `mail-parser`. Each report names whom it is about: the VERP
//! token of our return path it came back to, the unsubscribe token in the
//! returned headers, or else the recipient address; and what happened:
//! hard (5.x.x failed), soft (delayed, or 4.x.x failed) or a complaint.
//! Anything else is `NotAReport`: never a guess.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

/// The largest message read (a DSN quotes the returned message; 4 MiB is
/// plenty for its headers and some of its body).
pub const MAX_REPORT_BYTES: usize = 4 * 1024 * 1024;

/// What happened to the mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceKind {
    Hard,
    Soft,
    Complaint,
}

impl BounceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BounceKind::Hard => "hard",
            BounceKind::Soft => "soft",
            BounceKind::Complaint => "complaint",
        }
    }
}

/// Whom a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BounceTarget {
    /// A token of ours (`b` from the return path, `u` from the returned
    /// headers), checked by the daemon.
    Token(String),
    /// The recipient the MTA names.
    Email(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceReport {
    pub target: BounceTarget,
    pub kind: BounceKind,
    /// `550 5.1.1 …`: the Diagnostic-Code, else the Status; one line.
    pub diagnostic: String,
    /// The report's Message-ID (or a digest of it), so a second delivery
    /// of the same report counts once.
    pub report_id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DsnError {
    #[error("the message is {0} bytes; a bounce report is read up to {MAX_REPORT_BYTES} bytes")]
    TooLarge(usize),
    #[error("not a bounce or complaint report: {0}")]
    NotAReport(&'static str),
}

/// Parse one report. `return_path` is `smtp.return_path` (`…{token}…`).
pub fn parse_report(raw: &[u8], return_path: Option<&str>) -> Result<Vec<BounceReport>, DsnError> {
    if raw.len() > MAX_REPORT_BYTES {
        return Err(DsnError::TooLarge(raw.len()));
    }
    let msg = MessageParser::default()
        .parse(raw)
        .ok_or(DsnError::NotAReport("not a MIME message"))?;
    let ct = msg
        .content_type()
        .ok_or(DsnError::NotAReport("no Content-Type"))?;
    if !ct.ctype().eq_ignore_ascii_case("multipart")
        || !ct
            .subtype()
            .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    {
        return Err(DsnError::NotAReport("not multipart/report"));
    }
    let report_type = ct
        .attribute("report-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let token = verp_token(&msg, return_path).or_else(|| unsubscribe_token(&msg));
    let report_id = report_id(&msg, raw);
    let found = match report_type.as_str() {
        "delivery-status" | "global-delivery-status" => delivery_status(&msg)?,
        "feedback-report" => complaint(&msg)?,
        _ => {
            return Err(DsnError::NotAReport(
                "report-type is neither delivery-status nor feedback-report",
            ));
        }
    };
    let reports: Vec<BounceReport> = found
        .into_iter()
        .filter_map(|(recipient, kind, diagnostic)| {
            let target = match (&token, recipient) {
                (Some(t), _) => BounceTarget::Token(t.clone()),
                (None, Some(r)) => BounceTarget::Email(r),
                (None, None) => return None,
            };
            Some(BounceReport {
                target,
                kind,
                diagnostic,
                report_id: report_id.clone(),
            })
        })
        .collect();
    if reports.is_empty() {
        return Err(DsnError::NotAReport(
            "it names no failed or delayed recipient of ours",
        ));
    }
    // A VERP token names one mail: one report for it.
    if token.is_some() {
        return Ok(reports.into_iter().take(1).collect());
    }
    Ok(reports)
}

/// The first part of `msg` whose type is `ctype/subtype`.
fn part_of<'a>(
    msg: &'a Message<'a>,
    ctype: &str,
    subtypes: &[&str],
) -> Option<&'a mail_parser::MessagePart<'a>> {
    msg.parts.iter().find(|p| {
        p.content_type().is_some_and(|c| {
            c.ctype().eq_ignore_ascii_case(ctype)
                && c.subtype()
                    .is_some_and(|s| subtypes.iter().any(|t| s.eq_ignore_ascii_case(t)))
        })
    })
}

/// Blank-line separated header groups of a `message/delivery-status` or
/// `message/feedback-report` body, each parsed as headers.
fn groups(body: &[u8]) -> Vec<Message<'_>> {
    let text = body;
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < text.len() {
        let blank = text[i..].starts_with(b"\r\n\r\n") || text[i..].starts_with(b"\n\n");
        if blank {
            let end = i;
            if let Some(m) = parse_group(&text[start..end]) {
                out.push(m);
            }
            i += if text[i..].starts_with(b"\r\n\r\n") {
                4
            } else {
                2
            };
            start = i;
        } else {
            i += 1;
        }
    }
    if start < text.len()
        && let Some(m) = parse_group(&text[start..])
    {
        out.push(m);
    }
    out
}

fn parse_group(g: &[u8]) -> Option<Message<'_>> {
    if g.iter().all(|b| b.is_ascii_whitespace()) {
        return None;
    }
    MessageParser::default().parse_headers(g)
}

fn field(m: &Message<'_>, name: &str) -> Option<String> {
    m.header_raw(name)
        .map(|v| one_line(v, 300))
        .filter(|v| !v.is_empty())
}

/// Control characters dropped, whitespace folded, at most `max` characters.
fn one_line(v: &str, max: usize) -> String {
    v.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(max)
        .collect()
}

/// `rfc822; a@b` → `a@b`.
fn address(v: &str) -> Option<String> {
    let addr = v.split_once(';').map(|(_, a)| a).unwrap_or(v).trim();
    let addr = addr.trim_start_matches('<').trim_end_matches('>');
    (addr.contains('@') && !addr.contains(char::is_whitespace)).then(|| addr.to_string())
}

type Found = Vec<(Option<String>, BounceKind, String)>;

fn delivery_status(msg: &Message<'_>) -> Result<Found, DsnError> {
    let part = part_of(
        msg,
        "message",
        &["delivery-status", "global-delivery-status"],
    )
    .ok_or(DsnError::NotAReport("no message/delivery-status part"))?;
    let mut found = Vec::new();
    // The first group is about the message; the rest one per recipient.
    for g in groups(part.contents()).iter().skip(1) {
        let action = field(g, "Action").unwrap_or_default().to_ascii_lowercase();
        let status = field(g, "Status").unwrap_or_default();
        let kind = match (action.as_str(), status.chars().next()) {
            ("failed", Some('4')) => BounceKind::Soft,
            ("failed", _) => BounceKind::Hard,
            ("delayed", _) => BounceKind::Soft,
            _ => continue,
        };
        let diagnostic = field(g, "Diagnostic-Code")
            .map(|d| match d.split_once(';') {
                Some((kind, rest)) if kind.trim().len() < 12 => rest.trim().to_string(),
                _ => d,
            })
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| status.clone());
        let recipient = field(g, "Final-Recipient")
            .or_else(|| field(g, "Original-Recipient"))
            .and_then(|r| address(&r))
            .or_else(|| msg.header_raw("X-Failed-Recipients").and_then(address));
        found.push((recipient, kind, diagnostic));
    }
    Ok(found)
}

fn complaint(msg: &Message<'_>) -> Result<Found, DsnError> {
    let part = part_of(msg, "message", &["feedback-report"])
        .ok_or(DsnError::NotAReport("no message/feedback-report part"))?;
    let groups = groups(part.contents());
    let g = groups
        .first()
        .ok_or(DsnError::NotAReport("an empty feedback report"))?;
    let feedback = field(g, "Feedback-Type").ok_or(DsnError::NotAReport(
        "a feedback report without Feedback-Type",
    ))?;
    let recipient = field(g, "Original-Rcpt-To").and_then(|r| address(&r));
    Ok(vec![(
        recipient,
        BounceKind::Complaint,
        format!("complaint: {feedback}"),
    )])
}

/// The token in the address the report came back to, by `return_path`.
fn verp_token(msg: &Message<'_>, return_path: Option<&str>) -> Option<String> {
    let (prefix, suffix) = return_path?.split_once("{token}")?;
    for name in ["Delivered-To", "X-Original-To", "Envelope-To", "To"] {
        let Some(v) = msg.header_raw(name) else {
            continue;
        };
        for word in v.split([',', ' ', '\t', '\r', '\n']) {
            let w = word.trim().trim_start_matches('<').trim_end_matches('>');
            if w.len() > prefix.len() + suffix.len()
                && w[..prefix.len()].eq_ignore_ascii_case(prefix)
                && w[w.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            {
                let t = &w[prefix.len()..w.len() - suffix.len()];
                if t.len() == crate::domain::MAIL_TOKEN_LEN
                    && t.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    return Some(t.to_ascii_lowercase());
                }
            }
        }
    }
    None
}

/// The unsubscribe token in the returned message's `List-Unsubscribe`.
fn unsubscribe_token(msg: &Message<'_>) -> Option<String> {
    for p in &msg.parts {
        let value = match &p.body {
            PartType::Message(m) => m.header_raw("List-Unsubscribe").map(str::to_string),
            PartType::Text(t)
                if p.content_type().is_some_and(|c| {
                    c.subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))
                }) =>
            {
                MessageParser::default()
                    .parse_headers(t.as_bytes())
                    .and_then(|h| h.header_raw("List-Unsubscribe").map(str::to_string))
            }
            _ => None,
        };
        if let Some(v) = value
            && let Some(at) = v.find("/unsubscribe/")
        {
            let t: String = v[at + 13..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if t.len() == crate::domain::MAIL_TOKEN_LEN {
                return Some(t.to_ascii_lowercase());
            }
        }
    }
    None
}

/// The report's Message-ID, else a digest of the whole message.
fn report_id(msg: &Message<'_>, raw: &[u8]) -> String {
    use sha2::Digest;
    let basis = match msg.message_id() {
        Some(id) => id.as_bytes().to_vec(),
        None => raw.to_vec(),
    };
    hex::encode(&sha2::Sha256::digest(&basis)[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_are_an_error_or_a_report(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_report(&raw, Some("bounces+{token}@example.com"));
        }
    }

    #[test]
    fn plain_mail_and_oversize_are_not_reports() {
        let plain = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\nContent-Type: text/plain\r\n\r\nhello\r\n";
        assert_eq!(
            parse_report(plain, None),
            Err(DsnError::NotAReport("not multipart/report"))
        );
        let big = vec![b'a'; MAX_REPORT_BYTES + 1];
        assert_eq!(
            parse_report(&big, None),
            Err(DsnError::TooLarge(MAX_REPORT_BYTES + 1))
        );
    }
}
