//! What an edge does with a request it accepted: seal it to the daemon's
//! key, publish it with its keyed `Nats-Msg-Id` and the headers naming the
//! key it is sealed to (`sealed_to.rs`), and say whether JetStream
//! acknowledged it in time (the edge answers 2xx only then). Counted in
//! `/metrics` (publishes, publish failures).

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use super::connect::Broker;
use super::envelope::{ReceivedCallback, ReceivedUnsubscribe};
use super::error::BrokerError;
use super::publish::Published;
use super::seal::SealPublicKey;
use super::sealed_to::{SEAL_KEY_HEADER, SEAL_MAC_HEADER, seal_mac};
use super::topics::Topic;
use crate::metrics::Metrics;

pub struct EdgePublisher {
    pub broker: Broker,
    seal_to: SealPublicKey,
    /// `seal_to`'s fingerprint, on every message.
    fingerprint: String,
    connection_token: SecretString,
    metrics: Arc<Metrics>,
}

impl EdgePublisher {
    pub fn new(
        broker: Broker,
        seal_to: SealPublicKey,
        connection_token: SecretString,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            broker,
            fingerprint: seal_to.fingerprint(),
            seal_to,
            connection_token,
            metrics,
        }
    }

    /// The fingerprint of the key it seals to.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Seal and publish a callback to `{prefix}.callbacks`.
    pub async fn publish_callback(&self, cb: &ReceivedCallback) -> Result<Published, BrokerError> {
        let id = cb.msg_id(self.connection_token.expose_secret().as_bytes());
        self.seal_and_publish(Topic::Callbacks, &id, &cb.to_plain())
            .await
    }

    /// Seal and publish a one-click unsubscribe to `{prefix}.unsubscribes`.
    pub async fn publish_unsubscribe(
        &self,
        u: &ReceivedUnsubscribe,
    ) -> Result<Published, BrokerError> {
        let id = u.msg_id(self.connection_token.expose_secret().as_bytes());
        self.seal_and_publish(Topic::Unsubscribes, &id, &u.to_plain())
            .await
    }

    async fn seal_and_publish(
        &self,
        topic: Topic,
        msg_id: &str,
        plain: &[u8],
    ) -> Result<Published, BrokerError> {
        let subject = self.broker.subject(topic);
        let sealed = self.seal_to.seal(plain).map_err(|e| BrokerError::Publish {
            subject: subject.clone(),
            reason: e.to_string(),
        })?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(SEAL_KEY_HEADER, self.fingerprint.as_str());
        let token = self.connection_token.expose_secret().as_bytes();
        headers.insert(SEAL_MAC_HEADER, seal_mac(token, &self.fingerprint, &sealed));
        let done = self
            .broker
            .publish_with_headers(topic, msg_id, headers, sealed.into())
            .await;
        match &done {
            Ok(_) => self.metrics.nats_published(&subject),
            Err(e) => {
                let reason = match e {
                    BrokerError::PublishTimeout { .. } => "timeout",
                    _ => "error",
                };
                self.metrics.nats_publish_failed(&subject, reason);
            }
        }
        done
    }
}
