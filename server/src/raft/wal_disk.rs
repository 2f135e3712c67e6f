//! The Raft WAL's files (see `raft::wal`): the `meta` file with the vote and the purged log
//! id, replaced atomically (written beside, synced, renamed); the segment files and reading
//! them back, whole when the WAL is opened and entry by entry while it runs.
//!
//! The vote and the purged id live outside the segments because cutting or deleting a segment
//! must never take them along: a member that forgets its vote may vote twice in a term, and
//! one that forgets what it purged finds a hole before its first entry.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::Vote;
use serde::{Deserialize, Serialize};

use super::types::{Entry, LogId};
use super::wal::{WalError, io_error};
use super::wal_record::{End, Reader, Record};

const META_FILE: &str = "meta";
const SEGMENT_SUFFIX: &str = ".wal";

/// The ids kept in the `meta` file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The member's vote.
    pub vote: Option<Vote<u64>>,
    /// Every entry up to this id is purged.
    pub purged: Option<LogId>,
}

/// The file name of segment `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("{seq:016x}{SEGMENT_SUFFIX}")
}

/// Replaces the `meta` file of `dir` with `meta`, durably.
pub fn store_meta(dir: &Path, meta: &Meta) -> Result<(), WalError> {
    let path = dir.join(META_FILE);
    let tmp = dir.join(format!("{META_FILE}.tmp"));
    let body = postcard::to_stdvec(meta).map_err(|e| WalError::Corrupt {
        path: path.clone(),
        what: format!("cannot encode: {e}"),
    })?;
    let mut bytes = crc32c::crc32c(&body).to_le_bytes().to_vec();
    bytes.extend_from_slice(&body);
    let mut file = File::create(&tmp).map_err(io_error("create", &tmp))?;
    file.write_all(&bytes).map_err(io_error("write", &tmp))?;
    file.sync_all().map_err(io_error("sync", &tmp))?;
    fs::rename(&tmp, &path).map_err(io_error("rename", &tmp))?;
    sync_dir(dir)
}

/// The `meta` file of `dir` (defaults when there is none yet).
fn load_meta(dir: &Path) -> Result<Meta, WalError> {
    let path = dir.join(META_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Meta::default()),
        Err(e) => return Err(io_error("read", &path)(e)),
    };
    let corrupt = |what: &str| WalError::Corrupt {
        path: path.clone(),
        what: what.into(),
    };
    let (crc, body) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt("too short"))?;
    if u32::from_le_bytes(*crc) != crc32c::crc32c(body) {
        return Err(corrupt("checksum mismatch"));
    }
    postcard::from_bytes(body).map_err(|e| corrupt(&e.to_string()))
}

/// Makes the directory's entries (created, renamed or removed files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync", dir))
}

/// Gives `file` its full `size` up front, as etcd does with its segments: an `fdatasync` after
/// an append inside the file's size need not record a new size. Where the filesystem cannot,
/// the file just grows with its appends.
fn preallocate(file: &File, size: u64) {
    if let Err(error) = rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size) {
        tracing::debug!(%error, "cannot preallocate a raft WAL segment");
    }
}

/// Cuts `file` to `len` bytes durably, then preallocates it to `size` again (zeros past `len`).
pub fn cut(file: &File, path: &Path, len: u64, size: u64) -> Result<(), WalError> {
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(io_error("cut", path))?;
    preallocate(file, size);
    Ok(())
}

/// Creates the empty segment `seq` in `dir`, preallocated to `size` bytes, durably (file and
/// directory entry).
pub fn create_segment(dir: &Path, seq: u64, size: u64) -> Result<Segment, WalError> {
    let path = dir.join(segment_name(seq));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_error("create", &path))?;
    preallocate(&file, size);
    sync_dir(dir)?;
    Ok(Segment::new(seq, path, Arc::new(file), 0))
}

/// One segment file and where its entries are.
#[derive(Debug)]
pub struct Segment {
    pub(super) seq: u64,
    pub(super) path: PathBuf,
    pub(super) file: Arc<File>,
    /// Bytes of whole records (appends go here).
    pub(super) len: u64,
    /// Index of the entry at `offsets[0]`.
    pub(super) first_index: u64,
    /// Offset of each entry's record, in index order.
    pub(super) offsets: Vec<u64>,
}

impl Segment {
    /// Segment `seq` at `path`, `len` bytes long, with no entries known yet.
    pub(super) fn new(seq: u64, path: PathBuf, file: Arc<File>, len: u64) -> Self {
        Self {
            seq,
            path,
            file,
            len,
            first_index: 0,
            offsets: Vec::new(),
        }
    }

    pub(super) fn file(&self) -> &File {
        &self.file
    }

    pub(super) fn set_len(&mut self, len: u64) {
        self.len = len;
    }

    pub(super) fn last_index(&self) -> Option<u64> {
        let count = self.offsets.len() as u64;
        (count > 0).then(|| self.first_index + count - 1)
    }

    /// Records that entry `index` (the next after the last) starts at `offset`.
    pub(super) fn push_entry(&mut self, index: u64, offset: u64) {
        if self.offsets.is_empty() {
            self.first_index = index;
        }
        self.offsets.push(offset);
    }

    /// Treats the segment as holding no entries (they were all purged).
    pub(super) fn forget_entries(&mut self) {
        self.offsets = Vec::new();
    }
}

/// What the WAL held when it was opened.
#[derive(Debug)]
pub struct Opened {
    /// Its segments, in order.
    pub segments: Vec<Segment>,
    /// The ids of the `meta` file.
    pub meta: Meta,
    /// The latest committed id written.
    pub committed: Option<LogId>,
    /// The last entry's log id.
    pub last_entry: Option<LogId>,
}

/// Reads the WAL in `dir` (creating the directory), cutting a torn tail off the last segment,
/// whose end is cleared and preallocated to `segment_size` again.
pub fn open(dir: &Path, segment_size: u64) -> Result<Opened, WalError> {
    fs::create_dir_all(dir).map_err(io_error("create", dir))?;
    let meta = load_meta(dir)?;
    let mut seqs = Vec::new();
    for dirent in fs::read_dir(dir).map_err(io_error("list", dir))? {
        let name = dirent.map_err(io_error("list", dir))?.file_name();
        let name = name.to_string_lossy();
        if let Some(seq) = name
            .strip_suffix(SEGMENT_SUFFIX)
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    let mut opened = Opened {
        segments: Vec::with_capacity(seqs.len()),
        meta,
        committed: None,
        last_entry: None,
    };
    // The last entry read: only it is decoded, for its log id.
    let mut last: Option<(PathBuf, Vec<u8>)> = None;
    let mut last_index = None;
    let count = seqs.len();
    for (n, seq) in seqs.into_iter().enumerate() {
        let path = dir.join(segment_name(seq));
        let bytes = fs::read(&path).map_err(io_error("read", &path))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_error("open", &path))?;
        let mut segment = Segment::new(seq, path.clone(), Arc::new(file), 0);
        let corrupt = |what: String| WalError::Corrupt {
            path: path.clone(),
            what,
        };
        let mut reader = Reader::new(&bytes, 0);
        while let Some((offset, record)) =
            reader.next_record().map_err(|e| corrupt(e.to_string()))?
        {
            match record {
                Record::Committed(id) => opened.committed = id,
                Record::Entry { index, bytes } => {
                    let previous = last_index;
                    let follows = previous.is_none_or(|p| index == p + 1);
                    // After a purge past the end of the log, the next entry follows the purged
                    // id and the entries before are obsolete.
                    let after_purge = meta.purged.is_some_and(|p| {
                        index == p.index + 1 && previous.is_some_and(|prev| prev <= p.index)
                    });
                    if !follows && !after_purge {
                        return Err(corrupt(format!(
                            "entry {index} follows entry {}",
                            previous.unwrap_or_default()
                        )));
                    }
                    if !follows {
                        opened.segments.iter_mut().for_each(Segment::forget_entries);
                        segment.forget_entries();
                    }
                    segment.push_entry(index, offset);
                    last_index = Some(index);
                    last = Some((path.clone(), bytes));
                }
            }
        }
        let end = reader.offset();
        if n + 1 < count {
            if reader.end() == Some(End::Torn) {
                return Err(corrupt(format!("records at offset {end} are damaged")));
            }
        } else {
            if reader.end() == Some(End::Torn) {
                tracing::warn!(path = %path.display(), offset = end, "cutting the torn tail a crash left in the raft WAL");
            }
            // Past the last whole record nothing may be left that a later append could make
            // look like a continuation (an unsynced write that reached the disk out of order).
            cut(segment.file(), &path, end, segment_size.max(end))?;
        }
        segment.set_len(end);
        opened.segments.push(segment);
    }
    if let Some((path, bytes)) = last {
        let entry: Entry = postcard::from_bytes(&bytes).map_err(|e| WalError::Corrupt {
            path,
            what: format!("its last entry cannot be decoded: {e}"),
        })?;
        opened.last_entry = Some(entry.log_id);
    }
    if opened.committed.is_some_and(|c| {
        opened.last_entry.is_none_or(|l| c.index > l.index)
            && meta.purged.is_none_or(|p| c.index > p.index)
    }) {
        // Never past what the log holds (a committed id is written after the entries it names).
        opened.committed = None;
    }
    Ok(opened)
}

/// The entries with `start <= index < end` in `segments`.
pub fn read_entries(segments: &[Segment], start: u64, end: u64) -> Result<Vec<Entry>, WalError> {
    let mut entries = Vec::new();
    for segment in segments {
        let Some(last) = segment.last_index() else {
            continue;
        };
        let from = start.max(segment.first_index);
        let to = end.min(last.saturating_add(1));
        if from >= to {
            continue;
        }
        let at = |index: u64| segment.offsets.get((index - segment.first_index) as usize);
        let (Some(&begin), stop) = (at(from), at(to).copied().unwrap_or(segment.len)) else {
            continue;
        };
        let mut bytes = vec![0; (stop - begin) as usize];
        segment
            .file
            .read_exact_at(&mut bytes, begin)
            .map_err(io_error("read", &segment.path))?;
        let mut reader = Reader::new(&bytes, begin);
        let corrupt = |what: String| WalError::Corrupt {
            path: segment.path.clone(),
            what,
        };
        while let Some((_, record)) = reader.next_record().map_err(|e| corrupt(e.to_string()))? {
            if let Record::Entry { index, bytes } = record
                && (from..to).contains(&index)
            {
                entries.push(
                    postcard::from_bytes(&bytes)
                        .map_err(|e| corrupt(format!("entry {index}: {e}")))?,
                );
            }
        }
        if reader.end() == Some(End::Torn) {
            return Err(corrupt(format!(
                "records at offset {} are damaged",
                reader.offset()
            )));
        }
    }
    Ok(entries)
}
