//! The Registration seed's rules, each with its own message: MydexID, email
//! and password when a member registers, and the Private Key (with the
//! agreement's acceptance) when they consent. Inputs are trimmed first, as
//! Mydex does; "cannot be the same as" compares without regard to case, as
//! MydexIDs are. Each message names the form field it belongs to.

use super::state::World;

pub const MYDEXID_REQUIRED: &str = "MydexID is required";
pub const MYDEXID_IN_USE: &str = "MydexID is already in use";
pub const MYDEXID_NOT_ALNUM: &str = "MydexID must contain only letters and numbers";
pub const MYDEXID_ONLY_DIGITS: &str = "MydexID cannot be made up only of numbers";
pub const MYDEXID_LENGTH: &str = "MydexID must be between 3 and 60 characters long";
pub const EMAIL_REQUIRED: &str = "Email address is required";
pub const EMAIL_INVALID: &str = "Email address is not valid";
pub const EMAIL_IN_USE: &str = "Email address is already in use";
pub const PASSWORD_REQUIRED: &str = "Password is required";
pub const PASSWORD_IS_MYDEXID: &str = "Password cannot be the same as the MydexID";
pub const PASSWORD_TOO_SHORT: &str = "Password must be at least 8 characters long";
pub const KEY_REQUIRED: &str = "Private Key is required";
pub const KEY_IS_MYDEXID: &str = "Private Key cannot be the same as the MydexID";
pub const KEY_IS_PASSWORD: &str = "Private Key cannot be the same as the password";
pub const KEY_LENGTH: &str = "Private Key must be between 8 and 128 characters long";
pub const TERMS_NOT_ACCEPTED: &str =
    "You must accept the Data Sharing and Services Agreement and the terms of service";
pub const LOGIN_FAILED: &str = "Unrecognised MydexID or password";
pub const KEY_WRONG: &str = "Incorrect Private Key";
pub const WRONG_MEMBER: &str = "This one-time link was intended for a different MydexID";

/// The form field a message is shown at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    MydexId,
    Email,
    Password,
    PrivateKey,
    Accept,
}

/// Where `message` (one of the messages above) belongs; None for one of
/// the whole form.
pub fn field_of(message: &str) -> Option<Field> {
    Some(match message {
        MYDEXID_REQUIRED | MYDEXID_IN_USE | MYDEXID_NOT_ALNUM | MYDEXID_ONLY_DIGITS
        | MYDEXID_LENGTH => Field::MydexId,
        EMAIL_REQUIRED | EMAIL_INVALID | EMAIL_IN_USE => Field::Email,
        PASSWORD_REQUIRED | PASSWORD_IS_MYDEXID | PASSWORD_TOO_SHORT | LOGIN_FAILED => {
            Field::Password
        }
        KEY_REQUIRED | KEY_IS_MYDEXID | KEY_IS_PASSWORD | KEY_LENGTH | KEY_WRONG => {
            Field::PrivateKey
        }
        TERMS_NOT_ACCEPTED => Field::Accept,
        _ => return None,
    })
}

/// "The same as", without regard to case (a MydexID is case-insensitive,
/// and a secret that differs from another only in case is no other secret).
fn same(a: &str, b: &str) -> bool {
    a.to_lowercase() == b.to_lowercase()
}

/// Rules 2-5 for a MydexID, without the "in use" check.
pub fn mydexid_errors(mydexid: &str) -> Vec<&'static str> {
    let mut errors = Vec::new();
    if mydexid.is_empty() {
        errors.push(MYDEXID_REQUIRED);
        return errors;
    }
    if !mydexid.chars().all(|c| c.is_ascii_alphanumeric()) {
        errors.push(MYDEXID_NOT_ALNUM);
    }
    if mydexid.chars().all(|c| c.is_ascii_digit()) {
        errors.push(MYDEXID_ONLY_DIGITS);
    }
    let len = mydexid.chars().count();
    if !(3..=60).contains(&len) {
        errors.push(MYDEXID_LENGTH);
    }
    errors
}

fn email_looks_valid(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>')
        && !domain.contains('@')
}

/// All registration errors for (trimmed) `mydexid`, `email`, `password`.
pub fn registration_errors(
    world: &World,
    mydexid: &str,
    email: &str,
    password: &str,
) -> Vec<&'static str> {
    let mut errors = mydexid_errors(mydexid);
    if errors.is_empty() && world.uid_by_mydexid(mydexid).is_some() {
        errors.push(MYDEXID_IN_USE);
    }
    if email.is_empty() {
        errors.push(EMAIL_REQUIRED);
    } else if !email_looks_valid(email) {
        errors.push(EMAIL_INVALID);
    } else if world.email_in_use(email) {
        errors.push(EMAIL_IN_USE);
    }
    if password.is_empty() {
        errors.push(PASSWORD_REQUIRED);
    } else {
        if same(password, mydexid) {
            errors.push(PASSWORD_IS_MYDEXID);
        }
        if password.chars().count() < 8 {
            errors.push(PASSWORD_TOO_SHORT);
        }
    }
    errors
}

/// The Private Key form's rules 1-4.
pub fn private_key_errors(
    mydexid: &str,
    password: &str,
    private_key: &str,
    accepted: bool,
) -> Vec<&'static str> {
    let mut errors = Vec::new();
    if private_key.is_empty() {
        errors.push(KEY_REQUIRED);
    } else {
        if same(private_key, mydexid) {
            errors.push(KEY_IS_MYDEXID);
        }
        if same(private_key, password) {
            errors.push(KEY_IS_PASSWORD);
        }
        let len = private_key.chars().count();
        if !(8..=128).contains(&len) {
            errors.push(KEY_LENGTH);
        }
    }
    if !accepted {
        errors.push(TERMS_NOT_ACCEPTED);
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mydexid_rules() {
        assert!(mydexid_errors("alice1").is_empty());
        assert_eq!(mydexid_errors(""), vec![MYDEXID_REQUIRED]);
        assert_eq!(mydexid_errors("al"), vec![MYDEXID_LENGTH]);
        assert_eq!(mydexid_errors("12345"), vec![MYDEXID_ONLY_DIGITS]);
        assert_eq!(mydexid_errors("al-ice"), vec![MYDEXID_NOT_ALNUM]);
        assert_eq!(mydexid_errors(&"a".repeat(61)), vec![MYDEXID_LENGTH]);
        assert!(mydexid_errors(&"a".repeat(60)).is_empty());
    }

    #[test]
    fn private_key_rules() {
        assert!(private_key_errors("alice1", "password1", "a-good-key", true).is_empty());
        assert_eq!(
            private_key_errors("alice1", "password1", "", true),
            vec![KEY_REQUIRED]
        );
        assert_eq!(
            private_key_errors("alice1", "password1", "password1", true),
            vec![KEY_IS_PASSWORD]
        );
        assert_eq!(
            private_key_errors("alice1", "password1", "short", false),
            vec![KEY_LENGTH, TERMS_NOT_ACCEPTED]
        );
    }

    #[test]
    fn same_as_checks_ignore_case() {
        assert_eq!(
            private_key_errors("NewMember7", "password1", "newmember7", true),
            vec![KEY_IS_MYDEXID]
        );
        assert_eq!(
            private_key_errors("alice1", "Password1", "PASSWORD1", true),
            vec![KEY_IS_PASSWORD]
        );
        let world = World::default();
        assert_eq!(
            registration_errors(&world, "Alice1234", "a@example.com", "aLICE1234"),
            vec![PASSWORD_IS_MYDEXID]
        );
    }

    #[test]
    fn every_rule_message_has_its_field() {
        for m in [MYDEXID_REQUIRED, MYDEXID_LENGTH, MYDEXID_IN_USE] {
            assert_eq!(field_of(m), Some(Field::MydexId));
        }
        assert_eq!(field_of(EMAIL_IN_USE), Some(Field::Email));
        assert_eq!(field_of(LOGIN_FAILED), Some(Field::Password));
        assert_eq!(field_of(KEY_WRONG), Some(Field::PrivateKey));
        assert_eq!(field_of(TERMS_NOT_ACCEPTED), Some(Field::Accept));
        assert_eq!(field_of("something else"), None);
    }
}
