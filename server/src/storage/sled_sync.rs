//! What sled's flush leaves out for durability across power loss, done after it.
//!
//! sled 0.34 makes its log stable on Linux with `sync_file_range`, which neither flushes the
//! disk's write cache nor writes the file's metadata (its size grows as the log grows), and it
//! writes large items as files under `blobs/` without syncing them or the directory. That is
//! enough when only the process dies, not when the machine loses power. etcd `fdatasync`s its
//! WAL before it answers, so after sled's flush the engine syncs the data file, every blob file
//! it has not synced yet, and the directories whose entries changed.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

/// The files of one sled database that need a sync beyond sled's own flush.
pub struct SledFiles {
    data: File,
    blob_dir: PathBuf,
    /// Blob files already synced (sled never rewrites a blob in place; it writes a new one).
    synced_blobs: Mutex<HashSet<OsString>>,
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl SledFiles {
    /// Opens the database files in `dir` (after sled created them) and syncs the directories, so
    /// the data file and the blob directory themselves survive a power loss.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let data = File::open(dir.join("db"))?;
        let blob_dir = dir.join("blobs");
        sync_dir(dir)?;
        let files = Self {
            data,
            blob_dir,
            synced_blobs: Mutex::new(HashSet::new()),
        };
        // Blobs written before a crash of a previous run may never have been synced.
        files.sync_new_blobs()?;
        Ok(files)
    }

    /// Makes everything sled has flushed durable: the data file (contents and size) and any blob
    /// written since the last call. Call after every sled flush that must survive power loss.
    pub fn sync(&self) -> io::Result<()> {
        self.data.sync_data()?;
        self.sync_new_blobs()
    }

    /// Syncs blob files not synced yet, then the blob directory if any was new; forgets blobs
    /// sled has removed so the set stays as small as the directory.
    fn sync_new_blobs(&self) -> io::Result<()> {
        let entries = match std::fs::read_dir(&self.blob_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut synced = self.synced_blobs.lock();
        let mut present = HashSet::with_capacity(synced.len());
        let mut new_blob = false;
        for entry in entries {
            let name = entry?.file_name();
            if !synced.contains(&name) {
                File::open(self.blob_dir.join(&name))?.sync_data()?;
                new_blob = true;
            }
            present.insert(name);
        }
        *synced = present;
        drop(synced);
        if new_blob {
            sync_dir(&self.blob_dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_blobs_are_synced_once_and_removed_ones_forgotten() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("db"), b"log")?;
        std::fs::create_dir(dir.path().join("blobs"))?;
        std::fs::write(dir.path().join("blobs/1"), b"one")?;
        let files = SledFiles::open(dir.path())?;
        assert_eq!(files.synced_blobs.lock().len(), 1);
        std::fs::write(dir.path().join("blobs/2"), b"two")?;
        files.sync()?;
        assert_eq!(files.synced_blobs.lock().len(), 2);
        std::fs::remove_file(dir.path().join("blobs/1"))?;
        files.sync()?;
        let synced = files.synced_blobs.lock();
        assert_eq!(synced.len(), 1);
        assert!(synced.contains(&OsString::from("2")));
        Ok(())
    }

    #[test]
    fn a_missing_data_file_is_an_error_not_a_silent_no_op() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert!(SledFiles::open(dir.path()).is_err());
        Ok(())
    }
}
