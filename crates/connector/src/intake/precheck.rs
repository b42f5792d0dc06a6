//! `enqueue`'s suppression pre-check: good rows are held back in
//! chunks of [`CHUNK`] and their addresses asked of the running daemon
//! (`POST /suppressions/check`, through a [`SuppressionCheck`] the CLI
//! gives); a suppressed person's row is reported with its line and reason
//! and not placed. When the daemon cannot answer, one line says so and the
//! rest of the file is placed unchecked: the daemon's intake rejects
//! suppressed people anyway.

use std::io::Write;
use std::path::Path;

use crate::domain::Invitee;

/// Addresses asked per request (the endpoint takes at most 1,000).
pub const CHUNK: usize = 1000;

/// Why the suppression list could not be asked (one line).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);

/// Asks whoever holds the suppression list.
pub trait SuppressionCheck {
    /// The suppressed among `emails`: (index into `emails`, reason).
    fn check(&mut self, emails: &[String]) -> Result<Vec<(usize, String)>, CheckFailed>;
}

/// Good rows on their way into the queue file, checked a chunk at a time;
/// the rows cleared come back, with their lines, from [`Checked::push`]
/// and [`Checked::flush`].
pub(super) struct Checked<'a, 'e, 'c> {
    errors: &'e mut dyn Write,
    path: &'a Path,
    check: Option<&'c mut dyn SuppressionCheck>,
    pending: Vec<(u64, Invitee)>,
    pub(super) good: u64,
    pub(super) suppressed: u64,
    /// The suppressed rows' lines and reasons.
    pub(super) refused: Vec<(u64, String)>,
}

impl<'a, 'e, 'c> Checked<'a, 'e, 'c> {
    pub(super) fn new(
        errors: &'e mut dyn Write,
        path: &'a Path,
        check: Option<&'c mut dyn SuppressionCheck>,
    ) -> Self {
        Self {
            errors,
            path,
            check,
            pending: Vec::new(),
            good: 0,
            suppressed: 0,
            refused: Vec::new(),
        }
    }

    /// Where a bad row of the file is reported.
    pub(super) fn errors(&mut self) -> &mut dyn Write {
        &mut *self.errors
    }

    /// Add a good row; a full chunk is checked and its rows to write
    /// returned.
    pub(super) fn push(&mut self, line: u64, inv: Invitee) -> std::io::Result<Vec<(u64, Invitee)>> {
        self.pending.push((line, inv));
        if self.pending.len() >= CHUNK {
            return self.flush();
        }
        Ok(Vec::new())
    }

    /// Check the pending rows; those not suppressed, to write.
    pub(super) fn flush(&mut self) -> std::io::Result<Vec<(u64, Invitee)>> {
        let mut clear = Vec::new();
        if self.pending.is_empty() {
            return Ok(clear);
        }
        let mut reasons = vec![None; self.pending.len()];
        if let Some(check) = self.check.as_deref_mut() {
            let emails: Vec<String> = self
                .pending
                .iter()
                .map(|(_, i)| i.email.to_string())
                .collect();
            match check.check(&emails) {
                Ok(found) => {
                    for (i, why) in found {
                        if let Some(slot) = reasons.get_mut(i) {
                            *slot = Some(why);
                        }
                    }
                }
                Err(why) => {
                    writeln!(
                        self.errors,
                        "{}: suppressions not checked ({why}); the daemon's intake rejects suppressed people",
                        self.path.display()
                    )?;
                    self.check = None;
                }
            }
        }
        for ((line, inv), why) in self.pending.drain(..).zip(reasons) {
            match why {
                Some(why) => {
                    writeln!(
                        self.errors,
                        "{}:{line}: suppressed: {why}",
                        self.path.display()
                    )?;
                    self.suppressed += 1;
                    self.refused.push((line, format!("suppressed: {why}")));
                }
                None => {
                    clear.push((line, inv));
                    self.good += 1;
                }
            }
        }
        Ok(clear)
    }
}
