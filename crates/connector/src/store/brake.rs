//! What stops the version sweep from disconnecting the whole member base on
//! a bad day, kept in the store so it survives a restart: members found
//! revoked but *held* (not disconnected yet, no mail), the brake engaged
//! when too many came back revoked, and our connection refused by Mydex.

use super::schema::{IdxKey, sweep_held_prefix};
use serde::{Deserialize, Serialize};

use super::{Core, Result, decode, encode, now_ms};

/// A member Mydex reported not active, held instead of disconnected.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Held {
    pub connection_id: String,
    /// The sweep run that found it revoked (last).
    pub run: u64,
    pub found_ms: u64,
}

/// The brake, engaged: the sweep holds members it finds revoked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Brake {
    pub run: u64,
    pub since_ms: u64,
    /// Members checked and found revoked in that run when it engaged.
    pub checked: u64,
    pub revoked: u64,
    pub reason: String,
}

/// Mydex refused our connection on a status check.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConnectionDenied {
    pub run: u64,
    pub since_ms: u64,
    /// Mydex's message, with the HTTP status.
    pub reason: String,
}

fn held_key(job: &str, connection_id: &str) -> Vec<u8> {
    IdxKey::SweepHeld {
        job: job.to_string(),
        connection_id: connection_id.to_string(),
    }
    .encode()
}

fn brake_key(job: &str) -> Vec<u8> {
    IdxKey::SweepBrake(job.to_string()).encode()
}

fn denied_key(job: &str) -> Vec<u8> {
    IdxKey::SweepDenied(job.to_string()).encode()
}

impl Core {
    /// Hold a member found revoked; true if it was not held already.
    pub fn hold_member(&self, job: &str, connection_id: &str, run: u64) -> Result<bool> {
        let held = Held {
            connection_id: connection_id.to_string(),
            run,
            found_ms: now_ms(),
        };
        let old = self
            .idx
            .insert(held_key(job, connection_id), encode(&held))?;
        Ok(old.is_none())
    }

    /// Let a held member go (found active again, or disconnected); true if
    /// it was held.
    pub fn unhold_member(&self, job: &str, connection_id: &str) -> Result<bool> {
        Ok(self.idx.remove(held_key(job, connection_id))?.is_some())
    }

    /// Every held member, in key order.
    pub fn held_members(&self, job: &str) -> Result<Vec<Held>> {
        self.idx
            .scan_prefix(sweep_held_prefix(job))
            .map(|item| {
                let (_, v) = item?;
                decode(&v, "held member")
            })
            .collect()
    }

    pub fn held_count(&self, job: &str) -> usize {
        self.idx.scan_prefix(sweep_held_prefix(job)).count()
    }

    pub fn brake(&self, job: &str) -> Result<Option<Brake>> {
        self.idx
            .get(brake_key(job))?
            .map(|v| decode(&v, "brake"))
            .transpose()
    }

    pub fn set_brake(&self, job: &str, brake: Option<&Brake>) -> Result<()> {
        match brake {
            Some(b) => self.idx.insert(brake_key(job), encode(b))?,
            None => self.idx.remove(brake_key(job))?,
        };
        Ok(())
    }

    pub fn connection_denied(&self, job: &str) -> Result<Option<ConnectionDenied>> {
        self.idx
            .get(denied_key(job))?
            .map(|v| decode(&v, "connection denial"))
            .transpose()
    }

    pub fn set_connection_denied(&self, job: &str, d: Option<&ConnectionDenied>) -> Result<()> {
        match d {
            Some(d) => self.idx.insert(denied_key(job), encode(d))?,
            None => self.idx.remove(denied_key(job))?,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_brake_and_denial_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Core::open(
            &dir.path().join("db"),
            &secrecy::SecretBox::new(Box::new([3u8; 32])),
        )
        .unwrap();
        assert!(s.hold_member("version", "1001-45678", 1).unwrap());
        assert!(!s.hold_member("version", "1001-45678", 2).unwrap());
        assert!(s.hold_member("version", "1002-45678", 2).unwrap());
        assert_eq!(s.held_count("version"), 2);
        assert_eq!(s.held_count("expiry"), 0);
        let held = s.held_members("version").unwrap();
        assert_eq!(held[0].connection_id, "1001-45678");
        assert_eq!(held[0].run, 2);
        assert!(s.unhold_member("version", "1001-45678").unwrap());
        assert!(!s.unhold_member("version", "1001-45678").unwrap());
        assert_eq!(s.held_count("version"), 1);
        // The run record's key is not disturbed by the brake's.
        assert!(s.sweep_run("version").unwrap().is_none());
        let b = Brake {
            run: 2,
            since_ms: 1,
            checked: 20,
            revoked: 6,
            reason: "r".into(),
        };
        s.set_brake("version", Some(&b)).unwrap();
        assert_eq!(s.brake("version").unwrap(), Some(b));
        s.set_brake("version", None).unwrap();
        assert_eq!(s.brake("version").unwrap(), None);
        let d = ConnectionDenied {
            run: 3,
            since_ms: 1,
            reason: "x".into(),
        };
        s.set_connection_denied("version", Some(&d)).unwrap();
        assert_eq!(s.connection_denied("version").unwrap(), Some(d));
        s.set_connection_denied("version", None).unwrap();
        assert!(s.connection_denied("version").unwrap().is_none());
    }
}
