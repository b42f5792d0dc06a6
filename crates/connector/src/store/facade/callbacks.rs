//! The facade's callback calls: keeping each callback as it arrived,
//! applying it by its kind, settling its record, and reading the kept
//! records back for operators and for the start's pending judgement.

use super::Store;
use crate::domain::{Credentials, Event, MydexId};
use crate::store::{Arrival, CallbackOutcome, RawCallback, RawFilter, RawOutcome, Result};

impl Store {
    /// Keep an authenticated callback as it arrived (pending); its id.
    pub async fn keep_callback(
        &self,
        method: &'static str,
        content_type: Option<String>,
        body: impl AsRef<[u8]> + Send + 'static,
    ) -> Result<u64> {
        self.run(move |c| c.keep_raw(method, content_type.as_deref(), body.as_ref()))
            .await
    }

    /// Record what became of kept callback `id`.
    pub async fn settle_callback(
        &self,
        id: u64,
        kind: Option<&'static str>,
        outcome: RawOutcome,
    ) -> Result<()> {
        self.run(move |c| c.settle_raw(id, kind, &outcome)).await
    }

    /// Apply a connect (POST, with the key) or update (PUT) callback.
    pub async fn apply_credentials(
        &self,
        creds: Credentials,
        is_update: bool,
        arrival: Arrival,
        current_version: u32,
    ) -> Result<CallbackOutcome> {
        self.run(move |c| c.apply_credentials(&creds, is_update, &arrival, current_version))
            .await
    }

    /// Apply an identify callback with a valid MydexID.
    pub async fn apply_identify(
        &self,
        mydexid: MydexId,
        linking_token: Option<String>,
        body: serde_json::Value,
        arrival: Arrival,
    ) -> Result<CallbackOutcome> {
        self.run(move |c| c.apply_identify(&mydexid, linking_token.as_deref(), &body, &arrival))
            .await
    }

    /// Record an event callback (a notification, an identify we cannot use).
    pub async fn record_event(
        &self,
        event: Event,
        body: serde_json::Value,
        arrival: Arrival,
    ) -> Result<CallbackOutcome> {
        self.run(move |c| c.record_event(&event, &body, &arrival))
            .await
    }

    /// A kept callback's record (without its body).
    pub async fn raw_callback(&self, id: u64) -> Result<RawCallback> {
        self.run(move |c| c.raw_callback(id)).await
    }

    /// A kept callback's record and its body, opened.
    pub async fn raw_callback_with_body(
        &self,
        id: u64,
    ) -> Result<(RawCallback, zeroize::Zeroizing<Vec<u8>>)> {
        self.run(move |c| {
            let rec = c.raw_callback(id)?;
            let body = c.raw_body(&rec)?;
            Ok((rec, body))
        })
        .await
    }

    /// A page of kept callbacks after id `after`.
    pub async fn raw_callbacks(
        &self,
        filter: RawFilter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RawCallback>> {
        self.run(move |c| c.raw_callbacks(filter, after, limit))
            .await
    }

    /// Callbacks kept and never judged (a stop between keeping and judging).
    pub async fn pending_callbacks(&self) -> Result<Vec<u64>> {
        self.run(|c| c.pending_raw()).await
    }

    /// Drop the pending mark of a callback whose record was never written
    /// (the daemon stopped while keeping it, before answering).
    pub async fn drop_unrecorded_callback(&self, id: u64) -> Result<()> {
        self.run(move |c| c.drop_unrecorded_raw(id)).await
    }
}
