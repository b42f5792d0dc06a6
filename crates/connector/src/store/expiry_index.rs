//! The expiry sweep's view of the store: an index of invitations whose link
//! was mailed (`sent`) or has expired (`x/{id}` in `idx`, kept by every
//! transition), and the two moves the sweep makes: `sent → expired` once a
//! link is unused past its lifetime, and `expired → queued` for a reminder
//! with a fresh link.

use super::sealed::INVITATIONS;
use super::{Core, Invitation, Result, State, StoreError, now_ms};

pub(super) fn expiry_key(id: u64) -> Vec<u8> {
    let mut k = b"x/".to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

const BACKFILLED: &str = "k/expiry-index-v1";

impl Core {
    /// Build the index once for stores written before it existed.
    pub fn expiry_backfill(&self) -> Result<u64> {
        if self.idx.get(BACKFILLED)?.is_some() {
            return Ok(0);
        }
        let mut n = 0;
        for item in self.invitations.iter() {
            let (k, v) = item?;
            let inv: Invitation =
                super::sealed::open(&self.sealer, INVITATIONS, &k, &v, "invitation")?;
            if matches!(inv.state, State::Sent | State::Expired) {
                self.idx.insert(expiry_key(inv.id), [])?;
                n += 1;
            }
        }
        self.idx.insert(BACKFILLED, [1u8])?;
        Ok(n)
    }

    /// Invitations in the expiry index after `after`, in id order.
    pub fn expiry_batch(&self, after: Option<u64>, limit: usize) -> Result<Vec<Invitation>> {
        let start = match after {
            None => expiry_key(0),
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(id) => expiry_key(id + 1),
        };
        let mut out = Vec::new();
        for item in self.idx.range(start..).take(limit) {
            let (k, _) = item?;
            if !k.starts_with(b"x/") {
                break;
            }
            let id = super::decode_u64(&k[2..]);
            match self.invitation(id) {
                Ok(inv) => out.push(inv),
                Err(StoreError::NotFound(_)) => {
                    self.idx.remove(&k)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// `sent → expired`.
    pub fn expire(&self, id: u64, note: String) -> Result<Invitation> {
        let now = now_ms();
        self.transition(id, &[State::Sent], State::Expired, Some(note), |i| {
            i.expired_ms = Some(now);
        })
    }

    /// `expired → queued` for reminder number `n`: the dispatcher asks
    /// Mydex for a fresh link (the same linking token, so a late callback
    /// through an older link still finds the invitation).
    pub fn remind(&self, id: u64, n: u32) -> Result<Invitation> {
        self.transition(
            id,
            &[State::Expired],
            State::Queued,
            Some(format!("reminder {n}: a fresh link")),
            |i| {
                i.reminders = n;
                i.link = None;
                i.link_issued_ms = None;
                i.attempts = 0;
                i.next_attempt_ms = 0;
                i.reason = None;
            },
        )
    }

    /// Take an invitation out of the expiry index (its reminders are spent).
    pub fn retire_from_expiry(&self, id: u64) -> Result<()> {
        self.idx.remove(expiry_key(id))?;
        Ok(())
    }
}
