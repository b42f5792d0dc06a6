//! The names the broker uses, in one place: each topic's subject
//! (`{prefix}.callbacks`) and stream (`{PREFIX}_CALLBACKS`), and the durable
//! pull consumer the daemon reads with (`connector`).

use crate::config::NatsPrefix;

/// The durable pull consumer the daemon reads every stream with.
pub const CONSUMER: &str = "connector";

/// What travels through the broker, one stream each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Callbacks taken by edges, sealed to the daemon's key.
    Callbacks,
    /// One-click unsubscribes taken by edges, sealed too.
    Unsubscribes,
    /// Invitee rows (`enqueue --nats`, `[queue] source = "nats"`).
    Invitees,
    /// Reading rows (`deliver --nats`, `[delivery] source = "nats"`).
    Readings,
    /// Rows refused on intake, with their reasons (kept for operators).
    Rejects,
}

impl Topic {
    pub const ALL: [Topic; 5] = [
        Topic::Callbacks,
        Topic::Unsubscribes,
        Topic::Invitees,
        Topic::Readings,
        Topic::Rejects,
    ];

    /// The subject's last token and the stream's suffix, lower case.
    pub fn word(self) -> &'static str {
        match self {
            Topic::Callbacks => "callbacks",
            Topic::Unsubscribes => "unsubscribes",
            Topic::Invitees => "invitees",
            Topic::Readings => "readings",
            Topic::Rejects => "rejects",
        }
    }

    /// `{prefix}.{word}`.
    pub fn subject(self, prefix: &NatsPrefix) -> String {
        format!("{}.{}", prefix.as_str(), self.word())
    }

    /// `{PREFIX}_{WORD}` (a stream name has no `.`; `-` kept as written).
    pub fn stream(self, prefix: &NatsPrefix) -> String {
        format!(
            "{}_{}",
            prefix.as_str().to_ascii_uppercase(),
            self.word().to_ascii_uppercase()
        )
    }

    /// Whether the daemon consumes this stream (with [`CONSUMER`]). Rejects
    /// are kept for operators and other tools to read; no one takes them
    /// away, so they are kept for `retention` whatever reads them.
    pub fn consumed(self) -> bool {
        self != Topic::Rejects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let p = NatsPrefix::parse("acme-1").unwrap();
        assert_eq!(Topic::Callbacks.subject(&p), "acme-1.callbacks");
        assert_eq!(Topic::Unsubscribes.stream(&p), "ACME-1_UNSUBSCRIBES");
        assert_eq!(Topic::Rejects.stream(&p), "ACME-1_REJECTS");
        assert!(!Topic::Rejects.consumed());
        assert!(NatsPrefix::parse("a.b").is_err());
        assert!(NatsPrefix::parse("a*").is_err());
        assert!(NatsPrefix::parse("").is_err());
    }
}
