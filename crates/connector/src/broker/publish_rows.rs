//! `enqueue --nats` / `deliver --nats`: a checked file's good rows, one
//! JSON message each, published with `Nats-Msg-Id` = `{file id}:{line}`.
//! The file id is a hash of the file's bytes (and what else decides its
//! rows, such as `--campaign`), so publishing the same file again within
//! `nats.dedup_window` stores nothing twice. Up to [`IN_FLIGHT`] publishes
//! wait for their acks at once; the first failure stops the run, and what
//! was acknowledged before it stays published.

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::connect::Broker;
use super::error::BrokerError;
use super::topics::Topic;

/// Publishes awaiting their acks at once.
const IN_FLIGHT: usize = 64;

/// The id of one input: the hex SHA-256 of its bytes and of `context`
/// (first 32 hex digits).
pub fn file_id(bytes: &[u8], context: &str) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    h.update([0u8]);
    h.update(context.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// What a run published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowsPublished {
    /// Stored by JetStream now.
    pub published: u64,
    /// Already stored (the same file and line within the dedup window).
    pub duplicates: u64,
}

/// A run stopped by the broker, with what it published before.
#[derive(Debug, thiserror::Error)]
#[error("{error} (after {} rows published, {} already there)", .done.published, .done.duplicates)]
pub struct PublishRowsError {
    pub done: RowsPublished,
    #[source]
    pub error: BrokerError,
}

impl Broker {
    /// Publish each `(line, payload)` on `topic` with `Nats-Msg-Id`
    /// `{file_id}:{line}`; `progress` hears each row acknowledged.
    pub async fn publish_rows(
        &self,
        topic: Topic,
        file_id: &str,
        rows: Vec<(u64, Vec<u8>)>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<RowsPublished, PublishRowsError> {
        let mut done = RowsPublished::default();
        let mut acks = futures_util::stream::iter(rows)
            .map(|(line, payload)| async move {
                self.publish(topic, &format!("{file_id}:{line}"), Bytes::from(payload))
                    .await
            })
            .buffered(IN_FLIGHT);
        while let Some(ack) = acks.next().await {
            match ack {
                Ok(p) if p.duplicate => done.duplicates += 1,
                Ok(_) => done.published += 1,
                Err(error) => return Err(PublishRowsError { done, error }),
            }
            progress(done.published + done.duplicates);
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::file_id;

    #[test]
    fn the_id_follows_the_bytes_and_the_context() {
        let a = file_id(b"email\na@example.com\n", "");
        assert_eq!(a.len(), 32);
        assert_eq!(a, file_id(b"email\na@example.com\n", ""));
        assert_ne!(a, file_id(b"email\nb@example.com\n", ""));
        assert_ne!(a, file_id(b"email\na@example.com\n", "campaign=x"));
    }
}
