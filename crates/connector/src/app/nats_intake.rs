//! `run` with `[nats]`: the callbacks and one-click unsubscribes edges
//! published, taken from JetStream with the durable consumer `connector`.
//! Each message is opened with the daemon's private key, its
//! `Authentication` checked again (in constant time) against the Connection
//! Token, and passed through the very path of the daemon's own listener:
//! kept raw (sealed in sled), judged (applied, or quarantined with its
//! reason), flushed — and only then acknowledged. A daemon killed between
//! the two gets the message again within the ack wait (30 s); it is then
//! judged a replay (the callback's digest) and changes nothing. A message
//! whose `Mydex-Seal-Key` names a key this daemon does not hold, vouched
//! for by our Connection Token (`broker/sealed_to.rs`: an edge sealed it),
//! is held: left in the stream for a daemon with that key, with one error
//! line per key, `/metrics` and `/readyz` saying so (`broker/held.rs`). A
//! message naming no key or one of ours that does not open, garbage, one
//! naming another key without our edges' MAC, or not authenticated is
//! rejected with a log line (terminated: never delivered again) and changes
//! nothing we hold. The streams are created first if missing, as `nats
//! setup` does.

use std::sync::Arc;
use std::time::Instant;

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::broker::consume::{Delivery, HOLD_DELAY};
use crate::broker::envelope::Received;
use crate::broker::seal::is_fingerprint;
use crate::broker::sealed_to::{SEAL_KEY_HEADER, SEAL_MAC_HEADER, vouched};
use crate::broker::{Broker, Handled, Held, SealKeys, Topic};
use crate::metrics::Metrics;
use crate::server::callback_endpoint::{StoreKeeper, keep_judge_flush, settle_verdict};
use crate::store::StoreError;

/// Messages of one stream in the handler at once.
const CONCURRENCY: usize = 64;

/// What the daemon's NATS intake is given.
pub struct NatsIntake {
    pub broker: Broker,
    pub keeper: StoreKeeper,
    /// The keys that open what edges sealed.
    pub keys: SealKeys,
    /// Callbacks carry its hash; it vouches for an edge's seal headers.
    pub connection_token: SecretString,
    pub metrics: Arc<Metrics>,
    /// What is held in the streams (shared with `/readyz` and `/metrics`).
    pub held: Arc<Held>,
}

/// What handling a message from NATS shares.
struct Intake {
    keeper: StoreKeeper,
    keys: SealKeys,
    connection_token: SecretString,
    expected_auth: String,
    metrics: Arc<Metrics>,
    held: Arc<Held>,
    /// The streams' names (in log lines and the held counts).
    callbacks: String,
    unsubscribes: String,
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
pub fn start(given: NatsIntake, shutdown: &CancellationToken, tasks: &mut JoinSet<()>) {
    let NatsIntake {
        broker,
        keeper,
        keys,
        connection_token,
        metrics,
        held,
    } = given;
    tasks.spawn(broker.clone().setup_when_reachable(shutdown.clone()));
    tracing::info!(
        seal_key = keys.current(),
        previous_seal_key = keys.previous(),
        "taking callbacks and unsubscribes from NATS: opening what is sealed to these keys"
    );
    for (stream, n) in held.by_stream(Instant::now()) {
        metrics.nats_held(&stream, n);
    }
    let intake = Arc::new(Intake {
        keeper,
        keys,
        expected_auth: crate::mydex::token_hash(connection_token.expose_secret()),
        connection_token,
        metrics: metrics.clone(),
        held,
        callbacks: broker.stream(Topic::Callbacks),
        unsubscribes: broker.stream(Topic::Unsubscribes),
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
    /// Open and parse a message from `stream` with the key it names (any
    /// of ours when it names none); why not, as a rejection or a hold.
    fn open(&self, stream: &str, d: &Delivery) -> Result<Received, Handled> {
        let opened = match d.header(SEAL_KEY_HEADER) {
            None => self.keys.open_any(&d.payload),
            Some(fingerprint) => match self.keys.named(fingerprint) {
                Some(key) => key.open(&d.payload),
                None => return Err(self.hold_or_reject(stream, d, fingerprint)),
            },
        };
        let plain = zeroize::Zeroizing::new(opened.map_err(|e| Handled::Reject(e.to_string()))?);
        Received::parse(&plain).map_err(|e| Handled::Reject(e.to_string()))
    }

    /// A message naming a key we do not hold: held when one of our edges
    /// sealed it (its MAC holds: nothing is lost), else rejected (anyone
    /// with publish rights could name a key; only our edges may make us
    /// keep what we cannot open).
    fn hold_or_reject(&self, stream: &str, d: &Delivery, fingerprint: &str) -> Handled {
        if !is_fingerprint(fingerprint) {
            return Handled::Reject(format!(
                "its {SEAL_KEY_HEADER} header is not a key fingerprint"
            ));
        }
        let token = self.connection_token.expose_secret().as_bytes();
        let mac = d.header(SEAL_MAC_HEADER).unwrap_or_default();
        if !vouched(token, fingerprint, &d.payload, mac) {
            return Handled::Reject(format!(
                "sealed to another key ({fingerprint}) without our edges' {SEAL_MAC_HEADER} (keyed with the Connection Token): not from one of our edges"
            ));
        }
        let now = Instant::now();
        if self.held.hold(stream, d.stream_sequence, fingerprint, now) {
            tracing::error!(
                stream,
                seq = d.stream_sequence,
                sealed_to = fingerprint,
                seal_key = self.keys.current(),
                previous_seal_key = self.keys.previous(),
                "messages in NATS are sealed to a key this daemon does not hold (fingerprint {fingerprint}; this daemon opens {}): held in the stream, not acknowledged and not lost, delivered again every {}s for as long as nats.retention keeps them. Restart the daemon with the private key whose fingerprint is {fingerprint} (nats.seal_key_file, or nats.previous_seal_key_file while rotating), or give the edges this daemon's seal.pub; /readyz fails until none is held",
                self.keys.current(),
                HOLD_DELAY.as_secs()
            );
        }
        for (s, n) in self.held.by_stream(now) {
            self.metrics.nats_held(&s, n);
        }
        Handled::Hold
    }

    async fn callback(&self, d: Delivery) -> Result<Handled, IntakeError> {
        let cb = match self.open(&self.callbacks, &d) {
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
        let u = match self.open(&self.unsubscribes, &d) {
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
