//! A mailbox key (`smtp.from`): `Name <user@example.com>` or
//! `user@example.com`. The mail library only says "Invalid input"; what is
//! wrong is said here in words (no `@`, an unpaired `<`, a name that needs
//! quotes), so the operator can fix it from the message alone.

use lettre::message::Mailbox;

use super::error::ConfigError;
use super::validate::Validator;

/// Characters a display name may not carry outside double quotes.
const SPECIALS: &str = "()<>[]:;@\\,.\"";

impl Validator {
    /// `raw` as a mailbox, or an error naming `key` and what is wrong.
    pub(super) fn mailbox(&self, key: &str, raw: &str) -> Result<Mailbox, ConfigError> {
        raw.parse()
            .map_err(|_| self.err(key, format!("{raw:?} is not a mailbox: {}", problem(raw))))
    }
}

/// What is wrong with a mailbox the mail library refused.
fn problem(raw: &str) -> String {
    const FORM: &str = "write `Name <user@example.com>` or `user@example.com`";
    let s = raw.trim();
    if s.is_empty() {
        return format!("it is empty; {FORM}");
    }
    let (name, addr) = match (s.find('<'), s.rfind('>')) {
        (Some(open), Some(close)) if open < close && close + 1 == s.len() => {
            (Some(s[..open].trim()), s[open + 1..close].trim())
        }
        (None, None) => (None, s),
        _ => return format!("its `<` and `>` do not pair up; {FORM}"),
    };
    if let Err(e) = addr.parse::<lettre::Address>() {
        return address_problem(addr, e);
    }
    match name {
        Some(n) if !n.starts_with('"') && n.contains(|c| SPECIALS.contains(c)) => format!(
            "the name {n:?} holds characters a mail header cannot carry unquoted (any of {SPECIALS}); put it in double quotes: `\"{n}\" <{addr}>`"
        ),
        _ => format!("it is not a name and an address; {FORM}"),
    }
}

fn address_problem(addr: &str, e: lettre::address::AddressError) -> String {
    use lettre::address::AddressError as E;
    match (addr.split_once('@'), e) {
        (None, _) => format!("the address {addr:?} has no `@` and domain"),
        (Some(("", _)), _) => format!("the address {addr:?} has nothing before the `@`"),
        (Some((_, "")), _) => format!("the address {addr:?} has no domain after the `@`"),
        (Some((user, _)), E::InvalidUser) => {
            format!("{user:?}, before the `@`, is not valid in an address")
        }
        (Some((_, domain)), E::InvalidDomain) => format!("{domain:?} is not a domain name"),
        _ => format!(
            "the address {addr:?} is not valid (spaces or characters an address cannot hold)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::problem;

    #[test]
    fn mailbox_problems_in_words() {
        assert!(problem("").contains("empty"));
        assert!(problem("connect.example.com").contains("no `@`"));
        assert!(problem("Example <connect@example.com").contains("do not pair up"));
        assert!(problem("Example <@example.com>").contains("nothing before"));
        assert!(problem("Example <connect@>").contains("no domain"));
        assert!(problem("Example <connect@exa mple.com>").contains("not a domain"));
        let quoted = problem("Example, Inc. <connect@example.com>");
        assert!(quoted.contains("double quotes"), "{quoted}");
    }
}
