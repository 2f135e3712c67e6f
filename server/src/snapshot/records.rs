//! Reading the records of a checked snapshot image: one at a time (for loading), or all of
//! them without keeping any (a structural check before anything is written).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::PathBuf;

use super::format::{BLOCK_LEN, HEADER_LEN, SnapshotError, TAG_END, TAG_RECORD};

/// One record: key and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// Iterator over the records of an [`Image`].
pub struct Records {
    path: PathBuf,
    input: BufReader<io::Take<File>>,
    offset: u64,
    content_len: u64,
    count: u64,
    /// The key of the last record read.
    previous: Vec<u8>,
    /// A buffer for the next key while checking.
    spare: Vec<u8>,
    done: bool,
}

impl Records {
    /// Records read from `input`, positioned just after the header of an image whose content
    /// (without the trailer) is `content_len` bytes long.
    pub(super) fn new(path: PathBuf, input: BufReader<io::Take<File>>, content_len: u64) -> Self {
        Self {
            path,
            input,
            offset: HEADER_LEN,
            content_len,
            count: 0,
            previous: Vec::new(),
            spare: Vec::new(),
            done: false,
        }
    }

    fn malformed(&self, what: impl Into<String>) -> SnapshotError {
        SnapshotError::Malformed {
            path: self.path.clone(),
            what: format!("{} at byte {}", what.into(), self.offset),
        }
    }

    /// Reads the next `len` bytes into `buf`, replacing what it held.
    fn read_into(&mut self, len: usize, buf: &mut Vec<u8>) -> Result<(), SnapshotError> {
        if self.offset + len as u64 > self.content_len {
            return Err(self.malformed("a record runs past the end"));
        }
        buf.clear();
        buf.resize(len, 0);
        self.input
            .read_exact(buf)
            .map_err(|_| self.malformed("a record runs past the end"))?;
        self.offset += len as u64;
        Ok(())
    }

    fn bytes(&mut self, len: usize) -> Result<Vec<u8>, SnapshotError> {
        let mut buf = Vec::new();
        self.read_into(len, &mut buf)?;
        Ok(buf)
    }

    /// Passes over the next `len` bytes without keeping them.
    fn skip(&mut self, len: usize) -> Result<(), SnapshotError> {
        if self.offset + len as u64 > self.content_len {
            return Err(self.malformed("a record runs past the end"));
        }
        let skipped = io::copy(&mut (&mut self.input).take(len as u64), &mut io::sink())
            .map_err(|_| self.malformed("a record runs past the end"))?;
        if skipped != len as u64 {
            return Err(self.malformed("a record runs past the end"));
        }
        self.offset += len as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        if self.offset + N as u64 > self.content_len {
            return Err(self.malformed("a record runs past the end"));
        }
        let mut b = [0u8; N];
        self.input
            .read_exact(&mut b)
            .map_err(|_| self.malformed("a record runs past the end"))?;
        self.offset += N as u64;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        self.array().map(u32::from_be_bytes)
    }

    fn end(&mut self) -> Result<(), SnapshotError> {
        if u64::from_be_bytes(self.array()?) != self.count {
            return Err(self.malformed("the record count does not match the end marker"));
        }
        let rest = usize::try_from(self.content_len - self.offset)
            .map_err(|_| self.malformed("padding is too long"))?;
        if rest as u64 >= BLOCK_LEN || self.bytes(rest)?.iter().any(|b| *b != 0) {
            return Err(self.malformed("unexpected bytes after the end marker"));
        }
        Ok(())
    }

    /// The next record, or `None` after a valid end marker; with `keep` false the value is
    /// skipped and an empty record returned, which checks the structure without allocating.
    fn next_record(&mut self, keep: bool) -> Result<Option<Record>, SnapshotError> {
        match self.array::<1>()?[0] {
            TAG_END => {
                self.end()?;
                Ok(None)
            }
            TAG_RECORD => {
                let key_len = self.u32()? as usize;
                // A check reads keys into a spare buffer: no allocation per record.
                let mut key = if keep {
                    Vec::new()
                } else {
                    std::mem::take(&mut self.spare)
                };
                self.read_into(key_len, &mut key)?;
                // An image is the keyspace in key order; a loader may rely on that (several
                // threads inserting disjoint slices are only equivalent to one in-order pass
                // when no key repeats).
                if self.count > 0 && key <= self.previous {
                    return Err(self.malformed("a key out of ascending order"));
                }
                let value_len = self.u32()? as usize;
                let value = if keep {
                    self.bytes(value_len)?
                } else {
                    self.skip(value_len)?;
                    Vec::new()
                };
                self.count += 1;
                if keep {
                    self.previous.clear();
                    self.previous.extend_from_slice(&key);
                    Ok(Some((key, value)))
                } else {
                    self.spare = std::mem::replace(&mut self.previous, key);
                    Ok(Some((Vec::new(), value)))
                }
            }
            tag => Err(self.malformed(format!("unknown record tag {tag}"))),
        }
    }

    /// Walks the rest of the image without keeping the records and returns how many there
    /// were: a check of the whole structure (tags, lengths, end marker, count, padding) at the
    /// cost of reading the file once.
    pub fn check(mut self) -> Result<u64, SnapshotError> {
        while self.next_record(false)?.is_some() {}
        Ok(self.count)
    }
}

impl Iterator for Records {
    type Item = Result<Record, SnapshotError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_record(true);
        if !matches!(item, Ok(Some(_))) {
            self.done = true;
        }
        item.transpose()
    }
}
