//! Publishing to a stream with JetStream's acknowledgement and a
//! `Nats-Msg-Id`: a message published twice with the same id within
//! `nats.dedup_window` is stored once. The publish and its ack together
//! must come within [`super::connect::REQUEST_TIMEOUT`] (5 s), else the
//! caller hears so (an edge answers 503 with `Retry-After: 5`).

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage as Publish;
use bytes::Bytes;

use super::connect::{Broker, REQUEST_TIMEOUT};
use super::error::BrokerError;
use super::topics::Topic;

/// What JetStream acknowledged.
#[derive(Debug, Clone)]
pub struct Published {
    pub stream: String,
    pub sequence: u64,
    /// The id was seen within the duplicate window: stored once, earlier.
    pub duplicate: bool,
}

impl Broker {
    /// Publish `payload` on `topic`'s subject with `Nats-Msg-Id` `msg_id`,
    /// and wait for JetStream's ack (at most 5 s).
    pub async fn publish(
        &self,
        topic: Topic,
        msg_id: &str,
        payload: Bytes,
    ) -> Result<Published, BrokerError> {
        self.publish_with_headers(topic, msg_id, HeaderMap::new(), payload)
            .await
    }

    /// [`Broker::publish`] with more headers (an edge's seal headers).
    pub async fn publish_with_headers(
        &self,
        topic: Topic,
        msg_id: &str,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<Published, BrokerError> {
        let subject = self.subject(topic);
        let publish = Publish::build()
            .payload(payload)
            .headers(headers)
            .message_id(msg_id);
        let acked = async {
            let ack = self
                .js
                .send_publish(subject.clone(), publish)
                .await
                .map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, acked).await {
            Ok(Ok(ack)) => Ok(Published {
                stream: ack.stream,
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            }),
            Ok(Err(reason)) => Err(BrokerError::Publish { subject, reason }),
            Err(_) => Err(BrokerError::PublishTimeout {
                subject,
                seconds: REQUEST_TIMEOUT.as_secs(),
            }),
        }
    }
}
