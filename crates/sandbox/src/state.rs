//! Everything the sandbox remembers, in memory only: the accepted Dedicated
//! Connection, the run-time settings, members, one-time links, browser
//! sessions, access tokens, and the logs that tests assert on. A restart
//! starts clean.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::{Mutex, RwLock};
use rand::Rng;
use sha2::{Digest, Sha512};

use super::args::{FaultKind, Resolved};
use super::wire::CallbackFormat;

/// Keep at most this many entries in the request and callback logs.
pub const LOG_CAP: usize = 10_000;

/// How long a short access token of `/access-token/{nid}` stays usable
/// (and it is usable once).
pub const SHORT_TOKEN_TTL: Duration = Duration::from_secs(60);

/// The fixed facts of the Dedicated Connection the sandbox accepts.
#[derive(Debug, Clone)]
pub struct Connection {
    pub nid: String,
    /// The Connection Token itself: the older FTC flow's `Authentication`
    /// header is SHA-512 of a short access token followed by it.
    pub token: String,
    /// Lowercase hex SHA-512 of the Connection Token.
    pub token_hash: String,
    pub client_id: String,
    pub client_secret: String,
    /// Base URL of one-time links, without a trailing slash.
    pub public_url: String,
    /// The subscriber's name, as the member pages show it.
    pub subscriber_name: String,
}

/// What tests may change while the sandbox runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub connection_version: u32,
    pub fault_rate: f64,
    pub faults: Vec<FaultKind>,
    pub callback_format: CallbackFormat,
    pub callback_shape: super::shapes::CallbackShape,
    pub token_ttl: Duration,
    pub link_ttl: Duration,
    pub callback_url: String,
    pub slow_delay: Duration,
    pub callback_retries: u32,
    /// Refuse our connection on every status check (None: answer normally).
    pub status_denial: Option<super::denial::StatusDenial>,
}

/// A member of Mydex (a MydexID with a PDS) as the sandbox knows them.
#[derive(Debug, Clone)]
pub struct Member {
    pub uid: u64,
    pub mydexid: String,
    pub email: String,
    pub password: String,
    pub private_key: String,
    /// The member connection key of our Dedicated Connection, once connected.
    pub key: Option<String>,
    /// The connection version the member last consented to (0: never).
    pub version: u32,
    pub revoked: bool,
    /// Datasets the member did not grant write access to at consent
    /// (`JourneyRequest.withhold`).
    pub withheld: Vec<String>,
}

/// Which journey a one-time link starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    Ftc,
    Identify,
}

/// A one-time link handed out by `/ftc/setup` or `/identify`.
#[derive(Debug, Clone)]
pub struct Link {
    pub id: String,
    pub url: String,
    pub kind: LinkKind,
    pub version: u32,
    pub mydexid: Option<String>,
    pub linking_token: Option<String>,
    pub return_to: String,
    /// Order of issue: two links made in the same millisecond keep it.
    pub seq: u64,
    pub expires_at: Instant,
    pub used: bool,
}

impl Link {
    /// True once the link's lifetime is over.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.expires_at
    }

    /// True for the update (re-consent) journey.
    pub fn is_update(&self) -> bool {
        self.kind == LinkKind::Ftc && self.version > 1
    }
}

/// Who a browser session has identified as, before consent.
#[derive(Debug, Clone)]
pub enum Identity {
    Existing {
        uid: u64,
    },
    New {
        mydexid: String,
        email: String,
        password: String,
    },
}

/// A browser's way through one link, after its single visit.
#[derive(Debug, Clone)]
pub struct Session {
    pub link_id: String,
    pub identity: Option<Identity>,
    pub created: Instant,
}

/// A journey that ended in this browser, for the confirmation page.
#[derive(Debug, Clone)]
pub struct Completion {
    pub mydexid: String,
    pub kind: LinkKind,
    /// The connection version consented to (FTC and update).
    pub version: u32,
    pub update: bool,
    pub created: Instant,
}

/// An OAuth2 access token.
#[derive(Debug, Clone)]
pub struct Token {
    pub expires_at: Instant,
    pub pdx_scope: bool,
}

/// One line of the request log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub at_ms: u64,
}

/// One delivered (or failed) callback.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallbackRecord {
    pub method: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: Option<u16>,
    pub attempts: u32,
    pub linking_token: Option<String>,
    pub url: String,
    /// The shape it was sent in (`callback_shape`).
    pub shape: &'static str,
}

/// Counters for assertions.
#[derive(Debug, Default)]
pub struct Counts {
    pub ftc_setup: AtomicU64,
    pub identify: AtomicU64,
    pub status: AtomicU64,
    pub token: AtomicU64,
    pub faults_injected: AtomicU64,
    /// `GET /access-token/{nid}` (the older FTC flow).
    pub access_token: AtomicU64,
    /// `POST /api/connection`.
    pub api_connection: AtomicU64,
    /// `POST /api/connection/update`.
    pub api_connection_update: AtomicU64,
    /// PDS calls (`pds.rs`): creates, reads, and rows created.
    pub pds_create: AtomicU64,
    pub pds_read: AtomicU64,
    pub pds_rows: AtomicU64,
}

impl Counts {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Members, links, sessions and tokens, behind one lock so every journey
/// step is atomic.
#[derive(Debug, Default)]
pub struct World {
    pub members: Vec<Member>,
    /// Lowercased MydexID → uid.
    pub by_mydexid: HashMap<String, u64>,
    /// Lowercased email → uid.
    pub by_email: HashMap<String, u64>,
    pub links: HashMap<String, Link>,
    /// The `seq` of the last link issued.
    pub link_seq: u64,
    pub sessions: HashMap<String, Session>,
    pub tokens: HashMap<String, Token>,
    /// Short access tokens not yet used → when they expire.
    pub short_tokens: HashMap<String, Instant>,
    /// Journeys completed, by the id of the browser's confirmation cookie.
    pub completions: HashMap<String, Completion>,
}

/// The first member uid.
pub const FIRST_UID: u64 = 1001;

impl World {
    pub fn member(&self, uid: u64) -> Option<&Member> {
        let idx = uid.checked_sub(FIRST_UID)?;
        self.members.get(usize::try_from(idx).ok()?)
    }

    pub fn member_mut(&mut self, uid: u64) -> Option<&mut Member> {
        let idx = uid.checked_sub(FIRST_UID)?;
        self.members.get_mut(usize::try_from(idx).ok()?)
    }

    pub fn uid_by_mydexid(&self, mydexid: &str) -> Option<u64> {
        self.by_mydexid.get(&mydexid.to_lowercase()).copied()
    }

    pub fn email_in_use(&self, email: &str) -> bool {
        self.by_email.contains_key(&email.to_lowercase())
    }

    /// Add a member; the caller has checked uniqueness.
    pub fn add_member(
        &mut self,
        mydexid: String,
        email: String,
        password: String,
        private_key: String,
    ) -> u64 {
        let uid = FIRST_UID + self.members.len() as u64;
        self.by_mydexid.insert(mydexid.to_lowercase(), uid);
        self.by_email.insert(email.to_lowercase(), uid);
        self.members.push(Member {
            uid,
            mydexid,
            email,
            password,
            private_key,
            key: None,
            version: 0,
            revoked: false,
            withheld: Vec::new(),
        });
        uid
    }

    /// Drop expired tokens and stale sessions once the maps grow.
    pub fn prune(&mut self) {
        let now = Instant::now();
        if self.tokens.len() > 10_000 {
            self.tokens.retain(|_, t| t.expires_at > now);
        }
        if self.short_tokens.len() > 10_000 {
            self.short_tokens.retain(|_, expires| *expires > now);
        }
        if self.sessions.len() > 10_000 {
            self.sessions
                .retain(|_, s| now.duration_since(s.created) < Duration::from_secs(24 * 3600));
        }
        if self.completions.len() > 10_000 {
            self.completions
                .retain(|_, c| now.duration_since(c.created) < Duration::from_secs(3600));
        }
    }
}

/// The whole sandbox state, shared by every handler.
#[derive(Debug)]
pub struct AppState {
    pub connection: Connection,
    pub settings: RwLock<Settings>,
    pub world: Mutex<World>,
    pub requests: Mutex<VecDeque<RequestRecord>>,
    pub callbacks: Mutex<VecDeque<CallbackRecord>>,
    pub counts: Counts,
    /// `/connection/status` requests per member uid (tests count checks).
    pub status_checks: Mutex<HashMap<u64, u64>>,
    /// `POST /api/pds/transaction` requests per `uid` of their query,
    /// refused ones included (tests count what one member costs Mydex).
    pub pds_creates: Mutex<HashMap<u64, u64>>,
    pub http: reqwest::Client,
    /// How many callbacks `callback_shape = rotate` has shaped.
    pub shape_turn: std::sync::atomic::AtomicU64,
    /// Rows in members' PDS (`pds.rs`).
    pub pds: Mutex<PdsData>,
}

impl AppState {
    pub fn new(resolved: Resolved, public_url: String) -> Result<Self, reqwest::Error> {
        let args = resolved.args;
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5));
        if let Some(pem) = &resolved.ca_pem {
            // `--ca-file`: callbacks to https:// trust only these roots.
            http = http.tls_certs_only(reqwest::Certificate::from_pem_bundle(pem)?);
        }
        let http = http.build()?;
        Ok(AppState {
            connection: Connection {
                nid: args.nid.clone(),
                token_hash: sha512_hex(&resolved.connection_token),
                token: resolved.connection_token,
                client_id: args.client_id.clone(),
                client_secret: resolved.client_secret,
                public_url: public_url.trim_end_matches('/').to_owned(),
                subscriber_name: args.subscriber_name.clone(),
            },
            settings: RwLock::new(Settings {
                connection_version: args.connection_version,
                fault_rate: args.fault_rate,
                faults: args.faults.clone(),
                callback_format: args.callback_format,
                callback_shape: args.callback_shape,
                token_ttl: args.token_ttl,
                link_ttl: args.link_ttl,
                callback_url: args.callback_url.clone(),
                slow_delay: args.slow_delay,
                callback_retries: args.callback_retries,
                status_denial: args.status_denial,
            }),
            world: Mutex::new(World::default()),
            requests: Mutex::new(VecDeque::new()),
            callbacks: Mutex::new(VecDeque::new()),
            counts: Counts::default(),
            status_checks: Mutex::new(HashMap::new()),
            pds_creates: Mutex::new(HashMap::new()),
            http,
            shape_turn: std::sync::atomic::AtomicU64::new(0),
            pds: Mutex::new(Default::default()),
        })
    }

    /// Remember one request (bounded).
    pub fn log_request(&self, method: &str, path: &str, status: u16) {
        let rec = RequestRecord {
            method: method.to_owned(),
            path: path.to_owned(),
            status,
            at_ms: now_ms(),
        };
        let mut log = self.requests.lock();
        if log.len() >= LOG_CAP {
            log.pop_front();
        }
        log.push_back(rec);
    }

    /// Remember one callback delivery (bounded).
    pub fn log_callback(&self, rec: CallbackRecord) {
        let mut log = self.callbacks.lock();
        if log.len() >= LOG_CAP {
            log.pop_front();
        }
        log.push_back(rec);
    }
}

/// One stored row: Mydex's id, and its fields as strings.
pub type Row = std::collections::BTreeMap<String, String>;

/// Every member's rows: uid → dataset → row id → row.
#[derive(Debug, Default)]
pub struct PdsData {
    pub rows: HashMap<u64, HashMap<String, std::collections::BTreeMap<u64, Row>>>,
    pub next_id: u64,
}

/// Lowercase hex SHA-512.
pub fn sha512_hex(s: &str) -> String {
    hex::encode(Sha512::digest(s.as_bytes()))
}

/// A random alphanumeric string of `len` characters.
pub fn random_id(len: usize) -> String {
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Constant-time string equality.
pub fn ct_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
