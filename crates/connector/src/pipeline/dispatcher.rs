//! The dispatcher: walks the store's work index and moves each invitation
//! queued → link_issued (Mydex `/ftc/setup`) → sent (mail), with at most
//! `invitations.concurrency` in flight and each campaign's exact rate.
//! Every step is a compare-and-swap, so a restart resumes where it stood;
//! an invitation whose mail was in flight at a crash is mailed again with
//! the same (still unused) link. A campaign that is paused or outside its
//! send window is skipped (see `campaign_control.rs`); a reminder is mailed with
//! the campaign's reminder templates.

use super::retry::retry_delay;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::Settings;
use crate::config::Swap;
use crate::domain::TokenKind;
use crate::metrics::Metrics;
use crate::mydex::{FtcRequest, MydexClient, MydexError};
use crate::notify::email::{
    ComposeError, Draft, MailError, MailHeaders, Mailer, Signer, Templates, compose,
};
use crate::pipeline::campaign_control::CampaignControl;
use crate::pipeline::fail_reason::FailReason;
use crate::pipeline::rate_limit::SlidingWindow;
use crate::store::{Invitation, Kind, State, Store, StoreError, now_ms};

pub struct Dispatcher {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub mydex: Arc<MydexClient>,
    pub mailer: Arc<Mailer>,
    pub templates: Arc<Swap<Templates>>,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Notify>,
    /// Each campaign's rate window; replaced when a reload changes the rate.
    limits: Mutex<HashMap<String, (crate::config::Rate, Arc<SlidingWindow>)>>,
    in_flight: Arc<Mutex<HashSet<u64>>>,
    /// A server-wide SMTP outage, which no invitation is failed for.
    smtp_outage: crate::notify::email::Outage,
    /// Pauses, send windows and error thresholds.
    control: Arc<CampaignControl>,
    /// DKIM, when `smtp.dkim_*` is set.
    signer: Option<Signer>,
}

/// What a pass over the work index started from, to tell when waiting
/// after it is over: the store's work generation, whether each campaign
/// was held, and the earliest retry it saw waiting.
struct Pass {
    work: u64,
    holds: Vec<(String, bool)>,
    earliest_retry: Option<u64>,
}

impl Pass {
    fn new(d: &Dispatcher) -> Self {
        Self {
            work: d.store.work_generation(),
            holds: Self::holds(d),
            earliest_retry: None,
        }
    }

    /// Each campaign and whether it is held now (paused, out of its window).
    fn holds(d: &Dispatcher) -> Vec<(String, bool)> {
        d.control
            .campaigns()
            .into_iter()
            .map(|c| {
                let held = d.control.hold(&c.name).is_some();
                (c.name, held)
            })
            .collect()
    }

    /// Whether every campaign is held now.
    fn all_held(&self) -> bool {
        !self.holds.is_empty() && self.holds.iter().all(|(_, held)| *held)
    }

    fn retry_at(&mut self, at_ms: u64) {
        self.earliest_retry = Some(self.earliest_retry.map_or(at_ms, |t| t.min(at_ms)));
    }

    /// Whether the work or a campaign's hold changed, or a retry is due.
    fn changed(&self, d: &Dispatcher) -> bool {
        d.store.work_generation() != self.work
            || self.earliest_retry.is_some_and(|t| t <= now_ms())
            || Self::holds(d) != self.holds
    }
}

/// What one step did, for the log.
#[derive(Debug)]
enum Outcome {
    LinkIssued,
    Sent,
    Retry {
        why: String,
        after: Duration,
    },
    /// The SMTP server is unreachable: wait, without using up an attempt.
    Waiting {
        why: String,
        after: Duration,
    },
    Failed(FailReason),
    Requeued(&'static str),
    Skipped,
}

impl Dispatcher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Arc<Settings>,
        store: Store,
        mydex: Arc<MydexClient>,
        mailer: Arc<Mailer>,
        templates: Arc<Swap<Templates>>,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
        control: Arc<CampaignControl>,
    ) -> Self {
        // The key was checked with the configuration; a signer that still
        // refuses it is logged and mail goes out unsigned.
        let signer = settings.smtp.dkim.as_ref().and_then(|d| {
            Signer::new(d)
                .inspect_err(|e| tracing::error!(error = %e, "DKIM signing is off"))
                .ok()
        });
        let limits = Mutex::new(
            settings
                .campaigns
                .iter()
                .filter_map(|c| {
                    c.rate
                        .map(|r| (c.name.clone(), (r, Arc::new(SlidingWindow::new(r)))))
                })
                .collect(),
        );
        Self {
            settings,
            store,
            mydex,
            mailer,
            templates,
            metrics,
            wake,
            limits,
            in_flight: Arc::default(),
            smtp_outage: crate::notify::email::Outage::default(),
            control,
            signer,
        }
    }

    /// The rate window of a campaign with this rate (none: unlimited).
    fn limit(&self, name: &str, rate: Option<crate::config::Rate>) -> Option<Arc<SlidingWindow>> {
        // A poisoned lock still holds good windows: never fall back to no limit.
        let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        match rate {
            None => {
                limits.remove(name);
                None
            }
            Some(r) => {
                let entry = limits
                    .entry(name.to_string())
                    .or_insert_with(|| (r, Arc::new(SlidingWindow::new(r))));
                if entry.0 != r {
                    tracing::info!(campaign = name, count = r.count, per = %humantime::format_duration(r.per), "campaign rate changed");
                    *entry = (r, Arc::new(SlidingWindow::new(r)));
                }
                Some(entry.1.clone())
            }
        }
    }

    /// Fail an invitation of `campaign` for `why`, counting it against the
    /// campaign's error threshold.
    async fn fail(&self, campaign: &str, why: FailReason) -> Outcome {
        self.control.failed(campaign, &why.to_string()).await;
        Outcome::Failed(why)
    }

    /// Run until cancelled; then wait (bounded by the caller) for steps in flight.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.settings.invitations.concurrency));
        let mut cursor: Option<u64> = None;
        // A pass over the whole index that started nothing (everything held
        // by a pause or send window, waiting to retry, or in flight) is not
        // repeated until something changes (`wait_for_change`): a large
        // paused campaign must not keep a core busy.
        let mut started_in_pass = false;
        let mut pass = Pass::new(&self);
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            // A store that cannot write could not record what a step did:
            // no link is fetched and no mail sent until the daemon restarts.
            if self.store.failure().is_some() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            // Every campaign paused or outside its send window (checked
            // before each stretch, so a pause also ends a pass under way):
            // nothing could start, and reading on would only open
            // invitations that must wait. An idle daemon does no work that
            // grows with the invitations it holds.
            let now = Pass::new(&self);
            if now.all_held() {
                cursor = None;
                started_in_pass = false;
                if !self.wait_for_change(&now, &shutdown).await {
                    break;
                }
                continue;
            }
            if cursor.is_none() {
                pass = now;
            }
            let Some(batch) = self.read_batch(cursor).await else {
                continue;
            };
            if batch.is_empty() {
                cursor = None;
                if started_in_pass {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                } else if !self.wait_for_change(&pass, &shutdown).await {
                    break;
                }
                started_in_pass = false;
                continue;
            }
            if self
                .start_batch(batch, &permits, &shutdown, &mut cursor, &mut pass)
                .await
            {
                started_in_pass = true;
            }
        }
        // Drain: wait for every step in flight to finish.
        let _ = permits
            .acquire_many(self.settings.invitations.concurrency as u32)
            .await;
    }

    /// The next stretch of the work index after `cursor` (none: not read
    /// this time, already logged).
    async fn read_batch(&self, cursor: Option<u64>) -> Option<Vec<Invitation>> {
        match self.store.work_after(cursor, 256).await {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the work index");
                tokio::time::sleep(Duration::from_secs(1)).await;
                None
            }
        }
    }

    /// After a pass that started nothing: wait, reading no invitation,
    /// until something may have changed what the pass found (new or moved
    /// work, a step ending, a campaign paused, resumed, reloaded or its send
    /// window turning, the earliest retry falling due). `false`: shut down.
    async fn wait_for_change(&self, pass: &Pass, shutdown: &CancellationToken) -> bool {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = self.wake.notified() => return true,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if self.store.failure().is_some() || pass.changed(self) {
                return true;
            }
        }
    }

    /// Start a step for each invitation of `batch` that is due, not held
    /// and not in flight, as permits allow. Returns whether any started.
    async fn start_batch(
        self: &Arc<Self>,
        batch: Vec<Invitation>,
        permits: &Arc<Semaphore>,
        shutdown: &CancellationToken,
        cursor: &mut Option<u64>,
        pass: &mut Pass,
    ) -> bool {
        let mut started = false;
        let now = now_ms();
        for inv in batch {
            if self.store.failure().is_some() {
                break;
            }
            *cursor = Some(inv.id);
            if self.control.hold(&inv.campaign).is_some() {
                continue;
            }
            if inv.next_attempt_ms > now {
                pass.retry_at(inv.next_attempt_ms);
                continue;
            }
            if self
                .in_flight
                .lock()
                .map(|s| s.contains(&inv.id))
                .unwrap_or(true)
            {
                continue;
            }
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            if let Ok(mut s) = self.in_flight.lock() {
                s.insert(inv.id);
                started = true;
            }
            self.spawn_step(inv, permit);
        }
        started
    }

    /// One invitation's step on its own task, holding `permit`; its id is
    /// marked in flight until the step ends.
    fn spawn_step(self: &Arc<Self>, inv: Invitation, permit: tokio::sync::OwnedSemaphorePermit) {
        let me = self.clone();
        let span = tracing::info_span!("invitation", id = inv.id, campaign = %inv.campaign, external_ref = inv.invitee.external_ref.as_deref().unwrap_or(""));
        tokio::spawn(
            async move {
                let id = inv.id;
                // A bug in one step must not leave its invitation
                // marked in flight for ever: it stays where it
                // stood and the next pass tries it again.
                let step = std::panic::AssertUnwindSafe(me.step(inv));
                if futures_util::FutureExt::catch_unwind(step).await.is_err() {
                    tracing::error!("dispatching this invitation panicked (a bug); it stays where it stood and is tried again");
                }
                if let Ok(mut s) = me.in_flight.lock() {
                    s.remove(&id);
                }
                drop(permit);
                me.wake.notify_one();
            }
            .instrument(span),
        );
    }

    async fn step(&self, snapshot: Invitation) {
        let id = snapshot.id;
        // The batch was read a while ago: act on the invitation as it stands
        // now (this id is marked in flight, so nobody else moves it here).
        let inv = match self.store.invitation(id).await {
            Ok(inv) => inv,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the invitation");
                return;
            }
        };
        if inv.next_attempt_ms > now_ms() || self.store.failure().is_some() {
            return;
        }
        // Paused (maybe by the step before this one) or out of its window.
        if self.control.hold(&inv.campaign).is_some() {
            return;
        }
        let state = inv.state;
        let outcome = match state {
            State::Queued => self.issue_link(&inv).await,
            State::LinkIssued => self.send_mail(&inv).await,
            _ => Ok(Outcome::Skipped),
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(StoreError::Conflict { actual, .. }) => {
                tracing::debug!(actual, "invitation moved on elsewhere");
                return;
            }
            Err(e) => {
                self.store.note_error(&e);
                tracing::error!(error = %e, "store error while dispatching; will retry");
                return;
            }
        };
        let recorded = self.record(id, state, &outcome).await;
        self.log_step(&inv, &outcome, recorded);
        // A mail went out: hold this invitation's permit until its `sent`
        // mark is on disk (group commit: the steps in flight share one
        // flush). Otherwise a kill -9 loses every mark of the last 200 ms
        // (the store's write-back interval) and mails all of them again; with
        // this, only invitations in flight at the kill (at most
        // `invitations.concurrency`) can be mailed twice.
        if matches!(outcome, Outcome::LinkIssued | Outcome::Sent)
            && let Err(e) = self.store.flush().await
        {
            tracing::warn!(error = %e, "cannot flush the store after a mail; a crash now may mail it again");
        }
    }

    /// Record `outcome` on invitation `id`, which stood in `state`: the one
    /// place an outcome becomes a store write.
    async fn record(&self, id: u64, state: State, outcome: &Outcome) -> Result<(), StoreError> {
        let store = &self.store;
        match outcome {
            Outcome::LinkIssued | Outcome::Sent | Outcome::Skipped => return Ok(()),
            Outcome::Requeued(why) => {
                store
                    .transition(id, &[state], State::Queued, Some((*why).into()), |i| {
                        i.link = None;
                        i.link_issued_ms = None;
                        i.attempts = 0;
                    })
                    .await
            }
            Outcome::Retry { why, after } => {
                let (why, after) = (why.clone(), *after);
                store
                    .touch(id, state, move |i| {
                        i.attempts += 1;
                        i.next_attempt_ms = now_ms() + after.as_millis() as u64;
                        i.reason = Some(why.clone());
                    })
                    .await
            }
            Outcome::Waiting { why, after } => {
                let (why, after) = (why.clone(), *after);
                store
                    .touch(id, state, move |i| {
                        i.next_attempt_ms = now_ms() + after.as_millis() as u64;
                        i.reason = Some(why.clone());
                    })
                    .await
            }
            Outcome::Failed(why) => {
                let why = why.to_string();
                let note = Some(why.clone());
                store
                    .transition(id, &[state], State::Failed, note, move |i| {
                        i.reason = Some(why.clone())
                    })
                    .await
            }
        }
        .map(|_| ())
    }

    /// Log what a step did and whether it was recorded.
    fn log_step(&self, inv: &Invitation, outcome: &Outcome, recorded: Result<(), StoreError>) {
        let state = inv.state;
        match (outcome, recorded) {
            (_, Err(StoreError::Conflict { actual, .. })) => {
                tracing::debug!(actual, "invitation moved on elsewhere")
            }
            (_, Err(e)) => {
                self.store.note_error(&e);
                tracing::error!(error = %e, "cannot record the outcome; will retry")
            }
            (Outcome::LinkIssued, _) => {
                tracing::info!(state = "link_issued", "one-time link issued")
            }
            (Outcome::Sent, _) => {}
            (Outcome::Waiting { why, after }, _) => {
                tracing::debug!(state = state.as_str(), retry_in = %humantime::format_duration(*after), why, "waiting for the SMTP server")
            }
            (Outcome::Retry { why, after }, _) => {
                tracing::warn!(state = state.as_str(), attempt = inv.attempts + 1, retry_in = %humantime::format_duration(*after), why, "will retry")
            }
            (Outcome::Failed(why), _) => {
                tracing::warn!(state = "failed", reason = %why, "invitation failed")
            }
            (Outcome::Requeued(why), _) => {
                tracing::info!(state = "queued", why, "back to queued for a fresh link")
            }
            (Outcome::Skipped, _) => {}
        }
    }

    async fn issue_link(&self, inv: &Invitation) -> Result<Outcome, StoreError> {
        let req = FtcRequest {
            linking_token: inv.linking_token.as_str().to_string(),
            mydexid: inv.invitee.mydexid.as_ref().map(|m| m.to_string()),
            version: match inv.kind {
                Kind::Connect | Kind::Identify => None,
                Kind::Update { version } => Some(version),
            },
        };
        let link = match inv.kind {
            Kind::Identify => self.mydex.identify(&req.linking_token).await,
            _ => self.mydex.ftc_setup(&req).await,
        };
        match link {
            Ok(link) => {
                let url = link.url;
                self.store
                    .transition(
                        inv.id,
                        &[State::Queued],
                        State::LinkIssued,
                        None,
                        move |i| {
                            i.link = Some(url.clone());
                            i.link_issued_ms = Some(now_ms());
                            i.attempts = 0;
                            i.next_attempt_ms = 0;
                            i.reason = None;
                        },
                    )
                    .await?;
                // Go straight on to the mail, without a trip through the index.
                let next = self.store.invitation(inv.id).await?;
                let sent = self.send_mail(&next).await?;
                self.apply_mail_outcome(&next, sent).await?;
                Ok(Outcome::LinkIssued)
            }
            Err(e @ MydexError::Unavailable { .. }) => Ok(Outcome::Retry {
                why: e.to_string(),
                after: retry_delay(inv.attempts),
            }),
            Err(e) => Ok(self.fail(&inv.campaign, FailReason::Mydex(e)).await),
        }
    }

    /// Record what a mail attempt made right after issuing the link (a
    /// wait, a retry or a failure; anything else leaves it as it is).
    async fn apply_mail_outcome(
        &self,
        inv: &Invitation,
        outcome: Outcome,
    ) -> Result<(), StoreError> {
        match &outcome {
            Outcome::Waiting { why, .. } => {
                tracing::debug!(state = "link_issued", why, "waiting for the SMTP server")
            }
            Outcome::Retry { why, .. } => {
                tracing::warn!(state = "link_issued", why, "mail deferred; will retry")
            }
            Outcome::Failed(why) => {
                tracing::warn!(state = "failed", reason = %why, "invitation failed")
            }
            _ => return Ok(()),
        }
        self.record(inv.id, State::LinkIssued, &outcome).await
    }

    async fn send_mail(&self, inv: &Invitation) -> Result<Outcome, StoreError> {
        let Some(link) = inv.link.clone() else {
            return Ok(Outcome::Requeued("no link recorded"));
        };
        let issued = inv.link_issued_ms.unwrap_or(0);
        let ttl = self.settings.invitations.link_ttl.as_millis() as u64;
        // Leave the member time to use it: a link near its end gets replaced.
        if now_ms().saturating_sub(issued) + ttl / 10 >= ttl {
            return Ok(Outcome::Requeued("link too old to mail"));
        }
        let Some(campaign) = self.control.campaign(&inv.campaign) else {
            return Ok(Outcome::Failed(FailReason::CampaignGone(
                inv.campaign.clone(),
            )));
        };
        // Checked again right before the mail: the person may have
        // unsubscribed or bounced while this invitation was on its way.
        let person = self.store.mail_keys().person(&inv.invitee.email);
        if let Some(s) = self.store.suppression(&person).await? {
            return Ok(Outcome::Failed(FailReason::Suppressed(s.reason)));
        }
        let message = match self.message(inv, &campaign, &link) {
            Ok(m) => m,
            Err(why) => return Ok(Outcome::Failed(why)),
        };
        let window = self.limit(&campaign.name, campaign.rate);
        let slot = match &window {
            Some(limit) => Some(limit.acquire().await),
            None => None,
        };
        let sent = self.mailer.send(message).await;
        drop(slot);
        self.mail_outcome(inv, &campaign.name, sent).await
    }

    /// The invitation's message, composed as every mail is
    /// (`notify::email::compose`): its templates rendered, the QR code of
    /// `link` inline, signed.
    fn message(
        &self,
        inv: &Invitation,
        campaign: &crate::config::Campaign,
        link: &str,
    ) -> Result<lettre::Message, FailReason> {
        let kind = match inv.kind {
            Kind::Connect => "connect",
            Kind::Update { .. } => "update",
            Kind::Identify => "identify",
        };
        let unsubscribe_url = self.unsubscribe_url(inv.id);
        let draft = Draft {
            id: inv.id,
            campaign: &campaign.name,
            invitee: &inv.invitee,
            to: inv.invitee.email.as_str(),
            kind,
            version: inv.version,
            reminder: inv.reminders,
            max_reminders: campaign.max_reminders,
            link,
            unsubscribe_url: &unsubscribe_url,
            headers: self.headers(inv.id),
            subject_prefix: None,
        };
        let templates = self.templates.get();
        compose(
            &templates,
            &self.settings.smtp.from,
            self.signer.as_ref(),
            draft,
        )
        .map(|c| c.message)
        .map_err(|e| match e {
            ComposeError::Qr(e) => FailReason::Qr(e),
            ComposeError::Render(e) => FailReason::Render(e),
            ComposeError::Message(e) => FailReason::Message(e),
        })
    }

    /// The one-click unsubscribe URL of invitation `id`'s mail.
    fn unsubscribe_url(&self, id: u64) -> String {
        let token = self.store.mail_keys().token(TokenKind::Unsubscribe, id);
        format!("{}/unsubscribe/{token}", self.settings.callback.public_url)
    }

    /// `List-Unsubscribe` (RFC 8058) and the VERP envelope sender.
    fn headers(&self, id: u64) -> MailHeaders {
        let keys = self.store.mail_keys();
        let mut list_unsubscribe = format!("<{}>", self.unsubscribe_url(id));
        if let Some(mailto) = &self.settings.smtp.unsubscribe_mailto {
            let token = keys.token(TokenKind::Unsubscribe, id);
            list_unsubscribe.push_str(&format!(
                ", <mailto:{mailto}?subject=unsubscribe%20{token}>"
            ));
        }
        let envelope_from = self
            .settings
            .smtp
            .return_path
            .as_ref()
            .map(|r| r.replace("{token}", &keys.token(TokenKind::Bounce, id)));
        MailHeaders {
            list_unsubscribe,
            envelope_from,
            message_token: Some(keys.token(TokenKind::Message, id)),
        }
    }

    /// What the SMTP server's answer makes of the invitation (`sent` is
    /// recorded here; the rest by the caller).
    async fn mail_outcome(
        &self,
        inv: &Invitation,
        campaign: &str,
        sent: Result<(), MailError>,
    ) -> Result<Outcome, StoreError> {
        let count = |c: &std::sync::atomic::AtomicU64| {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        match sent {
            Ok(()) => {
                self.smtp_outage.reachable();
                self.control.sent(campaign);
                count(&self.metrics.emails_sent);
                self.store
                    .transition(inv.id, &[State::LinkIssued], State::Sent, None, |i| {
                        i.attempts = 0;
                        i.next_attempt_ms = 0;
                        i.reason = None;
                    })
                    .await?;
                tracing::info!(state = "sent", email = %inv.invitee.email, reminder = inv.reminders, "invitation mailed");
                Ok(Outcome::Sent)
            }
            Err(MailError::Unreachable(why)) => {
                count(&self.metrics.emails_deferred);
                let after = self.smtp_outage.unreachable(&why);
                Ok(Outcome::Waiting {
                    why: format!("SMTP server unreachable: {why}"),
                    after,
                })
            }
            Err(MailError::Permanent(why)) => {
                self.smtp_outage.reachable();
                count(&self.metrics.emails_failed);
                Ok(self.fail(campaign, FailReason::SmtpRefused(why)).await)
            }
            Err(MailError::Transient(why)) => {
                self.smtp_outage.reachable();
                count(&self.metrics.emails_deferred);
                if inv.attempts + 1 >= self.settings.smtp.max_attempts {
                    let why = FailReason::SmtpExhausted {
                        attempts: inv.attempts + 1,
                        why,
                    };
                    Ok(self.fail(campaign, why).await)
                } else {
                    Ok(Outcome::Retry {
                        why,
                        after: retry_delay(inv.attempts),
                    })
                }
            }
        }
    }
}
