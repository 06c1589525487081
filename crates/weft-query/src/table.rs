//! `SegmentsTable`: a DataFusion table over one table's published segments
//! and, in the daemon, its write-buffer batches not yet in segments.
//!
//! The schema is the snapshot's merged schema (widened where segments and
//! buffered batches disagree); a segment lacking a column reads it as null
//! and a narrower type is cast, both by DataFusion's own schema adaptation;
//! buffered batches are conformed the same way and scanned from memory,
//! unioned with the Parquet scan. Before handing
//! the scan to DataFusion's Parquet source it drops whole segments two ways
//! DataFusion cannot see: by the manifest's time range for `timestamp`
//! predicates, and by the correlation-ID index for `correlation_id = '…'`
//! or `IN (…)`. For those id lookups the index also names the rows, and
//! the scan reads only them (a row selection, so Parquet decodes only the
//! pages that hold them). Otherwise the Parquet source prunes row groups
//! (statistics, bloom filter) and pages (page index) inside the files that
//! remain. Footers and page indexes are read once and kept in the engine's
//! metadata cache: segments never change once published.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetFileReaderFactory, ParquetRowSelection,
};
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::union::UnionExec;
use futures::FutureExt;
use futures::future::BoxFuture;
use weft_ingest::model;
use weft_storage::idindex::{IdIndex, Run};
use weft_storage::{SegmentMeta, Snapshot, Table, buffer};

/// Loaded id indexes, by segment id. Segments never change once published,
/// so an entry never goes stale, but compaction unlists segments: their
/// entries are dropped by `forget_unlisted` as each query starts.
#[derive(Debug, Default)]
pub struct IdIndexCache {
    sets: Mutex<HashMap<u64, Arc<IdIndex>>>,
}

impl IdIndexCache {
    /// Drops the indexes of segments `snapshot` no longer lists. Costs a
    /// pass over the manifest only when the cache holds more entries than
    /// the manifest has segments, which an unlisted one's entry implies
    /// once every listed segment's index is loaded.
    pub(crate) fn forget_unlisted(&self, snapshot: &Snapshot) {
        let listed = &snapshot.manifest.segments;
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        if sets.len() <= listed.len() {
            return;
        }
        let ids: std::collections::HashSet<u64> = listed.iter().map(|s| s.id).collect();
        sets.retain(|id, _| ids.contains(id));
    }

    pub(crate) fn len(&self) -> usize {
        self.sets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub(crate) fn get(&self, root: &std::path::Path, seg: &SegmentMeta) -> Option<Arc<IdIndex>> {
        let rel = seg.id_index.as_ref()?;
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = sets.get(&seg.id) {
            return Some(Arc::clone(s));
        }
        // A missing or damaged index only loses the shortcut: the segment is scanned.
        let set = Arc::new(IdIndex::read(&root.join(rel)).ok()?);
        sets.insert(seg.id, Arc::clone(&set));
        Some(set)
    }
}

/// The table schema a snapshot describes for `table`: the core columns
/// when it has no data yet.
pub fn table_schema(snapshot: &Snapshot, table: Table) -> Result<SchemaRef> {
    let columns = snapshot
        .table_columns(table)
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let core = buffer::core_fields(table);
    if columns.is_empty() {
        return Ok(Arc::new(Schema::new(core)));
    }
    Ok(buffer::schema_of(&columns, &core))
}

/// A table over the segments and buffered batches of one snapshot.
#[derive(Debug)]
pub struct SegmentsTable {
    table: Table,
    root: std::path::PathBuf,
    segments: Vec<SegmentMeta>,
    buffered: Vec<RecordBatch>,
    schema: SchemaRef,
    ids: Arc<IdIndexCache>,
}

impl SegmentsTable {
    pub fn new(
        root: &std::path::Path,
        snapshot: &Snapshot,
        table: Table,
        ids: Arc<IdIndexCache>,
    ) -> Result<Self> {
        Ok(Self {
            table,
            root: root.to_owned(),
            segments: snapshot.manifest.segments(table).cloned().collect(),
            buffered: snapshot.batches(table).cloned().collect(),
            schema: table_schema(snapshot, table)?,
            ids,
        })
    }

    /// The segments a scan with `filters` has to read.
    pub fn candidates(&self, filters: &[Expr]) -> Vec<&SegmentMeta> {
        self.plan(filters).into_iter().map(|c| c.segment).collect()
    }

    /// The segments a scan with `filters` has to read and, when the filters
    /// pin `correlation_id` and the segment's index names rows, which rows.
    fn plan(&self, filters: &[Expr]) -> Vec<Candidate<'_>> {
        let time_col = match self.table {
            Table::Logs => model::TIMESTAMP,
            Table::Rejects => model::OBSERVED_AT,
        };
        let (from, to) = time_bounds(filters, time_col);
        let ids = if self.table == Table::Logs {
            id_literals(filters)
        } else {
            None
        };
        let mut out = Vec::new();
        for segment in self.segments.iter().filter(|s| s.overlaps(from, to)) {
            let index = ids.as_ref().and_then(|_| self.ids.get(&self.root, segment));
            let (Some(ids), Some(index)) = (&ids, index) else {
                out.push(Candidate {
                    segment,
                    rows: None,
                });
                continue;
            };
            if !ids.iter().any(|id| index.may_contain(id)) {
                continue;
            }
            // An index without rows (`WEFTIDS1`) for any id: read it all.
            let mut runs = Vec::new();
            let rows_known = ids.iter().all(|id| match index.runs(id) {
                Some(r) => {
                    runs.extend_from_slice(r);
                    true
                }
                None => false,
            });
            out.push(Candidate {
                segment,
                rows: rows_known.then(|| selection(runs, segment.rows)).flatten(),
            });
        }
        out
    }
}

/// A segment to scan, and the rows to read when the id index names them.
struct Candidate<'a> {
    segment: &'a SegmentMeta,
    rows: Option<RowSelection>,
}

/// The selection of `runs` in a file of `total` rows; `None` (read the
/// whole file) when a run lies past its end, which only a damaged index
/// could say.
pub(crate) fn selection(mut runs: Vec<Run>, total: u64) -> Option<RowSelection> {
    runs.sort_unstable();
    let mut selectors = Vec::with_capacity(runs.len() * 2 + 1);
    let mut at = 0usize;
    for run in runs {
        let rows = run.rows();
        if rows.end as u64 > total {
            return None;
        }
        // Runs of different ids never overlap; merge defensively anyway.
        let start = rows.start.max(at);
        if start > at {
            selectors.push(RowSelector::skip(start - at));
        }
        if rows.end > start {
            selectors.push(RowSelector::select(rows.end - start));
            at = rows.end;
        }
    }
    if (at as u64) < total {
        selectors.push(RowSelector::skip(total as usize - at));
    }
    Some(RowSelection::from(selectors))
}

#[async_trait]
impl datafusion::catalog::TableProvider for SegmentsTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Pruning is by ranges and filters that may pass extra rows: DataFusion
        // must still apply every filter.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut plans = Vec::new();
        if let Some(files) = self.scan_segments(state, projection, filters, limit)? {
            plans.push(files);
        }
        if !self.buffered.is_empty() {
            // The buffer is small and unindexed: DataFusion's filters above
            // the scan (pushdown is Inexact) select its rows.
            let batches = self
                .buffered
                .iter()
                .map(|b| buffer::conform(b, &self.schema))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            plans.push(MemorySourceConfig::try_new_exec(
                &[batches],
                Arc::clone(&self.schema),
                projection.cloned(),
            )?);
        }
        if plans.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        UnionExec::try_new(plans)
    }
}

impl SegmentsTable {
    /// The Parquet scan of the candidate segments, if any remain.
    fn scan_segments(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let segments = self.plan(filters);
        if segments.is_empty() {
            return Ok(None);
        }
        let runtime = state.runtime_env();
        let store = runtime.object_store(ObjectStoreUrl::local_filesystem())?;
        let metadata = runtime.cache_manager.get_file_metadata_cache();
        let source = ParquetSource::new(Arc::clone(&self.schema))
            .with_parquet_file_reader_factory(Arc::new(PageIndexReaders(
                CachedParquetFileReaderFactory::new(store, metadata),
            )))
            .with_table_parquet_options(state.table_options().parquet.clone())
            .with_pushdown_filters(true)
            .with_reorder_filters(true)
            .with_enable_page_index(true)
            .with_bloom_filter_on_read(true);
        // No predicate here: DataFusion pushes the filters (reported Inexact)
        // into this Parquet source itself, with statistics, bloom filter and
        // page index pruning; setting one as well would apply it twice.
        // Spread files over the session's partitions, largest first.
        let parts = state.config().target_partitions().max(1);
        let mut files = segments;
        files.sort_by_key(|c| std::cmp::Reverse(c.segment.bytes));
        let mut groups: Vec<(u64, Vec<PartitionedFile>)> =
            vec![(0, Vec::new()); parts.min(files.len())];
        for Candidate { segment, rows } in files {
            let g = groups
                .iter_mut()
                .min_by_key(|(bytes, _)| *bytes)
                .expect("at least one group");
            g.0 += segment.bytes;
            let path = self.root.join(&segment.path);
            let mut file = PartitionedFile::new(path.to_string_lossy(), segment.bytes);
            if let Some(rows) = rows {
                file = file.with_extension(ParquetRowSelection::new(rows));
            }
            g.1.push(file);
        }
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), Arc::new(source))
                .with_file_groups(groups.into_iter().map(|(_, f)| FileGroup::new(f)).collect())
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
        Ok(Some(DataSourceExec::from_data_source(config)))
    }
}

/// DataFusion's cached Parquet readers, asked for footers *with* page index.
///
/// DataFusion's Parquet opener asks its reader for the footer alone and
/// loads the page index itself when a predicate needs it, outside the
/// metadata cache. Without this, a cached footer never gains its page
/// index and every filtered query decodes every file's page index again
/// (for `count(*) WHERE level = 'error'` over 30 M rows, about a third of
/// the query). Asking for it here puts footer and page index in the cache
/// together, once per segment.
#[derive(Debug)]
struct PageIndexReaders(CachedParquetFileReaderFactory);

impl ParquetFileReaderFactory for PageIndexReaders {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Box<dyn AsyncFileReader + Send>> {
        let inner = self
            .0
            .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(Box::new(WithPageIndex(inner)))
    }
}

struct WithPageIndex(Box<dyn AsyncFileReader + Send>);

impl AsyncFileReader for WithPageIndex {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<bytes::Bytes>> {
        self.0.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, datafusion::parquet::errors::Result<Vec<bytes::Bytes>>> {
        self.0.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, datafusion::parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let options = options
                .cloned()
                .unwrap_or_default()
                .with_page_index_policy(PageIndexPolicy::Optional);
            self.0.get_metadata(Some(&options)).await
        }
        .boxed()
    }
}

/// The bare column only: a cast can truncate (a timestamp to seconds, say),
/// so a bound on `CAST(col …)` is no bound on `col`.
fn is_column(e: &Expr, name: &str) -> bool {
    matches!(e, Expr::Column(c) if c.name == name)
}

fn timestamp_nanos(e: &Expr) -> Option<i64> {
    let Expr::Literal(v, _) = e else {
        return None;
    };
    match v {
        ScalarValue::TimestampNanosecond(Some(x), _) => Some(*x),
        ScalarValue::TimestampMicrosecond(Some(x), _) => x.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(x), _) => x.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(x), _) => x.checked_mul(1_000_000_000),
        _ => None,
    }
}

/// The time window the filters' conjuncts on `col` allow (inclusive bounds).
fn time_bounds(filters: &[Expr], col: &str) -> (Option<i64>, Option<i64>) {
    let mut from: Option<i64> = None;
    let mut to: Option<i64> = None;
    let mut lower = |v: i64| from = Some(from.map_or(v, |f| f.max(v)));
    let mut upper = |v: i64| to = Some(to.map_or(v, |t| t.min(v)));
    for f in filters.iter().flat_map(split_and) {
        match f {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, lit) = if is_column(left, col) {
                    (*op, timestamp_nanos(right))
                } else if is_column(right, col) {
                    (op.swap().unwrap_or(*op), timestamp_nanos(left))
                } else {
                    continue;
                };
                let Some(v) = lit else { continue };
                match op {
                    Operator::Gt => lower(v.saturating_add(1)),
                    Operator::GtEq => lower(v),
                    Operator::Lt => upper(v.saturating_sub(1)),
                    Operator::LtEq => upper(v),
                    Operator::Eq => {
                        lower(v);
                        upper(v);
                    }
                    _ => {}
                }
            }
            Expr::Between(b) if !b.negated && is_column(&b.expr, col) => {
                if let Some(v) = timestamp_nanos(&b.low) {
                    lower(v);
                }
                if let Some(v) = timestamp_nanos(&b.high) {
                    upper(v);
                }
            }
            _ => {}
        }
    }
    (from, to)
}

fn split_and(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            let mut v = split_and(left);
            v.extend(split_and(right));
            v
        }
        other => vec![other],
    }
}

fn utf8(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Some(s.clone()),
        Expr::Literal(ScalarValue::Dictionary(_, v), _) => match v.as_ref() {
            ScalarValue::Utf8(Some(s)) => Some(s.clone()),
            _ => None,
        },
        Expr::Cast(c) => utf8(&c.expr),
        _ => None,
    }
}

/// `correlation_id = '…'`, or an OR of them (DataFusion rewrites short IN
/// lists that way): the ids, when every disjunct is one.
fn id_disjunction(e: &Expr) -> Option<Vec<String>> {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let mut ids = id_disjunction(left)?;
            ids.extend(id_disjunction(right)?);
            Some(ids)
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            if is_column(left, model::CORRELATION_ID) {
                utf8(right).map(|s| vec![s])
            } else if is_column(right, model::CORRELATION_ID) {
                utf8(left).map(|s| vec![s])
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The ids a conjunct `correlation_id = '…'`, `… IN (…)` or an OR of
/// equalities pins the scan to, if any.
fn id_literals(filters: &[Expr]) -> Option<Vec<String>> {
    for f in filters.iter().flat_map(split_and) {
        if let Some(ids) = id_disjunction(f) {
            return Some(ids);
        }
        match f {
            Expr::InList(l) if !l.negated && is_column(&l.expr, model::CORRELATION_ID) => {
                let ids: Option<Vec<String>> = l.list.iter().map(utf8).collect();
                if ids.is_some() {
                    return ids;
                }
            }
            _ => {}
        }
    }
    None
}

/// True for types the logs schema uses for text.
pub fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        || matches!(t, DataType::Dictionary(_, v) if is_text(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(first: u32, len: u32) -> Run {
        Run { first, len }
    }

    fn selectors(s: &RowSelection) -> Vec<(bool, usize)> {
        s.iter().map(|r| (r.skip, r.row_count)).collect()
    }

    #[test]
    fn runs_become_a_selection_over_the_whole_file() {
        // Out of order, touching the start; the rest of the file skipped.
        let s = selection(vec![run(10, 5), run(0, 2)], 100).unwrap();
        assert_eq!(
            selectors(&s),
            vec![(false, 2), (true, 8), (false, 5), (true, 85)]
        );
        // A run that ends the file leaves nothing to skip after it.
        let s = selection(vec![run(90, 10)], 100).unwrap();
        assert_eq!(selectors(&s), vec![(true, 90), (false, 10)]);
        // Overlapping runs (only a hash collision could give them) merge.
        let s = selection(vec![run(5, 10), run(8, 3), run(12, 6)], 20).unwrap();
        assert_eq!(selectors(&s), vec![(true, 5), (false, 13), (true, 2)]);
        // The row count always adds up to the file's.
        let total: usize = s.iter().map(|r| r.row_count).sum();
        assert_eq!(total, 20);
    }

    #[test]
    fn a_run_past_the_end_reads_the_whole_file() {
        assert!(selection(vec![run(95, 10)], 100).is_none());
        assert!(selection(vec![run(0, 1)], 0).is_none());
    }
}
