//! The file as written: every section's raw shape (each defined beside its
//! validation), unknown keys refused.

use serde::Deserialize;

use super::admin::RawAdmin;
use super::callback::RawCallback;
use super::campaigns::RawCampaign;
use super::delivery::RawDelivery;
use super::invitations::RawInvitations;
use super::log::RawLog;
use super::mydex::RawMydex;
use super::nats::RawNats;
use super::notifications::RawNotifications;
use super::organisation::RawOrganisation;
use super::queue::RawQueue;
use super::schedule::RawSchedule;
use super::smtp::RawSmtp;
use super::store::RawStore;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) mydex: RawMydex,
    #[serde(default)]
    pub(super) callback: RawCallback,
    #[serde(default)]
    pub(super) admin: RawAdmin,
    #[serde(default)]
    pub(super) smtp: RawSmtp,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) queue: RawQueue,
    #[serde(default)]
    pub(super) invitations: RawInvitations,
    #[serde(default)]
    pub(super) schedule: RawSchedule,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) notifications: RawNotifications,
    #[serde(default)]
    pub(super) organisation: Option<RawOrganisation>,
    #[serde(default)]
    pub(super) campaign: Vec<RawCampaign>,
    #[serde(default)]
    pub(super) delivery: Option<RawDelivery>,
    #[serde(default)]
    pub(super) nats: Option<RawNats>,
}
