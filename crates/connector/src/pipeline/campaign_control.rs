//! Campaigns at run time: whether each may send now (paused by an operator,
//! paused by its own error threshold, or outside its send window), and the
//! counts that decide the threshold. Pauses live in the store, so they
//! survive a restart; everything else is recomputed. It also holds the
//! campaigns' settings as they stand now: SIGHUP replaces them (`reload.rs`).

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;

use crate::admin_api::status::{CampaignBounces, CampaignStatus};

use crate::config::Campaign;
use crate::store::{CampaignPause, PausedBy, Store, StoreError, now_ms};

/// Why a campaign sends nothing right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    Paused(CampaignPause),
    OutsideWindow,
}

#[derive(Debug, Default)]
struct Runtime {
    pause: Option<CampaignPause>,
    failures_in_row: u32,
    sent: u64,
    failed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no campaign named {0:?} is configured")]
    Unknown(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

pub struct CampaignControl {
    store: Store,
    campaigns: parking_lot::RwLock<Vec<Campaign>>,
    state: Mutex<HashMap<String, Runtime>>,
}

impl CampaignControl {
    /// Load the pauses kept in the store for the configured campaigns.
    pub async fn new(store: Store, campaigns: &[Campaign]) -> Result<Self, StoreError> {
        let pauses = store.campaign_pauses().await?;
        let state = campaigns
            .iter()
            .map(|c| {
                let pause = pauses.get(&c.name).cloned();
                if let Some(p) = &pause {
                    tracing::warn!(campaign = %c.name, by = ?p.by, reason = %p.reason, "campaign is paused (from before the restart); resume it with `mydex-connector campaign resume`");
                }
                (
                    c.name.clone(),
                    Runtime {
                        pause,
                        ..Runtime::default()
                    },
                )
            })
            .collect();
        Ok(Self {
            store,
            campaigns: parking_lot::RwLock::new(campaigns.to_vec()),
            state: Mutex::new(state),
        })
    }

    /// The campaign's settings as they stand now.
    pub fn campaign(&self, name: &str) -> Option<Campaign> {
        self.campaigns
            .read()
            .iter()
            .find(|c| c.name == name)
            .cloned()
    }

    /// A reload's settings for the running campaigns (same names; work in
    /// flight keeps going, the next step sees the new settings).
    /// The campaigns as configured now (after the last reload).
    pub fn campaigns(&self) -> Vec<Campaign> {
        self.campaigns.read().clone()
    }

    pub fn replace_campaigns(&self, campaigns: Vec<Campaign>) {
        *self.campaigns.write() = campaigns;
    }

    /// Whether `name` must hold its mail now.
    pub fn hold(&self, name: &str) -> Option<Hold> {
        if let Some(p) = self.state.lock().get(name).and_then(|r| r.pause.clone()) {
            return Some(Hold::Paused(p));
        }
        match self.campaign(name).and_then(|c| c.send_window) {
            Some(w) if !w.open_now() => Some(Hold::OutsideWindow),
            _ => None,
        }
    }

    /// An invitation of `name` was mailed.
    pub fn sent(&self, name: &str) {
        let mut st = self.state.lock();
        let r = st.entry(name.to_string()).or_default();
        r.sent += 1;
        r.failures_in_row = 0;
    }

    /// An invitation of `name` failed for good; past the campaign's
    /// `error_threshold` failures in a row, the campaign pauses itself.
    pub async fn failed(&self, name: &str, why: &str) {
        let threshold = self.campaign(name).and_then(|c| c.error_threshold);
        let pause = {
            let mut st = self.state.lock();
            let r = st.entry(name.to_string()).or_default();
            r.failed += 1;
            r.failures_in_row += 1;
            match threshold {
                Some(t) if r.failures_in_row >= t && r.pause.is_none() => {
                    let p = CampaignPause {
                        by: PausedBy::ErrorThreshold,
                        reason: format!(
                            "{} invitations failed in a row (error_threshold = {t}); last: {why}",
                            r.failures_in_row
                        ),
                        at_ms: now_ms(),
                    };
                    r.pause = Some(p.clone());
                    Some(p)
                }
                _ => None,
            }
        };
        if let Some(p) = pause {
            tracing::error!(campaign = name, reason = %p.reason, "campaign paused itself: its error threshold was reached; fix the cause, then `mydex-connector campaign resume {name}`");
            if let Err(e) = self.store.set_campaign_pause(name, Some(p)).await {
                tracing::error!(campaign = name, error = %e, "cannot keep the pause in the store; it holds until a restart");
            }
        }
    }

    /// A bounce of `name` was recorded: past the campaign's
    /// `bounce_threshold` share of hard bounces (after at least 100 mails),
    /// the campaign pauses itself.
    pub async fn bounced(&self, name: &str) {
        let Some(threshold) = self.campaign(name).and_then(|c| c.bounce_threshold) else {
            return;
        };
        let Ok((mailed, hard, _, _)) = self.store.campaign_bounces(name).await else {
            return;
        };
        if mailed < 100 || (hard as f64) <= threshold * mailed as f64 {
            return;
        }
        let pause = {
            let mut st = self.state.lock();
            let r = st.entry(name.to_string()).or_default();
            if r.pause.is_some() {
                return;
            }
            let p = CampaignPause {
                by: PausedBy::BounceThreshold,
                reason: format!(
                    "{hard} of {mailed} mails bounced hard (bounce_threshold = {:.1}%)",
                    threshold * 100.0
                ),
                at_ms: now_ms(),
            };
            r.pause = Some(p.clone());
            p
        };
        tracing::error!(campaign = name, reason = %pause.reason, "campaign paused itself: its bounce threshold was reached; clean the list, then `mydex-connector campaign resume {name}`");
        if let Err(e) = self.store.set_campaign_pause(name, Some(pause)).await {
            tracing::error!(campaign = name, error = %e, "cannot keep the pause in the store; it holds until a restart");
        }
    }

    /// Operator pause.
    pub async fn pause(
        &self,
        name: &str,
        reason: Option<String>,
    ) -> Result<CampaignPause, ControlError> {
        if self.campaign(name).is_none() {
            return Err(ControlError::Unknown(name.to_string()));
        }
        let p = CampaignPause {
            by: PausedBy::Operator,
            reason: reason.unwrap_or_else(|| "paused by an operator".into()),
            at_ms: now_ms(),
        };
        self.store.set_campaign_pause(name, Some(p.clone())).await?;
        self.state.lock().entry(name.to_string()).or_default().pause = Some(p.clone());
        tracing::warn!(campaign = name, reason = %p.reason, "campaign paused");
        Ok(p)
    }

    /// Operator resume; clears a threshold pause too.
    pub async fn resume(&self, name: &str) -> Result<bool, ControlError> {
        if self.campaign(name).is_none() {
            return Err(ControlError::Unknown(name.to_string()));
        }
        self.store.set_campaign_pause(name, None).await?;
        let mut st = self.state.lock();
        let r = st.entry(name.to_string()).or_default();
        let was = r.pause.take().is_some();
        r.failures_in_row = 0;
        tracing::info!(campaign = name, was_paused = was, "campaign resumed");
        Ok(was)
    }

    /// Per campaign, for `/metrics`: its name, configured rate (mails per
    /// second; none when unlimited), and whether it is paused, and by the
    /// error threshold.
    pub fn gauges(&self) -> Vec<crate::metrics::CampaignGauge> {
        let st = self.state.lock();
        self.campaigns
            .read()
            .iter()
            .map(|c| {
                let pause = st.get(&c.name).and_then(|r| r.pause.as_ref());
                crate::metrics::CampaignGauge {
                    campaign: c.name.clone(),
                    rate_per_second: c
                        .rate
                        .map(|r| f64::from(r.count) / r.per.as_secs_f64().max(0.001)),
                    paused: pause.is_some(),
                    paused_by_threshold: pause
                        .is_some_and(|p| p.by == crate::store::PausedBy::ErrorThreshold),
                }
            })
            .collect()
    }

    /// A campaign's bounces for the status document.
    async fn bounces(&self, name: &str, threshold: Option<f64>) -> CampaignBounces {
        let (mailed, hard, soft, complaints) =
            self.store.campaign_bounces(name).await.unwrap_or_default();
        let hard_rate = if mailed == 0 {
            0.0
        } else {
            hard as f64 / mailed as f64
        };
        CampaignBounces {
            mailed,
            hard,
            soft,
            complaints,
            hard_rate,
            bounce_threshold: threshold,
        }
    }

    /// The `campaigns` object of the status document.
    pub async fn status(&self) -> BTreeMap<String, CampaignStatus> {
        let mut out = BTreeMap::new();
        let campaigns = self.campaigns();
        let now = chrono::Utc::now();
        for c in &campaigns {
            let bounces = self.bounces(&c.name, c.bounce_threshold).await;
            let st = self.state.lock();
            let r = st.get(&c.name);
            let pause = r.and_then(|r| r.pause.as_ref());
            let opens = c.send_window.and_then(|w| w.next_open(now));
            let state = match (pause, opens) {
                (Some(_), _) => "paused",
                (None, Some(_)) => "outside_send_window",
                (None, None) => "active",
            };
            out.insert(
                c.name.clone(),
                CampaignStatus {
                    state: state.into(),
                    paused: pause.is_some(),
                    paused_by: pause.map(|p| p.by),
                    pause_reason: pause.map(|p| p.reason.clone()),
                    paused_at_ms: pause.map(|p| p.at_ms),
                    send_window: c.send_window.map(|w| format!("{w} {}", w.tz)),
                    window_opens_ms: opens.and_then(|t| u64::try_from(t.timestamp_millis()).ok()),
                    rate: c
                        .rate
                        .map(|r| format!("{}/{}", r.count, humantime::format_duration(r.per))),
                    sent: r.map(|r| r.sent).unwrap_or(0),
                    failed: r.map(|r| r.failed).unwrap_or(0),
                    failures_in_row: r.map(|r| r.failures_in_row).unwrap_or(0),
                    error_threshold: c.error_threshold,
                    bounces,
                },
            );
        }
        out
    }
}
