//! The table-wide set of dynamic columns, shared by every batch builder so
//! the field cap holds for the table, not per batch.

use std::collections::HashSet;
use std::sync::Mutex;

/// Admits new field names until the cap is reached; after that a new name's
/// values go to `_extra`. Names already admitted stay admitted.
#[derive(Debug)]
pub struct FieldRegistry {
    cap: usize,
    names: Mutex<HashSet<String>>,
}

impl FieldRegistry {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            names: Mutex::new(HashSet::new()),
        }
    }

    /// Starts from the columns a table already has (they do not count twice).
    pub fn with_existing<I: IntoIterator<Item = String>>(cap: usize, names: I) -> Self {
        Self {
            cap,
            names: Mutex::new(names.into_iter().collect()),
        }
    }

    /// True when `name` has, or may now take, a column of its own.
    /// Builders remember the answer, so this runs once per name per batch.
    pub fn admit(&self, name: &str) -> bool {
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if names.contains(name) {
            return true;
        }
        if names.len() >= self.cap {
            return false;
        }
        names.insert(name.to_owned());
        true
    }

    pub fn len(&self) -> usize {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_is_shared_and_stable() {
        let r = FieldRegistry::with_existing(3, ["a".to_string()]);
        assert!(r.admit("a"));
        assert!(r.admit("b"));
        assert!(r.admit("c"));
        assert!(!r.admit("d"));
        assert!(r.admit("b"), "an admitted name stays admitted");
        assert!(!r.admit("d"), "a refused name stays refused");
        assert_eq!(r.len(), 3);
    }
}
