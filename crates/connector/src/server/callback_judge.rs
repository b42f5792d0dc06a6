//! Judging a callback already kept as it arrived (`store::RawCallback`):
//! parse it, apply it as a callback of its kind, and record on its raw
//! record what became of it — applied, or quarantined with the reason. The
//! callback endpoint and an operator's replay share this, so a replay after
//! an upgrade or a config fix runs exactly what a fresh callback would.

use secrecy::ExposeSecret;

use crate::mydex::callback_body::{self, Callback};
use crate::store::{CallbackOutcome, Event, RawOutcome, Store, StoreError};

/// What judging a callback came to.
#[derive(Debug)]
pub enum Verdict {
    Applied {
        kind: &'static str,
        outcome: CallbackOutcome,
        linking_token: Option<String>,
        connection_id: Option<String>,
        /// A notification's body (without any key), to pass on.
        notification: Option<serde_json::Value>,
    },
    Quarantined {
        reason: String,
    },
}

/// The words of an outcome, as answered and recorded.
pub fn status_word(outcome: &CallbackOutcome) -> &'static str {
    match outcome {
        CallbackOutcome::Connected { .. } => "connected",
        CallbackOutcome::Updated { .. } => "updated",
        CallbackOutcome::Unmatched => "unmatched",
        CallbackOutcome::Replay => "replay",
        CallbackOutcome::Recorded => "recorded",
        CallbackOutcome::Refused(_) => "quarantined",
    }
}

/// Parse and apply raw callback `id`, and settle its record. Blocking (the store).
/// A store error leaves the record pending (the caller answers 503).
pub fn judge(
    store: &Store,
    nid: &str,
    current_version: u32,
    id: u64,
    method: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Verdict, StoreError> {
    let is_put = method.eq_ignore_ascii_case("PUT");
    // A parser bug must not lose the callback: a panic is a reason too.
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        callback_body::parse_request(content_type, body, is_put, nid)
    }));
    let (cb, redacted) = match parsed {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return quarantine(store, id, None, e.to_string()),
        Err(_) => {
            return quarantine(
                store,
                id,
                None,
                "the callback parser failed on this body (a bug in the connector)".into(),
            );
        }
    };
    let kind = kind_of(&cb);
    let (outcome, linking_token, connection_id) =
        apply(store, &cb, &redacted, is_put, current_version)?;
    // Authenticated, parsed, and still not ours to apply (a linking token
    // used before, a key outside our journeys): kept, quarantined.
    if let CallbackOutcome::Refused(why) = &outcome {
        return quarantine(store, id, Some(kind), why.to_string());
    }
    store.settle_raw(
        id,
        Some(kind),
        &RawOutcome::Applied {
            status: status_word(&outcome).into(),
        },
    )?;
    let notification =
        (kind == "notification" && outcome == CallbackOutcome::Recorded).then_some(redacted);
    Ok(Verdict::Applied {
        kind,
        outcome,
        linking_token,
        connection_id,
        notification,
    })
}

/// The kind of a callback, as counted and recorded.
fn kind_of(cb: &Callback) -> &'static str {
    match cb {
        Callback::Connect(_) => "ftc",
        Callback::Update(_) => "update",
        Callback::Event(Event::Identify { .. }) => "identify",
        Callback::Event(Event::Notification { .. }) => "notification",
    }
}

/// Apply a parsed callback as its kind: what came of it, with the
/// linking_token and connection_id it named.
fn apply(
    store: &Store,
    cb: &Callback,
    redacted: &serde_json::Value,
    is_put: bool,
    current_version: u32,
) -> Result<(CallbackOutcome, Option<String>, Option<String>), StoreError> {
    let method_s = if is_put { "PUT" } else { "POST" };
    Ok(match cb {
        Callback::Connect(c) | Callback::Update(c) => {
            let digest = callback_body::digest(
                method_s,
                redacted,
                c.key.as_ref().map(|k| k.expose_secret()),
            );
            let out = store.apply_credentials(c, is_put, &digest, current_version)?;
            (out, c.linking_token.clone(), Some(c.connection_id.clone()))
        }
        Callback::Event(Event::Identify {
            mydexid,
            linking_token,
        }) => {
            let digest = callback_body::digest(method_s, redacted, None);
            let out = match crate::domain::MydexId::from_mydex(mydexid) {
                Ok(m) => store.apply_identify(&m, linking_token.as_deref(), redacted, &digest)?,
                Err(_) => {
                    let ev = Event::Identify {
                        mydexid: mydexid.clone(),
                        linking_token: linking_token.clone(),
                    };
                    store.record_event(&ev, redacted, &digest)?
                }
            };
            (out, linking_token.clone(), None)
        }
        Callback::Event(ev) => {
            let digest = callback_body::digest(method_s, redacted, None);
            (store.record_event(ev, redacted, &digest)?, None, None)
        }
    })
}

/// Settle `id` as quarantined, and say so in the log (id and reason only:
/// never the body, which may hold a member key).
pub fn quarantine(
    store: &Store,
    id: u64,
    kind: Option<&str>,
    reason: String,
) -> Result<Verdict, StoreError> {
    // A reason may quote a bit of the body: no key in it either.
    let reason = super::callback_redact::redact_text(&reason);
    store.settle_raw(
        id,
        kind,
        &RawOutcome::Quarantined {
            reason: reason.clone(),
        },
    )?;
    tracing::warn!(callback = id, reason = %reason, "callback quarantined: kept without effect; `mydex-connector callbacks show {id}` shows it, `callbacks replay` runs it again");
    Ok(Verdict::Quarantined { reason })
}

/// Judge the callbacks kept but never judged: the daemon stopped (a crash,
/// a kill) between keeping one and answering it. Run before the callback
/// endpoint opens; how many there were.
pub fn judge_pending(store: &Store, nid: &str, current_version: u32) -> Result<usize, StoreError> {
    let pending = store.pending_raw()?;
    for id in &pending {
        // A stop between writing the pending mark and the record is not
        // possible (the record comes first); a missing one is skipped.
        let Ok(rec) = store.raw_callback(*id) else {
            continue;
        };
        let body = store.raw_body(&rec)?;
        let verdict = judge(
            store,
            nid,
            current_version,
            *id,
            &rec.method,
            rec.content_type.as_deref(),
            &body,
        )?;
        if let Verdict::Applied { kind, outcome, .. } = verdict {
            tracing::info!(
                callback = id,
                kind,
                status = status_word(&outcome),
                "callback kept before a stop, judged at start"
            );
        }
    }
    if !pending.is_empty() {
        store.flush_blocking()?;
    }
    Ok(pending.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RawFilter;
    use secrecy::SecretBox;

    #[test]
    fn pending_callbacks_are_judged_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &SecretBox::new(Box::new([9u8; 32]))).unwrap();
        let ftc = br#"{"uid":1001,"mydexid":"RBFish123","key":"k-1","connection_id":"1001-45678","fields":{},"linking_token":"lt_nothing"}"#;
        let a = s.keep_raw("POST", Some("application/json"), ftc).unwrap();
        let b = s
            .keep_raw("POST", Some("application/json"), b"\x00\x01")
            .unwrap();
        assert_eq!(judge_pending(&s, "45678", 1).unwrap(), 2);
        assert_eq!(
            s.raw_callback(a).unwrap().outcome,
            RawOutcome::Applied {
                status: "unmatched".into()
            }
        );
        assert!(matches!(
            s.raw_callback(b).unwrap().outcome,
            RawOutcome::Quarantined { .. }
        ));
        assert_eq!(s.counts(1).unwrap().unmatched_callbacks, 1);
        assert_eq!(judge_pending(&s, "45678", 1).unwrap(), 0);
        // The same body again is a replay: nothing changes.
        let c = s.keep_raw("POST", Some("application/json"), ftc).unwrap();
        let v = judge(&s, "45678", 1, c, "POST", Some("application/json"), ftc).unwrap();
        assert!(matches!(
            v,
            Verdict::Applied {
                outcome: CallbackOutcome::Replay,
                ..
            }
        ));
        assert_eq!(s.counts(1).unwrap().unmatched_callbacks, 1);
        let q = s
            .raw_callbacks(
                RawFilter {
                    quarantined_only: true,
                },
                None,
                10,
            )
            .unwrap();
        assert_eq!(q.len(), 1);
    }
}
