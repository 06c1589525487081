//! The manifest: the one list of published segments. A segment file that is
//! not in the manifest does not exist as far as readers are concerned.
//!
//! Updated by writing `manifest.json.tmp`, fsync, rename over
//! `manifest.json`, fsync the directory, so a reader (or a restart after a
//! crash) sees either the old list or the new one, never a mix.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use arrow::datatypes::{DataType, Schema};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, fsync_dir};

pub const MANIFEST_FILE: &str = "manifest.json";
const FORMAT: u32 = 1;

/// Which table a segment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    Logs,
    Rejects,
}

impl Table {
    pub fn dir(self) -> &'static str {
        match self {
            Table::Logs => "segments",
            Table::Rejects => "rejects",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Logs => "logs",
            Table::Rejects => "rejects",
        }
    }
}

/// Column types as the manifest records them: the few weft writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    Bool,
    Int64,
    Uint64,
    Float64,
    Utf8,
    /// Utf8, dictionary-encoded in Arrow.
    DictUtf8,
    Binary,
    /// Timestamp(ns, UTC).
    Timestamp,
}

impl ColumnType {
    pub fn from_arrow(t: &DataType) -> Option<Self> {
        Some(match t {
            DataType::Boolean => ColumnType::Bool,
            DataType::Int64 => ColumnType::Int64,
            DataType::UInt64 => ColumnType::Uint64,
            DataType::Float64 => ColumnType::Float64,
            DataType::Utf8 => ColumnType::Utf8,
            DataType::Dictionary(_, v) if **v == DataType::Utf8 => ColumnType::DictUtf8,
            DataType::Binary => ColumnType::Binary,
            DataType::Timestamp(arrow::datatypes::TimeUnit::Nanosecond, _) => ColumnType::Timestamp,
            _ => return None,
        })
    }

    pub fn to_arrow(self) -> DataType {
        match self {
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Uint64 => DataType::UInt64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Utf8 => DataType::Utf8,
            ColumnType::DictUtf8 => weft_ingest::model::dictionary_utf8(),
            ColumnType::Binary => DataType::Binary,
            ColumnType::Timestamp => weft_ingest::model::timestamp_type(),
        }
    }

    /// The type both `self` and `other` values fit in: int → float → utf8.
    pub fn widen(self, other: ColumnType) -> ColumnType {
        use ColumnType::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Int64 | Uint64 | Float64, Int64 | Uint64 | Float64) => Float64,
            (Utf8 | DictUtf8, Utf8 | DictUtf8) => Utf8,
            _ => Utf8,
        }
    }
}

/// One published segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentMeta {
    pub id: u64,
    pub table: Table,
    /// Relative to the data directory, `/`-separated.
    pub path: String,
    /// The segment's correlation-id index (see [`crate::idindex`]), `logs` only.
    #[serde(default)]
    pub id_index: Option<String>,
    /// Smallest and largest `timestamp` (ns since epoch, UTC); for rejects,
    /// `observed_at`.
    pub min_ts: i64,
    pub max_ts: i64,
    pub rows: u64,
    pub bytes: u64,
    /// Bytes of input the segment's rows came from.
    pub input_bytes: u64,
    pub columns: Vec<(String, ColumnType)>,
    pub row_groups: usize,
    /// When it was published (ns since epoch).
    pub created_at: i64,
}

impl SegmentMeta {
    pub fn overlaps(&self, from: Option<i64>, to: Option<i64>) -> bool {
        from.is_none_or(|f| self.max_ts >= f) && to.is_none_or(|t| self.min_ts <= t)
    }
}

/// The list of segments and the next segment id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub next_id: u64,
    pub segments: Vec<SegmentMeta>,
    /// The daemon's WAL records up to this sequence number are in segments:
    /// replay starts after it. Published in the same update as the segments
    /// that hold them, so a crash can neither lose nor repeat them.
    #[serde(default)]
    pub wal_checkpoint: u64,
}

impl Default for Manifest {
    fn default() -> Self {
        Self {
            format: FORMAT,
            next_id: 1,
            segments: Vec::new(),
            wal_checkpoint: 0,
        }
    }
}

impl Manifest {
    /// Reads the manifest in `dir`; a missing file is an empty manifest.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if m.format != FORMAT {
            return Err(Error::Manifest {
                path,
                reason: format!("format {} is not the supported {FORMAT}", m.format),
            });
        }
        Ok(m)
    }

    /// Writes the manifest atomically: temp file, fsync, rename, fsync dir.
    pub fn store(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join(format!("{MANIFEST_FILE}.tmp"));
        let fin = dir.join(MANIFEST_FILE);
        let bytes = serde_json::to_vec_pretty(self).expect("manifest serializes");
        let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, &fin).map_err(|e| Error::io(&fin, e))?;
        fsync_dir(dir)
    }

    pub fn segments(&self, table: Table) -> impl Iterator<Item = &SegmentMeta> {
        self.segments.iter().filter(move |s| s.table == table)
    }

    /// The table's columns across all its segments, widened where segments
    /// disagree, in first-seen order.
    pub fn table_columns(&self, table: Table) -> Vec<(String, ColumnType)> {
        let mut out: Vec<(String, ColumnType)> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for seg in self.segments(table) {
            for (name, ty) in &seg.columns {
                match index.get(name) {
                    Some(&i) => {
                        let cur: &mut (String, ColumnType) = &mut out[i];
                        cur.1 = cur.1.widen(*ty);
                    }
                    None => {
                        index.insert(name.clone(), out.len());
                        out.push((name.clone(), *ty));
                    }
                }
            }
        }
        out
    }

    /// Column list of a batch schema, for a new segment's entry.
    pub fn columns_of(schema: &Schema) -> Result<Vec<(String, ColumnType)>> {
        schema
            .fields()
            .iter()
            .map(|f| {
                ColumnType::from_arrow(f.data_type())
                    .map(|t| (f.name().clone(), t))
                    .ok_or_else(|| Error::UnsupportedType {
                        column: f.name().clone(),
                        data_type: f.data_type().to_string(),
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: u64, cols: &[(&str, ColumnType)]) -> SegmentMeta {
        SegmentMeta {
            id,
            table: Table::Logs,
            path: format!("segments/{id}.parquet"),
            id_index: None,
            min_ts: 0,
            max_ts: 10,
            rows: 1,
            bytes: 1,
            input_bytes: 1,
            columns: cols.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
            row_groups: 1,
            created_at: 0,
        }
    }

    #[test]
    fn table_columns_widen_across_segments() {
        use ColumnType::*;
        let m = Manifest {
            format: FORMAT,
            next_id: 3,
            segments: vec![
                seg(1, &[("a", Int64), ("b", Bool), ("c", Int64)]),
                seg(2, &[("a", Float64), ("b", Int64), ("d", Utf8)]),
            ],
            wal_checkpoint: 0,
        };
        assert_eq!(
            m.table_columns(Table::Logs),
            vec![
                ("a".into(), Float64),
                ("b".into(), Utf8),
                ("c".into(), Int64),
                ("d".into(), Utf8)
            ]
        );
    }

    #[test]
    fn store_and_load_round_trip_atomically() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), Manifest::default());
        let m = Manifest {
            format: FORMAT,
            next_id: 2,
            segments: vec![seg(1, &[("a", ColumnType::Int64)])],
            wal_checkpoint: 9,
        };
        m.store(dir.path()).unwrap();
        assert!(!dir.path().join("manifest.json.tmp").exists());
        assert_eq!(Manifest::load(dir.path()).unwrap(), m);
    }

    #[test]
    fn corrupt_manifest_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(MANIFEST_FILE), b"{not json").unwrap();
        let e = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("manifest.json"), "{e}");
    }
}
