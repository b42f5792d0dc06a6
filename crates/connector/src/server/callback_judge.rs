//! Judging a callback already kept as it arrived (`store::RawCallback`):
//! parse it, apply it as a callback of its kind, and record on its raw
//! record what became of it — applied, or quarantined with the reason. The
//! callback endpoint and an operator's replay share this, so a replay after
//! an upgrade or a config fix runs exactly what a fresh callback would.

use secrecy::ExposeSecret;

use crate::mydex::callback_body::{self, Callback};
use crate::store::{Arrival, CallbackOutcome, Event, RawOutcome, Store, StoreError};

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
        CallbackOutcome::AppliedBefore(first) => first.word(),
        CallbackOutcome::Refused(_) => "quarantined",
    }
}

/// Parse and apply raw callback `id`, and settle its record.
/// A store error leaves the record pending (the caller answers 503).
pub async fn judge(
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
        Ok(Err(e)) => return quarantine(store, id, None, e.to_string()).await,
        Err(_) => {
            let why = "the callback parser failed on this body (a bug in the connector)";
            return quarantine(store, id, None, why.into()).await;
        }
    };
    let kind = kind_of(&cb);
    let (outcome, linking_token, connection_id) =
        apply(store, id, cb, &redacted, is_put, current_version).await?;
    // Authenticated, parsed, and still not ours to apply (a linking token
    // used before, a key outside our journeys): kept, quarantined.
    if let CallbackOutcome::Refused(why) = &outcome {
        return quarantine(store, id, Some(kind), why.to_string()).await;
    }
    let applied = RawOutcome::Applied {
        status: status_word(&outcome).into(),
    };
    store.settle_callback(id, Some(kind), applied).await?;
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

/// Apply parsed raw callback `id` as its kind: what came of it, with the
/// linking_token and connection_id it named.
async fn apply(
    store: &Store,
    id: u64,
    cb: Callback,
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
            let arrival = Arrival { raw_id: id, digest };
            let (token, conn) = (c.linking_token.clone(), c.connection_id.clone());
            let out = store
                .apply_credentials(c, is_put, arrival, current_version)
                .await?;
            (out, token, Some(conn))
        }
        Callback::Event(Event::Identify {
            mydexid,
            linking_token,
        }) => {
            let digest = callback_body::digest(method_s, redacted, None);
            let arrival = Arrival { raw_id: id, digest };
            let body = redacted.clone();
            let out = match crate::domain::MydexId::from_mydex(&mydexid) {
                Ok(m) => {
                    let token = linking_token.clone();
                    store.apply_identify(m, token, body, arrival).await?
                }
                Err(_) => {
                    let ev = Event::Identify {
                        mydexid,
                        linking_token: linking_token.clone(),
                    };
                    store.record_event(ev, body, arrival).await?
                }
            };
            (out, linking_token, None)
        }
        Callback::Event(ev) => {
            let digest = callback_body::digest(method_s, redacted, None);
            let arrival = Arrival { raw_id: id, digest };
            let out = store.record_event(ev, redacted.clone(), arrival).await?;
            (out, None, None)
        }
    })
}

/// Settle `id` as quarantined, and say so in the log (id and reason only:
/// never the body, which may hold a member key).
pub async fn quarantine(
    store: &Store,
    id: u64,
    kind: Option<&'static str>,
    reason: String,
) -> Result<Verdict, StoreError> {
    // A reason may quote a bit of the body: no key in it either.
    let reason = super::callback_redact::redact_text(&reason);
    let quarantined = RawOutcome::Quarantined {
        reason: reason.clone(),
    };
    store.settle_callback(id, kind, quarantined).await?;
    tracing::warn!(callback = id, reason = %reason, "callback quarantined: kept without effect; `mydex-connector callbacks show {id}` shows it, `callbacks replay` runs it again");
    Ok(Verdict::Quarantined { reason })
}

/// Judge the callbacks kept but never judged: the daemon stopped (a crash,
/// a kill) between keeping one and answering it. Run before the callback
/// endpoint opens; how many there were.
pub async fn judge_pending(
    store: &Store,
    nid: &str,
    current_version: u32,
) -> Result<usize, StoreError> {
    let pending = store.pending_callbacks().await?;
    for id in &pending {
        // The mark is written first, the record last: a stop between them
        // leaves a mark alone, for a callback never answered (Mydex sends
        // it again). Its mark goes.
        let (rec, body) = match store.raw_callback_with_body(*id).await {
            Ok(found) => found,
            Err(StoreError::NotFound(_)) => {
                tracing::info!(
                    callback = id,
                    "callback kept only in part before a stop, never answered: dropped"
                );
                store.drop_unrecorded_callback(*id).await?;
                continue;
            }
            Err(StoreError::Corrupt(_)) => continue,
            Err(e) => return Err(e),
        };
        let verdict = judge(
            store,
            nid,
            current_version,
            *id,
            &rec.method,
            rec.content_type.as_deref(),
            &body,
        )
        .await?;
        if let Verdict::Applied { kind, outcome, .. } = verdict {
            tracing::info!(
                callback = id,
                kind,
                status = status_word(&outcome),
                applied_before = matches!(outcome, CallbackOutcome::AppliedBefore(_)),
                "callback kept before a stop, judged at start"
            );
        }
    }
    if !pending.is_empty() {
        store.flush().await?;
    }
    Ok(pending.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RawFilter;
    use secrecy::SecretBox;

    /// A kill after the group commit that held a callback's effects and
    /// before its record was settled: at the next start its record reads
    /// what it did (`unmatched`), as the counter says, and only other
    /// arrivals of it read `replay`; an operator's replay of it keeps it so.
    #[tokio::test]
    async fn a_callback_applied_before_a_stop_is_its_own_first_keeping() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretBox::new(Box::new([9u8; 32]));
        let s = Store::open(dir.path(), &key).unwrap();
        let ftc = br#"{"uid":1001,"mydexid":"RBFish123","key":"k-1","connection_id":"1001-45678","fields":{},"linking_token":"lt_nothing"}"#;
        let json = Some("application/json");
        let a = s
            .keep_callback("POST", json.map(str::to_string), ftc)
            .await
            .unwrap();
        // Applied, not settled: as the kill left it.
        let (cb, redacted) = callback_body::parse_request(json, ftc, false, "45678").unwrap();
        let (out, ..) = apply(&s, a, cb, &redacted, false, 1).await.unwrap();
        assert_eq!(out, CallbackOutcome::Unmatched);
        s.flush().await.unwrap();
        drop(s);

        let s = Store::open(dir.path(), &key).unwrap();
        assert_eq!(
            s.raw_callback(a).await.unwrap().outcome,
            RawOutcome::Pending
        );
        assert_eq!(judge_pending(&s, "45678", 1).await.unwrap(), 1);
        let unmatched = RawOutcome::Applied {
            status: "unmatched".into(),
        };
        assert_eq!(s.raw_callback(a).await.unwrap().outcome, unmatched);
        // Mydex's retry (or NATS's redelivery): another arrival, a replay.
        let b = s
            .keep_callback("POST", json.map(str::to_string), ftc)
            .await
            .unwrap();
        judge(&s, "45678", 1, b, "POST", json, ftc).await.unwrap();
        let replay = RawOutcome::Applied {
            status: "replay".into(),
        };
        assert_eq!(s.raw_callback(b).await.unwrap().outcome, replay);
        // An operator's replay of the first: still what it did.
        judge(&s, "45678", 1, a, "POST", json, ftc).await.unwrap();
        let rec = s.raw_callback(a).await.unwrap();
        assert_eq!(rec.outcome, unmatched);
        assert_eq!(rec.history.len(), 1);
        let listed = s
            .raw_callbacks(RawFilter::default(), None, 10)
            .await
            .unwrap();
        let words: Vec<_> = listed.iter().map(|r| r.outcome.clone()).collect();
        assert_eq!(words, [unmatched, replay]);
        let c = s.counts(1).await.unwrap();
        assert_eq!((c.unmatched_callbacks, c.callbacks_stored), (1, 2));
    }

    #[tokio::test]
    async fn pending_callbacks_are_judged_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), &SecretBox::new(Box::new([9u8; 32]))).unwrap();
        let ftc = br#"{"uid":1001,"mydexid":"RBFish123","key":"k-1","connection_id":"1001-45678","fields":{},"linking_token":"lt_nothing"}"#;
        let json = Some("application/json".to_string());
        let a = s.keep_callback("POST", json.clone(), ftc).await.unwrap();
        let b = s
            .keep_callback("POST", json.clone(), b"\x00\x01")
            .await
            .unwrap();
        assert_eq!(judge_pending(&s, "45678", 1).await.unwrap(), 2);
        assert_eq!(
            s.raw_callback(a).await.unwrap().outcome,
            RawOutcome::Applied {
                status: "unmatched".into()
            }
        );
        assert!(matches!(
            s.raw_callback(b).await.unwrap().outcome,
            RawOutcome::Quarantined { .. }
        ));
        assert_eq!(s.counts(1).await.unwrap().unmatched_callbacks, 1);
        assert_eq!(judge_pending(&s, "45678", 1).await.unwrap(), 0);
        // The same body again is a replay: nothing changes.
        let c = s.keep_callback("POST", json, ftc).await.unwrap();
        let v = judge(&s, "45678", 1, c, "POST", Some("application/json"), ftc)
            .await
            .unwrap();
        assert!(matches!(
            v,
            Verdict::Applied {
                outcome: CallbackOutcome::Replay,
                ..
            }
        ));
        assert_eq!(s.counts(1).await.unwrap().unmatched_callbacks, 1);
        let q = s
            .raw_callbacks(
                RawFilter {
                    quarantined_only: true,
                },
                None,
                10,
            )
            .await
            .unwrap();
        assert_eq!(q.len(), 1);
    }
}
