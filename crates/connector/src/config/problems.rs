//! Every problem of a configuration in one run. A check stops at its first
//! problem; so each problem found is recorded, placed (the file's line from
//! the TOML's spans, or the environment variable the value came from), and
//! its key taken out of the merged values, and the checks run again, until
//! they find nothing new. Generic over the schema: a new section or key is
//! placed, named and suggested for without code here.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, ConfigErrors, Origin, Problem};
use super::key_path::{self, Step};

/// Where the environment's values say they came from (the `config` crate).
const FROM_ENV: &str = "the environment";

/// Problems a section's check found (each section is checked even when
/// another failed).
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<ConfigError>);

impl From<ConfigError> for Problems {
    fn from(e: ConfigError) -> Self {
        Problems(vec![e])
    }
}

impl Problems {
    /// The value, or None with its problem kept.
    pub(super) fn take<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }
}

/// The problems of one load so far, and what places them.
pub(super) struct Report<'a> {
    file: String,
    text: &'a str,
    doc: Spanned<DeTable<'a>>,
    /// The merged values as loaded (names of array entries come from here).
    original: config::Value,
    /// The same, less every key a problem was found at.
    pub(super) tree: config::Value,
    found: Vec<(String, Problem)>,
}

impl<'a> Report<'a> {
    pub(super) fn new(
        file: String,
        text: &'a str,
        doc: Spanned<DeTable<'a>>,
        tree: config::Value,
    ) -> Self {
        Report {
            file,
            text,
            doc,
            original: tree.clone(),
            tree,
            found: Vec::new(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// Record a problem at `key` (once per key) and take the key out of the
    /// values; true when that changed the values (the checks are worth
    /// running again).
    pub(super) fn add(&mut self, key: &str, message: String) -> bool {
        let steps = canonical(&self.original, key_path::parse(key));
        let id = format!("{steps:?}");
        if self.found.iter().any(|(k, _)| *k == id) {
            return false;
        }
        let origin = self.origin(&steps);
        let shown = match steps.is_empty() {
            true => key.to_string(),
            false => key_path::shown(&steps, |p| entry_name(&self.original, p)),
        };
        if (message == super::validate::MISSING && self.typo_of(&shown))
            || self.follows(&shown, &message)
        {
            return false;
        }
        let problem = Problem {
            key: shown,
            origin,
            message,
        };
        self.found.push((id, problem));
        matches!(steps.last(), Some(Step::Key(_))) && remove(&mut self.tree, &steps)
    }

    /// A missing key already reported as misspelt ("did you mean `key`?").
    fn typo_of(&self, shown: &str) -> bool {
        let Some((section, key)) = shown.rsplit_once('.') else {
            return false;
        };
        let hint = format!("did you mean `{key}`?");
        self.found.iter().any(|(_, p)| {
            p.key.rsplit_once('.').map(|(s, _)| s) == Some(section) && p.message.ends_with(&hint)
        })
    }

    /// A problem that only follows from one found before: its key taken
    /// out, a key beside it that needs it now complains (`time_zone` without
    /// the `send_window` refused), or a check names it (`smtp.url`).
    fn follows(&self, shown: &str, message: &str) -> bool {
        let section = shown.rsplit_once('.').map(|(s, _)| s);
        self.found.iter().any(|(_, p)| {
            let Some((s, key)) = p.key.rsplit_once('.') else {
                return message.contains(&format!("[{}]", p.key));
            };
            message.contains(p.key.as_str()) || (Some(s) == section && names(message, key))
        })
    }

    /// A value set by an environment variable is blamed on it; anything
    /// else on the file, at the key's line (or its section's).
    fn origin(&self, steps: &[Step]) -> Origin {
        let from_env =
            value_at(&self.original, steps).is_some_and(|v| v.origin() == Some(FROM_ENV));
        if let (true, Some(var)) = (from_env, key_path::env_var(steps)) {
            return Origin::Env {
                var: as_set(&var).unwrap_or(var),
            };
        }
        Origin::File {
            path: self.file.clone(),
            line: line_of(&self.doc, steps).map(|at| line_number(self.text, at)),
        }
    }

    /// Every problem, in the file's order (those from the environment last).
    pub(super) fn into_errors(self) -> ConfigErrors {
        let mut problems: Vec<Problem> = self.found.into_iter().map(|(_, p)| p).collect();
        problems.sort_by_key(|p| match &p.origin {
            Origin::File { line, .. } => (0, line.unwrap_or(0)),
            Origin::Env { .. } => (1, 0),
        });
        ConfigErrors {
            file: self.file,
            problems,
        }
    }
}

/// Whether `message` names `key` as a word of its own.
fn names(message: &str, key: &str) -> bool {
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| w == key)
}

/// The variable as the environment spells it (its case may differ).
fn as_set(var: &str) -> Option<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .find(|k| k.eq_ignore_ascii_case(var))
}

/// Named array entries turned into positions, where the name is found.
fn canonical(tree: &config::Value, steps: Vec<Step>) -> Vec<Step> {
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        let step = match step {
            Step::Named(name) => match value_at(tree, &out).map(|v| &v.kind) {
                Some(config::ValueKind::Array(entries)) => entries
                    .iter()
                    .position(|e| name_in(e).as_deref() == Some(name.as_str()))
                    .map(Step::Index)
                    .unwrap_or(Step::Named(name)),
                _ => Step::Named(name),
            },
            other => other,
        };
        out.push(step);
    }
    out
}

/// The value at `steps`, if all of them lead somewhere.
fn value_at<'v>(tree: &'v config::Value, steps: &[Step]) -> Option<&'v config::Value> {
    let mut at = tree;
    for step in steps {
        at = match (step, &at.kind) {
            (Step::Key(k), config::ValueKind::Table(t)) => t.get(k)?,
            (Step::Index(i), config::ValueKind::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(at)
}

/// Take the key `steps` ends at out of its table.
fn remove(tree: &mut config::Value, steps: &[Step]) -> bool {
    let Some((Step::Key(last), parents)) = steps.split_last() else {
        return false;
    };
    let mut at = tree;
    for step in parents {
        at = match (step, &mut at.kind) {
            (Step::Key(k), config::ValueKind::Table(t)) => match t.get_mut(k) {
                Some(v) => v,
                None => return false,
            },
            (Step::Index(i), config::ValueKind::Array(a)) => match a.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match &mut at.kind {
        config::ValueKind::Table(t) => t.remove(last).is_some(),
        _ => false,
    }
}

/// The `name` of the array entry `steps` ends at.
fn entry_name(tree: &config::Value, steps: &[Step]) -> Option<String> {
    name_in(value_at(tree, steps)?)
}

fn name_in(entry: &config::Value) -> Option<String> {
    match &entry.kind {
        config::ValueKind::Table(t) => match &t.get("name")?.kind {
            config::ValueKind::String(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Where the file writes the key `steps` ends at (a byte offset), or the
/// nearest thing above it that it writes (the section, the entry).
fn line_of(doc: &Spanned<DeTable<'_>>, steps: &[Step]) -> Option<usize> {
    let (Step::Key(first), rest) = steps.split_first()? else {
        return None;
    };
    let (mut found, mut at) = key_in(doc.get_ref(), first)?;
    for step in rest {
        let next = match (step, at.get_ref()) {
            (Step::Key(k), DeValue::Table(t)) => key_in(t, k),
            (Step::Index(i), DeValue::Array(a)) => a.get(*i).map(|v| (v.span().start, v)),
            _ => None,
        };
        let Some((start, value)) = next else { break };
        (found, at) = (start, value);
    }
    Some(found)
}

/// The key `k` of a table: where it is written, and its value.
fn key_in<'t, 'i>(table: &'t DeTable<'i>, k: &str) -> Option<(usize, &'t Spanned<DeValue<'i>>)> {
    table
        .iter()
        .find(|(key, _)| key.get_ref().as_ref() == k)
        .map(|(key, v)| (key.span().start, v))
}

/// The 1-based line of a byte offset.
fn line_number(text: &str, at: usize) -> usize {
    text.get(..at).unwrap_or(text).matches('\n').count() + 1
}
