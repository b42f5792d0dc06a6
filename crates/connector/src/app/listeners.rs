//! The daemon's two listening sockets, callback and admin. Under systemd
//! they come from the socket units (`systemd/mydex-connector.socket`,
//! `systemd/mydex-connector-admin.socket`): the service manager holds them
//! across restarts and upgrades, so a callback that arrives while the daemon
//! restarts waits in the socket's backlog for the next process instead of
//! being refused. They are passed by the `sd_listen_fds` protocol
//! (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`) and found by name
//! (`FileDescriptorName=callback` / `admin`), else by the configured
//! address; each is checked to be a listening TCP socket. Without them the
//! daemon binds the configured addresses itself.

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;

/// One of the daemon's listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Callback,
    Admin,
}

impl Listener {
    /// Its name in `LISTEN_FDNAMES` (the socket unit's `FileDescriptorName=`).
    pub fn fd_name(self) -> &'static str {
        match self {
            Listener::Callback => "callback",
            Listener::Admin => "admin",
        }
    }

    /// Its configuration key.
    pub fn key(self) -> &'static str {
        match self {
            Listener::Callback => "callback.listen",
            Listener::Admin => "admin.listen",
        }
    }

    fn is_known_name(name: &str) -> bool {
        name == "callback" || name == "admin"
    }
}

/// Why a socket passed by the service manager cannot serve as a listener.
#[derive(Debug, thiserror::Error)]
pub enum NotTcpListener {
    #[error("not a socket ({0})")]
    NotASocket(#[source] std::io::Error),
    #[error("not a stream socket (ListenStream= makes one)")]
    NotStream,
    #[error("not an IPv4 or IPv6 socket (a Unix socket? give ListenStream= an address and port)")]
    NotIp,
    #[error("not TCP")]
    NotTcp,
    #[error("not listening (a socket unit with Accept=yes passes connections, not its listener)")]
    NotListening,
}

/// Why the listeners could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error(
        "the sockets passed by the service manager (LISTEN_FDS, LISTEN_FDNAMES) cannot be read"
    )]
    Environment(#[source] std::io::Error),
    #[error(
        "the socket passed by the service manager as fd {fd} (name {name:?}) is not a listening TCP socket: {why}"
    )]
    NotTcpListener {
        fd: RawFd,
        name: String,
        why: NotTcpListener,
    },
    #[error(
        "the service manager passed two sockets named {0:?}: give each socket unit its own FileDescriptorName="
    )]
    DuplicateName(String),
    #[error("{key} {addr}: cannot bind")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: cannot serve the socket passed by the service manager")]
    Adopt {
        key: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl ListenError {
    /// The sockets handed to the daemon are wrong, or a configured address
    /// cannot be bound (in use by another process, not an address of this
    /// machine, a port it may not use): a restart will not fix it (the CLI
    /// exits `EX_CONFIG`).
    pub fn is_config_problem(&self) -> bool {
        use std::io::ErrorKind;
        match self {
            ListenError::Environment(_)
            | ListenError::NotTcpListener { .. }
            | ListenError::DuplicateName(_) => true,
            ListenError::Bind { source, .. } => matches!(
                source.kind(),
                ErrorKind::AddrInUse | ErrorKind::AddrNotAvailable | ErrorKind::PermissionDenied
            ),
            ListenError::Adopt { .. } => false,
        }
    }
}

/// A socket passed by the service manager, checked.
struct PassedSocket {
    fd: RawFd,
    name: String,
    addr: SocketAddr,
    socket: Socket,
}

/// The sockets the service manager passed to this process, until each is
/// claimed by a listener.
pub struct Passed {
    sockets: Vec<PassedSocket>,
}

/// The passed descriptors belong to the first taker: a second `start` in
/// the same process (tests) must not wrap them again.
static TAKEN: AtomicBool = AtomicBool::new(false);

impl Passed {
    /// No sockets: every listener binds its configured address.
    pub fn none() -> Self {
        Self {
            sockets: Vec::new(),
        }
    }

    /// The sockets passed to this process (none without `LISTEN_FDS`, or
    /// when `LISTEN_PID` names another process), each checked to be a
    /// listening TCP socket.
    pub fn from_env() -> Result<Self, ListenError> {
        warn_if_for_another_process();
        if TAKEN.swap(true, Ordering::SeqCst) {
            return Ok(Self::none());
        }
        let fds = sd_notify::listen_fds_with_names().map_err(ListenError::Environment)?;
        let mut sockets: Vec<PassedSocket> = Vec::new();
        for (fd, name) in fds {
            // SAFETY: `listen_fds_with_names` returns only the descriptors
            // LISTEN_FDS announces for this very process (LISTEN_PID), each
            // checked open (it set FD_CLOEXEC on it, which fails on a closed
            // descriptor); nothing else in the daemon uses them, and TAKEN
            // makes this the only owner.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let socket = Socket::from(owned);
            let addr = check(&socket).map_err(|why| ListenError::NotTcpListener {
                fd,
                name: name.clone(),
                why,
            })?;
            if Listener::is_known_name(&name) && sockets.iter().any(|s| s.name == name) {
                return Err(ListenError::DuplicateName(name));
            }
            sockets.push(PassedSocket {
                fd,
                name,
                addr,
                socket,
            });
        }
        Ok(Self { sockets })
    }

    /// The listener of `which`: the passed socket named for it, else a
    /// passed socket without a known name on `configured`, else `configured`
    /// bound here. When the passed socket's address differs from the
    /// configuration, the socket wins (the service manager holds it) and a
    /// warning says so.
    pub async fn listener(
        &mut self,
        which: Listener,
        configured: SocketAddr,
    ) -> Result<TcpListener, ListenError> {
        let by_name = self.sockets.iter().position(|s| s.name == which.fd_name());
        let by_addr = || {
            self.sockets
                .iter()
                .position(|s| !Listener::is_known_name(&s.name) && s.addr == configured)
        };
        let Some(pos) = by_name.or_else(by_addr) else {
            if !self.sockets.is_empty() {
                tracing::warn!(listener = which.fd_name(), key = which.key(), %configured, "the service manager passed sockets, but none named {:?} nor on {configured}: binding {configured} here (a restart will refuse connections on it)", which.fd_name());
            }
            return bind(which, configured).await;
        };
        let passed = self.sockets.swap_remove(pos);
        if passed.addr == configured {
            tracing::info!(listener = which.fd_name(), fd = passed.fd, addr = %passed.addr, "listening on the socket passed by the service manager (held across restarts)");
        } else {
            tracing::warn!(listener = which.fd_name(), key = which.key(), fd = passed.fd, socket = %passed.addr, %configured, "{} is {configured} but the service manager passed a socket on {}: serving on {} (the socket unit wins; make the two agree)", which.key(), passed.addr, passed.addr);
        }
        adopt(which, passed.socket)
    }

    /// Passed sockets no listener claimed: said, and closed (the service
    /// manager keeps its own copy).
    pub fn finish(self) {
        for s in self.sockets {
            tracing::warn!(fd = s.fd, name = %s.name, addr = %s.addr, "a socket passed by the service manager is not used (the daemon takes \"callback\" and \"admin\"); closed");
        }
    }
}

/// The address of `socket` if it is a listening TCP socket.
fn check(socket: &Socket) -> Result<SocketAddr, NotTcpListener> {
    let ty = socket.r#type().map_err(NotTcpListener::NotASocket)?;
    if ty != Type::STREAM {
        return Err(NotTcpListener::NotStream);
    }
    let domain = socket.domain().map_err(NotTcpListener::NotASocket)?;
    if domain != Domain::IPV4 && domain != Domain::IPV6 {
        return Err(NotTcpListener::NotIp);
    }
    match socket.protocol() {
        Ok(Some(p)) if p == Protocol::TCP => {}
        Ok(None) => {}
        _ => return Err(NotTcpListener::NotTcp),
    }
    if !socket.is_listener().map_err(NotTcpListener::NotASocket)? {
        return Err(NotTcpListener::NotListening);
    }
    socket
        .local_addr()
        .map_err(NotTcpListener::NotASocket)?
        .as_socket()
        .ok_or(NotTcpListener::NotIp)
}

/// A passed socket as a Tokio listener.
fn adopt(which: Listener, socket: Socket) -> Result<TcpListener, ListenError> {
    let err = |source| ListenError::Adopt {
        key: which.key(),
        source,
    };
    socket.set_nonblocking(true).map_err(err)?;
    TcpListener::from_std(std::net::TcpListener::from(socket)).map_err(err)
}

/// `configured` bound here.
async fn bind(which: Listener, addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind {
            key: which.key(),
            addr,
            source,
        })
}

/// Sockets meant for another process (a wrapper between the service
/// manager and the daemon changes the PID): said once, as they are ignored.
fn warn_if_for_another_process() {
    let (Ok(pid), Ok(fds)) = (std::env::var("LISTEN_PID"), std::env::var("LISTEN_FDS")) else {
        return;
    };
    if pid.trim() != std::process::id().to_string() {
        tracing::warn!(listen_pid = %pid, listen_fds = %fds, pid = std::process::id(), "LISTEN_FDS names another process (LISTEN_PID): its sockets are not taken; binding the configured addresses (run the daemon directly from the unit, or exec it)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket(domain: Domain, ty: Type) -> Socket {
        Socket::new(domain, ty, None).unwrap()
    }

    #[test]
    fn a_listening_tcp_socket_passes_with_its_address() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert_eq!(check(&Socket::from(OwnedFd::from(l))).unwrap(), addr);
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        let bound = socket(Domain::IPV4, Type::STREAM);
        bound
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        assert!(matches!(check(&bound), Err(NotTcpListener::NotListening)));
        let udp = socket(Domain::IPV4, Type::DGRAM);
        assert!(matches!(check(&udp), Err(NotTcpListener::NotStream)));
        let unix = socket(Domain::UNIX, Type::STREAM);
        assert!(matches!(check(&unix), Err(NotTcpListener::NotIp)));
        let file = std::fs::File::open("/dev/null").unwrap();
        let not_socket = Socket::from(OwnedFd::from(file));
        assert!(matches!(
            check(&not_socket),
            Err(NotTcpListener::NotASocket(_))
        ));
    }

    #[tokio::test]
    async fn by_name_first_then_by_address_else_bound_here() {
        let named = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let unnamed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (named_addr, unnamed_addr) =
            (named.local_addr().unwrap(), unnamed.local_addr().unwrap());
        let passed = |l: std::net::TcpListener, name: &str| {
            let socket = Socket::from(OwnedFd::from(l));
            PassedSocket {
                fd: -1,
                name: name.into(),
                addr: check(&socket).unwrap(),
                socket,
            }
        };
        let mut p = Passed {
            sockets: vec![passed(unnamed, "unknown"), passed(named, "callback")],
        };
        let elsewhere: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let cb = p.listener(Listener::Callback, elsewhere).await.unwrap();
        assert_eq!(cb.local_addr().unwrap(), named_addr, "the name wins");
        let admin = p.listener(Listener::Admin, unnamed_addr).await.unwrap();
        assert_eq!(
            admin.local_addr().unwrap(),
            unnamed_addr,
            "then the address"
        );
        let again = p.listener(Listener::Admin, elsewhere).await.unwrap();
        assert_ne!(again.local_addr().unwrap(), unnamed_addr, "else bound here");
        p.finish();
    }
}
