//! Reading a bounce: an RFC 3464 delivery status notification
//! (`multipart/report; report-type=delivery-status`, as Postfix and Exim
//! write them) or an RFC 5965 complaint (`report-type=feedback-report`),
//! parsed with `mail-parser`. A report is acted on only through what names a
//! mail of ours, checked by the daemon: the VERP token of the address it came
//! back to, the Message-ID of the returned mail (ours carry their `m` token),
//! or the unsubscribe token in the returned headers. The addresses its
//! `Final-Recipient` lines list are counted, never acted on: anyone can write
//! them. What happened: hard (5.x.x failed), soft (delayed, or 4.x.x failed)
//! or a complaint. Anything else is `NotAReport`: never a guess.
//!
//! Memory stays bounded whatever the input: at most `MAX_REPORT_BYTES` are
//! taken, only the first `STRUCTURE_BYTES` are parsed as MIME (mail-parser
//! keeps a record per header and per part, so 4 MiB of one-line headers or
//! empty parts would cost it over 100 MiB), and the blank-line groups of the
//! status part are read one at a time, each dropped before the next.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

/// The largest message read (a DSN quotes the returned message; 4 MiB is
/// plenty for its headers and some of its body).
pub const MAX_REPORT_BYTES: usize = 4 * 1024 * 1024;

/// How much of a message is parsed as MIME: a report's headers, its
/// notification, its status part and the returned headers come first and
/// take a few KiB; the returned body after them is not needed.
pub const STRUCTURE_BYTES: usize = 256 * 1024;

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

/// One report: what may name a mail of ours (unchecked here: the daemon
/// holds the key), what happened, and how many recipients it lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceReport {
    /// A token of ours: `b` from the address it came back to, else `u`
    /// from the returned `List-Unsubscribe`.
    pub token: Option<String>,
    /// The returned mail's Message-ID (ours carry the mail's `m` token).
    pub message_id: Option<String>,
    pub kind: BounceKind,
    /// `550 5.1.1 …`: the Diagnostic-Code, else the Status; one line.
    pub diagnostic: String,
    /// The report's Message-ID (or a digest of it), so a second delivery
    /// of the same report counts once.
    pub report_id: String,
    /// Recipients the report lists as failed or delayed (a complaint: 1).
    /// Only the recipient of the mail it names is acted on.
    pub listed: usize,
}

impl BounceReport {
    /// Whether anything in it may name a mail of ours.
    pub fn names_a_mail(&self) -> bool {
        self.token.is_some() || self.message_id.is_some()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DsnError {
    #[error("the message is {0} bytes; a bounce report is read up to {MAX_REPORT_BYTES} bytes")]
    TooLarge(usize),
    #[error("not a bounce or complaint report: {0}")]
    NotAReport(&'static str),
}

/// Parse one report. `return_path` is `smtp.return_path` (`…{token}…`).
pub fn parse_report(raw: &[u8], return_path: Option<&str>) -> Result<BounceReport, DsnError> {
    if raw.len() > MAX_REPORT_BYTES {
        return Err(DsnError::TooLarge(raw.len()));
    }
    let head = &raw[..raw.len().min(STRUCTURE_BYTES)];
    let msg = MessageParser::default()
        .parse(head)
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
    let found = match report_type.as_str() {
        "delivery-status" | "global-delivery-status" => delivery_status(&msg)?,
        "feedback-report" => complaint(&msg)?,
        _ => {
            return Err(DsnError::NotAReport(
                "report-type is neither delivery-status nor feedback-report",
            ));
        }
    };
    let token = verp_token(&msg, return_path).or_else(|| unsubscribe_token(&msg));
    let message_id = returned_header(&msg, "Message-ID")
        .map(|v| one_line(&v, 300))
        .filter(|v| !v.is_empty());
    Ok(BounceReport {
        token,
        message_id,
        kind: found.kind,
        diagnostic: found.diagnostic,
        report_id: report_id(&msg, raw),
        listed: found.listed,
    })
}

/// What the report's status part says: the first failed or delayed
/// recipient's kind and diagnostic, and how many it lists.
struct Found {
    kind: BounceKind,
    diagnostic: String,
    listed: usize,
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

/// The blank-line separated header groups of a `message/delivery-status`
/// or `message/feedback-report` body, one slice at a time (blank groups
/// skipped): one pass over the body, nothing kept between groups.
struct Groups<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Groups<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.rest.is_empty() {
            let (group, rest) = split_at_blank_line(self.rest);
            self.rest = rest;
            if !group.iter().all(u8::is_ascii_whitespace) {
                return Some(group.trim_ascii_start());
            }
        }
        None
    }
}

/// `text` up to its first blank line (LF or CRLF), and what follows it.
fn split_at_blank_line(text: &[u8]) -> (&[u8], &[u8]) {
    let mut from = 0;
    while let Some(at) = text[from..].iter().position(|&b| b == b'\n') {
        let line_end = from + at + 1;
        let next = &text[line_end..];
        if next.starts_with(b"\n") {
            return (&text[..line_end], &next[1..]);
        }
        if next.starts_with(b"\r\n") {
            return (&text[..line_end], &next[2..]);
        }
        from = line_end;
    }
    (text, &[])
}

fn groups(body: &[u8]) -> Groups<'_> {
    Groups { rest: body }
}

/// One field of a header group, parsed on its own and dropped after.
fn field(group: &[u8], name: &str) -> Option<String> {
    MessageParser::default()
        .parse_headers(group)?
        .header_raw(name)
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

/// A recipient group's kind, or `None` when it did not fail (delivered,
/// relayed, expanded).
fn group_kind(group: &[u8]) -> Option<(BounceKind, String)> {
    let action = field(group, "Action")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let status = field(group, "Status").unwrap_or_default();
    let kind = match (action.as_str(), status.chars().next()) {
        ("failed", Some('4')) => BounceKind::Soft,
        ("failed", _) => BounceKind::Hard,
        ("delayed", _) => BounceKind::Soft,
        _ => return None,
    };
    let diagnostic = field(group, "Diagnostic-Code")
        .map(|d| match d.split_once(';') {
            Some((kind, rest)) if kind.trim().len() < 12 => rest.trim().to_string(),
            _ => d,
        })
        .filter(|d| !d.is_empty())
        .unwrap_or(status);
    Some((kind, diagnostic))
}

fn delivery_status(msg: &Message<'_>) -> Result<Found, DsnError> {
    let part = part_of(
        msg,
        "message",
        &["delivery-status", "global-delivery-status"],
    )
    .ok_or(DsnError::NotAReport("no message/delivery-status part"))?;
    let mut first = None;
    let mut listed = 0;
    // The first group is about the message; the rest one per recipient.
    for g in groups(part.contents()).skip(1) {
        if let Some(found) = group_kind(g) {
            listed += 1;
            first.get_or_insert(found);
        }
    }
    let (kind, diagnostic) = first.ok_or(DsnError::NotAReport(
        "it names no failed or delayed recipient",
    ))?;
    Ok(Found {
        kind,
        diagnostic,
        listed,
    })
}

fn complaint(msg: &Message<'_>) -> Result<Found, DsnError> {
    let part = part_of(msg, "message", &["feedback-report"])
        .ok_or(DsnError::NotAReport("no message/feedback-report part"))?;
    let g = groups(part.contents())
        .next()
        .ok_or(DsnError::NotAReport("an empty feedback report"))?;
    let feedback = field(g, "Feedback-Type").ok_or(DsnError::NotAReport(
        "a feedback report without Feedback-Type",
    ))?;
    Ok(Found {
        kind: BounceKind::Complaint,
        diagnostic: format!("complaint: {feedback}"),
        listed: 1,
    })
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
                && w.is_char_boundary(prefix.len())
                && w.is_char_boundary(w.len() - suffix.len())
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

/// A header of the returned message: its `message/rfc822` part, or its
/// `text/rfc822-headers` part (headers only, as Postfix returns a delay).
fn returned_header(msg: &Message<'_>, name: &str) -> Option<String> {
    msg.parts.iter().find_map(|p| match &p.body {
        PartType::Message(m) => m.header_raw(name).map(str::to_string),
        PartType::Text(t)
            if p.content_type().is_some_and(|c| {
                c.subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("rfc822-headers"))
            }) =>
        {
            MessageParser::default()
                .parse_headers(t.as_bytes())
                .and_then(|h| h.header_raw(name).map(str::to_string))
        }
        _ => None,
    })
}

/// The unsubscribe token in the returned message's `List-Unsubscribe`.
fn unsubscribe_token(msg: &Message<'_>) -> Option<String> {
    let v = returned_header(msg, "List-Unsubscribe")?;
    let at = v.find("/unsubscribe/")?;
    let t: String = v[at + 13..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (t.len() == crate::domain::MAIL_TOKEN_LEN).then(|| t.to_ascii_lowercase())
}

/// The report's Message-ID, else a digest of the whole message.
fn report_id(msg: &Message<'_>, raw: &[u8]) -> String {
    use sha2::Digest;
    let digest = match msg.message_id() {
        Some(id) => sha2::Sha256::digest(id.as_bytes()),
        None => sha2::Sha256::digest(raw),
    };
    hex::encode(&digest[..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RETURN_PATH: &str = "bounces+{token}@example.com";
    const B: &str = "b0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A DSN to `to`, listing `recipients` as failed, with `returned` as
    /// its returned headers.
    fn dsn(to: &str, recipients: &[&str], returned: &str) -> Vec<u8> {
        let mut groups = String::from("Reporting-MTA: dns; mx.example.net\r\n");
        for r in recipients {
            groups.push_str(&format!(
                "\r\nFinal-Recipient: rfc822; {r}\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 unknown\r\n"
            ));
        }
        format!(
            "From: MAILER-DAEMON@mx.example.net\r\nTo: {to}\r\nMessage-ID: <r1@mx.example.net>\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n{groups}\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}\r\n--B--\r\n"
        )
        .into_bytes()
    }

    proptest! {
        #[test]
        fn any_bytes_are_an_error_or_a_report(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_report(&raw, Some(RETURN_PATH));
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

    #[test]
    fn recipients_are_counted_never_named() {
        let many: Vec<String> = (0..1000).map(|i| format!("p{i}@example.org")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let r = parse_report(
            &dsn("postmaster@example.com", &refs, "Subject: hi\r\n"),
            Some(RETURN_PATH),
        )
        .expect("a report");
        assert!(!r.names_a_mail(), "{r:?}");
        assert_eq!(r.listed, 1000);
        assert_eq!(r.kind, BounceKind::Hard);
        assert_eq!(r.diagnostic, "550 5.1.1 unknown");
    }

    #[test]
    fn the_verp_token_and_the_returned_message_id_name_the_mail() {
        let returned = "Message-ID: <m0123.0000000000000001@example.com>\r\nSubject: hi\r\n";
        let r = parse_report(
            &dsn(
                &format!("bounces+{}@Example.com", B.to_uppercase()),
                &["x@example.org", "y@example.org"],
                returned,
            ),
            Some(RETURN_PATH),
        )
        .expect("a report");
        assert_eq!(r.token.as_deref(), Some(B));
        assert_eq!(
            r.message_id.as_deref(),
            Some("<m0123.0000000000000001@example.com>")
        );
        assert_eq!(r.listed, 2);
        // Another return path, or none: the token is not read.
        let r = parse_report(
            &dsn(
                &format!("bounces+{B}@example.com"),
                &["x@example.org"],
                returned,
            ),
            Some("other-{token}@example.com"),
        )
        .expect("a report");
        assert_eq!(r.token, None);
        assert!(r.names_a_mail(), "the Message-ID still may");
    }

    #[test]
    fn blank_line_groups_are_split_in_one_pass() {
        let body = b"\r\n\r\nA: 1\r\nB: 2\r\n\r\n\n\nC: 3\n\nD: 4";
        let got: Vec<&[u8]> = groups(body).collect();
        assert_eq!(
            got,
            vec![&b"A: 1\r\nB: 2\r\n"[..], &b"C: 3\n"[..], &b"D: 4"[..]]
        );
        assert_eq!(groups(b"\n\n\r\n\r\n \n").count(), 0);
    }

    #[test]
    fn a_non_ascii_address_beside_the_return_path_does_not_panic() {
        let r = parse_report(
            &dsn(
                "bounces+é@exämple.com, ü",
                &["x@example.org"],
                "Subject: hi\r\n",
            ),
            Some("bounces+{token}@example.com"),
        );
        assert!(r.is_ok_and(|r| r.token.is_none()));
    }
}
