//! The facade's calls about people: members (read a page at a time,
//! imported, forgotten), the suppression list and bounces.

use super::Store;
use crate::domain::PersonHash;
use crate::store::{
    Bounce, BounceOutcome, BounceType, ForgetTarget, Forgotten, ImportMember, Member, Result,
    Suppressed, Suppression,
};

/// A member to import as connected (tests, benchmarks, seeding).
#[derive(Debug, Clone)]
pub struct NewMember {
    pub uid: u64,
    pub connection_id: String,
    pub mydexid: Option<crate::domain::MydexId>,
    pub email: Option<String>,
    /// The member's connection key (sealed as it is stored).
    pub key: String,
    pub version: u32,
    pub campaign: Option<String>,
}

/// A bounce report about a person, as recorded.
#[derive(Debug, Clone)]
pub struct BounceReport {
    pub person: PersonHash,
    pub kind: BounceType,
    /// One line, no address.
    pub diagnostic: String,
    /// Identifies the report (a second delivery of it is a no-op).
    pub report_id: String,
    pub campaign: Option<String>,
    pub max_soft: u32,
}

impl Store {
    pub async fn member(&self, connection_id: &str) -> Result<Option<Member>> {
        let conn = connection_id.to_owned();
        self.run(move |c| c.member(&conn)).await
    }

    /// Up to `limit` members after connection id `after` (from the first
    /// with `None`), in key order: a page of everything held.
    pub async fn members_page(&self, after: Option<String>, limit: usize) -> Result<Vec<Member>> {
        self.run(move |c| c.members_after(after.as_deref(), limit))
            .await
    }

    /// Walk every member, a page at a time, until `each` says stop.
    pub async fn each_member(
        &self,
        mut each: impl FnMut(Member) -> std::ops::ControlFlow<()>,
    ) -> Result<()> {
        let mut after = None;
        loop {
            let page = self.members_page(after, super::invitations::PAGE).await?;
            let Some(last) = page.last().map(|m| m.connection_id.clone()) else {
                return Ok(());
            };
            for m in page {
                if each(m).is_break() {
                    return Ok(());
                }
            }
            after = Some(last);
        }
    }

    /// How many members are held.
    pub async fn member_count(&self) -> Result<usize> {
        self.run(|c| Ok(c.member_count())).await
    }

    /// Import members as connected; how many were added.
    pub async fn import_members(&self, batch: Vec<NewMember>) -> Result<u64> {
        self.run(move |c| {
            let batch: Vec<ImportMember<'_>> = batch
                .iter()
                .map(|m| ImportMember {
                    uid: m.uid,
                    connection_id: &m.connection_id,
                    mydexid: m.mydexid.clone(),
                    email: m.email.clone(),
                    key: &m.key,
                    version: m.version,
                    campaign: m.campaign.clone(),
                })
                .collect();
            c.import_members(&batch)
        })
        .await
    }

    /// Erase a person (`people forget`).
    pub async fn forget_person(&self, target: ForgetTarget, disconnect: bool) -> Result<Forgotten> {
        self.run(move |c| c.forget_person(&target, disconnect))
            .await
    }

    /// The person's suppression, if they are on the list.
    pub async fn suppression(&self, person: &PersonHash) -> Result<Option<Suppression>> {
        let person = person.clone();
        self.run(move |c| c.suppression(&person)).await
    }

    /// The suppressions of several people at once, in their order.
    pub async fn suppressions_of(
        &self,
        persons: Vec<PersonHash>,
    ) -> Result<Vec<Option<Suppression>>> {
        self.run(move |c| persons.iter().map(|p| c.suppression(p)).collect())
            .await
    }

    /// How many people are on the suppression list.
    pub async fn suppressed_count(&self) -> Result<u64> {
        self.run(|c| c.suppressed_count()).await
    }

    /// Up to `limit` suppression entries after person hash `after`.
    pub async fn suppressions_page(
        &self,
        after: Option<PersonHash>,
        limit: usize,
    ) -> Result<Vec<(PersonHash, Suppression)>> {
        self.run(move |c| c.suppressions_after(after.as_ref(), limit))
            .await
    }

    /// Put a person on the list and fail their open invitations.
    pub async fn suppress(&self, person: &PersonHash, entry: Suppression) -> Result<Suppressed> {
        let person = person.clone();
        self.run(move |c| c.suppress(&person, &entry)).await
    }

    /// Take a person off the list; whether they were on it.
    pub async fn unsuppress(&self, person: &PersonHash) -> Result<bool> {
        let person = person.clone();
        self.run(move |c| c.unsuppress(&person)).await
    }

    /// Record a bounce report.
    pub async fn record_bounce(&self, b: BounceReport) -> Result<BounceOutcome> {
        self.run(move |c| {
            c.record_bounce(&Bounce {
                person: &b.person,
                kind: b.kind,
                diagnostic: &b.diagnostic,
                report_id: &b.report_id,
                campaign: b.campaign.as_deref(),
                max_soft: b.max_soft,
            })
        })
        .await
    }

    /// A campaign's mails and bounces: (mailed, hard, soft, complaints).
    pub async fn campaign_bounces(&self, campaign: &str) -> Result<(u64, u64, u64, u64)> {
        let campaign = campaign.to_owned();
        self.run(move |c| c.campaign_bounces(&campaign)).await
    }
}
