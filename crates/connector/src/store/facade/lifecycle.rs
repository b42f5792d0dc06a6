//! The facade's lifecycle calls: sweep runs and their claims, each
//! member's check, the version sweep's brake and held members, and the
//! campaigns' pauses.

use std::collections::BTreeMap;

use super::Store;
use crate::store::{
    Brake, CampaignPause, CheckResult, Checked, ConnectionDenied, Held, Member, Result, SweepRun,
};

impl Store {
    /// The current (or last finished) run of sweep `job`.
    pub async fn sweep_run(&self, job: &'static str) -> Result<Option<SweepRun>> {
        self.run(move |c| c.sweep_run(job)).await
    }

    pub async fn save_sweep_run(&self, job: &'static str, run: &SweepRun) -> Result<()> {
        let run = run.clone();
        self.run(move |c| c.save_sweep_run(job, &run)).await
    }

    /// Claim the next `limit` members after the run's cursor (the run
    /// moved past them and saved); the active ones among them, `None` once
    /// the run has seen every member.
    pub async fn claim_members(
        &self,
        job: &'static str,
        run: &mut SweepRun,
        limit: usize,
    ) -> Result<Option<Vec<Member>>> {
        let mut r = run.clone();
        let (claimed, r) = self
            .run(move |c| Ok((c.claim_members(job, &mut r, limit)?, r)))
            .await?;
        *run = r;
        Ok(claimed)
    }

    /// After a crash: account for the chunk that was being worked on.
    pub async fn settle_interrupted_chunk(
        &self,
        job: &'static str,
        run: &mut SweepRun,
        current_version: u32,
    ) -> Result<()> {
        let mut r = run.clone();
        let r = self
            .run(move |c| {
                c.settle_interrupted_chunk(job, &mut r, current_version)?;
                Ok(r)
            })
            .await?;
        *run = r;
        Ok(())
    }

    /// Record what a connection-status check found for one member.
    pub async fn record_check(
        &self,
        connection_id: &str,
        run: u64,
        result: CheckResult,
    ) -> Result<Checked> {
        let conn = connection_id.to_owned();
        self.run(move |c| c.record_check(&conn, run, result)).await
    }

    /// Hold a member found revoked; whether it was not held before.
    pub async fn hold_member(
        &self,
        job: &'static str,
        connection_id: &str,
        run: u64,
    ) -> Result<bool> {
        let conn = connection_id.to_owned();
        self.run(move |c| c.hold_member(job, &conn, run)).await
    }

    /// Let a held member go; whether it was held.
    pub async fn unhold_member(&self, job: &'static str, connection_id: &str) -> Result<bool> {
        let conn = connection_id.to_owned();
        self.run(move |c| c.unhold_member(job, &conn)).await
    }

    pub async fn held_members(&self, job: &'static str) -> Result<Vec<Held>> {
        self.run(move |c| c.held_members(job)).await
    }

    pub async fn held_count(&self, job: &'static str) -> Result<usize> {
        self.run(move |c| Ok(c.held_count(job))).await
    }

    pub async fn brake(&self, job: &'static str) -> Result<Option<Brake>> {
        self.run(move |c| c.brake(job)).await
    }

    pub async fn set_brake(&self, job: &'static str, brake: Option<Brake>) -> Result<()> {
        self.run(move |c| c.set_brake(job, brake.as_ref())).await
    }

    pub async fn connection_denied(&self, job: &'static str) -> Result<Option<ConnectionDenied>> {
        self.run(move |c| c.connection_denied(job)).await
    }

    pub async fn set_connection_denied(
        &self,
        job: &'static str,
        denied: Option<ConnectionDenied>,
    ) -> Result<()> {
        self.run(move |c| c.set_connection_denied(job, denied.as_ref()))
            .await
    }

    /// The campaigns' pauses kept in the store.
    pub async fn campaign_pauses(&self) -> Result<BTreeMap<String, CampaignPause>> {
        self.run(|c| c.campaign_pauses()).await
    }

    pub async fn set_campaign_pause(
        &self,
        campaign: &str,
        pause: Option<CampaignPause>,
    ) -> Result<()> {
        let campaign = campaign.to_owned();
        self.run(move |c| c.set_campaign_pause(&campaign, pause.as_ref()))
            .await
    }
}
