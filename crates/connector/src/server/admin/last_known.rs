//! The last answer the store gave for `/status` and `/metrics`, kept in
//! memory. The storage engine keeps an I/O error (a full disk) and hands it to every later
//! call, reads included (a read may merge or split a tree node, which
//! writes), so while the store cannot write, these read-only routes answer
//! from here, saying how old the counts are and why the store cannot answer,
//! instead of failing with a 500.

use std::time::SystemTime;

use parking_lot::Mutex;

pub struct LastKnown<T> {
    last: Mutex<Option<(T, SystemTime)>>,
}

impl<T> Default for LastKnown<T> {
    fn default() -> Self {
        Self {
            last: Mutex::new(None),
        }
    }
}

impl<T: Clone> LastKnown<T> {
    /// Keep a fresh answer.
    pub fn remember(&self, value: &T) {
        *self.last.lock() = Some((value.clone(), SystemTime::now()));
    }

    /// The last answer kept, and when it was read from the store.
    pub fn recall(&self) -> Option<(T, SystemTime)> {
        self.last.lock().clone()
    }
}

/// The `store` object of the status document: `{"ok": true}`, or why the
/// store cannot answer and, when the counts beside it come from memory, the
/// time they were read.
pub fn store_condition(error: Option<&str>, as_of: Option<SystemTime>) -> serde_json::Value {
    match error {
        None => serde_json::json!({"ok": true}),
        Some(e) => {
            let mut v = serde_json::json!({"ok": false, "error": e});
            if let Some(t) = as_of {
                v["counts_as_of"] = httpdate::fmt_http_date(t).into();
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recalls_what_was_remembered() {
        let k = LastKnown::<u32>::default();
        assert!(k.recall().is_none());
        k.remember(&7);
        assert_eq!(k.recall().map(|(v, _)| v), Some(7));
    }

    #[test]
    fn condition_names_the_error_and_the_age() {
        assert_eq!(store_condition(None, None)["ok"], true);
        let v = store_condition(
            Some("no space left on device (ENOSPC)"),
            Some(SystemTime::UNIX_EPOCH),
        );
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"], "no space left on device (ENOSPC)");
        assert_eq!(v["counts_as_of"], "Thu, 01 Jan 1970 00:00:00 GMT");
    }
}
