//! Whole-file writes that readers never see half done, with the permissions chosen up front.
//!
//! Scripts read `units.json` while the demo rewrites it, and `tokens.json` and the unit
//! configurations hold bearer tokens that only the owner may read: both needs meet here.

use std::fs::{OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Only the owner may read or write: files that hold bearer tokens.
pub const PRIVATE: u32 = 0o600;
/// Everyone may read: files for scripts, without secrets.
pub const PUBLIC: u32 = 0o644;

/// Writes `contents` to a temporary file beside `path` and renames it over `path`, so a reader
/// sees either the old or the new file, never a mix.
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut temporary_name = path.as_os_str().to_owned();
    temporary_name.push(".tmp");
    let temporary = Path::new(&temporary_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(temporary)
        .with_context(|| format!("cannot create {}", temporary.display()))?;
    // The mode above only applies when the file is new; a leftover from a crash keeps its own.
    file.set_permissions(Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the permissions of {}", temporary.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(temporary, path).with_context(|| format!("cannot replace {}", path.display()))
}

/// Reads the JSON object in `path`, or makes one with `create` and writes it there (pretty,
/// mode 0600) when the file does not exist yet: secrets a demo keeps from one run to the next.
/// A file that exists but does not parse is an error, never silently replaced, so nothing that
/// scripts or units still rely on is lost; `what` names its contents in messages.
pub fn load_or_create_private_json<T>(
    path: &Path,
    what: &str,
    create: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T>
where
    T: Serialize + DeserializeOwned,
{
    match std::fs::read(path) {
        Ok(text) => serde_json::from_slice(&text).with_context(|| {
            format!(
                "{} does not hold valid {what}; remove it to get new ones",
                path.display()
            )
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let value = create()?;
            let mut text = serde_json::to_vec_pretty(&value)
                .with_context(|| format!("cannot serialize {what}"))?;
            text.push(b'\n');
            write_atomically(path, &text, PRIVATE)?;
            tracing::info!("created new {what} in {}", path.display());
            Ok(value)
        }
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
pub mod testing {
    //! A scratch directory per test, removed when the test ends.

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system's temporary directory.
    pub struct ScratchDir(PathBuf);

    impl ScratchDir {
        pub fn new() -> anyhow::Result<Self> {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let path = std::env::temp_dir().join(format!(
                "hiscale-demo-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path)?;
            Ok(Self(path))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for ScratchDir {
        fn drop(&mut self) {
            // A leftover scratch directory is harmless, so a failure here is not worth a panic.
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::ScratchDir;
    use super::*;

    #[test]
    fn replaces_the_file_with_the_requested_mode() -> anyhow::Result<()> {
        let scratch = ScratchDir::new()?;
        let path = scratch.path().join("file.json");
        write_atomically(&path, b"old", PUBLIC)?;
        write_atomically(&path, b"new", PRIVATE)?;
        assert_eq!(std::fs::read(&path)?, b"new");
        assert_eq!(
            std::fs::metadata(&path)?.permissions().mode() & 0o777,
            PRIVATE
        );
        assert!(!scratch.path().join("file.json.tmp").exists());
        Ok(())
    }
}
