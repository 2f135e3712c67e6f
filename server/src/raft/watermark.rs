//! The flushed-index watermark: a tiny file beside the store recording the highest log index the
//! store has flushed. If the engine later comes up with a shorter log, its files were damaged or
//! replaced and acknowledged writes may be gone, so the member refuses to start instead of
//! silently serving less than it acknowledged.
//!
//! The file is rewritten (without fsync) after every group-commit flush, so it can only lag the
//! durable log, never lead it; it is lowered, durably, before a log truncation.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The watermark file of one member.
#[derive(Debug)]
pub struct Watermark {
    file: File,
    path: PathBuf,
}

impl Watermark {
    /// Opens (creating if needed) the watermark at `path`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The recorded index; `None` for a new or unreadable file (which then proves nothing).
    pub fn load(path: &Path) -> Option<u64> {
        let bytes = std::fs::read(path).ok()?;
        let raw: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
        let index = u64::from_be_bytes(raw);
        let check: [u8; 8] = bytes.get(8..16)?.try_into().ok()?;
        (u64::from_be_bytes(check) == !index).then_some(index)
    }

    fn encode(index: u64) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&index.to_be_bytes());
        out[8..].copy_from_slice(&(!index).to_be_bytes());
        out
    }

    /// Records `index` as flushed (no fsync: a lagging watermark is harmless).
    pub fn store(&self, index: u64) -> io::Result<()> {
        self.file.write_all_at(&Self::encode(index), 0)
    }

    /// Lowers the watermark to `index` durably, before the log is cut back.
    pub fn lower(&self, index: u64) -> io::Result<()> {
        self.file.write_all_at(&Self::encode(index), 0)?;
        self.file.sync_data()
    }

    /// Where the file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stored_index_reads_back_and_garbage_reads_as_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w");
        assert_eq!(Watermark::load(&path), None);
        let w = Watermark::open(&path).unwrap();
        w.store(42).unwrap();
        assert_eq!(Watermark::load(&path), Some(42));
        w.lower(7).unwrap();
        assert_eq!(Watermark::load(&path), Some(7));
        std::fs::write(&path, b"garbage garbage!").unwrap();
        assert_eq!(Watermark::load(&path), None);
    }
}
