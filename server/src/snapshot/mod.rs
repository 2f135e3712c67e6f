//! Snapshots of a member's store: the file format, the Snapshot RPC's streaming, the
//! `oxcd snapshot save|restore|status` commands, and snapshots in S3 ([`s3`]:
//! `upload|download|prune|drill`, restore from S3; the drill starts an [`ephemeral`] member).
//!
//! A snapshot is a point-in-time copy of the MVCC keyspace (revision records, leases, alarms and
//! the revision and compaction markers) without Raft's own records, so it can seed a new
//! cluster. Its format is oxcd's own ([`format`]); it follows etcd's conventions on the wire
//! (512-byte blocks, SHA-256 trailer) so etcdctl's `snapshot save` works against oxcd.

pub mod cli;
pub mod ephemeral;
pub mod export;
pub mod format;
pub mod member;
pub mod records;
pub mod restore;
pub mod s3;
pub mod staged;
pub mod status;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Write;

    use sha2::{Digest, Sha256};

    use super::format::{Header, Image, ImageWriter, SnapshotError};

    /// Writes a complete snapshot file (content and trailer) with `records`.
    fn write_file(path: &std::path::Path, records: &[(&[u8], &[u8])]) {
        let header = Header {
            revision: 7,
            compact_revision: 3,
            storage_version: "3.6.0".into(),
        };
        let mut image = ImageWriter::new(Vec::new(), &header).unwrap();
        for (k, v) in records {
            image.record(k, v).unwrap();
        }
        let (mut content, len) = image.finish().unwrap();
        assert_eq!(len as usize, content.len());
        assert_eq!(content.len() % 512, 0);
        let sha = Sha256::digest(&content);
        content.extend_from_slice(&sha);
        std::fs::File::create(path)
            .unwrap()
            .write_all(&content)
            .unwrap();
    }

    #[test]
    fn an_image_round_trips_its_header_and_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        write_file(
            &path,
            &[(b"m/revision", b"\0\0\0\0\0\0\0\x07"), (b"rk", b"v")],
        );
        let image = Image::open(&path).unwrap();
        assert_eq!(image.header.revision, 7);
        assert_eq!(image.header.compact_revision, 3);
        assert_eq!(image.header.storage_version, "3.6.0");
        let records: Vec<_> = image.records().unwrap().map(Result::unwrap).collect();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1], (b"rk".to_vec(), b"v".to_vec()));
    }

    #[test]
    fn a_check_counts_the_records_and_refuses_keys_out_of_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        write_file(&path, &[(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]);
        let image = Image::open(&path).unwrap();
        assert_eq!(image.records().unwrap().check().unwrap(), 3);
        for records in [&[(b"b", b"1"), (b"a", b"2")], &[(b"a", b"1"), (b"a", b"2")]] {
            write_file(&path, records.map(|(k, v)| (&k[..], &v[..])).as_slice());
            let image = Image::open(&path).unwrap();
            assert!(matches!(
                image.records().unwrap().check(),
                Err(SnapshotError::Malformed { .. })
            ));
            let last = image.records().unwrap().last().unwrap();
            assert!(matches!(last, Err(SnapshotError::Malformed { .. })));
        }
    }

    #[test]
    fn flipped_truncated_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        write_file(&path, &[(b"rk", b"value")]);
        let good = std::fs::read(&path).unwrap();

        let mut flipped = good.clone();
        flipped[60] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(matches!(
            Image::open(&path),
            Err(SnapshotError::Checksum { .. })
        ));

        std::fs::write(&path, &good[..good.len() - 1]).unwrap();
        assert!(matches!(
            Image::open(&path),
            Err(SnapshotError::Size { .. })
        ));

        // A cut of whole blocks keeps the size rule but not the checksum.
        write_file(&path, &[(b"rk", &[7u8; 2000])]);
        let big = std::fs::read(&path).unwrap();
        std::fs::write(&path, &big[..big.len() - 512]).unwrap();
        assert!(matches!(
            Image::open(&path),
            Err(SnapshotError::Checksum { .. })
        ));

        let mut bolt = vec![0u8; 4096 + 32];
        bolt[16..20].copy_from_slice(&[0xed, 0xda, 0x0c, 0xed]);
        std::fs::write(&path, &bolt).unwrap();
        assert!(matches!(
            Image::open(&path),
            Err(SnapshotError::Etcd { .. })
        ));

        std::fs::write(&path, b"hello").unwrap();
        assert!(matches!(
            Image::open(&path),
            Err(SnapshotError::NotOxcd { .. })
        ));
    }

    #[test]
    fn a_record_running_past_the_end_is_malformed_even_with_a_valid_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let header = Header {
            revision: 1,
            compact_revision: -1,
            storage_version: "3.6.0".into(),
        };
        let (mut content, _) = ImageWriter::new(Vec::new(), &header)
            .unwrap()
            .finish()
            .unwrap();
        // Turn the end marker into a record claiming a huge key.
        content[44] = 1;
        content[45..49].copy_from_slice(&u32::MAX.to_be_bytes());
        let sha = Sha256::digest(&content);
        content.extend_from_slice(&sha);
        std::fs::write(&path, &content).unwrap();
        let image = Image::open(&path).unwrap();
        let last = image.records().unwrap().last().unwrap();
        assert!(matches!(last, Err(SnapshotError::Malformed { .. })));
    }
}
