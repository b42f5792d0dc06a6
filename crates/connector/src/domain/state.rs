//! The invitation states and the one table of the moves between them: the
//! store refuses any move not listed here (`State::allowed`).

use serde::{Deserialize, Serialize};

/// The invitation states (`docs/book/src/operating.md`: queued → link_issued → sent → connected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Queued,
    LinkIssued,
    Sent,
    Connected,
    Expired,
    Failed,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Queued,
        State::LinkIssued,
        State::Sent,
        State::Connected,
        State::Expired,
        State::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::LinkIssued => "link_issued",
            State::Sent => "sent",
            State::Connected => "connected",
            State::Expired => "expired",
            State::Failed => "failed",
        }
    }

    /// The dispatcher still has work to do on it.
    pub fn needs_dispatch(self) -> bool {
        matches!(self, State::Queued | State::LinkIssued)
    }

    /// Still waiting to be mailed or used: what putting the person on the
    /// suppression list fails (a connected or failed one stays as it is).
    pub fn fails_on_suppression(self) -> bool {
        matches!(
            self,
            State::Queued | State::LinkIssued | State::Sent | State::Expired
        )
    }

    /// The states a member's callback may connect an invitation from:
    /// whatever it was waiting for, but not a second time.
    pub const CONNECTABLE: [State; 5] = [
        State::Queued,
        State::LinkIssued,
        State::Sent,
        State::Expired,
        State::Failed,
    ];

    /// It still stands in the way of inviting the same person again.
    pub fn is_open(self) -> bool {
        !matches!(self, State::Failed)
    }

    /// May an invitation in `from` move to `to`? The whole transition table.
    /// Staying where it is (a retry count or time noted, `Store::touch`) is
    /// always allowed; `connected` is final.
    pub fn allowed(from: State, to: State) -> bool {
        use State::*;
        from == to
            || matches!(
                (from, to),
                // The dispatcher: a link, then the mail; a link too old to
                // mail is asked for again; an error it cannot retry fails it.
                (Queued, LinkIssued | Failed)
                    | (LinkIssued, Sent | Queued | Failed)
                    // The expiry sweep, then its reminder (a fresh link).
                    | (Sent, Expired)
                    | (Expired, Queued)
                    // The person unsubscribed, bounced or complained.
                    | (Sent | Expired, Failed)
                    // An identify callback naming a MydexID we do not hold:
                    // a first connection follows.
                    | (Sent, Queued)
                    // An operator's retry.
                    | (Failed, Queued)
                    // The member's callback (first connection, update or
                    // identify) arrives, whatever the invitation was waiting for.
                    | (Queued | LinkIssued | Sent | Expired | Failed, Connected)
            )
    }
}

#[cfg(test)]
mod tests {
    use super::State::{self, *};

    /// Every move the table allows besides staying put; any other is refused.
    const TABLE: [(State, State); 16] = [
        (Queued, LinkIssued),
        (Queued, Connected),
        (Queued, Failed),
        (LinkIssued, Queued),
        (LinkIssued, Sent),
        (LinkIssued, Connected),
        (LinkIssued, Failed),
        (Sent, Queued),
        (Sent, Connected),
        (Sent, Expired),
        (Sent, Failed),
        (Expired, Queued),
        (Expired, Failed),
        (Expired, Connected),
        (Failed, Queued),
        (Failed, Connected),
    ];

    #[test]
    fn suppression_fails_what_waits_and_a_callback_connects_what_is_not_connected() {
        for s in State::ALL {
            let waits = !matches!(s, Failed | Connected);
            assert_eq!(s.fails_on_suppression(), waits, "{s:?}");
            assert_eq!(State::CONNECTABLE.contains(&s), s != Connected, "{s:?}");
            if s.fails_on_suppression() {
                assert!(State::allowed(s, Failed), "{s:?}");
            }
            if State::CONNECTABLE.contains(&s) {
                assert!(State::allowed(s, Connected), "{s:?}");
            }
        }
    }

    #[test]
    fn the_transition_table() {
        for from in State::ALL {
            for to in State::ALL {
                let listed = from == to || TABLE.contains(&(from, to));
                assert_eq!(State::allowed(from, to), listed, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn connected_is_final() {
        for to in State::ALL {
            assert_eq!(State::allowed(Connected, to), to == Connected);
        }
    }
}
