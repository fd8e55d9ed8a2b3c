//! Origins: where a version was drawn when an SA owns its collections in several datacenters
//! (active/active).
//!
//! Each owner datacenter `k` of a fixed `n` draws versions from its own interleaved counter
//! (`k`, `k+n`, `k+2n`…), so versions, and the ids made from creation versions, are unique by
//! construction without any coordination at write time. A resource is written only at its
//! *home*, the datacenter whose counter issued its id, so every version of a resource comes
//! from one counter and "the higher version wins" holds everywhere. Commit order holds per
//! origin only: a feed serves one origin's changes at a time, and a reader keeps one cursor
//! per origin. A collection owned in one datacenter has the single origin, named `""`, whose
//! counter is the plain `1, 2, 3…` of before.

use serde::{Deserialize, Serialize};

/// One owner datacenter's counter: the `index`-th (from 1) of `count`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The owner datacenter's name; `""` for the single origin.
    pub name: String,
    /// Which of the counters, from 1.
    pub index: u32,
    /// How many owner datacenters there are (fixed: changing it would break uniqueness).
    pub count: u32,
}

impl Default for Origin {
    fn default() -> Self {
        Self::single()
    }
}

impl Origin {
    /// The one counter of a collection owned in one datacenter.
    pub fn single() -> Self {
        Self {
            name: String::new(),
            index: 1,
            count: 1,
        }
    }

    /// The origin called `name` among the owner datacenters `names` (in the topology's order).
    pub fn among(names: &[String], name: &str) -> Option<Self> {
        let position = names.iter().position(|candidate| candidate == name)?;
        Some(Self {
            name: name.to_owned(),
            index: u32::try_from(position + 1).ok()?,
            count: u32::try_from(names.len()).ok()?,
        })
    }

    pub fn is_single(&self) -> bool {
        self.count <= 1
    }

    /// Whether this origin's counter issued `version`.
    pub fn issued(&self, version: i64) -> bool {
        self.is_single() || (version - i64::from(self.index)).rem_euclid(i64::from(self.count)) == 0
    }

    /// The least version at or above `version` that this origin issues (a counter set there
    /// keeps drawing only this origin's numbers).
    pub fn issued_at_or_above(&self, version: i64) -> i64 {
        if self.is_single() {
            return version;
        }
        let (index, count) = (i64::from(self.index), i64::from(self.count));
        if version <= index {
            return index;
        }
        let steps = (version - index).saturating_add(count - 1) / count;
        index.saturating_add(steps.saturating_mul(count))
    }

    /// An SQL condition that holds for the versions this origin issued, on `column`; `None`
    /// for the single origin (every version). Only numbers from the configuration are written
    /// into it.
    pub(crate) fn sql_condition(&self, column: &str) -> Option<String> {
        (!self.is_single()).then(|| format!("({column} - {}) % {} = 0", self.index, self.count))
    }

    /// The home of a resource with id `id`: the owner datacenter among `names` whose counter
    /// issued it (ids are creation versions). `None` for an id that is no version.
    pub fn home_of<'a>(names: &'a [String], id: &str) -> Option<&'a str> {
        let version: i64 = id.parse().ok().filter(|version| *version > 0)?;
        let count = i64::try_from(names.len()).ok().filter(|count| *count > 0)?;
        let position = usize::try_from((version - 1).rem_euclid(count)).ok()?;
        names.get(position).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn names() -> Vec<String> {
        vec!["dc1".to_owned(), "dc2".to_owned(), "dc3".to_owned()]
    }

    #[test]
    fn interleaved_counters_never_issue_the_same_version() {
        let origins: Vec<Origin> = names()
            .iter()
            .map(|name| Origin::among(&names(), name).unwrap())
            .collect();
        for version in 1..=300 {
            let issuers: Vec<&str> = origins
                .iter()
                .filter(|origin| origin.issued(version))
                .map(|origin| origin.name.as_str())
                .collect();
            assert_eq!(issuers.len(), 1, "version {version} issued by {issuers:?}");
            assert_eq!(
                Origin::home_of(&names(), &version.to_string()),
                Some(issuers[0])
            );
        }
        assert!(Origin::single().issued(7));
        assert_eq!(Origin::among(&names(), "dc4"), None);
        assert_eq!(Origin::home_of(&names(), "x12"), None);
        assert_eq!(Origin::home_of(&names(), "0"), None);
    }

    #[test]
    fn the_sql_condition_matches_what_issued_says() {
        let origin = Origin::among(&names(), "dc2").unwrap();
        assert_eq!(
            origin.sql_condition("a.version").as_deref(),
            Some("(a.version - 2) % 3 = 0")
        );
        assert_eq!(Origin::single().sql_condition("version"), None);
    }

    #[test]
    fn a_counter_moved_past_a_version_stays_its_origins() {
        for name in names() {
            let origin = Origin::among(&names(), &name).unwrap();
            for version in 0..=40 {
                let moved = origin.issued_at_or_above(version);
                assert!(origin.issued(moved), "{name}: {version} -> {moved}");
                assert!(
                    moved >= version && moved < version.max(1) + 3,
                    "{name}: {version} -> {moved}"
                );
            }
        }
        assert_eq!(Origin::single().issued_at_or_above(17), 17);
    }
}
