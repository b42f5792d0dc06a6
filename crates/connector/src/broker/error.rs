//! What can go wrong talking to JetStream, as one typed error: the callers
//! answer 503, retry, or exit with it; the message names the stream or
//! subject, never a payload.

/// A broker failure.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot connect to NATS ({servers}): {reason}")]
    Connect { servers: String, reason: String },
    #[error("nats.credentials_file: {0}")]
    Credentials(String),
    #[error("stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
    #[error("consumer {consumer} on {stream}: {reason}")]
    Consumer {
        stream: String,
        consumer: String,
        reason: String,
    },
    #[error("publish to {subject}: {reason}")]
    Publish { subject: String, reason: String },
    #[error("publish to {subject}: JetStream did not acknowledge within {seconds}s")]
    PublishTimeout { subject: String, seconds: u64 },
    #[error("JetStream unreachable: {0}")]
    Unreachable(String),
    #[error("acknowledge on {stream}: {reason}")]
    Ack { stream: String, reason: String },
}

impl BrokerError {
    /// A credentials file that does not parse: a restart will not fix it
    /// (the CLI exits `EX_CONFIG`). The rest may pass once NATS is back.
    pub fn is_config_problem(&self) -> bool {
        matches!(self, BrokerError::Credentials(_))
    }
}
