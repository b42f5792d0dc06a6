//! A message as a source of reading rows (a broker's message on
//! `{prefix}.readings`): one JSON object, or JSON Lines, each row checked
//! by the readings intake's own row reader (`ReadingRows`) and placed by
//! its own batch step, so the exactly-once key (member, dataset,
//! external_id) holds as it does for files: a message delivered again
//! after a crash places nothing twice. Rejected rows are kept in the store
//! with the message named as their file; everything is durable when this
//! returns, so the caller may acknowledge the message then.

use super::message_source::MAX_MESSAGE_BYTES;
use super::reader::Format;
use super::readings::{ReadingRows, ReadingsError, ReadingsReport, RowRejected, store_rows};
use super::reject_sink::RejectSink;
use crate::config::DeliverySettings;
use crate::domain::{Reading, Rejection};
use crate::store::{ReadingPlacer, Store};

/// What became of one message's readings.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadingsOutcome {
    pub report: ReadingsReport,
    /// Every row not stored (duplicates included), with its line and why.
    pub rejected: Vec<Rejection>,
}

/// The rows of a message: a whole JSON object is one row on line 1;
/// anything else is read as JSON Lines.
fn message_readings(payload: &[u8]) -> Vec<(u64, Result<Reading, RowRejected>)> {
    if payload.len() > MAX_MESSAGE_BYTES {
        let why = format!(
            "message of {} bytes is over the limit of {MAX_MESSAGE_BYTES} bytes; not read",
            payload.len()
        );
        return vec![(1, Err(RowRejected::Io(why)))];
    }
    if let Ok(text) = std::str::from_utf8(payload)
        && let Ok(v @ serde_json::Value::Object(_)) = super::json_row::parse_row(text.trim())
    {
        return vec![(1, Reading::from_json(&v).map_err(RowRejected::from))];
    }
    match ReadingRows::new(payload, Format::JsonLines) {
        Err(why) => vec![(1, Err(why))],
        Ok(rows) => rows
            .map(|row| row.unwrap_or_else(|e| (0, Err(RowRejected::Io(e.to_string())))))
            .collect(),
    }
}

/// Store the reading rows of one message; `name` names it (the file of
/// its rejects).
pub async fn take_readings(
    store: &Store,
    settings: &DeliverySettings,
    name: &str,
    payload: &[u8],
) -> Result<ReadingsOutcome, ReadingsError> {
    let mut rejects = RejectSink::for_message(name, name);
    let mut report = ReadingsReport::default();
    let mut pending = Vec::new();
    let mut last = 0;
    for (line, row) in message_readings(payload) {
        last = last.max(line);
        match row {
            Ok(r) => pending.push((line, r)),
            Err(why) => {
                report.rejected += 1;
                rejects.write(line, &why.to_string())?;
            }
        }
    }
    let mut placer = ReadingPlacer::default();
    let with = (store, &mut placer);
    store_rows(
        with,
        settings,
        (name, last),
        &mut pending,
        &mut report,
        &mut rejects,
    )
    .await?;
    let rejected = rejects.pending().to_vec();
    rejects.keep(store).await?;
    store.clear_readings_progress(name).await?;
    store.flush().await?;
    Ok(ReadingsOutcome { report, rejected })
}

#[cfg(test)]
mod tests {
    use super::message_readings;

    #[test]
    fn one_object_or_json_lines() {
        let one = message_readings(
            b"{\n \"connection_id\": \"c1\", \"external_id\": \"r1\", \"kwh\": \"1\"\n}",
        );
        assert_eq!(one.len(), 1);
        assert!(one[0].1.is_ok(), "{:?}", one[0].1);
        let many = message_readings(
            b"{\"connection_id\":\"c1\",\"external_id\":\"r1\",\"kwh\":\"1\"}\nnot json\n",
        );
        assert_eq!(many.len(), 2);
        assert!(many[0].1.is_ok());
        assert_eq!(many[1].0, 2);
        assert!(many[1].1.is_err());
        let big = vec![b' '; super::MAX_MESSAGE_BYTES + 1];
        assert!(message_readings(&big)[0].1.is_err());
    }
}
