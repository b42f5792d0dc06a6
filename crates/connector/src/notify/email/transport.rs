//! Delivery: lettre's pooled async SMTP transport by `smtp.url` (TLS,
//! STARTTLS or none, with auth), or a directory outbox for `file://`.
//! A 4xx reply is transient (retried later, up to `smtp.max_attempts`); a
//! server that cannot be reached or answers 421 is unreachable (retried for
//! as long as it lasts, see `outage.rs`); a 5xx is permanent (fails that
//! invitation, with the server's reply).

use std::time::Duration;

use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::config::{SmtpSettings, SmtpTarget};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("SMTP transient failure: {0}")]
    Transient(String),
    #[error("SMTP refused: {0}")]
    Permanent(String),
    /// The server as a whole: refused or timed-out connection, 421.
    #[error("SMTP server unreachable: {0}")]
    Unreachable(String),
}

/// Why the mailer could not be set up from `smtp.*`.
#[derive(Debug, thiserror::Error)]
pub enum MailerSetupError {
    #[error("smtp.url: cannot create outbox {}: {error}", dir.display())]
    Outbox {
        dir: std::path::PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Url(#[from] lettre::transport::smtp::Error),
}

/// Why the SMTP server does not look reachable (for `/readyz`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmtpUnreachable {
    #[error("SMTP server did not answer NOOP")]
    NoNoop,
    /// The error and its causes, as one line.
    #[error("{0}")]
    Failed(String),
}

/// Whether an error is about the server as a whole rather than this message.
fn unreachable(e: &lettre::transport::smtp::Error) -> bool {
    let code = e.status().map(u16::from);
    code == Some(421) || (code.is_none() && !e.is_response() && !e.is_client() && !e.is_tls())
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(AsyncFileTransport<Tokio1Executor>),
}

pub struct Mailer {
    transport: Transport,
    pub outbox: Option<std::path::PathBuf>,
}

impl Mailer {
    pub fn new(settings: &SmtpSettings, concurrency: usize) -> Result<Self, MailerSetupError> {
        match &settings.target {
            SmtpTarget::Outbox(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| MailerSetupError::Outbox {
                    dir: dir.clone(),
                    error: e,
                })?;
                Ok(Self {
                    transport: Transport::Outbox(AsyncFileTransport::new(dir)),
                    outbox: Some(dir.clone()),
                })
            }
            SmtpTarget::Smtp { url, username } => {
                let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?
                    .timeout(Some(settings.timeout))
                    .pool_config(
                        PoolConfig::new()
                            .max_size(concurrency.clamp(1, 64) as u32)
                            .idle_timeout(Duration::from_secs(60)),
                    );
                if let (Some(user), Some(password)) = (username, &settings.password) {
                    builder = builder.credentials(Credentials::new(
                        user.clone(),
                        password.expose_secret().to_string(),
                    ));
                }
                Ok(Self {
                    transport: Transport::Smtp(builder.build()),
                    outbox: None,
                })
            }
        }
    }

    pub async fn send(&self, message: Message) -> Result<(), MailError> {
        match &self.transport {
            Transport::Outbox(t) => t
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| MailError::Transient(format!("outbox: {e}"))),
            Transport::Smtp(t) => match t.send(message).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(MailError::Permanent(describe(&e))),
                Err(e) if unreachable(&e) => Err(MailError::Unreachable(describe(&e))),
                Err(e) => Err(MailError::Transient(describe(&e))),
            },
        }
    }

    /// Whether the SMTP server answers (for readiness checks).
    pub async fn reachable(&self) -> Result<(), SmtpUnreachable> {
        match &self.transport {
            Transport::Outbox(_) => Ok(()),
            Transport::Smtp(t) => match t.test_connection().await {
                Ok(true) => Ok(()),
                Ok(false) => Err(SmtpUnreachable::NoNoop),
                Err(e) => Err(SmtpUnreachable::Failed(describe(&e))),
            },
        }
    }
}

fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s.chars().filter(|c| !c.is_control()).take(500).collect()
}
