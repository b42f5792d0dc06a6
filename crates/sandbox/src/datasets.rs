//! What the agreement page tells a member about each dataset a connection
//! asks for: its human name, why the subscriber wants it, and whether they
//! may only view it or also update it. Real Mydex shows what the Dedicated
//! Connection declares; the sandbox's stand-in texts live here.

use serde_json::Value;

use super::callbacks;
use super::html::esc;

/// One line of the agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// The dataset id (`ds_contact_details`).
    pub id: String,
    /// Its human name (`Contact details`).
    pub name: String,
    /// Why the subscriber asks for it.
    pub purpose: String,
    /// True when the subscriber may also update it.
    pub write: bool,
}

/// The human name and purpose of a dataset id.
pub fn describe(id: &str) -> (String, String) {
    let known = match id {
        "ds_personal_details" => Some((
            "Personal details",
            "Your name, so that they can address you correctly.",
        )),
        "ds_contact_details" => Some((
            "Contact details",
            "Your email address, phone number and postal address, to keep your account \
             details up to date.",
        )),
        "ds_energy_readings" => Some((
            "Energy readings",
            "Your smart meter's readings, which they add to your Personal Data Store.",
        )),
        "ds_events" => Some((
            "Events",
            "Meter readings and other events they add to your Personal Data Store.",
        )),
        _ => None,
    };
    match known {
        Some((name, purpose)) => (name.to_owned(), purpose.to_owned()),
        None => (
            humanise(id),
            "No purpose was given for this dataset.".to_owned(),
        ),
    }
}

/// `ds_smart_meter` → `Smart meter`.
fn humanise(id: &str) -> String {
    let words = id.trim_start_matches("ds_").replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => id.to_owned(),
    }
}

/// True when a field's grant (`[[{"access":{"w":{"a":1}}}, ...]]`) lets the
/// subscriber write.
fn grants_write(grant: &Value) -> bool {
    grant
        .as_array()
        .and_then(|outer| outer.first())
        .and_then(Value::as_array)
        .is_some_and(|rules| {
            rules
                .iter()
                .any(|r| r["access"]["w"]["a"].as_u64() == Some(1))
        })
}

/// The datasets a connection of `version` asks for, in the order the
/// callback lists them.
pub fn requested(version: u32) -> Vec<Requested> {
    let fields = callbacks::fields_for_version(version.max(1));
    let Some(map) = fields.as_object() else {
        return Vec::new();
    };
    map.iter()
        .map(|(field, grant)| {
            let id = field.trim_start_matches("field_").to_owned();
            let (name, purpose) = describe(&id);
            Requested {
                id,
                name,
                purpose,
                write: grants_write(grant),
            }
        })
        .collect()
}

/// The agreement's list: each dataset's name, what the subscriber may do
/// with it, and why.
pub fn render_list(version: u32) -> String {
    let items: String = requested(version)
        .iter()
        .map(|r| {
            let access = if r.write {
                "view and update"
            } else {
                "view only"
            };
            format!(
                "<li><span class=\"name\">{}</span> <span class=\"access\">{access}</span>\
<p class=\"purpose\">{}</p></li>\n",
                esc(&r.name),
                esc(&r.purpose)
            )
        })
        .collect();
    format!("<ul class=\"datasets\">\n{items}</ul>\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_one_asks_for_three_named_datasets() {
        let got = requested(1);
        let names: Vec<&str> = got.iter().map(|r| r.name.as_str()).collect();
        assert!(names.contains(&"Personal details") && names.contains(&"Contact details"));
        // The readings the subscriber delivers, writable at every version.
        assert!(names.contains(&"Energy readings"));
        assert_eq!(got.len(), 3);
        let contact = got.iter().find(|r| r.id == "ds_contact_details").unwrap();
        assert!(contact.write);
        let readings = got.iter().find(|r| r.id == "ds_energy_readings").unwrap();
        assert!(readings.write);
        let personal = got.iter().find(|r| r.id == "ds_personal_details").unwrap();
        assert!(!personal.write);
        assert!(got.iter().all(|r| !r.purpose.is_empty()));
    }

    #[test]
    fn version_two_adds_events_and_unknown_ids_are_humanised() {
        assert!(requested(2).iter().any(|r| r.name == "Events"));
        assert_eq!(humanise("ds_smart_meter"), "Smart meter");
        assert_eq!(describe("ds_x").0, "X");
    }

    #[test]
    fn the_list_shows_names_not_ids() {
        let html = render_list(1);
        assert!(html.contains("Contact details") && html.contains("view and update"));
        assert!(!html.contains("ds_contact_details"));
    }
}
