//! `run` with `[nats]`: the callbacks and one-click unsubscribes edges
//! published, taken from JetStream with the durable consumer `connector`.
//! Each message is opened with the daemon's private key, its
//! `Authentication` checked again (in constant time) against the Connection
//! Token, and passed through the very path of the daemon's own listener:
//! kept raw (sealed in sled), judged (applied, or quarantined with its
//! reason), flushed — and only then acknowledged. A daemon killed between
//! the two gets the message again within the ack wait (30 s); it is then
//! judged a replay (the callback's digest) and changes nothing. A message
//! not sealed to our key, garbage, or not authenticated is rejected with a
//! log line (terminated: never delivered again) and changes nothing we
//! hold. The streams are created first if missing, as `nats setup` does.

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::broker::consume::Delivery;
use crate::broker::envelope::Received;
use crate::broker::{Broker, Handled, SealKey, Topic};
use crate::metrics::Metrics;
use crate::server::callback_endpoint::{StoreKeeper, keep_judge_flush, settle_verdict};
use crate::store::StoreError;

/// Messages of one stream in the handler at once.
const CONCURRENCY: usize = 64;

/// What handling a message from NATS shares.
struct Intake {
    keeper: StoreKeeper,
    seal_key: SealKey,
    expected_auth: String,
    metrics: Arc<Metrics>,
}

/// Why a message was not handled now (it is delivered again later).
#[derive(Debug, thiserror::Error)]
enum IntakeError {
    #[error("the store could not keep it")]
    Keep,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Start the two readers (callbacks, unsubscribes) and the streams' setup.
pub fn start(
    broker: Broker,
    keeper: StoreKeeper,
    seal_key: SealKey,
    expected_auth: String,
    metrics: Arc<Metrics>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    tasks.spawn(broker.clone().setup_when_reachable(shutdown.clone()));
    let intake = Arc::new(Intake {
        keeper,
        seal_key,
        expected_auth,
        metrics: metrics.clone(),
    });
    let i = intake.clone();
    tasks.spawn(crate::broker::consume(
        broker.clone(),
        Topic::Callbacks,
        CONCURRENCY,
        metrics.clone(),
        shutdown.clone(),
        move |d| {
            let i = i.clone();
            async move { i.callback(d).await }
        },
    ));
    tasks.spawn(crate::broker::consume(
        broker,
        Topic::Unsubscribes,
        CONCURRENCY,
        metrics,
        shutdown.clone(),
        move |d| {
            let i = intake.clone();
            async move { i.unsubscribe(d).await }
        },
    ));
}

impl Intake {
    /// Open and parse a message; why not, as a rejection.
    fn open(&self, d: &Delivery) -> Result<Received, Handled> {
        let plain = zeroize::Zeroizing::new(
            self.seal_key
                .open(&d.payload)
                .map_err(|e| Handled::Reject(e.to_string()))?,
        );
        Received::parse(&plain).map_err(|e| Handled::Reject(e.to_string()))
    }

    async fn callback(&self, d: Delivery) -> Result<Handled, IntakeError> {
        let cb = match self.open(&d) {
            Ok(Received::Callback(cb)) => cb,
            Ok(Received::Unsubscribe(_)) => {
                return Ok(Handled::Reject(
                    "an unsubscribe on the callbacks stream".into(),
                ));
            }
            Err(rejected) => return Ok(rejected),
        };
        let given = cb.authentication.to_ascii_lowercase();
        let authentic: bool = given.as_bytes().ct_eq(self.expected_auth.as_bytes()).into();
        if !authentic {
            self.metrics.callback("unknown", "unauthorized");
            return Ok(Handled::Reject(
                "its Authentication does not match our Connection Token".into(),
            ));
        }
        if d.delivered > 1 {
            tracing::info!(
                seq = d.stream_sequence,
                delivered = d.delivered,
                "callback delivered again by NATS (a daemon stopped before acknowledging it): judged as usual, a replay changes nothing"
            );
        }
        let method: &'static str = if cb.method == "PUT" { "PUT" } else { "POST" };
        let (id, verdict) = keep_judge_flush(
            &self.keeper,
            &self.metrics,
            method,
            cb.content_type,
            cb.body.into(),
        )
        .await
        .map_err(|()| IntakeError::Keep)?;
        let status = settle_verdict(&self.metrics, &self.keeper, id, verdict);
        tracing::debug!(
            callback = id,
            seq = d.stream_sequence,
            status = status.unwrap_or("quarantined"),
            "callback from NATS kept"
        );
        Ok(Handled::Done)
    }

    async fn unsubscribe(&self, d: Delivery) -> Result<Handled, IntakeError> {
        let u = match self.open(&d) {
            Ok(Received::Unsubscribe(u)) => u,
            Ok(Received::Callback(_)) => {
                return Ok(Handled::Reject(
                    "a callback on the unsubscribes stream".into(),
                ));
            }
            Err(rejected) => return Ok(rejected),
        };
        let store = &self.keeper.store;
        let parsed = store.mail_keys().parse_token(u.token.as_bytes());
        let Some(id) = parsed
            .filter(|p| p.kind == crate::domain::TokenKind::Unsubscribe)
            .map(|p| p.invitation)
        else {
            return Ok(Handled::Reject(
                "the unsubscribe token is not one of ours".into(),
            ));
        };
        crate::server::unsubscribe::unsubscribe(
            store,
            id,
            "one-click unsubscribe (through an edge)",
        )
        .await?;
        store.flush().await?;
        Ok(Handled::Done)
    }
}
