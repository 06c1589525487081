//! weft-query: the read side. DataFusion over a data directory's segments.
//!
//! Sits above `weft-storage` (the manifest and the files) and below the HTTP
//! server and the CLI, which both go through [`Engine`]. Tables: `logs` and
//! `rejects` ([`table::SegmentsTable`]). On top: trace reconstruction
//! ([`trace`], whose rows come from the id-index reader in [`lookup`]),
//! saved queries ([`saved`]) and result formats ([`format`](mod@format)).
//! One physical rewrite of our own: `count(*)` grouped by dictionary
//! columns is counted by dictionary keys ([`dictcount`]).
//!
//! Every query and trace lookup can be recorded in the data directory's
//! audit trail ([`audit`]); the server and the CLI always do.
//!
//! Every statement is read-only: DDL, DML, `COPY`, `SET` and other
//! statements are refused at planning, and no file or URL table function is
//! registered. Each query runs under a memory pool limit and a timeout.

pub mod audit;
pub mod dictcount;
pub mod format;
pub mod lookup;
pub mod saved;
pub mod table;
pub mod trace;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::cache::cache_manager::{
    CacheManager, CacheManagerConfig, FileMetadataCache,
};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use weft_storage::{DataDir, Table};

/// Parameter values are DataFusion scalars.
pub use datafusion::common::ScalarValue;

use crate::audit::{AuditLog, AuditTable};
use crate::table::{IdIndexCache, SegmentsTable};

/// Query errors, by whose fault they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SQL is wrong: syntax, unknown table or column, type errors.
    #[error("{0}")]
    BadQuery(String),
    /// A statement that is not read-only.
    #[error("{0}")]
    NotAllowed(String),
    #[error("query exceeded its memory limit of {limit} bytes: {detail}")]
    MemoryLimit { limit: usize, detail: String },
    #[error("query timed out after {0:?}")]
    Timeout(Duration),
    #[error("no saved query named {0:?}")]
    UnknownQuery(String),
    #[error("{0}")]
    BadParam(String),
    #[error(transparent)]
    Storage(#[from] weft_storage::Error),
    /// The audit record could not be written, so the query was not run.
    #[error("audit trail unavailable, query not run: {0}")]
    AuditUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Classifies a DataFusion error: the user's mistake or ours.
    pub fn from_datafusion(e: DataFusionError, memory_limit: usize) -> Self {
        match e.find_root() {
            DataFusionError::Plan(m)
                if ["DDL", "DML", "Statement"]
                    .iter()
                    .any(|k| m.starts_with(&format!("{k} not supported"))) =>
            {
                Error::NotAllowed(format!(
                    "read-only: {m}; only SELECT, EXPLAIN, SHOW and DESCRIBE are allowed"
                ))
            }
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => Error::BadQuery(clean(&e)),
            DataFusionError::ResourcesExhausted(d) => Error::MemoryLimit {
                limit: memory_limit,
                detail: d.clone(),
            },
            DataFusionError::Execution(_) | DataFusionError::ArrowError(..) => {
                Error::BadQuery(clean(&e))
            }
            _ => Error::Internal(e.to_string()),
        }
    }

    /// True when the caller's input is at fault (HTTP 400, CLI usage error).
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            Error::Storage(_) | Error::Internal(_) | Error::AuditUnavailable(_)
        )
    }
}

/// DataFusion error text without its layers of context prefixes.
fn clean(e: &DataFusionError) -> String {
    let s = e.find_root().to_string();
    for prefix in [
        "Error during planning: ",
        "SQL error: ",
        "Schema error: ",
        "Execution error: ",
        "This feature is not implemented: ",
        "Arrow error: ",
    ] {
        if let Some(rest) = s.strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
    s
}

/// Limits and settings for queries.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryOptions {
    /// Memory one query may hold for sorts, joins and aggregates, in bytes.
    pub memory_limit: usize,
    /// Longest a query may run, in seconds.
    pub timeout_secs: f64,
    /// Parallelism of a query (0: one per core).
    pub target_partitions: usize,
    /// Extra directory of saved `*.sql` queries (added to the built-in ones).
    pub queries_dir: Option<PathBuf>,
    /// Memory for Parquet footers and page indexes kept between queries, in
    /// bytes (least recently used ones go first).
    pub metadata_cache_bytes: usize,
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            memory_limit: 1 << 30,
            timeout_secs: 60.0,
            target_partitions: 0,
            queries_dir: None,
            metadata_cache_bytes: 256 << 20,
        }
    }
}

impl QueryOptions {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs.max(0.001))
    }
}

/// What the engine's metadata cache holds (see [`Engine::cached_footers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedFooters {
    /// Files whose footer is cached.
    pub files: usize,
    /// Of those, the files cached with their page index.
    pub with_page_index: usize,
    /// The cache's own estimate of what the entries take in memory.
    pub bytes: usize,
}

/// A finished query.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub elapsed: Duration,
    /// Bytes read from segment files (the write buffer is not counted).
    pub bytes_scanned: u64,
}

/// Who reads: an admin also sees the `audit` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Admin,
    Query,
}

/// A query under way, its batches taken one at a time under the query's
/// deadline: nothing is collected unless the caller collects it.
pub struct QueryStream {
    pub schema: SchemaRef,
    stream: SendableRecordBatchStream,
    plan: Arc<dyn ExecutionPlan>,
    deadline: tokio::time::Instant,
    timeout: Duration,
    memory_limit: usize,
    started: Instant,
    rows: u64,
}

impl std::fmt::Debug for QueryStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryStream")
            .field("schema", &self.schema)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl QueryStream {
    /// The next batch; `None` at the end. Past the deadline: a timeout error.
    pub async fn next(&mut self) -> Option<Result<RecordBatch>> {
        let next = tokio::time::timeout_at(self.deadline, self.stream.next()).await;
        // CPU-bound operators can keep the runtime from firing the timer
        // until they are done: a batch that came after the deadline is a
        // timeout all the same.
        if tokio::time::Instant::now() > self.deadline {
            return Some(Err(Error::Timeout(self.timeout)));
        }
        match next {
            Err(_) => Some(Err(Error::Timeout(self.timeout))),
            Ok(None) => None,
            Ok(Some(Err(e))) => Some(Err(Error::from_datafusion(e, self.memory_limit))),
            Ok(Some(Ok(b))) => {
                self.rows += b.num_rows() as u64;
                Some(Ok(b))
            }
        }
    }

    /// Rows handed out so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Bytes read from segment files so far, from the Parquet scans' metrics.
    pub fn bytes_scanned(&self) -> u64 {
        fn walk(plan: &Arc<dyn ExecutionPlan>) -> u64 {
            let own = plan
                .metrics()
                .and_then(|m| m.sum_by_name("bytes_scanned"))
                .map_or(0, |v| v.as_usize() as u64);
            own + plan.children().into_iter().map(walk).sum::<u64>()
        }
        walk(&self.plan)
    }

    /// Every remaining batch.
    pub async fn collect(mut self) -> Result<QueryOutput> {
        let mut batches = Vec::new();
        while let Some(b) = self.next().await {
            batches.push(b?);
        }
        Ok(QueryOutput {
            bytes_scanned: self.bytes_scanned(),
            elapsed: self.elapsed(),
            schema: self.schema,
            batches,
        })
    }
}

impl QueryOutput {
    pub fn row_count(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// The read side over one data directory.
#[derive(Debug)]
pub struct Engine {
    data: Arc<DataDir>,
    options: QueryOptions,
    ids: Arc<IdIndexCache>,
    /// Footers and page indexes for the trace lookup's own reader.
    footers: Arc<lookup::FooterCache>,
    audit: Arc<AuditLog>,
    /// Parquet footers and page indexes, shared by every query's runtime.
    metadata: Arc<FileMetadataCache>,
}

/// Caches for a query's runtime: only the engine's metadata cache (the
/// segments table lists its files itself, from the manifest).
fn cache_config(
    options: &QueryOptions,
    metadata: Option<Arc<FileMetadataCache>>,
) -> CacheManagerConfig {
    CacheManagerConfig::default()
        .with_file_metadata_cache(metadata)
        .with_metadata_cache_limit(options.metadata_cache_bytes)
        .with_file_statistics_cache_limit(0)
        .with_list_files_cache_limit(0)
}

/// The statements a query may be: reads only.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

impl Engine {
    /// Opens `root` for reading. A missing directory is an error; an empty
    /// one has empty tables.
    pub fn open(root: &Path, options: QueryOptions) -> Result<Self> {
        Ok(Self::over(Arc::new(DataDir::open_reader(root)?), options))
    }

    /// An engine over a directory this process writes (the daemon): its
    /// queries see the write buffer as well as the segments.
    pub fn over(data: Arc<DataDir>, options: QueryOptions) -> Self {
        let metadata = CacheManager::try_new(&cache_config(&options, None))
            .expect("a cache manager without caches to check cannot fail")
            .get_file_metadata_cache();
        let audit = Arc::new(AuditLog::new(data.root().join("audit")));
        let footers = Arc::new(lookup::FooterCache::new(options.metadata_cache_bytes));
        Self {
            data,
            options,
            ids: Arc::default(),
            footers,
            audit,
            metadata,
        }
    }

    /// How many segments' id indexes are loaded.
    pub fn cached_id_indexes(&self) -> usize {
        self.ids.len()
    }

    /// The Parquet footers (and page indexes) queries have cached so far.
    pub fn cached_footers(&self) -> CachedFooters {
        let entries = self.metadata.list_entries();
        CachedFooters {
            files: entries.len(),
            with_page_index: entries
                .values()
                .filter(|e| {
                    let info = e.value.file_metadata.extra_info();
                    info.get("page_index").map(String::as_str) == Some("true")
                })
                .count(),
            bytes: entries.values().map(|e| e.size_bytes).sum(),
        }
    }

    /// Keeps the audit trail in `dir` instead of `<data dir>/audit` (for a
    /// read-only archive).
    pub fn with_audit_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.audit = Arc::new(AuditLog::new(dir));
        self
    }

    /// Where every query and trace lookup over this directory is recorded.
    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    pub fn data(&self) -> &Arc<DataDir> {
        &self.data
    }

    pub fn options(&self) -> &QueryOptions {
        &self.options
    }

    pub fn root(&self) -> &Path {
        self.data.root()
    }

    /// A session over the current segments and write buffer, with this
    /// engine's limits; an admin's also has the `audit` table.
    pub fn context(&self, reader: Reader) -> Result<SessionContext> {
        self.data.reload()?;
        let snapshot = self.data.snapshot();
        self.ids.forget_unlisted(&snapshot);
        let parts = match self.options.target_partitions {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(parts);
        let opts = config.options_mut();
        opts.execution.parquet.pushdown_filters = true;
        opts.execution.parquet.reorder_filters = true;
        opts.execution.parquet.bloom_filter_on_read = true;
        opts.execution.parquet.enable_page_index = true;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(self.options.memory_limit)))
            .with_cache_manager(cache_config(
                &self.options,
                Some(Arc::clone(&self.metadata)),
            ))
            .build_arc()
            .map_err(|e| Error::Internal(e.to_string()))?;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(dictcount::DictCountRule))
            .build();
        let ctx = SessionContext::new_with_state(state);
        for table in [Table::Logs, Table::Rejects] {
            let provider =
                SegmentsTable::new(self.data.root(), &snapshot, table, Arc::clone(&self.ids))
                    .map_err(|e| Error::Internal(e.to_string()))?;
            ctx.register_table(table.name(), Arc::new(provider))
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
        if reader == Reader::Admin {
            ctx.register_table("audit", Arc::new(AuditTable(Arc::clone(&self.audit))))
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
        Ok(ctx)
    }

    /// Plans and runs one read-only statement with named parameters
    /// (`$name` in the SQL), under the memory limit and timeout, as an
    /// admin, collecting every row.
    pub async fn sql(
        &self,
        sql: &str,
        params: HashMap<String, ScalarValue>,
    ) -> Result<QueryOutput> {
        self.stream(Reader::Admin, sql, params)
            .await?
            .collect()
            .await
    }

    /// Plans one read-only statement and starts it: batches come from the
    /// returned stream as they are produced. The timeout covers planning
    /// and every batch.
    pub async fn stream(
        &self,
        reader: Reader,
        sql: &str,
        params: HashMap<String, ScalarValue>,
    ) -> Result<QueryStream> {
        let deadline = tokio::time::Instant::now() + self.options.timeout();
        self.stream_until(reader, sql, params, deadline).await
    }

    /// [`Engine::stream`] against a deadline shared with other statements
    /// (a trace and its context lookups count as one query).
    pub async fn stream_until(
        &self,
        reader: Reader,
        sql: &str,
        params: HashMap<String, ScalarValue>,
        deadline: tokio::time::Instant,
    ) -> Result<QueryStream> {
        let started = Instant::now();
        let timeout = self.options.timeout();
        let ctx = self.context(reader)?;
        let limit = self.options.memory_limit;
        let plan = async {
            let mut df = ctx
                .sql_with_options(sql, read_only())
                .await
                .map_err(|e| Error::from_datafusion(e, limit))?;
            if !params.is_empty() {
                df = df
                    .with_param_values(params)
                    .map_err(|e| Error::from_datafusion(e, limit))?;
            }
            let schema = Arc::new(df.schema().as_arrow().clone());
            let plan = df
                .create_physical_plan()
                .await
                .map_err(|e| Error::from_datafusion(e, limit))?;
            let stream = execute_stream(Arc::clone(&plan), ctx.task_ctx())
                .map_err(|e| Error::from_datafusion(e, limit))?;
            Ok::<_, Error>((schema, plan, stream))
        };
        let planned = tokio::time::timeout_at(deadline, plan).await;
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Timeout(timeout));
        }
        let (schema, plan, stream) = planned.map_err(|_| Error::Timeout(timeout))??;
        Ok(QueryStream {
            schema,
            stream,
            plan,
            deadline,
            timeout,
            memory_limit: limit,
            started,
            rows: 0,
        })
    }

    /// [`Engine::sql`] with its audit record: none written, none run.
    pub async fn sql_audited(
        &self,
        entry: audit::Entry,
        sql: &str,
        params: HashMap<String, ScalarValue>,
    ) -> Result<QueryOutput> {
        let ticket = self.audit.begin(entry)?;
        let r = self.sql(sql, params).await;
        let (rows, bytes) = match &r {
            Ok(o) => (Some(o.row_count() as u64), Some(o.bytes_scanned)),
            Err(_) => (None, None),
        };
        ticket.finish_with(&r, rows, bytes);
        r
    }

    /// [`Engine::trace_with_context`] with its audit record.
    pub async fn trace_audited(
        &self,
        entry: audit::Entry,
        id: &str,
        context: usize,
    ) -> Result<trace::Trace> {
        let ticket = self.audit.begin(entry)?;
        let r = self.trace_with_context(id, context).await;
        let (rows, bytes) = match &r {
            Ok(t) => (Some(t.line_count as u64), Some(t.bytes_scanned)),
            Err(_) => (None, None),
        };
        ticket.finish_with(&r, rows, bytes);
        r
    }
}
