//! `run` with `[queue] source = "nats"` / `[delivery] source = "nats"`:
//! invitee rows taken from `{prefix}.invitees`, reading rows from
//! `{prefix}.readings`, with the durable consumer `connector`. Each message
//! is read as rows by the intake's message sources (the checks a file's
//! rows get, one batch, its rejects kept in the store), made durable, and
//! only then acknowledged. A daemon killed between the two gets the
//! message again; its rows are then duplicates (an open invitation; a
//! reading's exactly-once key) and nothing is done twice. Every refused row is also published on `{prefix}.rejects` (JSON:
//! file, source, line, reason, at_ms), the message's `Nats-Msg-Id` (or
//! `{subject}#{sequence}`) as its file.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::broker::consume::Delivery;
use crate::broker::{Broker, Handled, Topic};
use crate::config::Settings;
use crate::domain::Rejection;
use crate::intake::IngestError;
use crate::intake::message_source::take_invitees;
use crate::intake::reading_message::take_readings;
use crate::intake::readings::ReadingsError;
use crate::metrics::Metrics;
use crate::store::Store;

/// Messages in the handler at once (the store serialises the writes).
const CONCURRENCY: usize = 16;

/// What handling a row message shares.
struct RowIntake {
    broker: Broker,
    store: Store,
    settings: Arc<Settings>,
    wake: Arc<Notify>,
}

/// Why a message was not handled now (it is delivered again later).
#[derive(Debug, thiserror::Error)]
enum RowsError {
    #[error(transparent)]
    Invitees(#[from] IngestError),
    #[error(transparent)]
    Readings(#[from] ReadingsError),
}

/// Start reading `topic` (invitees or readings); `wake` is told when
/// rows were stored (the dispatcher, the delivery worker).
#[allow(clippy::too_many_arguments)]
pub fn start(
    topic: Topic,
    broker: Broker,
    store: Store,
    settings: Arc<Settings>,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    shutdown: &CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    let intake = Arc::new(RowIntake {
        broker: broker.clone(),
        store,
        settings,
        wake,
    });
    tasks.spawn(crate::broker::consume(
        broker,
        topic,
        CONCURRENCY,
        metrics,
        shutdown.clone(),
        move |d| {
            let i = intake.clone();
            async move {
                match topic {
                    Topic::Readings => i.readings(d).await,
                    _ => i.invitees(d).await,
                }
            }
        },
    ));
}

impl RowIntake {
    /// The file a message's rejects name: its `Nats-Msg-Id`, else its
    /// subject and sequence.
    fn name(&self, topic: Topic, d: &Delivery) -> String {
        d.msg_id
            .clone()
            .unwrap_or_else(|| format!("{}#{}", self.broker.subject(topic), d.stream_sequence))
    }

    async fn readings(&self, d: Delivery) -> Result<Handled, RowsError> {
        let Some(delivery) = &self.settings.delivery else {
            return Ok(Handled::Reject("no [delivery] section".into()));
        };
        let name = self.name(Topic::Readings, &d);
        let out = take_readings(&self.store, delivery, &name, &d.payload).await?;
        let r = &out.report;
        tracing::debug!(message = %name, seq = d.stream_sequence, delivered = d.delivered, queued = r.queued, held = r.held, duplicates = r.duplicates, rejected = r.rejected, "readings message taken in");
        if r.queued > 0 {
            self.wake.notify_one();
        }
        self.publish_rejects(&out.rejected).await;
        Ok(Handled::Done)
    }

    async fn invitees(&self, d: Delivery) -> Result<Handled, RowsError> {
        let name = self.name(Topic::Invitees, &d);
        let out = take_invitees(&self.store, &self.settings, &name, &d.payload).await?;
        if d.delivered > 1 {
            tracing::info!(
                seq = d.stream_sequence,
                delivered = d.delivered,
                stored = out.stored,
                duplicates = out.duplicates,
                "invitees message delivered again by NATS (a daemon stopped before acknowledging it): rows already held are duplicates, nobody is invited twice"
            );
        }
        tracing::debug!(
            message = %name,
            seq = d.stream_sequence,
            stored = out.stored,
            duplicates = out.duplicates,
            rejected = out.rejected.len(),
            "invitees message taken in"
        );
        if out.stored > 0 {
            self.wake.notify_one();
        }
        self.publish_rejects(&out.rejected).await;
        Ok(Handled::Done)
    }

    /// Each refused row on `{prefix}.rejects` (they are kept in the store
    /// already: a broker that fails here loses nothing `rejects list`
    /// shows, and the message is still acknowledged).
    async fn publish_rejects(&self, rejected: &[Rejection]) {
        for r in rejected {
            let Ok(body) = serde_json::to_vec(r) else {
                continue;
            };
            let id = format!("reject:{}:{}", r.source, r.line);
            if let Err(e) = self
                .broker
                .publish(Topic::Rejects, &id, Bytes::from(body))
                .await
            {
                tracing::warn!(file = %r.source, line = r.line, error = %e, "a refused row could not be published on the rejects stream (it is kept in the store: `rejects list`)");
            }
        }
    }
}
