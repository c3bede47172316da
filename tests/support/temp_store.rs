//! A store file of its own for a test, in a directory of its own, removed when dropped.

use std::path::PathBuf;

pub(crate) struct TempStore(pub(crate) PathBuf);

impl TempStore {
    /// A file under the system's temporary directory, named after `name` and unique to the run.
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "sora-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        TempStore(dir.join("store.redb"))
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
