//! The delivery worker: takes queued readings per member and
//! dataset, POSTs them in batches with the member's key, and settles each
//! batch by the answer — each reading lands in the PDS exactly once:
//!
//! 1. a batch is claimed and the claim made durable *before* the POST;
//! 2. the POST is sent once: 2xx delivered; nothing sent → queued again;
//!    403 → held (or paused, when Mydex refuses our connection); other 4xx →
//!    failed; no answer (5xx, 429, timeout, reset) → unknown;
//! 3. an unknown batch (also every in-flight one found at start) is read
//!    back by `external_id` after `settle`, and only what Mydex does not
//!    hold goes back to the queue. Nothing is ever blindly resent.
//!
//! Held rows are released when their cause may have cleared and fail after
//! `hold_for`; a member and dataset whose try Mydex refused is tried again
//! when the member's record changes, else after a backoff (a minute
//! doubling to an hour: `domain::HeldGroup`), one batch at a time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::rate_limit::SlidingWindow;
use super::retry::retry_delay;
use crate::config::DeliverySettings;
use crate::domain::{DatasetName, RetryCause};
use crate::metrics::Metrics;
use crate::mydex::{CreateOutcome, PdsClient, PdsMember, ReadError};
use crate::store::{Batch, BatchState, Claim, ReadingRow, Settle, Store, StoreError, now_ms};

/// How often held rows are looked at (released, or failed after `hold_for`);
/// a look only reads, unless a row's state changes.
const HOLD_CHECK: Duration = Duration::from_secs(2);
/// How long in-flight batches may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(20);
/// Batches of one group claimed together: one transaction, one flush.
const CLAIM_AHEAD: usize = 4;
/// How long a partial batch waits for more rows while a readings file is
/// still being taken in (its rows arrive in chunks).
const LINGER: Duration = Duration::from_millis(500);

pub struct Delivery {
    settings: DeliverySettings,
    store: Store,
    pds: Arc<PdsClient>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    slots: Arc<Semaphore>,
    window: Option<SlidingWindow>,
    /// Groups (connection, dataset) and unknown batches being worked now.
    busy: Mutex<HashSet<String>>,
    /// Mydex refused our connection: no POST before this.
    paused_until: Mutex<Option<Instant>>,
    pauses: std::sync::atomic::AtomicU32,
    /// Groups whose partial batch is waiting for more rows, since when.
    partial_since: Mutex<HashMap<String, Instant>>,
    /// The group after which the next schedule starts, so every group gets
    /// its turn, not only the first ones in key order.
    cursor: Mutex<Option<(String, DatasetName)>>,
}

impl Delivery {
    pub fn new(
        settings: DeliverySettings,
        store: Store,
        pds: Arc<PdsClient>,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(settings.concurrency)),
            window: settings.rate.map(SlidingWindow::new),
            settings,
            store,
            pds,
            metrics,
            wake,
            busy: Mutex::new(HashSet::new()),
            paused_until: Mutex::new(None),
            pauses: std::sync::atomic::AtomicU32::new(0),
            partial_since: Mutex::new(HashMap::new()),
            cursor: Mutex::new(None),
        }
    }

    /// Work until cancelled, then let batches in flight finish (bounded).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let settle_ms = self.settings.settle.as_millis() as u64;
        match self.store.unfinished_batches(true, settle_ms).await {
            Ok(b) if !b.is_empty() => {
                tracing::info!(
                    batches = b.len(),
                    "reading batches with an unknown outcome: read back before anything is sent again"
                );
            }
            Err(e) => tracing::error!(error = %e, "cannot read unfinished reading batches"),
            Ok(_) => {}
        }
        let mut last_hold_check = Instant::now() - HOLD_CHECK;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            if self.store.failure().is_some() {
                continue;
            }
            if last_hold_check.elapsed() >= HOLD_CHECK {
                last_hold_check = Instant::now();
                self.check_holds().await;
            }
            if let Err(e) = self.schedule(&shutdown).await {
                self.store.note_error(&e);
                tracing::error!(error = %e, "delivery: cannot read the store");
            }
        }
        let n = self.settings.concurrency as u32;
        let _ = tokio::time::timeout(DRAIN, self.slots.acquire_many(n)).await;
    }

    async fn check_holds(&self) {
        let (hold_for, probe) = (
            self.settings.hold_for.as_millis() as u64,
            self.settings.batch_size,
        );
        match self.store.release_holds(hold_for, probe).await {
            Ok((released, failed)) if released + failed > 0 => {
                tracing::info!(
                    released,
                    failed,
                    "held readings: released to the queue or failed after hold_for"
                );
            }
            Err(e) => tracing::error!(error = %e, "delivery: cannot check held readings"),
            Ok(_) => {}
        }
    }

    fn paused(&self) -> bool {
        let mut p = self.paused_until.lock();
        match *p {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                *p = None;
                false
            }
            None => false,
        }
    }

    /// Start a task for each unknown batch due and each group of queued
    /// rows not being worked, as slots allow.
    async fn schedule(self: &Arc<Self>, shutdown: &CancellationToken) -> Result<(), StoreError> {
        if self.paused() {
            return Ok(());
        }
        let now = now_ms();
        let limit = self.settings.concurrency * 4;
        let after = self.cursor.lock().clone();
        let unknown = self.store.unfinished_batches(false, 0).await?;
        let groups = self.store.work_groups_after(after, limit).await?;
        for b in unknown
            .into_iter()
            .filter(|b| b.state == BatchState::Unknown && b.next_attempt_ms <= now)
        {
            let tag = format!("b/{}", b.id);
            let Some(permit) = self.take(&tag) else {
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                me.read_back(b).await;
                me.busy.lock().remove(&tag);
            });
        }
        for (conn, ds) in groups {
            if shutdown.is_cancelled() {
                break;
            }
            let tag = format!("g/{conn}\x1f{ds}");
            if !self.busy.lock().contains(&tag) && self.slots.available_permits() == 0 {
                break;
            }
            let Some(permit) = self.take(&tag) else {
                continue;
            };
            *self.cursor.lock() = Some((conn.clone(), ds.clone()));
            let (me, stop) = (self.clone(), shutdown.clone());
            let span = tracing::info_span!("reading_group", connection_id = %conn, dataset = %ds);
            tokio::spawn(
                async move {
                    let _permit = permit;
                    let sent = me.work_group(&conn, &ds, &stop).await;
                    me.busy.lock().remove(&tag);
                    // Only after work: a group left waiting for a full
                    // batch is looked at again on the next tick, not in a
                    // loop beside the intake it waits for.
                    if sent {
                        me.wake.notify_one();
                    }
                }
                .instrument(span),
            );
        }
        Ok(())
    }

    /// A slot and the busy mark for `tag`, if both are free.
    fn take(&self, tag: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let mut busy = self.busy.lock();
        if busy.contains(tag) {
            return None;
        }
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        busy.insert(tag.to_string());
        Some(permit)
    }

    /// Send batches of one group until it is empty, stopped or paused.
    /// Up to [`CLAIM_AHEAD`] batches are claimed in one transaction and
    /// made durable by one flush, then POSTed one after another; those not
    /// sent when the group stops go back to the queue (nothing was sent).
    /// Returns whether it claimed anything.
    async fn work_group(&self, conn: &str, ds: &DatasetName, stop: &CancellationToken) -> bool {
        let tag = format!("{conn}\x1f{ds}");
        let mut claimed = false;
        while !stop.is_cancelled() && !self.paused() {
            let full_only = self.wait_for_full(&tag);
            let claims = match self.claim(conn, ds, full_only).await {
                Ok(c) => c,
                Err(e) => {
                    self.store.note_error(&e);
                    tracing::error!(error = %e, "delivery: cannot claim a batch");
                    return claimed;
                }
            };
            if claims.is_empty() {
                if full_only {
                    // A partial batch while a file is still taken in: it
                    // waits a little for the rest of its rows.
                    self.partial_since
                        .lock()
                        .entry(tag)
                        .or_insert_with(Instant::now);
                }
                return claimed;
            }
            self.partial_since.lock().remove(&tag);
            claimed = true;
            // The claims are on disk before a byte is sent.
            if let Err(e) = self.store.flush().await {
                tracing::error!(error = %e, "delivery: cannot make the claim durable; not sending");
                return claimed;
            }
            if !self.send_claimed(claims).await {
                return claimed;
            }
        }
        claimed
    }

    /// Claim up to [`CLAIM_AHEAD`] batches of the group in one step; only
    /// full ones when `full_only` and a readings file is being taken in.
    async fn claim(
        &self,
        conn: &str,
        ds: &DatasetName,
        full_only: bool,
    ) -> Result<Vec<Claim>, StoreError> {
        let full_only = full_only && self.store.readings_intake_running().await?;
        let max = self.settings.batch_size;
        self.store
            .claim_batches(conn, ds, max, CLAIM_AHEAD, full_only)
            .await
    }

    /// Whether a group should wait for a full batch: yes, unless its
    /// partial batch has waited [`LINGER`] already.
    fn wait_for_full(&self, tag: &str) -> bool {
        self.partial_since
            .lock()
            .get(tag)
            .is_none_or(|t| t.elapsed() < LINGER)
    }

    /// POST claimed batches in turn; false: the group stops (the batches
    /// not sent are settled as not sent).
    async fn send_claimed(&self, claims: Vec<Claim>) -> bool {
        let mut go_on = true;
        for claim in claims {
            match claim {
                Claim::Batch(batch, rows) if go_on => {
                    let span =
                        tracing::info_span!("reading_batch", batch = batch.id, rows = rows.len());
                    go_on = self.send(&batch, &rows).instrument(span).await;
                }
                Claim::Batch(batch, _) => {
                    let requeued = self.store.settle_batch(&batch, Settle::Requeue).await;
                    if let Err(e) = requeued {
                        tracing::error!(error = %e, "delivery: cannot requeue a batch not sent");
                    }
                }
                Claim::Held(n) => {
                    tracing::info!(rows = n, "readings held: the member cannot take them now");
                    return false;
                }
                Claim::Empty => {}
            }
        }
        go_on
    }

    /// POST one claimed batch once and settle it; false: stop this group.
    /// Long: one arm per answer of the create call, each with its log line.
    async fn send(&self, batch: &Batch, rows: &[ReadingRow]) -> bool {
        let member = match self.member_key(&batch.connection_id).await {
            Some(m) => m,
            None => {
                return self
                    .settle(batch, Settle::Hold("no connection key".into()), "held")
                    .await;
            }
        };
        self.count_retry(batch, member.2).await;
        let body: Vec<serde_json::Value> = rows.iter().map(row_json).collect();
        let outcome = {
            let _slot = match &self.window {
                Some(w) => Some(w.acquire().await),
                None => None,
            };
            let pm = PdsMember {
                uid: member.0,
                connection_id: &batch.connection_id,
                key: &member.1,
            };
            self.pds
                .create_once(&pm, batch.dataset.as_str(), &body)
                .await
        };
        match outcome {
            CreateOutcome::Created => {
                let now = now_ms();
                for r in rows {
                    self.metrics
                        .reading_delivered(Duration::from_millis(now.saturating_sub(r.created_ms)));
                }
                self.settle(batch, Settle::Delivered, "delivered").await
            }
            CreateOutcome::NotSent(why) => {
                tracing::warn!(why, "reading batch not sent; queued again");
                self.settle(batch, Settle::Requeue, "not_sent").await;
                tokio::time::sleep(retry_delay(0).min(Duration::from_secs(2))).await;
                false
            }
            CreateOutcome::OurConnection(why) => {
                let n = self
                    .pauses
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let wait = retry_delay(n.min(6));
                tracing::error!(
                    why,
                    wait_s = wait.as_secs(),
                    "Mydex refuses our connection: delivery paused"
                );
                *self.paused_until.lock() = Some(Instant::now() + wait);
                self.settle(batch, Settle::Requeue, "paused").await;
                false
            }
            CreateOutcome::Refused(why) => {
                self.settle(batch, Settle::Hold(format!("Mydex refused: {why}")), "held")
                    .await;
                self.log_refused(batch, &why).await;
                false
            }
            CreateOutcome::Failed(why) => {
                tracing::warn!(why, "Mydex refused the batch: readings failed");
                self.settle(
                    batch,
                    Settle::Fail(format!("Mydex refused: {why}")),
                    "failed",
                )
                .await
            }
            CreateOutcome::Unknown(why) => {
                tracing::warn!(why, "reading batch outcome unknown: it will be read back");
                let next = (batch.posted_ms + self.settings.settle.as_millis() as u64)
                    .max(now_ms() + retry_delay(batch.attempts).as_millis() as u64 / 4);
                self.settle(
                    batch,
                    Settle::Unknown {
                        next_attempt_ms: next,
                        why,
                    },
                    "unknown",
                )
                .await;
                false
            }
        }
    }

    async fn settle(&self, batch: &Batch, how: Settle, result: &str) -> bool {
        self.metrics.delivery_batch(result);
        match self.store.settle_batch(batch, how).await {
            Ok(()) => {
                if result == "delivered" {
                    self.pauses.store(0, std::sync::atomic::Ordering::Relaxed);
                }
                true
            }
            Err(e) => {
                self.store.note_error(&e);
                tracing::error!(error = %e, "delivery: cannot settle a batch");
                false
            }
        }
    }

    /// A batch about to go for a member and dataset whose last try was
    /// refused is a retry: counted by what made it due.
    async fn count_retry(&self, batch: &Batch, member_updated_ms: u64) {
        let held = self.store.held_group(&batch.connection_id, &batch.dataset);
        let Ok(Some(g)) = held.await else {
            return;
        };
        let cause = g
            .due(now_ms(), member_updated_ms)
            .unwrap_or(RetryCause::Backoff);
        self.metrics.held_retry(cause.as_str());
        tracing::info!(
            cause = cause.as_str(),
            refused_tries = g.tries,
            "trying held readings again"
        );
    }

    /// The refusal's log line, with when the group is tried next.
    async fn log_refused(&self, batch: &Batch, why: &str) {
        let group = self
            .store
            .held_group(&batch.connection_id, &batch.dataset)
            .await
            .ok()
            .flatten();
        let (tries, next_s) = group.map_or((0, 0), |g| {
            (g.tries, g.next_ms.saturating_sub(now_ms()).div_ceil(1000))
        });
        tracing::warn!(
            why,
            refused_tries = tries,
            next_try_in_s = next_s,
            "Mydex refused the member's dataset: readings held until the member's record changes or the backoff is over"
        );
    }

    /// The member's uid, key (opened from the store) and last change.
    async fn member_key(&self, conn: &str) -> Option<(u64, secrecy::SecretString, u64)> {
        let m = self.store.member(conn).await.ok()??;
        match self
            .store
            .sealer()
            .open_secret(&m.sealed_key, m.connection_id.as_bytes())
        {
            Ok(k) => Some((m.uid, k, m.updated_ms)),
            Err(e) => {
                tracing::error!(error = %e, "cannot open the member's connection key");
                None
            }
        }
    }

    /// Read an unknown batch back and settle it by what Mydex holds.
    async fn read_back(&self, batch: Batch) {
        let span = tracing::info_span!("reading_read_back", batch = batch.id, connection_id = %batch.connection_id);
        async {
            let Some((uid, key, _)) = self.member_key(&batch.connection_id).await else {
                return;
            };
            let rows = match self.store.batch_external_ids(batch.clone()).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "delivery: cannot read a batch's rows; trying later");
                    return;
                }
            };
            let pm = PdsMember {
                uid,
                connection_id: &batch.connection_id,
                key: &key,
            };
            match self
                .pds
                .read_external_ids(&pm, batch.dataset.as_str(), &rows)
                .await
            {
                Ok(found) => {
                    tracing::info!(
                        found = found.len(),
                        missing = rows.len() - found.len(),
                        "reading batch read back"
                    );
                    if let Err(e) = self.store.settle_read_back(&batch, found).await {
                        tracing::error!(error = %e, "delivery: cannot settle a read-back");
                    }
                    self.wake.notify_one();
                }
                Err(e) => self.read_back_failed(&batch, e).await,
            }
        }
        .instrument(span)
        .await
    }

    async fn read_back_failed(&self, batch: &Batch, e: ReadError) {
        let hold_for = self.settings.hold_for.as_millis() as u64;
        let how = if batch.posted_ms + hold_for <= now_ms() {
            Settle::Fail(format!("outcome unknown after hold_for: {e}"))
        } else {
            let next = now_ms() + retry_delay(batch.attempts).as_millis() as u64;
            Settle::Unknown {
                next_attempt_ms: next,
                why: e.to_string(),
            }
        };
        tracing::warn!(error = %e, "cannot read a reading batch back; trying later");
        if let Err(e) = self.store.settle_batch(batch, how).await {
            tracing::error!(error = %e, "delivery: cannot settle a batch not read back");
        }
    }
}

/// A row as sent: its fields and `external_id`, values as strings.
fn row_json(r: &ReadingRow) -> serde_json::Value {
    let mut m: serde_json::Map<String, serde_json::Value> = r
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    m.insert("external_id".into(), r.external_id.clone().into());
    serde_json::Value::Object(m)
}
