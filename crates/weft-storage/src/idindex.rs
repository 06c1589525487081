//! The correlation-ID index: for each `logs` segment, a sidecar file that
//! maps the 64-bit hash of every `correlation_id` it holds to the rows that
//! hold it.
//!
//! A trace lookup checks every segment's hashes in memory (a binary search
//! each), opens only the segments that may hold the id, and reads only the
//! rows the index names: the scan gets them as a row selection, so Parquet
//! decodes just the pages that hold them. Lookup cost therefore follows the
//! size of the request, not the amount of data. Segments are sorted by
//! service, then id, so an id's rows are one run per service.
//!
//! A hash collision only costs reading some rows more, never a wrong
//! answer: the query still filters on the id itself.
//!
//! File format (`WEFTIDS2`), little-endian: the magic, the count of distinct
//! hashes `n`, the count of runs `m`, the `n` sorted hashes, `n + 1` offsets
//! into the runs (hash `i` owns runs `offsets[i]..offsets[i + 1]`), the `m`
//! runs as (first row, rows) `u32` pairs, then a CRC32C of everything before
//! it. Files from before row runs (`WEFTIDS1`: the hashes only) are still
//! read; their segments are scanned whole once they may hold the id.

use std::fs::{self, File};
use std::io::Write;
use std::ops::Range;
use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use weft_ingest::model;

use crate::{Error, Result};

const MAGIC_V1: &[u8; 8] = b"WEFTIDS1";
const MAGIC: &[u8; 8] = b"WEFTIDS2";

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

/// Rows `first .. first + len` of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Run {
    pub first: u32,
    pub len: u32,
}

impl Run {
    pub fn rows(&self) -> Range<usize> {
        self.first as usize..self.first as usize + self.len as usize
    }
}

/// One segment's id index: sorted distinct id hashes and, for each, the
/// runs of rows that hold it (absent in indexes written before runs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdIndex {
    hashes: Vec<u64>,
    /// `hashes.len() + 1` offsets into `runs`; empty when runs are unknown.
    offsets: Vec<u32>,
    runs: Vec<Run>,
}

impl IdIndex {
    /// The index of a `logs` batch, rows as they will be written.
    pub fn of_batch(batch: &RecordBatch) -> Self {
        match batch.column_by_name(model::CORRELATION_ID) {
            Some(col) => Self::of_ids(col.as_string::<i32>().iter()),
            None => Self::with_runs(Vec::new()),
        }
    }

    /// The index of a segment whose rows have these ids, in file order.
    pub fn of_ids<'a>(ids: impl ExactSizeIterator<Item = Option<&'a str>>) -> Self {
        if ids.len() > u32::MAX as usize {
            // Rows past u32 cannot be named: keep the hashes, scan the segment.
            let mut hashes: Vec<u64> = ids.flatten().map(hash_id).collect();
            hashes.sort_unstable();
            hashes.dedup();
            return Self {
                hashes,
                offsets: Vec::new(),
                runs: Vec::new(),
            };
        }
        // (hash, run) for each maximal run of equal ids.
        let mut found: Vec<(u64, Run)> = Vec::new();
        let mut prev: Option<&str> = None;
        for (row, id) in ids.enumerate() {
            match id {
                Some(id) if prev == Some(id) => found.last_mut().expect("run open").1.len += 1,
                Some(id) => found.push((
                    hash_id(id),
                    Run {
                        first: row as u32,
                        len: 1,
                    },
                )),
                None => {}
            }
            prev = id;
        }
        Self::with_runs(found)
    }

    fn with_runs(mut found: Vec<(u64, Run)>) -> Self {
        found.sort_unstable();
        let mut hashes = Vec::new();
        let mut offsets = vec![0u32];
        let mut runs = Vec::with_capacity(found.len());
        for (h, run) in found {
            if hashes.last() != Some(&h) {
                if !hashes.is_empty() {
                    offsets.push(runs.len() as u32);
                }
                hashes.push(h);
            }
            runs.push(run);
        }
        if !hashes.is_empty() {
            offsets.push(runs.len() as u32);
        }
        Self {
            hashes,
            offsets,
            runs,
        }
    }

    pub fn may_contain(&self, id: &str) -> bool {
        self.hashes.binary_search(&hash_id(id)).is_ok()
    }

    /// The runs of rows that may hold `id` (empty when it is not here), or
    /// `None` when this index does not know rows (a `WEFTIDS1` file).
    pub fn runs(&self, id: &str) -> Option<&[Run]> {
        if self.offsets.is_empty() && !self.hashes.is_empty() {
            return None;
        }
        Some(match self.hashes.binary_search(&hash_id(id)) {
            Ok(i) => &self.runs[self.offsets[i] as usize..self.offsets[i + 1] as usize],
            Err(_) => &[],
        })
    }

    /// Distinct id hashes.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    fn encode(&self) -> Vec<u8> {
        let rows_known = !self.offsets.is_empty() || self.hashes.is_empty();
        let mut out = Vec::with_capacity(28 + self.hashes.len() * 12 + self.runs.len() * 8 + 4);
        out.extend_from_slice(if rows_known { MAGIC } else { MAGIC_V1 });
        out.extend_from_slice(&(self.hashes.len() as u64).to_le_bytes());
        if rows_known {
            out.extend_from_slice(&(self.runs.len() as u64).to_le_bytes());
        }
        for h in &self.hashes {
            out.extend_from_slice(&h.to_le_bytes());
        }
        if rows_known {
            let offsets: &[u32] = if self.hashes.is_empty() {
                &[0]
            } else {
                &self.offsets
            };
            for o in offsets {
                out.extend_from_slice(&o.to_le_bytes());
            }
        }
        for r in &self.runs {
            out.extend_from_slice(&r.first.to_le_bytes());
            out.extend_from_slice(&r.len.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let body = bytes.get(..bytes.len().checked_sub(4)?)?;
        let crc = u32::from_le_bytes(bytes[body.len()..].try_into().ok()?);
        if crc32c::crc32c(body) != crc {
            return None;
        }
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(body.get(at..at + 8)?.try_into().ok()?))
        };
        let u32s = |bytes: &[u8]| -> Vec<u32> {
            bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect()
        };
        let magic = body.get(..8)?;
        let n = usize::try_from(u64_at(8)?).ok()?;
        let (m, rest) = if magic == MAGIC_V1 {
            (0, &body[16..])
        } else if magic == MAGIC {
            (usize::try_from(u64_at(16)?).ok()?, body.get(24..)?)
        } else {
            return None;
        };
        let hash_bytes = n.checked_mul(8)?;
        let hashes: Vec<u64> = rest
            .get(..hash_bytes)?
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        if !hashes.is_sorted() || hashes.windows(2).any(|w| w[0] == w[1]) {
            return None;
        }
        let rest = &rest[hash_bytes..];
        if magic == MAGIC_V1 {
            return rest.is_empty().then_some(Self {
                hashes,
                offsets: Vec::new(),
                runs: Vec::new(),
            });
        }
        let offset_bytes = n.checked_add(1)?.checked_mul(4)?;
        if rest.len() != offset_bytes.checked_add(m.checked_mul(8)?)? {
            return None;
        }
        let offsets = u32s(&rest[..offset_bytes]);
        let pairs = u32s(&rest[offset_bytes..]);
        let runs: Vec<Run> = pairs
            .chunks_exact(2)
            .map(|p| Run {
                first: p[0],
                len: p[1],
            })
            .collect();
        // Offsets must start at 0, never fall, and end at the run count.
        let sound = offsets.first() == Some(&0)
            && offsets.last().map(|&o| o as usize) == Some(runs.len())
            && offsets.windows(2).all(|w| w[0] <= w[1]);
        if !sound {
            return None;
        }
        let offsets = if hashes.is_empty() {
            Vec::new()
        } else {
            offsets
        };
        Some(Self {
            hashes,
            offsets,
            runs,
        })
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

    /// Decodes an index file's bytes; `None` when they are damaged.
    pub fn read_bytes(bytes: &[u8]) -> Option<Self> {
        Self::decode(bytes)
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
    use std::sync::Arc;

    use arrow::array::StringArray;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(ids: &[Option<&str>]) -> RecordBatch {
        let schema = Schema::new(vec![Field::new(
            model::CORRELATION_ID,
            DataType::Utf8,
            true,
        )]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(StringArray::from(ids.to_vec()))],
        )
        .unwrap()
    }

    fn run(first: u32, len: u32) -> Run {
        Run { first, len }
    }

    #[test]
    fn fnv1a_known_values() {
        assert_eq!(hash_id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash_id("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn runs_name_every_row_of_each_id() {
        // Sorted by service, then id: an id comes back once per service.
        let b = batch(&[
            Some("a"),
            Some("a"),
            Some("b"),
            None,
            Some("a"),
            Some("c"),
            Some("c"),
            None,
        ]);
        let ix = IdIndex::of_batch(&b);
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.runs("a"), Some(&[run(0, 2), run(4, 1)][..]));
        assert_eq!(ix.runs("b"), Some(&[run(2, 1)][..]));
        assert_eq!(ix.runs("c"), Some(&[run(5, 2)][..]));
        assert_eq!(ix.runs("zzz"), Some(&[][..]));
        assert!(!ix.may_contain("zzz"));
        assert!(IdIndex::of_batch(&batch(&[None, None])).is_empty());
    }

    #[test]
    fn round_trip_and_damage_detection() {
        let ix = IdIndex::of_batch(&batch(&[Some("x"), Some("y"), Some("y"), Some("x")]));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.ids");
        ix.write(&p).unwrap();
        let back = IdIndex::read(&p).unwrap();
        assert_eq!(back, ix);
        assert_eq!(back.runs("y"), Some(&[run(1, 2)][..]));
        let bytes = fs::read(&p).unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(
                IdIndex::read_bytes(&bad).is_none(),
                "flipped byte {i} went unnoticed"
            );
        }
        // Cut short anywhere: refused, no panic.
        for n in 0..bytes.len() {
            assert!(IdIndex::read_bytes(&bytes[..n]).is_none());
        }
        fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(IdIndex::read(&p), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn offsets_that_point_outside_the_runs_are_refused() {
        let ix = IdIndex {
            hashes: vec![1, 2],
            offsets: vec![0, 3, 1],
            runs: vec![run(0, 1)],
        };
        assert!(IdIndex::read_bytes(&ix.encode()).is_none());
    }

    #[test]
    fn hashes_only_files_are_read_and_scan_whole() {
        // A WEFTIDS1 file: magic, count, hashes, CRC.
        let mut v1 = Vec::new();
        v1.extend_from_slice(MAGIC_V1);
        v1.extend_from_slice(&1u64.to_le_bytes());
        v1.extend_from_slice(&hash_id("req-1").to_le_bytes());
        let crc = crc32c::crc32c(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        let ix = IdIndex::read_bytes(&v1).unwrap();
        assert!(ix.may_contain("req-1"));
        assert!(!ix.may_contain("req-2"));
        assert_eq!(ix.runs("req-1"), None, "rows unknown: scan the segment");
        // And it encodes back to the same bytes.
        assert_eq!(ix.encode(), v1);
    }
}
