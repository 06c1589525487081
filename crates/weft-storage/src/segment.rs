//! Writing one segment: sort, encode as Parquet, publish atomically.
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

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::{
    SortColumn, SortOptions, filter_record_batch, lexsort_to_indices, take_record_batch,
};
use arrow::datatypes::TimestampNanosecondType;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{BloomFilterPosition, EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use weft_ingest::model;

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
}

impl Default for SegmentOptions {
    fn default() -> Self {
        Self {
            zstd_level: 3,
            row_group_rows: 128 * 1024,
            bloom_fpp: 0.01,
        }
    }
}

const NANOS_PER_HOUR: i64 = 3_600_000_000_000;

/// Splits a batch into per-hour batches by `time_column` (ns, UTC).
/// Returns (hour start in ns, rows of that hour).
pub fn split_by_hour(batch: &RecordBatch, time_column: &str) -> Result<Vec<(i64, RecordBatch)>> {
    let ts = batch
        .column_by_name(time_column)
        .ok_or_else(|| Error::MissingColumn(time_column.to_owned()))?
        .as_primitive::<TimestampNanosecondType>();
    let hour = |i: usize| ts.value(i).div_euclid(NANOS_PER_HOUR);
    if ts.is_empty() {
        return Ok(Vec::new());
    }
    let first = hour(0);
    if (0..ts.len()).all(|i| hour(i) == first) {
        return Ok(vec![(first * NANOS_PER_HOUR, batch.clone())]);
    }
    let mut hours: Vec<i64> = (0..ts.len()).map(hour).collect();
    hours.sort_unstable();
    hours.dedup();
    let mut out = Vec::with_capacity(hours.len());
    for h in hours {
        let mask = BooleanArray::from_iter((0..ts.len()).map(|i| Some(hour(i) == h)));
        out.push((h * NANOS_PER_HOUR, filter_record_batch(batch, &mask)?));
    }
    Ok(out)
}

/// Sorts a `logs` batch into segment order (see the module docs).
pub fn sort_logs(batch: &RecordBatch) -> Result<RecordBatch> {
    let col = |name: &str| {
        batch
            .column_by_name(name)
            .cloned()
            .ok_or_else(|| Error::MissingColumn(name.to_owned()))
    };
    let keys = vec![
        SortColumn {
            values: col(model::SERVICE)?,
            options: Some(SortOptions {
                descending: false,
                nulls_first: false,
            }),
        },
        SortColumn {
            values: col(model::CORRELATION_ID)?,
            options: Some(SortOptions {
                descending: false,
                nulls_first: false,
            }),
        },
        SortColumn {
            values: col(model::TIMESTAMP)?,
            options: Some(SortOptions {
                descending: false,
                nulls_first: false,
            }),
        },
    ];
    let idx = lexsort_to_indices(&keys, None)?;
    Ok(take_record_batch(batch, &idx)?)
}

fn logs_properties(batch: &RecordBatch, opts: &SegmentOptions) -> Result<WriterProperties> {
    let schema = batch.schema();
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
    let ids = batch
        .column_by_name(model::CORRELATION_ID)
        .map(|c| c.len() - c.null_count())
        .unwrap_or(0)
        .clamp(1, opts.row_group_rows) as u64;
    let id = ColumnPath::from(model::CORRELATION_ID);
    Ok(base_properties(opts)?
        .set_sorting_columns(Some(sorting))
        .set_column_bloom_filter_enabled(id.clone(), true)
        .set_column_bloom_filter_fpp(id.clone(), opts.bloom_fpp)
        .set_column_bloom_filter_max_ndv(id, ids)
        .set_bloom_filter_position(BloomFilterPosition::End)
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
        .set_created_by(format!("weft {}", env!("CARGO_PKG_VERSION"))))
}

/// Properties for a `logs` segment (sorted, bloom filter on the id) or a
/// `rejects` segment.
pub fn properties(
    batch: &RecordBatch,
    logs: bool,
    opts: &SegmentOptions,
) -> Result<WriterProperties> {
    if logs {
        logs_properties(batch, opts)
    } else {
        Ok(base_properties(opts)?.build())
    }
}

/// Writes `batch` to `path` through a temp file in the same directory, then
/// fsyncs the file, renames it into place and fsyncs the directory.
/// Returns the file's size.
pub fn write_parquet(path: &Path, batch: &RecordBatch, props: WriterProperties) -> Result<u64> {
    let dir = path.parent().expect("segment path has a directory");
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().expect("file name").to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut writer = ArrowWriter::try_new(file, Arc::clone(batch.schema_ref()), Some(props))?;
    writer.write(batch)?;
    let file = writer.into_inner()?;
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    let bytes = file.metadata().map_err(|e| Error::io(&tmp, e))?.len();
    drop(file);
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    fsync_dir(dir)?;
    Ok(bytes)
}

/// Smallest and largest value of a timestamp column.
pub fn time_range(batch: &RecordBatch, column: &str) -> Result<(i64, i64)> {
    let ts = batch
        .column_by_name(column)
        .ok_or_else(|| Error::MissingColumn(column.to_owned()))?
        .as_primitive::<TimestampNanosecondType>();
    let min = arrow::compute::min(ts).unwrap_or(0);
    let max = arrow::compute::max(ts).unwrap_or(0);
    Ok((min, max))
}
