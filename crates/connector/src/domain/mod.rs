//! The values the rest of the code may rely on: each is parsed once, at the
//! edge, so an invalid email, MydexID or token cannot exist past intake; and
//! the records built from them (invitations with their states and transition
//! table, members, callbacks as typed events), kept by `store`.

mod callback_event;
mod callback_rule;
pub mod cron;
mod email;
mod grants;
mod held_group;
mod invitation;
mod invitee;
mod linking_token;
mod mail_token;
mod member;
mod message_id;
mod mydexid;
mod person;
mod reading;
mod rejected_row;
pub mod send_window;
mod state;

pub use callback_event::{Credentials, Event};
pub use callback_rule::{Admission, Answering, CallbackFingerprint, Facts, Refusal, admit};
pub use email::{Email, EmailError};
pub use grants::{DatasetGrant, Grants};
pub use held_group::{HeldGroup, RetryCause};
pub use invitation::{HistoryEntry, Invitation, Kind};
pub use invitee::{Invitee, InviteeError, MAX_FIELD_LEN};
pub use linking_token::LinkingToken;
pub use mail_token::{MAIL_TOKEN_LEN, MailToken, TokenKind};
pub use member::{CallbackAnswer, LastCheck, Member, MemberStatus};
pub use message_id::{message_id, message_id_token};
pub use mydexid::{MydexId, MydexIdError};
pub use person::PersonHash;
pub use reading::{DatasetName, MemberRef, Reading, ReadingError, RowState};
pub use rejected_row::{
    IntakeVerdict, RejectedRow, Rejection, RejectsPage, SinceError, VerdictAnswer, parse_since,
    rfc3339,
};
pub use state::State;
