//! The sandbox's flags, their defaults, and the optional TOML config file
//! that fills in whatever was left at its default on the command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::shapes::CallbackShape;
use super::wire::CallbackFormat;

/// A fault the sandbox can inject into an API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// 500 Internal Server Error
    Status500,
    /// 503 Service Unavailable
    Status503,
    /// 429 Too Many Requests with `Retry-After: 1`
    Status429,
    /// answer only after `--slow-delay`
    Slow,
    /// close the TCP connection without an HTTP answer
    Drop,
    /// carry the call out, then close the connection without an answer
    /// (written, answer lost); not among the defaults
    Lost,
}

impl FaultKind {
    /// Every fault, the default of `--faults`.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Status500,
        FaultKind::Status503,
        FaultKind::Status429,
        FaultKind::Slow,
        FaultKind::Drop,
    ];

    /// The name used in flags and JSON.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Status500 => "500",
            FaultKind::Status503 => "503",
            FaultKind::Status429 => "429",
            FaultKind::Slow => "slow",
            FaultKind::Drop => "drop",
            FaultKind::Lost => "lost",
        }
    }
}

impl FromStr for FaultKind {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "500" => Ok(FaultKind::Status500),
            "503" => Ok(FaultKind::Status503),
            "429" => Ok(FaultKind::Status429),
            "slow" => Ok(FaultKind::Slow),
            "drop" => Ok(FaultKind::Drop),
            "lost" => Ok(FaultKind::Lost),
            other => Err(ValueError::UnknownFault(other.to_owned())),
        }
    }
}

/// A flag's or a config file's value that does not parse. Its text is what
/// clap prints after "invalid value '...' for '--flag'", so it names no flag.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error("unknown fault {0:?} (expected 500, 503, 429, slow, drop or lost)")]
    UnknownFault(String),
    #[error("{text:?}: {problem}")]
    Duration {
        text: String,
        problem: humantime::DurationError,
    },
    #[error("{text:?}: {problem}")]
    Number {
        text: String,
        problem: std::num::ParseFloatError,
    },
    #[error("{0} is not between 0 and 1")]
    NotAShare(f64),
    /// A TOML value of the wrong type (shown as TOML).
    #[error("unexpected {0}")]
    Unexpected(String),
}

/// Parse a comma list of faults, e.g. `500,429,drop`.
pub fn parse_faults(s: &str) -> Result<Vec<FaultKind>, ValueError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(FaultKind::from_str)
        .collect()
}

fn parse_fault(s: &str) -> Result<FaultKind, ValueError> {
    FaultKind::from_str(s)
}

fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    humantime::parse_duration(s).map_err(|problem| ValueError::Duration {
        text: s.to_owned(),
        problem,
    })
}

fn parse_rate(s: &str) -> Result<f64, ValueError> {
    let v: f64 = s.parse().map_err(|problem| ValueError::Number {
        text: s.to_owned(),
        problem,
    })?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(ValueError::NotAShare(v))
    }
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8090";
const DEFAULT_NID: &str = "45678";
const DEFAULT_CONNECTION_TOKEN: &str = "sandbox-connection-token";
const DEFAULT_CLIENT_ID: &str = "sandbox-client";
const DEFAULT_CLIENT_SECRET: &str = "sandbox-secret";
const DEFAULT_CALLBACK_URL: &str = "http://127.0.0.1:8080/mydex/callback";
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
const DEFAULT_LINK_TTL: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_SLOW_DELAY: Duration = Duration::from_secs(30);
const DEFAULT_CALLBACK_RETRIES: u32 = 3;
const DEFAULT_SUBSCRIBER_NAME: &str = "Example Energy";

/// Flags of `mydex-connector sandbox`.
#[derive(clap::Args, Debug, Clone)]
pub struct SandboxArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Base URL used in one-time links (default: http://{bound address}).
    #[arg(long)]
    pub public_url: Option<String>,
    /// The Dedicated Connection NID the sandbox accepts.
    #[arg(long, default_value = DEFAULT_NID)]
    pub nid: String,
    /// The Dedicated Connection's Connection Token.
    #[arg(long, default_value = DEFAULT_CONNECTION_TOKEN)]
    pub connection_token: String,
    /// Read the Connection Token from this file (overrides --connection-token).
    #[arg(long)]
    pub connection_token_file: Option<PathBuf>,
    /// OAuth2 client id.
    #[arg(long, default_value = DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// OAuth2 client secret.
    #[arg(long, default_value = DEFAULT_CLIENT_SECRET)]
    pub client_secret: String,
    /// Read the OAuth2 client secret from this file (overrides --client-secret).
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,
    /// The Dedicated Connection's current version.
    #[arg(long, default_value_t = 1)]
    pub connection_version: u32,
    /// Where callbacks are sent.
    #[arg(long, default_value = DEFAULT_CALLBACK_URL)]
    pub callback_url: String,
    /// Callback body encoding.
    #[arg(long, value_enum, default_value_t = CallbackFormat::Json)]
    pub callback_format: CallbackFormat,
    /// Callback shape: one of Mydex's published shapes, or `rotate` (each
    /// callback in the next shape).
    #[arg(long, value_enum, default_value_t = CallbackShape::Json)]
    pub callback_shape: CallbackShape,
    /// Lifetime of OAuth2 access tokens (humantime, e.g. "5s").
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    pub token_ttl: Duration,
    /// Lifetime of one-time links.
    #[arg(long, value_parser = parse_duration, default_value = "24h")]
    pub link_ttl: Duration,
    /// Share of API calls answered with a fault (0..1).
    #[arg(long, value_parser = parse_rate, default_value = "0")]
    pub fault_rate: f64,
    /// Faults to choose from: comma list of 500,503,429,slow,drop.
    #[arg(long, value_delimiter = ',', value_parser = parse_fault, default_value = "500,503,429,slow,drop")]
    pub faults: Vec<FaultKind>,
    /// How long a "slow" fault delays the answer.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub slow_delay: Duration,
    /// How many times a failed callback delivery is retried.
    #[arg(long, default_value_t = DEFAULT_CALLBACK_RETRIES)]
    pub callback_retries: u32,
    /// Refuse our connection on every `/connection/status` check, as Mydex
    /// does for a wrong NID or token (default: answer normally).
    #[arg(long, value_enum)]
    pub status_denial: Option<super::denial::StatusDenial>,
    /// Trust only the CA certificates in this PEM file when delivering
    /// callbacks to an `https://` callback URL (a test CA; default: the
    /// system's roots).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// The subscriber's name the member pages show (the Dedicated
    /// Connection's owner).
    #[arg(long, default_value = DEFAULT_SUBSCRIBER_NAME)]
    pub subscriber_name: String,
    /// Optional TOML file with the same keys (snake_case); used where a flag
    /// was left at its default.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl Default for SandboxArgs {
    fn default() -> Self {
        SandboxArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            public_url: None,
            nid: DEFAULT_NID.into(),
            connection_token: DEFAULT_CONNECTION_TOKEN.into(),
            connection_token_file: None,
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
            client_secret_file: None,
            connection_version: 1,
            callback_url: DEFAULT_CALLBACK_URL.into(),
            callback_format: CallbackFormat::Json,
            callback_shape: CallbackShape::Json,
            token_ttl: DEFAULT_TOKEN_TTL,
            link_ttl: DEFAULT_LINK_TTL,
            fault_rate: 0.0,
            faults: FaultKind::ALL.to_vec(),
            slow_delay: DEFAULT_SLOW_DELAY,
            callback_retries: DEFAULT_CALLBACK_RETRIES,
            status_denial: None,
            ca_file: None,
            subscriber_name: DEFAULT_SUBSCRIBER_NAME.into(),
            config: None,
        }
    }
}

/// Problems with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {key}: {problem}")]
    Value {
        path: PathBuf,
        key: &'static str,
        problem: ValueError,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The keys a config file may carry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<SocketAddr>,
    public_url: Option<String>,
    nid: Option<String>,
    connection_token: Option<String>,
    connection_token_file: Option<PathBuf>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    connection_version: Option<u32>,
    subscriber_name: Option<String>,
    callback_url: Option<String>,
    callback_format: Option<CallbackFormat>,
    callback_shape: Option<CallbackShape>,
    token_ttl: Option<String>,
    link_ttl: Option<String>,
    fault_rate: Option<f64>,
    faults: Option<toml::Value>,
    slow_delay: Option<String>,
    callback_retries: Option<u32>,
    ca_file: Option<PathBuf>,
}

/// The settings after the config file and the secret files are read.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub args: SandboxArgs,
    pub connection_token: String,
    pub client_secret: String,
    /// The PEM of `ca_file`, read once.
    pub ca_pem: Option<Vec<u8>>,
}

fn read_secret(path: &Path) -> Result<String, ArgsError> {
    let text = std::fs::read_to_string(path).map_err(|source| ArgsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let secret = text.trim().to_owned();
    if secret.is_empty() {
        return Err(ArgsError::Invalid(format!("{} is empty", path.display())));
    }
    Ok(secret)
}

impl SandboxArgs {
    /// Apply the config file (where flags are at their default) and read the
    /// secret files.
    pub fn resolve(&self) -> Result<Resolved, ArgsError> {
        let mut args = self.clone();
        if let Some(path) = self.config.clone() {
            args.apply_config_file(&path)?;
        }
        if !(0.0..=1.0).contains(&args.fault_rate) {
            return Err(ArgsError::Invalid(format!(
                "fault_rate {} is not between 0 and 1",
                args.fault_rate
            )));
        }
        let name = args.subscriber_name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ArgsError::Invalid(
                "subscriber_name must be 1 to 200 characters".into(),
            ));
        }
        args.subscriber_name = name.to_owned();
        let connection_token = match &args.connection_token_file {
            Some(p) => read_secret(p)?,
            None => args.connection_token.clone(),
        };
        let client_secret = match &args.client_secret_file {
            Some(p) => read_secret(p)?,
            None => args.client_secret.clone(),
        };
        let ca_pem = match &args.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|source| ArgsError::Read {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        if let (Some(pem), Some(path)) = (&ca_pem, &args.ca_file)
            && !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----")
        {
            return Err(ArgsError::Invalid(format!(
                "ca_file {} holds no PEM certificate",
                path.display()
            )));
        }
        Ok(Resolved {
            args,
            connection_token,
            client_secret,
            ca_pem,
        })
    }

    fn apply_config_file(&mut self, path: &Path) -> Result<(), ArgsError> {
        let mut file = read_config_file(path)?;
        let (token_ttl, link_ttl, slow_delay) = (
            file.token_ttl.take(),
            file.link_ttl.take(),
            file.slow_delay.take(),
        );
        let faults = file.faults.take();
        self.fill_plain(file);
        let d = SandboxArgs::default();
        let invalid = |key: &'static str| {
            move |problem| ArgsError::Value {
                path: path.to_owned(),
                key,
                problem,
            }
        };
        for (slot, default, text, key) in [
            (&mut self.token_ttl, d.token_ttl, token_ttl, "token_ttl"),
            (&mut self.link_ttl, d.link_ttl, link_ttl, "link_ttl"),
            (&mut self.slow_delay, d.slow_delay, slow_delay, "slow_delay"),
        ] {
            if let Some(v) = text
                && *slot == default
            {
                *slot = parse_duration(&v).map_err(invalid(key))?;
            }
        }
        if let Some(v) = faults
            && self.faults == d.faults
        {
            self.faults = faults_from_toml(v).map_err(invalid("faults"))?;
        }
        Ok(())
    }

    /// The config file's keys that need no parsing (the durations and the
    /// faults are taken out before), each where its flag is at its default.
    fn fill_plain(&mut self, file: ConfigFile) {
        let d = SandboxArgs::default();
        macro_rules! fill {
            ($field:ident) => {
                if let Some(v) = file.$field {
                    if self.$field == d.$field {
                        self.$field = v;
                    }
                }
            };
        }
        fill!(listen);
        fill!(nid);
        fill!(connection_token);
        fill!(client_id);
        fill!(client_secret);
        fill!(connection_version);
        fill!(callback_url);
        fill!(callback_format);
        fill!(callback_shape);
        fill!(fault_rate);
        fill!(callback_retries);
        fill!(subscriber_name);
        if self.public_url.is_none() {
            self.public_url = file.public_url;
        }
        if self.connection_token_file.is_none() {
            self.connection_token_file = file.connection_token_file;
        }
        if self.client_secret_file.is_none() {
            self.client_secret_file = file.client_secret_file;
        }
        if self.ca_file.is_none() {
            self.ca_file = file.ca_file;
        }
    }
}

fn read_config_file(path: &Path) -> Result<ConfigFile, ArgsError> {
    let text = std::fs::read_to_string(path).map_err(|source| ArgsError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ArgsError::Toml {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

/// The config file's `faults`: a comma list as one string, or an array of
/// names and numbers.
fn faults_from_toml(v: toml::Value) -> Result<Vec<FaultKind>, ValueError> {
    match v {
        toml::Value::String(s) => parse_faults(&s),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                toml::Value::String(s) => FaultKind::from_str(s),
                toml::Value::Integer(n) => FaultKind::from_str(&n.to_string()),
                other => Err(ValueError::Unexpected(other.to_string())),
            })
            .collect(),
        other => Err(ValueError::Unexpected(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SandboxArgs,
    }

    #[test]
    fn clap_defaults_match_default_impl() {
        let parsed = Cli::parse_from(["sandbox"]).args;
        let d = SandboxArgs::default();
        assert_eq!(format!("{parsed:?}"), format!("{d:?}"));
    }

    #[test]
    fn flags_parse() {
        let a = Cli::parse_from([
            "sandbox",
            "--listen",
            "127.0.0.1:0",
            "--faults",
            "500,drop",
            "--token-ttl",
            "5s",
            "--callback-format",
            "form",
            "--fault-rate",
            "0.25",
            "--callback-shape",
            "json-as-form",
        ])
        .args;
        assert_eq!(a.callback_shape, CallbackShape::JsonAsForm);
        assert_eq!(a.faults, vec![FaultKind::Status500, FaultKind::Drop]);
        assert_eq!(a.token_ttl, Duration::from_secs(5));
        assert_eq!(a.callback_format, CallbackFormat::Form);
        assert_eq!(a.fault_rate, 0.25);
        assert!(Cli::try_parse_from(["sandbox", "--fault-rate", "1.5"]).is_err());
    }

    #[test]
    fn subscriber_name_is_trimmed_and_bounded() {
        for bad in ["", "   ", &"x".repeat(201)] {
            let args = SandboxArgs {
                subscriber_name: bad.to_owned(),
                ..Default::default()
            };
            assert!(args.resolve().is_err(), "{bad:?}");
        }
        let args = SandboxArgs {
            subscriber_name: "  Acme <Power>  ".into(),
            ..Default::default()
        };
        let r = args.resolve().expect("resolves");
        assert_eq!(r.args.subscriber_name, "Acme <Power>");
    }

    #[test]
    fn explicit_flags_win_over_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            "nid = \"1\"\nclient_id = \"file-client\"\nlink_ttl = \"3s\"\n",
        )
        .expect("write");
        let args = SandboxArgs {
            nid: "2".into(),
            config: Some(path),
            ..Default::default()
        };
        let r = args.resolve().expect("resolves");
        assert_eq!(r.args.subscriber_name, "Example Energy");
        assert_eq!(r.args.nid, "2");
        assert_eq!(r.args.client_id, "file-client");
        assert_eq!(r.args.link_ttl, Duration::from_secs(3));
    }
}
