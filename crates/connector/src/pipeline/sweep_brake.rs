//! The brake on mass disconnection: whether what a version sweep has found
//! so far looks like members leaving one by one (disconnect them) or like
//! something wrong on a larger scale (hold them until an operator confirms).
//! A share is judged only once enough members were checked for it to mean
//! something; a sweep smaller than that brakes only when every member it
//! checked came back revoked.

/// Members a sweep checks before it judges the share of revoked ones.
pub const MIN_SAMPLE: u64 = 20;

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Disconnect the revoked members found so far.
    Disconnect,
    /// Too few checked to judge yet: keep holding them.
    Wait,
    /// Engage the brake, for this reason.
    Brake(String),
}

/// `share` is `schedule.max_disconnect_share` (0..=1); `checked` counts
/// every member the run checked, `revoked` those among them found not
/// active; `finished` once the run has checked every member.
pub fn judge(share: f64, checked: u64, revoked: u64, finished: bool) -> Verdict {
    if revoked == 0 {
        return Verdict::Disconnect;
    }
    let pct = |n: u64, d: u64| n as f64 * 100.0 / d.max(1) as f64;
    if checked >= MIN_SAMPLE {
        if revoked as f64 > share * checked as f64 {
            return Verdict::Brake(format!(
                "{revoked} of the {checked} members checked came back revoked ({:.1}%), more than schedule.max_disconnect_share ({}%)",
                pct(revoked, checked),
                share * 100.0
            ));
        }
        return Verdict::Disconnect;
    }
    if !finished {
        return Verdict::Wait;
    }
    // A sweep of fewer members than the sample: only all of them revoked
    // (and more than one) looks like a fault rather than people leaving.
    if revoked == checked && checked >= 2 && share < 1.0 {
        return Verdict::Brake(format!(
            "every one of the {checked} members checked came back revoked"
        ));
    }
    Verdict::Disconnect
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brakes(v: Verdict) -> bool {
        matches!(v, Verdict::Brake(_))
    }

    #[test]
    fn share_is_judged_from_the_sample_on() {
        assert_eq!(judge(0.05, 5, 0, false), Verdict::Disconnect);
        assert_eq!(judge(0.05, 5, 5, false), Verdict::Wait);
        assert_eq!(judge(0.05, 19, 1, false), Verdict::Wait);
        // 1 of 20 is 5%: not more than 5%.
        assert_eq!(judge(0.05, 20, 1, false), Verdict::Disconnect);
        assert!(brakes(judge(0.05, 20, 2, false)));
        assert!(brakes(judge(0.05, 60, 20, true)));
        assert!(brakes(judge(0.05, 20, 20, false)));
        assert_eq!(judge(0.05, 1000, 50, true), Verdict::Disconnect);
        assert!(brakes(judge(0.05, 1000, 51, true)));
        // 100%: never by share.
        assert_eq!(judge(1.0, 60, 60, true), Verdict::Disconnect);
        // 0%: any revocation once the sample is reached.
        assert!(brakes(judge(0.0, 20, 1, false)));
    }

    #[test]
    fn small_sweeps_brake_only_when_all_revoked() {
        assert_eq!(judge(0.05, 5, 1, true), Verdict::Disconnect);
        assert_eq!(judge(0.05, 5, 4, true), Verdict::Disconnect);
        assert_eq!(judge(0.05, 1, 1, true), Verdict::Disconnect);
        assert!(brakes(judge(0.05, 5, 5, true)));
        assert_eq!(judge(1.0, 5, 5, true), Verdict::Disconnect);
    }

    #[test]
    fn reason_names_the_figures_and_the_key() {
        let Verdict::Brake(r) = judge(0.05, 60, 20, true) else {
            panic!("brake")
        };
        assert!(r.contains("20 of the 60"), "{r}");
        assert!(r.contains("schedule.max_disconnect_share (5%)"), "{r}");
    }
}
