//! One connection to NATS and its JetStream context, opened from `[nats]`:
//! the servers, the `.creds` if any, a name that says who is connected, and
//! a log line when the connection drops or comes back (the client
//! reconnects by itself, to any server of the cluster it learnt of).

use std::time::Duration;

use async_nats::jetstream;
use secrecy::ExposeSecret;

use super::error::BrokerError;
use super::topics::Topic;
use crate::config::{NatsPrefix, NatsSettings};

/// How long a JetStream request (a publish's ack, a stream's info) may
/// take before it is given up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to the broker and what the streams are made of.
#[derive(Clone)]
pub struct Broker {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub prefix: NatsPrefix,
    pub stream_replicas: usize,
    pub retention: Duration,
    pub dedup_window: Duration,
    servers: String,
}

/// Whether the first connection must succeed before [`Broker::connect`]
/// returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstConnect {
    /// Fail at once if no server answers (`nats setup`, `enqueue --nats`).
    Required,
    /// Return at once and keep trying in the background (`run`, `edge`:
    /// they start while the cluster is down, and say so in `/readyz`).
    InBackground,
}

impl Broker {
    /// Connect as `name` (shown in the server's connection list).
    pub async fn connect(
        settings: &NatsSettings,
        name: &str,
        first: FirstConnect,
    ) -> Result<Self, BrokerError> {
        let servers = settings.servers.join(", ");
        let mut options = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(REQUEST_TIMEOUT)
            .max_reconnects(None)
            .event_callback(|event| async move { log_event(event) });
        if let Some(creds) = &settings.credentials {
            options = options
                .credentials(creds.expose_secret())
                .map_err(|e| BrokerError::Credentials(e.to_string()))?;
        }
        if first == FirstConnect::InBackground {
            options = options.retry_on_initial_connect();
        }
        let client = options
            .connect(settings.servers.as_slice())
            .await
            .map_err(|e| BrokerError::Connect {
                servers: servers.clone(),
                reason: e.to_string(),
            })?;
        let js = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .build(client.clone());
        Ok(Self {
            client,
            js,
            prefix: settings.prefix.clone(),
            stream_replicas: settings.stream_replicas,
            retention: settings.retention,
            dedup_window: settings.dedup_window,
            servers,
        })
    }

    /// Whether the connection is up now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Whether JetStream answers now (`/readyz`): the callbacks stream's
    /// info within [`REQUEST_TIMEOUT`]; why not, in words.
    pub async fn jetstream_reachable(&self) -> Result<(), BrokerError> {
        let unreachable = BrokerError::Unreachable;
        if !self.connected() {
            return Err(unreachable(format!(
                "not connected to NATS ({})",
                self.servers
            )));
        }
        let stream = self.stream(Topic::Callbacks);
        match tokio::time::timeout(REQUEST_TIMEOUT, self.js.get_stream(&stream)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unreachable(format!("stream {stream}: {e}"))),
            Err(_) => Err(unreachable(format!(
                "JetStream did not answer within {}s",
                REQUEST_TIMEOUT.as_secs()
            ))),
        }
    }

    /// The servers as configured, for log lines.
    pub fn servers(&self) -> &str {
        &self.servers
    }

    pub fn subject(&self, topic: Topic) -> String {
        topic.subject(&self.prefix)
    }

    pub fn stream(&self, topic: Topic) -> String {
        topic.stream(&self.prefix)
    }

    /// How many messages wait for the daemon on `topic`: not yet delivered,
    /// plus delivered and not yet acknowledged.
    pub async fn pending(&self, topic: Topic) -> Result<u64, BrokerError> {
        let stream = self.stream(topic);
        let err = |e: String| BrokerError::Consumer {
            stream: stream.clone(),
            consumer: super::topics::CONSUMER.into(),
            reason: e,
        };
        let mut consumer: jetstream::consumer::PullConsumer = self
            .js
            .get_consumer_from_stream(super::topics::CONSUMER, &stream)
            .await
            .map_err(|e| err(e.to_string()))?;
        let info = consumer.info().await.map_err(|e| err(e.to_string()))?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }
}

/// The client's connection events, in the log.
fn log_event(event: async_nats::Event) {
    match event {
        async_nats::Event::Connected => tracing::info!("NATS connected"),
        async_nats::Event::Disconnected => {
            tracing::warn!("NATS disconnected; reconnecting in the background")
        }
        other => tracing::warn!(event = %other, "NATS connection event"),
    }
}
