//! The errors a configuration gives: [`ConfigError`], one problem as a
//! section's check finds it (the key and the file), and [`ConfigErrors`],
//! every problem of one load, each placed where the operator can fix it (the
//! file and its line, or the environment variable that set the value). The
//! CLI maps either to exit 78.

use std::fmt;

/// A configuration problem, named by key and file.
#[derive(Debug, thiserror::Error)]
#[error("configuration error in {file}: `{key}`: {message}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

/// Where a value (or the lack of one) came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The file, at a line when the key (or its section) is written there.
    File { path: String, line: Option<usize> },
    /// An environment variable (`MYDEX_CONNECTOR__SECTION__KEY`).
    Env { var: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File {
                path,
                line: Some(line),
            } => write!(f, "{path}:{line}"),
            Origin::File { path, line: None } => f.write_str(path),
            Origin::Env { var } => write!(f, "environment variable {var}"),
        }
    }
}

/// One problem of a load: the key as the operator names it (`smtp.from`,
/// `campaign "meters-2026".rate`), where it came from, and what is wrong.
#[derive(Debug, Clone)]
pub struct Problem {
    pub key: String,
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}`: {}", self.origin, self.key, self.message)
    }
}

/// Every problem one load found, in the file's order (the CLI maps it to
/// exit 78). Never empty.
#[derive(Debug)]
pub struct ConfigErrors {
    /// The configuration file as named on the command line.
    pub file: String,
    pub problems: Vec<Problem>,
}

impl std::error::Error for ConfigErrors {}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "configuration error: {one}"),
            // One line (a log line stays one line): the problems after
            // one another.
            all => {
                write!(f, "{} configuration errors:", all.len())?;
                for (i, p) in all.iter().enumerate() {
                    let sep = if i == 0 { " " } else { "; " };
                    write!(f, "{sep}{p}")?;
                }
                Ok(())
            }
        }
    }
}

/// One problem found outside a load (a template, a store key file), placed
/// in the file it names.
impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors {
            file: e.file.clone(),
            problems: vec![Problem {
                key: e.key,
                origin: Origin::File {
                    path: e.file,
                    line: None,
                },
                message: e.message,
            }],
        }
    }
}
