//! A message as a source of invitee rows (a broker's message on
//! `{prefix}.invitees`): one JSON object, or JSON Lines, each row checked
//! exactly as a queue file's (`Rows`, `to_new`) and stored through the same
//! batch step; rejected rows kept in the store with the message named as
//! their file and their line within it. Everything is durable when this
//! returns, so the caller may acknowledge the message then; the rejected
//! rows come back too, for the caller to pass on (the broker's
//! `{prefix}.rejects`).

use super::reject_sink::RejectSink;
use super::{FileError, FileReport, Format, IngestError, RowError, Rows, to_new};
use crate::config::Settings;
use crate::domain::{Invitee, Rejection};
use crate::store::{NewInvitation, Store};

/// What became of one message's rows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MessageOutcome {
    pub stored: u64,
    pub duplicates: u64,
    /// Every row not stored (duplicates included), with its line and why.
    pub rejected: Vec<Rejection>,
}

/// The largest message read as rows; a larger one is refused whole.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Why a row of a message was refused.
#[derive(Debug, thiserror::Error)]
pub enum MessageRowError {
    #[error(transparent)]
    Row(#[from] RowError),
    /// The message could not be read as rows at all.
    #[error(transparent)]
    Input(#[from] FileError),
    /// Over [`MAX_MESSAGE_BYTES`]: not read at all.
    #[error("message of {0} bytes is over the limit of {MAX_MESSAGE_BYTES} bytes; not read")]
    TooLarge(usize),
}

/// The rows of a message: a whole JSON object (pretty-printed or not) is
/// one row on line 1; anything else is read as JSON Lines.
fn message_rows(payload: &[u8]) -> Vec<(u64, Result<Invitee, MessageRowError>)> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return vec![(1, Err(MessageRowError::TooLarge(payload.len())))];
    }
    if let Ok(text) = std::str::from_utf8(payload)
        && let Ok(serde_json::Value::Object(map)) = super::json_row::parse_row(text.trim())
    {
        let row = Invitee::from_json(map).map_err(|e| RowError::Invitee(e).into());
        return vec![(1, row)];
    }
    match Rows::new(payload, Format::JsonLines) {
        Err(e) => vec![(1, Err(e.into()))],
        Ok(rows) => rows
            .map(|row| match row {
                Ok(r) => (r.line, r.result.map_err(MessageRowError::from)),
                Err(e) => (0, Err(e.into())),
            })
            .collect(),
    }
}

/// Store the invitee rows of one message; `name` names it (the file of its
/// rejects: e.g. `nats:mydex.invitees#42`).
pub async fn take_invitees(
    store: &Store,
    settings: &Settings,
    name: &str,
    payload: &[u8],
) -> Result<MessageOutcome, IngestError> {
    let mut rejects = RejectSink::for_message(name, name);
    let mut report = FileReport::default();
    let mut batch: Vec<(u64, NewInvitation)> = Vec::new();
    for (line, row) in message_rows(payload) {
        match row.and_then(|inv| to_new(settings, inv).map_err(MessageRowError::from)) {
            Ok(new) => batch.push((line, new)),
            Err(reason) => rejects.write(line, &reason.to_string())?,
        }
    }
    super::store_batch(store, name, &mut batch, None, &mut report, &mut rejects).await?;
    let rejected = rejects.pending().to_vec();
    rejects.keep(store).await?;
    store.flush().await?;
    Ok(MessageOutcome {
        stored: report.stored,
        duplicates: report.duplicates,
        rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::message_rows;

    #[test]
    fn one_object_or_json_lines() {
        let one = message_rows(b"{\n  \"email\": \"ann@example.com\"\n}\n");
        assert_eq!(one.len(), 1);
        assert!(one[0].1.is_ok());
        let many = message_rows(b"{\"email\":\"a@example.com\"}\n{\"name\":\"x\"}\nnot json\n");
        assert_eq!(many.len(), 3);
        assert!(many[0].1.is_ok());
        assert_eq!(many[1].0, 2);
        let why = |i: usize| many[i].1.as_ref().unwrap_err().to_string();
        assert!(why(1).contains("email"), "{}", why(1));
        assert!(why(2).contains("JSON"), "{}", why(2));
        let big = vec![b' '; super::MAX_MESSAGE_BYTES + 1];
        let too_large = message_rows(&big);
        assert!(matches!(
            too_large[0].1,
            Err(super::MessageRowError::TooLarge(_))
        ));
    }
}
