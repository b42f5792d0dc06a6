//! Which datasets a member granted us, read from the `fields` of a connection
//! or update callback (docs/mydex-contract.md §5): `[a]` access 1/0, `[s]`
//! style (A automatic, R on request), under `[r]` read and `[w]` write. Mydex
//! sends `fields` in several layouts (JSON lists, PHP form brackets with the
//! `""` key, `value` attributes beside `access`), so this reads any of them:
//! every `access` object found under a dataset counts, whatever the nesting.

use std::collections::BTreeMap;

use serde_json::Value;

/// How deep `access` objects are looked for under a dataset.
const MAX_DEPTH: usize = 16;

/// What one dataset's `access` entries granted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatasetGrant {
    pub read: bool,
    pub write: bool,
    /// `[r][s]`: `A` (automatic) or `R` (on request), as sent.
    pub read_style: Option<String>,
    /// `[w][s]`, as sent.
    pub write_style: Option<String>,
}

/// The grants of one member, by dataset name without the `field_` prefix
/// (`ds_personal_details`, as notifications name datasets).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    datasets: BTreeMap<String, DatasetGrant>,
}

impl Grants {
    /// Read the grants from a callback's `fields` (any layout; what cannot
    /// be read grants nothing).
    pub fn from_fields(fields: &Value) -> Self {
        let mut grants = Grants::default();
        match fields {
            Value::Object(map) => grants.add_datasets(map),
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(map) = item {
                        grants.add_datasets(map);
                    }
                }
            }
            _ => {}
        }
        grants
    }

    fn add_datasets(&mut self, map: &serde_json::Map<String, Value>) {
        for (name, tree) in map {
            let entry = self.datasets.entry(dataset_name(name)).or_default();
            collect(tree, entry, 0);
        }
    }

    /// The grant for a dataset, named with or without `field_`.
    pub fn get(&self, dataset: &str) -> Option<&DatasetGrant> {
        self.datasets.get(&dataset_name(dataset))
    }

    pub fn can_read(&self, dataset: &str) -> bool {
        self.get(dataset).is_some_and(|g| g.read)
    }

    pub fn can_write(&self, dataset: &str) -> bool {
        self.get(dataset).is_some_and(|g| g.write)
    }

    /// Every dataset named in `fields`, granted or not.
    pub fn datasets(&self) -> impl Iterator<Item = (&str, &DatasetGrant)> {
        self.datasets.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn readable(&self) -> Vec<&str> {
        self.datasets()
            .filter(|(_, g)| g.read)
            .map(|(k, _)| k)
            .collect()
    }

    pub fn writable(&self) -> Vec<&str> {
        self.datasets()
            .filter(|(_, g)| g.write)
            .map(|(k, _)| k)
            .collect()
    }
}

fn dataset_name(raw: &str) -> String {
    let s = raw.trim();
    s.strip_prefix("field_").unwrap_or(s).to_string()
}

/// Walk a dataset's subtree for `access` objects.
fn collect(node: &Value, grant: &mut DatasetGrant, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match node {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "access" {
                    read_access(v, grant);
                } else {
                    collect(v, grant, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                collect(v, grant, depth + 1);
            }
        }
        _ => {}
    }
}

/// One `access` value: `{r: {a, s}, w: {a, s}}`, or `{r: 1, w: 0}`, or a
/// bare `{a: 1}` (access without a direction counts as read).
fn read_access(access: &Value, grant: &mut DatasetGrant) {
    let Value::Object(map) = access else {
        if truthy(access) {
            grant.read = true;
        }
        return;
    };
    for (k, v) in map {
        match k.as_str() {
            "r" | "read" => {
                let (on, style) = direction(v);
                grant.read |= on;
                if style.is_some() {
                    grant.read_style = style;
                }
            }
            "w" | "write" => {
                let (on, style) = direction(v);
                grant.write |= on;
                if style.is_some() {
                    grant.write_style = style;
                }
            }
            "a" => grant.read |= truthy(v),
            _ => {}
        }
    }
}

fn direction(v: &Value) -> (bool, Option<String>) {
    match v {
        Value::Object(m) => (
            m.get("a").is_some_and(truthy),
            m.get("s").and_then(Value::as_str).map(str::to_string),
        ),
        // `[r][][a]=1` and the like: a list of partial entries.
        Value::Array(items) => items.iter().fold((false, None), |(on, style), item| {
            let (o, s) = direction(item);
            (on || o, s.or(style))
        }),
        other => (truthy(other), None),
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "y" | "on"
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_published_form_layout_with_the_empty_key_and_values() {
        // fields[field_ds_personal_details][0][][access][r][a]=1 and friends,
        // with a `value` attribute beside `access`.
        let fields = json!({
            "field_ds_personal_details": {"0": {"": {
                "access": {"r": {"a": "1", "s": "A"}, "w": {"a": "0", "s": "A"}},
                "value": "Robert"
            }}},
            "field_ds_events": {"0": {"": {"access": {"r": {"a": "1", "s": "R"}, "w": {"a": "1", "s": "R"}}}}}
        });
        let g = Grants::from_fields(&fields);
        assert!(g.can_read("ds_personal_details"));
        assert!(g.can_read("field_ds_personal_details"));
        assert!(!g.can_write("ds_personal_details"));
        assert!(g.can_write("ds_events"));
        assert_eq!(
            g.get("ds_events").unwrap().write_style.as_deref(),
            Some("R")
        );
        assert_eq!(g.readable(), vec!["ds_events", "ds_personal_details"]);
        assert_eq!(g.writable(), vec!["ds_events"]);
    }

    #[test]
    fn lists_of_partial_entries_and_json_numbers() {
        // The sandbox's JSON: one leaf per list element.
        let fields = json!({
            "field_ds_contact_details": [[
                {"access": {"r": {"a": 1}}},
                {"access": {"r": {"s": "A"}}},
                {"access": {"w": {"a": 1}}},
                {"access": {"w": {"s": "A"}}}
            ]],
            "field_ds_home": [[{"access": {"r": {"a": 0}}}]]
        });
        let g = Grants::from_fields(&fields);
        assert!(g.can_read("ds_contact_details") && g.can_write("ds_contact_details"));
        assert_eq!(
            g.get("ds_contact_details").unwrap().read_style.as_deref(),
            Some("A")
        );
        assert!(!g.can_read("ds_home"));
        assert!(g.get("ds_home").is_some());
        assert!(g.get("ds_unknown").is_none());
    }

    #[test]
    fn tolerant_of_odd_shapes() {
        let g =
            Grants::from_fields(&json!([{"ds_a": {"access": {"read": true, "write": "yes"}}}, 7]));
        assert!(g.can_read("ds_a") && g.can_write("ds_a"));
        let g = Grants::from_fields(&json!({"ds_b": {"access": {"a": 1}}, "ds_c": "x"}));
        assert!(g.can_read("ds_b") && !g.can_write("ds_b"));
        assert!(!g.can_read("ds_c"));
        assert_eq!(Grants::from_fields(&Value::Null), Grants::default());
        assert_eq!(Grants::from_fields(&json!("text")), Grants::default());
        // Deep nesting is bounded, not a stack overflow.
        let mut deep = json!({"access": {"r": {"a": 1}}});
        for _ in 0..100 {
            deep = json!([deep]);
        }
        assert!(!Grants::from_fields(&json!({ "ds_d": deep })).can_read("ds_d"));
    }
}
