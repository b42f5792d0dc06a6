//! The digests of callbacks applied (`log`, `s/{digest}`), written in the
//! transaction that applies a callback, so that the same callback again
//! changes nothing (a replay). Each entry also names the kept raw callback
//! (`raw_callbacks.rs`) whose judgement wrote it and what that judgement
//! did. A raw callback is judged again when the daemon stopped after a group
//! commit held its effects but not yet its settled record (it is still
//! pending at the next start), or when an operator replays it: finding its
//! own id, it is known as the first keeping it was and recorded with its
//! first outcome, not as a replay of itself. Another raw callback with the
//! same digest (a retry, a redelivery) is a replay.
//!
//! The value: the milliseconds it was written at (8 bytes, big-endian),
//! then the raw callback's id (8 bytes, big-endian) and its outcome (one
//! byte). An entry of the 8 bytes alone was written before raw ids were
//! kept: it names no raw callback, so whatever carries its digest is a
//! replay, as it was when it was written.

use super::engine::TxTable;
use super::schema::LogKey;
use super::{CallbackOutcome, TxResult, now_ms};

/// One arrival of a callback: the raw record it was kept as and the digest
/// of what it carried (`callback_body::digest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub raw_id: u64,
    pub digest: [u8; 32],
}

/// What a callback's judgement did, as kept with its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstOutcome {
    Connected,
    Updated,
    Unmatched,
    Replay,
    Recorded,
}

impl FirstOutcome {
    /// The status word, as `callbacks list` shows it.
    pub fn word(self) -> &'static str {
        match self {
            FirstOutcome::Connected => "connected",
            FirstOutcome::Updated => "updated",
            FirstOutcome::Unmatched => "unmatched",
            FirstOutcome::Replay => "replay",
            FirstOutcome::Recorded => "recorded",
        }
    }

    /// What `outcome` keeps; None for one that writes no digest.
    fn of(outcome: &CallbackOutcome) -> Option<Self> {
        Some(match outcome {
            CallbackOutcome::Connected { .. } => FirstOutcome::Connected,
            CallbackOutcome::Updated { .. } => FirstOutcome::Updated,
            CallbackOutcome::Unmatched => FirstOutcome::Unmatched,
            CallbackOutcome::Replay => FirstOutcome::Replay,
            CallbackOutcome::Recorded => FirstOutcome::Recorded,
            CallbackOutcome::AppliedBefore(first) => *first,
            CallbackOutcome::Refused(_) => return None,
        })
    }

    fn code(self) -> u8 {
        match self {
            FirstOutcome::Connected => 1,
            FirstOutcome::Updated => 2,
            FirstOutcome::Unmatched => 3,
            FirstOutcome::Replay => 4,
            FirstOutcome::Recorded => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => FirstOutcome::Connected,
            2 => FirstOutcome::Updated,
            3 => FirstOutcome::Unmatched,
            4 => FirstOutcome::Replay,
            5 => FirstOutcome::Recorded,
            _ => return None,
        })
    }
}

fn encode(raw_id: u64, first: FirstOutcome) -> Vec<u8> {
    let mut v = Vec::with_capacity(ENTRY_LEN);
    v.extend_from_slice(&now_ms().to_be_bytes());
    v.extend_from_slice(&raw_id.to_be_bytes());
    v.push(first.code());
    v
}

/// The length of an entry that names its raw callback.
const ENTRY_LEN: usize = 17;

/// The raw callback an entry names and its outcome; None for an entry
/// written before raw ids were kept (or one not understood).
fn decode(v: &[u8]) -> Option<(u64, FirstOutcome)> {
    if v.len() != ENTRY_LEN {
        return None;
    }
    let raw_id = u64::from_be_bytes(v.get(8..16)?.try_into().ok()?);
    Some((raw_id, FirstOutcome::from_code(*v.get(16)?)?))
}

/// Whether `arrival`'s digest was applied before, and if so what to answer
/// now without changing anything: its first outcome when that was this same
/// raw callback, `Replay` when it was another (or an entry that names none).
/// None: never seen, to be applied.
pub(super) fn tx_seen_before(
    log_t: &TxTable<'_>,
    arrival: &Arrival,
) -> TxResult<Option<CallbackOutcome>> {
    let Some(v) = log_t.get(LogKey::Seen(arrival.digest).encode())? else {
        return Ok(None);
    };
    Ok(Some(match decode(&v) {
        Some((raw_id, first)) if raw_id == arrival.raw_id => CallbackOutcome::AppliedBefore(first),
        _ => CallbackOutcome::Replay,
    }))
}

/// Keep `arrival`'s digest with what applying it did (an outcome that
/// writes no digest, a refusal, keeps nothing).
pub(super) fn tx_mark_seen(
    log_t: &TxTable<'_>,
    arrival: &Arrival,
    outcome: &CallbackOutcome,
) -> TxResult<()> {
    if let Some(first) = FirstOutcome::of(outcome) {
        log_t.insert(
            LogKey::Seen(arrival.digest).encode(),
            encode(arrival.raw_id, first),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_old_and_new_read_back() {
        for first in [
            FirstOutcome::Connected,
            FirstOutcome::Updated,
            FirstOutcome::Unmatched,
            FirstOutcome::Replay,
            FirstOutcome::Recorded,
        ] {
            assert_eq!(decode(&encode(77, first)), Some((77, first)));
            assert_eq!(FirstOutcome::from_code(first.code()), Some(first));
        }
        // As written before raw ids were kept: the milliseconds alone.
        assert_eq!(decode(&now_ms().to_be_bytes()), None);
        let mut unknown = encode(77, FirstOutcome::Unmatched);
        unknown[16] = 200;
        assert_eq!(decode(&unknown), None);
        assert_eq!(decode(b""), None);
    }
}
