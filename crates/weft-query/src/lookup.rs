//! The trace lookup's own reader: the rows of `logs` with one correlation
//! id, read straight from the segments the id index names.
//!
//! DataFusion answers `correlation_id = '…'` well, but a lookup pays for
//! the general path: planning, and a column reader per column and file
//! (about 120 columns in a mixed corpus), when most of those columns are
//! null for any one request. This reader takes the segments and row runs
//! from the id index, and from each segment reads only the columns whose
//! page index says a page under the selected rows holds a value. The rows
//! come back filtered on the id (the index names runs that *may* hold it)
//! and conformed to the table schema, with the write buffer's rows for the
//! id added, so the answer is the one the SQL gives.
//!
//! It only runs when every segment that may hold the id has an index with
//! rows; otherwise [`Engine::trace`](crate::Engine::trace) uses the SQL.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchReader, Scalar, StringArray};
use arrow::compute::kernels::cmp::eq;
use arrow::compute::{cast, concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
};
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use weft_ingest::model;
use weft_storage::{SegmentMeta, Snapshot, Table, buffer};

use crate::table::{IdIndexCache, selection, table_schema};
use crate::{Error, Result};

/// Parquet footers with their page indexes, by segment id, kept under a
/// byte budget. Segments never change once published, so an entry never
/// goes stale; past the budget the cache starts over.
#[derive(Debug)]
pub struct FooterCache {
    limit: usize,
    inner: Mutex<(usize, HashMap<u64, ArrowReaderMetadata>)>,
}

impl FooterCache {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            inner: Mutex::default(),
        }
    }

    fn get(&self, path: &Path, segment: u64) -> Result<ArrowReaderMetadata> {
        {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = inner.1.get(&segment) {
                return Ok(m.clone());
            }
        }
        let file = File::open(path).map_err(|e| read_error(path, e))?;
        let m = ArrowReaderMetadata::load(
            &file,
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
        )
        .map_err(|e| read_error(path, e))?;
        let size = m.metadata().memory_size();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.0 + size > self.limit {
            inner.1.clear();
            inner.0 = 0;
        }
        if size <= self.limit {
            inner.0 += size;
            inner.1.insert(segment, m.clone());
        }
        Ok(m)
    }
}

fn read_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("reading {}: {e}", path.display()))
}

/// What a lookup read.
#[derive(Debug)]
pub struct Found {
    /// The id's rows, in the table schema.
    pub batches: Vec<RecordBatch>,
    /// Bytes of the Parquet pages read.
    pub bytes_scanned: u64,
}

/// A lookup's plan, made under the snapshot: which rows of which segments,
/// and the buffered rows.
#[derive(Debug)]
pub struct Lookup {
    id: String,
    root: std::path::PathBuf,
    schema: SchemaRef,
    segments: Vec<(SegmentMeta, RowSelection)>,
    buffered: Vec<RecordBatch>,
}

impl Lookup {
    /// Plans the lookup of `id`, or `None` when a segment that may hold it
    /// has no index naming rows (the SQL path reads such segments whole).
    pub fn plan(
        root: &Path,
        snapshot: &Snapshot,
        ids: &IdIndexCache,
        id: &str,
    ) -> Result<Option<Self>> {
        let mut segments = Vec::new();
        for segment in snapshot.manifest.segments(Table::Logs) {
            let Some(index) = ids.get(root, segment) else {
                return Ok(None);
            };
            if !index.may_contain(id) {
                continue;
            }
            let Some(runs) = index.runs(id) else {
                return Ok(None);
            };
            let Some(rows) = selection(runs.to_vec(), segment.rows) else {
                return Ok(None);
            };
            segments.push((segment.clone(), rows));
        }
        let schema =
            table_schema(snapshot, Table::Logs).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Some(Self {
            id: id.to_owned(),
            root: root.to_owned(),
            schema,
            segments,
            buffered: snapshot.batches(Table::Logs).cloned().collect(),
        }))
    }

    /// Reads the rows (blocking file reads: run it off the async runtime).
    /// Stops with [`Error::Timeout`] past `deadline`, and with
    /// [`Error::MemoryLimit`] once the rows read hold more than
    /// `memory_limit` bytes.
    pub fn read(
        self,
        footers: &FooterCache,
        deadline: Instant,
        timeout: std::time::Duration,
        memory_limit: usize,
    ) -> Result<Found> {
        let mut found = Found {
            batches: Vec::new(),
            bytes_scanned: 0,
        };
        let mut held = 0usize;
        let mut keep = |found: &mut Found, batch: RecordBatch| -> Result<()> {
            let batch = self.matching(&batch)?;
            if batch.num_rows() == 0 {
                return Ok(());
            }
            let batch = buffer::conform(&batch, &self.schema)
                .map_err(|e| Error::Internal(e.to_string()))?;
            held += batch.get_array_memory_size();
            if held > memory_limit {
                return Err(Error::MemoryLimit {
                    limit: memory_limit,
                    detail: format!("the rows of correlation id {:?}", self.id),
                });
            }
            found.batches.push(batch);
            Ok(())
        };
        for (segment, rows) in &self.segments {
            if Instant::now() > deadline {
                return Err(Error::Timeout(timeout));
            }
            let path = self.root.join(&segment.path);
            let meta = footers.get(&path, segment.id)?;
            let (leaves, bytes) = columns_with_values(meta.metadata(), rows);
            found.bytes_scanned += bytes;
            keep(&mut found, read_rows(&path, &meta, &leaves, rows)?)?;
        }
        for batch in &self.buffered {
            keep(&mut found, batch.clone())?;
        }
        Ok(found)
    }

    /// The rows of `batch` whose correlation id is this lookup's.
    fn matching(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        let Some(ids) = batch.column_by_name(model::CORRELATION_ID) else {
            return Ok(batch.slice(0, 0));
        };
        let ids: ArrayRef = match ids.data_type() {
            DataType::Utf8 => Arc::clone(ids),
            _ => cast(ids, &DataType::Utf8).map_err(|e| Error::Internal(e.to_string()))?,
        };
        let wanted = Scalar::new(StringArray::from(vec![self.id.as_str()]));
        let keep = eq(&ids, &wanted).map_err(|e| Error::Internal(e.to_string()))?;
        if keep.true_count() == batch.num_rows() && keep.null_count() == 0 {
            return Ok(batch.clone());
        }
        filter_record_batch(batch, &keep).map_err(|e| Error::Internal(e.to_string()))
    }
}

/// Columns read on each core at least, before a segment's read is split.
const SPLIT_MIN_COLUMNS: usize = 8;

/// The `rows` of the file at `path`, columns `leaves` only, as one batch.
/// With enough columns, the two halves of the columns are read and
/// decompressed on two threads and joined side by side.
fn read_rows(
    path: &Path,
    meta: &ArrowReaderMetadata,
    leaves: &[usize],
    rows: &RowSelection,
) -> Result<RecordBatch> {
    let read = |leaves: &[usize]| -> Result<RecordBatch> {
        let file = File::open(path).map_err(|e| read_error(path, e))?;
        let schema = meta.metadata().file_metadata().schema_descr();
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone())
            .with_projection(ProjectionMask::leaves(schema, leaves.iter().copied()))
            .with_row_selection(rows.clone())
            .build()
            .map_err(|e| read_error(path, e))?;
        let out_schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| read_error(path, e))?;
        concat_batches(&out_schema, &batches).map_err(|e| read_error(path, e))
    };
    if leaves.len() < 2 * SPLIT_MIN_COLUMNS {
        return read(leaves);
    }
    let (a, b) = leaves.split_at(leaves.len() / 2);
    let (a, b) = std::thread::scope(|s| {
        let b = s.spawn(|| read(b));
        (read(a), b.join())
    });
    let (a, b) = (
        a?,
        b.map_err(|_| Error::Internal("a segment reader panicked".into()))??,
    );
    if a.num_rows() != b.num_rows() {
        return Err(read_error(
            path,
            format!(
                "column halves disagree: {} and {} rows",
                a.num_rows(),
                b.num_rows()
            ),
        ));
    }
    let (mut fields, mut columns) = (a.schema().fields().to_vec(), a.columns().to_vec());
    fields.extend(b.schema().fields().iter().cloned());
    columns.extend(b.columns().iter().cloned());
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), columns)
        .map_err(|e| read_error(path, e))
}

/// The columns (leaf indexes) of a file that hold a value in the rows of
/// `rows`, and the bytes of their pages under those rows. A column is left out only when
/// the page index says every page under the selected rows is all nulls;
/// without a page index every column is read.
fn columns_with_values(meta: &ParquetMetaData, rows: &RowSelection) -> (Vec<usize>, u64) {
    let schema = meta.file_metadata().schema_descr();
    let (Some(columns), Some(offsets)) = (meta.column_index(), meta.offset_index()) else {
        return ((0..schema.num_columns()).collect(), 0);
    };
    // Selected row ranges, in file row numbers.
    let mut ranges = Vec::new();
    let mut at = 0usize;
    for s in rows.iter() {
        if !s.skip {
            ranges.push(at..at + s.row_count);
        }
        at += s.row_count;
    }
    let mut wanted = vec![false; schema.num_columns()];
    let mut bytes = 0u64;
    let mut group_start = 0usize;
    for (g, group) in meta.row_groups().iter().enumerate() {
        let group_rows = group.num_rows() as usize;
        let group_end = group_start + group_rows;
        let in_group: Vec<_> = ranges
            .iter()
            .filter(|r| r.start < group_end && r.end > group_start)
            .map(|r| r.start.max(group_start) - group_start..r.end.min(group_end) - group_start)
            .collect();
        if !in_group.is_empty() {
            for (c, want) in wanted.iter_mut().enumerate() {
                let (Some(index), Some(offset)) = (
                    columns.get(g).and_then(|g| g.get(c)),
                    offsets.get(g).and_then(|g| g.get(c)),
                ) else {
                    *want = true;
                    continue;
                };
                let pages = offset.page_locations();
                if pages.is_empty() {
                    // No page locations: nothing to judge by, so read it.
                    *want = true;
                    continue;
                }
                for (p, page) in pages.iter().enumerate() {
                    let first = page.first_row_index as usize;
                    let end = pages
                        .get(p + 1)
                        .map_or(group_rows, |n| n.first_row_index as usize);
                    if !in_group.iter().any(|r| r.start < end && r.end > first) {
                        continue;
                    }
                    let all_null = index
                        .null_count(p)
                        .is_some_and(|n| n as usize == end - first);
                    if !all_null {
                        *want = true;
                        bytes += page.compressed_page_size as u64;
                    }
                }
            }
        }
        group_start = group_end;
    }
    // The core columns are always read, null or not.
    for (c, col) in schema.columns().iter().enumerate() {
        if model::is_reserved(&col.path().parts()[0]) {
            wanted[c] = true;
        }
    }
    let leaves = wanted
        .iter()
        .enumerate()
        .filter(|(_, w)| **w)
        .map(|(c, _)| c)
        .collect();
    (leaves, bytes)
}
