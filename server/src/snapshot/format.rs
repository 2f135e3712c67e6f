//! oxcd's snapshot file format: writing an image and reading one back only after checking it.
//!
//! Layout (all integers big-endian):
//!
//! | part | bytes |
//! |---|---|
//! | header | magic `OXCDSNAP`, format version (u32), store revision (i64), compaction revision (i64), etcd storage version (16 bytes, zero-padded) |
//! | records | per record: tag `1`, key length (u32), key, value length (u32), value |
//! | end | tag `0`, record count (u64), zeros up to a multiple of 512 bytes |
//! | trailer | SHA-256 of everything before it (32 bytes) |
//!
//! The records are the MVCC keyspace in key order without Raft's own records. The 512-byte
//! alignment and the SHA-256 trailer are etcd's snapshot convention: etcd's Snapshot RPC streams
//! the database and then its SHA-256, and etcdctl accepts a snapshot only when its size is a
//! multiple of 512 plus 32, so `etcdctl snapshot save` works against oxcd unchanged.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use super::records::{Record, Records};

/// First bytes of every oxcd snapshot.
pub const MAGIC: &[u8; 8] = b"OXCDSNAP";
/// The format version this oxcd writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Length of the header.
pub const HEADER_LEN: u64 = 8 + 4 + 8 + 8 + VERSION_FIELD_LEN as u64;
/// Snapshot content is padded to a multiple of this, as etcd's clients expect.
pub const BLOCK_LEN: u64 = 512;
/// Length of the SHA-256 trailer.
pub const TRAILER_LEN: u64 = 32;
const VERSION_FIELD_LEN: usize = 16;
/// Tag of a record.
pub(super) const TAG_RECORD: u8 = 1;
/// Tag of the end marker.
pub(super) const TAG_END: u8 = 0;
/// bbolt's meta-page magic (little-endian at offset 16): recognizes an etcd snapshot.
const BOLT_MAGIC_AT_16: [u8; 4] = [0xed, 0xda, 0x0c, 0xed];

/// Why a snapshot file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The file cannot be read.
    #[error("failed to read snapshot {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is an etcd (bbolt) snapshot.
    #[error(
        "{path} is an etcd snapshot (a bbolt database), not an oxcd snapshot: oxcd cannot read etcd's on-disk format"
    )]
    Etcd {
        /// The file.
        path: PathBuf,
    },
    /// The file does not start with oxcd's magic.
    #[error("{path} is not an oxcd snapshot (no OXCDSNAP header)")]
    NotOxcd {
        /// The file.
        path: PathBuf,
    },
    /// The format version is unknown.
    #[error("snapshot {path} has format version {found}; this oxcd reads version {FORMAT_VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// The size is not blocks plus trailer: truncated or appended to.
    #[error(
        "snapshot {path} is truncated or damaged: its size {size} is not a multiple of 512 bytes plus the 32-byte sha256 trailer"
    )]
    Size {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The content does not match the trailer.
    #[error(
        "snapshot {path} is corrupt: sha256 of its content is {actual}, its trailer says {expected}"
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// Digest in the trailer (hex).
        expected: String,
        /// Digest of the content (hex).
        actual: String,
    },
    /// The content is not a well-formed image despite a matching checksum.
    #[error("snapshot {path} is malformed: {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
}

/// The header of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The store revision when the image was taken.
    pub revision: i64,
    /// The compaction revision then (-1 before any compaction).
    pub compact_revision: i64,
    /// The etcd storage version the image corresponds to.
    pub storage_version: String,
}

/// Writes an image: header, then [`ImageWriter::record`]s, then [`ImageWriter::finish`].
pub struct ImageWriter<W: Write> {
    out: W,
    written: u64,
    records: u64,
}

impl<W: Write> ImageWriter<W> {
    /// Starts an image with `header`.
    pub fn new(mut out: W, header: &Header) -> io::Result<Self> {
        let mut version = [0u8; VERSION_FIELD_LEN];
        let v = header.storage_version.as_bytes();
        let n = v.len().min(VERSION_FIELD_LEN);
        version[..n].copy_from_slice(&v[..n]);
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_be_bytes())?;
        out.write_all(&header.revision.to_be_bytes())?;
        out.write_all(&header.compact_revision.to_be_bytes())?;
        out.write_all(&version)?;
        Ok(Self {
            out,
            written: HEADER_LEN,
            records: 0,
        })
    }

    /// Appends one record.
    pub fn record(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let len = |b: &[u8]| u32::try_from(b.len()).map_err(io::Error::other);
        self.out.write_all(&[TAG_RECORD])?;
        self.out.write_all(&len(key)?.to_be_bytes())?;
        self.out.write_all(key)?;
        self.out.write_all(&len(value)?.to_be_bytes())?;
        self.out.write_all(value)?;
        self.written += 9 + key.len() as u64 + value.len() as u64;
        self.records += 1;
        Ok(())
    }

    /// Writes the end marker and padding; returns the output and the content length (a
    /// multiple of [`BLOCK_LEN`]; the trailer is not written here).
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.out.write_all(&[TAG_END])?;
        self.out.write_all(&self.records.to_be_bytes())?;
        self.written += 9;
        let pad = (BLOCK_LEN - self.written % BLOCK_LEN) % BLOCK_LEN;
        self.out.write_all(&vec![0u8; pad as usize])?;
        self.out.flush()?;
        Ok((self.out, self.written + pad))
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks etcd's convention on a snapshot file of any format: size = 512-byte blocks + 32, and
/// the trailer is the SHA-256 of the content. Returns the content length.
pub fn verify_trailer(path: &Path) -> Result<u64, SnapshotError> {
    let read = |source| SnapshotError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read)?;
    let size = file.metadata().map_err(read)?.len();
    if size < TRAILER_LEN || !(size - TRAILER_LEN).is_multiple_of(BLOCK_LEN) {
        return Err(SnapshotError::Size {
            path: path.to_path_buf(),
            size,
        });
    }
    let content_len = size - TRAILER_LEN;
    let mut sha = Sha256::new();
    let mut content = BufReader::with_capacity(1 << 20, (&mut file).take(content_len));
    io::copy(&mut content, &mut sha).map_err(read)?;
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.seek(SeekFrom::Start(content_len)).map_err(read)?;
    file.read_exact(&mut trailer).map_err(read)?;
    let actual = sha.finalize();
    if actual.as_slice() != trailer {
        return Err(SnapshotError::Checksum {
            path: path.to_path_buf(),
            expected: hex(&trailer),
            actual: hex(&actual),
        });
    }
    Ok(content_len)
}

/// A snapshot file whose header, size and checksum have been checked.
#[derive(Debug, Clone)]
pub struct Image {
    path: PathBuf,
    /// Its header.
    pub header: Header,
    /// Length of the content (the file without the trailer).
    pub content_len: u64,
}

impl Image {
    /// Opens `path`, checking magic, format version, size and SHA-256 before anything else.
    pub fn open(path: &Path) -> Result<Self, SnapshotError> {
        let read = |source| SnapshotError::Read {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::open(path).map_err(read)?;
        let mut head = [0u8; HEADER_LEN as usize];
        let got = read_up_to(&mut file, &mut head).map_err(read)?;
        if got >= 20 && head[16..20] == BOLT_MAGIC_AT_16 {
            return Err(SnapshotError::Etcd {
                path: path.to_path_buf(),
            });
        }
        if got < MAGIC.len() || &head[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::NotOxcd {
                path: path.to_path_buf(),
            });
        }
        let content_len = verify_trailer(path)?;
        if content_len < HEADER_LEN + 9 {
            return Err(SnapshotError::Malformed {
                path: path.to_path_buf(),
                what: "too short for a header and an end marker".into(),
            });
        }
        let field = |at: usize| -> [u8; 8] {
            let mut b = [0u8; 8];
            b.copy_from_slice(&head[at..at + 8]);
            b
        };
        let mut version = [0u8; 4];
        version.copy_from_slice(&head[8..12]);
        let found = u32::from_be_bytes(version);
        if found != FORMAT_VERSION {
            return Err(SnapshotError::Version {
                path: path.to_path_buf(),
                found,
            });
        }
        let storage = &head[28..28 + VERSION_FIELD_LEN];
        let storage = &storage[..storage
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(storage.len())];
        Ok(Self {
            path: path.to_path_buf(),
            header: Header {
                revision: i64::from_be_bytes(field(12)),
                compact_revision: i64::from_be_bytes(field(20)),
                storage_version: String::from_utf8_lossy(storage).into_owned(),
            },
            content_len,
        })
    }

    /// The records in file order; the iterator's last item checks the end marker, the record
    /// count and the padding, so a full iteration validates the whole image.
    pub fn records(&self) -> Result<Records, SnapshotError> {
        let read = |source| SnapshotError::Read {
            path: self.path.clone(),
            source,
        };
        let mut file = File::open(&self.path).map_err(read)?;
        file.seek(SeekFrom::Start(HEADER_LEN)).map_err(read)?;
        Ok(Records::new(
            self.path.clone(),
            BufReader::with_capacity(1 << 20, file.take(self.content_len - HEADER_LEN)),
            self.content_len,
        ))
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}
