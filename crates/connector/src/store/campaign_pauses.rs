//! Campaign pauses, kept in the store (`p/{campaign}` in `idx`) so that a
//! campaign paused by an operator or by its error threshold stays paused
//! across a restart until someone resumes it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Core, Result, decode, encode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PausedBy {
    Operator,
    ErrorThreshold,
    /// Its hard-bounce share passed `bounce_threshold`.
    BounceThreshold,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignPause {
    pub by: PausedBy,
    pub reason: String,
    pub at_ms: u64,
}

impl Core {
    pub fn campaign_pauses(&self) -> Result<BTreeMap<String, CampaignPause>> {
        let mut out = BTreeMap::new();
        for item in self.idx.scan_prefix("p/") {
            let (k, v) = item?;
            out.insert(
                String::from_utf8_lossy(&k[2..]).into_owned(),
                decode(&v, "campaign pause")?,
            );
        }
        Ok(out)
    }

    /// Pause (`Some`) or resume (`None`) a campaign, on disk before it
    /// returns: an operator told "paused" must not see the campaign mail
    /// again after a crash (the engine alone writes back only every 200 ms, and a
    /// kill -9 right after the answer lost the pause). Blocking: one fsync.
    pub fn set_campaign_pause(&self, campaign: &str, pause: Option<&CampaignPause>) -> Result<()> {
        let key = format!("p/{campaign}");
        match pause {
            Some(p) => self.idx.insert(key, encode(p))?,
            None => self.idx.remove(key)?,
        };
        self.flush_blocking()
    }
}
