//! The framing of one record in a Raft WAL segment (see `raft::wal`): what a record holds, how
//! it is written, and how a reader tells a whole record from the torn or zeroed end a crash
//! leaves behind.
//!
//! A record is `[body length: u32 LE][CRC-32C of the body: u32 LE][body]`; the body starts with
//! its kind: an entry, or the committed log id (written with the next append after openraft
//! saves it; it may lag). A length of zero (a zeroed or never-written tail) ends the segment; a length past
//! the end of the file or a checksum that does not match marks a torn write.

use super::types::LogId;

const HEADER: usize = 8;
const KIND_ENTRY: u8 = 1;
const KIND_COMMITTED: u8 = 2;
/// Largest body a reader accepts: an entry carries at most one batch of proposals, far below.
const MAX_BODY: usize = 1 << 30;

/// What one record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The log entry at `index`, encoded (postcard) as openraft's `Entry`.
    Entry {
        /// The entry's log index (also inside `bytes`; here so a reader need not decode it).
        index: u64,
        /// The encoded entry.
        bytes: Vec<u8>,
    },
    /// The latest committed log id known when the record was written.
    Committed(Option<LogId>),
}

/// Why a segment's records stop where they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The bytes ran out, or a zero length (unwritten space) follows: a clean end.
    Clean,
    /// A record is cut short or fails its checksum: the tail of an unfinished write.
    Torn,
}

/// A record's body could not be decoded although its checksum matched.
#[derive(Debug, thiserror::Error)]
#[error("WAL record of kind {kind} at offset {offset} cannot be decoded")]
pub struct Undecodable {
    kind: u8,
    offset: u64,
}

/// Appends the record of entry `index` (encoded as `bytes`) to `out`, framed: what
/// `Record::Entry` encodes to, without copying the entry into a record first.
pub fn encode_entry(index: u64, bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.push(KIND_ENTRY);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(bytes);
    seal(out, start);
}

/// Fills in the header of the record that starts at `start` and runs to the end of `out`.
fn seal(out: &mut [u8], start: usize) {
    let body = &out[start + HEADER..];
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let crc = crc32c::crc32c(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
}

impl Record {
    /// Appends this record, framed, to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
        let start = out.len();
        match self {
            Record::Entry { index, bytes } => {
                encode_entry(*index, bytes, out);
                return Ok(());
            }
            Record::Committed(id) => {
                out.extend_from_slice(&[0; HEADER]);
                out.push(KIND_COMMITTED);
                out.extend_from_slice(&postcard::to_stdvec(id)?);
            }
        }
        seal(out, start);
        Ok(())
    }
}

/// Reads the records of one segment's bytes in order.
pub struct Reader<'a> {
    bytes: &'a [u8],
    /// Offset of `bytes[0]` in the segment file.
    base: u64,
    pos: usize,
    end: Option<End>,
}

impl<'a> Reader<'a> {
    /// A reader of `bytes`, which start at offset `base` of their segment.
    pub fn new(bytes: &'a [u8], base: u64) -> Self {
        Self {
            bytes,
            base,
            pos: 0,
            end: None,
        }
    }

    /// Offset (in the segment) just past the last whole record read.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// How the records ended; `None` until the reader has returned its last record.
    pub fn end(&self) -> Option<End> {
        self.end
    }

    /// The next record and its offset; `None` at the end (see [`Reader::end`]).
    pub fn next_record(&mut self) -> Result<Option<(u64, Record)>, Undecodable> {
        if self.end.is_some() {
            return Ok(None);
        }
        let rest = &self.bytes[self.pos..];
        let Some((header, after)) = rest.split_first_chunk::<HEADER>() else {
            // Fewer bytes than a header: zeros are unwritten space, anything else a torn write.
            let end = if rest.iter().all(|b| *b == 0) {
                End::Clean
            } else {
                End::Torn
            };
            self.end = Some(end);
            return Ok(None);
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len == 0 && crc == 0 {
            self.end = Some(End::Clean);
            return Ok(None);
        }
        let body = match after.get(..len) {
            Some(body) if len <= MAX_BODY && crc32c::crc32c(body) == crc => body,
            _ => {
                self.end = Some(End::Torn);
                return Ok(None);
            }
        };
        let offset = self.offset();
        let undecodable = |kind| Undecodable { kind, offset };
        let (kind, payload) = body.split_first().ok_or(undecodable(0))?;
        let record = match *kind {
            KIND_ENTRY => {
                let (index, bytes) = payload.split_first_chunk::<8>().ok_or(undecodable(*kind))?;
                Record::Entry {
                    index: u64::from_le_bytes(*index),
                    bytes: bytes.to_vec(),
                }
            }
            KIND_COMMITTED => {
                Record::Committed(postcard::from_bytes(payload).map_err(|_| undecodable(*kind))?)
            }
            other => return Err(undecodable(other)),
        };
        self.pos += HEADER + len;
        Ok(Some((offset, record)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use openraft::testing::log_id;

    fn sample() -> Vec<Record> {
        vec![
            Record::Committed(None),
            Record::Entry {
                index: 7,
                bytes: b"entry seven".to_vec(),
            },
            Record::Committed(Some(log_id(3, 1, 7))),
            Record::Entry {
                index: 8,
                bytes: Vec::new(),
            },
        ]
    }

    fn encode(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            r.encode_into(&mut out).unwrap();
        }
        out
    }

    fn read_all(bytes: &[u8]) -> (Vec<Record>, Option<End>, u64) {
        let mut reader = Reader::new(bytes, 0);
        let mut out = Vec::new();
        while let Some((_, r)) = reader.next_record().unwrap() {
            out.push(r);
        }
        (out, reader.end(), reader.offset())
    }

    #[test]
    fn records_read_back_as_written_and_zeros_end_cleanly() {
        let mut bytes = encode(&sample());
        let len = bytes.len() as u64;
        bytes.extend_from_slice(&[0; 100]);
        assert_eq!(read_all(&bytes), (sample(), Some(End::Clean), len));
    }

    #[test]
    fn a_cut_or_damaged_last_record_is_a_torn_end_after_the_whole_ones() {
        let all = encode(&sample());
        for cut in 0..all.len() {
            let (records, end, offset) = read_all(&all[..cut]);
            assert_eq!(records[..], sample()[..records.len()], "cut at {cut}");
            match end {
                Some(End::Clean) => assert_eq!(offset, cut as u64, "cut at {cut}"),
                other => assert_eq!(other, Some(End::Torn), "cut at {cut}"),
            }
        }
        let mut flipped = all.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        let (records, end, _) = read_all(&flipped);
        assert_eq!((records.len(), end), (sample().len() - 1, Some(End::Torn)));
    }
}
