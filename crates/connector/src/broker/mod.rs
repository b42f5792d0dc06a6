//! The NATS JetStream broker (`[nats]`): how the daemon, its edges and the
//! intake reach it. One concept a file: the subjects and streams
//! (`topics.rs`), connecting with credentials (`connect.rs`), creating or
//! updating the five streams and the `connector` consumer (`setup.rs`),
//! publishing with an acknowledgement and a `Nats-Msg-Id` (`publish.rs`),
//! the pull-consumer loop that acknowledges only what its handler finished
//! (`consume.rs`), the X25519 sealed box and the keys' fingerprints
//! (`seal.rs`), what an edge seals (`envelope.rs`), the headers naming the
//! key it sealed to (`sealed_to.rs`), an edge's publisher
//! (`edge_publisher.rs`), and what the daemon holds in the stream because
//! it is sealed to a key it does not hold (`held.rs`).
//! sled stays the daemon's own store: nothing here opens it.

pub mod connect;
pub mod consume;
pub mod edge_publisher;
pub mod envelope;
pub mod error;
pub mod held;
pub mod publish;
pub mod publish_rows;
pub mod seal;
pub mod sealed_to;
pub mod setup;
pub mod topics;

pub use connect::Broker;
pub use consume::{Handled, consume};
pub use edge_publisher::EdgePublisher;
pub use envelope::{ReceivedCallback, ReceivedUnsubscribe};
pub use error::BrokerError;
pub use held::Held;
pub use publish::Published;
pub use publish_rows::{PublishRowsError, RowsPublished, file_id};
pub use seal::{SealError, SealKey, SealKeys, SealPublicKey};
pub use setup::{SetupAction, SetupStep};
pub use topics::{CONSUMER, Topic};
