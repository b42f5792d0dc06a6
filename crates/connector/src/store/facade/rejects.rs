//! The facade's calls about rows rejected on their way in and the verdicts
//! on files placed for the daemon (`store/rejects.rs`).

use super::Store;
use crate::domain::{IntakeVerdict, Rejection};
use crate::store::Result;

/// A page of rejects and the cursor of the next (none: the last page).
pub type RejectsPage = (Vec<Rejection>, Option<String>);

impl Store {
    /// Keep `rows` (dropping the oldest past the age or the cap).
    pub async fn record_rejects(&self, rows: Vec<Rejection>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.run(move |c| c.record_rejects(&rows)).await
    }

    /// Up to `limit` rejects from `since_ms` on, after cursor `after`,
    /// oldest first; with `source`, those of one placed file only.
    pub async fn rejects_page(
        &self,
        since_ms: u64,
        after: Option<String>,
        source: Option<String>,
        limit: usize,
    ) -> Result<RejectsPage> {
        self.run(move |c| {
            let after = after.and_then(|a| hex::decode(a).ok());
            let (rows, next) =
                c.rejects_page(since_ms, after.as_deref(), source.as_deref(), limit)?;
            Ok((rows, next.map(hex::encode)))
        })
        .await
    }

    pub async fn rejected_count(&self) -> Result<u64> {
        self.run(|c| c.rejected_count()).await
    }

    /// Keep the verdict on the file placed as `source`.
    pub async fn record_verdict(&self, source: String, verdict: IntakeVerdict) -> Result<()> {
        self.run(move |c| c.record_verdict(&source, &verdict)).await
    }

    /// The verdict on the file placed as `source`, once taken in.
    pub async fn verdict(&self, source: String) -> Result<Option<IntakeVerdict>> {
        self.run(move |c| c.verdict(&source)).await
    }
}
