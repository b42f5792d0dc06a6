//! The facade's reading calls: placing readings as they are taken in, the
//! delivery worker's batches (claim, settle, read back, holds), and the
//! operators' view of them.

use std::collections::HashMap;

use super::Store;
use crate::domain::{DatasetName, HeldGroup, Reading, RowState};
use crate::store::readings::Resolver;
use crate::store::{
    Batch, Claim, NewReading, ReadingOutcome, ReadingRow, RecordCounts, Result, Settle,
};

/// Where readings go, remembered across the chunks of one file (or one
/// request): members, references and invitees are read once, not once a
/// chunk. Opaque: only [`Store::place_readings`] uses it.
#[derive(Default)]
pub struct ReadingPlacer(Option<Resolver>);

/// A reading to place: where it came from (`file:line`), the reading, and
/// the dataset it goes to.
pub type ReadingToPlace = (String, Reading, DatasetName);

impl Store {
    /// Place readings and store those whose member is known (queued or
    /// held), with the file's progress in the same step; per reading its
    /// outcome, or `None` when no member or invitee matches it.
    pub async fn place_readings(
        &self,
        placer: &mut ReadingPlacer,
        rows: Vec<ReadingToPlace>,
        progress: Option<(String, u64)>,
    ) -> Result<Vec<Option<ReadingOutcome>>> {
        let resolver = placer.0.take();
        let (resolver, out) = self
            .run(move |c| {
                let mut resolver = resolver.unwrap_or_else(|| Resolver::new(c));
                let out = place(c, &mut resolver, rows, progress);
                Ok((resolver, out))
            })
            .await?;
        placer.0 = Some(resolver);
        out
    }

    /// The last line of a readings file whose readings are stored.
    pub async fn readings_progress(&self, file: &str) -> Result<Option<u64>> {
        let file = file.to_owned();
        self.run(move |c| c.readings_progress(&file)).await
    }

    /// Of `files`, those whose readings the readings intake began to store.
    pub async fn readings_begun(&self, files: Vec<String>) -> Result<Vec<String>> {
        self.run(move |c| {
            let mut begun = Vec::new();
            for f in files {
                if c.readings_progress(&f)?.is_some() {
                    begun.push(f);
                }
            }
            Ok(begun)
        })
        .await
    }

    /// Whether a readings file is being taken in now.
    pub async fn readings_intake_running(&self) -> Result<bool> {
        self.run(|c| c.readings_intake_running()).await
    }

    pub async fn clear_readings_progress(&self, file: &str) -> Result<()> {
        let file = file.to_owned();
        self.run(move |c| c.clear_readings_progress(&file)).await
    }

    /// Readings by state.
    pub async fn record_counts(&self) -> Result<RecordCounts> {
        self.run(|c| c.record_counts()).await
    }

    /// The `external_id`s of a batch's readings still held (to read the
    /// batch back).
    pub async fn batch_external_ids(&self, batch: Batch) -> Result<Vec<String>> {
        self.run(move |c| {
            let rows = c.batch_rows(&batch)?;
            Ok(rows.into_iter().map(|r| r.external_id).collect())
        })
        .await
    }

    /// A page of kept readings in `state` (queued, held, failed) after
    /// `cursor`, and the next page's cursor.
    pub async fn list_kept_readings(
        &self,
        state: RowState,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(Vec<ReadingRow>, Option<Vec<u8>>)> {
        self.run(move |c| c.list_kept_readings(state, cursor, limit))
            .await
    }

    /// A page of delivered readings after `cursor`, and the next page's
    /// cursor.
    pub async fn list_delivered_readings(
        &self,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(Vec<crate::store::DeliveredReading>, Option<Vec<u8>>)> {
        self.run(move |c| c.list_delivered_readings(cursor, limit))
            .await
    }

    /// A page of readings in `state`, after id `after`.
    pub async fn list_readings(
        &self,
        state: RowState,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReadingRow>> {
        self.run(move |c| c.list_readings(state, after, limit))
            .await
    }

    /// Groups of queued readings (connection id, dataset) after `after`.
    pub async fn work_groups_after(
        &self,
        after: Option<(String, DatasetName)>,
        limit: usize,
    ) -> Result<Vec<(String, DatasetName)>> {
        self.run(move |c| c.work_groups_after(after.as_ref(), limit))
            .await
    }

    /// Claim one batch of at most `max` rows of one group.
    pub async fn claim_batch(
        &self,
        conn: &str,
        dataset: &DatasetName,
        max: usize,
    ) -> Result<Claim> {
        let (conn, dataset) = (conn.to_owned(), dataset.clone());
        self.run(move |c| c.claim_batch(&conn, &dataset, max)).await
    }

    /// Claim up to `count` batches of at most `max` rows of one group in
    /// one step (with `full_only`, only full ones).
    pub async fn claim_batches(
        &self,
        conn: &str,
        dataset: &DatasetName,
        max: usize,
        count: usize,
        full_only: bool,
    ) -> Result<Vec<Claim>> {
        let (conn, dataset) = (conn.to_owned(), dataset.clone());
        self.run(move |c| c.claim_batches(&conn, &dataset, max, count, full_only))
            .await
    }

    /// Settle a batch by what Mydex answered.
    pub async fn settle_batch(&self, batch: &Batch, how: Settle) -> Result<()> {
        let batch = batch.clone();
        self.run(move |c| c.settle_batch(&batch, &how)).await
    }

    /// Settle an unknown batch by what Mydex holds (`external_id` → its id).
    pub async fn settle_read_back(
        &self,
        batch: &Batch,
        found: HashMap<String, String>,
    ) -> Result<()> {
        let batch = batch.clone();
        self.run(move |c| c.settle_read_back(&batch, &found)).await
    }

    /// Batches not settled (at start: every one in flight becomes unknown).
    pub async fn unfinished_batches(&self, at_start: bool, settle_ms: u64) -> Result<Vec<Batch>> {
        self.run(move |c| c.unfinished_batches(at_start, settle_ms))
            .await
    }

    /// A group whose last try Mydex refused, if it is one.
    pub async fn held_group(&self, conn: &str, dataset: &DatasetName) -> Result<Option<HeldGroup>> {
        let (conn, dataset) = (conn.to_owned(), dataset.clone());
        self.run(move |c| c.held_group(&conn, &dataset)).await
    }

    /// Release held readings whose cause may have cleared; fail those held
    /// longer than `hold_for_ms`.
    pub async fn release_holds(&self, hold_for_ms: u64, probe: usize) -> Result<(usize, usize)> {
        self.run(move |c| c.release_holds(hold_for_ms, probe)).await
    }

    /// Record the grants a member gave (their permissions callback).
    pub async fn set_member_permissions(
        &self,
        connection_id: &str,
        fields: serde_json::Value,
    ) -> Result<bool> {
        let conn = connection_id.to_owned();
        self.run(move |c| c.set_member_permissions(&conn, fields))
            .await
    }
}

/// Place each reading with `resolver` and store the placed ones in one step.
fn place(
    core: &crate::store::Core,
    resolver: &mut Resolver,
    rows: Vec<ReadingToPlace>,
    progress: Option<(String, u64)>,
) -> Result<Vec<Option<ReadingOutcome>>> {
    let mut out = Vec::with_capacity(rows.len());
    let mut batch = Vec::new();
    let mut slots = Vec::new();
    for (source, reading, dataset) in rows {
        match resolver.place(&reading.member, &dataset)? {
            None => out.push(None),
            Some(placement) => {
                slots.push(out.len());
                out.push(None);
                batch.push(NewReading {
                    reading,
                    dataset,
                    placement,
                    source,
                });
            }
        }
    }
    let progress = progress.as_ref().map(|(f, l)| (f.as_str(), *l));
    for (slot, outcome) in slots
        .into_iter()
        .zip(core.insert_readings(&batch, progress)?)
    {
        out[slot] = Some(outcome);
    }
    Ok(out)
}
