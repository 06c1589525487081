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

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, UInt32Array, new_null_array};
use arrow::compute::{SortColumn, SortOptions, filter_record_batch, lexsort_to_indices, take};
use arrow::datatypes::{Int32Type, TimestampNanosecondType};
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
    let order = logs_order(batch)?;
    if order.iter().enumerate().all(|(i, &r)| i == r as usize) {
        return Ok(batch.clone());
    }
    // Columns with no value in this batch (common among the dynamic ones)
    // need no gathering.
    let order = UInt32Array::from(order);
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            if c.null_count() == c.len() {
                Ok(new_null_array(c.data_type(), c.len()))
            } else {
                take(c.as_ref(), &order, None)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// The sort key of one row: compared field by field, with the id's first
/// eight bytes standing in for the id until two rows tie on them.
#[derive(Debug, Clone, Copy)]
struct RowKey {
    /// Rank of the service among the batch's service names; nulls last.
    service: u32,
    /// 0 for an id, 1 for none (nulls last).
    id_null: u8,
    /// The id's first eight bytes, big-endian, zero-padded.
    id_prefix: u64,
    row: u32,
}

/// Row order for segments: `service`, `correlation_id`, `timestamp`, each
/// ascending with nulls last. Sorts plain keys (a service rank from the
/// dictionary, an 8-byte id prefix) and compares whole ids only on prefix
/// ties: several times faster than a generic multi-column sort, which
/// compares every pair through the column types.
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
            RowKey {
                service,
                id_null,
                id_prefix,
                row: row as u32,
            }
        })
        .collect();
    let time = |row: u32| {
        let row = row as usize;
        (
            ts.is_null(row),
            if ts.is_null(row) { 0 } else { ts.value(row) },
        )
    };
    keys.sort_unstable_by(|a, b| {
        a.service
            .cmp(&b.service)
            .then(a.id_null.cmp(&b.id_null))
            .then(a.id_prefix.cmp(&b.id_prefix))
            .then_with(|| {
                if a.id_null == 0 {
                    ids.value(a.row as usize).cmp(ids.value(b.row as usize))
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .then_with(|| time(a.row).cmp(&time(b.row)))
    });
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, StringArray, StringDictionaryBuilder, TimestampNanosecondArray};

    /// A batch with duplicate and null services, ids that share long
    /// prefixes or are prefixes of each other, null ids, and tied times.
    fn batch(seed: u64, rows: usize) -> RecordBatch {
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
        ];
        let mut service = StringDictionaryBuilder::<Int32Type>::new();
        let mut id = Vec::new();
        let mut ts = Vec::new();
        for _ in 0..rows {
            match next(7) {
                0 => service.append_null(),
                k => service.append_value(services[(k as usize - 1) % services.len()]),
            }
            id.push(match next(8) {
                0 => None,
                k => Some(ids[k as usize - 1]),
            });
            ts.push(if next(10) == 0 {
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
                Arc::new(TimestampNanosecondArray::from(ts)) as ArrayRef,
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

    #[test]
    fn a_sorted_batch_is_returned_as_is() {
        let b = batch(5, 50);
        let sorted = sort_logs(&b).unwrap();
        let again = sort_logs(&sorted).unwrap();
        assert_eq!(sorted, again);
    }
}
