//! The correlation-ID index: for each `logs` segment, a sidecar file with the
//! sorted 64-bit hashes of the distinct `correlation_id` values it holds.
//!
//! A trace lookup checks every segment's hashes in memory (a binary search
//! each) and opens only the segments that may hold the id; inside those,
//! Parquet's bloom filter and page index narrow it to row groups and pages.
//! So lookup cost follows the number of segments holding the id, not the
//! amount of data. Eight bytes per distinct id per segment; a hash collision
//! only costs opening one segment more, never a wrong answer, because the
//! query still filters on the id itself.
//!
//! File format: `WEFTIDS1`, a little-endian u64 count, then the sorted u64
//! hashes, then a CRC32C of everything before it.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use weft_ingest::model;

use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"WEFTIDS1";

/// FNV-1a, 64 bit: stable across versions and platforms, which the index
/// on disk needs, and fast on short ids.
pub fn hash_id(id: &str) -> u64 {
    fnv1a(id.as_bytes())
}

/// FNV-1a, 64 bit, over bytes.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Sorted, distinct id hashes of one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdSet {
    hashes: Vec<u64>,
}

impl IdSet {
    /// The distinct `correlation_id` hashes of a `logs` batch.
    pub fn of_batch(batch: &RecordBatch) -> Self {
        let mut hashes = Vec::new();
        if let Some(col) = batch.column_by_name(model::CORRELATION_ID) {
            let ids = col.as_string::<i32>();
            hashes.reserve(ids.len() - ids.null_count());
            for id in ids.iter().flatten() {
                hashes.push(hash_id(id));
            }
        }
        hashes.sort_unstable();
        hashes.dedup();
        Self { hashes }
    }

    pub fn may_contain(&self, id: &str) -> bool {
        self.hashes.binary_search(&hash_id(id)).is_ok()
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(20 + self.hashes.len() * 8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.hashes.len() as u64).to_le_bytes());
        for h in &self.hashes {
            out.extend_from_slice(&h.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let body = bytes.get(..bytes.len().checked_sub(4)?)?;
        let crc = u32::from_le_bytes(bytes[body.len()..].try_into().ok()?);
        if crc32c::crc32c(body) != crc || body.get(..8)? != MAGIC {
            return None;
        }
        let n = u64::from_le_bytes(body.get(8..16)?.try_into().ok()?) as usize;
        let rest = &body[16..];
        if rest.len() != n.checked_mul(8)? {
            return None;
        }
        let hashes: Vec<u64> = rest
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        hashes.is_sorted().then_some(Self { hashes })
    }

    /// Writes the index durably (temp file, fsync, rename; the caller fsyncs
    /// the directory when it publishes the segment).
    pub fn write(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("ids.tmp");
        let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&self.encode())
            .map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }

    /// Reads an index file; a damaged one is an error naming the file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::decode(&bytes).ok_or_else(|| Error::Corrupt {
            path: path.to_owned(),
            reason: "id index fails its checksum or format check".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(hash_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash_id("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn round_trip_and_damage_detection() {
        let set = IdSet {
            hashes: vec![1, 5, 9],
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.ids");
        set.write(&p).unwrap();
        assert_eq!(IdSet::read(&p).unwrap(), set);
        let mut bytes = fs::read(&p).unwrap();
        bytes[17] ^= 1;
        fs::write(&p, &bytes).unwrap();
        assert!(matches!(IdSet::read(&p), Err(Error::Corrupt { .. })));
    }
}
