//! The facade's invitation calls: taking invitations in, moving them
//! through their states (dispatcher, expiry sweep, operators) and reading
//! them back page by page.

use std::collections::HashMap;

use super::Store;
use crate::store::{InsertOutcome, Invitation, InvitationFilter, NewInvitation, Result, State};

impl Store {
    /// Insert a batch in one step; with `progress`, record in the same
    /// step that an intake file is stored up to that line. Each invitation
    /// comes back with what became of it.
    pub async fn insert_invitations(
        &self,
        batch: Vec<NewInvitation>,
        progress: Option<(String, u64)>,
    ) -> Result<Vec<(NewInvitation, InsertOutcome)>> {
        self.run(move |c| {
            let progress = progress.as_ref().map(|(f, l)| (f.as_str(), *l));
            let outcomes = c.insert_invitations(&batch, progress)?;
            Ok(batch.into_iter().zip(outcomes).collect())
        })
        .await
    }

    /// Insert one invitation for a member we hold (an update, or a new
    /// first connection after a revoke).
    pub async fn insert_for_member(
        &self,
        new: NewInvitation,
        connection_id: &str,
        closed: &'static [State],
    ) -> Result<InsertOutcome> {
        let conn = connection_id.to_owned();
        self.run(move |c| c.insert_for_member(new, &conn, closed))
            .await
    }

    /// The invitation last queued for a member (an update, a reconnect).
    pub async fn member_invitation(&self, connection_id: &str) -> Result<Option<Invitation>> {
        let conn = connection_id.to_owned();
        self.run(move |c| c.member_invitation(&conn)).await
    }

    pub async fn invitation(&self, id: u64) -> Result<Invitation> {
        self.run(move |c| c.invitation(id)).await
    }

    /// The invitation a linking token was issued for, if any.
    pub async fn invitation_by_token(&self, token: &str) -> Result<Option<Invitation>> {
        let token = token.to_owned();
        self.run(move |c| c.invitation_by_token(&token)).await
    }

    /// Move invitation `id` from one of `from` to `to`, applying `change`,
    /// or fail with `Conflict` if someone else moved it first.
    pub async fn transition(
        &self,
        id: u64,
        from: &[State],
        to: State,
        note: Option<String>,
        change: impl Fn(&mut Invitation) + Send + 'static,
    ) -> Result<Invitation> {
        let from = from.to_vec();
        self.run(move |c| c.transition(id, &from, to, note, change))
            .await
    }

    /// Change an invitation without changing its state, still guarded by it.
    pub async fn touch(
        &self,
        id: u64,
        expected: State,
        change: impl Fn(&mut Invitation) + Send + 'static,
    ) -> Result<Invitation> {
        self.run(move |c| c.touch(id, expected, change)).await
    }

    /// `failed` back to `queued`, by an operator.
    pub async fn retry_failed(&self, id: u64) -> Result<Invitation> {
        self.run(move |c| c.retry_failed(id)).await
    }

    /// The next stretch of the dispatcher's work index after `after`.
    pub async fn work_after(&self, after: Option<u64>, limit: usize) -> Result<Vec<Invitation>> {
        self.run(move |c| c.work_after(after, limit)).await
    }

    /// Where an intake file's rows stand (the last line stored).
    pub async fn intake_progress(&self, file: &str) -> Result<Option<u64>> {
        let file = file.to_owned();
        self.run(move |c| c.intake_progress(&file)).await
    }

    /// Of `files`, those whose rows the queue intake began to store.
    pub async fn intake_begun(&self, files: Vec<String>) -> Result<Vec<String>> {
        self.run(move |c| {
            let mut begun = Vec::new();
            for f in files {
                if c.intake_progress(&f)?.is_some() {
                    begun.push(f);
                }
            }
            Ok(begun)
        })
        .await
    }

    pub async fn clear_intake_progress(&self, file: &str) -> Result<()> {
        let file = file.to_owned();
        self.run(move |c| c.clear_intake_progress(&file)).await
    }

    /// Up to `limit` invitations after id `after` (from the first with
    /// `None`), in id order: a page of everything held.
    pub async fn invitations_page(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Invitation>> {
        self.run(move |c| c.invitations_after(after, limit)).await
    }

    /// A page of the invitations `filter` matches, after id `after`.
    pub async fn list_invitations(
        &self,
        filter: InvitationFilter,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Invitation>> {
        self.run(move |c| c.list_invitations(&filter, after, limit))
            .await
    }

    /// Invitations by campaign and state.
    pub async fn counts_by_campaign(&self) -> Result<HashMap<(String, State), u64>> {
        self.run(|c| c.counts_by_campaign()).await
    }

    /// Index invitations the expiry index lacks (stores from before it).
    pub async fn expiry_backfill(&self) -> Result<u64> {
        self.run(|c| c.expiry_backfill()).await
    }

    /// The next invitations of the expiry index after id `after`.
    pub async fn expiry_batch(&self, after: Option<u64>, limit: usize) -> Result<Vec<Invitation>> {
        self.run(move |c| c.expiry_batch(after, limit)).await
    }

    pub async fn expire(&self, id: u64, note: String) -> Result<Invitation> {
        self.run(move |c| c.expire(id, note)).await
    }

    /// Queue reminder `n` of an expired invitation.
    pub async fn remind(&self, id: u64, n: u32) -> Result<Invitation> {
        self.run(move |c| c.remind(id, n)).await
    }

    pub async fn retire_from_expiry(&self, id: u64) -> Result<()> {
        self.run(move |c| c.retire_from_expiry(id)).await
    }

    /// Every invitation of a person, by id (`people forget`, suppressions).
    pub async fn person_invitations(&self, person: &crate::domain::PersonHash) -> Result<Vec<u64>> {
        let person = person.clone();
        self.run(move |c| c.person_invitations(&person)).await
    }

    /// Walk every invitation, a page at a time, until `each` says stop;
    /// never more than a page in memory.
    pub async fn each_invitation(
        &self,
        mut each: impl FnMut(Invitation) -> std::ops::ControlFlow<()>,
    ) -> Result<()> {
        let mut after = None;
        loop {
            let page = self.invitations_page(after, PAGE).await?;
            let Some(last) = page.last().map(|i| i.id) else {
                return Ok(());
            };
            for inv in page {
                if each(inv).is_break() {
                    return Ok(());
                }
            }
            after = Some(last);
        }
    }
}

/// How many records a walk reads per blocking call.
pub(super) const PAGE: usize = 512;
