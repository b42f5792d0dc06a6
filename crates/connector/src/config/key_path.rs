//! A key as the checks name it (`smtp.from`, `campaign[0].rate`,
//! `campaign "meters".text_template`), split into the steps that reach its
//! value, and named back the one way the operator reads it: an entry of an
//! array of tables by its `name` (`campaign "meters-2026".rate`), else by its
//! place (`campaign #2.rate`). Generic over the schema: any section, any
//! array of tables.

use std::fmt::Write;

/// One step of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// A key of a table.
    Key(String),
    /// An entry of an array, by position.
    Index(usize),
    /// An entry of an array of tables, by its `name`.
    Named(String),
}

/// Split a key as the checks write it. Anything it does not understand
/// ends the steps (the key is then placed by what came before).
pub(super) fn parse(key: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut rest = key;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if let Some(r) = rest.strip_prefix(" \"") {
            let end = r.find('"').unwrap_or(r.len());
            steps.push(Step::Named(r[..end].to_string()));
            rest = r.get(end + 1..).unwrap_or("");
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            let Ok(i) = r[..end].parse() else {
                return steps;
            };
            steps.push(Step::Index(i));
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(['.', '[', ' ']).unwrap_or(rest.len());
            if end == 0 {
                return steps;
            }
            steps.push(Step::Key(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    steps
}

/// The key as shown: `section.key`, an array entry by its name or place.
/// `name_of(prefix)` is the `name` of the array entry `prefix` ends at.
pub(super) fn shown(steps: &[Step], name_of: impl Fn(&[Step]) -> Option<String>) -> String {
    let mut out = String::new();
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Key(k) if out.is_empty() => out.push_str(k),
            Step::Key(k) => {
                let _ = write!(out, ".{k}");
            }
            Step::Named(n) => {
                let _ = write!(out, " {n:?}");
            }
            Step::Index(n) => match name_of(&steps[..=i]) {
                Some(name) => {
                    let _ = write!(out, " {name:?}");
                }
                None => {
                    let _ = write!(out, " #{}", n + 1);
                }
            },
        }
    }
    out
}

/// The environment variable that sets the value at `steps`, as the loader
/// reads them (`MYDEX_CONNECTOR__SECTION__KEY`); None for a key inside an
/// array, which no variable sets.
pub(super) fn env_var(steps: &[Step]) -> Option<String> {
    let mut var = String::from("MYDEX_CONNECTOR");
    for step in steps {
        let Step::Key(k) = step else { return None };
        let _ = write!(var, "__{}", k.to_uppercase());
    }
    Some(var)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Step {
        Step::Key(s.into())
    }

    #[test]
    fn keys_split_and_shown() {
        assert_eq!(parse("smtp.from"), vec![k("smtp"), k("from")]);
        assert_eq!(
            parse("campaign[1].rate"),
            vec![k("campaign"), Step::Index(1), k("rate")]
        );
        assert_eq!(
            parse("campaign \"meters\".html_template"),
            vec![
                k("campaign"),
                Step::Named("meters".into()),
                k("html_template")
            ]
        );
        assert_eq!(parse("(file)"), vec![k("(file)")]);
        let named = |p: &[Step]| (p.len() == 2).then(|| "meters-2026".to_string());
        assert_eq!(
            shown(&parse("campaign[0].rate"), named),
            "campaign \"meters-2026\".rate"
        );
        assert_eq!(
            shown(&parse("campaign[1].rate"), |_| None),
            "campaign #2.rate"
        );
        assert_eq!(
            env_var(&parse("smtp.from")).as_deref(),
            Some("MYDEX_CONNECTOR__SMTP__FROM")
        );
        assert_eq!(env_var(&parse("campaign[0].rate")), None);
    }
}
