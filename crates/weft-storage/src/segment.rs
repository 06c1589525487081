//! Writing segments: split by hour, sort, encode as Parquet, publish
//! atomically.
//!
//! The rows to write are [`Rows`]: one or more batches (the write buffer's,
//! or one import batch) under their merged schema. Splitting and sorting
//! order row addresses, not rows; each row group's columns are gathered
//! from the batches only as it is written. A flush therefore needs memory
//! for the sort keys and one row group on top of the buffer, not for a
//! concatenated copy of the buffer and a sorted copy of that.
//!
//! Sort order for `logs`: `service`, then `correlation_id` (nulls last), then
//! `timestamp`. Grouping by service keeps each service's fields and message
//! styles together, which is what zstd and the dictionaries feed on; within a
//! service, one request's lines are adjacent, so the page index on
//! `correlation_id` narrows a trace lookup to a page or two per row group,
//! after the bloom filter has skipped the row groups that do not hold the id.

use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array, new_null_array};
use arrow::compute::{SortColumn, SortOptions, concat, interleave, lexsort_to_indices, take};
use arrow::datatypes::{DataType, Int32Type, Schema, SchemaRef, TimestampNanosecondType};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{BloomFilterPosition, EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use weft_ingest::model;

use crate::idindex::IdIndex;
use crate::{Error, Result, fsync_dir};

/// How segments are encoded.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentOptions {
    /// zstd level (1–22).
    pub zstd_level: i32,
    /// Rows per row group: the unit the bloom filter and statistics skip.
    pub row_group_rows: usize,
    /// Bloom filter false-positive rate for `correlation_id`.
    pub bloom_fpp: f64,
    /// Most rows in one data page. A point lookup (a trace) decompresses
    /// every page that holds one of its rows, so pages are kept small.
    pub page_rows: usize,
    /// Most bytes (before compression) in one data page.
    pub page_bytes: usize,
    /// Most bytes in a column chunk's dictionary page, which a lookup reads
    /// whole; past it the column falls back to plain encoding.
    pub dictionary_page_bytes: usize,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self {
            zstd_level: 3,
            row_group_rows: 128 * 1024,
            bloom_fpp: 0.01,
            page_rows: 4096,
            page_bytes: 128 * 1024,
            dictionary_page_bytes: 64 * 1024,
        }
    }
}

const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// Rows gathered per write to the Parquet writer, which encodes them into
/// the open row group: the gathered copy is this many rows, whatever the
/// row group size.
const GATHER_ROWS: usize = 16 * 1024;

/// A row of [`Rows`]: (batch, row within that batch).
pub type RowAddr = (u32, u32);

/// The rows of one or more batches of a table under their merged schema,
/// addressed in place (see the module docs).
#[derive(Debug)]
pub struct Rows {
    schema: SchemaRef,
    columns: Vec<Sources>,
    batch_rows: Vec<usize>,
    /// Memory these rows hold beyond the batches' own: merged dictionaries,
    /// casts, one-row nulls, and what [`Rows::tracked`] adds.
    owned: usize,
    /// Where the memory a write holds is reported (see [`Rows::tracked`]).
    gauge: Arc<AtomicUsize>,
    /// The highest resident memory of the process seen while writing, when
    /// watched (see [`Rows::watch_resident`]).
    resident_peak: Option<Arc<AtomicUsize>>,
}

/// Where one column's values come from.
#[derive(Debug)]
struct Sources {
    /// The batches' columns, cast to the schema's type, and, when some
    /// batch lacks the column, a one-row null its rows point at.
    arrays: Vec<ArrayRef>,
    /// For each batch, its array in `arrays`.
    of_batch: Vec<usize>,
    /// The one-row null in `arrays`, if there is one.
    null: Option<usize>,
    /// For a column concatenated across batches (one array), where each
    /// batch's rows start in it.
    starts: Option<Vec<usize>>,
    /// Whether any batch holds a value (an all-null column is not gathered).
    any_values: bool,
    /// For each array in `arrays`, whether it holds a value.
    valued: Vec<bool>,
}

/// Memory the columns of `batch` hold, an array shared by several columns
/// (a chunk's null columns of one type) counted once.
fn held_by(batch: &RecordBatch) -> usize {
    let mut seen: Vec<*const ()> = Vec::with_capacity(batch.num_columns());
    batch
        .columns()
        .iter()
        .filter(|c| {
            let at = Arc::as_ptr(c) as *const ();
            let first = !seen.contains(&at);
            seen.push(at);
            first
        })
        .map(|c| c.get_array_memory_size())
        .sum()
}

/// What the columns of one gathered chunk share.
struct Chunk<'a> {
    rows: &'a [RowAddr],
    /// The batches the rows come from.
    touched: Vec<u32>,
    /// All-null arrays of `rows.len()`, one per type met so far.
    nulls: Vec<ArrayRef>,
    /// `rows` as (array, row) for columns whose arrays are the batches'.
    direct: Option<Vec<(usize, usize)>>,
}

impl<'a> Chunk<'a> {
    fn new(rows: &'a [RowAddr], batches: usize) -> Self {
        let mut seen = vec![false; batches];
        let mut touched = Vec::new();
        for &(b, _) in rows {
            if !std::mem::replace(&mut seen[b as usize], true) {
                touched.push(b);
            }
        }
        Self {
            rows,
            touched,
            nulls: Vec::new(),
            direct: None,
        }
    }
}

/// The rows of one hour of [`Rows`].
#[derive(Debug)]
pub struct HourRows {
    /// Start of the hour, ns since the epoch (UTC).
    pub start: i64,
    pub rows: Vec<RowAddr>,
    /// Smallest and largest time of its rows.
    pub min_ts: i64,
    pub max_ts: i64,
}

impl Rows {
    /// `batches` under `schema`, which must hold every column they have
    /// (see [`merged_schema`](crate::buffer::merged_schema)); a column whose
    /// type differs is cast to the schema's.
    pub fn new(schema: SchemaRef, batches: &[&RecordBatch]) -> Result<Self> {
        let total: usize = batches.iter().map(|b| b.num_rows()).sum();
        if batches.len() > u32::MAX as usize || total > u32::MAX as usize {
            return Err(Error::TooManyRows);
        }
        let mut columns = Vec::with_capacity(schema.fields().len());
        let mut owned = 0;
        for field in schema.fields() {
            let mut arrays = Vec::with_capacity(batches.len());
            let mut of_batch = Vec::with_capacity(batches.len());
            let mut null = None;
            let mut any_values = false;
            for b in batches {
                let array = match crate::buffer::column_as(b, field)? {
                    Some(c) => {
                        if b.column_by_name(field.name())
                            .is_some_and(|own| !Arc::ptr_eq(own, &c))
                        {
                            owned += c.get_array_memory_size();
                        }
                        c
                    }
                    None => {
                        let at = *null.get_or_insert_with(|| {
                            let one = new_null_array(field.data_type(), 1);
                            owned += one.get_array_memory_size();
                            arrays.push(one);
                            arrays.len() - 1
                        });
                        of_batch.push(at);
                        continue;
                    }
                };
                any_values |= array.null_count() < array.len();
                of_batch.push(arrays.len());
                arrays.push(array);
            }
            if matches!(field.data_type(), DataType::Dictionary(..)) && arrays.len() > 1 {
                // Gathering dictionaries across arrays merges them for
                // every chunk, at a cost of rows × arrays: merge once here
                // (keys are 4 bytes a row, the values are few).
                let parts = batches
                    .iter()
                    .zip(&of_batch)
                    .map(|(b, &at)| match null == Some(at) {
                        true => new_null_array(field.data_type(), b.num_rows()),
                        false => Arc::clone(&arrays[at]),
                    })
                    .collect::<Vec<_>>();
                let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                let mut starts = Vec::with_capacity(batches.len());
                let mut at = 0;
                for b in batches {
                    starts.push(at);
                    at += b.num_rows();
                }
                let merged = concat(&refs)?;
                owned += merged.get_array_memory_size();
                columns.push(Sources {
                    arrays: vec![merged],
                    of_batch: vec![0; batches.len()],
                    null: None,
                    starts: Some(starts),
                    any_values,
                    valued: vec![any_values],
                });
                continue;
            }
            let valued = arrays.iter().map(|a| a.null_count() < a.len()).collect();
            columns.push(Sources {
                arrays,
                of_batch,
                null,
                starts: None,
                any_values,
                valued,
            });
        }
        Ok(Self {
            schema,
            columns,
            batch_rows: batches.iter().map(|b| b.num_rows()).collect(),
            owned,
            gauge: Arc::default(),
            resident_peak: None,
        })
    }

    /// These rows, reporting to `gauge` the memory a write of them holds
    /// beyond the batches: what they own, `extra` bytes the caller holds
    /// for them (row addresses), and, while sorting or writing, the sort
    /// keys or the gathered rows and the encoder's open row group. The
    /// gauge is set, not added to: one write at a time reports to it.
    pub fn tracked(mut self, gauge: Arc<AtomicUsize>, extra: usize) -> Self {
        self.owned += extra;
        self.gauge = gauge;
        self.hold(0);
        self
    }

    /// These rows, raising `peak` to the process's resident memory each
    /// time a write of them reports what it holds: what the kernel counts
    /// includes what the gauge cannot (the encoder's compression contexts,
    /// memory the allocator keeps).
    pub fn watch_resident(mut self, peak: Arc<AtomicUsize>) -> Self {
        self.resident_peak = Some(peak);
        self
    }

    fn hold(&self, working: usize) {
        self.gauge.store(self.owned + working, Ordering::Relaxed);
        if let Some(peak) = &self.resident_peak {
            peak.fetch_max(crate::resident::resident_bytes(), Ordering::Relaxed);
        }
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn num_rows(&self) -> usize {
        self.batch_rows.iter().sum()
    }

    /// The rows of each hour by `time_column` (ns, UTC), earliest hour
    /// first, each in batch order.
    pub fn by_hour(&self, time_column: &str) -> Result<Vec<HourRows>> {
        let missing = || Error::MissingColumn(time_column.to_owned());
        let col = self.schema.index_of(time_column).map_err(|_| missing())?;
        let sources = &self.columns[col];
        let mut hours: Vec<HourRows> = Vec::new();
        for (b, &n) in self.batch_rows.iter().enumerate() {
            let at = sources.of_batch[b];
            if sources.null == Some(at) {
                return Err(missing());
            }
            let ts = sources.arrays[at]
                .as_primitive_opt::<TimestampNanosecondType>()
                .ok_or_else(missing)?;
            let mut last = usize::MAX;
            for r in 0..n {
                let t = ts.value(r);
                let start = t.div_euclid(NANOS_PER_HOUR) * NANOS_PER_HOUR;
                if hours.get(last).is_none_or(|h| h.start != start) {
                    last = match hours.iter().position(|h| h.start == start) {
                        Some(i) => i,
                        None => {
                            hours.push(HourRows {
                                start,
                                rows: Vec::new(),
                                min_ts: t,
                                max_ts: t,
                            });
                            hours.len() - 1
                        }
                    };
                }
                let h = &mut hours[last];
                h.rows.push((b as u32, r as u32));
                h.min_ts = h.min_ts.min(t);
                h.max_ts = h.max_ts.max(t);
            }
        }
        hours.sort_unstable_by_key(|h| h.start);
        Ok(hours)
    }

    /// Column `col` of the chunk's rows, in their order.
    fn gather(&self, col: usize, chunk: &mut Chunk<'_>) -> Result<ArrayRef> {
        let (rows, touched) = (chunk.rows, chunk.touched.as_slice());
        let sources = &self.columns[col];
        let at = |&(b, r): &RowAddr| match &sources.starts {
            Some(starts) => starts[b as usize] + r as usize,
            None => r as usize,
        };
        // Most dynamic columns belong to one service's records, and rows
        // sorted by service leave them null in most chunks: such a column
        // costs a look at the batches the chunk touches (a column held in
        // one array, a look at the validity of its rows), and shares one
        // null array with the chunk's other null columns of its type.
        let any_valid = sources.any_values
            && match sources.arrays.as_slice() {
                [only] => match only.nulls() {
                    Some(nulls) => rows.iter().any(|r| nulls.is_valid(at(r))),
                    None => true,
                },
                _ => touched
                    .iter()
                    .any(|&b| sources.valued[sources.of_batch[b as usize]]),
            };
        if !any_valid {
            let data_type = self.schema.field(col).data_type();
            if let Some(null) = chunk.nulls.iter().find(|a| a.data_type() == data_type) {
                return Ok(Arc::clone(null));
            }
            let null = new_null_array(data_type, rows.len());
            chunk.nulls.push(Arc::clone(&null));
            return Ok(null);
        }
        if let [only] = sources.arrays.as_slice() {
            return slice_or_take(only, rows.iter().map(at));
        }
        // Rows sorted by service mostly come from one batch per chunk (a
        // request's batch holds one service's records): take from its array
        // alone rather than interleave across all of them.
        if let Some(&first) = touched.first() {
            let one = sources.of_batch[first as usize];
            if sources.null != Some(one)
                && touched.iter().all(|&b| sources.of_batch[b as usize] == one)
            {
                return slice_or_take(&sources.arrays[one], rows.iter().map(|&(_, r)| r as usize));
            }
        }
        let arrays: Vec<&dyn Array> = sources.arrays.iter().map(|a| a.as_ref()).collect();
        if sources.null.is_none() {
            // Every batch has its own array here, in batch order: the
            // chunk's addresses serve every such column as they are.
            let idx = chunk.direct.get_or_insert_with(|| {
                rows.iter()
                    .map(|&(b, r)| (b as usize, r as usize))
                    .collect()
            });
            return Ok(interleave(&arrays, idx)?);
        }
        let idx: Vec<(usize, usize)> = rows
            .iter()
            .map(|&(b, r)| {
                let at = sources.of_batch[b as usize];
                (
                    at,
                    if sources.null == Some(at) {
                        0
                    } else {
                        r as usize
                    },
                )
            })
            .collect();
        Ok(interleave(&arrays, &idx)?)
    }

    /// The columns `cols` of `rows` as one batch.
    pub fn project(&self, rows: &[RowAddr], cols: &[usize]) -> Result<RecordBatch> {
        let schema = Arc::new(self.schema.project(cols)?);
        let mut chunk = Chunk::new(rows, self.batch_rows.len());
        let columns = cols
            .iter()
            .map(|&c| self.gather(c, &mut chunk))
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new_with_options(
            schema,
            columns,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len())),
        )?)
    }

    /// Sorts `rows` into segment order (see the module docs); returns the
    /// id index of the rows in that order and how many of them have an id.
    pub fn sort_logs(&self, rows: &mut Vec<RowAddr>) -> Result<(IdIndex, usize)> {
        let cols = [model::SERVICE, model::CORRELATION_ID, model::TIMESTAMP]
            .into_iter()
            .map(|name| {
                self.schema
                    .index_of(name)
                    .map_err(|_| Error::MissingColumn(name.to_owned()))
            })
            .collect::<Result<Vec<_>>>()?;
        let keys = self.project(rows, &cols)?;
        // The keys, the sort's own keys and order, and the reordered rows.
        self.hold(
            held_by(&keys)
                + rows.len() * (std::mem::size_of::<RowKey>() + 4 + std::mem::size_of::<RowAddr>()),
        );
        let order = logs_order(&keys)?;
        if order.iter().enumerate().any(|(i, &r)| i != r as usize) {
            *rows = order.iter().map(|&i| rows[i as usize]).collect();
        }
        let ids = keys.column(1).as_string_opt::<i32>();
        let index = match ids {
            Some(ids) => IdIndex::of_ids(order.iter().map(|&i| {
                let i = i as usize;
                ids.is_valid(i).then(|| ids.value(i))
            })),
            None => IdIndex::default(),
        };
        Ok((index, ids.map_or(0, |c| c.len() - c.null_count())))
    }
}

/// The sort key of one row: compared field by field, with the id's first
/// eight bytes standing in for the id (see [`logs_order`]).
#[derive(Debug, Clone, Copy)]
struct RowKey {
    /// Rank of the service among the batch's service names; nulls last.
    service: u32,
    /// 0 for an id, 1 for none (nulls last).
    id_null: u8,
    /// 0 for a time, 1 for none (nulls last).
    time_null: u8,
    /// The id's first eight bytes, big-endian, zero-padded.
    id_prefix: u64,
    /// The time (0 when null).
    time: i64,
    row: u32,
}

impl RowKey {
    /// The order on everything but the id past its prefix.
    fn by_prefix(&self, other: &Self) -> std::cmp::Ordering {
        self.service
            .cmp(&other.service)
            .then(self.id_null.cmp(&other.id_null))
            .then(self.id_prefix.cmp(&other.id_prefix))
            .then(self.time_null.cmp(&other.time_null))
            .then(self.time.cmp(&other.time))
    }

    /// Whether `other` has the same service and id prefix.
    fn same_prefix(&self, other: &Self) -> bool {
        self.service == other.service
            && self.id_null == other.id_null
            && self.id_prefix == other.id_prefix
    }
}

/// Row order for segments: `service`, `correlation_id`, `timestamp`, each
/// ascending with nulls last. Sorts plain keys (a service rank from the
/// dictionary, an 8-byte id prefix, the time): several times faster than a
/// generic multi-column sort, which compares every pair through the column
/// types. Rows that share a service and id prefix then lie together, in
/// time order; one pass over each such run checks that its ids are equal
/// (rows of one request share their id) and sorts again, by whole id and
/// time, only the runs where they are not.
fn logs_order(batch: &RecordBatch) -> Result<Vec<u32>> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| Error::MissingColumn(name.to_owned()))
    };
    let (service, ids, ts) = (
        col(model::SERVICE)?,
        col(model::CORRELATION_ID)?,
        col(model::TIMESTAMP)?,
    );
    let (Some(service), Some(ids), Some(ts)) = (
        service.as_dictionary_opt::<Int32Type>(),
        ids.as_string_opt::<i32>(),
        ts.as_primitive_opt::<TimestampNanosecondType>(),
    ) else {
        return generic_order(batch);
    };
    let Some(names) = service.values().as_string_opt::<i32>() else {
        return generic_order(batch);
    };
    // Equal names share a rank; a null name ranks last.
    let mut by_name: Vec<usize> = (0..names.len()).collect();
    by_name.sort_unstable_by(|&a, &b| {
        names
            .is_null(a)
            .cmp(&names.is_null(b))
            .then_with(|| names.value(a).cmp(names.value(b)))
    });
    let mut rank = vec![u32::MAX; names.len()];
    let mut r = 0u32;
    for (k, &i) in by_name.iter().enumerate() {
        if names.is_null(i) {
            continue;
        }
        if k > 0 && !names.is_null(by_name[k - 1]) && names.value(by_name[k - 1]) != names.value(i)
        {
            r += 1;
        }
        rank[i] = r;
    }
    let keys_of_service = service.keys();
    let mut keys: Vec<RowKey> = (0..batch.num_rows())
        .map(|row| {
            let service = if keys_of_service.is_null(row) {
                u32::MAX
            } else {
                rank.get(keys_of_service.value(row) as usize)
                    .copied()
                    .unwrap_or(u32::MAX)
            };
            let (id_null, id_prefix) = if ids.is_null(row) {
                (1, 0)
            } else {
                let b = ids.value(row).as_bytes();
                let mut p = [0u8; 8];
                let n = b.len().min(8);
                p[..n].copy_from_slice(&b[..n]);
                (0, u64::from_be_bytes(p))
            };
            let (time_null, time) = if ts.is_null(row) {
                (1, 0)
            } else {
                (0, ts.value(row))
            };
            RowKey {
                service,
                id_null,
                time_null,
                id_prefix,
                time,
                row: row as u32,
            }
        })
        .collect();
    keys.sort_unstable_by(RowKey::by_prefix);
    let id = |k: &RowKey| ids.value(k.row as usize);
    let mut start = 0;
    while start < keys.len() {
        let first = keys[start];
        let len = keys[start..]
            .iter()
            .position(|k| !k.same_prefix(&first))
            .unwrap_or(keys.len() - start);
        let run = &mut keys[start..start + len];
        // A run of one, or of rows without an id, is in order already.
        if len > 1 && first.id_null == 0 {
            let first_id = id(&first);
            if run[1..].iter().any(|k| id(k) != first_id) {
                run.sort_unstable_by(|a, b| id(a).cmp(id(b)).then_with(|| a.by_prefix(b)));
            }
        }
        start += len;
    }
    Ok(keys.into_iter().map(|k| k.row).collect())
}

/// The same order by Arrow's generic sort, for columns of other types.
fn generic_order(batch: &RecordBatch) -> Result<Vec<u32>> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| Error::MissingColumn(name.to_owned()))
    };
    let last = Some(SortOptions {
        descending: false,
        nulls_first: false,
    });
    let keys = [model::SERVICE, model::CORRELATION_ID, model::TIMESTAMP]
        .into_iter()
        .map(|name| {
            Ok(SortColumn {
                values: col(name)?,
                options: last,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(lexsort_to_indices(&keys, None)?.values().to_vec())
}

fn logs_properties(schema: &Schema, ids: usize, opts: &SegmentOptions) -> Result<WriterProperties> {
    let index = |name: &str| schema.index_of(name).map(|i| i as i32);
    let sorting = vec![
        SortingColumn {
            column_idx: index(model::SERVICE)?,
            descending: false,
            nulls_first: false,
        },
        SortingColumn {
            column_idx: index(model::CORRELATION_ID)?,
            descending: false,
            nulls_first: false,
        },
        SortingColumn {
            column_idx: index(model::TIMESTAMP)?,
            descending: false,
            nulls_first: false,
        },
    ];
    // The filter is sized for this many distinct ids, then folded down to
    // what the row group really held; ids per row group are at most its rows.
    let ids = ids.clamp(1, opts.row_group_rows) as u64;
    let id = ColumnPath::from(model::CORRELATION_ID);
    Ok(base_properties(opts)?
        .set_sorting_columns(Some(sorting))
        .set_column_bloom_filter_enabled(id.clone(), true)
        .set_column_bloom_filter_fpp(id.clone(), opts.bloom_fpp)
        .set_column_bloom_filter_max_ndv(id.clone(), ids)
        .set_bloom_filter_position(BloomFilterPosition::End)
        // Ids are nearly unique per row group: a dictionary would barely
        // shrink them (zstd takes the repeats of the sorted runs) and every
        // lookup would have to read it whole.
        .set_column_dictionary_enabled(id, false)
        .set_column_dictionary_enabled(ColumnPath::from(model::SPAN_ID), false)
        .build())
}

fn base_properties(
    opts: &SegmentOptions,
) -> Result<parquet::file::properties::WriterPropertiesBuilder> {
    let level = ZstdLevel::try_new(opts.zstd_level)?;
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(opts.row_group_rows.max(1)))
        // The row limit is checked once per write batch: keep those no larger.
        .set_write_batch_size(opts.page_rows.clamp(1, 1024))
        .set_data_page_row_count_limit(opts.page_rows.max(1))
        .set_data_page_size_limit(opts.page_bytes.max(1))
        .set_dictionary_page_size_limit(opts.dictionary_page_bytes.max(1))
        .set_created_by(format!("weft {}", env!("CARGO_PKG_VERSION"))))
}

/// Properties for a `logs` segment (sorted, bloom filter on the id) or a
/// `rejects` segment.
/// `ids` is how many rows have a `correlation_id` (the bloom filter's size).
pub fn properties(
    schema: &Schema,
    ids: usize,
    logs: bool,
    opts: &SegmentOptions,
) -> Result<WriterProperties> {
    if logs {
        logs_properties(schema, ids, opts)
    } else {
        Ok(base_properties(opts)?.build())
    }
}

/// The values of `array` at `positions`: a slice when they are a run of
/// consecutive positions, a take otherwise.
fn slice_or_take(
    array: &ArrayRef,
    positions: impl ExactSizeIterator<Item = usize> + Clone,
) -> Result<ArrayRef> {
    let len = positions.len();
    let first = positions.clone().next().unwrap_or(0);
    if positions.clone().enumerate().all(|(i, p)| p == first + i) {
        return Ok(array.slice(first, len));
    }
    let idx = UInt32Array::from_iter_values(positions.map(|p| p as u32));
    Ok(take(array.as_ref(), &idx, None)?)
}

/// Writes `rows` of `all` to `path`, a row group's worth at a time, through
/// a temp file in the same directory, then fsyncs the file, renames it into
/// place and fsyncs the directory. Returns the file's size.
pub fn write_rows(
    path: &Path,
    all: &Rows,
    rows: &[RowAddr],
    props: WriterProperties,
) -> Result<u64> {
    let dir = path.parent().expect("segment path has a directory");
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().expect("file name").to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let chunk = props
        .max_row_group_row_count()
        .unwrap_or(GATHER_ROWS)
        .clamp(1, GATHER_ROWS);
    let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut writer = ArrowWriter::try_new(file, Arc::clone(all.schema()), Some(props))?;
    let cols: Vec<usize> = (0..all.schema().fields().len()).collect();
    for part in rows.chunks(chunk) {
        let batch = all.project(part, &cols)?;
        all.hold(held_by(&batch) + writer.memory_size());
        writer.write(&batch)?;
    }
    all.hold(writer.memory_size());
    let file = writer.into_inner()?;
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    let bytes = file.metadata().map_err(|e| Error::io(&tmp, e))?.len();
    drop(file);
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    fsync_dir(dir)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, StringArray, StringDictionaryBuilder, TimestampNanosecondArray};

    /// A batch with duplicate and null services, ids that share long
    /// prefixes or are prefixes of each other, null ids, and tied times.
    fn batch(seed: u64, rows: usize) -> RecordBatch {
        batch_of(seed, rows, true)
    }

    /// As [`batch`], with null times or not (the `logs` schema has none).
    fn batch_of(seed: u64, rows: usize, null_times: bool) -> RecordBatch {
        let mut x = seed | 1;
        let mut next = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let services = ["api", "db", "web", "api2", "ápi"];
        let ids = [
            "",
            "abcdefgh",
            "abcdefgh1",
            "abcdefgh0",
            "abcdefg",
            "zz",
            "abcdefgh1x",
            // Zero-padded, "abcdefg" has this one's prefix.
            "abcdefg\0",
        ];
        let mut service = StringDictionaryBuilder::<Int32Type>::new();
        let mut id = Vec::new();
        let mut ts = Vec::new();
        for _ in 0..rows {
            match next(7) {
                0 => service.append_null(),
                k => service.append_value(services[(k as usize - 1) % services.len()]),
            }
            id.push(match next(ids.len() as u64 + 1) {
                0 => None,
                k => Some(ids[k as usize - 1]),
            });
            ts.push(if next(10) == 0 && null_times {
                None
            } else {
                Some(next(5) as i64)
            });
        }
        RecordBatch::try_from_iter(vec![
            (model::SERVICE, Arc::new(service.finish()) as ArrayRef),
            (
                model::CORRELATION_ID,
                Arc::new(StringArray::from(id)) as ArrayRef,
            ),
            (
                model::TIMESTAMP,
                Arc::new(TimestampNanosecondArray::from(ts).with_timezone("UTC")) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    /// The (service, id, time) of each row in `order`.
    fn keys(b: &RecordBatch, order: &[u32]) -> Vec<(Option<String>, Option<String>, Option<i64>)> {
        let s = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let s = s.as_string::<i32>();
        let id = b.column(1).as_string::<i32>();
        let t = b.column(2).as_primitive::<TimestampNanosecondType>();
        order
            .iter()
            .map(|&r| {
                let r = r as usize;
                (
                    s.is_valid(r).then(|| s.value(r).to_owned()),
                    id.is_valid(r).then(|| id.value(r).to_owned()),
                    t.is_valid(r).then(|| t.value(r)),
                )
            })
            .collect()
    }

    #[test]
    fn the_fast_order_is_the_generic_order() {
        for seed in 1..40 {
            let b = batch(seed * 7919, 300);
            let fast = logs_order(&b).unwrap();
            let generic = generic_order(&b).unwrap();
            let mut seen = fast.clone();
            seen.sort_unstable();
            assert_eq!(seen, (0..300).collect::<Vec<u32>>(), "a permutation");
            assert_eq!(keys(&b, &fast), keys(&b, &generic), "seed {seed}");
        }
    }

    /// `b` as [`Rows`] of one batch, every row in order.
    fn rows_of(batches: &[&RecordBatch]) -> (Rows, Vec<RowAddr>) {
        let schema = crate::buffer::merged_schema(crate::Table::Logs, batches)
            .unwrap()
            .unwrap();
        let rows = Rows::new(schema, batches).unwrap();
        let mut all = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            all.extend((0..b.num_rows() as u32).map(|r| (i as u32, r)));
        }
        (rows, all)
    }

    #[test]
    fn sorting_rows_of_many_batches_is_sorting_them_concatenated() {
        for seed in 1..20 {
            // Each batch has its own service dictionary.
            let parts: Vec<RecordBatch> = (0..3)
                .map(|k| batch_of(seed * 31 + k, 100, false))
                .collect();
            let refs: Vec<&RecordBatch> = parts.iter().collect();
            let (rows, mut addrs) = rows_of(&refs);
            let (index, ids) = rows.sort_logs(&mut addrs).unwrap();
            let sorted = rows.project(&addrs, &[0, 1, 2]).unwrap();
            let one = arrow::compute::concat_batches(&parts[0].schema(), &parts).unwrap();
            let order = logs_order(&one).unwrap();
            let all: Vec<u32> = (0..300).collect();
            assert_eq!(keys(&sorted, &all), keys(&one, &order), "seed {seed}");
            // The index and id count are those of the sorted rows.
            assert_eq!(index, IdIndex::of_batch(&sorted));
            assert_eq!(ids, 300 - sorted.column(1).null_count());
            let mut seen = addrs.clone();
            seen.sort_unstable();
            assert_eq!(seen.len(), 300);
            seen.dedup();
            assert_eq!(seen.len(), 300, "each row once");
        }
    }

    #[test]
    fn sorted_rows_keep_their_order() {
        let b = batch_of(5, 50, false);
        let (rows, mut addrs) = rows_of(&[&b]);
        let first = rows.sort_logs(&mut addrs).unwrap();
        let before = addrs.clone();
        let second = rows.sort_logs(&mut addrs).unwrap();
        assert_eq!(first, second);
        assert_eq!(addrs, before);
        assert!(!first.0.is_empty());
    }

    #[test]
    fn rows_of_batches_are_cast_to_the_merged_schema_and_nulls_fill_gaps() {
        use arrow::array::{Float64Array, Int64Array};
        use arrow::datatypes::{DataType, Float64Type};
        let a = RecordBatch::try_from_iter(vec![
            ("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            ("s", Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef),
        ])
        .unwrap();
        let b = RecordBatch::try_from_iter(vec![(
            "n",
            Arc::new(Float64Array::from(vec![2.5])) as ArrayRef,
        )])
        .unwrap();
        let (rows, addrs) = rows_of(&[&a, &b]);
        assert_eq!(rows.num_rows(), 3);
        // Out of order across batches: (b, 0), (a, 1), (a, 0).
        let picked: Vec<RowAddr> = vec![addrs[2], addrs[1], addrs[0]];
        let out = rows.project(&picked, &[0, 1]).unwrap();
        assert_eq!(out.schema().field(0).data_type(), &DataType::Float64);
        let n = out.column(0).as_primitive::<Float64Type>();
        assert_eq!(n.values().to_vec(), vec![2.5, 2.0, 1.0]);
        let s = out.column(1).as_string::<i32>();
        assert!(s.is_null(0));
        assert_eq!((s.value(1), s.value(2)), ("y", "x"));
    }

    #[test]
    fn a_column_null_in_every_picked_row_comes_back_null() {
        use arrow::array::Int64Array;
        use arrow::datatypes::Int64Type;
        // `n` has values in a few rows only, in one batch and across two.
        let a = RecordBatch::try_from_iter(vec![(
            "n",
            Arc::new(Int64Array::from(vec![None, Some(7), None, None])) as ArrayRef,
        )])
        .unwrap();
        let b = RecordBatch::try_from_iter(vec![(
            "n",
            Arc::new(Int64Array::from(vec![None, Some(9)])) as ArrayRef,
        )])
        .unwrap();
        let other = RecordBatch::try_from_iter(vec![(
            "s",
            Arc::new(StringArray::from(vec!["x"])) as ArrayRef,
        )])
        .unwrap();
        let gathered = |batches: &[&RecordBatch], picked: &[RowAddr]| {
            let (rows, _) = rows_of(batches);
            let col = rows.schema().index_of("n").unwrap();
            let out = rows.project(picked, &[col]).unwrap();
            assert_eq!(out.column(0).data_type(), &DataType::Int64);
            assert_eq!(out.num_rows(), picked.len());
            let n = out.column(0).as_primitive::<Int64Type>();
            n.iter().collect::<Vec<_>>()
        };
        // One batch: picked rows all null, then one with a value among them.
        assert_eq!(gathered(&[&a], &[(0, 3), (0, 0), (0, 2)]), vec![None; 3]);
        assert_eq!(
            gathered(&[&a], &[(0, 3), (0, 1), (0, 0)]),
            vec![None, Some(7), None]
        );
        // Several batches, one of them without the column.
        let all_null = [(2, 0), (0, 2), (1, 0), (0, 0)];
        assert_eq!(gathered(&[&a, &b, &other], &all_null), vec![None; 4]);
        let some = [(2, 0), (1, 1), (0, 1), (0, 0)];
        assert_eq!(
            gathered(&[&a, &b, &other], &some),
            vec![None, Some(9), Some(7), None]
        );
    }

    #[test]
    fn null_columns_of_one_chunk_each_keep_their_type() {
        use arrow::array::Int64Array;
        use arrow::datatypes::Float64Type;
        // One service's batch has `n`, `s` and `t`; the other's has `m` only.
        let a = RecordBatch::try_from_iter(vec![
            ("n", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
            ("s", Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef),
            ("t", Arc::new(StringArray::from(vec!["p", "q"])) as ArrayRef),
        ])
        .unwrap();
        let b = RecordBatch::try_from_iter(vec![(
            "m",
            Arc::new(arrow::array::Float64Array::from(vec![0.5, 1.5, 2.5])) as ArrayRef,
        )])
        .unwrap();
        let (rows, _) = rows_of(&[&a, &b]);
        let cols: Vec<usize> = ["n", "s", "m", "t"]
            .iter()
            .map(|c| rows.schema().index_of(c).unwrap())
            .collect();
        // Rows of `b` alone: `n`, `s` and `t` are null, each of its own type.
        let out = rows.project(&[(1, 2), (1, 0), (1, 1)], &cols).unwrap();
        let types: Vec<&DataType> = out.columns().iter().map(|c| c.data_type()).collect();
        assert_eq!(
            types,
            vec![
                &DataType::Int64,
                &DataType::Utf8,
                &DataType::Float64,
                &DataType::Utf8
            ]
        );
        for i in [0, 1, 3] {
            assert_eq!(out.column(i).null_count(), 3, "column {i}");
        }
        // `s` and `t` share one null array, and it is counted once.
        assert!(Arc::ptr_eq(out.column(1), out.column(3)));
        let own: usize = (0..3).map(|i| out.column(i).get_array_memory_size()).sum();
        assert_eq!(held_by(&out), own);
        let m = out.column(2).as_primitive::<Float64Type>();
        assert_eq!(m.values().to_vec(), vec![2.5, 0.5, 1.5]);
        // Rows of both: each column has its values and its nulls.
        let out = rows.project(&[(0, 1), (1, 0), (0, 0)], &cols).unwrap();
        let s = out.column(1).as_string::<i32>();
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![Some("y"), None, Some("x")]
        );
        let m = out.column(2).as_primitive::<Float64Type>();
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![None, Some(0.5), None]);
    }

    #[test]
    fn a_chunk_from_one_of_several_batches_is_taken_from_it_alone() {
        use arrow::array::Int64Array;
        use arrow::datatypes::Int64Type;
        let a = RecordBatch::try_from_iter(vec![
            ("n", Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef),
            (
                "s",
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])) as ArrayRef,
            ),
        ])
        .unwrap();
        // No `s` here.
        let b = RecordBatch::try_from_iter(vec![(
            "n",
            Arc::new(Int64Array::from(vec![10, 20])) as ArrayRef,
        )])
        .unwrap();
        let c = RecordBatch::try_from_iter(vec![
            (
                "n",
                Arc::new(Int64Array::from(vec![100, 200, 300])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec!["x", "y", "z"])) as ArrayRef,
            ),
        ])
        .unwrap();
        let (rows, _) = rows_of(&[&a, &b, &c]);
        let n = rows.schema().index_of("n").unwrap();
        let s = rows.schema().index_of("s").unwrap();
        let ints = |picked: &[RowAddr]| {
            let out = rows.project(picked, &[n]).unwrap();
            let col = out.column(0).as_primitive::<Int64Type>();
            col.iter().collect::<Vec<_>>()
        };
        let strs = |picked: &[RowAddr]| {
            let out = rows.project(picked, &[s]).unwrap();
            let col = out.column(0).as_string::<i32>();
            col.iter().map(|v| v.map(str::to_owned)).collect::<Vec<_>>()
        };
        // Out of order, in order (a slice), and across two batches.
        assert_eq!(ints(&[(2, 2), (2, 0)]), vec![Some(300), Some(100)]);
        assert_eq!(ints(&[(2, 1), (2, 2)]), vec![Some(200), Some(300)]);
        assert_eq!(ints(&[(1, 1), (1, 0)]), vec![Some(20), Some(10)]);
        assert_eq!(
            ints(&[(1, 1), (2, 0), (0, 2)]),
            vec![Some(20), Some(100), Some(3)]
        );
        let owned = |v: &[Option<&str>]| v.iter().map(|s| s.map(str::to_owned)).collect::<Vec<_>>();
        assert_eq!(
            strs(&[(0, 2), (0, 1), (0, 0)]),
            owned(&[Some("c"), None, Some("a")])
        );
        assert_eq!(strs(&[(2, 1), (2, 2)]), owned(&[Some("y"), Some("z")]));
        // Rows of a batch without the column, alone and among others.
        assert_eq!(strs(&[(1, 1), (1, 0)]), owned(&[None, None]));
        assert_eq!(
            strs(&[(1, 1), (2, 0), (1, 0)]),
            owned(&[None, Some("x"), None])
        );
    }

    #[test]
    fn dictionary_columns_are_gathered_across_batches_and_gaps() {
        let host = |v: Vec<Option<&str>>| {
            let d: arrow::array::DictionaryArray<Int32Type> = v.into_iter().collect();
            RecordBatch::try_from_iter(vec![(model::HOST, Arc::new(d) as ArrayRef)]).unwrap()
        };
        let other = RecordBatch::try_from_iter(vec![(
            "n",
            Arc::new(arrow::array::Int64Array::from(vec![1, 2])) as ArrayRef,
        )])
        .unwrap();
        // Each batch has its own dictionary; the middle one has no host.
        let a = host(vec![Some("h1"), Some("h2"), None]);
        let c = host(vec![Some("h3"), Some("h2")]);
        let (rows, _) = rows_of(&[&a, &other, &c]);
        let col = rows.schema().index_of(model::HOST).unwrap();
        let picked: Vec<RowAddr> = vec![(2, 0), (0, 1), (1, 1), (0, 0), (2, 1), (0, 2)];
        let out = rows.project(&picked, &[col]).unwrap();
        let out = arrow::compute::cast(out.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let got: Vec<Option<&str>> = out.as_string::<i32>().iter().collect();
        assert_eq!(
            got,
            vec![Some("h3"), Some("h2"), None, Some("h1"), Some("h2"), None]
        );
        // A run of one batch's rows in order is read as it is.
        let run = rows.project(&[(2, 0), (2, 1)], &[col]).unwrap();
        let run = arrow::compute::cast(run.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
        let got: Vec<Option<&str>> = run.as_string::<i32>().iter().collect();
        assert_eq!(got, vec![Some("h3"), Some("h2")]);
    }

    #[test]
    fn written_rows_read_back_in_their_order_over_several_gathers() {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let parts: Vec<RecordBatch> = (0..3)
            .map(|k| batch_of(k + 11, GATHER_ROWS / 2 + 7, false))
            .collect();
        let refs: Vec<&RecordBatch> = parts.iter().collect();
        let (rows, mut addrs) = rows_of(&refs);
        rows.sort_logs(&mut addrs).unwrap();
        let want = rows.project(&addrs, &[0, 1, 2]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.parquet");
        let props = properties(rows.schema(), 1, true, &SegmentOptions::default()).unwrap();
        let bytes = write_rows(&path, &rows, &addrs, props).unwrap();
        assert_eq!(bytes, std::fs::metadata(&path).unwrap().len());
        let file = File::open(&path).unwrap();
        let read: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        let read = arrow::compute::concat_batches(&read[0].schema(), &read).unwrap();
        assert_eq!(read.num_rows(), addrs.len());
        let all: Vec<u32> = (0..addrs.len() as u32).collect();
        assert_eq!(keys(&read, &all), keys(&want, &all));
    }

    #[test]
    fn a_tracked_write_reports_what_it_holds_beyond_the_batches() {
        let parts: Vec<RecordBatch> = (0..3).map(|k| batch_of(k + 21, 1000, false)).collect();
        let refs: Vec<&RecordBatch> = parts.iter().collect();
        let (rows, mut addrs) = rows_of(&refs);
        // Each batch has its own service dictionary: the merged one is
        // memory the rows own.
        let owned = rows.owned;
        assert!(owned > 0);
        let gauge = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let rows = rows
            .tracked(Arc::clone(&gauge), 64)
            .watch_resident(Arc::clone(&peak));
        let held = || gauge.load(Ordering::Relaxed);
        assert_eq!(held(), owned + 64);
        rows.sort_logs(&mut addrs).unwrap();
        // The sort: a key, an order entry and an address per row at least.
        let per_row = std::mem::size_of::<RowKey>() + 4 + std::mem::size_of::<RowAddr>();
        assert!(held() >= owned + 64 + 3000 * per_row, "{}", held());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.parquet");
        let props = properties(rows.schema(), 1, true, &SegmentOptions::default()).unwrap();
        write_rows(&path, &rows, &addrs, props).unwrap();
        // Last reported: the encoder's open row group, before it was closed.
        assert!(held() > owned + 64, "{}", held());
        // The process's resident memory was read as the write went.
        #[cfg(target_os = "linux")]
        assert!(peak.load(Ordering::Relaxed) > 1 << 20);
    }

    #[test]
    fn hours_split_the_rows_and_bound_their_times() {
        const H: i64 = NANOS_PER_HOUR;
        let ts = |v: Vec<i64>| {
            RecordBatch::try_from_iter(vec![(
                model::TIMESTAMP,
                Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC")) as ArrayRef,
            )])
            .unwrap()
        };
        let a = ts(vec![3 * H + 5, H + 1, 3 * H + 2]);
        let b = ts(vec![H + 7, -1]);
        let (rows, _) = rows_of(&[&a, &b]);
        let hours = rows.by_hour(model::TIMESTAMP).unwrap();
        let got: Vec<(i64, Vec<RowAddr>, i64, i64)> = hours
            .into_iter()
            .map(|h| (h.start, h.rows, h.min_ts, h.max_ts))
            .collect();
        assert_eq!(
            got,
            vec![
                (-H, vec![(1, 1)], -1, -1),
                (H, vec![(0, 1), (1, 0)], H + 1, H + 7),
                (3 * H, vec![(0, 0), (0, 2)], 3 * H + 2, 3 * H + 5),
            ]
        );
        assert!(matches!(
            rows.by_hour("nope"),
            Err(Error::MissingColumn(c)) if c == "nope"
        ));
    }
}
