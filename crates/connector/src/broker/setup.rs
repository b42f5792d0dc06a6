//! Creating or updating what the broker needs, idempotently: the five
//! streams (`{PREFIX}_CALLBACKS` … `_REJECTS`; file storage, `max_age` =
//! `nats.retention`, `duplicate_window` = `nats.dedup_window`, replicas =
//! `nats.stream_replicas`) and the durable pull consumer `connector` on each
//! stream the daemon reads (explicit acks, ack wait 30 s). Run by `nats
//! setup` (which prints the steps), and by `run` and `edge` on start. A
//! stream the daemon reads is a work queue: a message is removed once
//! acknowledged, and kept for `retention` until then. The consumer has no
//! limit on deliveries (`max_deliver` -1; set again if found otherwise): a
//! message held for a daemon with another key is delivered again for as
//! long as the stream keeps it, never dropped after N tries.

use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};

use super::connect::Broker;
use super::error::BrokerError;
use super::topics::{CONSUMER, Topic};

/// How long a message delivered to the daemon may go unacknowledged before
/// JetStream delivers it again (a daemon killed mid-way).
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// Messages delivered to the daemon and not yet acknowledged, at most.
pub const MAX_ACK_PENDING: i64 = 1024;

/// What setup did to one stream or consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupAction {
    Created,
    /// Updated, with what changed (`max_age 7d → 3d`).
    Updated(Vec<String>),
    Unchanged,
    /// Left as it is, with why (a setting JetStream cannot change).
    Kept(String),
}

/// One line of what setup did.
#[derive(Debug, Clone)]
pub struct SetupStep {
    /// `stream MYDEX_CALLBACKS` or `consumer connector on MYDEX_CALLBACKS`.
    pub what: String,
    pub action: SetupAction,
}

impl std::fmt::Display for SetupStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.action {
            SetupAction::Created => write!(f, "{}: created", self.what),
            SetupAction::Updated(changes) => {
                write!(f, "{}: updated ({})", self.what, changes.join(", "))
            }
            SetupAction::Unchanged => write!(f, "{}: unchanged", self.what),
            SetupAction::Kept(why) => write!(f, "{}: kept as it is ({why})", self.what),
        }
    }
}

impl Broker {
    /// Create or update every stream and consumer; what was done, in order.
    pub async fn setup(&self) -> Result<Vec<SetupStep>, BrokerError> {
        let mut steps = Vec::new();
        for topic in Topic::ALL {
            steps.extend(self.ensure_stream(topic).await?);
            if topic.consumed() {
                steps.push(self.ensure_consumer(topic).await?);
            }
        }
        Ok(steps)
    }

    /// Create what is missing on the broker once it answers (as `nats setup`
    /// does); tried again every few seconds until it succeeds.
    pub async fn setup_when_reachable(self, shutdown: tokio_util::sync::CancellationToken) {
        let mut warned = false;
        while !shutdown.is_cancelled() {
            match self.setup().await {
                Ok(steps) => {
                    for step in steps {
                        tracing::info!(step = %step, "NATS setup");
                    }
                    return;
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "cannot set up the NATS streams yet; trying again every 2s");
                        warned = true;
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    }

    /// The stream's configuration as `[nats]` wants it.
    fn stream_config(&self, topic: Topic) -> stream::Config {
        stream::Config {
            name: self.stream(topic),
            subjects: vec![self.subject(topic)],
            retention: if topic.consumed() {
                RetentionPolicy::WorkQueue
            } else {
                RetentionPolicy::Limits
            },
            storage: StorageType::File,
            max_age: self.retention,
            duplicate_window: self.dedup_window,
            num_replicas: self.stream_replicas,
            ..Default::default()
        }
    }

    async fn ensure_stream(&self, topic: Topic) -> Result<Vec<SetupStep>, BrokerError> {
        let want = self.stream_config(topic);
        let name = want.name.clone();
        let what = format!("stream {name} ({})", want.subjects.join(", "));
        let err = |reason: String| BrokerError::Stream {
            stream: name.clone(),
            reason,
        };
        let have = match self.js.get_stream(&name).await {
            Ok(s) => s.cached_info().config.clone(),
            Err(e) if stream_missing(&e) => {
                self.js
                    .create_stream(want)
                    .await
                    .map_err(|e| err(e.to_string()))?;
                let action = SetupAction::Created;
                return Ok(vec![SetupStep { what, action }]);
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let (merged, changes) = merge_stream(have.clone(), &want);
        let mut steps = Vec::new();
        if have.retention != want.retention {
            let why = format!(
                "its retention is {:?}, not {:?}: JetStream cannot change it; delete the stream to recreate it",
                have.retention, want.retention
            );
            let action = SetupAction::Kept(why);
            steps.push(SetupStep {
                what: what.clone(),
                action,
            });
        }
        let action = if changes.is_empty() {
            SetupAction::Unchanged
        } else {
            self.js
                .update_stream(merged)
                .await
                .map_err(|e| err(e.to_string()))?;
            SetupAction::Updated(changes)
        };
        steps.push(SetupStep { what, action });
        Ok(steps)
    }

    /// The consumer's configuration: durable, explicit acks, redelivered
    /// after [`ACK_WAIT`], without limit on deliveries.
    fn consumer_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(CONSUMER.into()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_deliver: -1,
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        }
    }

    async fn ensure_consumer(&self, topic: Topic) -> Result<SetupStep, BrokerError> {
        let stream = self.stream(topic);
        let what = format!("consumer {CONSUMER} on {stream}");
        let err = |reason: String| BrokerError::Consumer {
            stream: stream.clone(),
            consumer: CONSUMER.into(),
            reason,
        };
        let want = self.consumer_config();
        let found = self
            .js
            .get_consumer_from_stream::<pull::Config, _, _>(CONSUMER, &stream)
            .await;
        let action = match found {
            Ok(c) => {
                let have = &c.cached_info().config;
                let mut changes = Vec::new();
                if have.ack_wait != want.ack_wait {
                    changes.push(format!(
                        "ack_wait {:?} → {:?}",
                        have.ack_wait, want.ack_wait
                    ));
                }
                if have.max_deliver != want.max_deliver {
                    changes.push(format!(
                        "max_deliver {} → {}",
                        have.max_deliver, want.max_deliver
                    ));
                }
                if have.max_ack_pending != want.max_ack_pending {
                    changes.push(format!(
                        "max_ack_pending {} → {}",
                        have.max_ack_pending, want.max_ack_pending
                    ));
                }
                if changes.is_empty() {
                    SetupAction::Unchanged
                } else {
                    SetupAction::Updated(changes)
                }
            }
            Err(e) if consumer_missing(&e) => SetupAction::Created,
            Err(e) => return Err(err(e.to_string())),
        };
        if action != SetupAction::Unchanged {
            self.js
                .create_consumer_on_stream(want, &stream)
                .await
                .map_err(|e| err(e.to_string()))?;
        }
        Ok(SetupStep { what, action })
    }
}

/// `have` with what `want` sets, and the changes in words.
fn merge_stream(mut have: stream::Config, want: &stream::Config) -> (stream::Config, Vec<String>) {
    let mut changes = Vec::new();
    if have.subjects != want.subjects {
        changes.push(format!(
            "subjects {:?} → {:?}",
            have.subjects, want.subjects
        ));
        have.subjects = want.subjects.clone();
    }
    let human = |d: Duration| humantime::format_duration(d).to_string();
    if have.max_age != want.max_age {
        changes.push(format!(
            "max_age {} → {}",
            human(have.max_age),
            human(want.max_age)
        ));
        have.max_age = want.max_age;
    }
    if have.duplicate_window != want.duplicate_window {
        changes.push(format!(
            "duplicate_window {} → {}",
            human(have.duplicate_window),
            human(want.duplicate_window)
        ));
        have.duplicate_window = want.duplicate_window;
    }
    if have.num_replicas != want.num_replicas {
        changes.push(format!(
            "replicas {} → {}",
            have.num_replicas, want.num_replicas
        ));
        have.num_replicas = want.num_replicas;
    }
    (have, changes)
}

fn stream_missing(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    use async_nats::jetstream::context::GetStreamErrorKind;
    matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

fn consumer_missing(e: &async_nats::jetstream::stream::ConsumerError) -> bool {
    use async_nats::jetstream::stream::ConsumerErrorKind;
    matches!(e.kind(), ConsumerErrorKind::JetStream(j) if j.error_code() == ErrorCode::CONSUMER_NOT_FOUND)
}
