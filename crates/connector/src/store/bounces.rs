//! Bounces and complaints: a hard bounce or a complaint puts the person on
//! the suppression list (and fails their open invitations with the
//! diagnostic); soft bounces are counted per person (`sb/{hash}`) and the
//! `max`-th counts as hard. A report seen before (`bd/{report}/{hash}`: an
//! MTA delivering the same DSN twice) changes nothing. Per campaign:
//! `c/bounce/{campaign}\x1f{hard|soft|complaint}` and `c/mailed/{campaign}`.

use super::engine::Transactional;

use super::invitations::mailed_counter;
use super::suppression_record::{Suppression, SuppressionSource};
use super::{Core, Result, bump, decode_u64, now_ms};
use crate::domain::PersonHash;

/// What a bounce is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceType {
    Hard,
    Soft,
    Complaint,
}

impl BounceType {
    pub fn as_str(self) -> &'static str {
        match self {
            BounceType::Hard => "hard",
            BounceType::Soft => "soft",
            BounceType::Complaint => "complaint",
        }
    }
}

/// One bounce to record.
pub struct Bounce<'a> {
    pub person: &'a PersonHash,
    pub kind: BounceType,
    /// One line, no address (`550 5.1.1 mailbox unavailable`).
    pub diagnostic: &'a str,
    /// Identifies the report (a second delivery of it is a no-op).
    pub report_id: &'a str,
    /// The campaign of the mail it answers, if known.
    pub campaign: Option<&'a str>,
    pub max_soft: u32,
}

/// What recording it did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum BounceOutcome {
    /// Seen before: nothing changed.
    Duplicate,
    /// A soft bounce noted (`count` of `max`).
    SoftNoted { count: u32, max: u32 },
    /// On the suppression list; `failed` invitations ended by it.
    Suppressed { reason: String, failed: usize },
}

/// The counter of campaign bounces of one type.
pub(super) fn bounce_counter(campaign: &str, kind: &str) -> String {
    format!("c/bounce/{campaign}\u{1f}{kind}")
}

impl Core {
    pub fn record_bounce(&self, b: &Bounce<'_>) -> Result<BounceOutcome> {
        let seen = format!("bd/{}/{}", b.report_id, b.person.as_str());
        let soft = format!("sb/{}", b.person.as_str());
        let first = (&self.idx,).transaction(|(idx,)| {
            if idx.get(seen.as_bytes())?.is_some() {
                return Ok(None);
            }
            idx.insert(seen.as_bytes(), now_ms().to_be_bytes())?;
            if let Some(c) = b.campaign {
                bump(idx, &bounce_counter(c, b.kind.as_str()), 1)?;
            }
            let count = match b.kind {
                BounceType::Soft => {
                    let n = idx
                        .get(soft.as_bytes())?
                        .map(|v| decode_u64(&v))
                        .unwrap_or(0)
                        + 1;
                    idx.insert(soft.as_bytes(), n.to_be_bytes())?;
                    n as u32
                }
                _ => 0,
            };
            Ok(Some(count))
        });
        let Some(count) = first? else {
            return Ok(BounceOutcome::Duplicate);
        };
        let (reason, source) = match b.kind {
            BounceType::Complaint => ("complaint".to_string(), SuppressionSource::Complaint),
            BounceType::Hard => (
                format!("bounced: {}", b.diagnostic),
                SuppressionSource::Bounce,
            ),
            BounceType::Soft if count >= b.max_soft => (
                format!(
                    "bounced: {} (soft bounce {count} of {})",
                    b.diagnostic, b.max_soft
                ),
                SuppressionSource::Bounce,
            ),
            BounceType::Soft => {
                return Ok(BounceOutcome::SoftNoted {
                    count,
                    max: b.max_soft,
                });
            }
        };
        if b.kind == BounceType::Soft
            && let Some(c) = b.campaign
        {
            // The soft bounce that tipped over counts as a hard one.
            self.idx
                .transaction(|idx| bump(idx, &bounce_counter(c, "hard"), 1))?;
        }
        let entry = Suppression {
            reason,
            source,
            at_ms: now_ms(),
        };
        let done = self.suppress(b.person, &entry)?;
        let reason = self
            .suppression(b.person)?
            .map(|s| s.reason)
            .unwrap_or(entry.reason);
        Ok(BounceOutcome::Suppressed {
            reason,
            failed: done.failed.len(),
        })
    }

    /// `(mailed, hard, soft, complaints)` of a campaign.
    pub fn campaign_bounces(&self, campaign: &str) -> Result<(u64, u64, u64, u64)> {
        Ok((
            self.counter(&mailed_counter(campaign))?,
            self.counter(&bounce_counter(campaign, "hard"))?,
            self.counter(&bounce_counter(campaign, "soft"))?,
            self.counter(&bounce_counter(campaign, "complaint"))?,
        ))
    }
}
