//! The values the rest of the code may rely on: each is parsed once, at the
//! edge, so an invalid email, MydexID or token cannot exist past intake.

mod callback_event;
pub mod cron;
mod email;
mod grants;
mod invitee;
mod linking_token;
mod mydexid;
pub mod send_window;
mod state;

pub use callback_event::{Credentials, Event};
pub use email::{Email, EmailError};
pub use grants::{DatasetGrant, Grants};
pub use invitee::{Invitee, InviteeError, MAX_FIELD_LEN};
pub use linking_token::LinkingToken;
pub use mydexid::{MydexId, MydexIdError};
pub use state::State;
