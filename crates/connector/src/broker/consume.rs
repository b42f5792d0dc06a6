//! The daemon's reading loop over one stream: the durable pull consumer
//! `connector`, each message handed to a handler, acknowledged only once
//! the handler returns `Ok(Handled::Done)` (for the daemon: once sled has
//! what it carried on disk). A handler's error leaves the message to be
//! delivered again a little later; a message that can never be handled
//! (`Handled::Reject`) is terminated with a log line, so it neither blocks
//! the stream nor comes back; a message this daemon must not take but
//! another may (`Handled::Hold`: sealed to a key it does not hold) is left
//! in the stream, delivered again every 30 s for as long as the stream
//! keeps it (the consumer has no limit on deliveries). A broken connection
//! or a missing stream is waited out and the loop starts again; nothing
//! here ends the daemon.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::PullConsumer;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::connect::Broker;
use super::topics::{CONSUMER, Topic};
use crate::metrics::Metrics;

/// One message as the handler sees it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub payload: Bytes,
    /// Its `Nats-Msg-Id`, if it had one.
    pub msg_id: Option<String>,
    /// Its sequence in the stream (names it in log lines).
    pub stream_sequence: u64,
    /// How many times it has been delivered (1 the first time).
    pub delivered: i64,
    /// Its headers, if it had any.
    pub headers: Option<async_nats::HeaderMap>,
}

impl Delivery {
    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref()?.get(name).map(|v| v.as_str())
    }
}

/// What a handler made of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Done and durable: acknowledge it.
    Done,
    /// Never to be handled (not ours, garbage): terminated, with why.
    Reject(String),
    /// Not for this daemon now, but not to be lost (sealed to a key it does
    /// not hold): left in the stream, delivered again after [`HOLD_DELAY`];
    /// the handler logs why (once, not at every delivery).
    Hold,
}

/// How long a message whose handler failed waits before it is delivered
/// again.
const RETRY_DELAY: Duration = Duration::from_secs(5);

/// How long a held message waits before it is delivered again: a daemon
/// started with the right key takes it within this long.
pub const HOLD_DELAY: Duration = Duration::from_secs(30);

/// How long to wait before trying again when the consumer cannot be read.
const RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// How often the consumer's lag is read into `/metrics`.
const LAG_EVERY: Duration = Duration::from_secs(5);

/// Read `topic` with the consumer `connector` until `shutdown`, at most
/// `concurrency` messages in the handler at once; then let those finish.
pub async fn consume<F, Fut, E>(
    broker: Broker,
    topic: Topic,
    concurrency: usize,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    handler: F,
) where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Handled, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let handler = Arc::new(handler);
    let stream = broker.stream(topic);
    let mut tasks = JoinSet::new();
    tasks.spawn(watch_lag(
        broker.clone(),
        topic,
        metrics.clone(),
        shutdown.clone(),
    ));
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut warned = false;
    while !shutdown.is_cancelled() {
        let consumer: PullConsumer = match broker
            .js
            .get_consumer_from_stream(CONSUMER, &stream)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                if !warned {
                    tracing::warn!(stream = %stream, error = %e, "cannot read the NATS consumer yet; trying again every {}s", RECONNECT_DELAY.as_secs());
                    warned = true;
                }
                pause(&shutdown, RECONNECT_DELAY).await;
                continue;
            }
        };
        if warned {
            tracing::info!(stream = %stream, "reading the NATS consumer");
            warned = false;
        }
        let messages = consumer
            .stream()
            .max_messages_per_batch(concurrency.max(1))
            .messages()
            .await;
        let messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(stream = %stream, error = %e, "cannot pull from the NATS consumer");
                pause(&shutdown, RECONNECT_DELAY).await;
                continue;
            }
        };
        let pull = Pull {
            stream: &stream,
            handler: &handler,
            metrics: &metrics,
            permits: &permits,
            shutdown: &shutdown,
        };
        pull.run(messages, &mut tasks).await;
    }
    while tasks.join_next().await.is_some() {}
}

/// One pull subscription's worth of messages, each handled on a task.
struct Pull<'a, F> {
    stream: &'a str,
    handler: &'a Arc<F>,
    metrics: &'a Arc<Metrics>,
    permits: &'a Arc<tokio::sync::Semaphore>,
    shutdown: &'a CancellationToken,
}

impl<F, Fut, E> Pull<'_, F>
where
    F: Fn(Delivery) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Handled, E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    /// Until the subscription breaks or the daemon stops.
    async fn run(
        &self,
        mut messages: async_nats::jetstream::consumer::pull::Stream,
        tasks: &mut JoinSet<()>,
    ) {
        let (stream, shutdown, permits) = (self.stream, self.shutdown, self.permits);
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                n = messages.next() => n,
            };
            let message = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!(stream = %stream, error = %e, "NATS pull interrupted; starting again");
                    break;
                }
                None => break,
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (handler, metrics) = (self.handler.clone(), self.metrics.clone());
            let stream = stream.to_string();
            tasks.spawn(async move {
                let _permit = permit;
                handle_one(message, &*handler, &metrics, &stream).await;
            });
            // Reap what finished, so the set does not grow.
            while tasks.try_join_next().is_some() {}
        }
    }
}

/// Hand one message to the handler and acknowledge, reject or retry it.
async fn handle_one<F, Fut, E>(
    message: async_nats::jetstream::Message,
    handler: &F,
    metrics: &Metrics,
    stream: &str,
) where
    F: Fn(Delivery) -> Fut,
    Fut: std::future::Future<Output = Result<Handled, E>>,
    E: std::fmt::Display,
{
    let (stream_sequence, delivered) = match message.info() {
        Ok(i) => (i.stream_sequence, i.delivered),
        Err(_) => (0, 1),
    };
    let msg_id = message
        .headers
        .as_ref()
        .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
        .map(|v| v.as_str().to_string());
    let delivery = Delivery {
        payload: message.payload.clone(),
        msg_id,
        stream_sequence,
        delivered,
        headers: message.headers.clone(),
    };
    let (ack, outcome) = match handler(delivery).await {
        Ok(Handled::Done) => (AckKind::Ack, "done"),
        Ok(Handled::Reject(why)) => {
            tracing::warn!(stream, seq = stream_sequence, reason = %why, "NATS message rejected: not handled and not delivered again");
            (AckKind::Term, "rejected")
        }
        Ok(Handled::Hold) => (AckKind::Nak(Some(HOLD_DELAY)), "held"),
        Err(e) => {
            tracing::error!(stream, seq = stream_sequence, error = %e, "NATS message not handled; delivered again in {}s", RETRY_DELAY.as_secs());
            (AckKind::Nak(Some(RETRY_DELAY)), "retried")
        }
    };
    metrics.nats_consumed(stream, outcome);
    // A lost ack means one more delivery, which the handler takes as a
    // replay; waiting for the server's word on it keeps that rare.
    if let Err(e) = message.double_ack_with(ack).await {
        tracing::warn!(stream, seq = stream_sequence, error = %e, "NATS acknowledgement not confirmed; the message may be delivered again (taken as a replay)");
    }
}

/// Read the consumer's lag into `/metrics` every few seconds.
async fn watch_lag(
    broker: Broker,
    topic: Topic,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let stream = broker.stream(topic);
    while !shutdown.is_cancelled() {
        if let Ok(n) = broker.pending(topic).await {
            metrics.nats_lag(&stream, n);
        }
        pause(&shutdown, LAG_EVERY).await;
    }
}

async fn pause(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}
