//! The flattened path of the member being visited (`a.b.c`), and where
//! commas go when writing the object back out. Shared by the normalizer's
//! walk and the rebuild, which must agree exactly on both.

use weft_scan::json::JsonStr;

#[derive(Debug, Default)]
pub(crate) struct KeyPath {
    /// The current member's path.
    pub(crate) path: String,
    /// Per open object: the path length at its start, and whether it has a member yet.
    objects: Vec<(usize, bool)>,
}

impl KeyPath {
    pub(crate) fn clear(&mut self) {
        self.path.clear();
        self.objects.clear();
    }

    pub(crate) fn open(&mut self) {
        self.objects.push((self.path.len(), false));
    }

    pub(crate) fn close(&mut self) {
        if let Some((len, _)) = self.objects.pop() {
            self.path.truncate(len);
        }
    }

    /// Moves to member `key` of the innermost object and writes `,"key":`
    /// (the comma only after its first member) to `out`. Ignored outside an object.
    pub(crate) fn key(&mut self, key: JsonStr<'_>, out: &mut String) {
        let Some(prefix) = self.member(key, out) else {
            return;
        };
        self.path.truncate(prefix);
        if prefix > 0 {
            self.path.push('.');
        }
        key.decode_into(&mut self.path);
    }

    /// Writes what [`key`](Self::key) writes to `out`, leaving the path
    /// empty: for a walk that needs the member keys but not their paths.
    pub(crate) fn key_unfollowed(&mut self, key: JsonStr<'_>, out: &mut String) {
        self.member(key, out);
    }

    /// Writes `,"key":` for a member of the innermost object; its path
    /// prefix, or `None` outside an object.
    fn member(&mut self, key: JsonStr<'_>, out: &mut String) -> Option<usize> {
        let (prefix, seen) = self.objects.last_mut()?;
        if *seen {
            out.push(',');
        }
        *seen = true;
        out.push('"');
        out.push_str(key.raw());
        out.push_str("\":");
        Some(*prefix)
    }
}
