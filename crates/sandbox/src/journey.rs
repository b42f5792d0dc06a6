//! A member's journey through a one-time link, shared by the browser pages
//! and the `/_sandbox/journeys` shortcut: check the link, identify the member
//! (log in or register), take their consent with the Private Key, change the
//! connection, and build the callback that tells the subscriber.

use std::time::Instant;

use axum::http::StatusCode;

use super::callbacks::{self, Callback};
use super::registration::{self as reg, WRONG_MEMBER};
use super::state::{AppState, Identity, Link, LinkKind, Member, World, random_id};
use super::wire::CallbackKind;

/// Why a journey step failed.
#[derive(Debug, thiserror::Error)]
pub enum JourneyError {
    #[error("This link is not known.")]
    UnknownLink,
    #[error("This link has already been used. A one-time link opens only once.")]
    Used,
    #[error("This link has expired. A one-time link lasts 24 hours at most.")]
    Expired,
    #[error("{}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("{WRONG_MEMBER}")]
    WrongMember,
    #[error("This session is not known or has ended.")]
    UnknownSession,
}

impl JourneyError {
    pub fn status(&self) -> StatusCode {
        match self {
            JourneyError::UnknownLink | JourneyError::UnknownSession => StatusCode::NOT_FOUND,
            JourneyError::Used | JourneyError::Expired => StatusCode::GONE,
            JourneyError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            JourneyError::WrongMember => StatusCode::FORBIDDEN,
        }
    }

    pub fn messages(&self) -> Vec<String> {
        match self {
            JourneyError::Invalid(m) => m.clone(),
            other => vec![other.to_string()],
        }
    }

    fn invalid(errors: Vec<&'static str>) -> Self {
        JourneyError::Invalid(errors.into_iter().map(str::to_owned).collect())
    }
}

/// What the member typed to identify themselves.
#[derive(Debug, Clone)]
pub enum Credentials {
    Login {
        mydexid: String,
        password: String,
    },
    Register {
        mydexid: String,
        email: String,
        password: String,
    },
}

/// The result of a completed journey, before the callback is delivered.
#[derive(Debug, Clone)]
pub struct Completed {
    pub uid: u64,
    pub mydexid: String,
    pub connection_id: String,
    pub return_to: String,
    pub callback: Callback,
}

/// A link that can still be used (not marking it).
pub fn usable_link<'w>(world: &'w World, id: &str) -> Result<&'w Link, JourneyError> {
    let link = world.links.get(id).ok_or(JourneyError::UnknownLink)?;
    if link.used {
        return Err(JourneyError::Used);
    }
    if link.expired() {
        return Err(JourneyError::Expired);
    }
    Ok(link)
}

/// The browser's single visit: mark the link used and open a session.
pub fn visit(world: &mut World, id: &str) -> Result<(Link, String), JourneyError> {
    usable_link(world, id)?;
    let link = world.links.get_mut(id).ok_or(JourneyError::UnknownLink)?;
    link.used = true;
    let link = link.clone();
    let sid = random_id(32);
    world.prune();
    world.sessions.insert(
        sid.clone(),
        super::state::Session {
            link_id: link.id.clone(),
            identity: None,
            created: Instant::now(),
        },
    );
    Ok((link, sid))
}

/// Log in or register (validated, not yet stored) against a link.
pub fn identify(world: &World, link: &Link, creds: Credentials) -> Result<Identity, JourneyError> {
    let named = link.mydexid.as_deref().map(str::to_lowercase);
    match creds {
        Credentials::Login { mydexid, password } => {
            let mydexid = mydexid.trim();
            let password = password.trim();
            let uid = world
                .uid_by_mydexid(mydexid)
                .ok_or_else(|| JourneyError::invalid(vec![reg::LOGIN_FAILED]))?;
            let member = world
                .member(uid)
                .ok_or_else(|| JourneyError::invalid(vec![reg::LOGIN_FAILED]))?;
            if member.password != password {
                return Err(JourneyError::invalid(vec![reg::LOGIN_FAILED]));
            }
            if named.is_some_and(|n| n != member.mydexid.to_lowercase()) {
                return Err(JourneyError::WrongMember);
            }
            Ok(Identity::Existing { uid })
        }
        Credentials::Register {
            mydexid,
            email,
            password,
        } => {
            let (mydexid, email, password) = (mydexid.trim(), email.trim(), password.trim());
            if link.is_update() {
                // The update journey only offers a login, for the named member.
                return Err(match named {
                    Some(n) if n == mydexid.to_lowercase() => {
                        JourneyError::invalid(vec![reg::LOGIN_FAILED])
                    }
                    _ => JourneyError::WrongMember,
                });
            }
            if named
                .as_deref()
                .is_some_and(|n| !mydexid.is_empty() && n != mydexid.to_lowercase())
            {
                return Err(JourneyError::WrongMember);
            }
            let errors = reg::registration_errors(world, mydexid, email, password);
            if !errors.is_empty() {
                return Err(JourneyError::invalid(errors));
            }
            Ok(Identity::New {
                mydexid: mydexid.to_owned(),
                email: email.to_owned(),
                password: password.to_owned(),
            })
        }
    }
}

/// Consent with the Private Key: store the member if new, change the
/// connection, and build the callback.
pub fn consent(
    state: &AppState,
    world: &mut World,
    link: &Link,
    identity: &Identity,
    private_key: &str,
    accepted: bool,
) -> Result<Completed, JourneyError> {
    let uid = consenting_member(world, identity, private_key.trim(), accepted)?;
    let nid = state.connection.nid.clone();
    let current_version = state.settings.read().connection_version;
    let member = world.member_mut(uid).ok_or(JourneyError::UnknownSession)?;
    let callback = change_connection(member, link, &nid, current_version);
    let return_to = match (link.kind, &link.linking_token) {
        (LinkKind::Identify, Some(token)) => with_linking_token(&link.return_to, token),
        _ => link.return_to.clone(),
    };
    Ok(Completed {
        uid,
        mydexid: member.mydexid.clone(),
        connection_id: format!("{uid}-{nid}"),
        return_to,
        callback,
    })
}

/// The uid of the member consenting with `private_key` (trimmed): an
/// existing member whose key it is, or a new one, stored now.
fn consenting_member(
    world: &mut World,
    identity: &Identity,
    private_key: &str,
    accepted: bool,
) -> Result<u64, JourneyError> {
    match identity {
        Identity::Existing { uid } => {
            let member = world.member(*uid).ok_or(JourneyError::UnknownSession)?;
            if member.private_key != private_key {
                return Err(JourneyError::invalid(vec![reg::KEY_WRONG]));
            }
            if !accepted {
                return Err(JourneyError::invalid(vec![reg::TERMS_NOT_ACCEPTED]));
            }
            Ok(*uid)
        }
        Identity::New {
            mydexid,
            email,
            password,
        } => {
            // Someone may have taken the MydexID or email meanwhile.
            let mut errors = reg::registration_errors(world, mydexid, email, password);
            errors.extend(reg::private_key_errors(
                mydexid,
                password,
                private_key,
                accepted,
            ));
            if !errors.is_empty() {
                return Err(JourneyError::invalid(errors));
            }
            Ok(world.add_member(
                mydexid.clone(),
                email.clone(),
                password.clone(),
                private_key.to_owned(),
            ))
        }
    }
}

/// Change the member's connection as `link` asks (a new connection with a
/// fresh key at `current_version`, an update to the link's version, or
/// nothing for identify) and build the callback that tells the subscriber.
fn change_connection(
    member: &mut Member,
    link: &Link,
    nid: &str,
    current_version: u32,
) -> Callback {
    let uid = member.uid;
    let linking_token = link.linking_token.clone();
    match link.kind {
        LinkKind::Identify => Callback {
            kind: CallbackKind::Identify,
            body: callbacks::identify_body(&member.mydexid, linking_token.as_deref()),
            linking_token,
        },
        LinkKind::Ftc if link.is_update() => {
            member.version = link.version;
            member.revoked = false;
            member.withheld.clear();
            Callback {
                kind: CallbackKind::Update,
                body: callbacks::connection_body(
                    uid,
                    &member.mydexid,
                    None,
                    nid,
                    link.version,
                    linking_token.as_deref(),
                ),
                linking_token,
            }
        }
        LinkKind::Ftc => {
            let key = random_id(40);
            member.key = Some(key.clone());
            member.version = current_version.max(1);
            member.revoked = false;
            member.withheld.clear();
            Callback {
                kind: CallbackKind::Ftc,
                body: callbacks::connection_body(
                    uid,
                    &member.mydexid,
                    Some(&key),
                    nid,
                    member.version,
                    linking_token.as_deref(),
                ),
                linking_token,
            }
        }
    }
}

/// Where the browser goes after an identify journey: `return_to` with
/// `linking_token` added to its query (docs/mydex-contract.md §10.5), after
/// any query it has and before any fragment.
pub fn with_linking_token(return_to: &str, token: &str) -> String {
    if let Ok(mut url) = reqwest::Url::parse(return_to) {
        url.query_pairs_mut().append_pair("linking_token", token);
        return url.into();
    }
    // Not an absolute URL: add the pair as text, still before a fragment.
    let (head, fragment) = match return_to.split_once('#') {
        Some((h, f)) => (h, Some(f)),
        None => (return_to, None),
    };
    let pair: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("linking_token", token)
        .finish();
    let sep = match head.contains('?') {
        true if head.ends_with('?') || head.ends_with('&') => "",
        true => "&",
        false => "?",
    };
    match fragment {
        Some(f) => format!("{head}{sep}{pair}#{f}"),
        None => format!("{head}{sep}{pair}"),
    }
}

/// The id of the link a one-time URL names: the token of
/// `.../ftc/begin/{nid}/{token}/{version}`, or the last segment of
/// `.../identify/{token}`. Callers still compare the whole URL.
pub fn link_id_from_url(url: &str) -> Option<String> {
    let path = url.trim().split(['?', '#']).next().unwrap_or("");
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        [.., "ftc", "begin", _nid, token, _version] => Some((*token).to_owned()),
        [.., "identify", token] => Some((*token).to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linking_token_is_added_to_any_return_to() {
        assert_eq!(
            with_linking_token("https://sbx-my.mydex.org", "t-1"),
            "https://sbx-my.mydex.org/?linking_token=t-1"
        );
        assert_eq!(
            with_linking_token("https://example.com/back?a=1&b=x%20y", "t 1&2"),
            "https://example.com/back?a=1&b=x%20y&linking_token=t+1%262"
        );
        assert_eq!(
            with_linking_token("https://example.com/back#done", "t"),
            "https://example.com/back?linking_token=t#done"
        );
        assert_eq!(
            with_linking_token("/back?x=1#f", "t"),
            "/back?x=1&linking_token=t#f"
        );
        assert_eq!(with_linking_token("back", "t"), "back?linking_token=t");
    }

    #[test]
    fn link_ids_come_from_mydex_shaped_urls() {
        assert_eq!(
            link_id_from_url("http://127.0.0.1:1/ftc/begin/45678/AbC/2").as_deref(),
            Some("AbC")
        );
        assert_eq!(
            link_id_from_url("https://x.example/pre/identify/XyZ/").as_deref(),
            Some("XyZ")
        );
        assert_eq!(link_id_from_url("http://x/ftc/begin/AbC"), None);
        assert_eq!(link_id_from_url("nonsense"), None);
    }
}
