//! `DIR/units.json`: which units run where, with their current process ids, so that scripts can
//! find a unit and kill it to watch its peers take over.

use std::path::{Path, PathBuf};

use anyhow::Context;
use hiscale::config::UnitKind;
use serde::Serialize;

use super::files;

/// The file's name inside the data directory.
pub const FILE_NAME: &str = "units.json";

/// What a unit does with its service area's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Writes the collection's resources (data master).
    Owner,
    /// Keeps a copy and polls its source.
    Primary,
    /// Keeps a copy, watches the primary and polls only while the primary is gone.
    Backup,
    /// Runs the SA's batch jobs; takes no part in reading.
    Batch,
}

impl Role {
    /// The name `units.json` uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Primary => "primary",
            Self::Backup => "backup",
            Self::Batch => "batch",
        }
    }
}

/// One element of the array in `units.json`.
#[derive(Debug, Clone, Serialize)]
pub struct UnitEntry {
    pub sa: String,
    pub unit: String,
    pub pid: u32,
    pub url: String,
    pub role: Role,
    /// `service` or `batch`: whether the gateway routes to it.
    pub kind: UnitKind,
}

/// The in-memory copy of `units.json`, written out whole after every change.
#[derive(Debug)]
pub struct UnitsFile {
    path: PathBuf,
    entries: Vec<UnitEntry>,
}

impl UnitsFile {
    /// Starts with `entries` in memory; nothing is written until the first pid is known.
    pub fn new(data_dir: &Path, entries: Vec<UnitEntry>) -> Self {
        Self {
            path: data_dir.join(FILE_NAME),
            entries,
        }
    }

    /// Records `unit`'s new process id and rewrites the file.
    pub fn set_pid(&mut self, unit: &str, pid: u32) -> anyhow::Result<()> {
        if let Some(entry) = self.entries.iter_mut().find(|entry| entry.unit == unit) {
            entry.pid = pid;
        }
        self.write()
    }

    /// A copy of every entry, for the summary printed at start.
    pub fn entries(&self) -> Vec<UnitEntry> {
        self.entries.clone()
    }

    /// Removes the file once the units are gone, so no script acts on process ids that the
    /// system may already have given to someone else.
    pub fn remove(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(error).with_context(|| format!("cannot remove {}", self.path.display()))
            }
            _ => Ok(()),
        }
    }

    fn write(&self) -> anyhow::Result<()> {
        // Units not started yet (pid 0) are left out rather than shown with a bogus pid.
        let started: Vec<&UnitEntry> = self.entries.iter().filter(|entry| entry.pid != 0).collect();
        let mut text = serde_json::to_vec_pretty(&started).context("cannot serialize units")?;
        text.push(b'\n');
        files::write_atomically(&self.path, &text, files::PUBLIC)
    }
}

#[cfg(test)]
mod tests {
    use super::super::files::testing::ScratchDir;
    use super::*;

    fn entry(unit: &str) -> UnitEntry {
        UnitEntry {
            sa: "registration".into(),
            unit: unit.into(),
            pid: 0,
            url: "http://127.0.0.1:1".into(),
            role: Role::Owner,
            kind: UnitKind::Service,
        }
    }

    #[test]
    fn lists_started_units_with_their_latest_pid() -> anyhow::Result<()> {
        let scratch = ScratchDir::new()?;
        let mut file = UnitsFile::new(scratch.path(), vec![entry("r-1"), entry("r-2")]);
        file.set_pid("r-1", 10)?;
        file.set_pid("r-1", 11)?;
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(scratch.path().join(FILE_NAME))?)?;
        assert_eq!(
            written,
            serde_json::json!([{"sa": "registration", "unit": "r-1", "pid": 11,
                                "url": "http://127.0.0.1:1", "role": "owner",
                                "kind": "service"}])
        );
        file.remove()?;
        assert!(!scratch.path().join(FILE_NAME).exists());
        Ok(())
    }

    #[test]
    fn roles_are_written_by_their_name() -> anyhow::Result<()> {
        for role in [Role::Owner, Role::Primary, Role::Backup, Role::Batch] {
            assert_eq!(serde_json::to_value(role)?, role.name());
        }
        assert_eq!(Role::Backup.name(), "backup");
        Ok(())
    }
}
